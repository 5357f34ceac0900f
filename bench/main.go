//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xlbproject/xlb/testenv"
)

type options struct {
	xlb         string
	quick       bool
	rounds      int
	flows       []int
	scaleFlows  int
	steps       int
	trialTime   time.Duration
	threads     int
	gen         string // "packet" or "xdp"
	cpuRates    []float64
	cpuTime     time.Duration
	loadRate    float64
	httpTime    time.Duration
	iperfTime   time.Duration
	pings       int
	conns       int
	dps         []string
	out         string
	chart       string
	verbose     bool
	queues      int // RX/TX queues of the director's veth
	xlbBase     string
	trickleRate float64
	rsCounts    []int
	rsScheds    []string
	rsMethods   []string
	rsFlows     int
	rsNewRate   float64
	rsSteps     int
	rsCPUTime   time.Duration
	// queue scaling (queues.go)
	queueScaling int
	queueRounds  int
}

var allDataplanes = []string{"ip-forward", "nft-fwd", "nft-dnat", "xlb-dr", "xlb-dr-offload-generic", "xlb-nat", "xlb-nat-offload-generic", "xlb-tun", "xlb-fullnat", "xlb-fullnat-offload-generic"}

func main() {
	var o options
	var flows, rates, dps, rsCounts, rsScheds, rsMethods string
	flag.StringVar(&o.xlb, "xlb", "bin/xlb", "xlb binary to measure (copied to a temporary directory first)")
	flag.BoolVar(&o.quick, "quick", false, "check in under 2 minutes that every configuration forwards (one short round; figures not meaningful)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each runs every dataplane once, in turn; tables show medians")
	flag.StringVar(&flows, "flows", "1,1000,100000", "UDP flow counts of the lossless-rate search")
	flag.IntVar(&o.scaleFlows, "scale-flows", 1000000, "also search at this many established flows (ip-forward, nft-fwd, xlb-dr; 0: no)")
	flag.IntVar(&o.steps, "steps", 6, "trials per rate search (bisection below the generator's ceiling)")
	flag.DurationVar(&o.trialTime, "trial", 300*time.Millisecond, "duration of one rate-search trial")
	flag.IntVar(&o.threads, "threads", runtime.NumCPU(), "generator threads, one per CPU")
	flag.StringVar(&o.gen, "gen", "packet", "traffic generator: packet (AF_PACKET sendmmsg) or xdp (BPF_PROG_RUN live frames, XDP_REDIRECT)")
	flag.StringVar(&rates, "cpu-rates", "100000,250000", "fixed offered rates (pps) of the CPU-per-packet runs")
	flag.DurationVar(&o.cpuTime, "cpu-time", 1500*time.Millisecond, "CPU-per-packet measurement window")
	flag.Float64Var(&o.loadRate, "load-rate", 200000, "background flood (pps) of the round trips under load")
	flag.DurationVar(&o.httpTime, "http-time", time.Second, "wrk duration per run (whole seconds)")
	flag.DurationVar(&o.iperfTime, "iperf-time", 2*time.Second, "iperf3 duration per run (whole seconds)")
	flag.IntVar(&o.pings, "pings", 3000, "UDP round trips timed per run")
	flag.IntVar(&o.conns, "conns", 16, "concurrent wrk connections")
	flag.StringVar(&dps, "dataplanes", strings.Join(allDataplanes, ","), "configurations to measure")
	flag.StringVar(&o.out, "out", "", "rewrite the \""+sectionHeading+"\" section of this markdown file (e.g. bench/RESULTS.md); with -gen xdp, the \""+sectionHeadingXDP+"\" section")
	flag.StringVar(&o.chart, "chart", "", "write the delivered-vs-offered charts as PNG files with this path prefix (e.g. bench/rate)")
	flag.BoolVar(&o.verbose, "v", false, "print xlb's full counters after each xlb run")
	flag.IntVar(&o.queues, "director-queues", 1, "RX and TX queues of the director's veth; xlb serves them all, one worker each")
	flag.StringVar(&o.xlbBase, "xlb-base", "", "also measure xlb-dr with this binary (e.g. main's), as xlb-dr-base, to compare two builds in one run")
	flag.Float64Var(&o.trickleRate, "trickle-rate", 1000, "also measure CPU per packet at this trickle (pps, one frame per send; 0: no)")
	flag.StringVar(&rsCounts, "rs-counts", "2,1000", "real-server scaling: destination counts of the flood's service (empty: no scaling runs)")
	flag.StringVar(&rsScheds, "rs-scheds", "wlc", "real-server scaling: schedulers, e.g. rr,wlc (rr O(1) per new connection, wlc a scan of every destination)")
	flag.StringVar(&rsMethods, "rs-methods", "dr,nat", "real-server scaling: xlb forwarding methods")
	flag.IntVar(&o.rsFlows, "rs-flows", 100000, "real-server scaling: established flows of the rate search and the CPU run")
	flag.Float64Var(&o.rsNewRate, "rs-new-rate", 50000, "real-server scaling: rate (pps) of the CPU run where every frame is a new flow")
	flag.IntVar(&o.rsSteps, "rs-steps", 4, "real-server scaling: trials per rate search")
	flag.DurationVar(&o.rsCPUTime, "rs-cpu-time", time.Second, "real-server scaling: CPU-per-packet measurement window")
	flag.IntVar(&o.queueScaling, "queue-scaling", 2, "also measure xlb-dr and nft-fwd on a topology whose director veth has this many queues, against -director-queues (0: no)")
	flag.IntVar(&o.queueRounds, "queue-rounds", 1, "queue scaling: rounds, each runs both topologies in turn")
	flag.Parse()
	var err error
	if o.flows, err = parseInts(flows); err == nil {
		var rs []int
		if rs, err = parseInts(rates); err == nil {
			for _, r := range rs {
				o.cpuRates = append(o.cpuRates, float64(r))
			}
		}
	}
	o.dps = strings.Split(dps, ",")
	if err == nil && rsCounts != "" {
		o.rsCounts, err = parseInts(rsCounts)
	}
	o.rsScheds, o.rsMethods = strings.Split(rsScheds, ","), strings.Split(rsMethods, ",")
	if o.quick {
		o.rounds, o.flows, o.scaleFlows, o.steps, o.trialTime = 1, []int{1000}, 0, 2, 200*time.Millisecond
		o.cpuRates, o.cpuTime, o.httpTime, o.iperfTime, o.pings = o.cpuRates[:1], 500*time.Millisecond, time.Second, time.Second, 300
		// Real-server scaling: the largest count only, one scheduler.
		if len(o.rsCounts) > 0 {
			o.rsCounts, o.rsScheds, o.rsSteps = o.rsCounts[len(o.rsCounts)-1:], o.rsScheds[:1], 2
		}
		o.rsCPUTime, o.queueRounds = 500*time.Millisecond, 1
	}
	if err == nil {
		err = run(o)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func parseInts(s string) ([]int, error) {
	var v []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("invalid number %q in %q", f, s)
		}
		v = append(v, n)
	}
	return v, nil
}

type bench struct {
	o       options
	env     *testenv.Env
	dir     string
	bin     string
	dps     []dataplane
	ceiling float64 // this round's sink ceiling, pps
	// results[dataplane][key] holds one value per round.
	results map[string]map[string][]float64
	// trials[dataplane][flows] holds every rate-search trial.
	trials map[string]map[int][]trial
	// drops sums xlb's drop counters over its runs, per dataplane.
	drops map[string]map[string]uint64
	// failures lists what did not forward (the -quick verdict).
	failures []string
	softirqd []int // ksoftirqd threads
	// saturated counts the CPU runs whose /proc/stat figure was left out:
	// other work kept every CPU busy before the traffic started.
	saturated int
	cpuRuns   int
	// guardWaits lists, per xlb configuration, how long each TCP test
	// waited for the SYN guard to come down (bench.settle).
	guardWaits map[string][]time.Duration
	log        io.Writer
}

func (b *bench) record(dp, key string, v float64) {
	if b.results[dp] == nil {
		b.results[dp] = map[string][]float64{}
	}
	b.results[dp][key] = append(b.results[dp][key], v)
}

// xlbDropCounters are the worker counters that mean a frame was not
// forwarded (tx_backlog is a level: frames waiting when it was read).
var xlbDropCounters = []string{"malformed", "no_service", "no_dest", "not_new", "no_neighbour",
	"tx_backlog", "bad_desc", "kick_errors", "no_local_port", "hold_full", "hold_expired", "xmit_dropped",
	"ttl_exceeded", "copy_no_frame", "xdp.malformed", "xsk.rx_invalid", "xsk.tx_invalid"}

func run(o options) (err error) {
	if o.gen != "packet" && o.gen != "xdp" {
		return errors.New("invalid options: -gen must be packet or xdp")
	}
	if o.rounds < 1 || o.pings < 10 || o.conns < 1 || o.steps < 1 || o.threads < 1 || len(o.cpuRates) == 0 {
		return errors.New("invalid options: -rounds, -pings, -conns, -steps, -threads and -cpu-rates must be positive")
	}
	if o.rsSteps < 1 || o.rsFlows < 1 || o.rsNewRate <= 0 || o.queueRounds < 1 || o.rsCPUTime < 200*time.Millisecond {
		return errors.New("invalid options: -rs-steps, -rs-flows, -rs-new-rate and -queue-rounds must be positive, -rs-cpu-time at least 200ms")
	}
	for _, n := range o.rsCounts {
		if n > maxRS {
			return fmt.Errorf("invalid real-server count %d: at most %d", n, maxRS)
		}
	}
	for _, m := range o.rsMethods {
		if _, ok := methodOpts[m]; !ok && len(o.rsCounts) > 0 {
			return fmt.Errorf("invalid -rs-methods %q: must be dr, nat, tun or fullnat", m)
		}
	}
	for _, f := range append(slices.Clone(o.flows), o.scaleFlows) {
		if f > maxFlows {
			return fmt.Errorf("invalid flow count %d: at most %d", f, maxFlows)
		}
	}
	if o.httpTime < time.Second || o.iperfTime < time.Second || o.trialTime < 100*time.Millisecond || o.cpuTime < 200*time.Millisecond {
		return errors.New("invalid durations: -http-time and -iperf-time at least 1s, -trial 100ms, -cpu-time 200ms")
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root to create network namespaces and attach XDP")
	}
	for _, tool := range []string{"ip", "nft", "wrk", "iperf3"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (make deps installs it): %w", tool, err)
		}
	}
	cmdline := "go run ./bench " + strings.Join(os.Args[1:], " ")
	tree := gitTree()
	started := time.Now()
	load0 := loadAvg()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dir, err := os.MkdirTemp("", "xlbbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// Others rebuild bin/xlb while we run: measure a private copy.
	bin := filepath.Join(dir, "xlb")
	if err := copyFile(o.xlb, bin); err != nil {
		return fmt.Errorf("copy xlb binary: %w", err)
	}

	fmt.Fprintf(os.Stderr, "== topology: client, director, 3 real servers\n")
	env, err := topology(o, fmt.Sprintf("xb%d", os.Getpid()%100000), o.queues)
	if err != nil {
		return fmt.Errorf("build topology: %w", err)
	}
	defer func() {
		if cerr := env.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("tear down: %w", cerr))
		}
		fmt.Fprintf(os.Stderr, "== torn down: every namespace removed\n")
	}()

	b := &bench{o: o, env: env, dir: dir, bin: bin, log: os.Stderr,
		softirqd: ksoftirqds(),
		results:  map[string]map[string][]float64{}, trials: map[string]map[int][]trial{}, drops: map[string]map[string]uint64{},
		guardWaits: map[string][]time.Duration{}}
	cleanup, err := b.prepare(ctx)
	defer cleanup()
	if err != nil {
		return err
	}
	var xlbMode string
	for _, name := range o.dps {
		var dp dataplane
		switch name {
		case "ip-forward":
			dp = &kernelFwd{env: env}
		case "nft-fwd":
			dp = &kernelDR{env: env}
		case "nft-dnat":
			dp = &kernelNAT{env: env}
		default:
			m, ok := strings.CutPrefix(name, "xlb-")
			if !ok {
				return fmt.Errorf("invalid dataplane %q: must be one of %s", name, strings.Join(allDataplanes, ", "))
			}
			x, err := newXLB(env, m, bin, dir)
			if err != nil {
				return err
			}
			x.conns = 1 << 18
			if o.scaleFlows > 0 && m == "dr" {
				x.conns = 1 << 21 // 10^6 established flows and wrk's connections
			}
			dp = x
		}
		b.dps = append(b.dps, dp)
		if name == "xlb-dr" && o.xlbBase != "" {
			// Right after xlb-dr in every round: the two builds are
			// measured minutes apart at most.
			base := filepath.Join(dir, "xlb-base")
			if err := copyFile(o.xlbBase, base); err != nil {
				return fmt.Errorf("copy xlb base binary: %w", err)
			}
			x, err := newXLB(env, "dr", base, dir)
			if err != nil {
				return err
			}
			x.suffix, x.conns = "-base", dp.(*xlbDP).conns
			b.dps = append(b.dps, x)
		}
	}

	for r := 1; r <= o.rounds; r++ {
		sink := &sinkDP{env: env}
		if err := b.measureSink(ctx, r, sink); err != nil {
			return fmt.Errorf("sink, round %d: %w", r, err)
		}
		for _, dp := range b.dps {
			if err := b.measure(ctx, r, dp); err != nil {
				return fmt.Errorf("%s, round %d: %w", dp.Name(), r, err)
			}
			if x, ok := dp.(*xlbDP); ok && xlbMode == "" {
				xlbMode = x.mode()
			}
		}
	}

	if err := b.measureScaling(ctx); err != nil {
		return err
	}
	if err := b.measureQueues(ctx); err != nil {
		return err
	}

	rep := report{
		cmdline: cmdline, date: started.UTC().Format("2006-01-02 15:04 UTC"), elapsed: time.Since(started),
		machine: machineNote(load0, loadAvg()), xlbMode: xlbMode, rounds: o.rounds, tree: tree,
		flows: o.flows, scaleFlows: o.scaleFlows, cpuRates: o.cpuRates, loadRate: o.loadRate, threads: o.threads, gen: o.gen,
		trialTime: o.trialTime, steps: o.steps, conns: o.conns,
		results: b.results, drops: b.drops, saturated: b.saturated, cpuRuns: b.cpuRuns,
		trickleRate: o.trickleRate, guardWaits: b.guardWaits,
		rsCounts: o.rsCounts, rsMethods: o.rsMethods, rsScheds: o.rsScheds, rsFlows: o.rsFlows, rsNewRate: o.rsNewRate,
		queues: o.queues, queueScaling: o.queueScaling,
	}
	for _, dp := range b.dps {
		rep.dps = append(rep.dps, dp.Name())
		if b.flowScaling(dp.Name()) {
			rep.flowDPs = append(rep.flowDPs, dp.Name())
		}
	}
	if o.chart != "" {
		for _, f := range append(slices.Clone(o.flows), o.scaleFlows) {
			if f == 0 {
				continue
			}
			var ss []chartSeries
			for _, name := range rep.dps {
				ss = append(ss, chartSeries{name: name, points: b.trials[name][f]})
			}
			png, err := rateChart(fmt.Sprintf("64-byte UDP, %s flows: delivered vs offered (%d rounds)", flowsLabel(f), o.rounds), ss)
			if err != nil {
				return err
			}
			path := fmt.Sprintf("%s-%s.png", o.chart, flowsLabel(f))
			if err := os.WriteFile(path, png, 0o644); err != nil {
				return err
			}
			rep.charts = append(rep.charts, path)
		}
	}
	if o.chart != "" {
		// Listed under their own sections (report.scaleCharts), not
		// with the delivered-vs-offered charts.
		if _, err := rep.scalingCharts(o.chart); err != nil {
			return err
		}
	}
	table := rep.markdown()
	fmt.Println()
	fmt.Print(table)
	if o.out != "" {
		if err := writeSection(o.out, heading(o.gen), table); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "== wrote %q in %s\n", heading(o.gen), o.out)
	}
	if len(b.failures) > 0 {
		return fmt.Errorf("%d checks failed:\n  %s", len(b.failures), strings.Join(b.failures, "\n  "))
	}
	if o.quick {
		fmt.Fprintf(os.Stderr, "== quick: every configuration forwarded traffic in every test\n")
	}
	return nil
}

// prepare makes the real servers drop the flood at ingress (no socket,
// no ICMP unreachable sent back: rx_packets still counts it), runs
// `xlb decap` on them (for xlb-tun; every configuration then pays its
// XDP pass alike), gives the director its FULLNAT local addresses and
// starts iperf3's server on the first real server.
func (b *bench) prepare(ctx context.Context) (cleanup func(), err error) {
	var procs []*testenv.Proc
	cleanup = func() {
		for _, p := range procs {
			p.Stop(syscall.SIGTERM, 3*time.Second)
		}
	}
	for _, h := range b.env.Reals {
		rule := fmt.Sprintf("table netdev xlbbench_sink {\n\tchain ingress {\n"+
			"\t\ttype filter hook ingress device \"eth0\" priority 0; policy accept;\n"+
			"\t\tudp dport %d counter drop\n\t}\n}\n", portPPS)
		if err := nft(h, rule); err != nil {
			return cleanup, err
		}
		if slices.ContainsFunc(b.o.dps, func(dp string) bool { return strings.HasPrefix(dp, "xlb-tun") }) {
			// What testenv.SetupTunReal adds to a DR real server.
			for _, k := range []string{"all", "default", "eth0"} {
				if err := h.Sysctl("net/ipv4/conf/"+k+"/rp_filter", "0"); err != nil {
					return cleanup, err
				}
			}
			p, err := h.Start(b.bin, "decap", "--iface", "eth0")
			if err != nil {
				return cleanup, err
			}
			procs = append(procs, p)
			for deadline := time.Now().Add(10 * time.Second); !strings.Contains(p.Output.String(), "running"); {
				if p.Exited() || time.Now().After(deadline) {
					return cleanup, fmt.Errorf("xlb decap in %s did not start: %v\n%s", h.NSName, p.Err(), p.Output.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	for _, a := range lAddrs { // FULLNAT's local addresses
		if err := b.env.Director.AddAddr("eth0", netip.PrefixFrom(a, 32)); err != nil {
			return cleanup, err
		}
	}
	// Not bound to the VIP: the NAT baselines deliver to the real
	// server's own address; in DR an unbound listener answers from the
	// VIP it was reached at.
	iperf, err := b.env.Reals[0].Start("iperf3", "-s", "-p", fmt.Sprint(portIperf))
	if err != nil {
		return cleanup, err
	}
	procs = append(procs, iperf)
	return cleanup, sleep(ctx, 300*time.Millisecond) // iperf3 listening
}

// noteXLB prints xlb's counters after a run and adds its drops to the
// metric's totals.
func (b *bench) noteXLB(metric, raw string, st map[string]uint64) { // metric: the dataplane's name
	if b.drops[metric] == nil {
		b.drops[metric] = map[string]uint64{}
	}
	d := b.drops[metric]
	var parts []string
	for _, c := range xlbDropCounters {
		d[c] += st[c]
		if st[c] != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", c, st[c]))
		}
	}
	// Frames the XDP program redirected that never reached the worker:
	// the kernel drops them when the socket's RX ring is full or the
	// fill ring has no free UMEM frame (XDP_STATISTICS counts both).
	full, noFrame := st["xsk.rx_ring_full"], st["xsk.rx_dropped"]
	if _, ok := st["xsk.rx_ring_full"]; !ok && st["xdp.redirect"] > st["rx_frames"] {
		full = st["xdp.redirect"] - st["rx_frames"] // an older xlb: no socket statistics
	}
	d["xsk.rx_ring_full"] += full
	d["xsk.rx_dropped"] += noFrame
	d["xdp.redirect"] += st["xdp.redirect"]
	d["tx_frames"] += st["tx_frames"]
	drops := "none"
	if parts != nil {
		drops = strings.Join(parts, " ")
	}
	fmt.Fprintf(b.log, "      xlb counters: xdp redirect=%d rx_frames=%d tx_frames=%d conn_new=%d conn_hit=%d; "+
		"dropped before the worker: %d RX ring full, %d no free UMEM frame; other drops: %s\n",
		st["xdp.redirect"], st["rx_frames"], st["tx_frames"], st["conn_new"], st["conn_hit"], full, noFrame, drops)
	if b.o.verbose {
		fmt.Fprint(b.log, indent(raw, "      | "))
	}
}

func indent(s, prefix string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(prefix + l)
	}
	b.WriteString("\n")
	return b.String()
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o755)
}

// gitTree names the commit the working tree was at when the run
// started, and whether it had changes not committed yet, so a result
// can be traced to the code (-xlb is usually built from this tree).
func gitTree() string {
	head, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	t := "commit " + strings.TrimSpace(string(head))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		t += " with uncommitted changes"
	}
	return t
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return "?"
	}
	return f[0]
}

// machineNote describes where the numbers came from.
func machineNote(load0, load1 string) string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	var u syscall.Utsname
	kernel := "?"
	if syscall.Uname(&u) == nil {
		var s []byte
		for _, c := range u.Release {
			if c == 0 {
				break
			}
			s = append(s, byte(c))
		}
		kernel = string(s)
	}
	return fmt.Sprintf("%s, %d vCPUs (%s) shared with other work, Linux %s, %s/%s; 1-minute load average %s at the start, %s at the end",
		runtime.Version(), runtime.NumCPU(), model, kernel, runtime.GOOS, runtime.GOARCH, load0, load1)
}

// topology builds the bench's topology (client, director with
// dirQueues queues, 3 real servers) and readies it for o.gen.
//
// With the xdp generator, an xdp_frame redirected into the client's veth
// arrives at its bridge-side end, which takes it only with NAPI: that
// port gets an XDP program that passes everything (passProgram), and
// builds an skb around the frame's page, 256 bytes of headroom, not
// cloned, so the bridge hands the director a frame that XDP runs on
// without a copy, as on a NIC. Not GRO, the other way to NAPI: it merged
// the client's TCP segments into 64 KB GSO packets, which generic XDP
// sees whole, larger than the MTU, and which no AF_XDP frame holds, so
// every offloaded configuration's iperf3 stalled. The client's veth has
// a queue per CPU: the redirect picks the bridge-side RX queue by the
// sending CPU, and each queue's NAPI runs on the CPU that fed it,
// between that thread's own batches. With one queue, the second
// thread's frames met a ring whose NAPI the other CPU held, and 2-20%
// were dropped there at any rate (xdp_xmit_errors), the sink's runs
// included. The director is as with the packet generator.
func topology(o options, name string, dirQueues int) (env *testenv.Env, err error) {
	opts := testenv.Options{Name: name, RealServers: 3, Servers: true, DirectorQueues: dirQueues}
	if o.gen == "xdp" {
		opts.ClientQueues = runtime.NumCPU()
	}
	if env, err = testenv.Setup(opts); err != nil {
		return nil, err
	}
	if o.gen != "xdp" {
		return env, nil
	}
	if err := passOnPort(env.Bridge, env.Client.Peer); err != nil {
		return nil, errors.Join(err, env.Close())
	}
	return env, nil
}
