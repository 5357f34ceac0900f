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
// New registers teardown with t.Cleanup; Setup returns an Env whose Close
// the caller must call. Both delete every namespace they made, which
// removes the veths and the bridge with them.
package testenv
