package dataplane

import "sync/atomic"

// Counter names a worker event that is counted.
type Counter uint8

const (
	RxFrames    Counter = iota // frames taken from the RX ring
	TxFrames                   // frames put on the TX ring
	Malformed                  // frames the parser refused (see Reasons)
	NoService                  // parsed, but no virtual service matches
	NoDest                     // the scheduler found no destination
	NotNew                     // TCP without SYN and without a connection entry
	NoNeighbour                // destination's MAC not resolved yet
	ConnHit                    // frame matched a connection entry
	ConnNew                    // new connection scheduled
	TxBacklog                  // frames waiting for room on the TX ring (a level, not a count)
	BadDesc                    // RX descriptor outside the UMEM
	KickErrors                 // sendto(2) on the socket failed
	SYNLevel                   // the worker's pressure level, bpf.SYNLevel (a level, summed over workers)
	SYNRaises                  // times a worker raised its pressure level
	SYNErrors                  // failed updates of the XDP program's syn_guard map
	numCounters
)

var counterNames = [numCounters]string{
	"rx_frames", "tx_frames", "malformed", "no_service", "no_dest", "not_new", "no_neighbour",
	"conn_hit", "conn_new", "tx_backlog", "bad_desc", "kick_errors",
	"syn_guard_level", "syn_guard_raises", "syn_guard_errors",
}

func (c Counter) String() string {
	if c < numCounters {
		return counterNames[c]
	}
	return "counter(?)"
}

// counters are a worker's event counts. The worker increments the plain
// array (owned by it, no atomics per frame) and publishes it once per
// batch into the atomic copy that Stats reads from other goroutines.
type counters struct {
	local     [numCounters]uint64
	published [numCounters]atomic.Uint64
}

func (c *counters) publish() {
	for i := range c.local {
		if c.published[i].Load() != c.local[i] {
			c.published[i].Store(c.local[i])
		}
	}
}

func (c *counters) snapshot(out *[numCounters]uint64) {
	for i := range c.published {
		out[i] += c.published[i].Load()
	}
}
