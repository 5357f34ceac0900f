// Package bgp announces a director's VIPs to its upstream routers over
// BGP, so that several active directors share a VIP by ECMP (the Maglev,
// Katran and Unimog deployment): each director originates the VIP's host
// route (/32 or /128) with itself as next hop, the router installs one
// multipath route over every director that announces it, and a director
// that stops announcing drops out of the group.
//
// The BGP implementation is gobgp (github.com/osrg/gobgp/v3), embedded:
// no gRPC listener, no zebra, no routes received are installed (a
// director only originates). Speaker wraps it: Start opens a session to
// every configured peer (connect retry 5 s instead of gobgp's 120 s, so
// a director that starts before its router joins within seconds),
// Announce/Withdraw originate and withdraw host prefixes, and Close
// withdraws everything, waits for the withdrawals to be sent and then
// ends the sessions with a Cease NOTIFICATION.
//
// # Policy
//
// Prefixes is the announcement policy as a pure function of the applied
// ipvs.Config and the drain state: a VIP is announced while one of its
// services has a destination with weight > 0 and the director is not
// draining. Health checks act through the configuration (a failed real
// server gets weight 0 or is removed), so "all real servers failed" is
// "no destination with weight > 0". Reconciler turns changes of either
// input into the Announce and Withdraw calls that make the routes match;
// on shutdown the daemon calls Speaker.Close before it detaches its XDP
// program, so the router stops sending before the director stops
// forwarding (Config.ShutdownDelay keeps it forwarding while the router
// converges, ~100 ms with FRR). `xlb drain` withdraws every VIP while the
// director keeps forwarding the flows it has; `xlb undrain` announces
// them again.
//
// # Configuration
//
// `xlb run --bgp FILE` reads a file (ParseFile documents the syntax), or
// the same settings come as flags (RegisterFlags):
//
//	xlb run --bgp-as 65001 --bgp-router-id 10.0.1.2 --bgp-peer 10.0.1.1:65000 \
//	    [--bgp-peer [2001:db8::1]:65000:179] [--bgp-hold-time 9] [--bgp-graceful-restart 120] \
//	    [--bgp-nexthop 10.0.1.2] [--bgp-nexthop6 2001:db8::2] [--bgp-listen-port 179]
//
// A peer is ADDR:AS[:PORT]. Routers usually want eBGP: a private AS per
// director (or one shared AS for all directors) and the router's own AS.
// On the router, turn on multipath (FRR: `maximum-paths 8`, and `bgp
// bestpath as-path multipath-relax` when the directors' ASes differ).
//
// # Timers and failure detection
//
// A director that exits withdraws at once (Close). One that dies leaves
// a TCP session the kernel closes: the router drops its routes at the
// FIN or RST. One that hangs, or whose link fails silently, is removed
// when the hold time expires, 90 s by default: set a short hold time
// (3–9 s; BGP's minimum is 3) where that matters, or run BFD on the
// router. The testenv scale-out test measures both.
//
// # Graceful restart
//
// With GracefulRestart > 0 the speaker advertises the RFC 4724 capability
// with that restart time and all address families: a router acting as
// helper then keeps the director's routes, marked stale, for the restart
// time after the session drops without a NOTIFICATION, until the
// restarted speaker sends End-of-RIB. That is right only when forwarding
// survives the control plane's restart; xlb's XDP program goes with the
// daemon, so a director that crashed would keep receiving flows it
// cannot forward for the whole restart time. It is therefore off by
// default. TestBGPGracefulRestart shows it against FRR (a helper by
// default): a killed speaker's route stays for the 4 s restart time,
// where without the capability it goes within ~200 ms. A clean Close is not affected: it withdraws explicitly and
// sends a Cease NOTIFICATION without RFC 8538's N bit, which ends graceful
// restart on the helper. gobgp also acts as helper for its peers' restarts
// when the capability is on, which a director never needs (it installs no
// received routes).
package bgp
