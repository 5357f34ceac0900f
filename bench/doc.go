// Command bench measures xlb's dataplane and the Linux kernel's in the
// same run, on the same namespace topology, and prints a table of both
// with the ratio xlb/kernel. With -out it rewrites the section
// "## dataplane: xlb vs kernel" of a results file, leaving the other
// sections as they are:
//
//	go run ./bench -xlb bin/xlb                          # make bench
//	go run ./bench -xlb bin/xlb -out bench/RESULTS.md    # record a run
//	go run ./bench -xlb bin/xlb -metrics pps -rounds 1 -v
//
// It needs root, trafgen (netsniff-ng), wrk, iperf3 and nft (make deps).
// A default run takes about two minutes. Every namespace is deleted at
// the end, on error and on ^C; every tool runs bounded in time (and
// trafgen also in packet count) in a process group the bench stops.
//
// # Topology and dataplanes
//
// One testenv topology (client, director, three real servers on one
// bridge, VIP 198.18.0.100 on the director's eth0 and on the real
// servers' lo) is built once. Each measurement starts one dataplane on
// the director, checks that it forwards (six UDP queries from new
// sockets and one HTTP request through the VIP must be answered by real
// servers), measures, and stops it, so every run starts from the same
// state:
//
//   - xlb: `xlb run --iface eth0` in direct routing with rr, a fresh
//     process per measurement (empty connection table, zero counters).
//     Services: UDP VIP:9 (the flood), UDP VIP:53 (echo), TCP VIP:80
//     (HTTP), each over the three real servers, and TCP VIP:5201 on the
//     first real server only (iperf3). `xlb --xlb-stats` is read after
//     each run and its drop counters are printed and summed.
//   - kernel: the same services as an nftables netdev-family chain on
//     the director's eth0 (below).
//   - nat (-nat, default on): nftables DNAT, another forwarding method,
//     shown in its own column without a ratio (xlb has no NAT yet).
//
// For each metric the dataplanes alternate run by run (xlb, kernel,
// nat, xlb, kernel, nat, ...; -rounds 3), because absolute numbers
// drift with the shared machine's load. A cell is the median of the
// rounds with their range; xlb/kernel is the median of the per-round
// ratios (a round's runs are seconds apart, so their ratio cancels most
// of the drift).
//
// # Metrics
//
// Packet rate (pps): trafgen on the client sends pre-built 60-byte
// frames (64 on a wire) from 1024 UDP source ports to VIP:9, round robin
// over the flows, one process (pinned to CPU 0 by trafgen), no rate
// limit, for 0.5 s of warm-up and a 5 s window (-pps-time). Over the
// window the bench reads, over netlink in each namespace, the client's
// eth0 tx_packets (sent) and the real servers' eth0 rx_packets
// (delivered). A veth's rx_packets counts frames its peer put into its
// receive backlog, before any hook of the receiving host, and the real
// servers drop port 9 in a netdev ingress chain, so they send no ICMP
// back and spend little. For xlb the bench also reads the CPU its
// process used over the window (utime+stime from /proc; with tick-based
// accounting that includes the softirq work done in its system calls).
//
// Mpps alone do not compare the two fairly here (see "Who uses which
// core" below): the kernel forwards on the sender's core, xlb on that
// core and a second one. So each round also runs a sink: the director
// drops the flood in a netdev ingress chain, which measures the
// sender's ceiling (trafgen, the client's veth, the bridge, the
// director's receive) on one core. trafgen keeps its core fully busy,
// so the share of that core not spent sending, 1 - sent/sink, went to
// forwarding; add xlb's own process CPU and divide by the frames
// delivered:
//
//	core-µs per forwarded frame = (1 - sent/sink + xlb cores) / delivered Mpps
//
// It is an estimate (it assumes the sender's cost per frame is the
// same with and without forwarding, and that nothing else shares
// trafgen's core), and it counts for both sides the same downstream
// work: the bridge and the real server's receive.
//
// Connection rate (http): wrk -t1 -c16 -d3s with "Connection: close",
// so every request is a new TCP connection through the VIP to the real
// servers' Go HTTP servers; the server closes first, so TIME_WAIT stays
// on the servers and the client's ports are free again at once. Errors
// (socket errors and non-2xx answers) are a row of their own.
//
// Throughput (iperf): one iperf3 TCP stream, 3 s, client to VIP:5201,
// all of it to the first real server (its iperf3 server is not bound to
// the VIP, so it also accepts the NAT baseline's translated address).
// The client's TX checksum offload is off (testenv), so no TSO/GSO
// super-frames reach the director: it forwards 1500-byte frames.
//
// Latency (rtt): 2000 UDP request/answer exchanges, one at a time, on
// one flow to VIP:53 after 100 unmeasured ones; p50 and p99 of the round
// trip. In DR only the request crosses the director (the answer goes
// straight from the real server to the client); in NAT both do.
//
// # The kernel baseline
//
// This kernel has no IPVS (and loads no modules), so the baseline cannot
// be `ipvsadm -g`. Direct routing only rewrites the Ethernet header and
// sends the frame back out onto the same segment; the kernel path that
// does exactly that, without the IP stack, is a netdev-family ingress
// chain on the director's eth0:
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
// Checked with tcpdump on the real servers while building this bench:
// the requests arrive with the director's source MAC and the chosen real
// server's destination MAC, spread over the three servers, and the
// answers go straight to the client; the pre-run check repeats the
// functional part before every measurement. The source MAC is rewritten
// as xlb does (modes.DR): leaving the client's would teach the bridge
// that the client sits behind the director's port.
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
//     context on the sending CPU: trafgen's send hands the frame to the
//     next veth's backlog, which is processed when bottom halves are
//     re-enabled, so the whole path (bridge, director, bridge, real
//     server) runs on trafgen's core and the client can only send as
//     fast as the kernel forwards (sent = delivered). With xlb, the XDP
//     program and the copy into the UMEM run on trafgen's core, and the
//     worker, which sleeps in poll(2) only when idle, needs the other
//     core (about one core busy in the flood): in Mpps xlb gets two
//     cores where the kernel gets one (the CPU-per-frame row corrects
//     for that), and xlb's numbers suffer most when other work holds
//     the second core, hence its wider ranges.
//   - Overload. The flood is not rate limited, so it measures the
//     forwarding rate at overload. xlb sheds the excess in the kernel
//     before the worker (AF_XDP RX ring full, or no free UMEM frame on
//     the fill ring); the counters paragraph under the table shows how
//     much. The kernel baselines drop nothing: they slow the sender.
//   - wrk, iperf3 and the round trips include the client's and the
//     servers' TCP/UDP stacks on the same two cores; the director is a
//     fraction of the work, which narrows the ratios.
//   - The round trip includes Go's scheduler on both ends (testenv's echo
//     servers and the bench's client are Go) and, for xlb, the worker's
//     wake-up from poll(2) when traffic is sparse.
package main
