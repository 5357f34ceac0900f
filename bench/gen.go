//go:build linux

package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/testenv"
)

// The generator is the bench's own: one AF_PACKET socket per thread in
// the client's namespace (PACKET_QDISC_BYPASS, as trafgen does), frames
// built in place and sent 64 at a time with sendmmsg(2), each thread
// pinned to its own CPU. trafgen's --rate sends one frame per system
// call and tops out near 0.35 Mpps per process here, below what the
// dataplanes forward, so the paced steps of the rate search need a
// generator that batches. A thread sleeps whenever it is ahead of its
// schedule, so at a fixed offered rate it spends CPU only on sending,
// which the CPU-per-packet figures count.

const genBatch = 64

// genSpec describes one burst of traffic: frames of 60 bytes (64 on a
// wire) from the client to dst:port over flows flows, sent round robin
// over the flows by threads threads.
type genSpec struct {
	flows   int
	rate    float64 // frames per second over all threads; 0: as fast as possible
	count   uint64  // frames to send in all
	threads int
	limit   time.Duration // stops earlier than count if it takes longer
	dst     netip.AddrPort
	first   int // flows are first .. first+flows-1 (flowSource's numbering)
	// maxBatch is the most frames a thread sends per call, 0 for
	// genBatch (the xdp generator's calls take xdpBatch).
	maxBatch int
}

// batch is how many frames a thread sends per call (a sendmmsg, a
// BPF_PROG_RUN): maxBatch (genBatch by default), or at a low rate as many
// as are due per millisecond (one at 1k pps), so that a trickle is a
// trickle and not a burst of 64 every 64 ms.
func (s genSpec) batch() uint64 {
	most := genBatch
	if s.maxBatch > 0 {
		most = s.maxBatch
	}
	if s.rate <= 0 {
		return uint64(most)
	}
	return uint64(min(most, max(1, int(s.rate/1000))))
}

type genResult struct {
	sent    uint64
	elapsed time.Duration
}

func (r genResult) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.sent) / r.elapsed.Seconds()
}

// maxFlows is what flowSource can address: 64512 source ports on each
// of 81 source addresses.
const maxFlows = 81 * 64512

// flowSource is flow i's source: the client's address and ports
// 1024..65535 first, then 198.18.0.120..199 (unused by the topology,
// on the client's subnet, so every dataplane's reverse-path check
// passes), each with the same ports.
func flowSource(i int) (netip.Addr, uint16) {
	a, p := i/64512, uint16(1024+i%64512)
	if a == 0 {
		return testenv.ClientAddr, p
	}
	return netip.AddrFrom4([4]byte{198, 18, 0, byte(119 + a)}), p
}

// buildFrame writes flow i's frame into f (60 bytes), checksums included.
func buildFrame(f []byte, src, dst net.HardwareAddr, i int, to netip.AddrPort) {
	saddr, sport := flowSource(i)
	copy(f[0:6], dst)
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0], ip[1] = 0x45, 0
	binary.BigEndian.PutUint16(ip[2:], 46)
	binary.BigEndian.PutUint16(ip[4:], 0)
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
	ip[8], ip[9] = 64, 17
	ip[10], ip[11] = 0, 0
	s4, d4 := saddr.As4(), to.Addr().As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:], csumFold(csumAdd(0, ip)))
	udp := f[34:60]
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], to.Port())
	binary.BigEndian.PutUint16(udp[4:], 26)
	udp[6], udp[7] = 0, 0
	for j := 8; j < 26; j++ {
		udp[j] = 0
	}
	sum := csumAdd(0, ip[12:20]) + 17 + 26
	c := csumFold(csumAdd(sum, udp))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:], c)
}

func csumAdd(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

func csumFold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// generate sends spec's traffic from h's eth0 to the director's MAC and
// returns when it is sent, the time limit passed or ctx ended.
func generate(ctx context.Context, h *testenv.Host, dstMAC net.HardwareAddr, spec genSpec) (genResult, error) {
	if spec.threads < 1 || spec.flows < 1 || spec.first < 0 || spec.first+spec.flows > maxFlows {
		return genResult{}, fmt.Errorf("invalid generator spec: %d threads, %d flows", spec.threads, spec.flows)
	}
	fds := make([]int, spec.threads)
	for i := range fds {
		fds[i] = -1
	}
	defer func() {
		for _, fd := range fds {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	}()
	var ifindex int
	for i := range fds {
		// The socket belongs to the namespace it was created in; it can
		// be used from any thread afterwards.
		if err := h.Do(func() error {
			l, err := net.InterfaceByName(h.Ifname)
			if err != nil {
				return err
			}
			ifindex = l.Index
			fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("open packet socket: %w", err)
			}
			fds[i] = fd
			if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
				return fmt.Errorf("set PACKET_QDISC_BYPASS: %w", err)
			}
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20)
			return unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: l.Index, Protocol: 0})
		}); err != nil {
			return genResult{}, err
		}
	}
	return runThreads(spec, func(t int, start, deadline time.Time, claimed, sent *atomic.Uint64) error {
		return genThread(ctx, fds[t], ifindex, h.MAC, dstMAC, spec, t, start, deadline, claimed, sent)
	})
}

// runThreads runs spec.threads senders at once and sums what they sent.
// Thread t sends flows t, t+threads, ...; the threads share one schedule
// (claimed, from start until deadline), so one that other work holds off
// its CPU is made up for by the others.
func runThreads(spec genSpec, send func(t int, start, deadline time.Time, claimed, sent *atomic.Uint64) error) (genResult, error) {
	var sent, claimed atomic.Uint64
	var wg sync.WaitGroup
	errs := make([]error, spec.threads)
	start := time.Now()
	deadline := start.Add(spec.limit)
	for t := 0; t < spec.threads; t++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[t] = send(t, start, deadline, &claimed, &sent)
		}()
	}
	wg.Wait()
	return genResult{sent: sent.Load(), elapsed: time.Since(start)}, errors.Join(errs...)
}

func genThread(ctx context.Context, fd, ifindex int, src, dst net.HardwareAddr, spec genSpec, t int,
	start, deadline time.Time, claimed, total *atomic.Uint64) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer pinThread(t)()
	var frames [genBatch][60]byte
	var iov [genBatch]unix.Iovec
	var msgs [genBatch]unix.Mmsghdr
	sll := unix.RawSockaddrLinklayer{Family: unix.AF_PACKET, Ifindex: int32(ifindex), Halen: 6}
	copy(sll.Addr[:], dst)
	for i := range msgs {
		iov[i].Base = &frames[i][0]
		iov[i].SetLen(60)
		msgs[i].Hdr.Iov = &iov[i]
		msgs[i].Hdr.SetIovlen(1)
		msgs[i].Hdr.Name = (*byte)(unsafe.Pointer(&sll))
		msgs[i].Hdr.Namelen = uint32(unsafe.Sizeof(sll))
	}
	flow := t % spec.flows
	for {
		b := nextBatch(ctx, spec, start, deadline, claimed)
		if b == 0 {
			return nil
		}
		for i := uint64(0); i < b; i++ {
			buildFrame(frames[i][:], src, dst, spec.first+flow, spec.dst)
			flow += spec.threads
			if flow >= spec.flows {
				flow = t % spec.flows
			}
		}
		for off := uint64(0); off < b; {
			r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[off])), uintptr(b-off), 0, 0, 0)
			if e != 0 {
				if e == unix.ENOBUFS || e == unix.EAGAIN || e == unix.EINTR {
					if time.Now().After(deadline) {
						return nil
					}
					runtime.Gosched()
					continue
				}
				return fmt.Errorf("sendmmsg: %w", e)
			}
			off += uint64(r)
			total.Add(uint64(r))
		}
	}
}

// pinThread pins the calling thread, which must be locked to its
// goroutine, to CPU t (modulo the CPUs there are) and returns what puts
// its affinity back. On one CPU, or if the affinity cannot be read or
// set, it does nothing.
func pinThread(t int) (undo func()) {
	var all, one unix.CPUSet
	if unix.SchedGetaffinity(0, &all) != nil || runtime.NumCPU() < 2 {
		return func() {}
	}
	one.Set(t % runtime.NumCPU())
	if unix.SchedSetaffinity(0, &one) != nil {
		return func() {}
	}
	return func() { unix.SchedSetaffinity(0, &all) }
}

// nextBatch claims the next batch of a burst shared by several threads,
// sleeping first while the burst is ahead of spec.rate (start is its
// first send), and returns its size: up to spec.batch() frames, or 0 once
// spec.count are claimed, deadline has passed or ctx is done.
func nextBatch(ctx context.Context, spec genSpec, start, deadline time.Time, claimed *atomic.Uint64) uint64 {
	for {
		now := time.Now()
		if now.After(deadline) || ctx.Err() != nil {
			return 0
		}
		c := claimed.Load()
		if c >= spec.count {
			return 0
		}
		b := min(spec.batch(), spec.count-c)
		if spec.rate > 0 {
			if allowed := uint64(spec.rate * now.Sub(start).Seconds()); allowed < c+b {
				// Ahead of schedule: sleep until the next batch is due.
				next := start.Add(time.Duration(float64(c+b) / spec.rate * 1e9))
				time.Sleep(next.Sub(now))
				continue
			}
		}
		if claimed.CompareAndSwap(c, c+b) {
			return b
		}
	}
}
