//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/internal/packet"
)

// markRanges is XLB_MARK_RANGES in xdp.c.
const markRanges = 16

// markKey mirrors struct mark_key in xdp.c.
type markKey struct {
	Prefixlen uint32 // 16 + 96 + /n for IPv4, 16 + /n for IPv6
	Proto     uint8
	Family    uint8 // 4 or 6
	Addr      [16]byte
	Pad       [2]byte
}

// markRange mirrors struct mark_range in xdp.c.
type markRange struct {
	Lo, Hi uint16
	Mark   uint32
}

// markValue mirrors struct mark_value in xdp.c.
type markValue struct {
	N uint32
	R [markRanges]markRange
}

// markServiceKey mirrors struct mark_svc_key in xdp.c.
type markServiceKey struct {
	Mark uint32
	V6   uint32
}

func init() {
	if markRanges != packet.MaxMarkRanges {
		panic("bpf: markRanges differs from packet.MaxMarkRanges")
	}
}

func markKeyOf(e *packet.MarkEntry) markKey {
	k := markKey{Proto: e.Proto, Family: 6, Addr: e.Prefix.Addr().As16()}
	k.Prefixlen = 16 + uint32(e.Prefix.Bits())
	if e.Prefix.Addr().Is4() {
		k.Family = 4
		k.Prefixlen += 96
	}
	return k
}

// SetMarks makes the firewall-mark classifier hold exactly t's prefixes
// (nil for none): changed and new entries are written first, then those
// no longer wanted are deleted. Each entry changes atomically; a frame
// classified during the change sees each prefix either before or after.
func (o *Objects) SetMarks(t *packet.MarkTable) error {
	want := map[markKey]markValue{}
	if t != nil {
		for _, e := range t.Entries() {
			if len(e.Ranges) > markRanges {
				return fmt.Errorf("set marks: prefix %v: %d port ranges, at most %d", e.Prefix, len(e.Ranges), markRanges)
			}
			var v markValue
			v.N = uint32(len(e.Ranges))
			for i, r := range e.Ranges {
				v.R[i] = markRange{Lo: r.Lo, Hi: r.Hi, Mark: r.Mark}
			}
			want[markKeyOf(&e)] = v
		}
	}
	if n, limit := len(want), int(o.objs.Marks.MaxEntries()); n > limit {
		return fmt.Errorf("set marks: too many prefixes (limit %d): %d given", limit, n)
	}
	var stale []markKey
	var k markKey
	var v markValue
	it := o.objs.Marks.Iterate()
	for it.Next(&k, &v) {
		if w, ok := want[k]; !ok {
			stale = append(stale, k)
		} else if w == v {
			delete(want, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("set marks: read: %w", err)
	}
	for k, v := range want {
		if err := o.objs.Marks.Update(&k, &v, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("set marks: prefix of family %d /%d: %w", k.Family, k.Prefixlen, err)
		}
	}
	// The count after the new entries are in and before the old ones go:
	// 0 turns the trie off before it empties, and a first rule is found
	// as soon as the count says so.
	total := uint32(0)
	if t != nil {
		total = uint32(t.Len())
	}
	if err := o.objs.MarkPrefixes.Update(uint32(0), total, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("set marks: count: %w", err)
	}
	for _, k := range stale {
		if err := o.objs.Marks.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("set marks: delete: %w", err)
		}
	}
	return nil
}

// MarkPrefixes lists the classifier's prefixes by protocol, for tests and
// diagnostics.
func (o *Objects) MarkPrefixes() (map[netip.Prefix][]packet.MarkRange, error) {
	out := map[netip.Prefix][]packet.MarkRange{}
	var k markKey
	var v markValue
	it := o.objs.Marks.Iterate()
	for it.Next(&k, &v) {
		bits := int(k.Prefixlen) - 16
		a := netip.AddrFrom16(k.Addr)
		if k.Family == 4 {
			a, bits = a.Unmap(), bits-96
		}
		p := netip.PrefixFrom(a, bits)
		for _, r := range v.R[:min(v.N, markRanges)] {
			out[p] = append(out[p], packet.MarkRange{Lo: r.Lo, Hi: r.Hi, Mark: r.Mark})
		}
	}
	return out, it.Err()
}

func markServiceKeyOf(mark uint32, v6 bool) (markServiceKey, error) {
	if mark == 0 {
		return markServiceKey{}, errors.New("invalid mark 0: must be 1-4294967295")
	}
	k := markServiceKey{Mark: mark}
	if v6 {
		k.V6 = 1
	}
	return k, nil
}

// AddMarkService steers frames that the classifier gives mark (IPv6 ones
// if v6) to the AF_XDP sockets, before any address and port service: the
// firewall-mark service -f mark (-6 -f mark). Adding it again replaces id
// and ends its draining.
func (o *Objects) AddMarkService(mark uint32, v6 bool, id uint32) error {
	k, err := markServiceKeyOf(mark, v6)
	if err != nil {
		return fmt.Errorf("add fwmark service: %w", err)
	}
	if err := o.objs.MarkServices.Update(&k, &serviceValue{ID: id}, ebpf.UpdateAny); err != nil {
		if errors.Is(err, unix.E2BIG) {
			return fmt.Errorf("add fwmark service %d: too many services (limit %d): %w", mark, o.objs.MarkServices.MaxEntries(), err)
		}
		return fmt.Errorf("add fwmark service %d: %w", mark, err)
	}
	return nil
}

// DrainMarkService is DrainService for a firewall-mark service: its SYNs
// are looked up by address and port instead.
func (o *Objects) DrainMarkService(mark uint32, v6 bool, id uint32) error {
	k, err := markServiceKeyOf(mark, v6)
	if err != nil {
		return fmt.Errorf("drain fwmark service: %w", err)
	}
	if err := o.objs.MarkServices.Update(&k, &serviceValue{ID: id, Flags: svcDraining}, ebpf.UpdateExist); err != nil {
		return fmt.Errorf("drain fwmark service %d: %w", mark, err)
	}
	return nil
}

// DeleteMarkService stops steering frames of mark. The error wraps
// ebpf.ErrKeyNotExist if there is no such service.
func (o *Objects) DeleteMarkService(mark uint32, v6 bool) error {
	k, err := markServiceKeyOf(mark, v6)
	if err != nil {
		return fmt.Errorf("delete fwmark service: %w", err)
	}
	if err := o.objs.MarkServices.Delete(&k); err != nil {
		return fmt.Errorf("delete fwmark service %d: %w", mark, err)
	}
	return nil
}
