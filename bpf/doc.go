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
// are the fallback action). Everything else is XDP_PASSed, so ARP, ICMP
// echo, SSH to the director and unknown traffic keep working. Nothing is
// XDP_DROPped but the frames the kernel would drop (see below) and TCP
// SYNs to a service that the SYN guard refuses.
//
// Firewall-mark services (ipvsadm -f) need a mark, which netfilter would
// set after XDP; xlb's own classifier gives it (`xlb mark`) with three
// more maps:
//
//	marks          LPM {proto, family, prefix} -> {n, [16]{lo, hi, mark}}  rules, longest prefix first
//	mark_prefixes  0 -> prefixes in marks                                  0: the trie is skipped
//	mark_services  {mark, v6} -> {id, flags}                               -f and -6 -f services
//
// Before services, the destination's longest prefix in marks is found and
// the first of its port ranges holding the destination port gives the
// mark (the control plane folds every shorter containing prefix's ranges
// in after the prefix's own, so the most specific rule wins); if that
// mark has a service of the frame's family, the frame goes to it, as
// ip_vs_service_find looks at skb->mark first. A mark without a service,
// or a draining one for a SYN, falls through to services.
// internal/packet.MarkTable classifies the same way in the workers (held
// together by one golden table: TestXDPMarkGolden, TestMarkTableGolden).
//
// An ICMP or ICMPv6 error (IPv4 types 3, 11, 12, code 4 of type 3 being
// fragmentation needed; ICMPv6 types 1-4, 2 being packet too big) that
// quotes an IP header of its own family and 8 bytes of TCP or UDP is
// looked up by the quoted flow reversed, as Katran's parse_icmp does: an
// error about VIP:vport → client (a NAT reply, or a DR or TUN real
// server's own reply that a router on the client's path cannot forward:
// PMTU discovery) is looked up as client → VIP:vport and steered to the
// service's workers (redirect), one about client or local address →
// RS:rport (what NAT and FULLNAT send a real server) as RS:rport → ...,
// steered as a reply (redirect_reply, or pass_local if the quoted source
// is the director's own address: its own connection). The checks after
// the lookup (VLAN, MACs, IPv4 header checksum, martian source) are the
// outer header's. The workers find the connection, forward or translate
// the error (dataplane, modes.XmitICMP) and drop, counted, one about no
// connection: AF_XDP cannot give it back. Any other ICMP message, and an
// error quoting another protocol, an IPv4 fragment but the first or an
// IPv6 header followed by an extension header, stays with the kernel.
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
//	EtherType neither IPv4 nor IPv6 (QinQ in frame)    pass_not_ip
//	IPv4: header < 20 bytes in frame, version != 4,
//	      IHL < 5, Total Length < IHL*4,
//	      Total Length beyond the frame                malformed
//	IPv4: protocol ICMP, MF clear and Offset 0:
//	      message < 8 bytes                            malformed
//	      type not 3, 11 or 12                         pass_not_tcp_udp
//	      quote < 20 bytes, version != 4, IHL < 5      malformed
//	      quoted protocol neither TCP nor UDP, or
//	      quoted Fragment Offset != 0                  pass_not_tcp_udp
//	      quote shorter than IHL*4 + 8                 malformed
//	      then the lookup below, on the quoted flow reversed
//	IPv4: protocol neither TCP nor UDP                 pass_not_tcp_udp
//	IPv4: MF set or Fragment Offset != 0               pass_fragment
//	IPv6: header < 40 bytes in frame, version != 6,
//	      40 + Payload Length beyond the frame         malformed
//	IPv6: extension headers walked, at most 8:
//	      Hop-by-Hop (0) not first, a header < 8 bytes
//	      or longer than the payload                   malformed
//	      Fragment (44) with offset != 0 or M set      pass_fragment
//	      more than 8, or Mobility (135), HIP (139),
//	      Shim6 (140), 253, 254                        pass_ipv6_ext
//	IPv6: last Next Header ICMPv6 (58):
//	      message < 8 bytes                            malformed
//	      type not 1-4                                 pass_not_tcp_udp
//	      quote < 40 bytes, version != 6               malformed
//	      quoted Next Header neither TCP nor UDP       pass_not_tcp_udp
//	      quote shorter than 48 bytes                  malformed
//	      then the lookup below, on the quoted flow reversed
//	IPv6: last Next Header neither TCP nor UDP         pass_not_tcp_udp
//	TCP:  segment < 20 bytes, Data Offset < 5,
//	      Data Offset*4 beyond the segment             malformed
//	UDP:  datagram < 8 bytes, Length < 8,
//	      Length beyond the IP payload                 malformed
//	neither destination in services
//	      nor source in reals                          pass_no_service
//	then, for a frame to a service or from a real:
//	  tagged (in the frame or, device-bound, in the
//	  RX descriptor) with a VLAN ID not configured,
//	  or two tags                                      pass_vlan
//	  destination MAC broadcast or multicast           drop_l2_multicast
//	  destination MAC not the interface's              drop_other_host
//	  IPv4 header checksum wrong                       drop_bad_checksum
//	  source martian: 0/8, 127/8, 224/4, 240/4;
//	  ::, ::1, ff00::/8, ::ffff:0:0/96; or = dest.     drop_martian
//	  destination in services, draining, TCP SYN w/o
//	  ACK (before these checks)                        pass_no_service
//	  TCP to a service: a SYN the SYN guard refuses
//	  (before these checks)                            drop_syn_rate, drop_syn_pressure
//	  destination in services                          redirect
//	  source in reals, to a director address that is
//	  not a FULLNAT local address (locals map)         pass_local
//	  source in reals                                  redirect_reply
//
// Walked extension headers are Hop-by-Hop, Routing (43), Destination
// Options (60), AH (51, length (n+2)*4) and Fragment; Meta.L4Off is then
// past them. An atomic fragment (Fragment header, offset 0, M clear,
// RFC 6946) is no fragment and is walked through.
//
// IPv4 options are skipped, not inspected. The segment is what IP's length
// field says, not what the frame holds: bytes after the IP packet are
// Ethernet padding. The IPv4 header checksum of steered frames is
// verified; TCP and UDP checksums are not (the real server does that).
//
// internal/packet.Parse implements the same checks up to the lookup for the
// Go workers, and packet.Filter.Admit the checks after it; the tests hold
// both to one table of golden frames (internal/packet/packettest) plus
// every cut and many mutations of them.
//
// # Decisions and limits
//
//   - Malformed frames are passed, not dropped, whatever their
//     destination: with a truncated header the port is unknown, and the
//     kernel drops them anyway while counting them where operators look
//     (IpInHdrErrors, IpInTruncatedPkts, TcpInErrs, UdpInErrors).
//   - All fragments are passed, IPv4 and IPv6, the first one (offset 0,
//     more fragments) too, although it carries ports. Its followers carry
//     none and go to the kernel whatever we do, so steering the first
//     would split the datagram between AF_XDP and the kernel and it would
//     never be delivered. Passed whole, the kernel at least reassembles
//     it. Fragmented traffic to a service is therefore not load balanced;
//     pass_fragment counts it. Fragments are not tracked.
//   - The checks after the lookup apply only to frames that would be
//     steered: the kernel keeps receiving everything else as before
//     (broadcast DHCP, multicast mDNS, a martian the director's own
//     sockets may want). The kernel drops what they drop; XDP_DROP does it
//     earlier and counts each reason. Tagged frames of other VLANs are
//     passed, not dropped: the kernel delivers them to a VLAN device if
//     there is one, and drops them otherwise.
//   - VLANs: untagged and priority-tagged (VID 0) frames are always
//     balanced, tagged frames only of the VLAN IDs in Options.VLANs (none
//     by default). A tag can be in two places: in the frame, or, when the
//     NIC's rx-vlan offload (or a bridge or veth peer that already parsed
//     it) moved it there, in the RX descriptor or skb metadata, where a
//     plain XDP program cannot see it. Attach therefore turns rx-vlan
//     offload off (rx-vlan-hw-parse and rx-vlan-stag-hw-parse, restored
//     when the link closes) and, natively, attaches the device-bound
//     variant xlb_xdp_dev, which also asks the driver for a stripped tag
//     (bpf_xdp_metadata_rx_vlan_tag, Linux 6.8+, veth, mlx5, ice, ...).
//     A stripped tag of a served VLAN is put back into the frame
//     (bpf_xdp_adjust_head) before the redirect, so that the workers, which
//     see only the frame, forward it on its VLAN; without headroom the
//     frame is pass_vlan.
//     Generic mode cannot attach a device-bound program, and skb metadata
//     is invisible to XDP there: a tag that is already in metadata when the
//     frame reaches the interface (behind a bridge) is missed, and the
//     dataplane warns. One tag is parsed; two (QinQ) are pass_not_ip when
//     both are in the frame and pass_vlan when one was stripped.
//   - A source equal to some other local address than the destination is
//     not checked (the kernel's fib_validate_source does; the program has
//     no list of local addresses).
//   - A draining service (deleted, with connections left: DrainService)
//     passes every TCP SYN without ACK to the kernel, which resets it, as
//     the stack does behind IPVS without the service. That includes a
//     retransmitted SYN of a handshake caught by the deletion, which IPVS
//     would still forward. Its other frames are steered; the dataplane
//     drops those that match no connection (a new UDP flow among them,
//     where the kernel would answer ICMP port unreachable).
//   - A service is looked up as ip_vs_service_find does: the exact
//     protocol, address and port, then port 0 (IPVS's persistent
//     all-ports services) of the same protocol and address; a frame from
//     a real server likewise, port 0 being a NAT real server of a port-0
//     service (it answers from whatever port the client chose). All of
//     such a real server's frames of that protocol are then steered: those
//     that belong to no connection (its own outgoing traffic, which a
//     NAT director would route) are dropped by the dataplane. A
//     frame's fwmark service is looked up before either. Marks come
//     only from xlb's classifier, never from netfilter or the frame.
//   - redirect and redirect_reply count attempts: with no socket bound on
//     the queue, or on a queue >= MaxQueues, the frame falls back to the
//     kernel and is still counted there.
//   - Map sizes are set by Load from Options (default 16384 services,
//     65536 reals; 65536 SYN guard source prefixes fixed; MapSpec.MaxEntries before the maps are created); AddService
//     into a full map says "too many services (limit N)". 64 queues is
//     fixed.
//   - The interface MAC and the VLAN set are constants of a loaded
//     program (const volatile globals set through CollectionSpec.Variables):
//     one Load per interface. Several interfaces (issue 7) load one program
//     each; they can share the service maps through MapReplacements.
//   - The SYN guard's counters and token buckets are updated without
//     atomics where several CPUs serve one queue: a few SYNs more or less
//     are admitted, never a non-SYN segment refused.
//   - Only little-endian targets are generated (bpfel).
//
// # Loading and attaching
//
// Load loads the program and the maps, empty, configured by Options.
// Objects.Attach turns rx-vlan offload off and attaches through a BPF
// link: the device-bound variant natively if it loaded, else the plain
// program natively if the driver implements XDP and in generic (skb) mode
// otherwise; veth attaches natively, loopback generically. Closing the link
// detaches the program; the maps stay until Objects.Close. Map memory is
// charged to the memory cgroup (Linux 5.11+); older kernels need
// RLIMIT_MEMLOCK raised, which this package does not do.
//
// # GSO packets in generic mode: the tc companion
//
// Generic XDP runs on the skb after GRO, so a GSO skb (a local sender's
// TSO, segments GRO merged upstream) reaches the program whole, larger
// than an AF_XDP frame (Options.MaxFrame) and than the egress MTU. A
// steered frame that large is dropped, counted (drop_oversize), unless
// the interface runs xlb_tc, a SchedCLS program of the same object
// (GSOProgram) that Attach attaches to tcx ingress in generic mode
// (GSOCompanion; Linux 6.6+): the XDP program then marks the skb in its
// metadata and passes it (pass_gso), and xlb_tc, which runs next on the
// same skb, forwards it if its flow is offloaded, rewritten as the XDP
// offload does with the skb checksum helpers (right for CHECKSUM_PARTIAL,
// the state of every GSO skb) and redirected, so that dev_queue_xmit
// segments it at egress (redirect_gso); other marked skbs it drops
// (drop_gso_no_flow, drop_gso_unfit). It counts a GSO skb's segments, each
// with its headers, in the flow's and dest_stats' counters.
//
// # Decapsulation for TUN real servers
//
// decap.c is a second, independent XDP program (LoadDecap, type Decap), run
// by `xlb decap` on the real servers of TUN services, whose kernel may lack
// the ipip, ip6_tunnel and fou modules. It strips the outer header of:
//
//	IPv4 protocol 4 (IPIP) and 41 (6in4)
//	IPv6 next header 4 (4in6) and 41 (6in6), also after one Destination
//	  Options header (Linux ip6_tunnel's encapsulation limit)
//	UDP to the configured GUE port, GUE variant 1 (IP directly in UDP)
//	GRE version 0 carrying IPv4 or IPv6, with or without checksum, key
//	  and sequence number (IPVS's --tun-type gre); PPTP's version 1 and
//	  other payloads pass
//
// when the outer destination is one of its local addresses (AddLocal), and
// passes the inner packet to the stack with the Ethernet type fixed; every
// other frame passes untouched. Outer IPv4 fragments are passed (no
// reassembly in XDP: the kernel then drops them, lacking ipip), a tunnel
// packet for the host with a bad inner header is dropped. Each outcome has
// a counter (DecapReason). The outer IPv4 checksum is not verified, as
// Katran's decap does not; the inner checksums still are, by the stack.
//
// The tests run the programs with BPF_PROG_RUN on golden frames and need root
// (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN for namespaces); without it they
// skip and say why. The device-bound variant is the same C plus the kfunc,
// but the kernel refuses BPF_PROG_RUN for it (EINVAL): cmd/xlb's e2e tests
// cover it on veth.
package bpf
