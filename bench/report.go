package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot/plotter"
)

// sectionHeading is the RESULTS.md section this bench owns, and
// sectionHeadingXDP the one it writes with -gen xdp, so that a run with
// each generator stays in the file.
const (
	sectionHeading    = "## dataplane: xlb vs kernel"
	sectionHeadingXDP = "## dataplane: xlb vs kernel, frames with XDP headroom (-gen xdp)"
)

// heading is the section a run with generator gen writes.
func heading(gen string) string {
	if gen == "xdp" {
		return sectionHeadingXDP
	}
	return sectionHeading
}

// report is one bench run, ready to print.
type report struct {
	cmdline    string
	tree       string // "commit abc1234", from gitTree
	date       string
	elapsed    time.Duration
	machine    string
	xlbMode    string
	rounds     int
	dps        []string // columns, in the order they ran
	flows      []int
	scaleFlows int
	cpuRates   []float64
	loadRate   float64
	threads    int
	gen        string // generator: "packet" or "xdp"
	trialTime  time.Duration
	steps      int
	conns      int
	charts     []string
	saturated  int // CPU runs without a /proc/stat figure (machine saturated before)
	cpuRuns    int
	// results[dataplane][key] holds one value per round, in order.
	results map[string]map[string][]float64
	// drops[dataplane][counter] sums xlb's counters over its runs.
	drops map[string]map[string]uint64

	trickleRate          float64
	guardWaits           map[string][]time.Duration
	flowDPs              []string // the configurations measured at every flow count
	rsCounts             []int
	rsMethods            []string
	rsScheds             []string
	rsFlows              int
	rsNewRate            float64
	queues, queueScaling int // -director-queues, -queue-scaling
	// scaleCharts are the scaling charts written: alt text and path.
	scaleCharts [][2]string
}

// A row of the results table: a key of results, for every dataplane.
type row struct {
	key, label  string
	format      string
	lowerBetter bool
	noRatio     bool
}

func flowsLabel(n int) string {
	switch {
	case n >= 1000000 && n%1000000 == 0:
		return fmt.Sprintf("%dM", n/1000000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return strconv.Itoa(n)
}

func (r *report) rows() []row {
	var rows []row
	fl := slices.Clone(r.flows)
	if r.scaleFlows > 0 {
		fl = append(fl, r.scaleFlows)
	}
	for _, f := range fl {
		rows = append(rows, row{key: fmt.Sprintf("lossless_%d", f), format: "%.3f",
			label: fmt.Sprintf("**lossless rate**, %s flows, Mpps", flowsLabel(f))})
	}
	for _, f := range fl {
		rows = append(rows, row{key: fmt.Sprintf("maxdeliv_%d", f), format: "%.3f",
			label: fmt.Sprintf("most delivered in any trial, %s flows, Mpps", flowsLabel(f))})
	}
	for _, rate := range r.cpuRates {
		k := fmt.Sprintf("_%d", int(rate))
		kp := rate / 1e3
		rows = append(rows,
			row{key: "cpu_deliv" + k, format: "%.3f", label: fmt.Sprintf("delivered at %.0f kpps offered, Mpps", kp)},
			row{key: "cpu_ns" + k, format: "%.0f", lowerBetter: true,
				label: fmt.Sprintf("**CPU-ns per delivered packet at %.0f kpps**, all CPUs (lower is better)", kp)},
			row{key: "dir_ns" + k, format: "%.0f", lowerBetter: true,
				label: fmt.Sprintf("director's share at %.0f kpps: the above minus the sink's, CPU-ns", kp)},
			row{key: "own_ns" + k, format: "%.0f", lowerBetter: true,
				label: fmt.Sprintf("CPU-ns per delivered packet at %.0f kpps, the bench's own processes (doc.go)", kp)},
			row{key: "owndir_ns" + k, format: "%.0f", lowerBetter: true,
				label: fmt.Sprintf("director's share at %.0f kpps, own processes: minus the sink's", kp)},
			row{key: "xlb_cores" + k, format: "%.2f", noRatio: true,
				label: fmt.Sprintf("cores the xlb process used at %.0f kpps (user+sys)", kp)},
		)
	}
	rows = append(rows,
		row{key: "gbps_1", format: "%.2f", label: "iperf3, 1 TCP stream, Gbit/s"},
		row{key: "gbps_8", format: "%.2f", label: "iperf3, 8 TCP streams, Gbit/s"},
		row{key: "gbps_1_tso", format: "%.2f", label: "iperf3, 1 TCP stream, the client's TX offload on (checksums left to the NIC; with -gen packet, TSO's GSO skbs too), Gbit/s"},
		row{key: "conn_rate", format: "%.0f", label: fmt.Sprintf("**TCP connections/s** (wrk, one request per connection, %d concurrent)", r.conns)},
		row{key: "req_rate", format: "%.0f", label: fmt.Sprintf("keep-alive HTTP requests/s (wrk, %d connections)", r.conns)},
		row{key: "conn_rate_errors", format: "%.0f", noRatio: true, label: "wrk errors per run, new connections (socket errors + non-2xx)"},
		row{key: "req_rate_errors", format: "%.0f", noRatio: true, label: "wrk errors per run, keep-alive"},
	)
	if r.trickleRate > 0 {
		tr := fmt.Sprintf("at a %.0f pps trickle (one frame per send, evenly spaced)", r.trickleRate)
		rows = append(rows,
			row{key: "cpu_ns_trickle", format: "%.0f", lowerBetter: true, label: "CPU-ns per delivered packet " + tr + ", all CPUs"},
			row{key: "own_ns_trickle", format: "%.0f", lowerBetter: true, label: "CPU-ns per delivered packet " + tr + ", own processes"},
			row{key: "xlb_cores_trickle", format: "%.3f", noRatio: true, label: "cores the xlb process used " + tr},
		)
	}
	rows = append(rows,
		row{key: "syn_drops_iperf_1", format: "%.0f", noRatio: true, label: "SYNs xlb's SYN guard dropped during iperf3 -P 1"},
		row{key: "syn_drops_iperf_8", format: "%.0f", noRatio: true, label: "SYNs xlb's SYN guard dropped during iperf3 -P 8"},
		row{key: "syn_drops_iperf_tso", format: "%.0f", noRatio: true, label: "SYNs xlb's SYN guard dropped during iperf3 -P 1, client TSO on"},
		row{key: "syn_drops_wrk_false", format: "%.0f", noRatio: true, label: "SYNs xlb's SYN guard dropped during wrk, new connections"},
		row{key: "syn_drops_wrk_true", format: "%.0f", noRatio: true, label: "SYNs xlb's SYN guard dropped during wrk, keep-alive"},
	)
	for _, load := range []struct{ suffix, what string }{{"", "idle"}, {"_load", fmt.Sprintf("under %.0f kpps", r.loadRate/1e3)}} {
		for _, q := range []struct{ key, name string }{{"rtt_p50", "p50"}, {"rtt_p99", "p99"}, {"rtt_p999", "p99.9"}} {
			rows = append(rows, row{key: q.key + load.suffix, format: "%.0f", lowerBetter: true,
				label: fmt.Sprintf("UDP RTT %s, %s, µs (lower is better)", q.name, load.what)})
		}
		rows = append(rows, row{key: "rtt_lost" + load.suffix, format: "%.2f", noRatio: true,
			label: fmt.Sprintf("UDP probes lost %s, %% (a lost probe counts as an infinite RTT above)", load.what)})
	}
	return rows
}

// baselines are the kernel's configurations every xlb one is compared to.
var baselines = []string{"ip-forward", "nft-fwd", "nft-dnat"}

// addDirectorShare computes, per round, each configuration's CPU-ns per
// packet minus the sink's at the same offered rate in the same round:
// the generator's and the path's cost (the client's veth, the bridge,
// the director's receive), which is not the director's forwarding.
func addDirectorShare(res map[string]map[string][]float64, rates []float64) {
	for _, rate := range rates {
		k := fmt.Sprintf("_%d", int(rate))
		for _, kk := range [][2]string{{"cpu_ns", "dir_ns"}, {"own_ns", "owndir_ns"}} {
			sink := res["sink"][kk[0]+k]
			for dp, r := range res {
				if dp == "sink" {
					continue
				}
				for i, v := range r[kk[0]+k] {
					if i < len(sink) {
						r[kk[1]+k] = append(r[kk[1]+k], v-sink[i])
					}
				}
			}
		}
	}
}

// known drops the NaNs: rounds without a figure (see cpuRun).
func known(v []float64) []float64 {
	var k []float64
	for _, x := range v {
		if !math.IsNaN(x) {
			k = append(k, x)
		}
	}
	return k
}

func median(v []float64) float64 {
	v = known(v)
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
	v = known(v)
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
		if b[i] != 0 && !math.IsNaN(a[i]) && !math.IsNaN(b[i]) {
			rs = append(rs, a[i]/b[i])
		}
	}
	if len(rs) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", median(rs))
}

// markdown renders the section body: command, date, machine, the
// table of every configuration, the ratios to the baselines and xlb's
// counters.
func (r *report) markdown() string {
	addDirectorShare(r.results, r.cpuRates)
	var b strings.Builder
	fmt.Fprintf(&b, "`%s` on %s (took %v)", r.cmdline, r.date, r.elapsed.Round(time.Second))
	if r.tree != "" {
		fmt.Fprintf(&b, ", source tree at %s", r.tree)
	}
	b.WriteString(".\n")
	fmt.Fprintf(&b, "Machine: %s. xlb: %s, rr, one queue. What is measured and how, and the caveats: `bench/doc.go`.\n", r.machine, r.xlbMode)
	fmt.Fprintf(&b, "Each cell is the median of %d rounds (min–max); a round runs the sink, then every configuration in turn (%s), "+
		"each freshly started in the same topology. Ratios are medians of the per-round ratios.\n", r.rounds, strings.Join(r.dps, ", "))
	genDesc := "AF_PACKET, sendmmsg of 64 frames"
	if r.gen == "xdp" {
		genDesc = "-gen xdp: BPF_PROG_RUN with live frames, XDP_REDIRECT into the client's veth, up to 256 frames per call; " +
			"the client's veth has a queue per CPU, and its bridge port an XDP program that passes everything (NAPI without GRO) in every configuration"
	}
	fmt.Fprintf(&b, "Traffic: the bench's generator (%s, %d threads pinned one per CPU) sends 60-byte UDP frames "+
		"(64 on a wire) to VIP:9; the lossless rate is the highest offered (achieved) rate with at most 0.1%% lost, found by bisection "+
		"on the target below the generator's ceiling, going higher only when the generator achieved 98%% of the target "+
		"(%d trials of %v each, after every flow was sent once).\n\n",
		genDesc, r.threads, r.steps, r.trialTime)
	if sink := r.results["sink"]["ceiling"]; len(sink) > 0 {
		fmt.Fprintf(&b, "**Generator ceiling** (measured each round, director dropping the flood at its ingress, nothing forwarded): "+
			"%s Mpps reach the director. Every configuration's forwarding shares these %d CPUs with the generator.\n\n", cell("%.3f", sink), r.threads)
	}

	if r.saturated > 0 {
		fmt.Fprintf(&b, "In %d of %d fixed-rate runs other work kept every CPU busy before the traffic started: "+
			"those have no all-CPU figure (/proc/stat cannot tell the traffic's cost then); the own-process figures cover every run.\n\n",
			r.saturated, r.cpuRuns)
	}
	b.WriteString("| metric |")
	for _, dp := range r.dps {
		fmt.Fprintf(&b, " %s |", dp)
	}
	b.WriteString(" sink |\n|---|")
	for range r.dps {
		b.WriteString("---|")
	}
	b.WriteString("---|\n")
	rows := r.rows()
	for _, row := range rows {
		fmt.Fprintf(&b, "| %s |", row.label)
		for _, dp := range r.dps {
			fmt.Fprintf(&b, " %s |", cell(row.format, r.results[dp][row.key]))
		}
		fmt.Fprintf(&b, " %s |\n", cell(row.format, r.results["sink"][row.key]))
	}

	var xlbs []string
	for _, dp := range r.dps {
		if strings.HasPrefix(dp, "xlb-") {
			xlbs = append(xlbs, dp)
		}
	}
	if len(xlbs) > 0 {
		var bs []string
		for _, k := range baselines {
			if slices.Contains(r.dps, k) {
				bs = append(bs, k)
			}
		}
		fmt.Fprintf(&b, "\nRatios xlb / kernel, each cell against %s in that order (above 1 is better for xlb except where lower is better):\n\n",
			strings.Join(bs, " · "))
		b.WriteString("| metric |")
		for _, x := range xlbs {
			fmt.Fprintf(&b, " %s |", x)
		}
		b.WriteString("\n|---|")
		for range xlbs {
			b.WriteString("---|")
		}
		b.WriteString("\n")
		for _, row := range rows {
			if row.noRatio || strings.HasPrefix(row.key, "cpu_deliv") {
				continue
			}
			fmt.Fprintf(&b, "| %s |", row.label)
			for _, x := range xlbs {
				var rs []string
				for _, k := range bs {
					rs = append(rs, ratio(r.results[x][row.key], r.results[k][row.key]))
				}
				fmt.Fprintf(&b, " %s |", strings.Join(rs, " · "))
			}
			b.WriteString("\n")
		}
	}
	for _, c := range r.charts {
		fmt.Fprintf(&b, "\n![delivered vs offered rate](%s)\n", filepath.Base(c))
	}
	if len(r.guardWaits) > 0 {
		b.WriteString("\nBefore each TCP test the bench waited for xlb's SYN guard to come down (it was raised by the flood of the " +
			"round trips under load, or by the previous TCP test's bulk traffic; see RESULTS.md, \"iperf3 after the flood\"):")
		for _, m := range sortedKeys(r.guardWaits) {
			w := r.guardWaits[m]
			var tot time.Duration
			for _, d := range w {
				tot += d
			}
			fmt.Fprintf(&b, " %s %d times, %v on average, longest %v;", m, len(w), (tot / time.Duration(len(w))).Round(time.Millisecond),
				slices.Max(w).Round(time.Millisecond))
		}
		b.WriteString(" the SYNs it still dropped during the tests are rows of the table.\n")
	}
	r.flowTable(&b)
	r.scalingTable(&b)
	r.queueTable(&b)
	for _, c := range r.scaleCharts {
		fmt.Fprintf(&b, "\n![%s](%s)\n", c[0], filepath.Base(c[1]))
	}

	fmt.Fprintf(&b, "\nxlb's counters (`xlb --xlb-stats` after each run, summed over the rounds). "+
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
			share = fmt.Sprintf("%.2f%%", 100*float64(d["xsk.rx_ring_full"]+d["xsk.rx_dropped"])/float64(d["xdp.redirect"]))
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

// flowKey is the key suffix of the CPU run over f flows at the first
// -cpu-rates rate: the 1000-flow figure is the -cpu-rates run's.
func (r *report) flowKey(f int) string {
	if f == 1000 {
		return fmt.Sprintf("_%d", int(r.cpuRates[0]))
	}
	return fmt.Sprintf("_f%d", f)
}

func (r *report) allFlows() []int {
	fl := slices.Clone(r.flows)
	if r.scaleFlows > 0 {
		fl = append(fl, r.scaleFlows)
	}
	slices.Sort(fl)
	return slices.Compact(fl)
}

// flowTable renders the flow scaling: lossless rate and CPU per packet
// at a fixed rate, as the established flows grow.
func (r *report) flowTable(b *strings.Builder) {
	if len(r.flowDPs) == 0 || len(r.cpuRates) == 0 {
		return
	}
	fmt.Fprintf(b, "\n### Flow scaling\n\nLossless rate (Mpps) and CPU-ns per delivered packet at %.0f kpps offered "+
		"(all CPUs / own processes, as above) with every flow established (sent once before, and again by the search). "+
		"Medians of %d rounds.\n\n", r.cpuRates[0]/1e3, r.rounds)
	b.WriteString("| flows |")
	for _, dp := range r.flowDPs {
		fmt.Fprintf(b, " %s: lossless | CPU-ns all / own |", dp)
	}
	b.WriteString("\n|---|")
	for range r.flowDPs {
		b.WriteString("---|---|")
	}
	b.WriteString("\n")
	for _, f := range r.allFlows() {
		fmt.Fprintf(b, "| %s |", flowsLabel(f))
		for _, dp := range r.flowDPs {
			res := r.results[dp]
			fmt.Fprintf(b, " %s | %s / %s |", cell("%.3f", res[fmt.Sprintf("lossless_%d", f)]),
				cell("%.0f", res["cpu_ns"+r.flowKey(f)]), cell("%.0f", res["own_ns"+r.flowKey(f)]))
		}
		b.WriteString("\n")
	}
	lo, hi := r.allFlows()[0], r.allFlows()[len(r.allFlows())-1]
	if lo == hi {
		return
	}
	b.WriteString("\nRate change from " + flowsLabel(lo) + " to " + flowsLabel(hi) + " flows (target: a fall of less than 25%):")
	for _, dp := range r.flowDPs {
		a, z := median(r.results[dp][fmt.Sprintf("lossless_%d", lo)]), median(r.results[dp][fmt.Sprintf("lossless_%d", hi)])
		if a > 0 {
			fmt.Fprintf(b, " %s %+.0f%%;", dp, 100*(z/a-1))
		}
	}
	b.WriteString("\n")
}

// scalingTable renders the real-server scaling.
func (r *report) scalingTable(b *strings.Builder) {
	if len(r.rsCounts) == 0 {
		return
	}
	fmt.Fprintf(b, "\n### Real-server scaling\n\nxlb with the flood's service over n destinations (addresses held by the three "+
		"real-server namespaces, reached through permanent neighbour entries; every run checks that each namespace "+
		"received its share). One round. Per configuration: the lossless rate over %s established flows (Mpps); "+
		"CPU-ns per delivered packet at %.0f kpps over those flows; and at %.0f kpps with every frame a new flow "+
		"(a scheduling decision and a connection insert each); all CPUs / own processes.\n\n",
		flowsLabel(r.rsFlows), r.cpuRates[0]/1e3, r.rsNewRate/1e3)
	var names []string
	for _, m := range r.rsMethods {
		for _, sc := range r.rsScheds {
			names = append(names, m+"-"+sc)
		}
	}
	b.WriteString("| real servers |")
	for _, n := range names {
		fmt.Fprintf(b, " %s: lossless | established CPU-ns | new-flow CPU-ns |", n)
	}
	b.WriteString("\n|---|")
	for range names {
		b.WriteString("---|---|---|")
	}
	b.WriteString("\n")
	for _, c := range r.rsCounts {
		fmt.Fprintf(b, "| %d |", c)
		for _, n := range names {
			res := r.results["rs:"+n]
			fmt.Fprintf(b, " %s | %s / %s | %s / %s |", cell("%.3f", res[fmt.Sprintf("lossless_%d", c)]),
				cell("%.0f", res[fmt.Sprintf("cpu_ns_est_%d", c)]), cell("%.0f", res[fmt.Sprintf("own_ns_est_%d", c)]),
				cell("%.0f", res[fmt.Sprintf("cpu_ns_new_%d", c)]), cell("%.0f", res[fmt.Sprintf("own_ns_new_%d", c)]))
		}
		b.WriteString("\n")
	}
}

// cpuPoints is a series of one CPU figure against x: the all-CPU
// figure, or where /proc/stat gave none in some run (a saturated
// machine), the own processes' one; the name says which.
func (r *report) cpuPoints(dp string, xs []int, key func(int) string) (plotter.XYs, string) {
	for _, kind := range []string{"cpu_ns", "own_ns"} {
		var pts plotter.XYs
		for _, x := range xs {
			v := known(r.results[dp][kind+key(x)])
			if len(v) == 0 {
				pts = nil
				break
			}
			pts = append(pts, plotter.XY{X: float64(x), Y: median(v)})
		}
		if pts != nil {
			if kind == "own_ns" {
				return pts, "own processes"
			}
			return pts, "all CPUs"
		}
	}
	return nil, ""
}

// scalingCharts writes the flow and real-server scaling charts next to
// the rate charts (prefix: -chart) and returns their paths.
func (r *report) scalingCharts(prefix string) ([]string, error) {
	var paths []string
	write := func(suffix, alt string, png []byte) error {
		path := prefix + "-" + suffix + ".png"
		if err := os.WriteFile(path, png, 0o644); err != nil {
			return err
		}
		paths = append(paths, path)
		r.scaleCharts = append(r.scaleCharts, [2]string{alt, path})
		return nil
	}
	if len(r.flowDPs) > 0 && len(r.cpuRates) > 0 {
		var ss []xySeries
		for _, dp := range r.flowDPs {
			pts, what := r.cpuPoints(dp, r.allFlows(), r.flowKey)
			ss = append(ss, xySeries{name: dp + " (" + what + ")", points: pts})
		}
		png, err := scalingChart(fmt.Sprintf("CPU-ns per delivered packet at %.0f kpps vs established flows", r.cpuRates[0]/1e3),
			"established flows", "CPU-ns per delivered packet", ss)
		if err != nil {
			return nil, err
		}
		if err := write("flows-cpu", "CPU per packet vs flows", png); err != nil {
			return nil, err
		}
	}
	if len(r.rsCounts) > 0 {
		var cpu, rate []xySeries
		for _, m := range r.rsMethods {
			for _, sc := range r.rsScheds {
				dp := rsName(m, sc)
				for _, k := range []string{"est", "new"} {
					pts, what := r.cpuPoints(dp, r.rsCounts, func(n int) string { return fmt.Sprintf("_%s_%d", k, n) })
					label := map[string]string{"est": "established", "new": "new flows"}[k]
					cpu = append(cpu, xySeries{name: fmt.Sprintf("%s %s, %s (%s)", m, sc, label, what), points: pts, dashed: k == "new"})
				}
				var pts plotter.XYs
				for _, n := range r.rsCounts {
					if v := known(r.results[dp][fmt.Sprintf("lossless_%d", n)]); len(v) > 0 {
						pts = append(pts, plotter.XY{X: float64(n), Y: median(v)})
					}
				}
				rate = append(rate, xySeries{name: m + " " + sc, points: pts})
			}
		}
		png, err := scalingChart("xlb: CPU-ns per delivered packet vs real servers", "real servers", "CPU-ns per delivered packet", cpu)
		if err != nil {
			return nil, err
		}
		if err := write("rs-cpu", "CPU per packet vs real servers", png); err != nil {
			return nil, err
		}
		png, err = scalingChart(fmt.Sprintf("xlb: lossless rate vs real servers (%s flows)", flowsLabel(r.rsFlows)), "real servers", "lossless rate, Mpps", rate)
		if err != nil {
			return nil, err
		}
		if err := write("rs-rate", "lossless rate vs real servers", png); err != nil {
			return nil, err
		}
	}
	return paths, nil
}

// queueTable renders the queue scaling and its projection to 8 and 16
// queues from the per-core figures.
func (r *report) queueTable(b *strings.Builder) {
	if r.queueScaling <= 1 || r.queueScaling == r.queues || len(r.cpuRates) == 0 {
		return
	}
	k := fmt.Sprintf("_%d", int(r.cpuRates[0]))
	qs := []int{r.queues, r.queueScaling}
	fmt.Fprintf(b, "\n### Queue scaling\n\nThe director's veth with %d and with %d RX/TX queues (a second topology; xlb runs one worker per queue), "+
		"alternated, 1000 flows: lossless rate (Mpps), and CPU-ns per delivered packet at %.0f kpps (all CPUs / own processes) with "+
		"the director's share (minus the sink's, same rate). Medians of the queue rounds; the generator's %d threads share the machine's CPUs "+
		"with every worker.\n\n", r.queues, r.queueScaling, r.cpuRates[0]/1e3, r.threads)
	b.WriteString("| queues |")
	for _, dp := range queueDPs {
		fmt.Fprintf(b, " %s: lossless | most delivered | CPU-ns all / own | director's share all / own |", dp)
	}
	b.WriteString("\n|---|")
	for range queueDPs {
		b.WriteString("---|---|---|---|")
	}
	b.WriteString("\n")
	sinkAll, sinkOwn := median(r.results["sink"]["cpu_ns"+k]), median(r.results["sink"]["own_ns"+k])
	share := func(v []float64, sink float64) string {
		if len(known(v)) == 0 || sink == 0 {
			return "–"
		}
		return fmt.Sprintf("%.0f", median(v)-sink)
	}
	for _, q := range qs {
		fmt.Fprintf(b, "| %d |", q)
		for _, dp := range queueDPs {
			res := r.results[queueName(q, dp)]
			fmt.Fprintf(b, " %s | %s | %s / %s | %s / %s |", cell("%.3f", res["lossless_1000"]), cell("%.3f", res["maxdeliv_1000"]),
				cell("%.0f", res["cpu_ns"+k]), cell("%.0f", res["own_ns"+k]),
				share(res["cpu_ns"+k], sinkAll), share(res["own_ns"+k], sinkOwn))
		}
		b.WriteString("\n")
	}
	// The projection: a worker that has its core to itself forwards
	// 1e9 / (its CPU-ns per packet) packets a second; N queues on N
	// cores, N times that, scaled by the efficiency measured from 1 to
	// 2 queues (the hand-off of flows to their owner worker and shared
	// kernel paths make it less than 1).
	x := r.results[queueName(r.queues, "xlb-dr")]
	x2 := r.results[queueName(r.queueScaling, "xlb-dr")]
	per := median(x["own_ns"+k]) - sinkOwn
	if v := known(x["cpu_ns"+k]); len(v) > 0 && sinkAll > 0 {
		per = median(v) - sinkAll
	}
	l1, l2 := median(x["maxdeliv_1000"]), median(x2["maxdeliv_1000"])
	if per <= 0 || l1 <= 0 {
		b.WriteString("\nNo projection to 8 and 16 queues: this run has no director's share or no delivered rate at one queue.\n")
		return
	}
	eff := l2 / (float64(r.queueScaling) / float64(r.queues) * l1)
	fmt.Fprintf(b, "\n**On paper, not measured** (xlb-dr): the director's share at one queue is %.0f CPU-ns per packet, so one core "+
		"forwards at most %.2f Mpps. Measured efficiency from %d to %d queues: %.2f (the most delivered in any trial grew %.2f×; "+
		"the lossless rate is too sensitive to one preempted worker to compare). "+
		"With one core per queue and that efficiency: 8 queues %.1f Mpps, 16 queues %.1f Mpps (with perfect scaling %.1f and %.1f). "+
		"On this machine the generator and the real servers share the same 2 CPUs, so the measured efficiency understates "+
		"what separate cores would give.\n",
		per, 1e3/per, r.queues, r.queueScaling, eff, l2/l1, 8*eff*1e3/per, 16*eff*1e3/per, 8*1e3/per, 16*1e3/per)
}
