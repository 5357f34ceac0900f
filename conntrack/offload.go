package conntrack

// Flow offload. Once the dataplane hands an established connection's
// frames to the XDP program (bpf/xdp.c, offload), the table no longer sees
// them: the dataplane marks the entry (SetOffloaded) and folds in what the
// program counted (Fold), at batch edges and whenever the table finds the
// entry expired (Options.OffloadRefresh), so that the entry's counters
// and timer are what they would have been had every frame come through
// Update. Removing a marked entry, for any reason, calls
// Options.OffloadReleased, which takes the flow out of the program.

// Offloaded reports whether e's frames may be forwarded without the table.
func (e *Entry) Offloaded() bool { return e.flags&fOffloaded != 0 }

// SetOffloaded marks e as offloaded, or not.
func (t *Table) SetOffloaded(e *Entry, on bool) {
	if on {
		e.flags |= fOffloaded
	} else {
		e.flags &^= fOffloaded
	}
}

// Fold accounts pkts frames of bytes bytes in direction dir that were
// forwarded without the table, the latest at lastSeen (the table's
// clock), as Update would have: the counters grow and the timer restarts
// from lastSeen in the entry's state (offloaded frames carry no SYN, FIN
// or RST, so they do not change it). A timer already later stays.
func (t *Table) Fold(e *Entry, dir Dir, pkts, bytes uint64, lastSeen int64) {
	if pkts == 0 {
		return
	}
	if dir == DirOutput {
		e.outPkts = satAdd32(e.outPkts, pkts)
		e.outBytes += bytes
	} else {
		e.inPkts = satAdd32(e.inPkts, pkts)
		e.inBytes += bytes
	}
	if x := lastSeen + t.tmo[e.state]; x > e.expires {
		e.expires = x
	}
}

func satAdd32(a uint32, b uint64) uint32 {
	if s := uint64(a) + b; s < 1<<32 {
		return uint32(s)
	}
	return ^uint32(0)
}

// refresh asks the dataplane to fold an offloaded entry that looks
// expired.
func (t *Table) refresh(e *Entry, now int64) {
	if t.offRefresh != nil {
		t.offRefresh(e, now)
	}
}
