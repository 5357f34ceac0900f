//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/xlbproject/xlb/testenv"
)

type options struct {
	xlb       string
	rounds    int
	ppsTime   time.Duration
	httpTime  time.Duration
	iperfTime time.Duration
	pings     int
	flows     int
	ppsRate   string
	ppsGap    string
	conns     int
	metrics   string
	nat       bool
	out       string
	verbose   bool
	queues    int // RX/TX queues of the director's veth
}

func main() {
	var o options
	flag.StringVar(&o.xlb, "xlb", "bin/xlb", "xlb binary to measure (copied to a temporary directory first)")
	flag.IntVar(&o.rounds, "rounds", 3, "runs per dataplane and metric, alternating dataplanes; the table shows medians")
	flag.DurationVar(&o.ppsTime, "pps-time", 5*time.Second, "packet-rate measurement window per run")
	flag.DurationVar(&o.httpTime, "http-time", 3*time.Second, "wrk duration per run (whole seconds)")
	flag.DurationVar(&o.iperfTime, "iperf-time", 3*time.Second, "iperf3 duration per run (whole seconds)")
	flag.IntVar(&o.pings, "pings", 2000, "UDP round trips timed per run")
	flag.IntVar(&o.flows, "flows", 1024, "UDP flows (source ports) in the packet-rate flood")
	flag.StringVar(&o.ppsRate, "pps-rate", "", "offered rate of the packet-rate flood, as trafgen's --rate takes it (e.g. 1000pps, 200000pps; default: no limit)")
	flag.StringVar(&o.ppsGap, "pps-gap", "", "gap between the packet-rate flood's frames, as trafgen's --gap takes it (e.g. 1ms, 50us): one frame at a time, where --rate sends bursts")
	flag.IntVar(&o.conns, "conns", 16, "concurrent wrk connections")
	flag.StringVar(&o.metrics, "metrics", "pps,http,iperf,rtt", "comma-separated metrics to run")
	flag.BoolVar(&o.nat, "nat", true, "also measure the kernel NAT baseline (nftables DNAT + conntrack) as an extra column")
	flag.StringVar(&o.out, "out", "", "rewrite the \""+sectionHeading+"\" section of this markdown file (e.g. bench/RESULTS.md)")
	flag.BoolVar(&o.verbose, "v", false, "print xlb's full counters after each xlb run")
	flag.IntVar(&o.queues, "director-queues", 1, "RX and TX queues of the director's veth; xlb serves them all, one worker each")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// A metric is one measurement, run in turn on every dataplane; it fills
// one or more table rows.
type metric struct {
	name string
	sink bool // also run the sink (see sinkDP) each round
	run  func(b *bench, ctx context.Context, dp dataplane) (sample, error)
	rows []row
}

type row struct {
	key, label  string
	format      string
	lowerBetter bool // the label says so; the ratio is still xlb/kernel
	noRatio     bool
}

func metrics(o options) []metric {
	return []metric{
		{name: "pps", sink: true, run: (*bench).packetRate, rows: []row{
			{key: "pps_delivered", format: "%.3f", label: fmt.Sprintf(
				"UDP flood, %d flows of 60-byte frames: **Mpps reaching the real servers**", o.flows)},
			{key: "pps_sent", format: "%.3f", label: "UDP flood: Mpps the client sent (trafgen, 1 process, no rate limit)"},
			{key: "xlb_cpu", format: "%.2f", noRatio: true, label: "UDP flood: cores the xlb process kept busy (user+sys)"},
			{key: "cost_us", format: "%.2f", label: "UDP flood: **CPU per forwarded frame**, core-µs, estimated (doc.go: sender's share subtracted)"},
		}},
		{name: "http", run: (*bench).connRate, rows: []row{
			{key: "conn_rate", format: "%.0f", label: fmt.Sprintf(
				"**TCP connections/s** (wrk, one HTTP request per connection, %d concurrent)", o.conns)},
			{key: "conn_errors", format: "%.0f", noRatio: true, label: "wrk socket errors + non-2xx answers per run"},
		}},
		{name: "iperf", run: (*bench).throughput, rows: []row{
			{key: "gbps", format: "%.2f", label: "iperf3, one TCP stream to one real server: Gbit/s"},
		}},
		{name: "rtt", run: (*bench).roundTrip, rows: []row{
			{key: "rtt_p50", format: "%.0f", lowerBetter: true, label: "UDP request/response RTT p50, µs (lower is better)"},
			{key: "rtt_p99", format: "%.0f", lowerBetter: true, label: "UDP request/response RTT p99, µs (lower is better)"},
		}},
	}
}

type bench struct {
	o           options
	env         *testenv.Env
	dir         string
	trafgenConf string
	xlb         *xlbDP
	dps         []dataplane
	// results[dataplane][row key] holds one value per round.
	results map[string]map[string][]float64
	// drops sums xlb's drop counters over its runs, per metric.
	drops map[string]map[string]uint64
	log   io.Writer
}

// xlbDropCounters are the worker counters that mean a frame was not
// forwarded (tx_backlog is a level: frames waiting when it was read).
var xlbDropCounters = []string{"malformed", "no_service", "no_dest", "not_new", "no_neighbour",
	"tx_backlog", "bad_desc", "kick_errors", "xdp.malformed", "xsk.rx_invalid", "xsk.tx_invalid"}

func run(o options) (err error) {
	if o.rounds < 1 || o.flows < 1 || o.flows > 50000 || o.pings < 10 || o.conns < 1 {
		return errors.New("invalid options: -rounds, -pings and -conns must be positive, -flows 1..50000")
	}
	if o.ppsTime < time.Second || o.httpTime < time.Second || o.iperfTime < time.Second {
		return errors.New("invalid durations: each must be at least 1s")
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root to create network namespaces and attach XDP")
	}
	var ms []metric
	for _, name := range strings.Split(o.metrics, ",") {
		found := false
		for _, m := range metrics(o) {
			if m.name == strings.TrimSpace(name) {
				ms, found = append(ms, m), true
			}
		}
		if !found {
			return fmt.Errorf("invalid metric %q: must be pps, http, iperf or rtt", name)
		}
	}
	for _, tool := range []string{"ip", "nft", "trafgen", "wrk", "iperf3"} {
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
	env, err := testenv.Setup(testenv.Options{Name: fmt.Sprintf("xb%d", os.Getpid()%100000), RealServers: 3, Servers: true, DirectorQueues: o.queues})
	if err != nil {
		return fmt.Errorf("build topology: %w", err)
	}
	defer func() {
		if cerr := env.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("tear down: %w", cerr))
		}
		fmt.Fprintf(os.Stderr, "== torn down: every namespace removed\n")
	}()

	b := &bench{o: o, env: env, dir: dir, log: os.Stderr,
		results: map[string]map[string][]float64{}, drops: map[string]map[string]uint64{}}
	cleanup, err := b.prepare(ctx)
	defer cleanup()
	if err != nil {
		return err
	}
	if b.xlb, err = newXLB(env, bin, dir); err != nil {
		return err
	}
	b.dps = []dataplane{b.xlb, &kernelDR{env: env}}
	if o.nat {
		b.dps = append(b.dps, &kernelNAT{env: env})
	}

	for _, m := range ms {
		dps := b.dps
		if m.sink {
			dps = append(slices.Clip(dps), &sinkDP{env: env})
		}
		for r := 1; r <= o.rounds; r++ {
			for _, dp := range dps {
				if err := b.measure(ctx, m, r, dp); err != nil {
					return fmt.Errorf("%s on %s, round %d: %w", m.name, dp.Name(), r, err)
				}
			}
		}
	}

	rep := report{
		cmdline: cmdline, date: started.UTC().Format("2006-01-02"), elapsed: time.Since(started),
		machine: machineNote(load0, loadAvg()), xlbMode: b.xlb.mode(), rounds: o.rounds, nat: o.nat, tree: tree,
	}
	for _, m := range ms {
		rep.rows = append(rep.rows, m.rows...)
	}
	addCost(b.results)
	rep.results = b.results
	rep.drops = b.drops
	table := rep.markdown()
	fmt.Println()
	fmt.Print(table)
	if o.out != "" {
		if err := writeSection(o.out, sectionHeading, table); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "== wrote %q in %s\n", sectionHeading, o.out)
	}
	return nil
}

// prepare makes the real servers drop the flood at ingress (no socket,
// no ICMP unreachable sent back: rx_packets still counts it), starts
// iperf3's server on the first real server and writes trafgen's frames.
func (b *bench) prepare(ctx context.Context) (cleanup func(), err error) {
	var iperf *testenv.Proc
	cleanup = func() {
		if iperf != nil {
			iperf.Stop(syscall.SIGTERM, 3*time.Second)
		}
	}
	for _, h := range b.env.Reals {
		rule := fmt.Sprintf("table netdev xlbbench_sink {\n\tchain ingress {\n"+
			"\t\ttype filter hook ingress device \"eth0\" priority 0; policy accept;\n"+
			"\t\tudp dport %d counter drop\n\t}\n}\n", portPPS)
		if err := nft(h, rule); err != nil {
			return cleanup, err
		}
	}
	// Not bound to the VIP: the NAT baseline delivers to the real
	// server's own address; in DR an unbound listener answers from the
	// VIP it was reached at.
	if iperf, err = b.env.Reals[0].Start("iperf3", "-s", "-p", fmt.Sprint(portIperf)); err != nil {
		return cleanup, err
	}
	b.trafgenConf = filepath.Join(b.dir, "flood.trafgen")
	if err := trafgenConfig(b.env, b.o.flows, b.trafgenConf); err != nil {
		return cleanup, err
	}
	return cleanup, sleep(ctx, 300*time.Millisecond) // iperf3 listening
}

// measure starts dp, checks that it forwards, runs m once, records the
// values and stops dp (also on error).
func (b *bench) measure(ctx context.Context, m metric, round int, dp dataplane) (err error) {
	if err := dp.Start(ctx); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	defer func() {
		if serr := dp.Stop(); serr != nil {
			err = errors.Join(err, fmt.Errorf("stop: %w", serr))
		}
	}()
	if err := b.check(ctx, dp); err != nil {
		return fmt.Errorf("%s does not forward: %w", dp.Name(), err)
	}
	s, err := m.run(b, ctx, dp)
	if err != nil {
		return err
	}
	fmt.Fprintf(b.log, "%-5s round %d  %-6s %s\n", m.name, round, dp.Name(), s.detail)
	if b.results[dp.Name()] == nil {
		b.results[dp.Name()] = map[string][]float64{}
	}
	for k, v := range s.values {
		b.results[dp.Name()][k] = append(b.results[dp.Name()][k], v)
	}
	if x, ok := dp.(*xlbDP); ok {
		raw, st, err := x.Stats()
		if err != nil {
			return err
		}
		b.noteXLB(m.name, raw, st)
	}
	return nil
}

// noteXLB prints xlb's counters after a run and adds its drops to the
// metric's totals.
func (b *bench) noteXLB(metric, raw string, st map[string]uint64) {
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
