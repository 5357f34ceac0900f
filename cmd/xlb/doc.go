// Command xlb is a userspace L4 load balancer on AF_XDP with the
// behaviour and command line of Linux IPVS and ipvsadm.
//
//	xlb run --iface eth0 --rules rules.txt   start the daemon
//	xlb -L -n                                 any ipvsadm command, sent to the daemon
//
// `xlb run` attaches the XDP program to the interface, applies the rules
// (ipvsadm save format: the output of `ipvsadm-save -n` works as is) and
// serves one queue per worker until SIGINT or SIGTERM, when it detaches
// everything and prints its counters. It listens on a unix socket
// (--socket, default /run/xlb.sock); every other invocation of xlb is an
// ipvsadm command line that is sent there and answered with ipvsadm's
// output, errors and exit codes.
package main
