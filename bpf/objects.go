//go:build linux

package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// Objects is the loaded XDP program and its maps. Its methods are safe for
// concurrent use: each is a single map syscall.
type Objects struct {
	objs xlbObjects
}

// Load loads the program and maps embedded in the package into the kernel.
// The maps start empty: nothing is steered until AddService or AddReal.
func Load() (*Objects, error) {
	spec, err := loadXlb()
	if err != nil {
		return nil, fmt.Errorf("load xdp spec: %w", err)
	}
	var o Objects
	// LoadAndAssign closes whatever it created when it fails.
	if err := spec.LoadAndAssign(&o.objs, nil); err != nil {
		return nil, fmt.Errorf("load xdp objects: %w", err)
	}
	return &o, nil
}

// Close releases the program and maps. A program still attached through a
// link stays loaded until the link is closed.
func (o *Objects) Close() error {
	return o.objs.Close()
}

// Program returns the XDP program, for Attach. It is owned by o.
func (o *Objects) Program() *ebpf.Program {
	return o.objs.XlbXdp
}

// AddService steers frames to k to the AF_XDP sockets. id is stored in the
// map for the dataplane; adding an existing service replaces its id.
func (o *Objects) AddService(k ServiceKey, id uint32) error {
	mk, err := k.mapKey()
	if err != nil {
		return fmt.Errorf("add service: %w", err)
	}
	if err := o.objs.Services.Update(&mk, &serviceValue{ID: id}, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("add service %v: %w", k, err)
	}
	return nil
}

// DeleteService stops steering frames to k. The error wraps
// ebpf.ErrKeyNotExist if k is not a service.
func (o *Objects) DeleteService(k ServiceKey) error {
	mk, err := k.mapKey()
	if err != nil {
		return fmt.Errorf("delete service: %w", err)
	}
	if err := o.objs.Services.Delete(&mk); err != nil {
		return fmt.Errorf("delete service %v: %w", k, err)
	}
	return nil
}

// AddReal steers frames from k, a real server's address, port and
// protocol, to the AF_XDP sockets: replies that NAT modes must rewrite.
// Adding an existing real is not an error.
func (o *Objects) AddReal(k ServiceKey) error {
	mk, err := k.mapKey()
	if err != nil {
		return fmt.Errorf("add real: %w", err)
	}
	v := realValue(0)
	if err := o.objs.Reals.Update(&mk, &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("add real %v: %w", k, err)
	}
	return nil
}

// DeleteReal stops steering frames from k. The error wraps
// ebpf.ErrKeyNotExist if k is not a real.
func (o *Objects) DeleteReal(k ServiceKey) error {
	mk, err := k.mapKey()
	if err != nil {
		return fmt.Errorf("delete real: %w", err)
	}
	if err := o.objs.Reals.Delete(&mk); err != nil {
		return fmt.Errorf("delete real %v: %w", k, err)
	}
	return nil
}

// MaxQueues is the number of XSKMAP slots: RX queues 0 to MaxQueues-1 can
// have a socket. Steered frames on other queues fall back to XDP_PASS.
const MaxQueues = 64

// SetSocket makes fd, an AF_XDP socket bound to RX queue queue of the
// interface the program is attached to, the destination of frames steered
// on that queue. Until a queue has a socket, its steered frames are passed
// to the kernel (and still counted as redirect or redirect_reply).
func (o *Objects) SetSocket(queue int, fd int) error {
	if queue < 0 || queue >= MaxQueues {
		return fmt.Errorf("set socket: invalid queue %d: must be 0-%d", queue, MaxQueues-1)
	}
	if fd < 0 {
		return fmt.Errorf("set socket: invalid fd %d: must be >= 0", fd)
	}
	if err := o.objs.Xsks.Update(uint32(queue), uint32(fd), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("set socket for queue %d: %w", queue, err)
	}
	return nil
}

// DeleteSocket removes queue's socket; its steered frames go back to the
// kernel. Deleting an empty slot is not an error.
func (o *Objects) DeleteSocket(queue int) error {
	if queue < 0 || queue >= MaxQueues {
		return fmt.Errorf("delete socket: invalid queue %d: must be 0-%d", queue, MaxQueues-1)
	}
	err := o.objs.Xsks.Delete(uint32(queue))
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete socket for queue %d: %w", queue, err)
	}
	return nil
}

// SYNLevel is how the XDP program admits TCP SYNs (without ACK) to
// services on a queue whose worker is under pressure. Other segments are
// always steered: they belong to connections the worker must not lose.
// From level SYNLimit on, a segment with ACK and without SYN marks its
// source prefix (IPv4 /24, IPv6 /64) as one that completes handshakes.
type SYNLevel uint32

const (
	SYNAdmit     SYNLevel = iota // every SYN goes to the worker; the program looks nothing up
	SYNLimit                     // SYNs beyond a rate per source prefix are dropped: drop_syn_rate
	SYNKnownOnly                 // also SYNs of prefixes that sent no ACK in 10 s: drop_syn_pressure
)

// SYNGuard sets the SYN admission of queue. Under SYNLimit each source
// prefix may send rate SYNs per second on the queue, in bursts of up to
// burst (both must be positive at every level). At SYNAdmit, a queue that
// receives more than auto SYNs per second (counted per millisecond; 0:
// never) acts as SYNLimit by itself for 100 ms, before its worker can
// notice. One map update: call it when the level changes, not per frame.
func (o *Objects) SYNGuard(queue int, level SYNLevel, rate, burst, auto int) error {
	if queue < 0 || queue >= MaxQueues {
		return fmt.Errorf("set syn guard: invalid queue %d: must be 0-%d", queue, MaxQueues-1)
	}
	if level > SYNKnownOnly {
		return fmt.Errorf("set syn guard: invalid level %d: must be 0-%d", level, SYNKnownOnly)
	}
	if rate <= 0 || rate > 1e9 || burst <= 0 || burst > 1e9 {
		return fmt.Errorf("set syn guard: invalid rate %d/s burst %d: must be 1-1e9", rate, burst)
	}
	if auto < 0 || auto > 1e12 {
		return fmt.Errorf("set syn guard: invalid auto rate %d/s: must be 0-1e12", auto)
	}
	interval := uint64(1e9) / uint64(rate)
	g := synGuard{Level: uint32(level), AutoPerMs: uint32(max(auto/1000, min(auto, 1))),
		IntervalNs: interval, BurstNs: interval * uint64(burst)}
	if err := o.objs.SynGuard.Update(uint32(queue), &g, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("set syn guard of queue %d: %w", queue, err)
	}
	return nil
}

// SYNRefused returns how many SYNs the program has refused on queue, at
// any level: a worker reads it to tell whether a flood goes on while its
// level keeps the flood away from it.
func (o *Objects) SYNRefused(queue int) (uint64, error) {
	if queue < 0 || queue >= MaxQueues {
		return 0, fmt.Errorf("read refused syns: invalid queue %d: must be 0-%d", queue, MaxQueues-1)
	}
	var n uint64
	if err := o.objs.SynRefused.Lookup(uint32(queue), &n); err != nil {
		return 0, fmt.Errorf("read refused syns of queue %d: %w", queue, err)
	}
	return n, nil
}

// Counters returns the per-reason totals summed over all CPUs. The per-CPU
// slots are read one after another, not atomically: a total may miss the
// frames counted while it was read.
func (o *Objects) Counters() (Counters, error) {
	var c Counters
	var perCPU []uint64
	for i := range c {
		if err := o.objs.Counters.Lookup(uint32(i), &perCPU); err != nil {
			return c, fmt.Errorf("read counter %v: %w", Reason(i), err)
		}
		for _, n := range perCPU {
			c[i] += n
		}
	}
	return c, nil
}
