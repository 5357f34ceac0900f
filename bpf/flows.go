//go:build linux

package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Flow offload: the dataplane's worker decides every connection and, once
// it is established, installs its rewrite here; the XDP program then
// rewrites and sends the flow's other frames itself (xdp.c, offload). See
// doc.go.

// FlowKey is a frame's flow as it arrives at the program: source, then
// destination. It mirrors struct flow_key in xdp.c (two svc_keys, 40
// bytes).
type FlowKey struct {
	Src serviceKey
	Dst serviceKey
}

// MakeFlowKey returns the key of frames from src:sport to dst:dport of
// protocol proto, addresses in 16-byte form (IPv4-mapped for IPv4, as in
// packet.Meta and conntrack.Key), ports in host order.
func MakeFlowKey(src [16]byte, sport uint16, dst [16]byte, dport uint16, proto uint8) FlowKey {
	var k FlowKey
	k.Src.Addr, k.Dst.Addr = src, dst
	binary.BigEndian.PutUint16(k.Src.Port[:], sport)
	binary.BigEndian.PutUint16(k.Dst.Port[:], dport)
	k.Src.Proto, k.Dst.Proto = proto, proto
	return k
}

// FlowOp is how the program rewrites an offloaded flow's frames
// (XLB_FLOW_* in xdp.c).
type FlowOp uint32

const (
	FlowDR     FlowOp = 1 // direct routing: next hop's and egress MACs, TTL or hop limit minus one
	FlowNATIn  FlowOp = 2 // NAT, client → real server: as FlowDR, and the destination becomes Addr:Port
	FlowNATOut FlowOp = 3 // NAT, real server → client: as FlowDR, and the source becomes Addr:Port
	FlowTun4   FlowOp = 4 // TUN, ipip: as FlowDR, and an outer IPv4 header SrcAddr → Addr in front (IPv4 only inside)
	FlowTun6   FlowOp = 5 // TUN, ipip: as FlowDR, and an outer IPv6 header SrcAddr → Addr in front (IPv4 or IPv6 inside)
	FlowFNATIn FlowOp = 6 // FULLNAT, client → real server: as FlowDR, the source becomes SrcAddr:SrcPort, the destination Addr:Port
	// FlowFNATOut is FULLNAT's real server → client: as FlowFNATIn, the
	// source becoming the VIP and the destination the client.
	FlowFNATOut FlowOp = 7
)

// FlowFlags qualify an offloaded flow (XLB_FLOW_F_* in xdp.c).
type FlowFlags uint32

// FlowPartial marks a flow whose sender leaves its checksums to the NIC
// (CHECKSUM_PARTIAL: a sender on the same host, TSO on), installed in
// generic mode with the tc companion only. The XDP program passes its
// frames to the companion (pass_partial), which forwards them as it
// forwards the flow's GSO skbs, keeping their partial checksums right;
// on an interface without the companion they go to the worker, which
// completes them.
const FlowPartial FlowFlags = 1

// Flow is an offloaded flow's rewrite and egress, and the counters the
// program keeps for it. It mirrors struct flow_value in xdp.c (104 bytes).
// The dataplane writes DstMAC to Flags; the program only adds to Packets and
// Bytes and stamps LastSeen.
type Flow struct {
	DstMAC, SrcMAC [6]byte
	Ifindex        uint32 // egress: XDP_TX when it is the ingress interface, bpf_redirect otherwise
	MTU            uint32 // egress MTU in IP bytes, 0 for none: larger frames go to the worker
	Dest           uint32 // destination ID, whose DestCounters the program adds to
	Op             FlowOp
	Flags          FlowFlags
	// NAT: the new address (16-byte form, IPv4-mapped) and port, and the
	// folded checksum deltas of the change. FULLNAT: the new destination,
	// and the deltas of both changes. TUN: Addr is the outer destination
	// (the real server).
	Addr    [16]byte
	Port    [2]byte // network byte order
	IPDelta uint16  // the IPv4 header checksum's, for the addresses
	L4Delta uint16  // the TCP or UDP checksum's, for the addresses and ports
	_       uint16
	// FULLNAT: the new source address and port. TUN: SrcAddr is the
	// outer source (modes.Encap.Src).
	SrcAddr  [16]byte
	SrcPort  [2]byte // network byte order
	_        [3]uint16
	Packets  uint64 // frames the program forwarded
	Bytes    uint64 // their frame bytes, Ethernet header included
	LastSeen uint64 // CLOCK_MONOTONIC ns of the latest, at tick resolution (bpf_ktime_get_coarse_ns); 0: none yet
}

// DestCounters are the packets and IP bytes the program forwarded for one
// destination. They mirror struct dest_counters in xdp.c.
type DestCounters struct {
	InPkts, InBytes, OutPkts, OutBytes uint64
}

// errOffloadOff: Load was not asked for flow offload.
var errOffloadOff = errors.New("flow offload is off")

// PutFlow installs or replaces flow k. f's counters are stored as given
// (0 for a new flow). One map syscall; it does not allocate.
func (o *Objects) PutFlow(k *FlowKey, f *Flow) error {
	if o.objs.Flows.MaxEntries() <= 1 {
		return fmt.Errorf("install flow: %w", errOffloadOff)
	}
	if err := o.objs.Flows.Update(k, f, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("install flow: %w", err)
	}
	return nil
}

// PutFlows installs or replaces flows keys[i] → vals[i] in one
// BPF_MAP_UPDATE_BATCH (Linux 5.6), and returns how many it wrote: all
// of them, or, with an error, those before keys[n], the first the kernel
// refused (the batch stops there; the later ones are not tried). vals'
// counters are stored as given. It does not allocate: the slices go to
// the kernel as they are (cilium/ebpf's Map.BatchUpdate marshals structs
// with padding fields through a copy, and boxes the slices each call).
//
// Per flow, on a preallocated map of 2^17 entries (BenchmarkPutFlows,
// root, Linux 6.18, 2 vCPUs, load 4.5, three runs): a PutFlow 3.9-7.4
// µs; in batches of 16 0.64-1.07 µs, of 64 0.53-0.75, of 256 0.41-0.50.
// The syscall's entry and exit, and cilium/ebpf's marshalling, are most
// of a single update's cost.
func (o *Objects) PutFlows(keys []FlowKey, vals []Flow) (int, error) {
	if len(keys) != len(vals) {
		return 0, fmt.Errorf("install flows: %d keys, %d values", len(keys), len(vals))
	}
	if len(keys) == 0 {
		return 0, nil
	}
	if o.objs.Flows.MaxEntries() <= 1 {
		return 0, fmt.Errorf("install flows: %w", errOffloadOff)
	}
	attr := batchAttr{
		keys:   unsafe.Pointer(unsafe.SliceData(keys)),
		values: unsafe.Pointer(unsafe.SliceData(vals)),
		count:  uint32(len(keys)),
		mapFD:  uint32(o.objs.Flows.FD()),
	}
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_MAP_UPDATE_BATCH, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(keys) // read by the kernel through attr
	runtime.KeepAlive(vals)
	n := min(int(attr.count), len(keys)) // the entries written
	if errno != 0 {
		return n, fmt.Errorf("install flows: %w", errno)
	}
	return n, nil
}

// batchAttr is the BPF_MAP_*_BATCH member of union bpf_attr
// (include/uapi/linux/bpf.h), its __aligned_u64 addresses as pointers,
// so that what they point to stays put (64-bit only, as the package).
type batchAttr struct {
	inBatch, outBatch, keys, values unsafe.Pointer
	count, mapFD                    uint32
	elemFlags, flags                uint64
}

// batchAttr is 56 bytes, as the kernel's.
var (
	_ [unsafe.Sizeof(batchAttr{}) - 56]struct{}
	_ [56 - unsafe.Sizeof(batchAttr{})]struct{}
)

// LookupFlow reads flow k into f: its rewrite and the program's counters.
// It returns ebpf.ErrKeyNotExist (wrapped) when k is not installed.
func (o *Objects) LookupFlow(k *FlowKey, f *Flow) error {
	if err := o.objs.Flows.Lookup(k, f); err != nil {
		return fmt.Errorf("look flow up: %w", err)
	}
	return nil
}

// FlowCursor is where a WalkFlows walk of the flows map stands, with the
// walk's buffers; the zero value is its beginning.
type FlowCursor struct {
	c  ebpf.MapBatchCursor
	kb [][unsafe.Sizeof(FlowKey{})]byte // the kernel's output, as FlowKey
	vb [][unsafe.Sizeof(Flow{})]byte    // and Flow
	// ki and vi are kb and vb as interfaces, converted once: a slice
	// converted at each call is an allocation.
	ki, vi any
}

// WalkFlows reads the next flows of the map into keys and vals (as many
// as len(keys), which len(vals) must equal) in one BPF_MAP_LOOKUP_BATCH,
// and returns how many it read; end reports that the walk reached the
// end of the map, cur then being at its beginning again. A flow that is
// in the map for the whole walk is read exactly once; one installed or
// deleted meanwhile may or may not be. The first call of each walk
// allocates the kernel's cursor (a few bytes), and cur's buffers the
// first time. keys must hold at least the largest hash bucket (ENOSPC
// otherwise, wrapped): a few entries.
func (o *Objects) WalkFlows(cur *FlowCursor, keys []FlowKey, vals []Flow) (n int, end bool, err error) {
	if len(keys) != len(vals) {
		return 0, true, fmt.Errorf("walk flows: %d keys, %d values", len(keys), len(vals))
	}
	if len(cur.kb) != len(keys) {
		// Byte arrays go to the kernel as they are; the structs, whose
		// padding fields are unexported, would be marshalled through a
		// copy each call.
		cur.kb, cur.vb = make([][unsafe.Sizeof(FlowKey{})]byte, len(keys)), make([][unsafe.Sizeof(Flow{})]byte, len(keys))
		cur.ki, cur.vi = cur.kb, cur.vb
	}
	n, err = o.objs.Flows.BatchLookup(&cur.c, cur.ki, cur.vi, nil)
	for j := range n {
		// The buffers are 8-byte aligned (make) and both sizes are
		// multiples of 8; TestMirrors holds the layouts to xdp.c's.
		keys[j] = *(*FlowKey)(unsafe.Pointer(&cur.kb[j]))
		vals[j] = *(*Flow)(unsafe.Pointer(&cur.vb[j]))
	}
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		cur.c = ebpf.MapBatchCursor{}
		return n, true, nil
	}
	if err != nil {
		cur.c = ebpf.MapBatchCursor{}
		return 0, true, fmt.Errorf("walk flows: %w", err)
	}
	return n, false, nil
}

// DeleteFlow removes flow k; its next frames go to the worker again. An
// absent flow is not an error.
func (o *Objects) DeleteFlow(k *FlowKey) error {
	if err := o.objs.Flows.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete flow: %w", err)
	}
	return nil
}

// DeleteFlows removes flows keys in one BPF_MAP_DELETE_BATCH (Linux
// 5.6), and returns how many it went through: all of them, or, with an
// error, a count n such that keys[:n] are gone (keys[n:] may or may not
// be: an error the kernel returns before its loop leaves no count). An
// absent flow is not an error, as for DeleteFlow, and does not stop the
// rest: the kernel's batch (generic_map_delete_batch) stops at the first
// key it cannot delete, ENOENT included, and reports the keys before it;
// DeleteFlows goes on after the absent key with one more syscall. It
// does not allocate.
//
// Per flow, on a preallocated map of 2^17 entries (BenchmarkDeleteFlows,
// root, Linux 6.18, 2 vCPUs shared with other work, load 5.3-9, four
// runs): a DeleteFlow 3.1-10.3 µs; in batches of 16 0.26-3.7 µs, of 64
// 0.13-1.03, of 256 0.16-0.66. As for PutFlows, the syscall's entry and
// exit are most of a single delete's cost.
func (o *Objects) DeleteFlows(keys []FlowKey) (int, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	if o.objs.Flows.MaxEntries() <= 1 {
		return 0, fmt.Errorf("delete flows: %w", errOffloadOff)
	}
	fd := uint32(o.objs.Flows.FD())
	done := 0
	// Bounded: each round but the last passes at least one key.
	for done < len(keys) {
		attr := batchAttr{
			keys:  unsafe.Pointer(&keys[done]),
			count: uint32(len(keys) - done),
			mapFD: fd,
		}
		_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_MAP_DELETE_BATCH, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
		if errno == 0 {
			break
		}
		if errno != unix.ENOENT {
			// The count is the kernel's only when its loop ran, which
			// ENOENT proves; otherwise none of this round is known gone.
			runtime.KeepAlive(keys)
			return done, fmt.Errorf("delete flows: %w", errno)
		}
		// keys[done+count] is absent: as good as deleted.
		done += min(int(attr.count), len(keys)-done-1) + 1
	}
	runtime.KeepAlive(keys) // read by the kernel through attr
	return len(keys), nil
}

// DestCounters adds to c what the program forwarded for destination id.
func (o *Objects) DestCounters(id uint32, c *DestCounters) error {
	if int(id) >= o.maxDests {
		return nil
	}
	var v DestCounters
	if mm, err := o.objs.DestStats.Memory(); err == nil {
		// The map is mapped into this process (BPF_F_MMAPABLE, made
		// once and kept by the map): a copy, no syscall.
		var b [32]byte
		if _, err := mm.ReadAt(b[:], int64(id)*int64(len(b))); err != nil {
			return fmt.Errorf("read offload counters of destination %d: %w", id, err)
		}
		v = DestCounters{
			InPkts: binary.NativeEndian.Uint64(b[0:]), InBytes: binary.NativeEndian.Uint64(b[8:]),
			OutPkts: binary.NativeEndian.Uint64(b[16:]), OutBytes: binary.NativeEndian.Uint64(b[24:]),
		}
	} else if err := o.objs.DestStats.Lookup(id, &v); err != nil {
		return fmt.Errorf("read offload counters of destination %d: %w", id, err)
	}
	c.InPkts += v.InPkts
	c.InBytes += v.InBytes
	c.OutPkts += v.OutPkts
	c.OutBytes += v.OutBytes
	return nil
}

// boolByte is b as a C __u8 flag.
func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
