//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/xlbproject/xlb/testenv"
)

// Real-server scaling: the flood's service (VIP:9) gets n destinations,
// 2 to 1000, each an address of its own (rsAddr) that one of the three
// real-server namespaces holds on its eth0, i modulo 3, and that the
// director reaches on-link (a /16 route on eth0, a permanent neighbour
// entry per address with its namespace's MAC: permanent entries are not
// garbage-collected, and the host's neighbour table, shared by every
// namespace, keeps at most gc_thresh3 = 1024 others). DR sends each
// frame to its destination's MAC, NAT also rewrites the destination
// address to it; either way a frame reaches the namespace that holds its
// destination, whose eth0 counts it (and drops it at ingress, as for
// every flood). The spread over the three namespaces is checked against
// the addresses each holds, so frames sent to the wrong server (or all
// to one) fail the run.

// rsNet holds the scaling destinations: 10.201.0.0/16, unused by the
// topology.
var rsNet = netip.MustParsePrefix("10.201.0.0/16")

// rsAddr is scaling destination i (0-based): 10.201.i/250.(i%250+1).
func rsAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 201, byte(i / 250), byte(i%250 + 1)})
}

// maxRS is what rsAddr can address.
const maxRS = 250 * 256

// batchIP runs `ip -batch -` with the commands in h's namespace.
func batchIP(h *testenv.Host, cmds []string) error {
	c := h.Command("ip", "-batch", "-")
	c.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("ip -batch in %s: %w: %s", h.NSName, err, out)
	}
	return nil
}

// addScaleAddrs gives the real servers and the director's neighbour
// table the first n scaling destinations.
func (b *bench) addScaleAddrs(n int) error {
	if n > maxRS {
		return fmt.Errorf("invalid real-server count %d: at most %d", n, maxRS)
	}
	per := make([][]string, len(b.env.Reals))
	var neigh []string
	for i := 0; i < n; i++ {
		j := i % len(b.env.Reals)
		h := b.env.Reals[j]
		per[j] = append(per[j], fmt.Sprintf("address replace %v/32 dev %s", rsAddr(i), h.Ifname))
		neigh = append(neigh, fmt.Sprintf("neigh replace %v lladdr %v dev eth0 nud permanent", rsAddr(i), h.MAC))
	}
	for j, h := range b.env.Reals {
		if len(per[j]) > 0 {
			if err := batchIP(h, per[j]); err != nil {
				return err
			}
		}
	}
	return batchIP(b.env.Director, append([]string{fmt.Sprintf("route replace %v dev eth0", rsNet)}, neigh...))
}

// scaleRules is newXLB's rules with the flood's service over n scaling
// destinations, scheduled by sched.
func scaleRules(env *testenv.Env, method, sched string, n int) string {
	opt := methodOpts[method]
	var b strings.Builder
	svc := func(proto string, port uint16, sched string, dests []netip.Addr) {
		fmt.Fprintf(&b, "-A -%s %v:%d -s %s\n", proto, testenv.VIP, port, sched)
		if method == "fullnat" {
			laddrRules(&b, proto, port)
		}
		for _, d := range dests {
			fmt.Fprintf(&b, "-a -%s %v:%d -r %v:%d %s -w 1\n", proto, testenv.VIP, port, d, port, opt)
		}
	}
	var flood, reals []netip.Addr
	for i := 0; i < n; i++ {
		flood = append(flood, rsAddr(i))
	}
	for i := range env.Reals {
		reals = append(reals, testenv.RealAddr(i))
	}
	svc("u", portPPS, sched, flood)
	svc("u", portEcho, "rr", reals)
	svc("t", portHTTP, "rr", reals)
	svc("t", portIperf, "rr", reals[:1])
	return b.String()
}

// rsName names one scaling configuration's results: "rs:dr-rr".
func rsName(method, sched string) string { return "rs:" + method + "-" + sched }

// measureScaling runs the real-server scaling: for every method,
// scheduler and count, a fresh xlb, checked; a rate search over
// -rs-flows established flows; the CPU per packet at the first
// -cpu-rates rate over those flows; and at -rs-new-rate with every
// frame a new flow (a scheduling decision and a connection insert each).
func (b *bench) measureScaling(ctx context.Context) error {
	if len(b.o.rsCounts) == 0 {
		return nil
	}
	top := 0
	for _, n := range b.o.rsCounts {
		top = max(top, n)
	}
	fmt.Fprintf(b.log, "== real-server scaling: %d destinations on the real servers, methods %s, schedulers %s\n",
		top, strings.Join(b.o.rsMethods, ","), strings.Join(b.o.rsScheds, ","))
	if err := b.addScaleAddrs(top); err != nil {
		return err
	}
	for _, n := range b.o.rsCounts {
		for _, m := range b.o.rsMethods {
			for _, sc := range b.o.rsScheds {
				if err := b.scalePoint(ctx, m, sc, n); err != nil {
					return fmt.Errorf("real-server scaling, %s %s %d: %w", m, sc, n, err)
				}
			}
		}
	}
	return nil
}

func (b *bench) scalePoint(ctx context.Context, method, sched string, n int) (err error) {
	x, err := newXLB(b.env, method, b.bin, b.dir)
	if err != nil {
		return err
	}
	x.suffix = fmt.Sprintf("-%s-%d", sched, n)
	x.rules = filepath.Join(b.dir, x.Name()+".rules")
	if err := os.WriteFile(x.rules, []byte(scaleRules(b.env, method, sched, n)), 0o644); err != nil {
		return err
	}
	x.conns = 1 << 20 // the established flows and the new ones
	name := rsName(method, sched)
	if err := x.Start(ctx); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	defer func() {
		if serr := x.Stop(); serr != nil {
			err = errors.Join(err, fmt.Errorf("stop: %w", serr))
		}
	}()
	if err := b.check(ctx, x); err != nil {
		return fmt.Errorf("%s does not forward: %w", x.Name(), err)
	}
	pid := x.p.Cmd.Process.Pid
	f := b.o.rsFlows
	if err := b.warm(ctx, f); err != nil {
		return err
	}
	best, trials, err := searchLossless(b.ceiling, b.o.rsSteps, func(target float64) (trial, error) {
		return b.trial(ctx, f, target, false)
	})
	if err != nil {
		return err
	}
	b.record(name, fmt.Sprintf("lossless_%d", n), best/1e6)
	most := 0.0
	for _, t := range trials {
		most = max(most, t.delivered)
	}
	fmt.Fprintf(b.log, "        %-11s %s %s, %4d real servers, %s flows: lossless %.3f Mpps, most delivered %.3f Mpps\n",
		"xlb-"+method, method, sched, n, flowsLabel(f), best/1e6, most/1e6)
	if most <= 0 {
		b.failures = append(b.failures, fmt.Sprintf("%s %s, %d real servers: no frame of the flood delivered", method, sched, n))
	}
	defer func(t time.Duration) { b.o.cpuTime = t }(b.o.cpuTime)
	b.o.cpuTime = b.o.rsCPUTime
	each, err := b.cpuRunOn(ctx, name, cpuSpec{rate: b.o.cpuRates[0], flows: f, key: fmt.Sprintf("_est_%d", n)}, false, pid)
	if err != nil {
		return err
	}
	if err := b.checkSpread(method, sched, n, each); err != nil {
		b.failures = append(b.failures, err.Error())
		fmt.Fprintf(b.log, "        FAILED: %v\n", err)
	}
	// New flows: numbered after the established ones, one per frame.
	fresh := int(b.o.rsNewRate*(b.o.cpuTime.Seconds()+1)) + 1000
	if _, err := b.cpuRunOn(ctx, name, cpuSpec{rate: b.o.rsNewRate, flows: fresh, first: f, key: fmt.Sprintf("_new_%d", n)}, false, pid); err != nil {
		return err
	}
	raw, st, err := x.Stats()
	if err != nil {
		return err
	}
	b.noteXLB("xlb-"+method+" (real-server scaling)", raw, st)
	return nil
}

// checkSpread checks that the frames each real-server namespace received
// (each) match the scaling destinations it holds: the schedulers spread
// flows about evenly over equal weights, so each namespace should get
// its share of the destinations' traffic; it fails below half that
// share, or when a namespace holding none got more than 1%.
func (b *bench) checkSpread(method, sched string, n int, each []uint64) error {
	var total uint64
	for _, c := range each {
		total += c
	}
	if total == 0 {
		return fmt.Errorf("%s %s, %d real servers: nothing delivered", method, sched, n)
	}
	var parts []string
	var bad []string
	for j, c := range each {
		held := n / len(each)
		if j < n%len(each) {
			held++
		}
		share, want := float64(c)/float64(total), float64(held)/float64(n)
		parts = append(parts, fmt.Sprintf("%s %.1f%% (holds %d: %.1f%%)", b.env.Reals[j].Name, 100*share, held, 100*want))
		if (held > 0 && share < want/2) || (held == 0 && share > 0.01) {
			bad = append(bad, b.env.Reals[j].Name)
		}
	}
	fmt.Fprintf(b.log, "        delivered per real-server namespace: %s\n", strings.Join(parts, ", "))
	if bad != nil {
		return fmt.Errorf("%s %s, %d real servers: frames not spread as the destinations are (%s): %s",
			method, sched, n, strings.Join(bad, ", "), strings.Join(parts, ", "))
	}
	return nil
}
