package conntrack

import (
	"runtime"
	"sync/atomic"
	"unsafe"
)

// Stats are a table's counters. The worker keeps them in plain memory and
// publishes a copy at every Expire call; Table.Stats reads that copy from
// any goroutine.
type Stats struct {
	Entries   uint64 // entries in use now (connections and templates)
	Templates uint64 // of which persistence templates

	Created          uint64 // connection entries created
	TemplatesCreated uint64 // persistence templates created
	Expired          uint64 // entries removed because their timer ran out
	Evicted          uint64 // live entries evicted to make room for a new connection
	// Full counts new connections (or templates) for which the table
	// had no free entry and nothing it may evict; their flows are
	// forwarded without an entry.
	Full uint64
	// Untracked counts flows forwarded to a destination without an
	// entry: Full ones and, while flooded, TCP segments without SYN.
	Untracked uint64
	OnePacket uint64 // one-packet scheduling (-o) decisions
	NoDest    uint64 // new connections for which the scheduler had no destination
	// NotNew counts TCP segments without SYN (or with RST) that matched
	// no entry and were not scheduled (IPVS lets them through to the
	// local stack).
	NotNew uint64
	// ReplyCollisions counts NAT entries whose reply key another entry
	// already had: their replies find that other entry.
	ReplyCollisions uint64
	// TemplatesInvalidated counts templates found with an unavailable or
	// (expire_quiescent_template) quiesced destination.
	TemplatesInvalidated uint64
	// Reused counts finished connections removed by Reuse because a SYN
	// opened a new one on the same ports (conn_reuse_mode).
	Reused uint64
}

const numStats = int(unsafe.Sizeof(Stats{}) / 8)

func (s *Stats) words() *[numStats]uint64 { return (*[numStats]uint64)(unsafe.Pointer(s)) }

// published is a seqlock over a copy of Stats. The worker is the only
// writer and never waits: it makes seq odd, stores the words, makes seq
// even. A reader retries while seq is odd or changed under it. Every word
// is an atomic, so the protocol is race-free in the Go memory model (a
// seqlock over plain words would be a data race).
type published struct {
	seq atomic.Uint64
	w   [numStats]atomic.Uint64
}

func (t *Table) publish() {
	t.c.Entries = uint64(t.live)
	t.c.Templates = uint64(t.tmpl)
	w := t.c.words()
	// An atomic store is an XCHG on amd64 (~20 cycles): 17 a batch, ~5
	// ns a frame, when every word was stored at every Expire. A batch of
	// established flows changes none, so compare first (loads are plain
	// moves) and write only the words that changed, inside the seqlock.
	i := 0
	for i < len(w) && t.pub.w[i].Load() == w[i] {
		i++
	}
	if i == len(w) {
		return
	}
	seq := t.pub.seq.Load()
	t.pub.seq.Store(seq + 1)
	for ; i < len(w); i++ {
		if t.pub.w[i].Load() != w[i] {
			t.pub.w[i].Store(w[i])
		}
	}
	t.pub.seq.Store(seq + 2)
}

// Stats returns the counters as of the worker's last Expire call. Safe
// for concurrent use; it never blocks the worker.
func (t *Table) Stats() Stats {
	var s Stats
	w := s.words()
	for spins := 0; ; spins++ {
		seq := t.pub.seq.Load()
		if seq&1 == 0 {
			for i := range w {
				w[i] = t.pub.w[i].Load()
			}
			if t.pub.seq.Load() == seq {
				return s
			}
		}
		if spins > 16 {
			runtime.Gosched()
		}
	}
}
