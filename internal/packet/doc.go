// Package packet parses Ethernet frames in place for xlb's per-packet path,
// the Go side of the XDP program in bpf/xdp.c.
//
// Parse reads a frame where it lies (in UMEM) and fills a caller-owned Meta
// with offsets, addresses, ports and TCP flags. It does not allocate, does
// not return errors and does not copy the frame: it returns a Reason, OK or
// why the frame cannot be handled, and the caller drops the frame and bumps
// that reason's counter.
//
// # Classification
//
// Parse applies exactly the checks of the XDP program, in the same order,
// up to the service lookup (see package bpf for the table): a frame the XDP
// program steers always parses OK, and a non-OK Reason names the XDP
// counter (bpf.Reason) the frame would have bumped. The tests in package bpf
// run both over the same golden frames (package packettest), every cut of
// them and thousands of mutations.
//
// # ICMP errors
//
// An ICMP error (IPv4 types 3, 11, 12; ICMPv6 types 1-4) quoting a TCP or
// UDP packet parses OK, normalised as Katran's parse_icmp normalises it:
// Meta's flow fields are the quoted packet's reversed (Src:SrcPort the
// quoted destination, Dst:DstPort the quoted source), Proto the quoted
// protocol, TCPFlags 0, L4Off the ICMP header, and Meta.ICMP (an
// ICMPError, IsICMP) locates the outer header, the ICMP header, the quote
// and its TCP or UDP header. The reversal makes an error about a packet
// that went one way of a connection carry the flow key of the other way:
// a router's fragmentation needed about VIP:80 → client:c has the key
// client:c → VIP:80, the connection's forward key, and a NAT real
// server's port unreachable about client:c → RS:p has RS:p → client:c,
// its reply key. So the XDP lookup and conntrack need nothing else.
//
//	| L2 | outer IP | type code csum word | quoted IP | quoted TCP/UDP, 8+ |
//	     L3Off      L4Off = ICMP.ICMPOff  InnerL3Off  InnerL4Off          End
//
// The quote must hold an IP header of the outer family (IPv4 with its
// options, IPv6 with no extension header) and 8 bytes after it (the ports
// and, for UDP, the checksum): shorter is Malformed. The quoted lengths
// are not checked against the quote, which is cut short by design (RFC
// 792: 8 bytes; RFC 1812 and Linux: up to 576 bytes in all; RFC 4443: up
// to 1280). Other ICMP messages (echo, redirect, ...), quotes of other
// protocols, of IPv4 fragments but the first (no ports) or with IPv6
// extension headers are NotTCPUDP, for the kernel; so is an ICMP message
// that is itself an IPv4 fragment. Filter.Admit checks an ICMP error's
// outer header: its martian check is on the outer addresses.
//
// Headers read, with the fields Parse uses marked *:
//
//	Ethernet (IEEE 802.3), optionally one 802.1Q/802.1ad tag
//	+--------------+--------------+-----------+ +-------+-----------+
//	| dst MAC (6)  | src MAC (6)  | *type (2) | |*TCI 2 | *type (2) |
//	+--------------+--------------+-----------+ +-------+-----------+
//
//	IPv4 (RFC 791 section 3.1)
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-------+-------+---------------+-------------------------------+
//	|*Ver=4 |*IHL>=5|    DSCP/ECN   |       *Total Length           |
//	+-------+-------+---------------+-----+-------------------------+
//	|        Identification         |*MF  |*Fragment Offset = 0     |
//	+---------------+---------------+-----+-------------------------+
//	|      TTL      |  *Protocol    |       Header Checksum         |
//	+---------------+---------------+-------------------------------+
//	|                       *Source Address                         |
//	+---------------------------------------------------------------+
//	|                     *Destination Address                      |
//	+---------------------------------------------------------------+
//	|          Options, skipped (IHL*4 - 20 bytes)                  |
//	+---------------------------------------------------------------+
//
//	IPv6 (RFC 8200 section 3), then at most 8 extension headers
//	(Hop-by-Hop, Routing, Destination Options: *Next, *Len (n+1)*8;
//	AH: *Next, *Len (n+2)*4; Fragment: *Next, *Offset, *M)
//	+-------+---------------+---------------------------------------+
//	|*Ver=6 | Traffic Class |              Flow Label               |
//	+-------+---------------+-------+---------------+---------------+
//	|     *Payload Length           | *Next Header  |   Hop Limit   |
//	+-------------------------------+---------------+---------------+
//	|                 *Source Address (16 bytes)                    |
//	|                *Destination Address (16 bytes)                |
//	+---------------------------------------------------------------+
//
//	TCP (RFC 9293 section 3.1)              UDP (RFC 768)
//	+---------------+---------------+       +-------------+-------------+
//	| *Source Port  |  *Dest Port   |       | *Source Port| *Dest Port  |
//	+---------------+---------------+       +-------------+-------------+
//	|        Sequence Number        |       |  *Length    |  Checksum   |
//	+-------------------------------+       +-------------+-------------+
//	|     Acknowledgment Number     |
//	+-------+-------+---------------+
//	|*DOff  | rsvd  |   *Flags      |  ...
//	+-------+-------+---------------+
//
// # Rewriting
//
// SetSourceWithChecksumUpdate and SetDestinationWithChecksumUpdate rewrite
// an accepted frame's address and port in place (NAT, FULLNAT) and update
// the IPv4 header checksum (offset 10) and the TCP (offset 16) or UDP
// (offset 6) checksum incrementally with ChecksumDelta, RFC 1624 eqn. 3:
// the changed words are read and written, the payload is not. An address
// change enters both checksums, since the TCP/UDP pseudo-header covers the
// addresses. The results equal a full recomputation bit for bit (tested
// against gopacket on random frames). A UDP checksum of 0 over IPv4 means
// none was computed and stays 0; a computed 0 is written as 0xffff
// (RFC 768). Checksums are updated, never verified: a wrong one stays
// wrong. Cost: ~9 ns for IPv4, ~21 ns for IPv6 (BenchmarkSet...).
//
// Limits are those of the XDP program: one VLAN tag (Meta.VLAN is its ID),
// at most 8 IPv6 extension headers (Meta.L4Off is past them), no
// fragments (first ones included), IPv4 options skipped unread, TCP/UDP
// checksums not verified. Bytes after the IP packet (Ethernet
// padding) are ignored; Meta.IPLen says where the packet ends.
//
// Parse costs 11-14 ns per frame (BenchmarkParse, one core of a 2-vCPU
// VM) and allocates nothing (TestParseAllocs).
//
// Meta is plain data: reuse one per worker. Parse is safe for concurrent
// use on distinct Metas.
package packet
