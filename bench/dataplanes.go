//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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

// xlbDP runs `xlb run` on the director with rr in one forwarding method
// (ipvsadm's -g, -m, -i or --fullnat), a fresh process (empty connection
// table, zero counters) for every measurement.
type xlbDP struct {
	method  string // "dr", "nat", "tun" or "fullnat"
	offload bool   // --offload=on (configurations xlb-dr-offload, xlb-nat-offload, xlb-tun-offload, xlb-fullnat-offload)
	generic bool   // --xdp-mode generic (configurations xlb-dr-generic, xlb-dr-offload-generic, ...)
	suffix  string // of the name: "-base" for -xlb-base's binary
	bin     string
	dir     string
	env     *testenv.Env
	rules   string // rules file
	conns   int    // connection table size
	n       int    // processes started, for socket names
	p       *testenv.Proc
	sock    string
	// attached is the daemon's "xdp attached" log line: XDP mode and
	// AF_XDP copy or zero-copy.
	attached string
}

var methodOpts = map[string]string{"dr": "-g", "nat": "-m", "tun": "-i", "fullnat": "--fullnat"}

// lAddrs are the FULLNAT services' local addresses, on the director's
// eth0: testenv.LAddr and the three after it (198.18.0.200-203, unused by
// the topology), as DPVS and IPVS-FULLNAT users configure several. One
// address has 64512 ports (1024-65535 less the director's own): with
// one, a third of the 100k-flow search's flows found no local port
// (no_local_port) and FULLNAT's lossless rate there was 0.
var lAddrs = func() []netip.Addr {
	a := []netip.Addr{testenv.LAddr}
	for len(a) < 4 {
		a = append(a, a[len(a)-1].Next())
	}
	return a
}()

// lAddrPorts is how many connections lAddrs hold at once.
var lAddrPorts = 64512 * len(lAddrs)

// laddrRules adds lAddrs to the FULLNAT service proto vip:port.
func laddrRules(b *strings.Builder, proto string, port uint16) {
	for _, a := range lAddrs {
		fmt.Fprintf(b, "-P -%s %v:%d -z %v\n", proto, testenv.VIP, port, a)
	}
}

func newXLB(env *testenv.Env, method, bin, dir string) (*xlbDP, error) {
	method, generic := strings.CutSuffix(method, "-generic")
	method, offload := strings.CutSuffix(method, "-offload")
	opt, ok := methodOpts[method]
	if !ok {
		return nil, fmt.Errorf("invalid xlb method %q", method)
	}
	var b strings.Builder
	svc := func(proto string, port uint16, reals int) {
		fmt.Fprintf(&b, "-A -%s %v:%d -s rr\n", proto, testenv.VIP, port)
		if method == "fullnat" {
			laddrRules(&b, proto, port)
		}
		for i := 0; i < reals; i++ {
			fmt.Fprintf(&b, "-a -%s %v:%d -r %v:%d %s -w 1\n", proto, testenv.VIP, port, testenv.RealAddr(i), port, opt)
		}
	}
	svc("u", portPPS, len(env.Reals))
	svc("u", portEcho, len(env.Reals))
	svc("t", portHTTP, len(env.Reals))
	svc("t", portIperf, 1)
	x := &xlbDP{method: method, offload: offload, generic: generic, bin: bin, dir: dir, env: env, rules: filepath.Join(dir, "xlb-"+method+".rules")}
	if err := os.WriteFile(x.rules, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	return x, nil
}

func (x *xlbDP) Name() string {
	n := "xlb-" + x.method
	if x.offload {
		n += "-offload"
	}
	if x.generic {
		n += "-generic"
	}
	return n + x.suffix
}

func (x *xlbDP) Start(ctx context.Context) error {
	if x.method == "nat" {
		if err := routeClientViaDirector(x.env); err != nil {
			return err
		}
	}
	x.n++
	x.sock = filepath.Join(x.dir, fmt.Sprintf("%s%d.sock", x.Name(), x.n))
	// 2^18 entries: wrk opens ~10^4 connections per second and IPVS
	// keeps closed ones for seconds to minutes.
	args := []string{"run", "--iface", "eth0", "--rules", x.rules, "--socket", x.sock, "--conns", strconv.Itoa(x.conns)}
	if x.generic {
		args = append(args, "--xdp-mode", "generic")
	}
	if x.offload {
		// Native XDP_TX into the director's veth: its peer must take
		// such frames (testenv.EnableXDPTx); Stop undoes it so that the
		// other configurations run on the same topology. Generic XDP
		// transmits the skb itself and needs nothing of the peer.
		if !x.generic {
			if err := x.env.EnableXDPTx(); err != nil {
				return err
			}
			args = append(args, "--xdp-mode", "native")
		}
		args = append(args, "--offload=on", "--max-flows", strconv.Itoa(1<<17)) // the 100k-flow search, ~20 MiB
	}
	p, err := x.env.Director.Start(x.bin, args...)
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
	var errs []error
	if x.p != nil {
		p := x.p
		x.p = nil
		if err := p.Stop(syscall.SIGTERM, 10*time.Second); err != nil {
			errs = append(errs, fmt.Errorf("xlb exit: %w\n%s", err, p.Output.String()))
		}
	}
	if x.method == "nat" {
		errs = append(errs, unrouteClient(x.env))
	}
	if x.offload && !x.generic {
		errs = append(errs, x.env.DisableXDPTx())
	}
	if x.method == "fullnat" {
		errs = append(errs, flushTimeWait(x.env))
	}
	return errors.Join(errs...)
}

// flushTimeWait closes the real servers' TIME_WAIT sockets. A FULLNAT
// real server's peers are the director's local address and ports, and
// the next FULLNAT process hands out the same ports in the same order:
// a SYN that meets the last process's TIME_WAIT socket is answered with
// an ACK for the old connection, and its connection waits out a 1 s SYN
// retransmission (xlb-fullnat-offload right after xlb-fullnat measured
// 41-55 connections/s in wrk instead of ~5000, and the other way round
// too).
func flushTimeWait(env *testenv.Env) error {
	var errs []error
	for _, h := range env.Reals {
		if out, err := h.Command("ss", "-K", "state", "time-wait").CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("close TIME_WAIT sockets in %s: %w: %s", h.NSName, err, out))
		}
	}
	return errors.Join(errs...)
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

func (k *kernelDR) Name() string { return "nft-fwd" }

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

func (k *kernelNAT) Name() string { return "nft-dnat" }

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
	if err := routeClientViaDirector(k.env); err != nil {
		return err
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
	if err := unrouteClient(k.env); err != nil {
		errs = append(errs, err.Error())
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

// clientNets are the flood's sources (flowSource) and the client: NAT
// real servers route them through the director, whose translation the
// replies must cross (the client shares the real servers' subnet).
var clientNets = []string{testenv.ClientAddr.String() + "/32", "198.18.0.120/29", "198.18.0.128/26", "198.18.0.192/29"}

func routeClientViaDirector(env *testenv.Env) error {
	for _, h := range env.Reals {
		for _, n := range clientNets {
			if out, err := h.Command("ip", "route", "replace", n, "via", testenv.DirectorAddr.String()).CombinedOutput(); err != nil {
				return fmt.Errorf("route %s via director in %s: %w: %s", n, h.NSName, err, out)
			}
		}
	}
	return nil
}

func unrouteClient(env *testenv.Env) error {
	var errs []error
	for _, h := range env.Reals {
		for _, n := range clientNets {
			if out, err := h.Command("ip", "route", "del", n).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("remove route %s in %s: %v: %s", n, h.NSName, err, out))
			}
		}
	}
	return errors.Join(errs...)
}

// kernelFwd is plain IP forwarding: the director routes the VIP's
// packets that arrive on eth0 to the real servers with an ECMP route
// hashed on the L4 ports (fib_multipath_hash_policy=1: a flow stays on
// one server), by policy rules for UDP and TCP ahead of the local table;
// the VIP stays local for ARP. The real servers accept the VIP as in DR. It is the
// routing path with no netfilter rule: routing lookup, TTL decrement,
// neighbour output.
type kernelFwd struct{ env *testenv.Env }

func (k *kernelFwd) Name() string { return "ip-forward" }

func (k *kernelFwd) Start(ctx context.Context) error {
	d := k.env.Director
	for _, kv := range [][2]string{
		{"net/ipv4/conf/all/send_redirects", "0"},
		{"net/ipv4/conf/eth0/send_redirects", "0"},
		{"net/ipv4/fib_multipath_hash_policy", "1"},
		{"net/ipv4/ip_forward", "1"},
	} {
		if err := d.Sysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}
	vip := testenv.VIP.String() + "/32"
	var hops []string
	for _, h := range k.env.Reals {
		hops = append(hops, "nexthop", "via", h.Addr.String(), "dev", "eth0")
	}
	for _, args := range [][]string{
		// The local table first would deliver the VIP locally: move it
		// behind the bench's rules.
		{"rule", "add", "pref", "100", "lookup", "local"},
		{"rule", "del", "pref", "0", "lookup", "local"},
		append([]string{"route", "replace", vip, "table", "100"}, hops...),
		{"route", "replace", vip, "table", "101", "via", k.env.Reals[0].Addr.String(), "dev", "eth0"},
		{"rule", "add", "pref", "9", "iif", "eth0", "to", vip, "ipproto", "tcp", "dport", strconv.Itoa(portIperf), "lookup", "101"},
		// UDP and TCP only: ARP's route lookup for the VIP must still find
		// it local, or the director stops answering for it.
		{"rule", "add", "pref", "10", "iif", "eth0", "to", vip, "ipproto", "udp", "lookup", "100"},
		{"rule", "add", "pref", "11", "iif", "eth0", "to", vip, "ipproto", "tcp", "lookup", "100"},
	} {
		if err := d.IP(args...); err != nil {
			return err
		}
	}
	return nil
}

func (k *kernelFwd) Stop() error {
	d := k.env.Director
	var errs []error
	for _, args := range [][]string{
		{"rule", "del", "pref", "9"},
		{"rule", "del", "pref", "10"},
		{"rule", "del", "pref", "11"},
		{"rule", "add", "pref", "0", "lookup", "local"},
		{"rule", "del", "pref", "100"},
		{"route", "flush", "table", "100"},
		{"route", "flush", "table", "101"},
	} {
		if err := d.IP(args...); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, d.Sysctl("net/ipv4/ip_forward", "0"))
	return errors.Join(errs...)
}
