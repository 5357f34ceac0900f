// Package modes rewrites frames for IPVS's forwarding methods, in place in
// the UMEM frame the worker received them in, so that forwarding a frame
// means re-queueing its descriptor on the TX ring.
//
//	DR (gatewaying, -g)   Ethernet destination := real server's MAC,
//	                      Ethernet source := director's MAC. IP untouched:
//	                      the real server holds the VIP on lo and answers
//	                      the client directly.
//	NAT (masquerading, -m) IP destination and L4 port := real server's;
//	                      replies coming back through the director get
//	                      the VIP as source. Checksums updated
//	                      incrementally (RFC 1624).
//	TUN (ipip, -i)        a new outer IPv4 header (protocol 4) to the real
//	                      server is pushed in front of the packet.
//	FULLNAT               source := a director-owned local address/port,
//	                      destination := real server, and the reverse on
//	                      replies; real servers need no route back.
//
// Each function is a plain call on a frame and a few values, with no
// allocation and no interface, so the worker's per-packet path stays
// monomorphic. DR is implemented; NAT, TUN and FULLNAT come with their
// issues.
package modes
