package bpf

import (
	"iter"
	"strconv"
)

// Reason is the outcome of one frame in the XDP program and the index of
// its counter. It mirrors enum xlb_reason in xdp.c; the names are the
// lower-case suffixes of the C constants.
type Reason uint32

const (
	PassNotIP       Reason = iota // not ARP, IPv4 or IPv6 (after at most one VLAN tag)
	PassARP                       // ARP
	PassNotTCPUDP                 // IP, but neither TCP nor UDP (ICMP, ...)
	PassFragment                  // IPv4 or IPv6 TCP/UDP fragment, first or not
	PassIPv6Ext                   // IPv6 extension header not walked (Mobility, HIP, ...), or more than 8
	PassNoService                 // TCP/UDP, neither to a service nor from a real
	Malformed                     // truncated or inconsistent header, passed to the kernel
	Redirect                      // to a service: redirected to the queue's AF_XDP socket
	RedirectReply                 // from a real server: redirected to the queue's AF_XDP socket
	PassVLAN                      // would be steered, but its VLAN is not served (or it has two tags): passed
	DropOtherHost                 // would be steered, but sent to another host's unicast MAC: dropped
	DropL2Multicast               // would be steered, but sent to a broadcast or multicast MAC: dropped
	DropBadChecksum               // would be steered, but its IPv4 header checksum is wrong: dropped
	DropMartian                   // would be steered, but its source is martian: dropped
	PassLocal                     // from a real server to the director's own address (its own connection): passed
	DropSYNRate                   // SYN to a service under pressure, its source prefix over its rate: dropped
	DropSYNPressure               // SYN to a service under heavy pressure: dropped
	RedirectOffload               // an offloaded flow's frame: rewritten and sent by the program itself (XDP_TX or bpf_redirect)
	PassGSO                       // would be steered, but larger than a socket's frame (a GSO skb in generic mode): passed to the tc companion
	DropOversize                  // would be steered, but larger than a socket's frame, and no tc companion on the interface: dropped
	RedirectGSO                   // tc companion: an offloaded flow's GSO skb (or a FlowPartial flow's frame), rewritten and redirected (one per skb)
	DropGSONoFlow                 // tc companion: a GSO skb of a flow that is not offloaded (offload off, or not yet installed): dropped
	DropGSOUnfit                  // tc companion: an offloaded flow's GSO skb it cannot forward (FIN, TTL 1, MTU, VLAN, TUN, ...): dropped
	PassPartial                   // a FlowPartial flow's frame (its sender leaves checksums to the NIC): passed to the tc companion, which forwards it

	// NumReasons is the number of reasons, XLB_REASON_MAX in xdp.c.
	NumReasons = int(iota)
)

var reasonNames = [NumReasons]string{
	PassNotIP:       "pass_not_ip",
	PassARP:         "pass_arp",
	PassNotTCPUDP:   "pass_not_tcp_udp",
	PassFragment:    "pass_fragment",
	PassIPv6Ext:     "pass_ipv6_ext",
	PassNoService:   "pass_no_service",
	Malformed:       "malformed",
	Redirect:        "redirect",
	RedirectReply:   "redirect_reply",
	PassVLAN:        "pass_vlan",
	DropOtherHost:   "drop_other_host",
	DropL2Multicast: "drop_l2_multicast",
	DropBadChecksum: "drop_bad_checksum",
	DropMartian:     "drop_martian",
	PassLocal:       "pass_local",
	DropSYNRate:     "drop_syn_rate",
	DropSYNPressure: "drop_syn_pressure",
	RedirectOffload: "redirect_offload",
	PassGSO:         "pass_gso",
	DropOversize:    "drop_oversize",
	RedirectGSO:     "redirect_gso",
	DropGSONoFlow:   "drop_gso_no_flow",
	DropGSOUnfit:    "drop_gso_unfit",
	PassPartial:     "pass_partial",
}

// String returns the reason's counter name, e.g. "pass_no_service".
func (r Reason) String() string {
	if int(r) < NumReasons {
		return reasonNames[r]
	}
	return "Reason(" + strconv.FormatUint(uint64(r), 10) + ")"
}

// Counters holds one total per Reason, summed over CPUs.
type Counters [NumReasons]uint64

// All yields every reason and its count in index order, zeros included, so
// that exporters always publish the full set of series.
func (c *Counters) All() iter.Seq2[Reason, uint64] {
	return func(yield func(Reason, uint64) bool) {
		for i, n := range c {
			if !yield(Reason(i), n) {
				return
			}
		}
	}
}
