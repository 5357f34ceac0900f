// Package laddr allocates FULLNAT local ports: the source address and port
// a FULLNAT connection leaves the director from, toward its real server.
// It is DPVS's sa_pool for xlb's workers.
//
// # What must hold
//
// Replies come back from the real server to the local address and port,
// and the dataplane finds the connection through that reply key (real
// server address and port → local address and port, protocol). So a
// local port may be given to two live connections only if their real
// servers differ. A Pool guarantees it: a port is handed out once and not
// again until it is released (when its connection expires). When no port
// is free the allocation fails and is counted; the caller drops the SYN.
// It never wraps onto a port in use, as LVS's trial loop could be made
// to.
//
// # Shares
//
// Every worker has its own Pool, and the ports of the range (1025..65535
// by default, DPVS's DEF_MIN_PORT..DEF_MAX_PORT) are dealt out by their
// low bits: worker w of n owns the ports p with p % n == w. A worker takes
// no lock to allocate, and the owner of a reply is its destination port
// (Owner). When n is a power of two that is p & (n-1) == w, a port mask an
// ethtool ntuple rule or an XDP program can match to steer replies to the
// allocating worker's queue; DPVS partitions the same way, by the low
// bits, because a range per worker would leave the workers owning the
// ports under a lower limit with fewer of them.
//
// # Buckets
//
// Each address's ports form Options.Buckets sub-pools, and a real server
// (address and port) always uses the same one, chosen by a hash. A port is
// unique within its sub-pool, which is enough for the reply key to be
// unique.
//
//   - With 1 bucket (the default) ports are unique per local address,
//     whatever the real server: the simplest pool and trivially
//     collision-free, but it caps the concurrent connections per local
//     address and worker at the worker's share, 64511/n ports. Add local
//     addresses to go beyond.
//   - With b buckets (DPVS's sa_pool_hash_size, 16 by default there, 128
//     at most), real servers in different buckets reuse the same ports,
//     so an address carries up to b times the share, if the real servers
//     spread over the buckets; one real server still gets at most the
//     share. Memory grows b times.
//
// Protocols share the pool: a TCP and a UDP connection never get the same
// port even where their reply keys would differ, which costs nothing
// unless both exhaust it.
//
// # Memory and cost
//
// A bucket is a FIFO ring of its free ports (2 bytes a port) and a bitmap
// of those in use (1 bit a port), allocated when the address is added
// (SetAddrs), never on the packet path. An address costs
// buckets × share × 2.125 bytes per worker, so buckets × 137 KB over all
// workers: 8 addresses with 1 bucket are 1.1 MB, with 16 buckets 17.5 MB.
// Alloc and Release are O(1) and allocate nothing. FIFO order reuses a
// released port last, which gives the real server's TIME_WAIT for the old
// connection the longest time to end (share / connection rate: 64511
// ports at 10,000 new connections a second are 6.4 s).
//
// # Ownership
//
// A Pool belongs to one worker and is not safe for concurrent use. The
// worker calls SetAddrs at a batch edge when the configuration changes
// (it may allocate), Alloc when it binds a FULLNAT connection and Release
// when the connection's entry goes. A local address removed from the
// configuration drains: it gives no new ports but takes its ports back,
// and its memory goes when the last one is back.
package laddr
