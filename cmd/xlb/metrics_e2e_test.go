//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/xlbproject/xlb/testenv"
)

// metricsAddr is where the tests' xlb serves /metrics: the loopback of
// the director's namespace, so scrapes never cross the balanced link.
const metricsAddr = "127.0.0.1:9100"

// scraped are the series of one scrape, by name{label="value",...} with
// the labels sorted.
type scraped map[string]float64

// scrape GETs /metrics from inside the director's namespace.
func scrape(t *testing.T, env *testenv.Env) scraped {
	t.Helper()
	resp, err := env.Director.HTTPClient(false, 5*time.Second).Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("scrape: %s %v\n%s", resp.Status, err, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse scrape: %v\n%.2000s", err, body)
	}
	s := scraped{}
	for name, f := range fams {
		for _, m := range f.Metric {
			var ls []string
			for _, l := range m.Label {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			var v float64
			switch {
			case m.Counter != nil:
				v = m.Counter.GetValue()
			case m.Gauge != nil:
				v = m.Gauge.GetValue()
			default:
				continue
			}
			s[seriesKey(name, ls...)] = v
		}
	}
	return s
}

func seriesKey(name string, labels ...string) string {
	ls := slices.Clone(labels)
	slices.Sort(ls)
	return name + "{" + strings.Join(ls, ",") + "}"
}

// get returns a series' value; a missing series fails the test.
func (s scraped) get(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	v, ok := s[seriesKey(name, labels...)]
	if !ok {
		t.Fatalf("no series %s", seriesKey(name, labels...))
	}
	return v
}

// clientCounters counts, in the client's output hook (nftables), the
// packets and IP bytes the client's stack sends to the TCP and UDP
// services: what xlb must count per real server, exactly.
type clientCounters struct{ h *testenv.Host }

func newClientCounters(t *testing.T, h *testenv.Host) clientCounters {
	t.Helper()
	rules := fmt.Sprintf(`table ip xlbmetrics {
	counter tcp80 {}
	counter udp53 {}
	chain out {
		type filter hook output priority 0; policy accept;
		ip daddr %v tcp dport 80 counter name tcp80
		ip daddr %v udp dport 53 counter name udp53
	}
}
`, testenv.VIP, testenv.VIP)
	f := filepath.Join(t.TempDir(), "counters.nft")
	if err := os.WriteFile(f, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := h.Command("nft", "-f", f).CombinedOutput(); err != nil {
		t.Fatalf("nft -f (nftables is a test dependency, see make deps): %v\n%s", err, out)
	}
	return clientCounters{h}
}

var nftCounterRE = regexp.MustCompile(`packets (\d+) bytes (\d+)`)

func (c clientCounters) read(t *testing.T, name string) (pkts, bytes float64) {
	t.Helper()
	out, err := c.h.Command("nft", "list", "counter", "ip", "xlbmetrics", name).CombinedOutput()
	m := nftCounterRE.FindStringSubmatch(string(out))
	if err != nil || m == nil {
		t.Fatalf("nft list counter %s: %v\n%s", name, err, out)
	}
	p, _ := strconv.ParseFloat(m[1], 64)
	b, _ := strconv.ParseFloat(m[2], 64)
	return p, b
}

// rawFrames builds, from the client to the VIP: frames with a wrong IPv4
// header checksum to the UDP service (XDP drops them), UDP frames to a
// port no service has (XDP passes them), and TCP ACKs without SYN to the
// TCP service that match no connection (the worker drops them as
// not_new), each from its own source port.
func rawFrames(t *testing.T, env *testenv.Env, badCsum, noService, notNew int) [][]byte {
	t.Helper()
	build := func(sport, dport uint16, tcp bool) []byte {
		eth := layers.Ethernet{SrcMAC: env.Client.MAC, DstMAC: env.Director.MAC, EthernetType: layers.EthernetTypeIPv4}
		ip := layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP,
			SrcIP: testenv.ClientAddr.AsSlice(), DstIP: testenv.VIP.AsSlice()}
		var l4 gopacket.SerializableLayer
		if tcp {
			ip.Protocol = layers.IPProtocolTCP
			seg := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), ACK: true, Seq: 1, Ack: 1, Window: 1000}
			seg.SetNetworkLayerForChecksum(&ip)
			l4 = seg
		} else {
			u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
			u.SetNetworkLayerForChecksum(&ip)
			l4 = u
		}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			&eth, &ip, l4, gopacket.Payload("metrics")); err != nil {
			t.Fatal(err)
		}
		return append([]byte(nil), buf.Bytes()...)
	}
	var fs [][]byte
	port := uint16(41000)
	for range badCsum {
		f := build(port, 53, false)
		f[14+10] ^= 0xff // the IPv4 header checksum
		fs = append(fs, f)
		port++
	}
	for range noService {
		fs = append(fs, build(port, 9999, false))
		port++
	}
	for range notNew {
		fs = append(fs, build(port, 80, true))
		port++
	}
	return fs
}

// tcpExchange opens a connection to the TCP service from a new port,
// sends an HTTP/1.0 request and reads the answer until the server closes.
func tcpExchange(env *testenv.Env) error {
	c, err := env.Client.DialContext(context.Background(), "tcp4", netip.AddrPortFrom(testenv.VIP, 80).String())
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		return err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if !strings.Contains(string(b), "200 OK") {
		return fmt.Errorf("answer %q", b)
	}
	return nil
}

// udpExchange sends one datagram of n bytes from a new port to the UDP
// service and waits for the answer. It does not retry: every datagram
// sent is one the metrics must count.
func udpExchange(env *testenv.Env, n int) error {
	c, err := env.Client.DialContext(context.Background(), "udp4", netip.AddrPortFrom(testenv.VIP, 53).String())
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(make([]byte, n)); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err = c.Read(make([]byte, 256))
	return err
}

// The metrics endpoint, scraped before and after known traffic: each
// counter moves by what was sent. Exact where the dataplane counts
// exactly (connections, packets and bytes per real server, drops by
// reason, XDP outcomes, ring and conntrack counters); rates within the
// bound the estimator allows. Then a table too small for the
// connections shows the flood-mode counters, and --xlb-stats and the
// counters printed at exit agree with the last scrape.
func TestMetricsScrape(t *testing.T) {
	testenv.RequireRoot(t)
	env := testenv.New(t, testenv.DefaultOptions())
	d := startXLB(t, env, drRules(env, "rr"), "--metrics", metricsAddr)
	// A real server whose MAC never resolves: nothing has its address.
	dead := netip.AddrFrom4([4]byte{198, 18, 0, 99})
	for _, cmd := range [][]string{{"-A", "-u", testenv.VIP.String() + ":54", "-s", "rr"},
		{"-a", "-u", testenv.VIP.String() + ":54", "-r", dead.String() + ":54", "-g"}} {
		if _, err := d.ctl(cmd...); err != nil {
			t.Fatal(err)
		}
	}
	cc := newClientCounters(t, env.Client)
	before := scrape(t, env)

	const nTCP, nUDP, udpLen = 6, 9, 100
	const badCsum, noService, notNew = 5, 4, 3
	for i := range nTCP {
		if err := tcpExchange(env); err != nil {
			t.Fatalf("TCP connection %d: %v\n%s", i, err, d.Output.String())
		}
	}
	for i := range nUDP {
		if err := udpExchange(env, udpLen); err != nil {
			t.Fatalf("UDP datagram %d: %v\n%s", i, err, d.Output.String())
		}
	}
	if err := sendRaw(env.Client, rawFrames(t, env, badCsum, noService, notNew), 1); err != nil {
		t.Fatal(err)
	}
	tcpPkts, tcpBytes := cc.read(t, "tcp80")
	udpPkts, udpBytes := cc.read(t, "udp53")
	if udpPkts != nUDP || udpBytes != nUDP*(20+8+udpLen) {
		t.Fatalf("the client sent %v UDP packets of %v bytes, want %d of %d", udpPkts, udpBytes, nUDP, nUDP*(20+8+udpLen))
	}

	// The workers publish at batch edges and conntrack at each expiry
	// pass (at least every 100 ms when idle); the rate estimator ticks
	// every 2 s. Wait for a tick that saw the UDP bytes.
	udpSvc, tcpSvc := "service=udp/"+testenv.VIP.String()+":53", "service=tcp/"+testenv.VIP.String()+":80"
	var after scraped
	for deadline := time.Now().Add(6 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		after = scrape(t, env)
		if after.get(t, "xlb_service_bytes_per_second", udpSvc, "direction=in") > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the UDP service's byte rate stayed 0")
		}
	}
	delta := func(name string, labels ...string) float64 {
		t.Helper()
		return after.get(t, name, labels...) - before.get(t, name, labels...)
	}
	t.Logf("client sent %v TCP packets (%v bytes) and %v UDP (%v bytes); UDP service rate %v B/s",
		tcpPkts, tcpBytes, udpPkts, udpBytes, after.get(t, "xlb_service_bytes_per_second", udpSvc, "direction=in"))
	check := func(what string, got, want float64) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}

	// Per real server and service: rr splits the connections evenly;
	// the packets and bytes in are what the client's stack sent.
	var sum = map[string]float64{}
	for i := range env.Reals {
		for _, s := range []struct {
			svc   string
			port  int
			conns float64
		}{{tcpSvc, 80, nTCP / 3}, {udpSvc, 53, nUDP / 3}} {
			real := fmt.Sprintf("real=%v:%d", testenv.RealAddr(i), s.port)
			check("connections of "+real+" "+s.svc, delta("xlb_real_server_connections_total", s.svc, real), s.conns)
			check("active connections of "+real, after.get(t, "xlb_real_server_active_connections", s.svc, real), 0)
			check("inactive connections of "+real, after.get(t, "xlb_real_server_inactive_connections", s.svc, real), s.conns)
			check("neighbour of "+real, after.get(t, "xlb_real_server_neighbour", s.svc, real, "state=resolved"), 1)
			check("weight of "+real, after.get(t, "xlb_real_server_weight", s.svc, real), 1)
			check("packets out of "+real+" (DR: replies bypass xlb)", delta("xlb_real_server_packets_total", s.svc, real, "direction=out"), 0)
			sum[s.svc+"pkts"] += delta("xlb_real_server_packets_total", s.svc, real, "direction=in")
			sum[s.svc+"bytes"] += delta("xlb_real_server_bytes_total", s.svc, real, "direction=in")
			if r := after.get(t, "xlb_real_server_bytes_per_second", s.svc, real, "direction=in"); r > delta("xlb_real_server_bytes_total", s.svc, real, "direction=in")/2 {
				t.Errorf("byte rate of %s %s = %v/s, over its bytes in one 2 s period", real, s.svc, r)
			}
		}
	}
	check("TCP packets to the real servers", sum[tcpSvc+"pkts"], tcpPkts)
	check("TCP bytes to the real servers", sum[tcpSvc+"bytes"], tcpBytes)
	check("UDP packets to the real servers", sum[udpSvc+"pkts"], udpPkts)
	check("UDP bytes to the real servers", sum[udpSvc+"bytes"], udpBytes)
	check("TCP service connections", delta("xlb_service_connections_total", tcpSvc), nTCP)
	check("TCP service packets", delta("xlb_service_packets_total", tcpSvc, "direction=in"), tcpPkts)
	check("UDP service bytes", delta("xlb_service_bytes_total", udpSvc, "direction=in"), udpBytes)
	if r := after.get(t, "xlb_service_bytes_per_second", udpSvc, "direction=in"); r > udpBytes/2 {
		t.Errorf("UDP service byte rate %v/s, over its bytes in one 2 s period", r)
	}
	deadSvc, deadReal := "service=udp/"+testenv.VIP.String()+":54", "real="+dead.String()+":54"
	if after[seriesKey("xlb_real_server_neighbour", deadSvc, deadReal, "state=incomplete")]+
		after[seriesKey("xlb_real_server_neighbour", deadSvc, deadReal, "state=failed")] != 1 {
		t.Errorf("the dead real server's neighbour state is neither incomplete nor failed: %v", matching(after, "xlb_real_server_neighbour"))
	}
	check("neighbour destinations", after.get(t, "xlb_neighbour_destinations"), 4)
	check("neighbour unresolved", after.get(t, "xlb_neighbour_unresolved"), 1)

	// The worker (one queue): every client frame to a service reached
	// it; all but the not_new ones were forwarded.
	q := "queue=0"
	check("rx frames", delta("xlb_rx_frames_total", q), tcpPkts+udpPkts+notNew)
	check("tx frames", delta("xlb_tx_frames_total", q), tcpPkts+udpPkts)
	check("connections scheduled", delta("xlb_conns_scheduled_total", q), nTCP+nUDP)
	check("conn hits", delta("xlb_conn_hits_total", q), tcpPkts-nTCP)
	check("not_new drops", delta("xlb_drops_total", q, "reason=not_new"), notNew)
	for _, r := range []string{"malformed", "no_service", "no_dest", "no_neighbour", "xmit_dropped", "no_local_port", "copy_no_frame", "icmp_no_conn"} {
		check(r+" drops", delta("xlb_drops_total", q, "reason="+r), 0)
	}
	check("tx backlog", after.get(t, "xlb_tx_backlog_frames", q), 0)

	// XDP: the bad checksums dropped, the port without a service
	// passed, the rest redirected to the worker.
	check("xdp drop_bad_checksum", delta("xlb_xdp_frames_total", "action=drop", "reason=drop_bad_checksum"), badCsum)
	check("xdp pass_no_service", delta("xlb_xdp_frames_total", "action=pass", "reason=pass_no_service"), noService)
	check("xdp redirect", delta("xlb_xdp_frames_total", "action=redirect", "reason=redirect"), tcpPkts+udpPkts+notNew)

	// The rings: nothing lost or invalid at this rate.
	sock := []string{"iface=eth0", q}
	for _, n := range []string{"xlb_xsk_rx_dropped_total", "xlb_xsk_rx_ring_full_total", "xlb_xsk_rx_invalid_descriptors_total", "xlb_xsk_tx_invalid_descriptors_total"} {
		check(n, delta(n, sock...), 0)
	}
	after.get(t, "xlb_xsk_fill_ring_empty_total", sock...)
	after.get(t, "xlb_xsk_tx_ring_empty_total", sock...)

	// Conntrack: one entry per connection and flow, none evicted, no
	// flow left untracked; the not_new frames counted there too.
	check("conntrack created", delta("xlb_conntrack_created_total", q), nTCP+nUDP)
	check("conntrack not_new", delta("xlb_conntrack_not_new_total", q), notNew)
	gone := delta("xlb_conntrack_expired_total", q) + delta("xlb_conntrack_evicted_total", q) + delta("xlb_conntrack_reused_total", q)
	check("conntrack entries", delta("xlb_conntrack_entries", q), nTCP+nUDP-gone)
	for _, n := range []string{"xlb_conntrack_evicted_total", "xlb_conntrack_full_total", "xlb_conntrack_untracked_total"} {
		check(n, delta(n, q), 0)
	}
	check("scrape errors", after.get(t, "xlb_scrape_errors_total"), 0)

	// --xlb-stats renders the same samples: with no traffic since, it
	// shows the scrape's values (summed over queues, one here).
	stats := xlbStats(t, d)
	last := scrape(t, env)
	for key, series := range map[string]string{"rx_frames": seriesKey("xlb_rx_frames_total", q),
		"conn_new": seriesKey("xlb_conns_scheduled_total", q), "not_new": seriesKey("xlb_drops_total", q, "reason=not_new"),
		"created": seriesKey("xlb_conntrack_created_total", q), "destinations": seriesKey("xlb_neighbour_destinations")} {
		if float64(statField(stats, key)) != last[series] {
			t.Errorf("--xlb-stats %s = %d, /metrics %s = %v:\n%s", key, statField(stats, key), series, last[series], stats)
		}
	}
	if err := d.stop(); err != nil {
		t.Fatalf("xlb exit: %v\n%s", err, d.Output.String())
	}
	exit := d.Stdout.String()
	if float64(counter(exit, "rx_frames")) != last[seriesKey("xlb_rx_frames_total", q)] ||
		float64(counter(exit, "created")) != last[seriesKey("xlb_conntrack_created_total", q)] {
		t.Errorf("the counters printed at exit disagree with the last scrape (rx_frames %v, created %v):\n%s",
			last[seriesKey("xlb_rx_frames_total", q)], last[seriesKey("xlb_conntrack_created_total", q)], exit)
	}

	t.Run("flood", func(t *testing.T) { testMetricsFlood(t, env) })
}

// With a table of 4 entries held by 4 established connections, new UDP
// flows find no entry and nothing to evict: each is forwarded
// untracked, and counted as such.
func testMetricsFlood(t *testing.T, env *testenv.Env) {
	const capacity, flows = 4, 5
	startXLB(t, env, drRules(env, "rr"), "--metrics", metricsAddr, "--conns", strconv.Itoa(capacity))
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range capacity {
		c, err := env.Client.DialContext(context.Background(), "tcp4", netip.AddrPortFrom(testenv.VIP, 80).String())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	time.Sleep(100 * time.Millisecond) // the handshakes' last ACKs reach xlb
	before := scrape(t, env)
	for i := range flows {
		if err := udpExchange(env, 10); err != nil {
			t.Fatalf("UDP flow %d with the table full: %v", i, err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	after := scrape(t, env)
	q := "queue=0"
	for _, c := range []struct {
		name string
		want float64
	}{
		{"xlb_conntrack_full_total", flows},
		{"xlb_conntrack_untracked_total", flows},
		{"xlb_conntrack_evicted_total", 0},
		{"xlb_conntrack_created_total", 0},
		{"xlb_conns_scheduled_total", flows},
	} {
		if got := after.get(t, c.name, q) - before.get(t, c.name, q); got != c.want {
			t.Errorf("%s moved by %v, want %v", c.name, got, c.want)
		}
	}
	if got := after.get(t, "xlb_conntrack_entries", q); got != capacity {
		t.Errorf("xlb_conntrack_entries = %v, want %d", got, capacity)
	}
	var pkts float64
	for i := range env.Reals {
		k := []string{"service=udp/" + testenv.VIP.String() + ":53", fmt.Sprintf("real=%v:53", testenv.RealAddr(i)), "direction=in"}
		pkts += after.get(t, "xlb_real_server_packets_total", k...) - before.get(t, "xlb_real_server_packets_total", k...)
	}
	if pkts != flows {
		t.Errorf("untracked UDP packets to the real servers = %v, want %d", pkts, flows)
	}
}

// matching lists the scraped series of one family, for messages.
func matching(s scraped, name string) []string {
	var out []string
	for k, v := range s {
		if strings.HasPrefix(k, name+"{") {
			out = append(out, fmt.Sprintf("%s %v", k, v))
		}
	}
	slices.Sort(out)
	return out
}
