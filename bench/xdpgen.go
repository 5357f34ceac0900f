//go:build linux

package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"

	"github.com/xlbproject/xlb/testenv"
)

// The xdp generator (-gen xdp) sends the same frames as generate, paced
// the same way, but through BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES:
// the kernel runs a small XDP program Repeat times on a page holding the
// frame, and the program XDP_REDIRECTs it into the client's eth0. The
// frame then reaches the veth's other end as an xdp_frame, with an XDP
// frame's headroom; on a bridge port (the bench's topology) it becomes
// an skb around that page, which keeps the headroom on to the director.
// An XDP program there runs on it without first copying it into a new
// page, which an skb from AF_PACKET needs and a NIC's frame does not.
//
// Each run the program writes the whole frame (flow 0's, from
// immediates: see xdpGenProgram for why), picks the flow from a per-CPU
// counter (flow = counter % flows, counter += step) and writes that
// flow's source address, source port and both checksums, taken from an
// array precomputed with buildFrame.

// xdpFlow is one flow's fields, in network byte order as in the frame.
type xdpFlow struct {
	Saddr   [4]byte
	Sport   [2]byte
	IPCsum  [2]byte
	UDPCsum [2]byte
	_       [2]byte
}

const (
	testXDPLive = 2 // BPF_F_TEST_XDP_LIVE_FRAMES

	// xdpBatch is the most frames one BPF_PROG_RUN sends (Repeat). The
	// kernel runs them in batches of 64, flushing the redirects and
	// running the softirqs they raised (the receiving veth's NAPI, on
	// this CPU) after each, so a larger call is no larger burst at the
	// first ring, only fewer calls: into the sink, two threads pushed
	// 1.1 Mpps with calls of 64 and 1.9 with calls of 256 (2026-12-02,
	// loaded machine).
	xdpBatch = 256
)

// xdpGenProgram builds the program: frame (60 bytes, flow 0's) is
// written whole by immediates, flows and step are immediates, the
// counter and flow maps are the given ones, ifindex the client's eth0.
//
// Every run writes the whole frame, not only the flow's fields: in live
// mode the kernel initialises a page only when its page pool creates
// it, and a page comes back to the pool, for the next run of the same
// call, when the frame's skb is freed, as the dataplane left it. A
// director that rewrote it in place (nft fwd's MACs, ip_forward's TTL, a
// NAT, an XDP program's XDP_TX) returned a frame addressed to a real
// server from the director's MAC: the generator then sent that, the
// bridge learnt the director's MAC on the client's port and dropped
// every later frame for the director (ip-forward and nft delivered
// nothing, and the director was cut off until the entry aged).
func xdpGenProgram(frame []byte, counter, table *ebpf.Map, flows, step, ifindex int) (*ebpf.Program, error) {
	if len(frame) != 60 {
		return nil, fmt.Errorf("generator frame of %d bytes, want 60", len(frame))
	}
	var insns asm.Instructions
	insns = append(insns,
		// r7 = data, bounds check data+60 <= data_end
		asm.LoadMem(asm.R7, asm.R1, 0, asm.Word),
		asm.LoadMem(asm.R3, asm.R1, 4, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R7),
		asm.Add.Imm(asm.R4, 60),
		asm.JGT.Reg(asm.R4, asm.R3, "out"),
	)
	// The frame: 7 double words and a word, stored as the bytes lie in
	// memory.
	for off := 0; off < 56; off += 8 {
		insns = append(insns,
			asm.LoadImm(asm.R1, int64(binary.NativeEndian.Uint64(frame[off:])), asm.DWord),
			asm.StoreMem(asm.R7, int16(off), asm.R1, asm.DWord))
	}
	insns = append(insns,
		asm.Mov.Imm32(asm.R1, int32(binary.NativeEndian.Uint32(frame[56:]))),
		asm.StoreMem(asm.R7, 56, asm.R1, asm.Word),
		// r0 = &counter[0] (this CPU's)
		asm.StoreImm(asm.R10, -4, 0, asm.Word),
	)
	insns = append(insns, lookupOrOut(counter, -4)...)
	insns = append(insns,
		// flow = *r0; *r0 = flow + step; flow %= flows
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Mov.Reg(asm.R2, asm.R1),
		asm.Add.Imm(asm.R2, int32(step)),
		asm.StoreMem(asm.R0, 0, asm.R2, asm.DWord),
		asm.Mod.Imm(asm.R1, int32(flows)),
		asm.StoreMem(asm.R10, -8, asm.R1, asm.Word),
	)
	insns = append(insns, lookupOrOut(table, -8)...)
	insns = append(insns,
		// saddr at 26, sport at 34, IP checksum at 24, UDP checksum at 40
		asm.LoadMem(asm.R1, asm.R0, 0, asm.Word),
		asm.StoreMem(asm.R7, 26, asm.R1, asm.Word),
		asm.LoadMem(asm.R1, asm.R0, 4, asm.Half),
		asm.StoreMem(asm.R7, 34, asm.R1, asm.Half),
		asm.LoadMem(asm.R1, asm.R0, 6, asm.Half),
		asm.StoreMem(asm.R7, 24, asm.R1, asm.Half),
		asm.LoadMem(asm.R1, asm.R0, 8, asm.Half),
		asm.StoreMem(asm.R7, 40, asm.R1, asm.Half),
		asm.Mov.Imm(asm.R1, int32(ifindex)).WithSymbol("out"),
		asm.Mov.Imm(asm.R2, 0),
		asm.FnRedirect.Call(),
		asm.Return(),
	)
	return ebpf.NewProgram(&ebpf.ProgramSpec{Name: "xlb_bench_gen", Type: ebpf.XDP, License: "GPL", Instructions: insns})
}

// lookupOrOut looks up the 4-byte key at r10+off in m: r0 is the value,
// or the program jumps to "out" (the frame sent as it is) if m has none.
func lookupOrOut(m *ebpf.Map, off int16) asm.Instructions {
	return asm.Instructions{
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, int32(off)),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
	}
}

// generateXDP is generate's twin with the xdp generator: same frames,
// flows, pacing, threads and result.
func generateXDP(ctx context.Context, h *testenv.Host, dstMAC net.HardwareAddr, spec genSpec) (genResult, error) {
	if spec.threads < 1 || spec.flows < 1 || spec.first < 0 || spec.first+spec.flows > maxFlows {
		return genResult{}, fmt.Errorf("invalid generator spec: %d threads, %d flows", spec.threads, spec.flows)
	}
	var ifindex int
	if err := h.Do(func() error {
		l, err := net.InterfaceByName(h.Ifname)
		if err != nil {
			return err
		}
		ifindex = l.Index
		return nil
	}); err != nil {
		return genResult{}, err
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return genResult{}, fmt.Errorf("count CPUs: %w", err)
	}
	counter, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return genResult{}, fmt.Errorf("create counter map: %w", err)
	}
	defer counter.Close()
	table, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 12, MaxEntries: uint32(spec.flows)})
	if err != nil {
		return genResult{}, fmt.Errorf("create flow map: %w", err)
	}
	defer table.Close()
	var frame [60]byte
	keys := make([]uint32, spec.flows)
	vals := make([]xdpFlow, spec.flows)
	for i := range vals {
		buildFrame(frame[:], h.MAC, dstMAC, spec.first+i, spec.dst)
		keys[i] = uint32(i)
		copy(vals[i].Saddr[:], frame[26:30])
		copy(vals[i].Sport[:], frame[34:36])
		copy(vals[i].IPCsum[:], frame[24:26])
		copy(vals[i].UDPCsum[:], frame[40:42])
	}
	for off := 0; off < len(keys); off += 4096 {
		end := min(len(keys), off+4096)
		if _, err := table.BatchUpdate(keys[off:end], vals[off:end], nil); err != nil {
			return genResult{}, fmt.Errorf("fill flow map: %w", err)
		}
	}
	// Thread t runs on CPU t % NumCPU and sends flows t, t+threads, ...
	// as generate's does; with more threads than CPUs, threads sharing a
	// CPU share its counter, so the flows are still sent round robin.
	start0 := make([]uint64, ncpu)
	for c := range start0 {
		start0[c] = uint64(c % spec.flows)
	}
	if err := counter.Put(uint32(0), start0); err != nil {
		return genResult{}, fmt.Errorf("set flow counters: %w", err)
	}
	step := min(spec.threads, runtime.NumCPU())
	buildFrame(frame[:], h.MAC, dstMAC, spec.first, spec.dst)
	prog, err := xdpGenProgram(frame[:], counter, table, spec.flows, step, ifindex)
	if err != nil {
		return genResult{}, fmt.Errorf("load generator program: %w", err)
	}
	defer prog.Close()
	unpin, err := pinDispatcher(h, prog)
	if err != nil {
		return genResult{}, err
	}
	defer unpin()
	spec.maxBatch = xdpBatch

	return runThreads(spec, func(t int, start, deadline time.Time, claimed, sent *atomic.Uint64) error {
		// BPF_PROG_RUN resolves the redirect's ifindex in the caller's
		// namespace: the thread stays in h's throughout.
		return h.Do(func() error {
			return xdpGenThread(ctx, prog, frame[:], spec, t, start, deadline, claimed, sent)
		})
	})
}

func xdpGenThread(ctx context.Context, prog *ebpf.Program, frame []byte, spec genSpec, t int,
	start, deadline time.Time, claimed, total *atomic.Uint64) error {
	defer pinThread(t)()
	data := make([]byte, len(frame))
	copy(data, frame)
	opts := ebpf.RunOptions{Data: data, Flags: testXDPLive}
	for {
		b := nextBatch(ctx, spec, start, deadline, claimed)
		if b == 0 {
			return nil
		}
		opts.Repeat = uint32(b)
		// Live mode reports no return value: the test counts what arrives.
		if _, err := prog.Run(&opts); err != nil {
			return fmt.Errorf("run generator program: %w", err)
		}
		total.Add(b)
	}
}

// pinDispatcher attaches prog in native mode to a veth pair of its own
// in h's namespace, which is down and carries nothing, and returns what
// removes the pair. A BPF_PROG_RUN of an XDP program with Repeat > 1
// adds it to the kernel's XDP dispatcher for the call and takes it out
// again (bpf_prog_change_xdp), and each change rewrites the dispatcher's
// code: a text poke with IPIs to every CPU, about 2 ms of CPU per call
// here (perf: __static_call_transform, smp_text_poke_batch_finish),
// which also stalls every XDP program on the machine, the director's
// included. A program the dispatcher already holds is only counted
// once more, so the calls change nothing while the pair holds it.
func pinDispatcher(h *testenv.Host, prog *ebpf.Program) (unpin func(), err error) {
	const name = "xgenpin0"
	var la *netlink.Veth
	if err := h.Do(func() error {
		_ = netlink.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}}) // from a run that was killed
		la = &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, NumTxQueues: 1, NumRxQueues: 1}, PeerName: "xgenpin1"}
		if err := netlink.LinkAdd(la); err != nil {
			return fmt.Errorf("add veth %s: %w", name, err)
		}
		if err := netlink.LinkSetXdpFdWithFlags(la, prog.FD(), nl.XDP_FLAGS_DRV_MODE); err != nil {
			_ = netlink.LinkDel(la)
			return fmt.Errorf("attach generator program to %s: %w", name, err)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return func() { _ = h.Do(func() error { return netlink.LinkDel(la) }) }, nil
}

// passOnPort attaches an XDP program that passes every frame to ifname
// in h, natively: a veth takes frames redirected into its peer only
// with NAPI, which a program turns on without GRO. The program stays
// with the interface until the namespace goes.
func passOnPort(h *testenv.Host, ifname string) error {
	prog, err := testenv.NewXDPPass()
	if err != nil {
		return err
	}
	defer prog.Close()
	return h.Do(func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetXdpFdWithFlags(l, prog.FD(), nl.XDP_FLAGS_DRV_MODE); err != nil {
			return fmt.Errorf("attach xdp pass program to %s: %w", ifname, err)
		}
		return nil
	})
}
