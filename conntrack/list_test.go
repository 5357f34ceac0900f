package conntrack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xlbproject/xlb/internal/ipvsadm"
)

// worker runs Expire on t in its own goroutine, as a dataplane worker's
// idle loop does, until stop is called. While it runs, only the
// control-plane methods may be used from other goroutines.
func worker(t *Table, now int64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			t.Expire(now, 0)
			time.Sleep(10 * time.Microsecond)
		}
	}()
	return func() { close(done); wg.Wait() }
}

// writeConns lists tables as the daemon answers ipvsadm -L -c -n: rows
// from Dump and RowOf, formatted by ipvsadm.WriteConns.
func writeConns(w io.Writer, tables ...*Table) error {
	var conns []ipvsadm.Conn
	for _, t := range tables {
		err := t.Dump(context.Background(), func(e *Entry, now int64) error {
			r := RowOf(e, now)
			conns = append(conns, ipvsadm.Conn{Proto: ProtoName(r.Proto), Client: r.Client, Virtual: r.Virtual,
				Dest: r.Dest, State: r.State.String(), Expires: uint(r.Expires)})
			return nil
		})
		if err != nil {
			return err
		}
	}
	return ipvsadm.WriteConns(w, conns, ipvsadm.ListOptions{Numeric: true, Connection: true})
}

func TestListRows(t *testing.T) {
	f := newFixture(t, 64, 2, nil)
	now := f.clk.now
	nat := f.service(t, func(o *ServiceOptions) { o.DefaultFwd = FwdMasq })
	k1 := keyFrom("172.16.0.1", 40000, "192.168.1.10", 80)
	c1, _ := f.t.NewConn(nat, &k1, syn, now)
	f.t.Update(c1.Entry, DirInput, syn, 60, now) // SYN_RECV, 60 s

	per := f.service(t, func(o *ServiceOptions) { o.Persistent, o.Timeout, o.Netmask = true, 300*time.Second, 24 })
	k2 := keyFrom("172.16.0.77", 1234, "192.168.1.10", 80)
	c2, _ := f.t.NewConn(per, &k2, syn, now)
	f.t.Update(c2.Entry, DirInput, syn, 60, now)
	f.t.Update(c2.Entry, DirInput, ack, 60, now) // ESTABLISHED, 900 s

	fw := f.service(t, func(o *ServiceOptions) { o.Port, o.FWMark, o.Persistent, o.Timeout = 0, 7, true, 3600*time.Second })
	k3 := KeyFrom(ProtoUDP, netip.MustParseAddrPort("172.16.1.1:5000"), netip.MustParseAddrPort("192.168.1.11:53"))
	c3, _ := f.t.NewConn(fw, &k3, 0, now)
	f.t.Update(c3.Entry, DirInput, 0, 60, now) // UDP, 300 s

	k6 := keyFrom("2001:db8::1", 5555, "2001:db8::80", 443)
	e6, _ := f.t.Insert(&k6, f.dests[1], FwdRoute, 443, now)
	f.t.Update(e6, DirInput, syn, 60, now)
	f.t.Update(e6, DirInput, ack, 60, now)
	f.t.Update(e6, DirInput, fin, 60, now) // FIN_WAIT 120 s

	later := f.clk.advance(13*time.Second + 500*time.Millisecond)
	stop := worker(f.t, later)
	defer stop()
	var buf bytes.Buffer
	if err := writeConns(&buf, f.t); err != nil {
		t.Fatal(err)
	}
	want := "IPVS connection entries\n" +
		"pro expire state       source             virtual            destination\n" +
		"TCP 00:46  SYN_RECV    172.16.0.1:40000   192.168.1.10:80    10.0.0.1:8080\n" +
		"TCP 14:46  ESTABLISHED 172.16.0.77:1234   192.168.1.10:80    10.0.0.2:8080\n" +
		"TCP 04:46  ASSURED     172.16.0.0:0       192.168.1.10:80    10.0.0.2:8080\n" +
		"UDP 04:46  UDP         172.16.1.1:5000    192.168.1.11:53    10.0.0.1:53\n" +
		"IP  59:46  NONE        172.16.1.1:0       0.0.0.7:0          10.0.0.1:0\n" +
		"TCP 01:46  FIN_WAIT    [2001:db8::1]:5555 [2001:db8::80]:443 10.0.0.2:443\n"
	if got := buf.String(); got != want {
		t.Errorf("ipvsadm -L -c -n =\n%s\nwant\n%s", got, want)
	}
}

func TestRowOfOverdue(t *testing.T) {
	e := Entry{expires: 5e9}
	if r := RowOf(&e, 6e9); r.Expires != 0 {
		t.Errorf("overdue entry: Expires = %d, want 0", r.Expires)
	}
}

func TestDumpPagesAndCancel(t *testing.T) {
	f := newFixture(t, 2000, 3, nil)
	for i := uint32(0); i < 1500; i++ {
		k := clientKey(ProtoUDP, i, 1)
		f.t.Insert(&k, f.dests[i%3], FwdRoute, 53, f.clk.now)
	}
	// No worker: Dump waits for one and gives up with the context.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := f.t.Dump(ctx, func(*Entry, int64) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dump without a worker = %v, want deadline exceeded", err)
	}
	stop := worker(f.t, f.clk.now)
	defer stop()
	seen := map[Key]bool{}
	err = f.t.Dump(context.Background(), func(e *Entry, now int64) error {
		if seen[e.key] {
			return fmt.Errorf("%v listed twice", e.Client())
		}
		seen[e.key] = true
		return nil
	})
	if err != nil || len(seen) != 1500 {
		t.Fatalf("Dump: %v, %d entries, want 1500", err, len(seen))
	}
	stopErr := errors.New("stop")
	n := 0
	err = f.t.Dump(context.Background(), func(*Entry, int64) error {
		if n++; n == 10 {
			return stopErr
		}
		return nil
	})
	if err != stopErr {
		t.Fatalf("Dump returned %v, want fn's error", err)
	}
}

// TestConcurrentControlPlane runs a worker that opens, updates and
// expires connections flat out while other goroutines read Stats, list
// the table and change Settings. Run with -race.
func TestConcurrentControlPlane(t *testing.T) {
	f := newFixture(t, 5000, 4, nil)
	svc := f.service(t, func(o *ServiceOptions) { o.DefaultFwd = FwdMasq })
	dur := 300 * time.Millisecond
	if testing.Short() {
		dur = 100 * time.Millisecond
	}
	var stop, stopWorker atomic.Bool
	var wg, wgWorker sync.WaitGroup
	wgWorker.Add(1)
	go func() { // the worker; it outlives the readers, which need it
		defer wgWorker.Done()
		rng := rand.New(rand.NewPCG(3, 4))
		now := f.clk.now
		for !stopWorker.Load() {
			for i := 0; i < 64; i++ {
				now += int64(50 * time.Microsecond)
				k := clientKey(ProtoTCP, uint32(rng.IntN(20000)), 1)
				e, dir := f.t.Lookup(&k, now)
				if e == nil {
					c, _ := f.t.NewConn(svc, &k, syn, now)
					if e, dir = c.Entry, DirInput; e == nil {
						continue
					}
				}
				f.t.Update(e, dir, []uint8{syn, ack, fin, rst}[rng.IntN(4)], 100, now)
			}
			f.t.Expire(now, 128)
		}
	}()
	var lists, reads atomic.Int64
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() { // ipvsadm -L -c, stats scrapes
			defer wg.Done()
			var last uint64
			for !stop.Load() {
				s := f.t.Stats()
				if s.Created < last || s.Entries > 5000 {
					t.Errorf("stats went backwards or over capacity: %+v (last created %d)", s, last)
					return
				}
				last = s.Created
				reads.Add(1)
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				err := f.t.Dump(ctx, func(e *Entry, now int64) error {
					if e.flags&fUsed == 0 || e.key.Proto != ProtoTCP {
						return fmt.Errorf("dumped a free or foreign entry: %+v", *e)
					}
					return nil
				})
				cancel()
				if err != nil {
					t.Error(err)
					return
				}
				if err := writeConns(io.Discard, f.t); err != nil {
					t.Error(err)
					return
				}
				lists.Add(1)
			}
		}()
	}
	wg.Add(1)
	go func() { // ipvsadm --set
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			f.t.settings.SetTimeouts(time.Duration(100+i%50)*time.Second, 0, 0)
			time.Sleep(time.Millisecond)
		}
	}()
	time.Sleep(dur)
	stop.Store(true)
	wg.Wait()
	stopWorker.Store(true)
	wgWorker.Wait()
	if lists.Load() == 0 || reads.Load() == 0 {
		t.Fatalf("control plane made no progress: %d lists, %d stats reads", lists.Load(), reads.Load())
	}
	f.checkCounts(t)
	t.Logf("%d listings, %d stats reads; %+v", lists.Load(), reads.Load(), f.t.Stats())
}
