//go:build linux

package dataplane

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SocketOptions size an AF_XDP socket and its UMEM.
type SocketOptions struct {
	NumFrames int // UMEM frames; power of two
	FrameSize int // 2048 or 4096
	RingSize  int // entries in each of the four rings; power of two
	// Copy forces copy mode (XDP_COPY). Zero-copy is tried first when
	// false; veth only supports copy mode.
	Copy bool
	// NoSharedUMEM gives each interface's socket a UMEM of its own, and
	// frames that leave by another interface than they came in on are
	// copied between them: what a worker falls back to when the kernel
	// refuses XDP_SHARED_UMEM.
	NoSharedUMEM bool
	// NeedWakeup binds with XDP_USE_NEED_WAKEUP: the kernel raises a flag
	// on the fill and TX rings when it needs a syscall to make progress,
	// and the worker makes none otherwise. In copy mode the TX flag is
	// always up (the frames are sent from sendto) and the fill flag never
	// is, so it saves nothing there; a zero-copy driver clears the TX
	// flag while its NAPI is sending, which saves a sendto per batch.
	NeedWakeup bool
	// TxBudget is the most frames one sendto sends in copy mode
	// (XDP_MAX_TX_SKB_BUDGET, Linux 6.17+); 0 leaves the kernel's 32,
	// which split each 64-frame batch over two kicks. Ignored where the
	// kernel lacks the option.
	TxBudget int
	// BusyPoll, when > 0, turns on busy polling (SO_PREFER_BUSY_POLL,
	// SO_BUSY_POLL of BusyPoll µs, SO_BUSY_POLL_BUDGET of BusyPollBudget
	// frames): the worker's own syscalls run the interface's NAPI, instead
	// of a softirq on whatever CPU the interrupt or the sender is on.
	// Pair it with the interface's napi_defer_hard_irqs and
	// gro_flush_timeout (BusyPollIface), or the softirq keeps the work.
	BusyPoll       int
	BusyPollBudget int
}

// DefaultSocketOptions: rings of 2048 entries and 8192 frames of 2 KiB
// (16 MiB of UMEM per queue). The UMEM holds as many frames as the four
// rings together: fewer, and under load the frames waiting on the TX and
// completion rings leave the fill ring empty, so the kernel drops
// received frames for want of a buffer (a bench flood with 4096 frames
// lost 2% of its frames that way).
func DefaultSocketOptions() SocketOptions {
	return SocketOptions{NumFrames: 8192, FrameSize: 2048, RingSize: 2048, NeedWakeup: true, TxBudget: defaultTxBudget}
}

// defaultTxBudget: a whole batch per sendto, and the backlog a kick
// flushes (bench/RESULTS.md, "Where the time goes").
const defaultTxBudget = 2 * maxBatch

func (o SocketOptions) validate() error {
	if o.FrameSize != 2048 && o.FrameSize != 4096 {
		return fmt.Errorf("invalid frame size %d: must be 2048 or 4096", o.FrameSize)
	}
	if o.NumFrames <= 0 || o.NumFrames&(o.NumFrames-1) != 0 {
		return fmt.Errorf("invalid number of frames %d: must be a power of two", o.NumFrames)
	}
	if o.RingSize <= 0 || o.RingSize&(o.RingSize-1) != 0 {
		return fmt.Errorf("invalid ring size %d: must be a power of two", o.RingSize)
	}
	if o.TxBudget != 0 && (o.TxBudget < 32 || o.TxBudget > o.RingSize) {
		return fmt.Errorf("invalid TX budget %d: must be 0 or 32 to the ring size %d", o.TxBudget, o.RingSize)
	}
	if o.BusyPoll < 0 || o.BusyPollBudget < 0 || o.BusyPollBudget > 65535 {
		return fmt.Errorf("invalid busy polling %d µs budget %d: must be >= 0, budget at most 65535", o.BusyPoll, o.BusyPollBudget)
	}
	if o.NumFrames < 2*o.RingSize {
		return fmt.Errorf("invalid number of frames %d: must be at least twice the ring size %d", o.NumFrames, o.RingSize)
	}
	return nil
}

// socket is an AF_XDP socket bound to one queue of one interface, with its
// own UMEM and the four rings mapped into this process. It is not safe for
// concurrent use: one worker owns it.
type socket struct {
	fd        int
	umem      []byte
	frameSize uint32
	numFrames uint32
	fill      addrRing
	comp      addrRing
	rx        descRing
	tx        descRing
	zeroCopy  bool
	busyPoll  bool     // SO_PREFER_BUSY_POLL is on: the worker drives the NAPI with its syscalls
	shared    bool     // umem is another socket's (XDP_SHARED_UMEM): not unmapped by close
	maps      [][]byte // ring mappings, unmapped by close
}

// newSocket opens an AF_XDP socket on ifindex/queue with a UMEM of its
// own. It releases everything it opened when it fails.
func newSocket(ifindex, queue int, o SocketOptions) (s *socket, err error) {
	return openSocket(ifindex, queue, o, nil)
}

// newSharedSocket opens an AF_XDP socket on ifindex/queue that uses
// owner's UMEM (XDP_SHARED_UMEM), so that a frame received on one socket
// can be put on the other's TX ring as it is, without a copy. Bound to
// another device or queue than owner, it needs fill and completion rings
// of its own (Linux 5.10+); they are created on this socket before bind.
// The kernel takes copy or zero-copy mode from owner's binding.
func newSharedSocket(ifindex, queue int, o SocketOptions, owner *socket) (*socket, error) {
	return openSocket(ifindex, queue, o, owner)
}

func openSocket(ifindex, queue int, o SocketOptions, owner *socket) (s *socket, err error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	// The deferred release holds its own pointer: every error return sets
	// the named result s to nil before the deferred call runs (a second
	// xlb on the same interface crashed here with a nil dereference).
	sk := &socket{fd: -1, frameSize: uint32(o.FrameSize), numFrames: uint32(o.NumFrames)}
	s = sk
	defer func() {
		if err != nil {
			sk.close()
		}
	}()

	s.fd, err = unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("create AF_XDP socket: %w", err)
	}
	if owner != nil {
		s.umem, s.shared, s.numFrames, s.frameSize = owner.umem, true, owner.numFrames, owner.frameSize
	} else {
		s.umem, err = unix.Mmap(-1, 0, o.NumFrames*o.FrameSize,
			unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
		if err != nil {
			return nil, fmt.Errorf("map %d bytes of UMEM: %w", o.NumFrames*o.FrameSize, err)
		}
		reg := unix.XDPUmemReg{
			Addr: uint64(uintptr(unsafe.Pointer(&s.umem[0]))),
			Len:  uint64(len(s.umem)),
			Size: uint32(o.FrameSize),
		}
		if err := setsockopt(s.fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
			return nil, fmt.Errorf("register UMEM: %w", err)
		}
	}
	for _, opt := range []int{unix.XDP_UMEM_FILL_RING, unix.XDP_UMEM_COMPLETION_RING, unix.XDP_RX_RING, unix.XDP_TX_RING} {
		if err := unix.SetsockoptInt(s.fd, unix.SOL_XDP, opt, o.RingSize); err != nil {
			return nil, fmt.Errorf("size ring %d: %w", opt, err)
		}
	}
	var off unix.XDPMmapOffsets
	size := uint32(unsafe.Sizeof(off))
	if _, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(s.fd), unix.SOL_XDP, unix.XDP_MMAP_OFFSETS,
		uintptr(unsafe.Pointer(&off)), uintptr(unsafe.Pointer(&size)), 0); errno != 0 {
		return nil, fmt.Errorf("get ring offsets: %w", errno)
	}

	n := uint32(o.RingSize)
	if s.fill.ring, s.fill.addrs, err = mapAddrRing(s, unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr, n); err != nil {
		return nil, fmt.Errorf("map fill ring: %w", err)
	}
	if s.comp.ring, s.comp.addrs, err = mapAddrRing(s, unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr, n); err != nil {
		return nil, fmt.Errorf("map completion ring: %w", err)
	}
	if s.rx.ring, s.rx.descs, err = mapDescRing(s, unix.XDP_PGOFF_RX_RING, off.Rx, n); err != nil {
		return nil, fmt.Errorf("map RX ring: %w", err)
	}
	if s.tx.ring, s.tx.descs, err = mapDescRing(s, unix.XDP_PGOFF_TX_RING, off.Tx, n); err != nil {
		return nil, fmt.Errorf("map TX ring: %w", err)
	}

	// Try zero-copy first; veth and most virtual devices answer
	// EOPNOTSUPP and get copy mode.
	var wake uint16
	if o.NeedWakeup {
		wake = unix.XDP_USE_NEED_WAKEUP
	}
	sa := &unix.SockaddrXDP{Flags: unix.XDP_ZEROCOPY | wake, Ifindex: uint32(ifindex), QueueID: uint32(queue)}
	if o.Copy {
		sa.Flags = unix.XDP_COPY | wake
	}
	if owner != nil {
		// The mode flags are refused with XDP_SHARED_UMEM (EINVAL); the
		// need_wakeup flag is the owner's too.
		sa.Flags, sa.SharedUmemFD = unix.XDP_SHARED_UMEM, uint32(owner.fd)
		if err = unix.Bind(s.fd, sa); err != nil {
			return nil, fmt.Errorf("bind AF_XDP socket to ifindex %d queue %d sharing the UMEM of fd %d: %w",
				ifindex, queue, owner.fd, err)
		}
		s.zeroCopy = owner.zeroCopy
		if owner.tx.flags == nil {
			s.noWakeupFlags()
		}
		return s, s.tune(o)
	}
	err = unix.Bind(s.fd, sa)
	if err != nil && sa.Flags&unix.XDP_ZEROCOPY != 0 && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)) {
		sa.Flags = unix.XDP_COPY | wake
		err = unix.Bind(s.fd, sa)
	}
	if errors.Is(err, unix.EBUSY) {
		// Another AF_XDP socket is bound to this queue.
		return nil, fmt.Errorf("bind AF_XDP socket to ifindex %d queue %d: %w (%w)", ifindex, queue, ErrBusy, err)
	}
	if err != nil {
		return nil, fmt.Errorf("bind AF_XDP socket to ifindex %d queue %d: %w", ifindex, queue, err)
	}
	s.zeroCopy = sa.Flags&unix.XDP_ZEROCOPY != 0
	if !o.NeedWakeup {
		s.noWakeupFlags()
	}
	return s, s.tune(o)
}

// noWakeupFlags forgets the rings' need_wakeup flags of a socket bound
// without XDP_USE_NEED_WAKEUP, whose kernel never raises them: every TX
// batch is kicked, and the fill ring never is.
func (s *socket) noWakeupFlags() {
	s.fill.flags, s.comp.flags, s.rx.flags, s.tx.flags = nil, nil, nil, nil
}

// tune sets the bound socket's TX budget and busy polling options.
func (s *socket) tune(o SocketOptions) error {
	if o.TxBudget > 0 {
		// ENOPROTOOPT before Linux 6.17: the kernel's 32 it is.
		err := unix.SetsockoptInt(s.fd, unix.SOL_XDP, unix.XDP_MAX_TX_SKB_BUDGET, o.TxBudget)
		if err != nil && !errors.Is(err, unix.ENOPROTOOPT) {
			return fmt.Errorf("set TX budget %d: %w", o.TxBudget, err)
		}
	}
	if o.BusyPoll == 0 {
		return nil
	}
	budget := o.BusyPollBudget
	if budget == 0 {
		budget = maxBatch
	}
	for _, opt := range []struct {
		name   string
		opt, v int
	}{
		{"SO_PREFER_BUSY_POLL", unix.SO_PREFER_BUSY_POLL, 1},
		{"SO_BUSY_POLL", unix.SO_BUSY_POLL, o.BusyPoll},
		{"SO_BUSY_POLL_BUDGET", unix.SO_BUSY_POLL_BUDGET, budget},
	} {
		if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, opt.opt, opt.v); err != nil {
			if errors.Is(err, unix.ENOPROTOOPT) {
				return fmt.Errorf("set %s: %w: %w", opt.name, ErrNotSupported, err)
			}
			return fmt.Errorf("set %s to %d: %w", opt.name, opt.v, err)
		}
	}
	s.busyPoll = true
	return nil
}

func setsockopt(fd, opt int, p unsafe.Pointer, size uintptr) error {
	if _, _, errno := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), size, 0); errno != 0 {
		return errno
	}
	return nil
}

func mapRing(s *socket, pgoff int64, off unix.XDPRingOffset, n uint32, entry uintptr) (ring, unsafe.Pointer, error) {
	b, err := unix.Mmap(s.fd, pgoff, int(off.Desc+uint64(n)*uint64(entry)),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return ring{}, nil, err
	}
	s.maps = append(s.maps, b)
	base := unsafe.Pointer(&b[0])
	r := ring{
		producer: (*uint32)(unsafe.Add(base, off.Producer)),
		consumer: (*uint32)(unsafe.Add(base, off.Consumer)),
		flags:    (*uint32)(unsafe.Add(base, off.Flags)),
		mask:     n - 1,
		size:     n,
	}
	return r, unsafe.Add(base, off.Desc), nil
}

func mapAddrRing(s *socket, pgoff int64, off unix.XDPRingOffset, n uint32) (ring, []uint64, error) {
	r, p, err := mapRing(s, pgoff, off, n, unsafe.Sizeof(uint64(0)))
	if err != nil {
		return r, nil, err
	}
	return r, unsafe.Slice((*uint64)(p), n), nil
}

func mapDescRing(s *socket, pgoff int64, off unix.XDPRingOffset, n uint32) (ring, []unix.XDPDesc, error) {
	r, p, err := mapRing(s, pgoff, off, n, unsafe.Sizeof(unix.XDPDesc{}))
	if err != nil {
		return r, nil, err
	}
	return r, unsafe.Slice((*unix.XDPDesc)(p), n), nil
}

// errNetDown is kick's error when the interface is down.
var errNetDown = unix.ENETDOWN

// kick asks the kernel to transmit what the TX ring holds. In copy mode
// the frames are sent from this syscall.
func (s *socket) kick() error {
	_, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	switch errno {
	case 0, unix.EAGAIN, unix.EBUSY, unix.ENOBUFS:
		// The kernel is busy or has no buffers right now: the frames stay
		// on the TX ring and the next kick sends them.
		return nil
	case unix.ENETDOWN:
		// The interface is down: the kernel took nothing from the TX
		// ring. The frames go once it is up again; the queue counts it.
		return errNetDown
	}
	return errno
}

// wake asks the kernel to go on receiving: recvfrom(2), which does
// nothing but run the NAPI of a busy-polling socket, or wake the driver
// of one whose fill ring says it needs it (need_wakeup).
func (s *socket) wake() {
	unix.Syscall6(unix.SYS_RECVFROM, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
}

// wait blocks until the RX ring has frames or timeoutMs passes.
func (s *socket) wait(timeoutMs int) error {
	fds := [1]unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}}
	_, err := unix.Poll(fds[:], timeoutMs)
	if err == unix.EINTR {
		return nil
	}
	return err
}

// statistics returns the kernel's drop counters for this socket.
func (s *socket) statistics() (unix.XDPStatistics, error) {
	var st unix.XDPStatistics
	size := uint32(unsafe.Sizeof(st))
	if _, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(s.fd), unix.SOL_XDP, unix.XDP_STATISTICS,
		uintptr(unsafe.Pointer(&st)), uintptr(unsafe.Pointer(&size)), 0); errno != 0 {
		return st, fmt.Errorf("get AF_XDP statistics: %w", errno)
	}
	return st, nil
}

func (s *socket) close() error {
	if s == nil {
		return nil
	}
	for _, b := range s.maps {
		unix.Munmap(b)
	}
	s.maps = nil
	if s.umem != nil && !s.shared {
		unix.Munmap(s.umem)
	}
	s.umem = nil
	if s.fd >= 0 {
		err := unix.Close(s.fd)
		s.fd = -1
		return err
	}
	return nil
}
