package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// sectionHeading is the RESULTS.md section this bench owns.
const sectionHeading = "## dataplane: xlb vs kernel"

// report is one bench run, ready to print.
type report struct {
	cmdline string
	tree    string // "commit abc1234", from gitTree
	date    string
	elapsed time.Duration
	machine string
	xlbMode string
	rounds  int
	nat     bool
	rows    []row
	// results[dataplane][row key] holds one value per round, in order.
	results map[string]map[string][]float64
	// drops[metric][counter] sums xlb's counters over its runs.
	drops map[string]map[string]uint64
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// cell formats the median of v with its range.
func cell(format string, v []float64) string {
	if len(v) == 0 {
		return "–"
	}
	m := fmt.Sprintf(format, median(v))
	if len(v) == 1 {
		return m
	}
	return fmt.Sprintf("%s (%s–%s)", m, fmt.Sprintf(format, slices.Min(v)), fmt.Sprintf(format, slices.Max(v)))
}

// ratio is the median of the per-round ratios a[i]/b[i]: the runs of a
// round are adjacent in time, so their ratio cancels most of the drift
// in the machine's load, which the ratio of medians would not.
func ratio(a, b []float64) string {
	var rs []float64
	for i := range min(len(a), len(b)) {
		if b[i] != 0 {
			rs = append(rs, a[i]/b[i])
		}
	}
	if len(rs) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", median(rs))
}

// addCost estimates, for each round, the CPU each dataplane spent per
// frame it delivered in the flood, in core-µs (rates are in Mpps), from
// the sink run of the same round. trafgen keeps its core (CPU 0) busy
// all the time, so each frame sent costs that core 1/sent µs, of which
// 1/sink is the sender's own share (building the frame, the client's
// veth, the bridge, the director's receive): the rest, 1 - sent/sink
// core-seconds per second, is forwarding work done on the sender's core
// (all of the kernel baselines' work, xlb's XDP program and copy into
// the UMEM). xlb's process adds its own CPU on the other core. Divided
// by the frames delivered per second:
//
//	cost = (1 - sent/sink + xlb cores) / delivered
func addCost(res map[string]map[string][]float64) {
	sink := res["sink"]["pps_director"]
	for _, dp := range []string{"xlb", "kernel", "nat"} {
		r := res[dp]
		if r == nil {
			continue
		}
		sent, deliv, cpu := r["pps_sent"], r["pps_delivered"], r["xlb_cpu"]
		for i := range min(len(sent), len(deliv), len(sink)) {
			if deliv[i] <= 0 || sink[i] <= 0 {
				continue
			}
			senderShare := max(0, 1-sent[i]/sink[i])
			c := 0.0
			if i < len(cpu) {
				c = cpu[i]
			}
			r["cost_us"] = append(r["cost_us"], (senderShare+c)/deliv[i])
		}
	}
}

// markdown renders the section body: command, date, machine, table and
// xlb's counters.
func (r *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "`%s` on %s (took %v)", r.cmdline, r.date, r.elapsed.Round(time.Second))
	if r.tree != "" {
		fmt.Fprintf(&b, ", source tree at %s", r.tree)
	}
	b.WriteString(".\n")
	fmt.Fprintf(&b, "Machine: %s. xlb: %s, DR, rr, one queue. What is measured and how, and the caveats: `bench/doc.go`.\n", r.machine, r.xlbMode)
	fmt.Fprintf(&b, "Each cell is the median of %d runs (min–max); runs alternate dataplanes (xlb, kernel", r.rounds)
	if r.nat {
		b.WriteString(", NAT")
	}
	b.WriteString(", xlb, ...), each run on a freshly started dataplane in the same topology; xlb/kernel is the median of the per-round ratios.\n\n")

	b.WriteString("| metric | xlb (DR) | kernel DR: nft netdev ingress `fwd` | xlb / kernel |")
	if r.nat {
		b.WriteString(" kernel NAT: nft DNAT + conntrack (other mode) |")
	}
	b.WriteString("\n|---|---|---|---|")
	if r.nat {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, row := range r.rows {
		x, k := r.results["xlb"][row.key], r.results["kernel"][row.key]
		ra := ratio(x, k)
		if row.noRatio {
			ra = "–"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |", row.label, cell(row.format, x), cell(row.format, k), ra)
		if r.nat {
			fmt.Fprintf(&b, " %s |", cell(row.format, r.results["nat"][row.key]))
		}
		b.WriteString("\n")
	}

	if sink := r.results["sink"]["pps_director"]; len(sink) > 0 {
		fmt.Fprintf(&b, "\nThe sender's ceiling, measured each round with the director dropping the flood at its ingress: "+
			"%s Mpps reach the director (on trafgen's core, CPU 0, which also runs all of the kernel baselines' forwarding).\n", cell("%.3f", sink))
	}
	fmt.Fprintf(&b, "\nxlb's counters (`xlb --xlb-stats` after each xlb run, summed over the runs of a metric). "+
		"Worker drop counters: %s. The kernel drops a redirected frame before the worker when the AF_XDP RX ring is full "+
		"or the fill ring has no free UMEM frame (XDP_STATISTICS):\n\n", strings.Join(xlbDropCounters, ", "))
	b.WriteString("| xlb runs | frames forwarded | worker drops | dropped before the worker: RX ring full | no free UMEM frame | share of redirected frames |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, m := range sortedKeys(r.drops) {
		d := r.drops[m]
		var drops []string
		for _, c := range xlbDropCounters {
			if d[c] != 0 {
				drops = append(drops, fmt.Sprintf("%s %d", c, d[c]))
			}
		}
		ds := "0"
		if drops != nil {
			ds = strings.Join(drops, ", ")
		}
		share := "–"
		if d["xdp.redirect"] > 0 {
			share = fmt.Sprintf("%.1f%%", 100*float64(d["xsk.rx_ring_full"]+d["xsk.rx_dropped"])/float64(d["xdp.redirect"]))
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %d | %d | %s |\n", m, d["tx_frames"], ds, d["xsk.rx_ring_full"], d["xsk.rx_dropped"], share)
	}
	return b.String()
}

// writeSection replaces the section that starts with heading (up to the
// next "## " heading) in the markdown file at path with heading + body,
// or appends it, keeping every other section as it is. The file is read
// right before it is replaced (others edit their sections too) and
// replaced by a rename, so a reader never sees half of it.
func writeSection(path, heading, body string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	doc := replaceSection(string(old), heading, body)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".results-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(doc); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return nil
}

// replaceSection is writeSection's text transformation. Lines inside
// code fences never count as headings.
func replaceSection(doc, heading, body string) string {
	section := heading + "\n\n" + strings.TrimRight(body, "\n") + "\n"
	lines := strings.SplitAfter(doc, "\n")
	start, end := -1, len(lines)
	fence := false
	for i, l := range lines {
		t := strings.TrimRight(l, "\r\n")
		if strings.HasPrefix(t, "```") {
			fence = !fence
			continue
		}
		if fence || !strings.HasPrefix(t, "## ") {
			continue
		}
		if start < 0 && strings.TrimSpace(t) == heading {
			start = i
		} else if start >= 0 {
			end = i
			break
		}
	}
	if start < 0 {
		if doc == "" {
			return "# Benchmark results\n\n" + section
		}
		return strings.TrimRight(doc, "\n") + "\n\n" + section
	}
	before := strings.Join(lines[:start], "")
	after := strings.Join(lines[end:], "")
	if after != "" {
		section += "\n"
	}
	return before + section + after
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// parseStats reads writeStats's format: an "xdp (mode):" section and a
// "workers:" section of "  name  value" lines, and an "af_xdp sockets:"
// section of "name value, name value" (XDP_STATISTICS).
func parseStats(s string) map[string]uint64 {
	m := map[string]uint64{}
	prefix := ""
	for _, l := range strings.Split(s, "\n") {
		switch {
		case strings.HasPrefix(l, "xdp"):
			prefix = "xdp."
		case strings.HasPrefix(l, "workers"):
			prefix = ""
		case strings.HasPrefix(l, "af_xdp"):
			prefix = "xsk."
		default:
			for _, kv := range strings.Split(l, ",") {
				f := strings.Fields(kv)
				if len(f) != 2 {
					continue
				}
				if n, err := strconv.ParseUint(f[1], 10, 64); err == nil {
					m[prefix+f[0]] = n
				}
			}
		}
	}
	return m
}
