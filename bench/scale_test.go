//go:build linux

package main

import (
	"bytes"
	"io"
	"net/netip"
	"strings"
	"testing"

	"gonum.org/v1/plot/plotter"

	"github.com/xlbproject/xlb/testenv"
)

func TestGenBatch(t *testing.T) {
	for _, c := range []struct {
		rate float64
		want uint64
	}{{0, 64}, {1000, 1}, {500, 1}, {10000, 10}, {100000, 64}, {250000, 64}} {
		if got := (genSpec{rate: c.rate}).batch(); got != c.want {
			t.Errorf("batch at %.0f pps = %d, want %d", c.rate, got, c.want)
		}
	}
	for _, c := range []struct {
		rate float64
		want uint64
	}{{0, 256}, {1000, 1}, {100000, 100}, {250000, 250}, {1e6, 256}} {
		if got := (genSpec{rate: c.rate, maxBatch: xdpBatch}).batch(); got != c.want {
			t.Errorf("xdp batch at %.0f pps = %d, want %d", c.rate, got, c.want)
		}
	}
}

// The scaling destinations are distinct, outside the topology's
// addresses and inside rsNet.
func TestRSAddr(t *testing.T) {
	seen := map[netip.Addr]bool{}
	for i := 0; i < maxRS; i++ {
		a := rsAddr(i)
		if seen[a] || !rsNet.Contains(a) || a == testenv.VIP || a.As4()[3] == 0 || a.As4()[3] == 255 {
			t.Fatalf("rsAddr(%d) = %v: repeated, outside %v, or a network/broadcast-like address", i, a, rsNet)
		}
		seen[a] = true
	}
}

func TestCheckSpread(t *testing.T) {
	b := &bench{log: io.Discard, env: &testenv.Env{Reals: []*testenv.Host{{Name: "rs1"}, {Name: "rs2"}, {Name: "rs3"}}}}
	for _, c := range []struct {
		n    int
		each []uint64
		ok   bool
	}{
		{2, []uint64{500, 500, 0}, true},
		{2, []uint64{1000, 0, 0}, false},    // all to one server
		{2, []uint64{500, 400, 100}, false}, // to a server holding none
		{1000, []uint64{334, 333, 333}, true},
		{1000, []uint64{600, 300, 100}, false},
		{10, []uint64{0, 0, 0}, false},
	} {
		if err := b.checkSpread("dr", "rr", c.n, c.each); (err == nil) != c.ok {
			t.Errorf("checkSpread(%d, %v) = %v, want ok %v", c.n, c.each, err, c.ok)
		}
	}
}

// The scaling sections render every configuration and count, the
// projection only from figures the run has, and the charts draw.
func TestScalingReport(t *testing.T) {
	r := &report{rounds: 1, threads: 2, flows: []int{1, 1000}, scaleFlows: 1000000, cpuRates: []float64{100000},
		flowDPs: []string{"xlb-dr"}, rsCounts: []int{2, 1000}, rsMethods: []string{"dr"}, rsScheds: []string{"rr", "wlc"},
		rsFlows: 100000, rsNewRate: 50000, queues: 1, queueScaling: 2,
		results: map[string]map[string][]float64{
			"sink":       {"cpu_ns_100000": {400}, "own_ns_100000": {300}},
			"xlb-dr":     {"lossless_1": {0.3}, "lossless_1000": {0.3}, "lossless_1000000": {0.25}, "cpu_ns_f1": {2000}, "cpu_ns_100000": {2100}, "cpu_ns_f1000000": {2500}},
			"rs:dr-rr":   {"lossless_2": {0.3}, "lossless_1000": {0.28}, "cpu_ns_est_2": {2000}, "cpu_ns_est_1000": {2100}, "cpu_ns_new_2": {3000}, "cpu_ns_new_1000": {3100}},
			"rs:dr-wlc":  {"lossless_2": {0.3}, "own_ns_est_2": {1900}},
			"q1:xlb-dr":  {"maxdeliv_1000": {0.3}, "cpu_ns_100000": {2400}},
			"q2:xlb-dr":  {"maxdeliv_1000": {0.45}},
			"q1:nft-fwd": {"lossless_1000": {0.5}},
		}}
	var b strings.Builder
	r.flowTable(&b)
	r.scalingTable(&b)
	r.queueTable(&b)
	out := b.String()
	for _, want := range []string{
		"| 1M | 0.250 | 2500 / – |",
		"Rate change from 1 to 1M flows (target: a fall of less than 25%): xlb-dr -17%;",
		"| 1000 | 0.280 | 2100 / – | 3100 / – | – | – / – | – / – |",
		"| 1 | 0.500 | – | – / – | – / – | – | 0.300 | 2400 / – | 2000 / – |",
		"director's share at one queue is 2000 CPU-ns per packet, so one core forwards at most 0.50 Mpps",
		"efficiency from 1 to 2 queues: 0.75",
		"8 queues 3.0 Mpps, 16 queues 6.0 Mpps",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	png, err := scalingChart("t", "x", "y", []xySeries{{name: "a", points: plotter.XYs{{X: 2, Y: 1}, {X: 1000, Y: 2}}}, {name: "empty"}})
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Errorf("scalingChart = %d bytes, %v; want a PNG", len(png), err)
	}
	if _, err := scalingChart("t", "x", "y", []xySeries{{name: "empty"}}); err == nil {
		t.Error("scalingChart without points: no error")
	}
}
