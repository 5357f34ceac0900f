// Command bench measures xlb's dataplane in every forwarding method and
// the Linux kernel's in the same run, on the same namespace topology,
// and prints one table of all of them with the ratios of each xlb
// method to each kernel baseline. With -out it rewrites the section
// "## dataplane: xlb vs kernel" of a results file, leaving the other
// sections as they are; with -chart it writes delivered-vs-offered
// charts (PNG, gonum.org/v1/plot), one per flow count:
//
//	go run ./bench -xlb bin/xlb                          # make bench
//	go run ./bench -xlb bin/xlb -out bench/RESULTS.md -chart bench/rate
//	go run ./bench -quick -xlb bin/xlb                   # make bench-quick, in make test
//	go run ./bench -xlb bin/xlb -dataplanes nft-fwd,xlb-dr -rounds 1 -v
//
// It needs root, wrk, iperf3 and nft (make deps). A default run is
// meant to take under 15 minutes on 2 CPUs (see RESULTS.md for the
// last run's time; the phases added for real-server, flow and queue
// scaling cost about 5 minutes of it);
// -quick (one short round, one flow count, two trials per search, the
// real-server scaling at its largest count with one scheduler, xlb-dr
// on the multi-queue topology) under 2 minutes (1m47s at load 10-13),
// and it fails unless every
// configuration delivered traffic in every test: it checks that they
// forward, not their figures. Every namespace is deleted at the end, on
// error and on ^C; every tool runs bounded in time, the generator in
// time and frame count, in a process group the bench stops.
//
// # Topology and configurations
//
// One testenv topology (client, director, three real servers on one
// bridge, VIP 198.18.0.100 on the director's eth0 and on the real
// servers' lo, `xlb decap` on the real servers' eth0 for TUN, the
// FULLNAT local addresses 198.18.0.200-203 on the director) is built once.
// Each round first runs the sink, then each configuration in turn: it is
// started, checked (six UDP queries from new sockets and one HTTP
// request through the VIP must be answered by real servers), measured
// in every test and stopped, so every run starts from the same state:
//
//   - ip-forward: plain routing. Policy rules for UDP and TCP to the VIP
//     arriving on eth0, ahead of the local table, look up an ECMP route
//     over the three real servers hashed on the ports
//     (fib_multipath_hash_policy=1); ip_forward=1, send_redirects=0.
//     The real servers take the VIP as in DR.
//   - nft-fwd: the DR stand-in, a netdev ingress chain that rewrites the
//     MACs (below) and `fwd`s the frame back out of eth0.
//   - nft-dnat: the NAT baseline, nftables DNAT to `numgen inc mod 3`
//     with conntrack; the real servers route the clients via the
//     director.
//   - xlb-dr, xlb-nat, xlb-tun, xlb-fullnat: `xlb run --iface eth0` with
//     rr and ipvsadm's -g, -m, -i or --fullnat (four local addresses,
//     -P ... -z 198.18.0.200 to .203, as DPVS users configure several:
//     64512 ports each, room for the 100k-flow search), a fresh process
//     per round (empty connection table, zero counters). For NAT the
//     real servers route the clients via the director, as for nft-dnat.
//     After a search with more flows than half the local ports (-flows
//     above 129024) xlb-fullnat is restarted, so that its later tests do
//     not measure a table with no free port. `xlb --xlb-stats` is read
//     after each run and its drop counters are printed and summed.
//   - xlb-dr-offload-generic, xlb-nat-offload-generic,
//     xlb-fullnat-offload-generic: xlb-dr, xlb-nat and xlb-fullnat with
//     --offload=on (up to 2^17 flows) and --xdp-mode generic
//     (xlb-tun-offload-generic too, outside the 15-minute default list): the XDP program forwards
//     established flows itself (XDP_TX, bpf_redirect), on the skb.
//     Generic, because on veth native XDP_TX/bpf_redirect hands each
//     frame to the peer's 256-frame XDP ring, which needs an XDP program
//     on the peer and drops bursts the generator sends, and costs a
//     frame-to-skb conversion there; generic XDP sends the skb through
//     the veth's own transmit path, as nft `fwd` does. RESULTS.md has
//     the two modes side by side.
//   - Also accepted by -dataplanes, not in the default list: any xlb
//     configuration with -offload and/or -generic (--xdp-mode generic),
//     e.g. xlb-dr-offload (native: the director's veth peer gets a
//     pass-everything XDP program for the run, testenv.EnableXDPTx;
//     removed afterwards) or xlb-dr-generic.
//
// Services on the VIP: UDP 9 (the flood; the real servers drop it in a
// netdev ingress chain, so they send nothing back and spend little),
// UDP 53 (echo), TCP 80 (HTTP), each over the three real servers, and
// TCP 5201 on the first real server only (iperf3).
//
// # The generator
//
// trafgen's --rate sends one frame per system call and reached about
// 0.35 Mpps per process here, below what the dataplanes forward, and
// unpaced it cannot hold a rate. The bench sends with its own generator
// (gen.go): one AF_PACKET socket per thread in the client's namespace
// with PACKET_QDISC_BYPASS, frames built in place (60 bytes, 64 on a
// wire, IP and UDP checksums computed), 64 per sendmmsg(2), -threads
// threads (default: one per CPU) each pinned to its own CPU and paced
// against the clock, sleeping whenever ahead of schedule. Flows are
// source ports 1024..65535 of the client, then of 198.18.0.120..199 (up
// to 5.2 million), sent round robin.
//
// -gen xdp selects a second generator (xdpgen.go) with the same frames,
// flows and pacing: BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES runs a
// small XDP program up to 256 times per call, which writes the whole
// frame, then the next flow's source address, port and checksums (a
// per-CPU counter), and XDP_REDIRECTs it into the client's veth. Why: on
// veth a frame sent through AF_PACKET reaches the director as an skb
// without 256 bytes of headroom, so any XDP program there (native or
// generic) first copies it into a new page, a copy that dominates xlb's
// cost and that a real NIC does not make. A redirected frame arrives as
// an xdp_frame: native XDP runs on it in place, and without an XDP
// program the veth builds an skb around it without a copy, as a NIC
// driver does, if it has NAPI. In the bench's topology the client's veth
// ends on a bridge port, so in this mode that port has an XDP program
// that passes everything (NAPI without GRO: GRO merged the client's TCP
// segments into GSO packets larger than the MTU, main.go's topology) in
// every configuration; the port builds an skb around the frame's page
// (256 bytes of headroom, not cloned), which the bridge hands on. The sink ceiling is measured with the chosen generator; the
// run writes RESULTS.md's second dataplane section, so that both
// generators' figures stay side by side.
//
// Three things made its first runs lose frames everywhere (2026-12-02),
// each fixed in xdpgen.go and described where it is fixed: each call
// rewrote the kernel's XDP dispatcher (2 ms of CPU and IPIs to every
// CPU per call: the program is now held in the dispatcher by a veth of
// its own); two threads fed one bridge-side ring whose NAPI ran on the
// other CPU (the client's veth now has a queue per CPU); and a page came
// back for the next run as the dataplane had rewritten it, so the
// generator sent frames from the director's MAC and the bridge cut the
// director off (the program now writes the whole frame). Into the sink
// it then carries 2.43-2.68 Mpps (make bench with -gen xdp, 2026-12-02
// 14:18), 0 frames lost from 50 kpps up (AF_PACKET: 1.21-1.67).
//
// The generator's ceiling is measured every round: the director drops
// the flood in a netdev ingress chain (the sink), and the generator runs
// unpaced; what reaches the director's eth0 is the most that the
// generator and the path to the director (the client's veth, the bridge,
// the director's receive) carry on these CPUs with nothing forwarded.
// It is the search's upper bound. It is not a ceiling the dataplanes can
// be measured far from: on veths every kernel baseline forwards in the
// softirq of the sending CPU (trafgen's or the generator's send hands
// the frame to the next veth's backlog, processed as bottom halves are
// re-enabled), and xlb's worker needs a CPU the generator also uses. On
// two CPUs the generator, the forwarding and the real servers' receive
// share the same two cores, so the rates below are those of the whole
// system on two cores, and a configuration's rate is bounded by the
// cost per frame of everything on the path, not by the director alone.
//
// # Tests
//
// Maximum lossless rate (RFC 2544 style): for 1, 1000 and 100000 flows
// (-flows), and 10^6 for ip-forward, nft-fwd and xlb-dr (-scale-flows),
// every flow is first sent once (the setup time is logged; the flows
// are then established), then a bisection on the target rate between 0
// and the ceiling, -steps trials of -trial each. A trial counts the
// frames the generator sent and the frames the real servers' eth0
// received (netlink rx_packets, read 50 ms after the last frame so
// frames still in rings count). It is lossless if at most 0.1% is lost;
// the search goes higher only if the generator also achieved 98% of the
// target. The lossless rate is the highest offered (achieved) rate of a
// lossless trial. All trials are in the charts.
//
// CPU per packet at fixed offered rates (-cpu-rates, default 100 and
// 250 kpps over 1000 flows): over a -cpu-time window after 0.2 s of
// warm-up, the busy time of all CPUs from /proc/stat (everything but
// idle and iowait), minus the machine's busy time measured just before
// with no traffic, divided by the packets delivered. On a machine that
// others keep busy this figure says little (their work yields to ours
// and the machine stays busy either way; the table shows it as 0 when
// the machine was saturated before the traffic started), so the bench
// also counts the CPU time of the processes that carry the traffic:
// its own (the generator threads, in whose system calls the kernel
// forwards; the real servers' Go servers), xlb's and the ksoftirqd
// threads. This kernel uses tick-based accounting without IRQ time
// accounting, so softirq time is charged to the task it interrupted;
// the own-process figure leaves other users out, but also misses
// softirq work that happened to interrupt them. The director's share
// is either figure minus the sink's at the same rate in the same round
// (the generator's and the path's cost); it still includes the real
// servers' receive, the same for every configuration.
//
// TCP: iperf3 with 1 and 8 streams (-iperf-time) to the first real
// server (its iperf3 server is not bound to the VIP, so it also accepts
// the NAT baselines' translated address); the client's TX checksum
// offload is off (testenv), so no TSO/GSO super-frames reach the
// director: it forwards 1500-byte frames. A third run, one stream with
// the client's TX offload, TSO and GSO on, sends what a container's or
// the host's own sender does: segments whose checksum is left to the
// NIC (CHECKSUM_PARTIAL), and with -gen packet GSO skbs of up to 64 KB.
// The kernel forwards those whole and segments them at egress (or not
// at all, veth to veth); xlb's worker gets segmented frames in native
// mode (a native program takes GSO off its veth's peer) and completes
// their checksums; its generic-mode offload forwards both from its tc
// companion. With -gen xdp the client's own veth has no TSO: its peer,
// the bridge port, runs a native XDP program (NAPI without GRO), which
// takes GSO off the client's veth, so the client segments in software. wrk -t1 -c16 (-conns) with
// "Connection: close" (connections/s: every request a new connection
// through the VIP; the server closes first, so TIME_WAIT stays on the
// servers) and keep-alive (requests/s). Errors are rows of their own.
//
// Before each TCP test the bench waits (at most 3 s) until xlb's SYN
// guard is down again: the flood of the round trips under load, and
// iperf3's own bulk traffic, fill the AF_XDP RX ring past a quarter,
// which raises the guard to level 2 for about a second after the
// overload ends (dataplane/pressure.go); a TCP test started then lost
// its SYNs (iperf3 failed to connect within its 3 s, wrk waited 1 s per
// connection). The waits are listed under the table, and the SYNs the
// guard still dropped during each test are rows of it.
//
// A trickle (-trickle-rate, 1000 pps, one frame per sendmmsg, evenly
// spaced) for ip-forward, nft-fwd and xlb-dr: CPU per packet and the
// cores the xlb process used, which is what the worker's
// spin-before-sleep policy costs when traffic is sparse; with the idle
// round trips it shows that policy's trade-off. -xlb-base measures a
// second xlb binary as xlb-dr-base in the same rounds, right after
// xlb-dr, for before/after comparisons.
//
// Flow scaling: for ip-forward, nft-fwd and xlb-dr, after each rate
// search, the CPU per packet at the first -cpu-rates rate over the
// search's flows (1, 100k, 10^6; 1000 flows is the -cpu-rates run).
//
// Real-server scaling (scale.go), once after the rounds: xlb with the
// flood's service over -rs-counts destinations (2 and 1000; 10 and 100 fit only outside the 15-minute budget) in
// -rs-methods (dr, nat) with -rs-scheds (wlc, which scans every
// destination per new connection: the scheduler whose cost grows with
// them; rr, O(1), fits only outside the 15-minute budget). The destinations are 10.201.x.y
// addresses on the real servers' eth0 (address i on server i mod 3),
// which the director reaches through a /16 route on eth0 and permanent
// neighbour entries (not garbage-collected; the host-wide ARP table
// holds at most gc_thresh3 = 1024 others). Per point, a fresh xlb: a
// rate search over -rs-flows established flows (-rs-steps trials), the
// CPU per packet at the first -cpu-rates rate over them, checked
// against the share of the traffic each real server's eth0 should get
// for the addresses it holds (the run fails below half of it, or when
// a server holding none gets more than 1%), and the CPU per packet at
// -rs-new-rate with every frame a new flow (a scheduling decision and a
// connection insert each).
//
// Queue scaling (queues.go), once after the rounds: a second topology
// whose director veth has -queue-scaling queues (2; xlb runs one worker
// per queue, veth hands a frame to the RX queue its peer's flow hash
// picked), alternated with the main one for nft-fwd and xlb-dr: the
// lossless and most-delivered rates over 1000 flows and the CPU per
// packet at the first -cpu-rates rate; the frames each RX queue took
// (ethtool -S) are logged. The report projects 8 and 16 queues from the
// director's share per packet at one queue and the efficiency measured
// from 1 to 2 queues, and says it is a projection.
//
// Latency: -pings UDP request/answer exchanges, one at a time, on one
// flow to VIP:53 after 100 unmeasured ones, p50, p99 and p99.9; once
// with no other traffic, once under a background flood of -load-rate
// pps over 1000 flows. In DR and TUN only the request crosses the
// director; in NAT and FULLNAT both do.
//
// # The kernel baselines
//
// This kernel has no IPVS (and loads no modules), so the baselines
// cannot be `ipvsadm`. Direct routing only rewrites the Ethernet header
// and sends the frame back out onto the same segment; the kernel path
// that does exactly that, without the IP stack, is a netdev-family
// ingress chain on the director's eth0:
//
//	table netdev xlbbench_dr {
//		chain ingress {
//			type filter hook ingress device "eth0" priority 0; policy accept;
//			ip daddr 198.18.0.100 udp dport { 9, 53 } ether saddr set <director MAC>
//				ether daddr set jhash ip saddr . udp sport mod 3 map { 0 : <rs1 MAC>, 1 : <rs2 MAC>, 2 : <rs3 MAC> }
//				fwd to "eth0"
//			ip daddr 198.18.0.100 tcp dport 80 ... jhash ip saddr . tcp sport mod 3 map { ... } fwd to "eth0"
//			ip daddr 198.18.0.100 tcp dport 5201 ... ether daddr set <rs1 MAC> fwd to "eth0"
//		}
//	}
//
// The hash of the client's address and port keeps a flow on one real
// server without state, as long as the set of servers does not change.
// `fwd to` the device the frame arrived on works on this kernel (6.18):
// nft_fwd_netdev pushes the MAC header back and calls dev_queue_xmit.
// The source MAC is rewritten as xlb does (modes.DR): leaving the
// client's would teach the bridge that the client sits behind the
// director's port.
//
// The baseline does less than IPVS or xlb: no connection table, no
// scheduler beyond a hash (no weights, no rr, no per-destination
// counters, no timeouts), three rules evaluated per frame. It is a
// lower bound on what the kernel spends per DR frame, not IPVS's cost:
// IPVS also runs the IP stack's receive path up to LOCAL_IN and its own
// connection lookup.
//
// NAT baseline: a `table ip` prerouting nat chain that DNATs VIP:port to
// a real server chosen by `numgen inc mod 3` (round robin, like rr);
// conntrack keeps a flow on its server and reverses the translation of
// the answers. For it the director gets net.ipv4.ip_forward=1 and
// send_redirects=0 (it forwards out of the interface the packet came
// in on), and each real server a route to the client via the director
// (the client shares their subnet, so the answers would otherwise go
// direct and untranslated); all of it is undone after each NAT run.
//
// # Caveats
//
//   - Virtual links, shared CPUs. Everything runs on veths and one
//     bridge on a 2-vCPU VM that other work uses too: the numbers are
//     the cost of software paths, not of a NIC, and they drift; read
//     the ratios and the ranges, not the absolute values.
//   - xlb pays AF_XDP copy mode. veth has native XDP (xlb attaches in
//     native mode; the program runs in the veth's NAPI on the sender's
//     CPU), but no zero-copy AF_XDP: each frame is copied into the UMEM
//     on receive, and each TX kick (sendto) builds an skb and transmits
//     it through the director's veth, the bridge and into the real
//     server's backlog synchronously in the worker's system call. With
//     a zero-copy NIC driver both copies and the skb disappear; these
//     ratios are the pessimistic case for xlb. Native XDP on a veth also
//     saves less than on a NIC: the frame arrives from the peer as an
//     skb already.
//   - Who uses which core. The kernel baselines forward in softirq
//     context on the sending CPU, so the whole path (bridge, director,
//     bridge, real server) runs in the generator's system calls and the
//     generator can only send as fast as the kernel forwards: they lose
//     nothing, they slow the sender, and their lossless rate is the
//     rate the generator achieved. With xlb, the XDP program and the
//     copy into the UMEM run on the sender's CPU, and the worker, which
//     sleeps in poll(2) only when idle, competes with a generator thread
//     for a CPU; xlb sheds what it cannot take in the kernel before the
//     worker (AF_XDP RX ring full, or no free UMEM frame on the fill
//     ring), which the counters table under the results shows.
//   - wrk, iperf3 and the round trips include the client's and the
//     servers' TCP/UDP stacks on the same two cores; the director is a
//     fraction of the work, which narrows the ratios.
//   - The round trip includes Go's scheduler on both ends (testenv's echo
//     servers and the bench's client are Go) and, for xlb, the worker's
//     wake-up from poll(2) when traffic is sparse.
package main
