//go:build linux

package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
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
	// Interface is the network interface to balance on (required unless
	// Interfaces names some).
	Interface string
	// Interfaces are more interfaces to serve besides Interface (a
	// two-armed director: clients on one, real servers on another). A
	// frame leaves by the interface the route to its next hop names;
	// NAT and FULLNAT replies by the one the client's frames came in on.
	Interfaces []string
	// Queues is the number of RX queues to serve, from queue 0; 0 means
	// every RX queue the interface has.
	Queues int
	// Socket sizes each queue's AF_XDP socket.
	Socket SocketOptions
	// ConnCapacity is the number of connection entries per queue.
	ConnCapacity int
	// MaxDests bounds the number of destinations over all services.
	MaxDests int
	// MaxServices is the size of the XDP program's service map, 0 for
	// bpf.DefaultMaxServices; Apply refuses more services.
	MaxServices int
	// VLANs are the 802.1Q VLAN IDs whose tagged frames are balanced;
	// tagged frames of other VLANs go to the kernel (the XDP counter
	// pass_vlan). None by default: only untagged frames are balanced.
	VLANs []uint16
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
	// Spin is how long, at most, a worker polls its rings for the next
	// frame before it sleeps in poll(2), and only while frames come closer
	// together than that (worker.go, spinner); 0 sleeps at once.
	Spin time.Duration
	// Offload turns flow offload on: established connections (DR, NAT,
	// TUN with ipip, FULLNAT) and forwarded UDP flows are forwarded by
	// the XDP program itself (offload.go). Off by default.
	Offload bool
	// MaxFlows bounds the flows offloaded at once over all queues, 0 for
	// bpf.DefaultMaxFlows; the others stay with their workers.
	MaxFlows int
	// XDPMode is how the XDP program attaches to every interface:
	// bpf.Native or bpf.Generic only, or 0 for native where the driver
	// has it and generic otherwise. Generic XDP cannot see a VLAN tag
	// the kernel holds outside the frame (the device-bound program is
	// native only), and on a multi-queue veth sees every frame on
	// queue 0.
	XDPMode bpf.AttachMode
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
		Spin:         DefaultSpin,
		Logger:       slog.Default(),
	}
}

// Dataplane is xlb's forwarding engine on a set of interfaces: the XDP
// program on each, one worker per queue with an AF_XDP socket per
// interface, and the control plane that turns an ipvs.Config into the
// workers' tables.
type Dataplane struct {
	opts    Options
	ifindex int // the first served interface's (ifaces[0])
	ifaces  []*servedIface
	objs    *bpf.Objects // the first interface's program, whose maps every program shares
	mode    bpf.AttachMode
	workers []*worker
	// lportOffset is where the FULLNAT local port pools start handing
	// out ports (laddr.Options.Offset): random, so that a restarted
	// daemon does not reuse its predecessor's latest ports first.
	lportOffset int
	reg         *sched.Registry
	// ctSettings are the connection tables' timeouts and sysctls,
	// shared by every worker's shard.
	ctSettings *conntrack.Settings

	// fwd is the forwarding table by destination ID, shared read-only by
	// the workers and replaced whole by the control plane.
	fwd atomic.Pointer[[]destFwd]

	mu       sync.Mutex // control plane: Apply, the resolver's snapshot and publish, Close
	ipvsSync syncState  // connection sync's export switch and locks (sync.go)
	state    *controlState
	applied  chan struct{} // nudges the resolver after Apply
	closed   bool
	runStart time.Time

	// sockMu keeps Close from closing the sockets while Stats reads their
	// statistics, without Stats waiting for mu.
	sockMu sync.RWMutex

	// The resolver runs its kernel queries under resMu, never under mu.
	resMu    sync.Mutex
	res      *resolver
	kern     netKernel
	resStats atomic.Pointer[NeighbourStats]
	// want has a bit per destination ID that a worker holds frames for;
	// a worker sets it (an atomic OR, only when it starts holding for a
	// destination) and then nudges the resolver at the batch's end.
	want  []atomic.Uint64
	nudge chan struct{}

	// tap delivers frames to Local destinations (local.go), opened by the
	// first Apply that has one; under mu.
	tap *localTap
	// isLocal, if set, replaces the kernel's answer to whether an address
	// is the director's own (tests).
	isLocal func(netip.Addr) bool
	// napi are the interface settings busy polling changed, restored by Close.
	napi []napiSetting
}

// servedIface is one interface the dataplane serves. Its slot is its
// index in Dataplane.ifaces, which the forwarding table and connection
// entries name it by.
type servedIface struct {
	name  string
	index int
	mac   [6]byte
	mtu   int
	objs  *bpf.Objects // the program attached to it (Dataplane.objs, or a sibling sharing its maps)
	link  link.Link
	mode  bpf.AttachMode
}

// interfaces is the list of interfaces opts names, Interface first,
// without repeats.
func (o Options) interfaces() []string {
	var names []string
	for _, n := range append([]string{o.Interface}, o.Interfaces...) {
		if n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// New loads and attaches the XDP program to each interface opts names and
// opens a socket per interface and queue. Frames reach the workers once Run starts; until Apply
// installs services the XDP program passes everything to the kernel. On
// error everything opened so far is released.
func New(opts Options) (d *Dataplane, err error) {
	names := opts.interfaces()
	if len(names) == 0 {
		return nil, errors.New("no interface given")
	}
	if len(names) > maxIfaces {
		return nil, fmt.Errorf("invalid interfaces %v: at most %d", names, maxIfaces)
	}
	opts.Interface = names[0]
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ConnCapacity <= 0 || opts.ConnCapacity > conntrack.MaxCapacity {
		return nil, fmt.Errorf("invalid connection capacity %d: must be 1..%d", opts.ConnCapacity, conntrack.MaxCapacity)
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
	// Every precondition is checked before anything is loaded or
	// attached, so a refusal leaves the interface as it was.
	var ifaces []*servedIface
	var indexes []int
	for _, name := range names {
		ifc, err := usableInterface(name)
		if err != nil {
			return nil, err
		}
		si := &servedIface{name: name, index: ifc.Index, mtu: ifc.MTU}
		copy(si.mac[:], ifc.HardwareAddr)
		ifaces = append(ifaces, si)
		indexes = append(indexes, ifc.Index)
	}
	queues := opts.Queues
	if queues == 0 {
		if queues, err = rxQueues(names[0]); err != nil {
			return nil, err
		}
	}
	for _, name := range names[1:] {
		// A worker serves queue q of every interface.
		n, err := rxQueues(name)
		if err != nil {
			return nil, err
		}
		if n < queues {
			return nil, fmt.Errorf("serve %s: it has %d RX queues, %d are served on %s (set --queues)", name, n, queues, names[0])
		}
	}
	mem := opts
	mem.Socket.NumFrames *= len(names) // a worker's UMEM holds frames for each of its sockets
	if err := checkMemory(mem, queues); err != nil {
		return nil, err
	}

	d = &Dataplane{
		opts: opts, ifindex: ifaces[0].index, ifaces: ifaces,
		lportOffset: rand.IntN(1 << 16), // laddr.Options.Offset
		reg:         sched.NewRegistry(opts.MaxDests),
		ctSettings:  conntrack.NewSettings(conntrack.DefaultTimeouts()),
		state:       newControlState(),
		applied:     make(chan struct{}, 1),
		want:        make([]atomic.Uint64, (opts.MaxDests+1+63)/64),
		nudge:       make(chan struct{}, 1),
	}
	empty := make([]destFwd, opts.MaxDests+1)
	d.fwd.Store(&empty)
	defer func() {
		if err != nil {
			d.Close()
		}
	}()

	kern, err := newNetlinkKernel()
	if err != nil {
		return nil, err
	}
	d.kern = kern
	d.res = newResolver(kern, opts.Logger, indexes...)

	// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}
	if d.objs, err = bpf.Load(bpf.Options{
		MaxServices: opts.MaxServices,
		MaxReals:    opts.MaxDests, // destination IDs; the reals map has two keys for each
		MAC:         ifaces[0].mac,
		VLANs:       opts.VLANs,
		Ifindex:     ifaces[0].index,
		Offload:     opts.Offload,
		MaxFlows:    opts.MaxFlows,
		MaxFrame:    bpf.MaxFrameFor(opts.Socket.FrameSize),
	}); err != nil {
		return nil, fmt.Errorf("load xdp program: %w", err)
	}
	// One program per interface, each with its interface's MAC and its
	// own socket map, all sharing the service, real, local and counter
	// maps, so that Apply and Stats see one dataplane.
	ifaces[0].objs = d.objs
	for _, si := range ifaces[1:] {
		if si.objs, err = d.objs.Sibling(si.mac, si.index); err != nil {
			return nil, fmt.Errorf("load xdp program for %s: %w", si.name, err)
		}
	}
	if opts.Socket.BusyPoll > 0 {
		for _, si := range ifaces {
			set, err := setBusyPollNAPI(si.name, si.index)
			d.napi = append(d.napi, set...)
			if err != nil {
				return nil, fmt.Errorf("busy polling on %s: %w", si.name, err)
			}
		}
	}
	for q := 0; q < queues; q++ {
		w, err := newWorker(d, q, queues)
		if errors.Is(err, ErrBusy) {
			return nil, fmt.Errorf("interface %s is busy: %w: %v", strings.Join(names, ", "), ErrBusy, err)
		}
		if err != nil {
			return nil, err
		}
		d.workers = append(d.workers, w)
		for slot, si := range ifaces {
			if err := si.objs.SetSocket(q, w.socks[slot].fd); err != nil {
				return nil, fmt.Errorf("register socket of %s queue %d: %w", si.name, q, err)
			}
		}
	}
	if err := d.connectWorkers(); err != nil {
		return nil, err
	}
	d.syncLocals(nil) // before any real server's reply can be steered
	for _, si := range ifaces {
		if ok, err := si.objs.DeviceBound(); !ok && err != nil {
			opts.Logger.Info("xdp: no device-bound program, VLAN tags the NIC strips are not seen", "interface", si.name, "err", err)
		}
		if si.link, si.mode, err = si.objs.AttachAs(si.index, opts.XDPMode); err != nil {
			return nil, fmt.Errorf("attach xdp to %s: %w", si.name, err)
		}
		if dev, _ := si.objs.DeviceBound(); si.mode == bpf.Generic || !dev {
			// The tag in skb metadata (a bridge or veth peer, or a NIC whose
			// rx-vlan offload cannot be turned off) is invisible to XDP
			// without the kfunc: such frames would look untagged.
			opts.Logger.Warn("xdp cannot see VLAN tags the kernel stripped: tagged frames may be balanced as untagged",
				"interface", si.name, "mode", si.mode.String(), "device_bound", dev)
		}
		zc := "copy"
		if d.workers[0].socks[0].zeroCopy {
			zc = "zero-copy"
		}
		ws := d.workers[0].socks
		opts.Logger.Info("xdp attached", "interface", si.name, "mode", si.mode.String(),
			"queues", queues, "af_xdp", zc, "shared_umem", len(ws) > 1 && ws[len(ws)-1].shared)
		warnOffloadVeth(opts, si.index, si.name, si.mode)
		warnGSO(opts, si.objs, si.name, si.mode)
	}
	d.mode = ifaces[0].mode
	gso := true
	for _, si := range ifaces {
		ok, _ := si.objs.GSOCompanion()
		gso = gso && ok
	}
	for _, w := range d.workers {
		if w.off != nil {
			w.off.gso = gso
		}
	}
	return d, nil
}

// maxIfaces bounds the interfaces one dataplane serves.
const maxIfaces = 16

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
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
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
	if err := d.resolve(ctx); err != nil {
		stop(err)
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// ErrInterfaceGone is Run's error when the served interface is removed:
// the XDP program and the AF_XDP sockets went with it.
var ErrInterfaceGone = errors.New("interface removed")

// resolve keeps the destinations' next-hop MACs current until ctx is
// done: a round right after each Apply, every second, and soon after the
// kernel announces a route or link change; neighbour changes are
// published as they come. A worker holding frames for an unresolved
// destination nudges it to probe that one at once.
//
// It returns an error only when the dataplane cannot go on: the served
// interface was removed.
func (d *Dataplane) resolve(ctx context.Context) error {
	events := make(chan netEvent, 4096)
	var sub chan struct{} // closed to end the current subscription
	subscribe := func() {
		sub = make(chan struct{})
		err := d.kern.subscribe(sub, events)
		d.resMu.Lock()
		d.res.polling = err != nil
		d.resMu.Unlock()
		if err != nil {
			d.opts.Logger.Warn("no netlink subscription: looking every route up every second", "err", err)
		}
	}
	subscribe()
	defer func() { close(sub) }()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	// soon debounces a round after route or link events: a link going
	// down removes its routes one event at a time.
	soon := time.NewTimer(time.Hour)
	soon.Stop()
	pending := false
	var resub <-chan time.Time
	for again := true; ; {
		if again {
			d.resolveRound()
			d.reapServices()
		}
		again = true
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-d.applied:
		case <-soon.C:
			pending = false
		case <-resub:
			resub = nil
			close(sub)
			subscribe()
		case <-d.nudge:
			d.resMu.Lock()
			d.res.want(d.wanted())
			d.resMu.Unlock()
			again = false
		case ev := <-events:
			// Take what else is queued too, and publish one table: a
			// flap of many neighbours is one copy of the table, not one
			// per event.
			var changes []fwdChange
			round := false
			d.resMu.Lock()
			for n := 0; ; n++ {
				if si := d.served(ev.link); ev.kind == evLink && ev.gone && si != nil {
					d.resMu.Unlock()
					err := fmt.Errorf("serve %s: %w (XDP and its sockets went with it)", si.name, ErrInterfaceGone)
					d.opts.Logger.Error("cannot go on", "err", err)
					return err
				}
				c, r := d.res.event(ev, *d.fwd.Load())
				changes, round = append(changes, c...), round || r
				if ev.kind == evLost && resub == nil {
					resub = time.After(time.Second)
				}
				if n == 1023 || len(events) == 0 {
					break
				}
				ev = <-events
			}
			d.res.latest(changes)
			d.resStats.Store(ptr(d.res.snapshot()))
			d.resMu.Unlock()
			d.publishFwd(changes)
			if round && !pending {
				pending = true
				soon.Reset(20 * time.Millisecond)
			}
			again = false
		}
	}
}

// served returns the served interface of index ifindex, or nil.
func (d *Dataplane) served(ifindex int) *servedIface {
	for _, si := range d.ifaces {
		if si.index == ifindex {
			return si
		}
	}
	return nil
}

// wanted takes the destinations workers hold frames for, clearing their
// bits, and returns their addresses.
func (d *Dataplane) wanted() []netip.Addr {
	fwd := *d.fwd.Load()
	var addrs []netip.Addr
	for i := range d.want {
		w := d.want[i].Swap(0)
		for w != 0 {
			b := bits.TrailingZeros64(w)
			w &^= 1 << b
			if id := i*64 + b; id < len(fwd) && fwd[id].addr.IsValid() {
				addrs = append(addrs, fwd[id].addr)
			}
		}
	}
	return addrs
}

// Close detaches the XDP program and releases every socket and map.
// It stops a connection-sync export that is still running.
func (d *Dataplane) Close() error {
	d.stopSyncExport()
	first, err := d.closeLocked()
	if first && d.kern != nil {
		// Not under mu: the resolver takes resMu, then mu.
		d.resMu.Lock()
		d.kern.close()
		d.resMu.Unlock()
	}
	return err
}

func (d *Dataplane) closeLocked() (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false, nil
	}
	d.closed = true
	var errs []error
	for _, si := range d.ifaces {
		if si.link != nil {
			if err := si.link.Close(); err != nil {
				errs = append(errs, fmt.Errorf("detach xdp from %s: %w", si.name, err))
			}
		}
	}
	d.sockMu.Lock()
	for _, w := range d.workers {
		if err := w.close(); err != nil {
			errs = append(errs, err)
		}
	}
	d.sockMu.Unlock()
	if err := restoreNAPI(d.napi); err != nil {
		errs = append(errs, err)
	}
	d.napi = nil
	for _, si := range d.ifaces {
		if si.objs != nil && si.objs != d.objs {
			if err := si.objs.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close bpf objects of %s: %w", si.name, err))
			}
		}
	}
	if d.tap != nil {
		if err := d.tap.close(); err != nil {
			errs = append(errs, fmt.Errorf("close local delivery tap: %w", err))
		}
	}
	if d.objs != nil {
		if err := d.objs.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close bpf objects: %w", err))
		}
	}
	return true, errors.Join(errs...)
}
