package conntrack

// Evictions returns how many new connections so far found the table full:
// those that evicted a live entry and those forwarded untracked for want
// of one (Stats.Evicted + Stats.Full). Unlike Stats it reads the worker's
// own counters, so only the goroutine that owns t may call it; it is cheap
// enough to call at every batch edge. A dataplane worker watches it to
// tell a SYN flood (the table full of handshakes) from ordinary load.
func (t *Table) Evictions() uint64 { return t.c.Evicted + t.c.Full }
