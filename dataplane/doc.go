// Package dataplane is xlb's forwarding engine: the XDP program attached
// to each served interface, a worker per RX queue with an AF_XDP socket
// on that queue of every interface, and the control plane that turns an
// ipvs.Config into the workers' tables.
//
// # Rings
//
// A worker's sockets (one per served interface, on its RX queue) share one
// UMEM (8192 frames of 2 KiB per interface by default, XDP_SHARED_UMEM),
// and each has the four rings the kernel shares with it:
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
// forwarded go straight back to the free stack.
//
// # Several interfaces
//
// A two-armed director (clients on one interface, real servers on
// another: --iface eth0 --iface eth1) runs one copy of the XDP program
// per interface (bpf.Objects.Sibling): xlb_mac, the MAC a steered frame
// must be addressed to, is a load-time constant, and each program has
// its own XSKMAP (every interface has a queue 0), while the service,
// real, local and counter maps are one set, shared. A worker has a
// socket on its queue of every interface, all on one UMEM: the first
// socket registers it, the others bind with XDP_SHARED_UMEM and the
// first one's fd, each with a fill and a completion ring of its own
// (Linux requires them when the sockets are on different devices). The
// UMEM holds Socket.NumFrames per interface. A frame received on one
// socket is rewritten in place and its descriptor put on the TX ring of
// another, without a copy (tested on veth in copy mode, where the kernel
// still copies between the UMEM and its skbs, as for one interface);
// it comes back on that socket's completion ring. One free stack, the
// worker's alone, feeds every fill ring and takes back from every
// completion ring: no lock, no allocation (TestWorkerTwoArmedAllocs).
// If the kernel refuses to share the UMEM, that socket gets a UMEM of
// its own, New logs it, and a frame that changes interface is copied
// into a free frame of the egress socket's UMEM (counted as copied; with
// none free, dropped as copy_no_frame); SocketOptions.NoSharedUMEM
// (xlb run --no-shared-umem) forces it. On the fake kernel the copy of a
// 1454-byte frame costs about 30 ns (BenchmarkWorkerTwoArmed: 128 ns per
// frame shared, 159 copying). Through a two-armed NAT director on veth
// (TestTwoArmed, TestTwoArmedCopy), 16 MiB each way ran at 560-960
// Mbit/s each way shared and 460-600 Mbit/s copying, three runs each on
// a busy 2-core VM.
//
// Which interface a frame leaves by: a client's frame, the one the route
// to its next hop names (the resolver's slot in the forwarding table); a
// NAT or FULLNAT reply, the one the client's frames came in on (kept in
// the connection entry beside the client-side hop MAC); an ICMP error
// xlb answers, the one the offending frame came in on. The rewrite uses
// the egress interface's MAC as source and checks its MTU. A real
// server whose route names an interface xlb does not serve is
// unresolved, with that reason, in Stats().Neighbours and the log. Ring indices shared with
// the kernel are read and written with atomics, only at the edges of a
// batch of up to 64 frames; each side caches the other's index. When the
// TX ring is full, transmit kicks the kernel (sendto), reaps completions
// and retries; what still does not fit waits in a backlog, and while the
// backlog is long the worker takes no more RX frames, so the pressure
// lands on the RX ring, where the kernel counts its drops (QueueStats.Sockets).
//
// Syscalls: one sendto per TX batch (a TX budget of 128 frames per call,
// XDP_MAX_TX_SKB_BUDGET, so a 64-frame batch goes in one), skipped when
// the socket was bound with need_wakeup and the kernel has cleared the TX
// ring's flag (a zero-copy driver whose NAPI is sending; copy mode always
// needs it). An empty RX ring costs a recvfrom only when the fill ring's
// need_wakeup flag asks for it, or when the socket busy-polls
// (SocketOptions.BusyPoll), whose NAPI runs from the worker's syscalls;
// on veth that loses (bench/RESULTS.md, "Where the time goes"). With no
// frames, a worker spins up to Options.Spin for the next one, and only
// while recent gaps were shorter than that (spinner in worker.go), then
// sleeps in poll(2).
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
// With several queues, a flow whose frames RSS spreads over workers (a
// persistent service's clients, NAT and FULLNAT replies) has one owner
// worker (owner.go); another worker that receives its frame copies it
// into a single-producer single-consumer ring to the owner (handoff.go),
// which forwards it at its next batch edge. DR and TUN services without
// -p never hand off.
//
// # Control plane
//
// Apply validates a whole configuration, builds scheduler instances and
// conntrack service policies, installs the services in the XDP map and
// then publishes new immutable snapshots the workers load once per batch:
// all of the configuration or none of it. Destinations removed while
// connections still use them keep their ID and forwarding entry until
// their counts reach zero (IPVS's trash). A deleted service (-D, or -C
// before -R) drains the same way: it leaves the workers' tables, so
// nothing new is scheduled on it, but stays in the XDP map, flagged so
// that a TCP SYN for it goes to the kernel (which resets it, as without
// IPVS) while its established connections keep flowing to their real
// servers; it leaves the map when its last connection has expired.
// Adding it again takes it back with its ID and its destinations, so
// -C; -R of the same rules changes nothing for live traffic.
// Apply counts the free
// destination IDs before it changes anything ("too many destinations
// (limit N)").
//
// # Next hops
//
// A resolver (neigh.go) keeps each destination's next-hop MAC: its own
// on-link, else its gateway's, from the kernel's route and neighbour
// tables. It never holds the control plane's lock while it asks the
// kernel: it takes a snapshot of the destinations (only when they
// changed), works off the lock, and publishes only the forwarding entries
// that changed. A netlink subscription tells it of neighbour, route and
// link changes as they happen; each second it also dumps the neighbour
// table once, to catch what an event missed. Route lookups are cached and
// redone only for the addresses a route change covers. Missing
// neighbours are probed (an empty UDP datagram, so the kernel runs
// ARP/ND) with a backoff from 1 to 30 s. An unroutable or unresolved
// destination is a normal state: logged once when it goes and once when
// it comes back, listed in Stats().Neighbours with the reason; the others
// keep being served. The kernel glue sits behind netKernel, with an
// in-memory fake for the tests.
//
// A worker never waits for ARP. It holds up to 4 frames per unresolved
// destination (64 per worker) in their UMEM frames, as the kernel's
// unres_qlen does, nudges the resolver to probe that destination at once,
// and sends them at the first batch edge after the MAC is published;
// frames held over a second, or with no room to hold them, are dropped
// and counted (hold_expired, hold_full, no_neighbour).
//
// # Port-0 and Local destinations
//
// A frame with no service of its own port finds the port-0 service of its
// address and protocol (-A -t VIP:0 -p, all ports, persistent), in XDP and
// in the worker, as ip_vs_service_find does; its template holds one
// client on one real server for every port, and a real server of port 0
// is reached on the client's port. A destination on one of the director's
// own addresses becomes Local when it is added or edited (Apply marks it
// in the configuration it is given), and its connections' frames are
// written, unchanged, to a TAP device for the director's stack (local.go).
//
// # Faults
//
// A link going down leaves the XDP program and the AF_XDP sockets in
// place (measured on veth); transmission fails with ENETDOWN meanwhile
// (counted as link_down, the frames wait on the TX ring), the resolver
// sees the routes go and come back, and forwarding resumes by itself.
// When the interface is removed, XDP and the sockets go with it: Run
// returns ErrInterfaceGone and the daemon exits cleanly, saying so.
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
// # Connection sync
//
// StartSyncExport and InstallSynced are the dataplane's side of IPVS
// connection synchronization (package ipvssync speaks the protocol).
// Each worker has a bounded single-producer ring of fixed records for
// export, written on the rare frame after which the kernel's rules send
// its connection and published at the batch edge, and one for install,
// drained at the batch edge; a drainer goroutine turns exported records
// into ipvssync.Conn for the sync sender. See sync.go.
//
// # Limits
//
// Forwarding methods are bound per connection and dispatched once, on
// (method, direction), by modes.Xmit (see the modes package). NAT and
// FULLNAT need one RX queue (replies would reach other workers).
// Replies go back to the MAC and interface the connection's first frame
// came from. Every served interface must have at least as many RX queues
// as are served.
// Firewall-mark services (-f) take their marks from xlb's own classifier
// (ipvs.Config.Marks, `xlb mark`), since XDP runs before netfilter could
// mark a frame: the XDP program and the worker (packet.MarkTable) give a
// frame the same mark, and its fwmark service wins over an address and
// port service, as in ip_vs_service_find. Connections keep their real
// VIP:port; persistence templates are keyed by the mark. Every method
// serves them: a NAT or FULLNAT destination of port 0 takes the client's
// destination port, and its replies are steered from each port and
// protocol of the mark's rules (a wildcard past 64 ports; reals.go). On veth, AF_XDP runs in copy mode (zero-copy is tried
// first and falls back).
package dataplane
