// Command xlb is a userspace L4 load balancer on AF_XDP with the
// behaviour and command line of Linux IPVS and ipvsadm.
//
//	xlb run --iface eth0 --rules rules.txt   start the daemon
//	xlb run --iface eth0 --iface eth1 ...    a two-armed director
//	xlb -L -n                                 any ipvsadm command, sent to the daemon
//	ipvsadm -L -n, xlb ipvsadm -L -n          the same, as exactly ipvsadm 1.31
//	xlb sysctl net.ipv4.vs.expire_nodest_conn=1   an IPVS sysctl of the daemon
//
// `xlb run` checks its preconditions (rules, --conns against memory, the
// control socket, the interfaces), attaches the XDP program to each
// --iface, applies the rules (ipvsadm save format: the output of
// `ipvsadm-save -n` works as is) and serves one queue per worker, of
// every interface: a frame leaves by the interface the route to its next
// hop names (a NAT or FULLNAT reply, by the one the client's frames came
// in on), without a copy (--no-shared-umem: with one). The live
// configuration belongs to package director, which every command and
// reload changes through; this package parses and formats. SIGHUP
// reloads the rules file (all or nothing), --save writes it back after
// every change; SIGINT, SIGTERM, SIGQUIT and
// SIGABRT detach everything, print the counters and remove the control
// socket. It listens on a unix socket (--socket, default the abstract
// socket @xlb of its network namespace, so daemons in two namespaces do
// not collide); every other invocation of xlb is an ipvsadm command line
// that is sent there (--socket first, or XLB_SOCKET) and answered with
// ipvsadm's output, errors and exit codes. Only root, the daemon's user
// and members of --socket-group may use the socket.
//
// Run through a link named ipvsadm (make install makes one) or as `xlb
// ipvsadm ...`, every argument is ipvsadm's: no --socket (XLB_SOCKET
// still chooses the daemon), no --xlb-stats, and a refused user or a
// missing daemon get ipvsadm's own "Can't initialize ipvs: Permission
// denied (you must be root)" or "... Protocol not available" (exit 1).
//
// The worker's polling: --spin (how long, at most, a worker spins for
// the next frame before sleeping), --tx-budget (frames per sendto in copy
// mode), --no-need-wakeup, and --busy-poll/--busy-poll-budget (busy
// polling, which also sets the interfaces' napi_defer_hard_irqs and
// gro_flush_timeout until exit; it loses on veth, see bench/RESULTS.md).
//
// --offload=on (off by default) lets the XDP program forward the frames
// of established DR, NAT, TUN (ipip) and FULLNAT flows itself (XDP_TX, bpf_redirect), the
// workers keeping every decision; --max-flows bounds them. On a veth the
// peer must run an XDP program for those frames to arrive
// (docs/ARCHITECTURE.md, "Flow offload").
package main
