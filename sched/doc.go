// Package sched places new connections on real servers with the decisions
// of the Linux IPVS schedulers (net/netfilter/ipvs/ip_vs_*.c).
//
// A [Dest] carries a real server's weight, thresholds and connection
// counts; a [Scheduler] chooses among a service's destinations. Only the
// first packet of a connection reaches a scheduler: later packets are
// found in the connection table (package conntrack).
//
// # Schedulers
//
// [New] makes any of the kernel's fourteen, by the name ipvsadm -s takes:
//
//	rr     round robin                      ip_vs_rr.c
//	wrr    weighted round robin             ip_vs_wrr.c
//	lc     least connection                 ip_vs_lc.c
//	wlc    weighted least connection        ip_vs_wlc.c (the default)
//	sed    shortest expected delay          ip_vs_sed.c
//	nq     never queue                      ip_vs_nq.c
//	fo     weighted failover                ip_vs_fo.c
//	ovf    overflow                         ip_vs_ovf.c
//	twos   power of two choices             ip_vs_twos.c
//	dh     destination hashing              ip_vs_dh.c
//	sh     source hashing                   ip_vs_sh.c
//	mh     Maglev hashing                   ip_vs_mh.c, lib/siphash.c
//	lblc   locality-based least connection  ip_vs_lblc.c
//	lblcr  lblc with replication            ip_vs_lblcr.c
//
// The comment on each (unexported) scheduler type states its rule: rr.go,
// list.go, twos.go, hash.go (dh, sh), mh.go, lblc.go, lblcr.go. What they
// share is the kernel's:
//
//   - A destination's overhead is (activeconns << 8) + inactconns
//     (ip_vs_dest_conn_overhead, include/net/ip_vs.h); weighted schedulers
//     compare overheads per weight without division, loh*w_d > doh*w_least
//     in 64 bits, strictly, so a tie keeps the earlier destination.
//   - Weight 0 quiesces a destination: no new connection, existing ones
//     go on. IP_VS_DEST_F_OVERLOAD, which [Dest.Bind] sets at the upper
//     threshold (ipvsadm -x) and [Dest.Unbind] clears below the lower one
//     (-y) or below 3/4 of the upper one (ip_vs_conn.c), takes a
//     destination out the same way. lblc alone still uses a cached
//     destination that has the flag set, as the kernel does.
//   - The destination list is newest first (ipvsadm -a inserts at the
//     head, list_add_rcu in ip_vs_ctl.c), and that order decides rr/wrr
//     order, dh/sh/mh tables and every tie.
//   - [Options.Flags] are the service's -b flags ([ParseFlags] reads them
//     as ipvsadm 1.31 does): sh-fallback and sh-port for sh, mh-fallback
//     and mh-port for mh.
//
// Decisions are the kernel's exactly where they can be: the tests pin
// sequences derived by hand from the C, and dh, sh and mh tables and
// client decisions match, slot for slot, a C model of the kernel in
// testdata/kernelgolden.c. With the kernel's fixed keys and the same table
// size (Options.MHTableSize, 4093 by default) an mh director built on xlb
// sends a client to the same real server as a kernel IPVS director with
// the same destinations in the same order.
//
// # Concurrency
//
// Each dataplane worker owns its own instance per service. Schedule is
// called by that worker only; it takes no lock, never allocates and
// reads the counters of [Dest] with atomic loads,
// because other workers move them. Update comes from the control plane at
// any time: it builds the new list or table (sh's 256 buckets, mh's
// Maglev table, rr's index) on the caller's goroutine and publishes it with
// one atomic pointer store, so a decision sees either the old state or the
// new one, never a mix. The control plane should serialise its Updates to
// one instance (the last store wins).
//
// State that a decision changes belongs to the worker: rr and wrr's cursor,
// lblc and lblcr's address cache, twos's random generator. Where the
// kernel moves such state from the control path (rr's cursor on a delete,
// wrr's cw re-derived by ip_vs_wrr_dest_changed), Update appends a small
// record to a log and the worker replays the records it has not seen at
// its next decision, which reproduces the kernel's sequence exactly
// however many Updates came in between. [UpdateSteps] publishes several
// such steps at once with only the last list: a configuration applied
// whole (ipvsadm -R, a rules file) leaves wrr where the kernel's is after
// the same -A and -a lines run one by one.
//
// # Limits
//
//   - The lblc/lblcr cache is preallocated (Options.CacheSize entries,
//     32768 by default, about 1.3 MB per instance); when it is full a new
//     address is scheduled without being cached, as when the kernel's
//     kmalloc fails. lblcr set members come from a pool of two per entry.
//   - lblc/lblcr garbage collection has no timer goroutine: the first
//     decision after one of the kernel timer's firing times (every 60 s
//     from creation, on [Flow.Now] if the worker sets it, else on
//     Options.Clock) does what the missed firings would have done, as of
//     their time: count, a full expiration every 30th, a goal-limited
//     collection above 16384 entries. A pass sweeps at most 8 of the 1024
//     buckets per decision, so it ends up to 128 decisions later; a
//     decision during a full pass already misses the entries it will
//     remove, but one during a goal-limited pass may still find an entry
//     that pass is about to remove. With Flow.Now the firing times start
//     at the first decision rather than at creation.
//   - twos draws from its own generator, not prandom_u32, and multiplies
//     in 64 bits where the kernel's int can overflow: its decisions are
//     random in both, with the same distribution.
//   - mh refuses, as the kernel does, to rebuild for more destinations
//     than table slots; unlike the kernel it then drops the deleted
//     destinations from the old table.
//   - An Update that changes neither the list nor any weight is ignored
//     by wrr and mh. The kernel's wrr restarts its round on every
//     ipvsadm -e, even one that changes only thresholds; a declarative
//     control plane that re-applies its configuration would otherwise
//     restart it every time.
//   - The kernel hashes the destination port instead of the source port
//     for an ICMP error it schedules backwards (ip_vs_iph_inverse); a
//     [Flow] is never one.
//   - dh and sh hash with the current kernels' hash_32 (the top 8 bits of
//     v * 0x61C88647); kernels before about 4.5 took the low 8 bits of
//     v * 2654435761 and place most clients elsewhere.
//   - The hashes follow a 64-bit little-endian kernel (hsiphash is
//     SipHash-1-3 there; a 32-bit kernel computes HalfSipHash and so
//     builds different mh tables).
package sched
