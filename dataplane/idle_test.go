//go:build linux

package dataplane

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/sched"
)

// TestWorkerIdleExpiresWholeTable: one idle wake-up after a flood of
// flows has timed out takes every dead entry out of its destination's
// counts. The idle loop used to expire 64 entries per wake-up (640 a
// second), so lc and wlc counted dead flows as inactive connections for
// minutes.
func TestWorkerIdleExpiresWholeTable(t *testing.T) {
	w, _ := testWorker(t)
	var dests []*sched.Dest
	for id := uint32(1); w.dp.reg.Get(id) != nil; id++ {
		dests = append(dests, w.dp.reg.Get(id))
	}
	now := int64(time.Second)
	const flows = 4000
	for i := range flows {
		k := conntrack.KeyFrom(conntrack.ProtoUDP,
			netip.AddrPortFrom(testClient, uint16(1024+i)), netip.AddrPortFrom(testVIP, 53))
		if _, ok := w.ct.Insert(&k, dests[i%len(dests)], conntrack.FwdRoute, 53, now); !ok {
			t.Fatalf("insert %d failed", i)
		}
	}
	inact := func() (n int32) {
		for _, d := range dests {
			n += d.InactConns()
		}
		return n
	}
	if got := inact(); got != flows {
		t.Fatalf("inactive connections %d, want %d", got, flows)
	}
	now += int64(conntrack.DefaultTimeouts().UDP) + 1
	w.idle(now)
	if got := inact(); got != 0 || w.ct.Len() != 0 {
		t.Fatalf("after an idle wake-up past the timeout: %d inactive connections, %d entries, want 0", got, w.ct.Len())
	}

	// The next wake-ups, within idleSweepNs, serve a listing but leave the
	// table's sweep to the next pass.
	done := make(chan error, 1)
	go func() { done <- w.ct.Dump(context.Background(), func(*conntrack.Entry, int64) error { return nil }) }()
	for !w.ct.Dumping() {
		time.Sleep(time.Millisecond)
	}
	for i := 0; ; i++ {
		w.idle(now + 1)
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			return
		case <-time.After(time.Millisecond):
		}
		if i > 1000 {
			t.Fatal("Dump not served by idle wake-ups")
		}
	}
}
