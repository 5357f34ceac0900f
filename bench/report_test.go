package main

import "testing"

func TestReplaceSection(t *testing.T) {
	const h = sectionHeading
	tests := []struct {
		name, doc, want string
	}{
		{"empty file", "", "# Benchmark results\n\n" + h + "\n\nnew\n"},
		{"appended", "# R\n\n## sched\n\nold sched\n", "# R\n\n## sched\n\nold sched\n\n" + h + "\n\nnew\n"},
		{"replaced in the middle",
			"# R\n\n## a\n\nA\n\n" + h + "\n\nold\n| x |\n\n### sub\n\nold too\n\n## b\n\nB\n",
			"# R\n\n## a\n\nA\n\n" + h + "\n\nnew\n\n## b\n\nB\n"},
		{"replaced at the end", "# R\n\n" + h + "\n\nold\n", "# R\n\n" + h + "\n\nnew\n"},
		{"fenced heading is not a section end",
			"# R\n\n" + h + "\n\nold\n```\n## not a heading\n```\n\n## b\nB\n",
			"# R\n\n" + h + "\n\nnew\n\n## b\nB\n"},
		{"similar heading untouched", "## dataplane: xlb vs kernel NAT\n\nX\n",
			"## dataplane: xlb vs kernel NAT\n\nX\n\n" + h + "\n\nnew\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := replaceSection(tt.doc, h, "new\n\n"); got != tt.want {
				t.Errorf("replaceSection(%q) =\n%q\nwant\n%q", tt.doc, got, tt.want)
			}
		})
	}
}

func TestRatioIsMedianOfPairs(t *testing.T) {
	// Round 2 ran while the machine was busy: both sides slowed down.
	x := []float64{1.0, 0.5, 1.1}
	k := []float64{2.0, 1.0, 2.0}
	if got, want := ratio(x, k), "0.50"; got != want {
		t.Errorf("ratio(%v, %v) = %s, want %s", x, k, got, want)
	}
	if got, want := cell("%.1f", x), "1.0 (0.5–1.1)"; got != want {
		t.Errorf("cell = %q, want %q", got, want)
	}
}

func TestParseStats(t *testing.T) {
	in := "xdp (native):\n  pass_arp               4\n  redirect               62520\nworkers:\n  rx_frames              62520\n" +
		"af_xdp sockets:\n  rx_dropped 17, rx_ring_full 10, fill_ring_empty 7, rx_invalid 0, tx_invalid 0\n"
	got := parseStats(in)
	want := map[string]uint64{"xdp.pass_arp": 4, "xdp.redirect": 62520, "rx_frames": 62520,
		"xsk.rx_dropped": 17, "xsk.rx_ring_full": 10, "xsk.fill_ring_empty": 7, "xsk.rx_invalid": 0, "xsk.tx_invalid": 0}
	if len(got) != len(want) {
		t.Errorf("parseStats = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("parseStats[%q] = %d, want %d", k, got[k], v)
		}
	}
}

func TestAddCost(t *testing.T) {
	res := map[string]map[string][]float64{
		"sink": {"pps_director": {1.0}},
		// The sender's core forwards too: 0.5 Mpps sent and delivered
		// leave it half its time for forwarding, 1 µs per frame.
		"kernel": {"pps_sent": {0.5}, "pps_delivered": {0.5}},
		// The sender's core spends 0.2 core-s/s on XDP, the worker one
		// core, for 0.6 Mpps delivered: 2 µs per frame.
		"xlb": {"pps_sent": {0.8}, "pps_delivered": {0.6}, "xlb_cpu": {1.0}},
	}
	addCost(res)
	for dp, want := range map[string]float64{"kernel": 1, "xlb": 2} {
		got := res[dp]["cost_us"]
		if len(got) != 1 || got[0] < want-1e-9 || got[0] > want+1e-9 {
			t.Errorf("cost of %s = %v, want [%v]", dp, got, want)
		}
	}
}
