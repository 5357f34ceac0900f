//go:build linux

package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/conntrack"
	"github.com/xlbproject/xlb/sched"
)

// Options configure a Dataplane.
type Options struct {
	// Interface is the network interface to balance on (required).
	Interface string
	// Queues is the number of RX queues to serve, from queue 0; 0 means
	// every RX queue the interface has.
	Queues int
	// Socket sizes each queue's AF_XDP socket.
	Socket SocketOptions
	// ConnCapacity is the number of connection entries per queue.
	ConnCapacity int
	// MaxDests bounds the number of destinations over all services.
	MaxDests int
	// SYNRate and SYNBurst bound the TCP SYNs per second, and the burst,
	// that each source prefix (IPv4 /24, IPv6 /64) may send to services on
	// a queue while its worker is overloaded (see pressure.go); 0 means
	// the default, 100 and 20.
	SYNRate, SYNBurst int
	// SYNAuto is the SYN rate per queue (per second, counted per
	// millisecond) above which the XDP program applies SYNRate by itself
	// for 100 ms, at the flood's first frames, before the worker can
	// notice; 0 means the default, 100000; negative, never.
	SYNAuto int
	// Logger receives control-plane events (never per-packet ones).
	Logger *slog.Logger
}

// Default SYN admission per source prefix and queue under pressure: a
// busy NATed office or a crawler opens tens of connections per second
// from one /24; a flooding source sends thousands.
const (
	defaultSYNRate  = 100
	defaultSYNBurst = 20
	// No single queue of a director takes 100k new connections a second
	// from legitimate clients; a flood does at once.
	defaultSYNAuto = 100_000
)

// DefaultOptions returns options for iface with IPVS-like sizes:
// 2^20 connections per queue, 65536 destinations.
func DefaultOptions(iface string) Options {
	return Options{
		Interface:    iface,
		Socket:       DefaultSocketOptions(),
		ConnCapacity: 1 << 20,
		MaxDests:     1 << 16,
		SYNRate:      defaultSYNRate,
		SYNBurst:     defaultSYNBurst,
		SYNAuto:      defaultSYNAuto,
		Logger:       slog.Default(),
	}
}

// Dataplane is xlb's forwarding engine on one interface: the XDP program,
// one AF_XDP socket and worker per queue, and the control plane that
// turns an ipvs.Config into the workers' tables.
type Dataplane struct {
	opts    Options
	ifindex int
	mac     [6]byte
	objs    *bpf.Objects
	link    link.Link
	mode    bpf.AttachMode
	workers []*worker
	reg     *sched.Registry
	// ctSettings are the connection tables' timeouts and sysctls,
	// shared by every worker's shard.
	ctSettings *conntrack.Settings

	// fwd is the forwarding table by destination ID, shared read-only by
	// the workers and replaced whole by the control plane.
	fwd atomic.Pointer[[]destFwd]

	mu       sync.Mutex // control plane: Apply, the resolver, Close
	state    *controlState
	neigh    neighbours
	applied  chan struct{} // nudges the resolver after Apply
	closed   bool
	runStart time.Time
}

// New loads and attaches the XDP program to opts.Interface and opens a
// socket per queue. Frames reach the workers once Run starts; until Apply
// installs services the XDP program passes everything to the kernel. On
// error everything opened so far is released.
func New(opts Options) (d *Dataplane, err error) {
	if opts.Interface == "" {
		return nil, errors.New("no interface given")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ConnCapacity <= 0 {
		return nil, fmt.Errorf("invalid connection capacity %d: must be positive", opts.ConnCapacity)
	}
	if opts.MaxDests <= 0 {
		opts.MaxDests = 1 << 16
	}
	if opts.SYNRate == 0 {
		opts.SYNRate = defaultSYNRate
	}
	if opts.SYNBurst == 0 {
		opts.SYNBurst = defaultSYNBurst
	}
	switch {
	case opts.SYNAuto == 0:
		opts.SYNAuto = defaultSYNAuto
	case opts.SYNAuto < 0:
		opts.SYNAuto = 0 // off, in the XDP program's terms
	}
	if opts.SYNRate < 0 || opts.SYNRate > 1e9 || opts.SYNBurst < 0 || opts.SYNBurst > 1e9 {
		return nil, fmt.Errorf("invalid SYN rate %d/s burst %d: must be 1-1e9", opts.SYNRate, opts.SYNBurst)
	}
	if err := opts.Socket.validate(); err != nil {
		return nil, err
	}
	ifc, err := net.InterfaceByName(opts.Interface)
	if err != nil {
		return nil, fmt.Errorf("find interface %s: %w", opts.Interface, err)
	}
	if len(ifc.HardwareAddr) != 6 {
		return nil, fmt.Errorf("interface %s has no Ethernet address", opts.Interface)
	}
	queues := opts.Queues
	if queues == 0 {
		if queues, err = rxQueues(opts.Interface); err != nil {
			return nil, err
		}
	}

	d = &Dataplane{
		opts: opts, ifindex: ifc.Index,
		reg:        sched.NewRegistry(opts.MaxDests),
		ctSettings: conntrack.NewSettings(conntrack.DefaultTimeouts()),
		state:      newControlState(),
		neigh:      neighbours{ifindex: ifc.Index, probed: map[netipAddr]time.Time{}},
		applied:    make(chan struct{}, 1),
	}
	copy(d.mac[:], ifc.HardwareAddr)
	empty := make([]destFwd, opts.MaxDests+1)
	d.fwd.Store(&empty)
	defer func() {
		if err != nil {
			d.Close()
		}
	}()

	// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}
	if d.objs, err = bpf.Load(); err != nil {
		return nil, fmt.Errorf("load xdp program: %w", err)
	}
	for q := 0; q < queues; q++ {
		w, err := newWorker(d, q)
		if err != nil {
			return nil, err
		}
		d.workers = append(d.workers, w)
		if err := d.objs.SetSocket(q, w.sock.fd); err != nil {
			return nil, fmt.Errorf("register socket of queue %d: %w", q, err)
		}
	}
	if d.link, d.mode, err = bpf.Attach(d.objs.Program(), ifc.Index); err != nil {
		return nil, fmt.Errorf("attach xdp to %s: %w", opts.Interface, err)
	}
	zc := "copy"
	if d.workers[0].sock.zeroCopy {
		zc = "zero-copy"
	}
	opts.Logger.Info("xdp attached", "interface", opts.Interface, "mode", d.mode.String(),
		"queues", queues, "af_xdp", zc)
	return d, nil
}

// rxQueues counts the RX queues of iface from sysfs.
func rxQueues(iface string) (int, error) {
	ents, err := os.ReadDir("/sys/class/net/" + iface + "/queues")
	if err != nil {
		return 0, fmt.Errorf("count queues of %s: %w", iface, err)
	}
	n := 0
	for _, e := range ents {
		if len(e.Name()) > 3 && e.Name()[:3] == "rx-" {
			n++
		}
	}
	if n == 0 {
		n = 1
	}
	return n, nil
}

// AttachMode tells whether the XDP program runs in the driver or in the
// generic (skb) path.
func (d *Dataplane) AttachMode() bpf.AttachMode { return d.mode }

// Run starts one worker per queue, each locked to an OS thread, and the
// neighbour resolver, and returns when ctx is done and all have stopped.
func (d *Dataplane) Run(ctx context.Context) error {
	d.runStart = time.Now()
	var wg sync.WaitGroup
	for _, w := range d.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			w.run(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.estimate(ctx)
	}()
	d.resolve(ctx)
	wg.Wait()
	return nil
}

// resolve keeps the destinations' next-hop MACs current: right after
// each Apply and then every second.
func (d *Dataplane) resolve(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		d.refreshNeighbours()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.applied:
			// Give the kernel a moment to answer the probes just sent.
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// Close detaches the XDP program and releases every socket and map.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	if d.link != nil {
		if err := d.link.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach xdp: %w", err))
		}
	}
	for _, w := range d.workers {
		if err := w.close(); err != nil {
			errs = append(errs, err)
		}
	}
	if d.objs != nil {
		if err := d.objs.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close bpf objects: %w", err))
		}
	}
	return errors.Join(errs...)
}
