package main

import (
	"strings"
	"testing"
	"time"
)

// The section names the command, the date, the machine and every row,
// with the ratio and the NAT column.
func TestMarkdown(t *testing.T) {
	r := report{cmdline: "go run ./bench -xlb bin/xlb", date: "2026-11-22", elapsed: 2 * time.Minute,
		machine: "test machine", xlbMode: "native XDP, AF_XDP copy mode", rounds: 2, nat: true,
		rows: []row{{key: "pps_delivered", label: "Mpps", format: "%.2f"}},
		results: map[string]map[string][]float64{
			"xlb": {"pps_delivered": {1, 2}}, "kernel": {"pps_delivered": {2, 2}}, "nat": {"pps_delivered": {3, 3}},
		},
		drops: map[string]map[string]uint64{"pps": {"tx_frames": 10, "xdp.redirect": 20, "xsk.rx_ring_full": 5, "xsk.rx_dropped": 5}},
	}
	got := r.markdown()
	for _, want := range []string{
		"`go run ./bench -xlb bin/xlb` on 2026-11-22",
		"test machine",
		"| Mpps | 1.50 (1.00–2.00) | 2.00 (2.00–2.00) | 0.75 | 3.00 (3.00–3.00) |",
		"| pps | 10 | 0 | 5 | 5 | 50.0% |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("markdown lacks %q:\n%s", want, got)
		}
	}
}
