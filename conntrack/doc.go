// Package conntrack is xlb's connection table: IPVS's ip_vs_conn for a
// userspace dataplane. It maps flows to the real server (sched.Dest)
// chosen for them, runs IPVS's TCP state machine with IPVS's timeouts,
// keeps each destination's active/inactive/persistent counts exact,
// implements persistence templates (-p, -M, port-zero and firewall-mark
// services, expire_quiescent_template) and one-packet scheduling (-o),
// and stays within a fixed amount of memory under floods.
//
// # Ownership
//
// Each dataplane worker owns one Table (a shard) and is the only
// goroutine that calls its packet-path methods: LookupBatch, Lookup, Reuse,
// NewConn, Insert, SetLocal, Update, Remove, Expire. They take no lock and use no atomic
// instruction; a Table is not safe for concurrent use. The NIC's RSS hash
// spreads frames over queues by their tuple, which keeps one direction of
// a flow on one queue but not a NAT or FULLNAT reply (the reverse of the
// translated tuple, not of the client's: symmetric RSS does not help), nor
// one client's connections (persistence templates). The dataplane gives
// such flows one owner worker and hands frames to it (dataplane/owner.go),
// so each flow, its replies and its template live in one shard.
//
// The control plane talks to a table through three channels that never
// make the worker wait:
//
//   - Settings (shared by all tables): timeouts (ipvsadm --set) and the
//     secure_tcp, sloppy_tcp, conn_reuse_mode and expire_quiescent_template sysctls,
//     published as an immutable value behind an atomic pointer and picked
//     up by the worker at its next Expire call.
//   - Stats: the worker publishes its counters at each Expire call
//     through a seqlock of atomic words; Table.Stats retries while a
//     publication is in progress, the worker never blocks.
//   - Dump (ipvsadm -L -c): the reader posts a page request
//     through an atomic pointer; at its next Expire call the worker copies
//     up to max(256, budget) entries into the request's buffer, skipping
//     free entries 64 at a time, and signals a buffered channel; Dumping
//     tells an idle worker to call again within a millisecond. Each entry is copied whole by its owner, so rows are
//     consistent; the listing as a whole is not a point-in-time snapshot
//     (neither is /proc/net/ip_vs_conn).
//
// Per-destination counts live in sched.Dest (atomics, readable anywhere).
//
// # The per-packet path
//
//	now := monotonicNanos()                 // once per batch
//	keys := buildKeys(frames)               // conntrack.Key per frame, IPv4 mapped
//	t.LookupBatch(keys, now, hits)          // forward or NAT reply keys; misses overlap
//	for i, fr := range frames {
//		e, dir := hits[i].Entry, hits[i].Dir
//		if e != nil && dir == conntrack.DirInput && t.Reuse(e, fr.tcpFlags) {
//			e = nil                         // conn_reuse_mode: a SYN on a finished connection
//		}
//		if e == nil {
//			c, v := t.NewConn(svc, &keys[i], fr.tcpFlags, now) // svc: the service the key addressed
//			if c.Dest == nil { drop, or pass to the stack for VerdictNotNew; continue }
//			if e = c.Entry; e == nil { send to c.Dest / c.Port by c.Fwd; continue } // -o, or untracked
//			dir = conntrack.DirInput
//		}
//		t.Update(e, dir, fr.tcpFlags, len(fr.data), now)
//		input: rewrite to e.DestAddr16():e.DestPort() by e.Fwd(); output: back to the client
//	}
//	t.Expire(now, 256)                      // once per batch and per idle loop
//
// Lookup does the same for one key. A *Entry is valid until the next
// call that may remove entries (Lookup, LookupBatch, Reuse, NewConn,
// Insert, Remove, Expire), except that NewConn and Insert never evict
// what the latest LookupBatch returned, so a batch's hits stay valid
// while its misses get entries.
//
// Time is the caller's: int64 nanoseconds from any monotonic origin, read
// once per batch. Nothing here calls time.Now.
//
// # Storage
//
// Entries (128 bytes, no pointers) sit in one array allocated by New and
// never move; a free list recycles them. An open-addressing index of
// uint64 slots (32 bits of hash, entry index, direction bit), sized to a
// power of two holding two keys per entry at a load factor of at most 3/4,
// maps forward keys and NAT reply keys to entries. Linear probing with
// backward-shift deletion keeps probe sequences short under churn without
// tombstones. The hash is a seeded 64×64→128-bit multiply-fold over the
// key's words, with a random seed per table, so an attacker cannot aim
// flows at one probe sequence. A hit touches one index slot and one
// entry; the slot's hash bits filter out almost every non-matching entry
// before its key is compared.
//
// # Expiry
//
// Expire sweeps the entry array incrementally, budget entries per call,
// from where the previous call stopped: no timer per entry, no
// stop-the-world scan, and a cost that is a sequential read per examined
// entry. A bitmap of allocated entries (one bit each, 128 KiB per 10^6)
// lets the sweep and Dump skip free entries 64 at a time, so a table that
// once held 10^6 entries and now holds few costs a pass of its live
// entries plus 16 Ki words, not 10^6 entries. A busy worker sweeps a
// little per batch; an idle one calls Expire for SweepCost in chunks, a
// whole pass twice a second (about 3·10^6 dead entries removed a
// second). Lookup treats an entry past its expiry as gone (and frees it), so
// packets observe timeouts exactly; the sweep bounds how long a dead
// entry keeps memory and destination counts. Templates that still control
// connections are postponed by 60 s, as IPVS does.
//
// # Floods and bounded memory
//
// When the table is full, a new connection evicts the least useful of the
// next EvictProbe entries: expired ones, then handshakes and closed TCP
// connections (SYN_RECV, SYNACK, TIME_WAIT, CLOSE...), then idle templates,
// half-closed connections and UDP flows of at most 8 packets. ESTABLISHED
// connections, busy UDP flows and templates that control connections are
// never evicted. If nothing may be evicted the packet is still forwarded
// to the scheduler's choice without an entry (VerdictUntracked, counted in
// Stats.Full), and for FloodHold TCP segments without SYN that match no
// entry are forwarded the same way (Katran's flood mode): flows on
// consistent-hashing schedulers survive, and memory never grows.
//
// # Differences from IPVS
//
//   - IPVS counts only ESTABLISHED as active in older kernels and also
//     SYN_SENT, SYN_RECV and SYNACK in newer ones; Options.ActivePreEstablished
//     selects the latter.
//   - SCTP has no state machine here: SCTP flows are tracked like UDP.
//     ICMP echo flows get their own state and a 60 s timeout.
//   - expire_nodest_conn, FTP helpers (ip_vs_ftp) and connection
//     synchronisation are not implemented; Remove lets the dataplane drop
//     the entries of a deleted destination. conn_reuse_mode is (Reuse).
package conntrack
