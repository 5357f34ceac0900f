//go:build linux

package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"

	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/ipvssync"
	"github.com/xlbproject/xlb/testenv"
)

// fakeSyncPlane stands in for the dataplane's sync API: export hands
// batches to the master's sink, installed collects the backup's records.
type fakeSyncPlane struct {
	mu        sync.Mutex
	sink      func([]ipvssync.Conn)
	installed []ipvssync.Conn
	refuse    bool // install nothing
}

func (f *fakeSyncPlane) StartSyncExport(sink func([]ipvssync.Conn)) func() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sink != nil {
		panic("export started twice")
	}
	f.sink = sink
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.sink = nil
	}
}

func (f *fakeSyncPlane) InstallSynced(conns []ipvssync.Conn) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse {
		return 0
	}
	for _, c := range conns {
		c.PEData = nil // valid only during the call
		f.installed = append(f.installed, c)
	}
	return len(conns)
}

func (f *fakeSyncPlane) export(conns []ipvssync.Conn) bool {
	f.mu.Lock()
	sink := f.sink
	f.mu.Unlock()
	if sink == nil {
		return false
	}
	sink(conns)
	return true
}

func (f *fakeSyncPlane) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.installed)
}

func syncServer(tb testing.TB, plane syncPlane, peers ...netip.AddrPort) *server {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := newServer(tb, &fakeDataplane{}, &ipvs.Config{Timeouts: ipvs.DefaultTimeouts}, -1)
	s.syn, s.log = newSyncDaemons(plane, peers, log), log
	return s
}

func run1(s *server, line string) response {
	return s.handle(request{Args: strings.Fields(line)})
}

// The kernel's answers, ipvsadm's words and exit codes; -L --daemon as
// ipvsadm 1.31's list_daemon prints the kernel's dump: master first, the
// effective values (maxlen from the MTU, the default group, port, TTL).
func TestSyncDaemonCommands(t *testing.T) {
	testenv.InNewNetNS(t, func(h *netlink.Handle) {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "sync0", MTU: 1500}, PeerName: "sync1"}
		if err := h.LinkAdd(veth); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"sync0", "sync1", "lo"} {
			l, err := h.LinkByName(n)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.LinkSetUp(l); err != nil {
				t.Fatal(err)
			}
		}
		a, _ := netlink.ParseAddr("10.203.0.1/24")
		l, _ := h.LinkByName("sync0")
		if err := h.AddrAdd(l, a); err != nil {
			t.Fatal(err)
		}
		plane := &fakeSyncPlane{}
		s := syncServer(t, plane)
		defer s.syn.Close()
		steps := []struct {
			line   string
			code   int
			stdout string
			stderr string
		}{
			{"-L --daemon", 0, "", ""},
			{"--stop-daemon master", 255, "", "No daemon is running\n"},
			{"--start-daemon master --mcast-interface nosuch0", 255, "", "No such device\n"},
			{"--start-daemon master --mcast-interface sync0", 0, "", ""},
			{"--start-daemon master --mcast-interface sync0", 255, "", "Daemon has already run\n"},
			{"-L --daemon", 0, "master sync daemon (mcast=sync0, syncid=0, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n", ""},
			{"--start-daemon backup --mcast-interface sync0 --syncid 7 --sync-maxlen 1400 --mcast-port 9999 --mcast-group 224.0.0.82", 0, "", ""},
			{"-L --daemon", 0, "master sync daemon (mcast=sync0, syncid=0, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n" +
				"backup sync daemon (mcast=sync0, syncid=7, maxlen=1400, group=224.0.0.82, port=9999, ttl=1)\n", ""},
			{"--stop-daemon master", 0, "", ""},
			{"--stop-daemon master", 255, "", "No daemon is running\n"},
			{"-L --daemon", 0, "backup sync daemon (mcast=sync0, syncid=7, maxlen=1400, group=224.0.0.82, port=9999, ttl=1)\n", ""},
			{"--stop-daemon backup", 0, "", ""},
			{"-L --daemon", 0, "", ""},
			// ipvsadm's own checks are unchanged.
			{"--start-daemon primary", 2, "", "illegal start-daemon parameter specified\n"},
			{"--start-daemon master --mcast-group 10.0.0.1", 2, "", "invalid IPv4 mcast-group `10.0.0.1'\n"},
		}
		for _, st := range steps {
			r := run1(s, st.line)
			if r.Code != st.code || r.Stdout != st.stdout || r.Stderr != st.stderr {
				t.Errorf("%s = %d %q %q, want %d %q %q", st.line, r.Code, r.Stdout, r.Stderr, st.code, st.stdout, st.stderr)
			}
		}
	})
}

// Without a dataplane that syncs, --start-daemon says so and starts
// nothing.
func TestSyncDaemonNotSupported(t *testing.T) {
	s := syncServer(t, nil)
	r := run1(s, "--start-daemon master --mcast-interface lo")
	if r.Code != 255 || !strings.Contains(r.Stderr, "no connection sync") {
		t.Errorf("--start-daemon without sync = %+v", r)
	}
	if r := run1(s, "-L --daemon"); r.Code != 0 || r.Stdout != "" {
		t.Errorf("-L --daemon = %+v, want nothing", r)
	}
	// A server without sync daemons at all (tests' servers).
	s.syn = nil
	if r := run1(s, "--stop-daemon backup"); r.Code != 255 || r.Stderr != "No daemon is running\n" {
		t.Errorf("--stop-daemon on a server without sync = %+v", r)
	}
}

func testConns(n int, base int) []ipvssync.Conn {
	conns := make([]ipvssync.Conn, n)
	for i := range conns {
		c := &conns[i]
		c.Protocol = 6
		c.Client = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, 2}), uint16(10000+base+i))
		c.Virtual = netip.MustParseAddrPort("198.18.0.100:80")
		c.Dest = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(11 + i%3)}), 80)
		c.SetMethod(ipvssync.MethodDR)
		c.State = 1 // ESTABLISHED
		c.Timeout = 900
	}
	return conns
}

// A master and a backup in one daemon, unicast to itself over lo (the
// --sync-peer extension): every exported connection is installed, the
// counters agree on both ends, and -L --daemon shows the peers after the
// kernel's fields.
func TestSyncDaemonUnicastLoop(t *testing.T) {
	testenv.InNewNetNS(t, func(h *netlink.Handle) {
		lo, err := h.LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(lo); err != nil {
			t.Fatal(err)
		}
		plane := &fakeSyncPlane{}
		s := syncServer(t, plane, netip.MustParseAddrPort("127.0.0.1:0"))
		defer s.syn.Close()
		for _, line := range []string{
			"--start-daemon backup --mcast-interface lo --syncid 3",
			"--start-daemon master --mcast-interface lo --syncid 3 --sync-maxlen 1472",
		} {
			if r := run1(s, line); r.Code != 0 {
				t.Fatalf("%s: %+v", line, r)
			}
		}
		want := "master sync daemon (mcast=lo, syncid=3, maxlen=1472, group=224.0.0.81, port=8848, ttl=1, peers=127.0.0.1:8848)\n" +
			"backup sync daemon (mcast=lo, syncid=3, maxlen=65507, group=224.0.0.81, port=8848, ttl=1, peers=127.0.0.1:8848)\n"
		if r := run1(s, "-L --daemon"); r.Stdout != want {
			t.Errorf("-L --daemon =\n%s\nwant\n%s", r.Stdout, want)
		}
		const batches, per = 20, 100
		for i := 0; i < batches; i++ {
			if !plane.export(testConns(per, i*per)) {
				t.Fatal("master did not start the export")
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for plane.count() < batches*per && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := plane.count(); n != batches*per {
			t.Fatalf("installed %d of %d records", n, batches*per)
		}
		st := s.syn.stats()
		if st.Exported != batches*per || st.Sender.Records != batches*per || st.Receiver.Records != batches*per ||
			st.Queued != batches*per || st.Sender.SendErrors != 0 {
			t.Errorf("stats %+v", st)
		}
		plane.mu.Lock()
		got := plane.installed[batches*per-1]
		plane.mu.Unlock()
		w := testConns(per, (batches-1)*per)[per-1]
		w.Flags |= ipvssync.FlagSync
		if got.Client != w.Client || got.Dest != w.Dest || got.State != w.State || got.Timeout != w.Timeout || got.Flags != w.Flags {
			t.Errorf("last record installed %v, want %v", &got, &w)
		}
		var b bytes.Buffer
		s.syn.writeStats(&b)
		for _, f := range []string{fmt.Sprintf("exported %d", batches*per), fmt.Sprintf("queued %d", batches*per)} {
			if !strings.Contains(b.String(), f) {
				t.Errorf("--xlb-stats sync section lacks %q:\n%s", f, b.String())
			}
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(newSyncCollector(s.syn))
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		vals := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				vals[mf.GetName()] += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
		for _, name := range []string{"xlb_sync_master_exported_total", "xlb_sync_master_records_total", "xlb_sync_backup_records_total", "xlb_sync_backup_queued_total"} {
			if vals[name] != batches*per {
				t.Errorf("metric %s = %v, want %d", name, vals[name], batches*per)
			}
		}
		if v, ok := vals["xlb_sync_interface_down"]; !ok || v != 0 {
			t.Errorf("xlb_sync_interface_down = %v, %v; want 0", v, ok)
		}
		if r := run1(s, "--stop-daemon master"); r.Code != 0 {
			t.Fatal(r)
		}
		if plane.export(testConns(1, 0)) {
			t.Error("the export still runs after --stop-daemon master")
		}
	})
}

func TestSyncPeerFlag(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
		err  bool
	}{
		{[]string{"10.0.0.2"}, "10.0.0.2:0", false},
		{[]string{"10.0.0.2:9000", "10.0.0.3"}, "10.0.0.2:9000,10.0.0.3:0", false},
		{[]string{"[2001:db8::2]:8848"}, "[2001:db8::2]:8848", false},
		{[]string{"2001:db8::2"}, "[2001:db8::2]:0", false},
		{[]string{"10.0.0.2", "2001:db8::2"}, "", true},
		{[]string{"224.0.0.81"}, "", true},
		{[]string{"0.0.0.0"}, "", true},
		{[]string{"host:80"}, "", true},
	} {
		var f syncFlag
		var err error
		for _, v := range tc.in {
			if err = f.Set(v); err != nil {
				break
			}
		}
		if (err != nil) != tc.err || !tc.err && f.String() != tc.want {
			t.Errorf("--sync-peer %v = %q, %v; want %q, error %v", tc.in, f.String(), err, tc.want, tc.err)
		}
	}
}

// The sync section of --xlb-stats exists only while a daemon runs.
func TestSyncStatsSection(t *testing.T) {
	var b bytes.Buffer
	newSyncDaemons(&fakeSyncPlane{}, nil, slog.New(slog.NewTextHandler(io.Discard, nil))).writeStats(&b)
	if b.Len() != 0 {
		t.Errorf("sync section without daemons: %q", b.String())
	}
}

// FuzzSyncPeerFlag: --sync-peer never panics, and what it takes is a
// unicast address of the first peer's family that prints back to itself.
func FuzzSyncPeerFlag(f *testing.F) {
	for _, s := range []string{"10.0.0.2", "10.0.0.2:8848", "[2001:db8::2]:1", "2001:db8::2", "224.0.0.81", "::", "a:b", "[fe80::1%eth0]:9"} {
		f.Add(s, "10.0.0.3")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		var fl syncFlag
		if fl.Set(a) != nil {
			return
		}
		err := fl.Set(b)
		for _, p := range fl {
			if !p.Addr().IsValid() || p.Addr().IsMulticast() || p.Addr().IsUnspecified() {
				t.Fatalf("--sync-peer %q %q took %v", a, b, p)
			}
		}
		if err == nil && fl[0].Addr().Unmap().Is4() != fl[1].Addr().Unmap().Is4() {
			t.Fatalf("--sync-peer %q %q: mixed families %v", a, b, fl)
		}
		var again syncFlag
		for _, s := range strings.Split(fl.String(), ",") {
			if err := again.Set(s); err != nil {
				t.Fatalf("--sync-peer %q: printed %q does not parse: %v", a, s, err)
			}
		}
	})
}
