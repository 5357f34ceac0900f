// Package bpf holds xlb's XDP program, which sits on the director's
// interface and decides per frame whether the kernel or xlb's AF_XDP
// workers handle it, and the Go API to load, configure and attach it.
//
// # Mechanism
//
// xdp.c parses each frame and looks it up in two hash maps the control
// plane fills:
//
//	services  {addr, port, proto} -> {id, flags}  frames TO a virtual service
//	reals     {addr, port, proto} -> 0            frames FROM a real server (NAT replies)
//
// A hit on the destination in services, or else on the source in reals,
// returns bpf_redirect_map(&xsks, rx_queue_index, XDP_PASS): the frame goes
// to the AF_XDP socket bound to the RX queue it arrived on, or, if that
// XSKMAP slot is empty, to the kernel (the low bits of the flags argument
// are the fallback action). Everything else is XDP_PASSed, so ARP, ICMP,
// SSH to the director and unknown traffic keep working. The only frames
// XDP_DROPped are TCP SYNs to a service refused by the SYN guard below.
//
// # SYN guard
//
// Under a SYN flood the worker cannot keep up with, the kernel drops
// frames at the full AF_XDP RX ring (or empty fill ring) whatever they
// are, so established connections lose segments and stall for
// retransmission timeouts. Priority is therefore decided here, before the
// ring. Three more maps:
//
//	syn_guard    queue -> {level, auto_per_ms, interval_ns, burst_ns}  written by the queue's worker, rarely
//	syn_auto     queue -> {window, count, until}                       this program's SYN count per ms
//	syn_sources  prefix -> {tat, acked}                                LRU, 65536 source prefixes
//	syn_refused  queue -> count                                        SYNs refused on the queue
//
// A worker that finds itself overloaded raises its queue's level
// (dataplane/pressure.go). At level 0 the program also counts the
// queue's pure SYNs per millisecond, and above auto_per_ms acts as level
// 1 for 100 ms by itself: a flood is refused from its first frames, before
// the worker (which may not even be running) sees its rings fill, and
// before copying every frame to AF_XDP overflows the device's queue in
// front of XDP (on veth, at 500k frames/s). Nothing else is looked up at
// level 0. From level 1 on, for TCP to a service:
//
//	SYN+ACK, or neither flag            redirect, as at level 0
//	ACK without SYN                     redirect; marks its prefix as one that
//	                                    completes handshakes (acked = now)
//	SYN without ACK, level >= 1         GCRA per source prefix (IPv4 /24, IPv6
//	                                    /64): one SYN per interval_ns, bursts up
//	                                    to burst_ns ahead; a refused SYN is
//	                                    charged too (up to 2 * burst_ns), so a
//	                                    prefix that keeps flooding stays refused:
//	                                    drop_syn_rate
//	SYN without ACK, level 2            also refused if its prefix sent no ACK
//	                                    in 10 s (spoofed sources never do), or
//	                                    is unknown: drop_syn_pressure
//
// Established flows are never refused, and drops land on the flooding
// prefixes: a client prefix within its rate still connects, at level 2
// too if it already had a connection. A flood spread over more prefixes
// than the map holds, each within its rate, reaches level 2, where only
// prefixes with recent ACKs connect: others wait for TCP's SYN
// retransmission (xlb has no SYN cookies). ACKs from the
// flooding prefixes themselves (an ACK flood alongside) defeat level 2's
// test but not level 1's rate.
//
// Keys are 20 bytes. IPv4 addresses are stored IPv4-mapped, so one map holds
// both families:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|      addr: IPv6, or 0:0:0:0:0:ffff:a.b.c.d for IPv4 (16)      |
//	|                                                               |
//	|                                                               |
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|    port (network order)       |     proto     |    pad = 0    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// # Classification
//
// The checks, in order; the first that applies decides the frame's Reason,
// whose per-CPU counter is bumped exactly once:
//
//	frame < 14 bytes                                   malformed
//	EtherType 0x8100/0x88a8: one VLAN tag, cut short   malformed
//	EtherType ARP                                      pass_arp
//	EtherType neither IPv4 nor IPv6                    pass_not_ip
//	IPv4: header < 20 bytes in frame, version != 4,
//	      IHL < 5, Total Length < IHL*4,
//	      Total Length beyond the frame                malformed
//	IPv4: protocol neither TCP nor UDP                 pass_not_tcp_udp
//	IPv4: MF set or Fragment Offset != 0               pass_fragment
//	IPv6: header < 40 bytes in frame, version != 6,
//	      40 + Payload Length beyond the frame         malformed
//	IPv6: Next Header an extension header              pass_ipv6_ext
//	IPv6: Next Header neither TCP nor UDP              pass_not_tcp_udp
//	TCP:  segment < 20 bytes, Data Offset < 5,
//	      Data Offset*4 beyond the segment             malformed
//	UDP:  datagram < 8 bytes, Length < 8,
//	      Length beyond the IP payload                 malformed
//	TCP to a service: a SYN the SYN guard refuses      drop_syn_rate, drop_syn_pressure (XDP_DROP)
//	destination in services                            redirect
//	source in reals                                    redirect_reply
//	otherwise                                          pass_no_service
//
// IPv4 options are skipped, not inspected. The segment is what IP's length
// field says, not what the frame holds: bytes after the IP packet are
// Ethernet padding. Checksums are not verified; the kernel or the real
// server does that.
//
// internal/packet.Parse implements the same checks for the Go workers, and
// the tests hold both to one table of golden frames
// (internal/packet/packettest) plus every cut and many mutations of them.
//
// # Decisions and limits
//
//   - Malformed frames are passed, not dropped, whatever their
//     destination: with a truncated header the port is unknown, and the
//     kernel drops them anyway while counting them where operators look
//     (IpInHdrErrors, IpInTruncatedPkts, TcpInErrs, UdpInErrors).
//   - All IPv4 fragments are passed, the first one (MF set, offset 0) too,
//     although it carries ports. Its followers carry none and go to the
//     kernel whatever we do, so steering the first would split the
//     datagram between AF_XDP and the kernel and it would never be
//     delivered. Passed whole, the kernel at least reassembles it.
//     Fragmented traffic to a service is therefore not load balanced;
//     pass_fragment counts it.
//   - IPv6 extension headers (Hop-by-Hop, Routing, Fragment, AH,
//     Destination Options, Mobility, HIP, Shim6, 253, 254) are not walked:
//     pass_ipv6_ext. ESP counts as not TCP/UDP.
//   - One VLAN tag (802.1Q or 802.1ad) is parsed; a second (QinQ) makes the
//     frame pass_not_ip. Most NICs strip the outer tag before XDP runs
//     (rx-vlan-offload), so tags matter only with offload off.
//   - Lookups are exact: no wildcard port (IPVS's port-0 persistent
//     services) and no firewall-mark services.
//   - redirect and redirect_reply count attempts: with no socket bound on
//     the queue, or on a queue >= MaxQueues, the frame falls back to the
//     kernel and is still counted there.
//   - Map sizes are fixed at compile time: 16384 services, 65536 reals,
//     64 queues, 65536 SYN guard source prefixes.
//   - The SYN guard's counters and token buckets are updated without
//     atomics where several CPUs serve one queue: a few SYNs more or less
//     are admitted, never a non-SYN segment refused.
//   - Only little-endian targets are generated (bpfel).
//
// # Loading and attaching
//
// Load loads the program and the maps, empty. Attach attaches through a BPF
// link, natively if the driver implements XDP and in generic (skb) mode
// otherwise; veth attaches natively, loopback generically. Closing the link
// detaches the program; the maps stay until Objects.Close. Map memory is
// charged to the memory cgroup (Linux 5.11+); older kernels need
// RLIMIT_MEMLOCK raised, which this package does not do.
//
// The tests run the program with BPF_PROG_RUN on golden frames and need root
// (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN for namespaces); without it they
// skip and say why.
package bpf
