//go:build linux

package ipvssync

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"github.com/xlbproject/xlb/testenv"
)

// pairNS builds two namespaces joined by a veth pair "sync0" with
// 10.88.0.1/24 + fd88::1/64 (a, the master) and 10.88.0.2/24 + fd88::2/64
// (b, the backup), removed in t.Cleanup.
func pairNS(t testing.TB) (a, b netns.NsHandle) {
	t.Helper()
	testenv.RequireRoot(t)
	pfx := fmt.Sprintf("xs%d", os.Getpid())
	na, nb := pfx+"a", pfx+"b"
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	for _, n := range []string{na, nb} {
		exec.Command("ip", "netns", "del", n).Run() // a leftover of a killed run
		ip("netns", "add", n)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", n).Run() })
		// No duplicate address detection: a tentative link-local
		// address holds back IPv6 multicast and neighbour discovery.
		for _, k := range []string{"all", "default"} {
			ip("netns", "exec", n, "sysctl", "-qw", "net.ipv6.conf."+k+".accept_dad=0")
		}
	}
	ip("-n", na, "link", "add", "sync0", "numtxqueues", "1", "numrxqueues", "1", "type", "veth", "peer", "name", "sync0", "netns", nb)
	for i, n := range []string{na, nb} {
		ip("-n", n, "addr", "add", fmt.Sprintf("10.88.0.%d/24", i+1), "dev", "sync0")
		ip("-n", n, "addr", "add", fmt.Sprintf("fd88::%d/64", i+1), "dev", "sync0", "nodad")
		ip("-n", n, "link", "set", "sync0", "up")
		ip("-n", n, "link", "set", "lo", "up")
	}
	// Wait until IPv6 sees both links ready (addrconf adds the
	// link-local address then): IPv6 datagrams sent before are lost.
	for _, n := range []string{na, nb} {
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			out, _ := exec.Command("ip", "-n", n, "-6", "addr", "show", "dev", "sync0", "scope", "link").CombinedOutput()
			if strings.Contains(string(out), "fe80") && !strings.Contains(string(out), "tentative") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: sync0 has no usable link-local address: %s", n, out)
			}
		}
	}
	var err error
	if a, err = netns.GetFromName(na); err != nil {
		t.Fatal(err)
	}
	if b, err = netns.GetFromName(nb); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// in runs f with the calling goroutine's thread in ns; sockets f opens
// stay in ns.
func in(t testing.TB, ns netns.NsHandle, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic("ipvssync test: cannot return to the original namespace: " + err.Error())
		}
	}()
	f()
}

// testConn is record i of a stream: TCP, distinct client ports and
// addresses, every 7th a template, every 3rd FULLNAT.
func testConn(i int, v6 bool) Conn {
	base := "10.20.%d.%d"
	c := Conn{Protocol: ProtoTCP, State: TCPEstablished, Timeout: 900}
	if v6 {
		base = "2001:db8::%d:%d"
	}
	c.Client = netip.AddrPortFrom(netip.MustParseAddr(fmt.Sprintf(base, i/250, i%250)), uint16(1024+i%60000))
	c.Virtual = netip.AddrPortFrom(netip.MustParseAddr(fmt.Sprintf(base, 255, 1)), 80)
	c.Dest = netip.AddrPortFrom(netip.MustParseAddr(fmt.Sprintf(base, 254, i%8)), 8080)
	c.SetMethod(MethodDR)
	switch {
	case i%7 == 0:
		c.Flags |= FlagTemplate
		c.Client = netip.AddrPortFrom(c.Client.Addr(), 0)
		c.State, c.Timeout = TemplateNone, 360
	case i%3 == 0:
		c.SetMethod(MethodFullNAT)
		c.Local = netip.AddrPortFrom(c.Dest.Addr(), uint16(20000+i%40000))
	}
	return c
}

func TestTransport(t *testing.T) {
	const n = 10000
	for _, tc := range []struct {
		name    string
		v6      bool
		group   string
		unicast bool
	}{
		{name: "multicast4"},
		{name: "multicast6", v6: true, group: "ff02::8:8848"},
		{name: "unicast4", unicast: true},
		{name: "unicast6", v6: true, unicast: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nsA, nsB := pairNS(t)
			o := DefaultOptions()
			o.Interface = "sync0"
			o.SyncID = 1
			if tc.group != "" {
				o.Group = netip.MustParseAddr(tc.group)
			}
			master, backup := netip.MustParseAddr("10.88.0.1"), netip.MustParseAddr("10.88.0.2")
			if tc.v6 {
				master, backup = netip.MustParseAddr("fd88::1"), netip.MustParseAddr("fd88::2")
			}
			so, ro := o, o
			if tc.unicast {
				so.Peers = []netip.AddrPort{netip.AddrPortFrom(backup, DefaultPort)}
				ro.Peers = []netip.AddrPort{netip.AddrPortFrom(master, 0)}
			}
			var r *Receiver
			var s1, s2 *Sender
			var err error
			in(t, nsB, func() { r, err = NewReceiver(ro) })
			if err != nil {
				t.Fatal(err)
			}
			other := so
			other.SyncID = 2
			in(t, nsA, func() {
				if s1, err = NewSender(so); err == nil {
					s2, err = NewSender(other)
				}
			})
			if err != nil {
				r.Close()
				t.Fatal(err)
			}
			defer s1.Close()
			defer s2.Close()

			var mu sync.Mutex
			got := make(map[netip.AddrPort]Conn, n)
			done := make(chan error, 1)
			go func() {
				done <- r.Serve(func(cs []Conn) {
					mu.Lock()
					defer mu.Unlock()
					for _, c := range cs {
						c.PEData = nil
						got[c.Client] = c
					}
				})
			}()
			// Records with sync ID 2 first: the backup (ID 1) ignores them.
			for i := range 1000 {
				c := testConn(n+i, tc.v6)
				if err := s2.Add(&c); err != nil {
					t.Fatal(err)
				}
			}
			if err := s2.Flush(); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			for i := range n {
				c := testConn(i, tc.v6)
				if err := s1.Add(&c); err != nil {
					t.Fatal(err)
				}
				if i%1000 == 999 { // a batch edge
					if err := s1.Flush(); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := s1.Flush(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) {
				mu.Lock()
				k := len(got)
				mu.Unlock()
				if k >= n && r.Stats().OtherSyncID > 0 {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			elapsed := time.Since(start)
			r.Close()
			if err := <-done; err != nil {
				t.Errorf("Serve = %v", err)
			}
			ss, rs := s1.Stats(), r.Stats()
			t.Logf("%d records in %d messages (%d bytes, maxlen %d) in %v; receiver %+v", ss.Records, ss.Messages, ss.Bytes, s1.Options().MaxLen, elapsed, rs)
			if s2m := s2.Stats().Messages; rs.OtherSyncID != s2m {
				t.Errorf("ignored %d messages of sync ID 2, sent %d", rs.OtherSyncID, s2m)
			}
			if rs.Records != n || len(got) != n {
				t.Fatalf("received %d records (%d distinct), sent %d", rs.Records, len(got), n)
			}
			for i := range n {
				want := testConn(i, tc.v6)
				want.Flags = want.Flags&FlagBackupMask | FlagSync
				c := got[want.Client]
				if fmt.Sprint(c) != fmt.Sprint(want) {
					t.Fatalf("record %d = %v, want %v", i, &c, &want)
				}
			}
			if rs.Messages != ss.Messages || rs.Dropped != ([NumReasons]uint64{}) || rs.Skipped != ([NumReasons]uint64{}) {
				t.Errorf("receiver counted %d messages (sent %d), dropped %v, skipped %v", rs.Messages, ss.Messages, rs.Dropped, rs.Skipped)
			}
		})
	}
}

// BenchmarkTransport measures records per second from a Sender to a
// Receiver in another namespace, 10 000 records per iteration in full
// messages, and the records lost (which must be 0).
func BenchmarkTransport(b *testing.B) {
	for _, unicast := range []bool{false, true} {
		name := "multicast4"
		if unicast {
			name = "unicast4"
		}
		b.Run(name, func(b *testing.B) {
			const n = 10000
			nsA, nsB := pairNS(b)
			o := DefaultOptions()
			o.Interface, o.SyncID = "sync0", 1
			so, ro := o, o
			if unicast {
				so.Peers = []netip.AddrPort{ap("10.88.0.2:8848")}
				ro.Peers = []netip.AddrPort{ap("10.88.0.1:0")}
			}
			var r *Receiver
			var s *Sender
			var err error
			in(b, nsB, func() { r, err = NewReceiver(ro) })
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			in(b, nsA, func() { s, err = NewSender(so) })
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var got atomic.Uint64
			go r.Serve(func(cs []Conn) { got.Add(uint64(len(cs))) })
			conns := make([]Conn, n)
			for i := range conns {
				conns[i] = testConn(i, false)
			}
			sent := uint64(0)
			b.ResetTimer()
			for b.Loop() {
				for i := range conns {
					if err := s.Add(&conns[i]); err != nil {
						b.Fatal(err)
					}
				}
				if err := s.Flush(); err != nil {
					b.Fatal(err)
				}
				sent += n
				for deadline := time.Now().Add(2 * time.Second); got.Load() < sent && time.Now().Before(deadline); {
					runtime.Gosched()
				}
			}
			b.StopTimer()
			lost := sent - min(got.Load(), sent)
			b.ReportMetric(float64(got.Load())/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(lost), "lost")
			if lost > 0 {
				b.Errorf("%d of %d records lost; receiver %+v", lost, sent, r.Stats())
			}
		})
	}
}
