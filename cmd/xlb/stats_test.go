//go:build linux

package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/dataplane"
)

// The text sums each key over queues and interfaces, keeps the layout
// scripts parse (bench's parseStats, the e2e tests' counter readers), and
// prints every sample the schema puts in a section, so it agrees with
// the metrics.
func TestFormatStats(t *testing.T) {
	var st dataplane.Stats
	st.XDP[bpf.Redirect] = 30
	st.XDP[bpf.DropBadChecksum] = 2
	for q := range 2 {
		qs := dataplane.QueueStats{Queue: q}
		qs.Counters[dataplane.RxFrames] = 10
		qs.Counters[dataplane.ConnNew] = uint64(q + 1)
		qs.Sockets = []dataplane.SocketStats{{Iface: "eth0", RxRingFull: 1}, {Iface: "eth1", RxRingFull: 2, RxDropped: 3}}
		qs.Conntrack.Evicted = 4
		st.Queues = append(st.Queues, qs)
	}
	st.Neighbours = dataplane.NeighbourStats{Destinations: 3, Unresolved: 1, LinkDowns: 1,
		List: []dataplane.UnresolvedDest{{Addr: netip.MustParseAddr("10.0.1.3"), Reason: "neighbour failed"}}}
	st.Errors = []error{errors.New("read xdp counters: closed")}
	var b bytes.Buffer
	formatStats(&b, &st, bpf.Native)
	out := b.String()
	for _, want := range []string{
		"xdp (native):\n  redirect               30\n  drop_bad_checksum      2\n",
		"workers:\n  rx_frames              20\n  conn_new               3\n",
		"af_xdp sockets:\n  rx_dropped 6, rx_ring_full 6, fill_ring_empty 0, rx_invalid 0, tx_invalid 0, tx_ring_empty 0\n",
		"neighbours:\n  destinations 3, unresolved 1, mac_changes 0, link_downs 1,",
		"  unresolved 10.0.1.3: neighbour failed\n",
		"conntrack:\n  evicted                8\n",
		"errors:\n  read xdp counters: closed\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("formatStats lacks %q:\n%s", want, out)
		}
	}
	if statField(out, "unresolved") != 1 || statField(out, "link_downs") != 1 || counter(out, "conn_new") != 3 {
		t.Errorf("the e2e tests' readers misread:\n%s", out)
	}
	// Every non-zero sample of a section is printed under its key.
	sums := map[string]uint64{}
	for s := range st.Samples {
		if s.Desc.Section != "" {
			sums[s.Desc.Section+"/"+s.Key] += s.Value
		}
	}
	for k, v := range sums {
		if v == 0 {
			continue
		}
		key := k[strings.Index(k, "/")+1:]
		if statField(out, key) != int(v) {
			t.Errorf("%s = %d in the samples, %d in the text:\n%s", k, v, statField(out, key), out)
		}
	}
}

// A --metrics address that cannot be listened on refuses the start
// before the interface is touched (this one does not even exist).
func TestMetricsAddressRefused(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, addr := range []string{busy.Addr().String(), "127.0.0.1:99999", "not an address"} {
		sock := filepath.Join(t.TempDir(), "xlb.sock")
		var stderr bytes.Buffer
		err := daemon([]string{"--iface", "xlbnosuch0", "--socket", sock, "--metrics", addr}, io.Discard, &stderr)
		if err == nil || !strings.Contains(err.Error(), "--metrics "+addr) {
			t.Errorf("xlb run --metrics %s: %v, want a --metrics error", addr, err)
		}
	}
}
