//go:build linux

package dataplane

import (
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/packet"
	"github.com/xlbproject/xlb/modes"
)

// sampleStats are statistics with two queues, two interfaces and two
// services, every field non-zero where it can be.
func sampleStats() Stats {
	var st Stats
	for r := range st.XDP {
		st.XDP[r] = uint64(100 + r)
	}
	for q := range 2 {
		qs := QueueStats{Queue: q}
		for c := range qs.Counters {
			qs.Counters[c] = uint64(1000*(q+1) + c)
		}
		for r := range qs.Malformed {
			qs.Malformed[r] = uint64(r)
		}
		for v := range qs.Rewrite {
			qs.Rewrite[v] = uint64(v)
		}
		for _, ifc := range []string{"eth0", "eth1"} {
			qs.Sockets = append(qs.Sockets, SocketStats{Iface: ifc, RxDropped: 1, RxInvalidDescs: 2, TxInvalidDescs: 3,
				RxRingFull: 4, RxFillRingEmpty: 5, TxRingEmpty: 6})
		}
		qs.Conntrack.Entries, qs.Conntrack.Evicted, qs.Conntrack.Untracked = 7, 8, 9
		st.Queues = append(st.Queues, qs)
	}
	st.Neighbours = NeighbourStats{Destinations: 3, Unresolved: 1, Probes: 4}
	svc := ipvs.ServiceKey{Proto: ipvs.TCP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 80}
	udp := ipvs.ServiceKey{Proto: ipvs.UDP, Addr: netip.MustParseAddr("2001:db8::1"), Port: 53}
	st.Services = []ServiceStats{
		{Service: svc, Dests: []DestStats{
			{Addr: netip.MustParseAddrPort("10.0.1.1:80"), Weight: 1, Neighbour: NeighbourResolved, ActiveConns: 2, Conns: 5, InPkts: 50, InBytes: 5000},
			{Addr: netip.MustParseAddrPort("10.0.1.2:80"), Weight: 2, Neighbour: NeighbourFailed, InactConns: 1, Conns: 3, InPkts: 30, InBytes: 3000},
		}},
		{Service: udp, Dests: []DestStats{
			{Addr: netip.MustParseAddrPort("[2001:db8::2]:53"), Neighbour: NeighbourIncomplete, Conns: 1, InPkts: 2, InBytes: 200,
				Rates: Rates{CPS: 1, InPPS: 2, InBPS: 200}},
		}},
	}
	st.Errors = []error{errors.New("read xdp counters: boom")}
	return st
}

// Every sample is of a family in Descs, with as many label values as the
// family has labels, named as Prometheus expects, and no series twice.
func TestSamplesFollowSchema(t *testing.T) {
	st := sampleStats()
	descs := Descs()
	known := map[*Desc]bool{}
	names := map[string]bool{}
	for _, d := range descs {
		if names[d.Name] {
			t.Errorf("family %s described twice", d.Name)
		}
		names[d.Name], known[d] = true, true
		if !strings.HasPrefix(d.Name, "xlb_") || d.Help == "" {
			t.Errorf("family %q: want an xlb_ name and help text", d.Name)
		}
		if total := strings.HasSuffix(d.Name, "_total"); total != (d.Kind == KindCounter) {
			t.Errorf("family %s is a %v: counters, and only they, end in _total", d.Name, d.Kind)
		}
	}
	seen := map[string]bool{}
	used := map[*Desc]bool{}
	for s := range st.Samples {
		if !known[s.Desc] {
			t.Fatalf("sample %s of a family not in Descs", s.Desc.Name)
		}
		used[s.Desc] = true
		if len(s.Labels) != len(s.Desc.Labels) {
			t.Errorf("%s: label values %q for labels %q", s.Desc.Name, s.Labels, s.Desc.Labels)
		}
		id := s.Desc.Name + "{" + strings.Join(s.Labels, ",") + "}"
		if seen[id] {
			t.Errorf("series %s yielded twice", id)
		}
		seen[id] = true
		if s.Desc.Section != "" && s.Key == "" {
			t.Errorf("%s: printed in %s without a key", id, s.Desc.Section)
		}
	}
	for _, d := range descs {
		if !used[d] && d != descOtherCounter {
			t.Errorf("family %s never yielded", d.Name)
		}
	}
}

// The samples carry Stats' values: spot checks of each part.
func TestSamplesValues(t *testing.T) {
	st := sampleStats()
	get := func(name string, labels ...string) (uint64, bool) {
		for s := range st.Samples {
			if s.Desc.Name == name && slices.Equal(s.Labels, labels) {
				return s.Value, true
			}
		}
		return 0, false
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   uint64
	}{
		{"xlb_xdp_frames_total", []string{"drop", "drop_bad_checksum"}, 100 + uint64(bpf.DropBadChecksum)},
		{"xlb_xdp_frames_total", []string{"redirect", "redirect"}, 100 + uint64(bpf.Redirect)},
		{"xlb_xdp_frames_total", []string{"pass", "pass_no_service"}, 100 + uint64(bpf.PassNoService)},
		{"xlb_rx_frames_total", []string{"1"}, 2000 + uint64(RxFrames)},
		{"xlb_drops_total", []string{"0", "no_service"}, 1000 + uint64(NoService)},
		{"xlb_tx_backlog_frames", []string{"0"}, 1000 + uint64(TxBacklog)},
		{"xlb_malformed_frames_total", []string{"1", "bad_checksum"}, uint64(packet.BadChecksum)},
		{"xlb_rewrite_drops_total", []string{"0", "too_big"}, uint64(modes.TooBig)},
		{"xlb_xsk_tx_ring_empty_total", []string{"eth1", "1"}, 6},
		{"xlb_conntrack_evicted_total", []string{"1"}, 8},
		{"xlb_conntrack_untracked_total", []string{"0"}, 9},
		{"xlb_neighbour_probes_total", nil, 4},
		{"xlb_service_connections_total", []string{"tcp/10.0.0.1:80"}, 8},
		{"xlb_service_packets_total", []string{"tcp/10.0.0.1:80", "in"}, 80},
		{"xlb_service_active_connections", []string{"tcp/10.0.0.1:80"}, 2},
		{"xlb_real_server_bytes_total", []string{"tcp/10.0.0.1:80", "10.0.1.2:80", "in"}, 3000},
		{"xlb_real_server_weight", []string{"tcp/10.0.0.1:80", "10.0.1.2:80"}, 2},
		{"xlb_real_server_neighbour", []string{"tcp/10.0.0.1:80", "10.0.1.2:80", "failed"}, 1},
		{"xlb_real_server_neighbour", []string{"udp/[2001:db8::1]:53", "[2001:db8::2]:53", "incomplete"}, 1},
		{"xlb_real_server_bytes_per_second", []string{"udp/[2001:db8::1]:53", "[2001:db8::2]:53", "in"}, 200},
	} {
		if got, ok := get(c.name, c.labels...); !ok || got != c.want {
			t.Errorf("%s%q = %d (found %v), want %d", c.name, c.labels, got, ok, c.want)
		}
	}
}

func TestCounterKinds(t *testing.T) {
	for c := Counter(0); c < numCounters; c++ {
		want := KindCounter
		if c == TxBacklog || c == SYNLevel {
			want = KindGauge
		}
		if c.Kind() != want {
			t.Errorf("%v.Kind() = %v, want %v", c, c.Kind(), want)
		}
		if counterSeries[c].desc == nil {
			t.Errorf("%v has no family", c)
		}
	}
}

func TestXDPAction(t *testing.T) {
	for r := range bpf.Reason(bpf.NumReasons) {
		a := XDPAction(r)
		switch name := r.String(); {
		case name == "malformed" || strings.HasPrefix(name, "pass_"):
			if a != "pass" {
				t.Errorf("XDPAction(%v) = %s, want pass", r, a)
			}
		case strings.HasPrefix(name, "drop_") && a != "drop", strings.HasPrefix(name, "redirect") && a != "redirect":
			t.Errorf("XDPAction(%v) = %s", r, a)
		}
	}
}

func TestServiceLabel(t *testing.T) {
	for _, c := range []struct {
		k    ipvs.ServiceKey
		want string
	}{
		{ipvs.ServiceKey{Proto: ipvs.TCP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 80}, "tcp/10.0.0.1:80"},
		{ipvs.ServiceKey{Proto: ipvs.UDP, Addr: netip.MustParseAddr("::ffff:10.0.0.1"), Port: 53}, "udp/10.0.0.1:53"},
		{ipvs.ServiceKey{Proto: ipvs.SCTP, Addr: netip.MustParseAddr("2001:db8::1"), Port: 9}, "sctp/[2001:db8::1]:9"},
		{ipvs.ServiceKey{FWMark: 7, Addr: netip.IPv4Unspecified()}, "fwmark/7"},
		{ipvs.ServiceKey{FWMark: 7, Addr: netip.IPv6Unspecified()}, "fwmark6/7"},
	} {
		if got := ServiceLabel(c.k); got != c.want {
			t.Errorf("ServiceLabel(%+v) = %q, want %q", c.k, got, c.want)
		}
	}
}

// Stats lists every real server with its next-hop state, and reports
// what it cannot read instead of leaving it out silently.
func TestStatsServicesAndErrors(t *testing.T) {
	d, fn := testDataplane(t, 16)
	fn.addRoute("10.0.0.1/32", "", fakeIfindex)
	fn.arp[destAddr(1)] = mac(1)
	if err := d.Apply(dpConfig(destAddr(2), destAddr(1))); err != nil {
		t.Fatal(err)
	}
	d.WaitResolved(100 * time.Millisecond)
	st := d.Stats()
	if len(st.Errors) != 0 {
		t.Errorf("Stats().Errors = %v, want none", st.Errors)
	}
	if len(st.Services) != 1 || len(st.Services[0].Dests) != 2 {
		t.Fatalf("Stats().Services = %+v, want 1 service with 2 real servers", st.Services)
	}
	for i, want := range []struct {
		addr  netip.Addr
		state NeighbourState
	}{{destAddr(1), NeighbourResolved}, {destAddr(2), NeighbourNoRoute}} {
		got := st.Services[0].Dests[i]
		if got.Addr != netip.AddrPortFrom(want.addr, 80) || got.Neighbour != want.state || got.Weight != 1 {
			t.Errorf("real server %d = %v %v weight %d, want %v:80 %v weight 1", i, got.Addr, got.Neighbour, got.Weight, want.addr, want.state)
		}
	}
	if len(st.Queues) != 1 {
		t.Errorf("Stats().Queues has %d queues, want 1", len(st.Queues))
	}
	d.Close()
	if st := d.Stats(); len(st.Errors) == 0 || !strings.Contains(st.Errors[0].Error(), "read xdp counters") {
		t.Errorf("Stats() with the XDP maps closed: errors %v, want the read error", st.Errors)
	}
}

// The worker publishes the detail of its Malformed counter by parser
// reason, for xlb_malformed_frames_total.
func TestWorkerPublishesMalformedReasons(t *testing.T) {
	w, k := testWorker(t)
	f := tcpTo(20000, 80, syn)
	k.deliver(f[:14+20+10]) // a truncated TCP header
	w.poll(1)
	var q QueueStats
	w.stats.snapshot(&q)
	var sum uint64
	for _, n := range q.Malformed {
		sum += n
	}
	if q.Counters[Malformed] != 1 || sum != 1 || q.Malformed[packet.Malformed] != 1 {
		t.Errorf("after a truncated frame: malformed %d, by reason %v; want 1, 1 as %v", q.Counters[Malformed], q.Malformed, packet.Malformed)
	}
}

// A Counter added without a family is still published, under
// xlb_worker_events_total{counter="name"}, and printed under its name.
func TestCounterWithoutFamily(t *testing.T) {
	saved := counterSeries[Copied]
	counterSeries[Copied].desc = nil
	defer func() { counterSeries[Copied] = saved }()
	st := sampleStats()
	found := false
	for s := range st.Samples {
		if s.Desc == descOtherCounter {
			found = slices.Equal(s.Labels, []string{"0", "copied"}) || found
			if s.Key != "copied" || s.Desc.Section != SectionWorkers {
				t.Errorf("fallback sample %+v: want key copied in %s", s, SectionWorkers)
			}
		}
	}
	if !found {
		t.Error(`no xlb_worker_events_total{queue="0",counter="copied"}`)
	}
}

// Every conntrack.Stats field has a series: a new field fails here until
// conntrackSeries names it.
func TestConntrackSeriesComplete(t *testing.T) {
	var c conntrack.Stats
	if n, want := len(conntrackSeries(&c)), reflect.TypeOf(c).NumField(); n != want {
		t.Errorf("conntrackSeries has %d series for the %d fields of conntrack.Stats", n, want)
	}
}
