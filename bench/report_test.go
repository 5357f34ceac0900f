package main

import (
	"math"
	"testing"
)

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
		{"the xdp generator's section untouched", "# R\n\n" + h + "\n\nold\n\n" + sectionHeadingXDP + "\n\nX\n",
			"# R\n\n" + h + "\n\nnew\n\n" + sectionHeadingXDP + "\n\nX\n"},
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

// The director's share is the configuration's CPU per packet minus the
// sink's in the same round, round by round.
func TestAddDirectorShare(t *testing.T) {
	res := map[string]map[string][]float64{
		"sink":    {"cpu_ns_100000": {300, 500}},
		"nft-fwd": {"cpu_ns_100000": {1000, 1400}},
		"xlb-dr":  {"cpu_ns_100000": {2300}},
	}
	addDirectorShare(res, []float64{100000})
	if got := res["nft-fwd"]["dir_ns_100000"]; len(got) != 2 || got[0] != 700 || got[1] != 900 {
		t.Errorf("nft-fwd's share = %v, want [700 900]", got)
	}
	if got := res["xlb-dr"]["dir_ns_100000"]; len(got) != 1 || got[0] != 2000 {
		t.Errorf("xlb-dr's share = %v, want [2000]", got)
	}
	if _, ok := res["sink"]["dir_ns_100000"]; ok {
		t.Error("the sink got a share of itself")
	}
}

// A round without a figure (NaN) keeps the others paired by round and
// is left out of medians, ranges and ratios.
func TestUnknownRounds(t *testing.T) {
	nan := math.NaN()
	res := map[string]map[string][]float64{
		"sink":   {"cpu_ns_1": {nan, 100, 100}},
		"xlb-dr": {"cpu_ns_1": {900, nan, 500}},
	}
	addDirectorShare(res, []float64{1})
	share := res["xlb-dr"]["dir_ns_1"]
	if got, want := cell("%.0f", share), "400"; got != want {
		t.Errorf("share %v = %s, want %s (only round 3 has both)", share, got, want)
	}
	if got, want := ratio([]float64{nan, 2, 4}, []float64{1, 1, 1}), "3.00"; got != want {
		t.Errorf("ratio = %s, want %s", got, want)
	}
	if got := cell("%.0f", []float64{nan}); got != "–" {
		t.Errorf("cell of no figure = %q", got)
	}
}
