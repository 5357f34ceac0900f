//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Default map sizes, those of Options' zero values.
const (
	DefaultMaxServices = 16384
	DefaultMaxReals    = 65536
)

// Options configure the program for one interface. They are fixed when it
// is loaded: the configuration becomes constants the verifier and JIT see,
// and the map sizes are allocated.
type Options struct {
	// MaxServices is the size of the services map, 0 for
	// DefaultMaxServices. A hash map preallocates every entry, about 100
	// bytes each.
	MaxServices int
	// MaxReals is the number of real servers (destination IDs), 0 for
	// DefaultMaxReals. The reals map holds two entries per real server:
	// a firewall-mark service's NAT real server answers over TCP and UDP
	// (MaxRealKeys).
	MaxReals int
	// MAC is the interface's Ethernet address. Frames to a service that
	// were sent to another MAC are dropped (drop_other_host).
	MAC [6]byte
	// VLANs are the 802.1Q VLAN IDs (1-4094) whose tagged frames are
	// balanced; tagged frames of other VLANs go to the kernel (pass_vlan).
	// Untagged and priority-tagged (VID 0) frames are always balanced.
	VLANs []uint16
	// Ifindex, if not 0, is the interface the program will be attached
	// to. Load then also loads a device-bound variant that reads VLAN tags
	// the NIC stripped into the RX descriptor, which Attach uses natively
	// when the kernel and driver support it.
	Ifindex int
	// Offload turns flow offload on: frames of the flows the dataplane
	// installs (PutFlow, PutFlows) are rewritten and sent by the program itself.
	// Off, the program never looks at the flows map, which is then
	// created with one entry.
	Offload bool
	// MaxFlows is the size of the flows map when Offload is on, 0 for
	// DefaultMaxFlows; about 200 bytes per flow, preallocated.
	MaxFlows int
	// MaxFrame is the largest frame the AF_XDP sockets take: their frame
	// size less the kernel's 256 bytes of XDP headroom (MaxFrameFor). A
	// larger frame to a service (in generic mode, a GSO skb) would be
	// lost in the redirect: it is passed to the tc companion if Attach
	// attached one (pass_gso), and dropped otherwise (drop_oversize).
	// 0: no check, every steered frame is redirected.
	MaxFrame int
}

// xdpPacketHeadroom is XDP_PACKET_HEADROOM: an AF_XDP socket's frames
// hold frame size - headroom - 256 bytes of packet (xsk_buff_pool's
// frame_len).
const xdpPacketHeadroom = 256

// MaxFrameFor is Options.MaxFrame for sockets of frameSize-byte UMEM
// frames without headroom of their own.
func MaxFrameFor(frameSize int) int { return frameSize - xdpPacketHeadroom }

// DefaultMaxFlows is the flows map's size when Options.MaxFlows is 0.
const DefaultMaxFlows = 65536

// Objects is the loaded XDP program and its maps. Its methods are safe for
// concurrent use: each is a single map syscall.
type Objects struct {
	objs struct {
		xlbMaps
		XlbXdp *ebpf.Program `ebpf:"xlb_xdp"`
		XlbTc  *ebpf.Program `ebpf:"xlb_tc"`
	}
	dev         *ebpf.Program // device-bound variant for ifindex, or nil
	ifindex     int
	devErr      error // why dev is nil although Ifindex was given
	maxServices int
	maxDests    int                  // dest_stats slots
	maxRealKeys int                  // reals map entries
	spec        *ebpf.CollectionSpec // what Load loaded, for Sibling
	gsoTc       *ebpf.Map            // the gso_tc map, o's own or a sibling's parent's
	gso         bool                 // Attach attached xlb_tc
	gsoErr      error                // why Attach could not attach xlb_tc in generic mode
}

// Load loads the program and maps embedded in the package into the kernel,
// configured by opts. The maps start empty: nothing is steered until
// AddService or AddReal.
func Load(opts Options) (*Objects, error) {
	if opts.MaxServices == 0 {
		opts.MaxServices = DefaultMaxServices
	}
	if opts.MaxReals == 0 {
		opts.MaxReals = DefaultMaxReals
	}
	if opts.MaxServices < 1 || opts.MaxServices > 1<<24 {
		return nil, fmt.Errorf("load xdp: invalid service limit %d: must be 1-%d", opts.MaxServices, 1<<24)
	}
	if opts.MaxReals < 1 || opts.MaxReals > 1<<24 {
		return nil, fmt.Errorf("load xdp: invalid real server limit %d: must be 1-%d", opts.MaxReals, 1<<24)
	}
	var vlans [64]uint64
	vlans[0] = 1 // VID 0: untagged or priority-tagged
	for _, v := range opts.VLANs {
		if v < 1 || v > 4094 {
			return nil, fmt.Errorf("load xdp: invalid vlan %d: must be 1-4094", v)
		}
		vlans[v/64] |= 1 << (v % 64)
	}
	spec, err := loadXlb()
	if err != nil {
		return nil, fmt.Errorf("load xdp spec: %w", err)
	}
	spec.Maps["services"].MaxEntries = uint32(opts.MaxServices)
	spec.Maps["reals"].MaxEntries = uint32(realKeysPerReal * opts.MaxReals)
	// Destination IDs run from 1 to the number of reals.
	spec.Maps["dest_stats"].MaxEntries = uint32(opts.MaxReals + 1)
	flows := 1
	if opts.Offload {
		if flows = opts.MaxFlows; flows == 0 {
			flows = DefaultMaxFlows
		}
		if flows < 1 || flows > 1<<24 {
			return nil, fmt.Errorf("load xdp: invalid flow limit %d: must be 1-%d", flows, 1<<24)
		}
	}
	spec.Maps["flows"].MaxEntries = uint32(flows)
	if err := spec.Variables["xlb_offload"].Set(boolByte(opts.Offload)); err != nil {
		return nil, fmt.Errorf("load xdp: set offload: %w", err)
	}
	if opts.MaxFrame < 0 || opts.MaxFrame > 1<<16 {
		return nil, fmt.Errorf("load xdp: invalid frame limit %d: must be 0-%d", opts.MaxFrame, 1<<16)
	}
	if err := spec.Variables["xlb_max_frame"].Set(uint32(opts.MaxFrame)); err != nil {
		return nil, fmt.Errorf("load xdp: set frame limit: %w", err)
	}
	if err := spec.Variables["xlb_mac"].Set(opts.MAC); err != nil {
		return nil, fmt.Errorf("load xdp: set mac: %w", err)
	}
	if err := spec.Variables["xlb_vlans"].Set(vlans); err != nil {
		return nil, fmt.Errorf("load xdp: set vlans: %w", err)
	}
	o := Objects{ifindex: opts.Ifindex, maxServices: opts.MaxServices, maxDests: opts.MaxReals + 1,
		maxRealKeys: realKeysPerReal * opts.MaxReals, spec: spec}
	// LoadAndAssign loads only what the struct names, and closes whatever
	// it created when it fails.
	if err := spec.LoadAndAssign(&o.objs, nil); err != nil {
		return nil, fmt.Errorf("load xdp objects: %w", err)
	}
	o.gsoTc = o.objs.GsoTc
	if opts.Ifindex != 0 {
		o.dev, o.devErr = loadDev(spec, &o.objs.xlbMaps, opts.Ifindex)
	}
	return &o, nil
}

// Sibling loads the program again for another interface, with that
// interface's MAC (xlb_mac is a load-time constant, which the verifier
// folds into the comparison) and an XSKMAP of its own (the program
// redirects by RX queue index, and every interface has a queue 0), but
// sharing every other map of o's (services, reals, locals, counters, the
// SYN guard's): what Add*/Set*
// and Counters do through o applies to both. Attach the sibling to
// ifindex and give it that interface's sockets (SetSocket); its other
// map methods must not be used. Closing it leaves o's maps alone.
func (o *Objects) Sibling(mac [6]byte, ifindex int) (*Objects, error) {
	spec := o.spec.Copy()
	if err := spec.Variables["xlb_mac"].Set(mac); err != nil {
		return nil, fmt.Errorf("load xdp: set mac: %w", err)
	}
	shared := mapsByName(&o.objs.xlbMaps)
	delete(shared, "xsks") // the sibling's own sockets, by its RX queue
	var objs struct {
		P    *ebpf.Program `ebpf:"xlb_xdp"`
		TC   *ebpf.Program `ebpf:"xlb_tc"`
		Xsks *ebpf.Map     `ebpf:"xsks"`
	}
	if err := spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: shared}); err != nil {
		return nil, fmt.Errorf("load xdp objects for ifindex %d: %w", ifindex, err)
	}
	s := &Objects{ifindex: ifindex, maxServices: o.maxServices, maxDests: o.maxDests, maxRealKeys: o.maxRealKeys}
	s.objs.XlbXdp, s.objs.XlbTc, s.objs.Xsks = objs.P, objs.TC, objs.Xsks
	s.gsoTc = o.objs.GsoTc // shared: o closes it
	if ifindex != 0 {
		ps := spec.Programs["xlb_xdp_dev"]
		ps.Ifindex = uint32(ifindex)
		ps.Flags |= xdpDevBoundOnly
		var dev struct {
			P *ebpf.Program `ebpf:"xlb_xdp_dev"`
		}
		shared["xsks"] = objs.Xsks
		if err := spec.LoadAndAssign(&dev, &ebpf.CollectionOptions{MapReplacements: shared}); err != nil {
			s.devErr = fmt.Errorf("load device-bound xdp program: %w", err)
		} else {
			s.dev = dev.P
		}
	}
	return s, nil
}

// BPF_F_XDP_DEV_BOUND_ONLY (linux/bpf.h): the program may call metadata
// kfuncs, and can only be attached to the device it was loaded for.
const xdpDevBoundOnly = 1 << 6

// mapsByName is every map of m by its name in xdp.c, so that a second
// program of the collection shares them all: a map added to xdp.c is
// shared without a change here.
func mapsByName(m *xlbMaps) map[string]*ebpf.Map {
	out := map[string]*ebpf.Map{}
	v := reflect.ValueOf(m).Elem()
	for i := 0; i < v.NumField(); i++ {
		if name := v.Type().Field(i).Tag.Get("ebpf"); name != "" {
			out[name] = v.Field(i).Interface().(*ebpf.Map)
		}
	}
	return out
}

// loadDev loads xlb_xdp_dev bound to ifindex, sharing m.
func loadDev(spec *ebpf.CollectionSpec, m *xlbMaps, ifindex int) (*ebpf.Program, error) {
	ps := spec.Programs["xlb_xdp_dev"]
	ps.Ifindex = uint32(ifindex)
	ps.Flags |= xdpDevBoundOnly
	var dev struct {
		P *ebpf.Program `ebpf:"xlb_xdp_dev"`
	}
	err := spec.LoadAndAssign(&dev, &ebpf.CollectionOptions{MapReplacements: mapsByName(m)})
	if err != nil {
		return nil, fmt.Errorf("load device-bound xdp program: %w", err)
	}
	return dev.P, nil
}

// MaxServices is the size of the services map: AddService of one more
// service than this fails.
func (o *Objects) MaxServices() int { return o.maxServices }

// realKeysPerReal is the reals map's entries per real server: its port
// for TCP and for UDP (a firewall-mark service takes both), each an
// exact port or port 0 for any. More entries for one real server, one
// per port of a firewall mark's rules, take what other real servers
// leave free (dataplane's syncReals). The map preallocates ~96 bytes
// per key: 12.6 MB at DefaultMaxReals (6.3 MB with one key each), the
// price of never running out of keys for wildcards.
const realKeysPerReal = 2

// MaxRealKeys is the size of the reals map: AddReal of one more key than
// this fails.
func (o *Objects) MaxRealKeys() int { return o.maxRealKeys }

// Close releases the program and maps. A program still attached through a
// link stays loaded until the link is closed.
func (o *Objects) Close() error {
	var err error
	if o.dev != nil {
		err = o.dev.Close()
	}
	return errors.Join(err, o.objs.XlbXdp.Close(), o.objs.XlbTc.Close(), o.objs.xlbMaps.Close())
}

// Program returns the XDP program, for Attach. It is owned by o.
func (o *Objects) Program() *ebpf.Program {
	return o.objs.XlbXdp
}

// GSOProgram returns the tc companion, xlb_tc (a SchedCLS program for
// tcx ingress), which forwards the GSO skbs of offloaded flows that the
// XDP program marked in generic mode. Attach attaches it; it is owned
// by o.
func (o *Objects) GSOProgram() *ebpf.Program {
	return o.objs.XlbTc
}

// GSOTestProgram loads xlb_tc_unmarked, the tc companion without its
// check of the XDP program's mark, sharing o's maps, for BPF_PROG_RUN:
// the skbs it makes carry no metadata. The caller closes it; it must
// never be attached.
func (o *Objects) GSOTestProgram() (*ebpf.Program, error) {
	if o.spec == nil {
		return nil, errors.New("load tc test program: not loaded by Load")
	}
	var objs struct {
		P *ebpf.Program `ebpf:"xlb_tc_unmarked"`
	}
	if err := o.spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: mapsByName(&o.objs.xlbMaps)}); err != nil {
		return nil, fmt.Errorf("load tc test program: %w", err)
	}
	return objs.P, nil
}

// AddService steers frames to k to the AF_XDP sockets. id is stored in the
// map for the dataplane; adding an existing service replaces its id.
func (o *Objects) AddService(k ServiceKey, id uint32) error {
	mk, err := k.mapKey()
	if err != nil {
		return fmt.Errorf("add service: %w", err)
	}
	if err := o.objs.Services.Update(&mk, &serviceValue{ID: id}, ebpf.UpdateAny); err != nil {
		if errors.Is(err, unix.E2BIG) {
			return fmt.Errorf("add service %v: too many services (limit %d): %w", k, o.maxServices, err)
		}
		return fmt.Errorf("add service %v: %w", k, err)
	}
	return nil
}

// DrainService marks k, a service, as deleted but still carrying
// connections: its frames are still steered, except TCP SYNs without ACK,
// which go to the kernel (as with IPVS, whose local stack resets them).
// AddService of k undoes it.
func (o *Objects) DrainService(k ServiceKey, id uint32) error {
	mk, err := k.mapKey()
	if err != nil {
		return fmt.Errorf("drain service: %w", err)
	}
	if err := o.objs.Services.Update(&mk, &serviceValue{ID: id, Flags: svcDraining}, ebpf.UpdateExist); err != nil {
		return fmt.Errorf("drain service %v: %w", k, err)
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
		if errors.Is(err, unix.E2BIG) {
			return fmt.Errorf("add real %v: too many real server keys (limit %d): %w", k, o.objs.Reals.MaxEntries(), err)
		}
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

// SetLocal records addr as one of the director's own addresses: frames
// from a real server to it are its own connections and go to the kernel,
// unless laddr says it is a FULLNAT local address, whose replies are
// steered. Setting an existing address changes its kind.
func (o *Objects) SetLocal(addr netip.Addr, laddr bool) error {
	if !addr.IsValid() {
		return fmt.Errorf("set local address: invalid address")
	}
	k := xdpLocalKey{Addr: addr.Unmap().As16()}
	v := uint32(localOwn)
	if laddr {
		v |= localLaddr
	}
	if err := o.objs.Locals.Update(&k, &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("set local address %v: %w", addr, err)
	}
	return nil
}

// DeleteLocal forgets a local address. Deleting an unknown one is not an
// error.
func (o *Objects) DeleteLocal(addr netip.Addr) error {
	k := xdpLocalKey{Addr: addr.Unmap().As16()}
	if err := o.objs.Locals.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete local address %v: %w", addr, err)
	}
	return nil
}

// Locals returns the local addresses and whether each is a FULLNAT local
// address.
func (o *Objects) Locals() (map[netip.Addr]bool, error) {
	out := map[netip.Addr]bool{}
	var k xdpLocalKey
	var v uint32
	it := o.objs.Locals.Iterate()
	for it.Next(&k, &v) {
		out[netip.AddrFrom16(k.Addr).Unmap()] = v&localLaddr != 0
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list local addresses: %w", err)
	}
	return out, nil
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
