//go:build linux

package bpf

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// DecapReason is the outcome of one frame in the decapsulation program
// (decap.c) and the index of its counter. It mirrors enum decap_reason;
// the names are the lower-case suffixes of the C constants.
type DecapReason uint32

const (
	DecapPassNotIP     DecapReason = iota // not IPv4 or IPv6 (after at most one VLAN tag)
	DecapPassNotTunnel                    // IP, but no tunnel protocol (nor UDP to the GUE port)
	DecapPassNotLocal                     // tunnel packet to an address that is not local
	DecapPassFragment                     // outer IPv4 fragment: no reassembly in XDP
	DecapPassMalformed                    // truncated or inconsistent outer header, passed
	DecapDropInner                        // tunnel packet for this host with a bad inner header
	DecapDropAdjust                       // bpf_xdp_adjust_head failed
	Decap4in4                             // IPv4 in IPv4 (IPIP) stripped
	Decap6in4                             // IPv6 in IPv4 (6in4, protocol 41) stripped
	Decap4in6                             // IPv4 in IPv6 stripped
	Decap6in6                             // IPv6 in IPv6 stripped
	DecapGUE                              // GUE variant 1 (IP directly in UDP) stripped
	DecapGRE                              // GRE version 0 carrying IPv4 or IPv6 stripped

	// NumDecapReasons is DECAP_REASON_MAX in decap.c.
	NumDecapReasons = int(iota)
)

var decapReasonNames = [NumDecapReasons]string{
	DecapPassNotIP:     "pass_not_ip",
	DecapPassNotTunnel: "pass_not_tunnel",
	DecapPassNotLocal:  "pass_not_local",
	DecapPassFragment:  "pass_fragment",
	DecapPassMalformed: "pass_malformed",
	DecapDropInner:     "drop_inner",
	DecapDropAdjust:    "drop_adjust",
	Decap4in4:          "decap_4in4",
	Decap6in4:          "decap_6in4",
	Decap4in6:          "decap_4in6",
	Decap6in6:          "decap_6in6",
	DecapGUE:           "decap_gue",
	DecapGRE:           "decap_gre",
}

// String returns the reason's counter name, e.g. "decap_4in4".
func (r DecapReason) String() string {
	if int(r) < NumDecapReasons {
		return decapReasonNames[r]
	}
	return "DecapReason(" + strconv.Itoa(int(r)) + ")"
}

// DecapCounters are the decapsulation program's totals, indexed by reason.
type DecapCounters [NumDecapReasons]uint64

// Decapsulated is the number of frames whose outer header was stripped.
func (c DecapCounters) Decapsulated() uint64 {
	return c[Decap4in4] + c[Decap6in4] + c[Decap4in6] + c[Decap6in6] + c[DecapGUE] + c[DecapGRE]
}

// decapLocalKey mirrors struct local_key in decap.c.
type decapLocalKey struct {
	Addr [16]byte // IPv6, or IPv4-mapped ::ffff:a.b.c.d
}

// decapConfig mirrors struct decap_config in decap.c.
type decapConfig struct {
	GUEPort [2]byte // __be16; 0: GUE off
	Pad     uint16
	Flags   uint32
}

// MaxDecapLocals is the capacity of the locals map (DECAP_MAX_LOCALS).
const MaxDecapLocals = 256

// Decap is the loaded decapsulation program and its maps: an XDP program
// for TUN real servers that strips IPIP, 6in4, 4in6, 6in6, GUE and GRE
// outer headers from packets addressed to one of its local addresses and
// passes the inner packet to the kernel (see decap.c). Its methods are safe for
// concurrent use: each is a map syscall.
type Decap struct {
	objs decapObjects
}

// LoadDecap loads the decapsulation program with no local address (it
// strips nothing until AddLocal) and GUE off.
func LoadDecap() (*Decap, error) {
	spec, err := loadDecap()
	if err != nil {
		return nil, fmt.Errorf("load decap spec: %w", err)
	}
	var d Decap
	if err := spec.LoadAndAssign(&d.objs, nil); err != nil {
		return nil, fmt.Errorf("load decap objects: %w", err)
	}
	return &d, nil
}

// Close releases the program and maps; an attached program stays loaded
// until its link is closed.
func (d *Decap) Close() error {
	return d.objs.Close()
}

// Program returns the XDP program. It is owned by d.
func (d *Decap) Program() *ebpf.Program {
	return d.objs.XlbDecap
}

// Attach attaches the program to interface ifindex of the caller's
// network namespace, as the package-level Attach does.
func (d *Decap) Attach(ifindex int) (link.Link, AttachMode, error) {
	return Attach(d.objs.XlbDecap, ifindex)
}

func localKey(a netip.Addr) (decapLocalKey, error) {
	switch {
	case !a.IsValid():
		return decapLocalKey{}, fmt.Errorf("invalid address %v: must be IPv4 or IPv6", a)
	case a.Is4In6():
		return decapLocalKey{}, fmt.Errorf("invalid address %v: must be IPv4 or IPv6, not IPv4-mapped IPv6", a)
	case a.Zone() != "":
		return decapLocalKey{}, fmt.Errorf("invalid address %v: must have no zone", a)
	}
	return decapLocalKey{Addr: a.As16()}, nil
}

// AddLocal makes a an outer destination whose tunnel packets are
// decapsulated. Adding an address twice is not an error.
func (d *Decap) AddLocal(a netip.Addr) error {
	k, err := localKey(a)
	if err != nil {
		return fmt.Errorf("add local address: %w", err)
	}
	v := uint32(0)
	if err := d.objs.DecapLocals.Update(&k, &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("add local address %v: %w", a, err)
	}
	return nil
}

// DeleteLocal stops decapsulating packets to a. The error wraps
// ebpf.ErrKeyNotExist if a is not local.
func (d *Decap) DeleteLocal(a netip.Addr) error {
	k, err := localKey(a)
	if err != nil {
		return fmt.Errorf("delete local address: %w", err)
	}
	if err := d.objs.DecapLocals.Delete(&k); err != nil {
		return fmt.Errorf("delete local address %v: %w", a, err)
	}
	return nil
}

// Locals returns the local addresses, in no particular order.
func (d *Decap) Locals() ([]netip.Addr, error) {
	var (
		k   decapLocalKey
		v   uint32
		out []netip.Addr
	)
	it := d.objs.DecapLocals.Iterate()
	for it.Next(&k, &v) {
		out = append(out, netip.AddrFrom16(k.Addr).Unmap())
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list local addresses: %w", err)
	}
	return out, nil
}

// SetGUEPort decapsulates UDP datagrams to port (to a local address) as
// GUE variant 1, the inner IP packet directly after the UDP header
// (ipvsadm --tun-type gue --tun-port). Port 0 turns GUE off.
func (d *Decap) SetGUEPort(port uint16) error {
	c := decapConfig{GUEPort: [2]byte{byte(port >> 8), byte(port)}}
	if err := d.objs.DecapConfig.Update(uint32(0), &c, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("set gue port %d: %w", port, err)
	}
	return nil
}

// Counters returns the per-reason totals summed over all CPUs, read one
// slot after another (not atomically).
func (d *Decap) Counters() (DecapCounters, error) {
	var c DecapCounters
	var perCPU []uint64
	for i := range c {
		if err := d.objs.DecapCounters.Lookup(uint32(i), &perCPU); err != nil {
			return c, fmt.Errorf("read decap counter %v: %w", DecapReason(i), err)
		}
		for _, n := range perCPU {
			c[i] += n
		}
	}
	return c, nil
}
