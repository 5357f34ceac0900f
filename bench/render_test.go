package main

import (
	"strings"
	"testing"
	"time"
)

// The section names the command, the date, the machine, the generator's
// ceiling, every configuration and row, and the ratios to each baseline.
func TestMarkdown(t *testing.T) {
	r := report{cmdline: "go run ./bench -xlb bin/xlb", date: "2026-12-01", elapsed: 2 * time.Minute,
		machine: "test machine", xlbMode: "native XDP, AF_XDP copy mode", rounds: 2,
		dps: []string{"ip-forward", "nft-fwd", "nft-dnat", "xlb-dr"}, flows: []int{1000}, cpuRates: []float64{100000},
		loadRate: 200000, threads: 2, trialTime: time.Second, steps: 6, conns: 16,
		results: map[string]map[string][]float64{
			"sink":       {"ceiling": {1.5, 1.7}, "cpu_ns_100000": {100, 100}},
			"ip-forward": {"lossless_1000": {0.5, 0.5}, "cpu_ns_100000": {600, 600}},
			"nft-fwd":    {"lossless_1000": {1, 2}, "cpu_ns_100000": {400, 500}},
			"nft-dnat":   {"lossless_1000": {0.25, 0.25}},
			"xlb-dr":     {"lossless_1000": {1, 1}, "cpu_ns_100000": {800, 1100}},
		},
		drops: map[string]map[string]uint64{"xlb-dr": {"tx_frames": 10, "xdp.redirect": 20, "xsk.rx_ring_full": 5, "xsk.rx_dropped": 5}},
	}
	got := r.markdown()
	for _, want := range []string{
		"`go run ./bench -xlb bin/xlb` on 2026-12-01",
		"test machine",
		"1.600 (1.500–1.700) Mpps reach the director",
		"| metric | ip-forward | nft-fwd | nft-dnat | xlb-dr | sink |",
		"| **lossless rate**, 1k flows, Mpps | 0.500 (0.500–0.500) | 1.500 (1.000–2.000) | 0.250 (0.250–0.250) | 1.000 (1.000–1.000) | – |",
		// 800-100=700, 1100-100=1000 for xlb; 300, 400 for nft-fwd.
		"| director's share at 100 kpps: the above minus the sink's, CPU-ns | 500 (500–500) | 350 (300–400) | – | 850 (700–1000) | – |",
		"against ip-forward · nft-fwd · nft-dnat",
		"| **lossless rate**, 1k flows, Mpps | 2.00 · 0.75 · 4.00 |",
		"| xlb-dr | 10 | 0 | 5 | 5 | 50.00% |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("markdown lacks %q:\n%s", want, got)
		}
	}
}
