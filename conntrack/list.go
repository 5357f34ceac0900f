package conntrack

import (
	"context"
	"math/bits"
	"net/netip"
)

// dumpPage is how many entries the worker copies per Expire call for a
// Dump at least: 256 × 128 bytes = 32 KiB, a few microseconds of copying.
// An idle worker calls Expire with a larger budget and copies that many.
const dumpPage = 256

// dumpBuf is the size of a Dump's page buffer: what an idle worker copies
// at most per call (480 KiB).
const dumpBuf = 4096

// dumpScanWords bounds how many free 64-entry words the worker skips per
// Expire call while serving a Dump: 128 KiB of bitmap, about 10 µs, which
// covers a 10^6-entry table whatever its history.
const dumpScanWords = 1 << 14

// listRequest is one page of a Dump. The control plane publishes it in
// Table.listReq; the worker takes it (Swap), fills buf, and signals done.
// The channel send/receive orders the worker's writes before the control
// plane's reads.
type listRequest struct {
	buf  []Entry
	n    int    // entries copied into buf
	next uint32 // first entry index to look at; the worker advances it
	end  bool   // no entries past next
	now  int64  // the worker's clock when it copied the page
	done chan struct{}
}

// serveDump is the worker's side: at most one page of up to limit
// entries per call.
func (t *Table) serveDump(now int64, limit int) {
	if t.listReq.Load() == nil {
		return
	}
	r := t.listReq.Swap(nil)
	if r == nil {
		return
	}
	r.n = 0
	i := r.next
	limit = min(limit, len(r.buf))
	for words := 0; i < t.used && r.n < limit && words < dumpScanWords; {
		w := t.bits[i>>6] >> (i & 63)
		if w == 0 {
			i = (i>>6 + 1) << 6
			words++
			continue
		}
		i += uint32(bits.TrailingZeros64(w))
		if e := &t.entries[i]; e.flags&fUsed != 0 {
			r.buf[r.n] = *e
			r.n++
		}
		i++
	}
	r.next = i
	r.end = i >= t.used
	r.now = now
	r.done <- struct{}{}
}

// Dump calls fn for every entry of the table, from the control plane,
// while the worker keeps running: the worker copies one page of entries
// per Expire call and never waits for the reader; Dumping tells an idle
// worker to come back soon for the next page. fn gets a copy and the
// worker's clock at the time of the copy. The listing is consistent per
// entry, not across the table (as /proc/net/ip_vs_conn): a connection
// created while the dump runs may be missed, and one removed and created
// again in another entry may be listed twice. Dump needs
// the worker to call Expire; it returns ctx's error if ctx ends first.
func (t *Table) Dump(ctx context.Context, fn func(e *Entry, now int64) error) error {
	t.dumpMu.Lock()
	defer t.dumpMu.Unlock()
	t.dumping.Add(1)
	defer t.dumping.Add(-1)
	buf := make([]Entry, dumpBuf)
	next := uint32(0)
	for {
		r := &listRequest{buf: buf, next: next, done: make(chan struct{}, 1)}
		t.listReq.Store(r)
		select {
		case <-r.done:
		case <-ctx.Done():
			if t.listReq.CompareAndSwap(r, nil) {
				return ctx.Err()
			}
			<-r.done // the worker took it: wait for its bounded copy
			return ctx.Err()
		}
		for i := range r.buf[:r.n] {
			if err := fn(&r.buf[i], r.now); err != nil {
				return err
			}
		}
		if r.end {
			return nil
		}
		next = r.next
	}
}

// Dumping reports whether a Dump is in progress: an idle worker then
// calls Expire again within a millisecond, not at its usual idle pace, so
// that a listing of many pages finishes quickly.
func (t *Table) Dumping() bool { return t.dumping.Load() != 0 }

// ProtoName is ip_vs_proto_name: the protocol column of ipvsadm -L -c.
func ProtoName(p uint8) string {
	switch p {
	case 0:
		return "IP"
	case ProtoTCP:
		return "TCP"
	case ProtoUDP:
		return "UDP"
	case ProtoSCTP:
		return "SCTP"
	case ProtoICMP:
		return "ICMP"
	case ProtoICMPv6:
		return "ICMPv6"
	}
	return "ERR!"
}

// Row is one connection entry as ipvsadm -L -c lists it (package
// internal/ipvsadm formats it).
type Row struct {
	Proto   uint8
	Expires int64 // seconds left, ≥ 0
	State   State
	Client  netip.AddrPort
	Virtual netip.AddrPort
	Dest    netip.AddrPort
	DestID  uint32
	Fwd     uint8
	// Template marks persistence templates.
	Template                           bool
	InPkts, OutPkts, InBytes, OutBytes uint64
}

// RowOf converts a dumped entry, given the worker's clock, into a Row.
func RowOf(e *Entry, now int64) Row {
	left := e.expires - now
	if left < 0 {
		left = 0
	}
	r := Row{
		Proto:    e.key.Proto,
		Expires:  left / 1e9,
		State:    e.state,
		Client:   e.Client(),
		Virtual:  e.Virtual(),
		Dest:     e.Dest(),
		DestID:   e.dest,
		Fwd:      e.fwd,
		Template: e.flags&fTemplate != 0,
	}
	r.InPkts, r.OutPkts, r.InBytes, r.OutBytes = e.Counters()
	return r
}
