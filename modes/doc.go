// Package modes rewrites frames for IPVS's forwarding methods, in place in
// the UMEM chunk the worker received them in, so that forwarding a frame
// means transmitting a descriptor into the same chunk.
//
// # Contract
//
// The dataplane calls one function per frame:
//
//	v := modes.Xmit(&frame, &meta, &plan, dir)
//
// where:
//
//   - Frame is the chunk and the frame in it: Buf is the whole chunk
//     (umem[base:base+chunkSize:base+chunkSize]) and the frame is
//     Buf[Off:Off+Len]. The bytes before Off are headroom (XDP_PACKET_HEADROOM,
//     256, in front of every RX descriptor), into which TUN pushes its outer
//     headers and the ICMP replies their new headers: on OK, transmit the
//     descriptor (base+Off, Len) Xmit leaves, which may differ from the one
//     received. Nothing outside Buf is ever read or written, whatever its
//     capacity.
//   - meta is packet.Parse's result on Frame.Bytes(). Xmit checks that it
//     lies inside the frame (Malformed if not) but trusts its addresses to
//     be the frame's.
//   - Plan is the connection's forwarding, filled by the dataplane from the
//     conntrack entry (whose method was bound when the connection was
//     created, as IPVS's ip_vs_bind_xmit does) and the forwarding tables:
//     next hop and egress MACs, egress MTU, the addresses below.
//   - dir is In for a frame that matched the entry's forward key (client →
//     real server) and Out for one that matched its reply key (real server
//     → client); the values are conntrack.DirInput and DirOutput's.
//   - Xmit switches once on (method, direction) into a plain function per
//     pair, in dr.go, nat.go, tun.go and fullnat.go (NAT's and FULLNAT's
//     name the new addresses and ports, which one rewrite in Xmit
//     applies): no interface, no function pointer, no allocation
//     (TestXmitAllocs).
//
// # Verdicts
//
// OK means transmit. Every other verdict leaves the frame, its bytes and
// the Frame as they were, so the caller can answer it or drop it and
// count the verdict by name (Verdict.String is the counter name):
//
//	too_big       larger than the egress MTU, DF set or IPv6: answer with
//	              ReplyTooBig(f, m, plan.ReportMTU(), &vip) and transmit
//	              that on the interface the frame came in on
//	need_frag     larger than the MTU, IPv4 without DF: IPVS would fragment
//	              (the outer packet, for TUN); xlb does not, and drops
//	ttl_exceeded  TTL or hop limit 0 or 1 on arrival: drop, or answer with
//	              ReplyTimeExceeded from the director's own address
//	no_room       the headroom cannot hold the outer headers
//	malformed     meta does not describe a packet inside the frame
//	unsupported   not forwarded by this method: Local, DR or TUN replies
//	              (the real server answers the client directly), or a
//	              real server, local address or tunnel source of another
//	              family than the frame for NAT and FULLNAT (no NAT64)
//
// # What each method touches
//
//	method   dir  Plan fields read                 frame fields written
//	DR       In   DstMAC SrcMAC MTU                MACs, TTL (+IPv4 csum)
//	NAT      In   RS RPort + the above             MACs, TTL, dst addr:port
//	NAT      Out  VIP VPort + the above            MACs, TTL, src addr:port
//	FULLNAT  In   Laddr Lport RS RPort + MACs MTU  MACs, TTL, src and dst
//	FULLNAT  Out  VIP VPort Client ClientPort ...  MACs, TTL, src and dst
//	TUN      In   RS Encap + MACs MTU              MACs, EtherType, inner TTL;
//	                                               outer headers pushed in front
//
// NAT and FULLNAT update the IPv4 header checksum and the TCP or UDP
// checksum incrementally (RFC 1624 eqn. 3), once for all their changes,
// the TTL's included, in one pass over the headers
// (packet.ForwardAddrPortsWithChecksumUpdate); the golden tests prove
// the result equal to a full recomputation bit for bit. A UDP checksum of
// 0 (none computed, IPv4) stays 0. Checksums are updated, never verified:
// a wrong one stays wrong by the same amount. TUN leaves the inner packet
// as it is but for the TTL; its outer IPv4 header gets a computed
// checksum, GUE's UDP checksum and GRE's checksum are computed over the
// packet when Encap.Csum is set (--tun-csum), which costs a pass over it.
// The Ethernet header keeps its VLAN tag, if any; only the MACs and, for
// TUN to the other family, the EtherType change.
//
// # TTL
//
// Every forwarded frame, in every method and direction, has its TTL or hop
// limit decremented, as IPVS does since Linux 4.10: __ip_vs_get_out_rt
// calls decrement_ttl for DR, NAT and TUN alike, and NAT and FULLNAT
// replies go through ip_forward. A frame arriving with 1 or 0 is not
// forwarded (ttl_exceeded). For TUN the inner TTL is decremented and the
// outer one copied from it (ip_vs_prepare_tunneled_skb).
//
// # MTU
//
// Plan.MTU is the egress interface's MTU; 0 checks nothing. The IP length
// plus the tunnel overhead (Plan.Overhead: 20 or 40 for the outer IP
// header, +12 for GUE, +4 or +8 for GRE) must fit. IPVS checks the same in
// every xmit function (ensure_mtu_is_adequate). Frames from the kernel's
// GSO can exceed any MTU; AF_XDP receives only what fit the ingress MTU.
//
// # Tunnels
//
// ipip (protocol 4 for IPv4 inside, 41 for IPv6), GUE variant 0 with no
// options (IPVS's ipvs_gue_encap; Linux's fou in gue mode), and GRE
// (RFC 2784, protocol type the inner EtherType), each over an outer IPv4
// or IPv6 header whatever the inner family. The outer DS field copies the
// inner DSCP and ECN, CE becoming ECT(0) (RFC 6040 normal mode); the
// outer IPv4 DF is the inner one (clear for IPv6 inside IPv4, as IPVS
// does), its identification the inner one or, for IPv6 inside, a hash of
// the flow. GUE's UDP source port is a hash of the inner flow in
// 49152-65535 for ECMP and RSS. --tun-remcsum sends no remote checksum
// offload option: IPVS adds one only to CHECKSUM_PARTIAL skbs.
//
// # ICMP
//
// ReplyTooBig and ReplyTimeExceeded turn the frame Xmit refused into the
// ICMP error to its sender, in place (Katran's send_icmp4_too_big): MACs
// swapped, new IP and ICMP headers pushed in front of the original IP
// header, which is quoted with 8 bytes of its TCP or UDP header (IPv4) or
// up to 1280 bytes in all (IPv6). They never answer anything but TCP or
// UDP, so never an ICMP error (RFC 1122 section 3.2.2).
//
// XmitICMP forwards an ICMP error about a tracked connection, located by
// packet.ICMPError's offsets (Meta.ICMP: packet.Parse classifies the
// errors quoting TCP or UDP, and the worker finds the connection through
// the quoted flow, reversed, by its forward key for an error from the
// client's side, Dir In, or its reply key for one from the real server's
// side, Dir Out). DR and TUN forward an error from the client's side as
// they forward the connection, to the real server's MAC or encapsulated
// to it, unchanged but for the TTL: this is how a router's fragmentation
// needed about a DR or TUN real server's reply, sent to the VIP, reaches
// that real server (PMTU discovery). NAT and FULLNAT
// translate the outer header and the quoted one (addresses, ports) and
// update all the checksums involved incrementally: outer IPv4 header,
// ICMP (ICMPv6 with its pseudo-header), quoted IPv4 header, quoted TCP or
// UDP checksum if the quote holds it whole.
//
// # Checksums left to the NIC
//
// A frame from a sender on the same host (a container or VM behind a veth,
// a bridge or a tap, with checksum offload on) may carry an unfinished TCP
// or UDP checksum: Linux's CHECKSUM_PARTIAL, where the field holds the
// folded pseudo-header sum and the NIC would finish it. AF_XDP does not
// say which frames are so; forwarded as they are, the real server drops
// them, and an incremental update of such a field does not finish it. The
// dataplane should call packet.CompleteL4Checksum(frame, meta) before Xmit
// on frames received from interfaces that can carry local senders' frames
// (veth, bridge ports, tap; not a physical NIC, whose frames come off the
// wire complete): it costs one pseudo-header sum per frame, and a pass
// over the segment only for frames whose field equals that sum. The
// alternative is AF_XDP TX checksum metadata (XDP_TXMD_FLAGS_CHECKSUM,
// Linux 6.8, done in software in copy mode with XDP_UMEM_TX_SW_CSUM): the
// worker would store the pseudo-header sum in every forwarded frame and
// ask the device to finish it, which needs a UMEM registered with
// tx_metadata_len and is not built.
//
// # Cost
//
// Thread CPU time per frame, less the 3.4 ns copy that restores the input
// (TestXmitCPUTime with XLB_CPUTIME=1, one core of a loaded 2-vCPU VM;
// BenchmarkXmit gives wall time):
//
//	              IPv4  IPv6
//	DR in           10     7
//	NAT in/out      22    24
//	FULLNAT in/out  24    31
//	TUN ipip        28    21   (same-family outer; an IPv4 outer header costs its checksum)
//	TUN gue         39    29   (+11 with --tun-csum, a pass over the packet)
//	TUN gre         31    23   (+10 with the checksum)
//
// Those are an older run's. On 2026-12-02, after tunIn stopped re-deriving
// the plan's family and overhead and hashing an ID for IPv6 under an IPv6
// outer header (same test, min of 6 runs, -pgo=off): TUN ipip 15.8-16.0
// (IPv4 in IPv4) and 13.8-14.0 ns (IPv6 in IPv6), from 18.9-19.4 and
// 17.8-19.7 before; DR in 6.2-6.6 in the same runs.
package modes
