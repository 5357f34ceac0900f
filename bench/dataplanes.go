//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/xlbproject/xlb/testenv"
)

// Virtual services every dataplane serves on the VIP. The packet-rate
// port has no listener: the real servers drop it at ingress (see
// bench.prepare), so they never answer with ICMP.
const (
	portPPS   = 9    // UDP discard: the packet-rate flood
	portEcho  = 53   // UDP: testenv's echo servers, for round trips
	portHTTP  = 80   // TCP: testenv's HTTP servers
	portIperf = 5201 // TCP: iperf3 on the first real server only
)

// A dataplane is one way of balancing the VIP: xlb, or one of the
// kernel baselines. Start makes it serve the services above on the
// director; Stop removes every trace of it so the next one starts from
// the same topology.
type dataplane interface {
	Name() string
	Start(ctx context.Context) error
	Stop() error
}

// xlbDP runs `xlb run` on the director in DR mode with rr, a fresh
// process (empty connection table, zero counters) for every measurement.
type xlbDP struct {
	bin   string
	dir   string
	env   *testenv.Env
	rules string // rules file
	n     int    // processes started, for socket names
	p     *testenv.Proc
	sock  string
	// attached is the daemon's "xdp attached" log line: XDP mode and
	// AF_XDP copy or zero-copy.
	attached string
}

func newXLB(env *testenv.Env, bin, dir string) (*xlbDP, error) {
	var b strings.Builder
	svc := func(proto string, port uint16, reals int) {
		fmt.Fprintf(&b, "-A -%s %v:%d -s rr\n", proto, testenv.VIP, port)
		for i := 0; i < reals; i++ {
			fmt.Fprintf(&b, "-a -%s %v:%d -r %v:%d -g -w 1\n", proto, testenv.VIP, port, testenv.RealAddr(i), port)
		}
	}
	svc("u", portPPS, len(env.Reals))
	svc("u", portEcho, len(env.Reals))
	svc("t", portHTTP, len(env.Reals))
	svc("t", portIperf, 1)
	x := &xlbDP{bin: bin, dir: dir, env: env, rules: filepath.Join(dir, "xlb.rules")}
	if err := os.WriteFile(x.rules, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	return x, nil
}

func (x *xlbDP) Name() string { return "xlb" }

func (x *xlbDP) Start(ctx context.Context) error {
	x.n++
	x.sock = filepath.Join(x.dir, fmt.Sprintf("xlb%d.sock", x.n))
	// 2^18 entries: wrk opens ~10^4 connections per second and IPVS
	// keeps closed ones for seconds to minutes.
	p, err := x.env.Director.Start(x.bin, "run", "--iface", "eth0", "--rules", x.rules,
		"--socket", x.sock, "--conns", "262144")
	if err != nil {
		return err
	}
	x.p = p
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := x.ctl("-L", "-n"); err == nil {
			break
		}
		if p.Exited() || time.Now().After(deadline) || ctx.Err() != nil {
			p.Stop(syscall.SIGKILL, time.Second)
			x.p = nil
			return fmt.Errorf("xlb did not come up on %s: %v\n%s", x.sock, p.Err(), p.Output.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, l := range strings.Split(p.Output.String(), "\n") {
		if strings.Contains(l, "xdp attached") {
			x.attached = l
		}
	}
	return nil
}

// ctl runs an ipvsadm-style command against the running daemon.
func (x *xlbDP) ctl(args ...string) (string, error) {
	out, err := exec.Command(x.bin, append([]string{"--socket", x.sock}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("xlb %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Stats returns `xlb --xlb-stats` of the running daemon: the raw text
// and the counters by name ("xdp.redirect", "rx_frames", ...).
func (x *xlbDP) Stats() (string, map[string]uint64, error) {
	out, err := x.ctl("--xlb-stats")
	if err != nil {
		return "", nil, err
	}
	return out, parseStats(out), nil
}

func (x *xlbDP) Stop() error {
	if x.p == nil {
		return nil
	}
	p := x.p
	x.p = nil
	if err := p.Stop(syscall.SIGTERM, 10*time.Second); err != nil {
		return fmt.Errorf("xlb exit: %w\n%s", err, p.Output.String())
	}
	return nil
}

// Attach mode and AF_XDP mode from the daemon's log line.
var attachRE = regexp.MustCompile(`mode=(\S+).*af_xdp=(\S+)`)

func (x *xlbDP) mode() string {
	m := attachRE.FindStringSubmatch(x.attached)
	if m == nil {
		return "unknown"
	}
	return fmt.Sprintf("%s XDP, AF_XDP %s mode", m[1], m[2])
}

// kernelDR is the kernel's nearest equivalent of DR forwarding without
// IPVS: an nftables chain on the director's eth0 ingress hook rewrites
// the Ethernet addresses (destination chosen by a hash of the client's
// address and port, so a flow sticks to one real server) and sends the
// frame back out of eth0 with `fwd to`. No conntrack, no routing, no IP
// stack: the frame goes from the veth's receive path straight to its
// transmit path. See doc.go for why this is the baseline.
type kernelDR struct{ env *testenv.Env }

const drTable = "xlbbench_dr"

func (k *kernelDR) Name() string { return "kernel" }

func (k *kernelDR) ruleset() string {
	macs := func(n int) string {
		var parts []string
		for i := 0; i < n; i++ {
			parts = append(parts, fmt.Sprintf("%d : %v", i, k.env.Reals[i].MAC))
		}
		return strings.Join(parts, ", ")
	}
	n := len(k.env.Reals)
	var b strings.Builder
	fmt.Fprintf(&b, "table netdev %s {\n", drTable)
	fmt.Fprintf(&b, "\tchain ingress {\n")
	fmt.Fprintf(&b, "\t\ttype filter hook ingress device \"eth0\" priority 0; policy accept;\n")
	set := fmt.Sprintf("ether saddr set %v ether daddr set", k.env.Director.MAC)
	fmt.Fprintf(&b, "\t\tip daddr %v udp dport { %d, %d } %s jhash ip saddr . udp sport mod %d map { %s } fwd to \"eth0\"\n",
		testenv.VIP, portPPS, portEcho, set, n, macs(n))
	fmt.Fprintf(&b, "\t\tip daddr %v tcp dport %d %s jhash ip saddr . tcp sport mod %d map { %s } fwd to \"eth0\"\n",
		testenv.VIP, portHTTP, set, n, macs(n))
	fmt.Fprintf(&b, "\t\tip daddr %v tcp dport %d %s %v fwd to \"eth0\"\n",
		testenv.VIP, portIperf, set, k.env.Reals[0].MAC)
	fmt.Fprintf(&b, "\t}\n}\n")
	return b.String()
}

func (k *kernelDR) Start(ctx context.Context) error {
	return nft(k.env.Director, k.ruleset())
}

func (k *kernelDR) Stop() error {
	return nft(k.env.Director, "delete table netdev "+drTable+"\n")
}

// kernelNAT is the NAT baseline IPVS users would otherwise reach for:
// nftables DNAT to a real server picked round robin (numgen inc), with
// conntrack keeping each flow on its server and un-NATing the replies,
// which the real servers route back through the director. It is another
// forwarding method (both directions cross the director, through
// conntrack and routing), so the table shows it without a ratio.
type kernelNAT struct{ env *testenv.Env }

const natTable = "xlbbench_nat"

func (k *kernelNAT) Name() string { return "nat" }

func (k *kernelNAT) ruleset() string {
	n := len(k.env.Reals)
	var addrs []string
	for i := 0; i < n; i++ {
		addrs = append(addrs, fmt.Sprintf("%d : %v", i, testenv.RealAddr(i)))
	}
	m := strings.Join(addrs, ", ")
	var b strings.Builder
	fmt.Fprintf(&b, "table ip %s {\n", natTable)
	fmt.Fprintf(&b, "\tchain prerouting {\n")
	fmt.Fprintf(&b, "\t\ttype nat hook prerouting priority dstnat; policy accept;\n")
	fmt.Fprintf(&b, "\t\tip daddr %v udp dport { %d, %d } dnat to numgen inc mod %d map { %s }\n", testenv.VIP, portPPS, portEcho, n, m)
	fmt.Fprintf(&b, "\t\tip daddr %v tcp dport %d dnat to numgen inc mod %d map { %s }\n", testenv.VIP, portHTTP, n, m)
	fmt.Fprintf(&b, "\t\tip daddr %v tcp dport %d dnat to %v\n", testenv.VIP, portIperf, testenv.RealAddr(0))
	fmt.Fprintf(&b, "\t}\n}\n")
	return b.String()
}

func (k *kernelNAT) Start(ctx context.Context) error {
	d := k.env.Director
	// The director forwards out of the interface the packet came in on:
	// without send_redirects=0 it would also tell the sender to go
	// direct.
	for _, kv := range [][2]string{
		{"net/ipv4/conf/all/send_redirects", "0"},
		{"net/ipv4/conf/eth0/send_redirects", "0"},
		{"net/ipv4/ip_forward", "1"},
	} {
		if err := d.Sysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}
	// Replies must cross the director to be un-NATed: the client shares
	// the real servers' subnet, so route it through the director.
	for _, h := range k.env.Reals {
		if out, err := h.Command("ip", "route", "replace", testenv.ClientAddr.String()+"/32",
			"via", testenv.DirectorAddr.String()).CombinedOutput(); err != nil {
			return fmt.Errorf("route client via director in %s: %w: %s", h.NSName, err, out)
		}
	}
	return nft(d, k.ruleset())
}

func (k *kernelNAT) Stop() error {
	var errs []string
	if err := nft(k.env.Director, "delete table ip "+natTable+"\n"); err != nil {
		errs = append(errs, err.Error())
	}
	if err := k.env.Director.Sysctl("net/ipv4/ip_forward", "0"); err != nil {
		errs = append(errs, err.Error())
	}
	for _, h := range k.env.Reals {
		if out, err := h.Command("ip", "route", "del", testenv.ClientAddr.String()+"/32").CombinedOutput(); err != nil {
			errs = append(errs, fmt.Sprintf("remove client route in %s: %v: %s", h.NSName, err, out))
		}
	}
	if errs != nil {
		return fmt.Errorf("stop nat: %s", strings.Join(errs, "; "))
	}
	return nil
}

// sinkDP is no dataplane: the director drops the flood in a netdev
// ingress chain. The packet-rate test runs it each round to measure
// what the sender's core can push to the director when nothing is
// forwarded, which the CPU-cost estimate subtracts (see doc.go).
type sinkDP struct{ env *testenv.Env }

const sinkTable = "xlbbench_sink"

func (k *sinkDP) Name() string { return "sink" }

func (k *sinkDP) Start(ctx context.Context) error {
	return nft(k.env.Director, fmt.Sprintf("table netdev %s {\n\tchain ingress {\n"+
		"\t\ttype filter hook ingress device \"eth0\" priority 0; policy accept;\n"+
		"\t\tip daddr %v udp dport %d drop\n\t}\n}\n", sinkTable, testenv.VIP, portPPS))
}

func (k *sinkDP) Stop() error {
	return nft(k.env.Director, "delete table netdev "+sinkTable+"\n")
}
