package dataplane

import (
	"sync/atomic"

	"github.com/xlbproject/xlb/internal/packet"
	"github.com/xlbproject/xlb/modes"
)

// Counter names a worker event that is counted.
type Counter uint8

const (
	RxFrames      Counter = iota // frames taken from the RX ring
	TxFrames                     // frames put on the TX ring
	Malformed                    // frames the parser refused (see Reasons)
	NoService                    // parsed, but no virtual service matches
	NoDest                       // the scheduler found no destination
	NotNew                       // TCP without SYN and without a connection entry
	NoNeighbour                  // dropped: destination's MAC unresolved (held too long, or no room to hold it)
	ConnHit                      // frame matched a connection entry
	ConnNew                      // new connection scheduled
	TxBacklog                    // frames waiting for room on the TX ring (a level, not a count)
	BadDesc                      // RX descriptor outside the UMEM
	KickErrors                   // sendto(2) on the socket failed
	Held                         // frames held while their destination's MAC was resolved
	HeldSent                     // held frames sent once it resolved
	HoldExpired                  // held frames dropped after holdTimeout (also in NoNeighbour)
	HoldFull                     // frames not held: per-destination or per-worker hold full (also in NoNeighbour)
	LinkDown                     // sendto(2) refused with ENETDOWN: the interface is down
	ReplyHit                     // frame from a real server matched a connection's reply key (NAT, FULLNAT)
	NoLocalPort                  // FULLNAT: no local address or port free for a new connection
	CsumCompleted                // L4 checksum left to the NIC (CHECKSUM_PARTIAL) completed before forwarding
	TooBigSent                   // frame exceeded the egress MTU: ICMP too-big sent to its sender
	TTLExceeded                  // TTL or hop limit ran out: ICMP time exceeded sent
	XmitDropped                  // the rewrite refused the frame (see Verdicts)
	SYNLevel                     // the worker's pressure level, bpf.SYNLevel (a level, summed over workers)
	SYNRaises                    // times a worker raised its pressure level
	SYNErrors                    // failed updates of the XDP program's syn_guard map
	Copied                       // frames copied to another interface's UMEM (no shared UMEM)
	CopyNoFrame                  // dropped: no free frame in the egress interface's UMEM to copy into
	ICMPForwarded                // ICMP error about a connection forwarded to its other party (modes.XmitICMP)
	ICMPNoConn                   // ICMP error steered by XDP whose quoted flow matches no connection: dropped
	LocalInjected                // frame of a connection to a Local destination written to the local delivery tap
	LocalDropped                 // dropped: no local delivery tap, or writing to it failed
	NodestExpired                // dropped: its connection's real server was removed and expire_nodest_conn expired it
	HandedOff                    // frames copied to the hand-off ring of the worker that owns their flow (owner.go)
	HandoffFull                  // dropped: the owner's hand-off ring was full
	HandoffRx                    // frames other workers handed to this one, forwarded here
	HandoffNoMem                 // dropped: a handed-off frame found no free UMEM frame at its owner
	FillPosted                   // frames posted to the fill rings (UMEM frames handed to the kernel to receive into)
	Completed                    // frames taken back from the completion rings (transmitted by the kernel)

	// Connection sync (sync.go).
	SyncExported      // records written to the export ring
	SyncExportDropped // records dropped: the export ring was full
	SyncInstalled     // entries created from a master's records
	SyncUpdated       // existing entries updated from a master's records
	SyncNoService     // record dropped: no such virtual service here
	SyncNoDest        // record dropped: no such real server in the service
	SyncInstallFull   // record dropped: the owner worker's install ring was full
	SyncBad           // record dropped: malformed or not installable (protocol, state, family, PE data)
	SyncNoLocal       // record dropped: FULLNAT local address or port not configured, or in use, here
	SyncTableFull     // record dropped: the connection table was full
	SyncStale         // record ignored: inactive news of a connection since moved to another real server

	// Flow offload (offload.go).
	OffloadInstalled // flow directions written into the XDP program's flows map
	OffloadRemoved   // flows taken out of the program
	OffloadErrors    // failed flows-map operations: installs not written (map full), deletes, lookups

	numCounters
)

var counterNames = [numCounters]string{
	"rx_frames", "tx_frames", "malformed", "no_service", "no_dest", "not_new", "no_neighbour",
	"conn_hit", "conn_new", "tx_backlog", "bad_desc", "kick_errors",
	"held", "held_sent", "hold_expired", "hold_full", "link_down",
	"reply_hit", "no_local_port", "csum_completed", "too_big_sent", "ttl_exceeded", "xmit_dropped",
	"syn_guard_level", "syn_guard_raises", "syn_guard_errors",
	"copied", "copy_no_frame",
	"icmp_forwarded", "icmp_no_conn",
	"local_injected", "local_dropped",
	"nodest_expired",
	"handed_off", "handoff_full", "handoff_rx", "handoff_no_frame",
	"fill_posted", "completed",
	"sync_exported", "sync_export_dropped", "sync_installed", "sync_updated",
	"sync_no_service", "sync_no_dest", "sync_install_full", "sync_bad_record", "sync_no_local", "sync_table_full", "sync_stale",
	"offload_installed", "offload_removed", "offload_errors",
}

func (c Counter) String() string {
	if c < numCounters {
		return counterNames[c]
	}
	return "counter(?)"
}

// counters are a worker's event counts. The worker increments the plain
// arrays (owned by it, no atomics per frame) and publishes them once per
// batch into the atomic copies that Stats reads from other goroutines:
// its Counters, and the malformed frames by parser reason and the frames
// the rewrite refused by verdict (the detail of Malformed and
// XmitDropped).
type counters struct {
	local     [numCounters]uint64
	published [numCounters]atomic.Uint64
	malformed [packet.NumReasons]atomic.Uint64
	rewrite   [modes.NumVerdicts]atomic.Uint64
}

func (c *counters) publish(reasons *[packet.NumReasons]uint64, verdicts *[modes.NumVerdicts]uint64) {
	store(c.published[:], c.local[:])
	store(c.malformed[:], reasons[:])
	store(c.rewrite[:], verdicts[:])
}

// store publishes local into pub, skipping the words that did not
// change (a store dirties the reader's cache line).
func store(pub []atomic.Uint64, local []uint64) {
	for i := range local {
		if pub[i].Load() != local[i] {
			pub[i].Store(local[i])
		}
	}
}

// snapshot copies the published counters into q.
func (c *counters) snapshot(q *QueueStats) {
	for i := range c.published {
		q.Counters[i] = c.published[i].Load()
	}
	for i := range c.malformed {
		q.Malformed[i] = c.malformed[i].Load()
	}
	for i := range c.rewrite {
		q.Rewrite[i] = c.rewrite[i].Load()
	}
}
