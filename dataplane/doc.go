// Package dataplane is xlb's forwarding engine: the XDP program attached
// to one interface, an AF_XDP socket and a worker per RX queue, and the
// control plane that turns an ipvs.Config into the workers' tables.
//
// # Rings
//
// Each socket has its own UMEM (4096 frames of 2 KiB by default) and the
// four rings the kernel shares with it:
//
//	fill ring        us → kernel   empty frames to receive into
//	RX ring          kernel → us   received frames (addr, len)
//	TX ring          us → kernel   frames to send
//	completion ring  kernel → us   sent frames, free again
//
// A queue (queue.go) owns every frame not on a ring, on a free stack.
// Forwarding rewrites a received frame in place and puts the same
// descriptor on the TX ring; after the kernel sends it, it comes back on
// the completion ring and goes to the fill ring again. Frames not
// forwarded go straight back to the free stack. Ring indices shared with
// the kernel are read and written with atomics, only at the edges of a
// batch of up to 64 frames; each side caches the other's index. When the
// TX ring is full, transmit kicks the kernel (sendto), reaps completions
// and retries; what still does not fit waits in a backlog, and while the
// backlog is long the worker takes no more RX frames, so the pressure
// lands on the RX ring, where the kernel counts its drops (Stats.Sockets).
//
// # Why not asavie/xdp
//
// github.com/asavie/xdp v0.3.3 was the planned AF_XDP library. Its Socket
// keeps the rings in unexported fields and reads and writes the producer
// and consumer indices it shares with the kernel with plain loads and
// stores (a data race the race detector and weakly ordered CPUs both
// punish), its Transmit returns early and loses frames when the TX ring is
// full, and its Program.Attach/Detach loops forever on an SKB-mode
// program. None of it can be fixed from outside the package, so the
// socket (socket.go) is written here on golang.org/x/sys/unix, as
// asavie/xdp itself is, and the XDP program is attached through a
// cilium/ebpf bpf_link (package bpf), which the kernel detaches when the
// process dies. Only the setup syscalls are alike; the ring handling is
// new. The ring protocol is tested against an in-memory fake kernel that
// shares index words exactly like the mmapped rings, from a second
// goroutine under -race.
//
// # Workers
//
// One goroutine per queue, locked to its OS thread, owns the queue, its
// conntrack shard and its counters. Per frame it parses headers in place
// (internal/packet), looks the flow up in its conntrack.Table, places a
// new connection with conntrack.NewConn and the service's scheduler
// instance (one per worker), rewrites the frame (package modes) and
// queues it for TX. The path allocates nothing and takes no lock
// (TestWorkerPollAllocs); its only interface call is the scheduler's, on
// a connection's first packet. Counters are plain fields published with
// atomic stores once per batch.
//
// # Control plane
//
// Apply validates a whole configuration, builds scheduler instances and
// conntrack service policies, installs the services in the XDP map and
// then publishes new immutable snapshots the workers load once per batch:
// all of the configuration or none of it. Destinations removed while
// connections still use them keep their ID and forwarding entry until
// their counts reach zero (IPVS's trash). A resolver reads next-hop MACs
// from the kernel's neighbour table every second and after each Apply,
// and makes the kernel resolve missing ones; a worker never waits for ARP
// and drops (and counts) frames for a destination still unresolved.
//
// # SYN floods
//
// The kernel drops frames at a full RX ring or an empty fill ring without
// looking at them. A worker therefore watches its rings (RX more than a
// quarter full, fill less than a quarter) and its table's eviction rate
// at batch edges, and when overloaded publishes a level in the XDP
// program's syn_guard map: level 1 rate-limits SYNs per source prefix
// (Options.SYNRate, SYNBurst; a flooding prefix stays refused), level 2,
// if the rings stay overloaded, admits only prefixes that sent an ACK in
// the last 10 s. The XDP program also applies level 1 by itself for
// 100 ms when a queue gets more than Options.SYNAuto SYNs a second. Segments
// without SYN are always steered, so established connections keep their
// frames. See pressure.go and bpf's doc.
//
// # Limits
//
// Only direct routing (-g) forwards so far; NAT, TUN and FULLNAT are
// refused by Apply with ErrNotSupported. Firewall-mark services cannot be
// seen by XDP. On veth, AF_XDP runs in copy mode (zero-copy is tried
// first and falls back).
package dataplane
