//go:build linux

package metrics

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/dataplane"
	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/packet"
)

// fakeDataplane returns fixed statistics and counts the reads.
type fakeDataplane struct {
	st    dataplane.Stats
	reads atomic.Int32
}

func (f *fakeDataplane) Stats() dataplane.Stats {
	f.reads.Add(1)
	return f.st
}

// traffic are the statistics after known traffic on one queue: 3 TCP
// connections of 4 packets to one real server, 2 UDP datagrams to
// another, a frame with a bad IPv4 checksum dropped by XDP and one by the
// worker's parser, and a frame to a port no service has.
func traffic() dataplane.Stats {
	var st dataplane.Stats
	st.XDP[bpf.Redirect] = 3*4 + 2
	st.XDP[bpf.DropBadChecksum] = 1
	st.XDP[bpf.PassNoService] = 1
	q := dataplane.QueueStats{Queue: 0}
	q.Counters[dataplane.RxFrames] = 3*4 + 2 + 2
	q.Counters[dataplane.TxFrames] = 3*4 + 2
	q.Counters[dataplane.ConnNew] = 3 + 2
	q.Counters[dataplane.ConnHit] = 3 * 3
	q.Counters[dataplane.Malformed] = 1
	q.Counters[dataplane.NoService] = 1
	q.Counters[dataplane.TxBacklog] = 2
	q.Malformed[packet.BadChecksum] = 1
	q.Sockets = []dataplane.SocketStats{{Iface: "eth0", RxDropped: 1, RxRingFull: 1}}
	q.Conntrack.Entries, q.Conntrack.Created, q.Conntrack.Untracked = 5, 5, 0
	st.Queues = []dataplane.QueueStats{q}
	st.Neighbours.Destinations = 2
	st.Services = []dataplane.ServiceStats{
		{Service: ipvs.ServiceKey{Proto: ipvs.TCP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 80}, Dests: []dataplane.DestStats{
			{Addr: netip.MustParseAddrPort("10.0.1.1:80"), Weight: 1, Neighbour: dataplane.NeighbourResolved,
				InactConns: 3, Conns: 3, InPkts: 12, InBytes: 12 * 66},
		}},
		{Service: ipvs.ServiceKey{Proto: ipvs.UDP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 53}, Dests: []dataplane.DestStats{
			{Addr: netip.MustParseAddrPort("10.0.1.2:53"), Weight: 1, Neighbour: dataplane.NeighbourIncomplete,
				InactConns: 2, Conns: 2, InPkts: 2, InBytes: 2 * 40, Rates: dataplane.Rates{CPS: 1, InPPS: 1, InBPS: 40}},
		}},
	}
	return st
}

// expect is the text exposition of families with their help and type
// from the schema, and the sample lines given.
func expect(t *testing.T, families map[string][]string) (io.Reader, []string) {
	t.Helper()
	var b strings.Builder
	var names []string
	for _, d := range dataplane.Descs() {
		lines, ok := families[d.Name]
		if !ok {
			continue
		}
		names = append(names, d.Name)
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %v\n", d.Name, d.Help, d.Name, d.Kind)
		for _, l := range lines {
			fmt.Fprintf(&b, "%s%s\n", d.Name, l)
		}
	}
	if len(names) != len(families) {
		t.Fatalf("expect: %d of %d families are in the schema", len(names), len(families))
	}
	return strings.NewReader(b.String()), names
}

func TestCollectorMatchesTraffic(t *testing.T) {
	src := &fakeDataplane{st: traffic()}
	c := NewCollector(src, nil)
	want, names := expect(t, map[string][]string{
		"xlb_rx_frames_total":       {`{queue="0"} 16`},
		"xlb_tx_frames_total":       {`{queue="0"} 14`},
		"xlb_conns_scheduled_total": {`{queue="0"} 5`},
		"xlb_tx_backlog_frames":     {`{queue="0"} 2`},
		"xlb_drops_total": {`{queue="0",reason="copy_no_frame"} 0`,
			`{queue="0",reason="handoff_full"} 0`, `{queue="0",reason="handoff_no_frame"} 0`, `{queue="0",reason="icmp_no_conn"} 0`,
			`{queue="0",reason="local_dropped"} 0`, `{queue="0",reason="malformed"} 1`, `{queue="0",reason="no_dest"} 0`, `{queue="0",reason="no_local_port"} 0`,
			`{queue="0",reason="no_neighbour"} 0`, `{queue="0",reason="no_service"} 1`, `{queue="0",reason="nodest_expired"} 0`, `{queue="0",reason="not_new"} 0`,
			`{queue="0",reason="xmit_dropped"} 0`},
		"xlb_xsk_rx_dropped_total":    {`{iface="eth0",queue="0"} 1`},
		"xlb_xsk_rx_ring_full_total":  {`{iface="eth0",queue="0"} 1`},
		"xlb_conntrack_entries":       {`{queue="0"} 5`},
		"xlb_conntrack_created_total": {`{queue="0"} 5`},
		"xlb_real_server_connections_total": {`{real="10.0.1.1:80",service="tcp/10.0.0.1:80"} 3`,
			`{real="10.0.1.2:53",service="udp/10.0.0.1:53"} 2`},
		"xlb_real_server_packets_total": {
			`{direction="in",real="10.0.1.1:80",service="tcp/10.0.0.1:80"} 12`,
			`{direction="in",real="10.0.1.2:53",service="udp/10.0.0.1:53"} 2`,
			`{direction="out",real="10.0.1.1:80",service="tcp/10.0.0.1:80"} 0`,
			`{direction="out",real="10.0.1.2:53",service="udp/10.0.0.1:53"} 0`},
		"xlb_real_server_neighbour": {`{real="10.0.1.1:80",service="tcp/10.0.0.1:80",state="resolved"} 1`,
			`{real="10.0.1.2:53",service="udp/10.0.0.1:53",state="incomplete"} 1`},
		"xlb_service_bytes_per_second": {`{direction="in",service="tcp/10.0.0.1:80"} 0`,
			`{direction="in",service="udp/10.0.0.1:53"} 40`, `{direction="out",service="tcp/10.0.0.1:80"} 0`,
			`{direction="out",service="udp/10.0.0.1:53"} 0`},
		"xlb_service_inactive_connections": {`{service="tcp/10.0.0.1:80"} 3`, `{service="udp/10.0.0.1:53"} 2`},
	})
	if err := testutil.CollectAndCompare(c, want, names...); err != nil {
		t.Error(err)
	}
	// The XDP outcomes: all of them, zeros included.
	if n := testutil.CollectAndCount(c, "xlb_xdp_frames_total"); n != bpf.NumReasons {
		t.Errorf("%d xlb_xdp_frames_total series, want %d", n, bpf.NumReasons)
	}
	if n := testutil.CollectAndCount(c, "xlb_malformed_frames_total"); n != packet.NumReasons-1 {
		t.Errorf("%d xlb_malformed_frames_total series, want %d", n, packet.NumReasons-1)
	}
	// Connection sync: one series per queue, per drop reason.
	for name, want := range map[string]int{"xlb_sync_exported_total": 1, "xlb_sync_export_dropped_total": 1,
		"xlb_sync_installed_total": 1, "xlb_sync_updated_total": 1, "xlb_sync_install_drops_total": 7} {
		if n := testutil.CollectAndCount(c, name); n != want {
			t.Errorf("%d %s series, want %d", n, name, want)
		}
	}
}

// Read errors are counted, and the rest is still served.
func TestCollectorCountsErrors(t *testing.T) {
	st := traffic()
	st.Errors = []error{errors.New("read xdp counters: closed"), errors.New("read statistics of eth0 queue 0: EBADF")}
	c := NewCollector(&fakeDataplane{st: st}, nil)
	for i, want := range []float64{2, 4} {
		n := 0.0
		if err := collectValue(c, "xlb_scrape_errors_total", &n); err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("scrape %d: xlb_scrape_errors_total = %v, want %v", i+1, n, want)
		}
	}
	if n := testutil.CollectAndCount(c, "xlb_rx_frames_total"); n != 1 {
		t.Errorf("with read errors, %d xlb_rx_frames_total series, want 1", n)
	}
}

func collectValue(c *Collector, name string, v *float64) error {
	out, err := testutil.CollectAndFormat(c, expfmt.TypeTextPlain, name)
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, name+" ") {
			_, err := fmt.Sscan(strings.TrimPrefix(l, name+" "), v)
			return err
		}
	}
	return fmt.Errorf("%s not collected:\n%s", name, out)
}

// promlint finds nothing to say about the names, types and help.
func TestCollectorLint(t *testing.T) {
	problems, err := testutil.CollectAndLint(NewCollector(&fakeDataplane{st: traffic()}, nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

// The handler serves xlb's series and the Go and process collectors';
// each scrape reads the statistics once.
func TestHandler(t *testing.T) {
	src := &fakeDataplane{st: traffic()}
	h, err := Handler(src, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, body)
	}
	for _, want := range []string{`xlb_rx_frames_total{queue="0"} 16`, "xlb_scrape_errors_total 0", "go_goroutines", "process_cpu_seconds_total"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if n := src.reads.Load(); n != 1 {
		t.Errorf("one scrape read the statistics %d times, want 1", n)
	}
	if resp, err := http.Get(srv.URL + "/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET /: %s, want 404", resp.Status)
		}
	}
}
