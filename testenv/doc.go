// Package testenv builds throw-away network topologies in Linux network
// namespaces for xlb's end-to-end tests, its demo and its benchmarks.
//
// A topology has a client, a director and N real servers, each in its own
// namespace with one veth ("eth0") whose peer sits on a bridge in a
// namespace of its own, so all hosts share one L2 segment:
//
//	 client 198.18.0.2        director 198.18.0.1 + VIP 198.18.0.100
//	    eth0                      eth0  (xlb attaches here)
//	     |                          |
//	[ v-cli ]----------[ br0 ]----------[ v-dir ]     namespace <name>-br
//	                    |    |
//	                [ v-rs1 ] [ v-rs2 ] ...
//	                    |         |
//	                  eth0      eth0
//	  rs1 198.18.0.11          rs2 198.18.0.12     (VIP on lo, arp_ignore=1, arp_announce=2)
//
// Addresses come from 198.18.0.0/15, the range RFC 2544 reserves for
// benchmarking, and never leave the namespaces. Every veth has one RX and
// one TX queue (frames on a second queue would bypass an AF_XDP socket
// bound to queue 0), and TX checksum offload is off on the client and
// real-server ends: otherwise locally generated TCP leaves the veth with a
// partial checksum and a real server behind an XDP forwarder drops it.
//
// Real servers run a Go HTTP server and a UDP echo server that answer
// with their own name, so a client can tell where a request went. Code
// runs inside a namespace through [Host.Do], which pins a goroutine to an
// OS thread and switches that thread; sockets keep the namespace they were
// created in, so a listener or connection made inside Do works anywhere.
//
// # Variants
//
// Options select the variants issue 7's modes need; they combine:
//
//   - IPv6: every host also gets an address in 2001:db8::/64 (the
//     director 2001:db8::1, the client ::2, real servers ::11+i, VIP6
//     2001:db8::100); servers listen on both families. Addresses are added
//     without DAD and AddAddr waits for their local route.
//   - Reals (RealKind): how real servers are set up. RealDR (default): the
//     VIP on lo, arp_ignore=1, arp_announce=2 (Host.SetupDRReal). RealNAT:
//     default route via the director, the real server's own address a host
//     route so that even a client on its segment is reached through the
//     director (Host.SetupNATReal). RealTUN: as DR, plus rp_filter=0 and
//     xlb's decap program on eth0 (Host.SetupTunReal; `xlb decap` with
//     Options.XLB, else attached in-process). RealFullNAT: nothing; the
//     director owns LAddr on the real servers' side (Host.SetupFullNATReal).
//   - TwoArmed: real servers on a second bridge br1 (198.18.1.0/24,
//     2001:db8:1::/64) behind the director's eth1 (198.18.1.1), their
//     default route through it (FULLNAT excepted). The director forwards
//     (ip_forward=1, no redirects) and accepts replies whose source is its
//     own VIP (accept_local=1 and rp_filter=0 on eth1) for DR and TUN.
//   - PathMTU: the client (198.18.2.2) sits behind a router "rt"
//     (198.18.0.254) whose route to the client has a smaller MTU, so large
//     DF packets towards the client draw ICMP frag-needed / packet-too-big.
//
// NewSelftest builds the kernel's ipvs.sh topology instead: client, director
// and server namespaces joined by two veth pairs, the VIP on the director's
// lo; see selftest.go.
//
// Every real server (and the selftest server) also runs a transfer sink on
// Options.HashPort (9000; 8080 in the selftest): Host.Transfer sends random
// bytes up and down one TCP connection and compares SHA-256 hashes, the
// issue's 16 MiB check (BulkBytes) and ipvs.sh's random-bytes check.
// Host.SendTunnel, Host.SendGRE and Host.SendGUE stand in for a TUN
// director by sending IPIP/6in4/4in6/6in6, GRE or GUE packets from raw or
// UDP sockets.
//
// New registers teardown with t.Cleanup; Setup returns an Env whose Close
// the caller must call. Both delete every namespace they made, which
// removes the veths and the bridge with them.
package testenv
