// Package sched places new connections on real servers with the decisions
// of the Linux IPVS schedulers (net/netfilter/ipvs/ip_vs_*.c).
//
// A [Dest] carries a real server's weight, thresholds and connection
// counts; a [Scheduler] chooses among a service's destinations. Only the
// first packet of a connection reaches a scheduler: later packets are
// found in the connection table (package conntrack).
package sched
