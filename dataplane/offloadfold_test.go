package dataplane

import (
	"context"
	"testing"
	"time"

	"github.com/xlbproject/xlb/conntrack"
)

// Nobody looking, a fold pass is due every foldQuietNs, not every
// foldEveryNs; while the connection sync is on, or a listing (-L -c)
// runs, every foldEveryNs, and a listing's page shows what the program
// forwarded up to the page.
func TestOffloadFoldPeriod(t *testing.T) {
	ff, w, _, es, frames := installedFlows(t, 3)
	w.off.quiet = foldQuietNs
	start := w.off.pass
	passAt := func(now int64, want bool) {
		t.Helper()
		before := w.off.pass
		w.off.idleStep(w, now)
		if got := w.off.pass != before; got != want {
			t.Fatalf("at %d (latest pass %d, sync %v, listing %v): a pass %v, want %v",
				now, before, w.sx.on, w.ct.Dumping(), got, want)
		}
	}
	now := start + foldEveryNs
	passAt(now, false)
	w.sx.on = true
	passAt(now, true)
	w.sx.on = false
	passAt(now+foldEveryNs, false)
	now += foldQuietNs
	passAt(now, true)

	// A listing: the frames the program forwarded since the latest pass
	// are folded before its first page is copied.
	now += foldEveryNs
	ff.forward(t, flowKeyOf(frames[1]), 5, 100, kt0+now)
	in0, _, _, _ := es[1].Counters()
	key := es[1].Key()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	listed := make(chan uint64, len(es))
	done := make(chan error, 1)
	go func() {
		done <- w.ct.Dump(ctx, func(e *conntrack.Entry, _ int64) error {
			if e.Key() == key {
				in, _, _, _ := e.Counters()
				listed <- in
			}
			return nil
		})
	}()
	for !w.ct.Dumping() {
		time.Sleep(time.Millisecond)
	}
	// Dump publishes its first page's request right after it starts
	// dumping; an idle call before that would fold first whatever the
	// order in idle, and the test below would prove nothing.
	time.Sleep(20 * time.Millisecond)
	for i := 0; ; i++ {
		w.idle(now)
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if w.off.pass != now {
				t.Errorf("the listing did not fold: latest pass %d, want %d", w.off.pass, now)
			}
			select {
			case in := <-listed:
				if in != in0+5 {
					t.Errorf("listed with %d input packets, want %d (the 5 the program forwarded folded)", in, in0+5)
				}
			default:
				t.Error("the flow was not listed")
			}
			return
		default:
		}
		if i > 1000 {
			t.Fatal("the listing does not end")
		}
		time.Sleep(time.Millisecond)
	}
}
