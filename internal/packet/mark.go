package packet

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
)

// MaxMarkRanges is how many port ranges one prefix of the mark classifier
// holds, its own and those of the shorter prefixes that contain it:
// XLB_MARK_RANGES in bpf/xdp.c, whose loop over them the verifier bounds.
const MaxMarkRanges = 16

// MarkRule gives TCP or UDP frames to an address in Prefix and a port in
// PortLo..PortHi the firewall mark Mark (`xlb mark add`).
type MarkRule struct {
	Mark           uint32
	Proto          uint8        // ProtoTCP or ProtoUDP
	Prefix         netip.Prefix // masked, IPv4 or IPv6
	PortLo, PortHi uint16
}

// MarkRange is one port range of a MarkEntry and the mark it gives.
type MarkRange struct {
	Lo, Hi uint16
	Mark   uint32
}

// MarkEntry is one prefix of the classifier as the XDP program's LPM trie
// holds it: its own rules' ranges, then those of every shorter prefix that
// contains it, longest first. An LPM trie finds only the longest prefix
// holding an address; folding the shorter prefixes' ranges into it makes
// its first matching range the most specific rule's.
type MarkEntry struct {
	Proto  uint8
	Prefix netip.Prefix
	Ranges []MarkRange
}

// MarkTable classifies frames into firewall marks exactly as bpf/xdp.c's
// mark_of does: the longest prefix entry that holds the destination
// address (and no shorter one), then its first range that holds the
// destination port. Built once per configuration; Classify does not
// allocate. Safe for concurrent reads.
type MarkTable struct {
	entries []MarkEntry
	index   map[markKey]int
	// lens are the prefix lengths present, longest first, by protocol
	// (lenIndex) and family (1 for IPv4): IPv4 lengths count from the
	// IPv4-mapped address's bit 96.
	lens [2][2][]int
}

type markKey struct {
	addr  [16]byte // masked, IPv4-mapped for IPv4
	bits  uint8    // of the 128-bit form
	proto uint8
	v4    bool
}

// lenIndex is TCP's or UDP's index in MarkTable.lens.
func lenIndex(proto uint8) int {
	if proto == ProtoUDP {
		return 1
	}
	return 0
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// NewMarkTable builds the table of rules, which must be valid (as
// ipvs.Config.AddMarks checks): it fails only when a prefix would hold
// more than MaxMarkRanges ranges.
func NewMarkTable(rules []MarkRule) (*MarkTable, error) {
	t := &MarkTable{index: map[markKey]int{}}
	for _, r := range rules {
		k := keyOf(r.Proto, r.Prefix)
		i, ok := t.index[k]
		if !ok {
			i = len(t.entries)
			t.index[k] = i
			t.entries = append(t.entries, MarkEntry{Proto: r.Proto, Prefix: r.Prefix})
			if r.Proto != ProtoTCP && r.Proto != ProtoUDP {
				return nil, fmt.Errorf("mark rules: prefix %v: protocol %d: must be TCP or UDP", r.Prefix, r.Proto)
			}
			l := &t.lens[lenIndex(r.Proto)][b2i(r.Prefix.Addr().Is4())]
			if !slices.Contains(*l, int(k.bits)) {
				*l = append(*l, int(k.bits))
			}
		}
		t.entries[i].Ranges = append(t.entries[i].Ranges, MarkRange{Lo: r.PortLo, Hi: r.PortHi, Mark: r.Mark})
	}
	for i := range t.lens {
		for _, l := range t.lens[i] {
			slices.SortFunc(l, func(a, b int) int { return cmp.Compare(b, a) })
		}
	}
	own := make([][]MarkRange, len(t.entries))
	for i := range t.entries {
		slices.SortFunc(t.entries[i].Ranges, func(a, b MarkRange) int { return cmp.Compare(a.Lo, b.Lo) })
		own[i] = t.entries[i].Ranges
	}
	for i := range t.entries {
		e := &t.entries[i]
		e.Ranges = slices.Clone(own[i])
		// The containing prefixes, longest first.
		var outer []int
		for j, o := range t.entries {
			if j != i && o.Proto == e.Proto && o.Prefix.Addr().Is4() == e.Prefix.Addr().Is4() &&
				o.Prefix.Bits() < e.Prefix.Bits() && o.Prefix.Contains(e.Prefix.Addr()) {
				outer = append(outer, j)
			}
		}
		slices.SortFunc(outer, func(a, b int) int { return cmp.Compare(t.entries[b].Prefix.Bits(), t.entries[a].Prefix.Bits()) })
		for _, j := range outer {
			e.Ranges = append(e.Ranges, own[j]...)
		}
		if len(e.Ranges) > MaxMarkRanges {
			return nil, fmt.Errorf("mark rules: prefix %v: %d port ranges with those of the prefixes that contain it, at most %d",
				e.Prefix, len(e.Ranges), MaxMarkRanges)
		}
	}
	return t, nil
}

func keyOf(proto uint8, p netip.Prefix) markKey {
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	return markKey{addr: maskAddr(p.Addr().As16(), bits), bits: uint8(bits), proto: proto, v4: p.Addr().Is4()}
}

// maskAddr keeps the first bits bits of a.
func maskAddr(a [16]byte, bits int) [16]byte {
	for i := range a {
		switch {
		case bits >= 8:
			bits -= 8
		case bits > 0:
			a[i] &= ^byte(0) << (8 - bits)
			bits = 0
		default:
			a[i] = 0
		}
	}
	return a
}

// Entries are the table's prefixes, for the XDP program's trie.
func (t *MarkTable) Entries() []MarkEntry { return t.entries }

// Len is the number of prefixes.
func (t *MarkTable) Len() int { return len(t.entries) }

// IsMapped reports whether a, in the 16-byte form of Meta, is an IPv4
// address: ::ffff:0:0/96, the test xdp.c makes.
func IsMapped(a *[16]byte) bool {
	return a[0]|a[1]|a[2]|a[3]|a[4]|a[5]|a[6]|a[7]|a[8]|a[9] == 0 && a[10] == 0xff && a[11] == 0xff
}

// Classify returns the mark of a frame of protocol proto to dst:port, or
// false when no rule gives it one.
func (t *MarkTable) Classify(proto uint8, dst *[16]byte, port uint16) (uint32, bool) {
	if t == nil || len(t.entries) == 0 || proto != ProtoTCP && proto != ProtoUDP {
		return 0, false
	}
	v4 := IsMapped(dst)
	for _, bits := range t.lens[lenIndex(proto)][b2i(v4)] {
		i, ok := t.index[markKey{addr: maskAddr(*dst, bits), bits: uint8(bits), proto: proto, v4: v4}]
		if !ok {
			continue
		}
		for _, r := range t.entries[i].Ranges {
			if port >= r.Lo && port <= r.Hi {
				return r.Mark, true
			}
		}
		return 0, false // the longest prefix decides, as the trie's lookup does
	}
	return 0, false
}
