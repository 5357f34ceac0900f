// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

// xlb's XDP steering program. See doc.go for the contract; internal/packet
// implements the same classification in Go and the tests hold both to one
// table of golden frames, so change them together.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// Default map sizes; Load sets the real ones (MapSpec.MaxEntries) from the
// daemon's options before the maps are created. A hash map preallocates
// max_entries elements; with a 20-byte key and 8-byte value that is roughly
// 100 bytes per element including htab overhead, so 16Ki services cost
// ~1.6 MiB and 64Ki reals ~6.5 MiB.
#define XLB_MAX_SERVICES 16384
#define XLB_MAX_REALS 65536
// One AF_XDP socket per RX queue. 64 queues covers common 25/100G NICs;
// frames on a higher queue find no socket and fall back to XDP_PASS.
#define XLB_MAX_QUEUES 64

// IPv4 flags and fragment offset (RFC 791 section 3.1), kernel-internal.
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

// IPv6 extension headers walked to reach TCP/UDP, at most: the kernel's
// ipv6_skip_exthdr has no bound, but real traffic carries one or two and
// the verifier needs one.
#define XLB_MAX_EXTHDRS 8

// Fragment header (RFC 8200 section 4.5): offset in 8-octet units, M flag.
#define IP6_OFFSET 0xfff8
#define IP6_MF 0x0001

// VLAN ID of a TCI (802.1Q): the low 12 bits.
#define VLAN_VID_MASK 0x0fff

// Per-interface configuration, set by Load before the program is loaded
// (CollectionSpec.Variables) and read-only afterwards, so the verifier and
// JIT treat it as constants. One loaded program serves one interface.
//
// xlb_mac is the interface's MAC address: a frame to a service that was
// not sent to it (another host's unicast, broadcast, multicast) is dropped.
// xlb_vlans is a bitmap of the 802.1Q VLAN IDs whose tagged frames are
// balanced; bit 0 (priority-tagged, VID 0) means untagged.
const volatile __u8 xlb_mac[6] = {};
const volatile __u64 xlb_vlans[64] = {1};

// Metadata kfunc (Linux 6.8+): the VLAN tag the NIC stripped into the RX
// descriptor (rx-vlan-offload). Only a device-bound program may call it,
// xlb_xdp_dev; drivers without it return -EOPNOTSUPP.
extern int bpf_xdp_metadata_rx_vlan_tag(const struct xdp_md *ctx, __be16 *vlan_proto,
					__u16 *vlan_tci) __ksym __weak;

// 802.1Q / 802.1ad tag, not in the UAPI headers.
struct vlan_hdr {
	__be16 tci;
	__be16 encapsulated_proto;
};

// Key of the services and reals maps. Mirrored by serviceKey in maps.go.
struct svc_key {
	__u8 addr[16]; // IPv6, or IPv4-mapped ::ffff:a.b.c.d
	__be16 port;   // network byte order, as on the wire
	__u8 proto;    // IPPROTO_TCP or IPPROTO_UDP
	__u8 pad;      // always 0: hash keys compare every byte
};

// Value of the services map. Mirrored by serviceValue in maps.go.
struct svc_value {
	__u32 id;    // control plane's service id, for the dataplane
	__u32 flags; // XLB_SVC_* below; other bits are the dataplane's
};

// The service was deleted but still has connections (IPVS keeps
// forwarding them until they expire). Its frames are still steered, except
// a TCP SYN without ACK: no new connection may be scheduled, and IPVS
// without a service leaves such a SYN to the local stack, which resets it.
#define XLB_SVC_DRAINING 1

// Outcome of one frame, the index into the counters map. Mirrored by
// Reason in reason.go; the Go names are the lower-case suffixes.
enum xlb_reason {
	XLB_REASON_PASS_NOT_IP,       // not ARP, IPv4 or IPv6 (after at most one VLAN tag)
	XLB_REASON_PASS_ARP,          // ARP
	XLB_REASON_PASS_NOT_TCP_UDP,  // IP, neither TCP/UDP nor an ICMP error quoting TCP/UDP
	XLB_REASON_PASS_FRAGMENT,     // IPv4 or IPv6 fragment, first or not
	XLB_REASON_PASS_IPV6_EXT,     // IPv6 extension header not walked, or too many
	XLB_REASON_PASS_NO_SERVICE,   // TCP/UDP, neither to a service nor from a real
	XLB_REASON_MALFORMED,         // truncated or inconsistent header, passed
	XLB_REASON_REDIRECT,          // to a service: redirected
	XLB_REASON_REDIRECT_REPLY,    // from a real server: redirected
	XLB_REASON_PASS_VLAN,         // steered, but VLAN not served (or two tags)
	XLB_REASON_DROP_OTHER_HOST,   // steered, but sent to another unicast MAC
	XLB_REASON_DROP_L2_MULTICAST, // steered, but sent to a broadcast/multicast MAC
	XLB_REASON_DROP_BAD_CHECKSUM, // steered, but the IPv4 header checksum is wrong
	XLB_REASON_DROP_MARTIAN,      // steered, but from a martian source address
	XLB_REASON_PASS_LOCAL,        // from a real, but to the director's own address: its own connection
	XLB_REASON_DROP_SYN_RATE,     // SYN to a service under pressure, its source prefix over its rate: dropped
	XLB_REASON_DROP_SYN_PRESSURE, // SYN to a service under heavy pressure, its prefix sent no recent ACK: dropped
	XLB_REASON_REDIRECT_OFFLOAD,  // an offloaded flow's frame: rewritten and sent here (XDP_TX or bpf_redirect)
	XLB_REASON_PASS_GSO,          // steered, but larger than a socket's frame (a GSO skb): passed to xlb_tc
	XLB_REASON_DROP_OVERSIZE,     // steered, but larger than a socket's frame, and no xlb_tc to take it: dropped
	XLB_REASON_REDIRECT_GSO,      // xlb_tc: an offloaded flow's marked skb (GSO, or a FlowPartial flow's), rewritten and redirected
	XLB_REASON_DROP_GSO_NO_FLOW,  // xlb_tc: a GSO skb of a flow not offloaded (offload off, not yet installed): dropped
	XLB_REASON_DROP_GSO_UNFIT,    // xlb_tc: an offloaded flow's GSO skb it cannot forward (see gso_forward): dropped
	XLB_REASON_PASS_PARTIAL,      // a FlowPartial flow's frame: passed to xlb_tc, which forwards it
	XLB_REASON_MAX,
};


struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct svc_key);
	__type(value, struct svc_value);
	__uint(max_entries, XLB_MAX_SERVICES);
} services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct svc_key);
	__type(value, __u32); // unused, 0: a hash map needs a value
	__uint(max_entries, XLB_MAX_REALS);
} reals SEC(".maps");

// Firewall-mark classifier (`xlb mark`). XDP runs before netfilter, so no
// frame carries a mark here: the program gives it one from its
// destination, as `iptables -t mangle ... -j MARK` would for IPVS. The trie
// holds one entry per prefix; an entry's ranges are its own rules' and
// then those of the shorter prefixes that contain it (the control plane
// folds them in, internal/packet.MarkTable), so the first range that holds
// the port is the most specific rule's. Mirrored by markKey, markValue.
#define XLB_MAX_MARK_PREFIXES 4096
#define XLB_MARK_RANGES 16

struct mark_key {
	__u32 prefixlen; // LPM: 16 + 96 + /n for IPv4, 16 + /n for IPv6
	__u8 proto;      // IPPROTO_TCP or IPPROTO_UDP
	__u8 family;     // 4 or 6
	__u8 addr[16];   // IPv6, or IPv4-mapped
	__u8 pad[2];     // always 0
};

struct mark_range {
	__u16 lo, hi; // host byte order, inclusive
	__u32 mark;
};

struct mark_value {
	__u32 n; // ranges used
	struct mark_range r[XLB_MARK_RANGES];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct mark_key);
	__type(value, struct mark_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, XLB_MAX_MARK_PREFIXES);
} marks SEC(".maps");

// How many prefixes the trie holds, in entry 0; written by the control
// plane only. With none (most configurations) the program skips the trie:
// an array lookup is inlined by the verifier, a trie lookup is a helper
// call that costs every frame some 5-15 ns (BenchmarkXDP).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} mark_prefixes SEC(".maps");

// Key of the mark_services map: the -f services (-6 -f for IPv6).
// Mirrored by markServiceKey in maps.go.
struct mark_svc_key {
	__u32 mark;
	__u32 v6; // 0 IPv4, 1 IPv6: -f 1 and -6 -f 1 are two services
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct mark_svc_key);
	__type(value, struct svc_value);
	__uint(max_entries, XLB_MAX_SERVICES);
} mark_services SEC(".maps");

// Flags of the locals map's values.
#define XLB_LOCAL_OWN 1   // an address of the director
#define XLB_LOCAL_LADDR 2 // a FULLNAT local address: replies to it are steered

// Key of the locals map. Mirrored by localKey in maps.go.
struct local_key {
	__u8 addr[16]; // IPv6, or IPv4-mapped
};

// The director's own addresses. A frame from a real server's address and
// port to one of them belongs to the director's own connection (a health
// check, an operator's ssh to the real server's port), not to a NAT
// connection: it goes to the kernel, since AF_XDP cannot hand a frame
// back. FULLNAT local addresses are the exception: replies to them are
// what FULLNAT steers.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct local_key);
	__type(value, __u32);
	__uint(max_entries, 1024);
} locals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, XLB_MAX_QUEUES);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, XLB_REASON_MAX);
} counters SEC(".maps");

// SYN admission under pressure, per RX queue. The worker of a queue writes
// its entry when it finds itself overloaded and again when it recovers
// (rarely: never per packet). Mirrored by synGuard in maps.go.
struct syn_guard {
	__u32 level;       // 0: admit every SYN; 1: limit per source prefix; 2: also require a recent ACK
	__u32 auto_per_ms; // at level 0, more SYNs than this in a millisecond: act as level 1 (0: never)
	__u64 interval_ns; // levels 1, 2: a prefix earns one SYN per interval_ns...
	__u64 burst_ns;    // ...and may run burst_ns ahead (burst_ns/interval_ns SYNs)
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct syn_guard);
	__uint(max_entries, XLB_MAX_QUEUES);
} syn_guard SEC(".maps");

// At level 0, the program counts a queue's SYNs per millisecond itself: a
// flood is seen at its first frames, long before its worker (which may not
// even be running) finds its rings filling; and on veth, a copy-mode
// redirect of every frame of a 500k frames/s flood overflows the device's
// queue before XDP, with established segments in it. Written by XDP only.
struct syn_auto {
	__u64 window; // start of the current millisecond, bpf_ktime_get_ns
	__u64 count;  // SYNs in it
	__u64 until;  // act as level 1 until then
};

#define XLB_SYN_AUTO_HOLD_NS (100ULL * 1000 * 1000)

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct syn_auto);
	__uint(max_entries, XLB_MAX_QUEUES);
} syn_auto SEC(".maps");

// SYNs refused per queue, whatever the reason: the worker reads its
// queue's count before it lowers its level, and keeps the level while the
// flood goes on.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, XLB_MAX_QUEUES);
} syn_refused SEC(".maps");

// Source prefix: IPv4 /24 or IPv6 /64, in svc_key's address form.
// Mirrored by srcPrefix in maps.go.
struct src_prefix {
	__u8 addr[16]; // the address, its host bits zeroed
};

// What the program remembers of a source prefix while under pressure.
// Mirrored by srcState in maps.go.
struct src_state {
	__u64 tat;   // GCRA theoretical arrival time of its next SYN, bpf_ktime_get_ns
	__u64 acked; // when it last sent a segment with ACK and without SYN to a service
};

// An LRU map: a spoofed flood from many prefixes recycles the oldest
// entries instead of failing to insert. 65536 entries cost ~6 MiB.
#define XLB_SYN_SOURCES 65536
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct src_prefix);
	__type(value, struct src_state);
	__uint(max_entries, XLB_SYN_SOURCES);
} syn_sources SEC(".maps");

// At level 2 a prefix's SYNs are admitted only if it sent an ACK this
// recently: clients complete handshakes and carry data, spoofed SYNs never
// do.
#define XLB_SYN_ACKED_NS (10ULL * 1000 * 1000 * 1000)

// Flow offload (`xlb run --offload=on`). Set by Load: off, the program
// never looks at the flows map, and the verifier drops that code.
const volatile __u8 xlb_offload = 0;

// The largest frame the AF_XDP sockets take (their frame size less the
// kernel's XDP_PACKET_HEADROOM, 256), 0 for no check; set by Load. A
// larger frame's redirect fails and the frame is lost: in generic mode
// that is a GSO skb (a local sender's TSO on a veth, segments GRO merged
// on a bridge port) of up to 64 KiB, which reaches the program whole.
const volatile __u32 xlb_max_frame = 0;

// Interfaces whose tc ingress runs xlb_tc (generic mode only), by
// ifindex, written by Attach: a frame too large for a socket is passed
// to it (pass_gso) rather than dropped (drop_oversize). Looked up only
// for such frames.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);   // ifindex
	__type(value, __u32); // the interface's MTU when xlb_tc was attached
	__uint(max_entries, 64);
} gso_tc SEC(".maps");

// What the XDP program leaves in the skb's metadata (bpf_xdp_adjust_meta)
// for xlb_tc: the frame is a steered flow's and too large for a socket.
// Generic XDP keeps the metadata in the skb (skb_metadata_set), and runs
// before tc ingress in __netif_receive_skb_core.
#define XLB_GSO_MAGIC 0x67626c78 // "xlbg"

// Default flows map size; Load sets the real one. 40-byte key, 104-byte
// value: about 200 bytes per preallocated element, 13 MiB for 64Ki flows.
#define XLB_MAX_FLOWS 65536
// Default dest_stats size: one slot per destination ID, as MaxDests + 1.
#define XLB_MAX_DESTS 65537

// Key of the flows map: a frame's flow as it arrives, source then
// destination, in svc_key's form (ports as on the wire). Mirrored by
// FlowKey in flows.go.
struct flow_key {
	struct svc_key src;
	struct svc_key dst;
};

// How the program rewrites an offloaded flow's frames. Mirrored by FlowOp.
#define XLB_FLOW_DR 1      // direct routing: MACs, TTL (ip_vs_dr_xmit, modes.drIn)
#define XLB_FLOW_NAT_IN 2  // NAT, client → real: and destination := addr:port (modes.natIn)
#define XLB_FLOW_NAT_OUT 3 // NAT, real → client: and source := addr:port (modes.natOut)
#define XLB_FLOW_TUN4 4    // TUN, ipip: IPv4 in an outer IPv4 header saddr → addr (modes.tunIn)
#define XLB_FLOW_TUN6 5    // TUN, ipip: IPv4 or IPv6 in an outer IPv6 header saddr → addr (modes.tunIn)
#define XLB_FLOW_FNAT_IN 6  // FULLNAT, client → real: source := saddr:sport, destination := addr:port (modes.fullnatIn)
#define XLB_FLOW_FNAT_OUT 7 // FULLNAT, real → client: the same (modes.fullnatOut)

// The flow's sender leaves its checksums to the NIC (CHECKSUM_PARTIAL: a
// sender on this host, TSO on). The XDP program cannot tell such a frame
// from a complete one, nor keep the skb's state natively: it passes the
// flow's frames to xlb_tc (pass_partial), which forwards them as it does
// the flow's GSO skbs, with the skb helpers that keep the checksums
// right; without xlb_tc, to the worker, which completes them. Installed
// in generic mode with xlb_tc only. One path for all of the flow's
// frames keeps them in order: through the worker, a small frame would
// lag behind the GSO skbs tc sends after it.
#define XLB_FLOW_F_PARTIAL 1

// Value of the flows map. The worker writes the first part when it
// installs the flow (a connection it decided and found ESTABLISHED, or a
// UDP flow it forwarded) and deletes the entry when the connection leaves
// that state, expires, loses its destination or its next hop's MAC
// changes; the program only adds to the counters and stamps last_seen,
// atomically (the map is shared by every CPU). Mirrored by flowValue.
struct flow_value {
	__u8 dmac[6];    // next hop's MAC
	__u8 smac[6];    // egress interface's MAC
	__u32 ifindex;   // egress interface: XDP_TX when it is the ingress one, bpf_redirect otherwise
	__u32 mtu;       // egress MTU (IP bytes), 0 for none: larger frames go to the worker
	__u32 dest;      // destination ID, the dest_stats slot
	__u32 op;        // XLB_FLOW_*
	__u32 flags;     // XLB_FLOW_F_*
	__u8 addr[16];   // NAT: the new destination (in) or source (out) address, as svc_key's;
	                 // FULLNAT: the new destination; TUN: the outer destination (the real server)
	__be16 port;     // NAT: the new port, as on the wire; FULLNAT: the new destination port
	__u16 ipd;       // NAT, FULLNAT: the IPv4 header checksum's delta for the addresses, folded (RFC 1624)
	__u16 l4d;       // NAT, FULLNAT: the TCP/UDP checksum's delta for addresses and ports, folded
	__u16 pad2;
	__u8 saddr[16];  // FULLNAT: the new source address; TUN: the outer source (Encap.Src)
	__be16 sport;    // FULLNAT: the new source port
	__u16 pad3[3];
	__u64 packets;   // frames the program forwarded
	__u64 bytes;     // their frame bytes (Ethernet header included, as conntrack counts)
	__u64 last_seen; // bpf_ktime_get_coarse_ns of the latest (CLOCK_MONOTONIC, tick resolution)
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct flow_key);
	__type(value, struct flow_value);
	__uint(max_entries, XLB_MAX_FLOWS);
} flows SEC(".maps");

// IPVS's per-destination packet and byte counters for the frames the
// program forwarded itself, by destination ID; the dataplane adds them to
// the workers' own (IP bytes, as IPVS counts skb->len at L3). One shared
// array with atomic adds rather than a per-CPU one: 2 MiB at 65537
// destinations whatever the CPU count. Mirrored by destCounters.
struct dest_counters {
	__u64 in_pkts, in_bytes, out_pkts, out_bytes;
};

// Mapped into the daemon (BPF_F_MMAPABLE): the rate estimator reads
// every destination every 2 s, without a syscall each.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct dest_counters);
	__uint(max_entries, XLB_MAX_DESTS);
} dest_stats SEC(".maps");

static __always_inline int count(enum xlb_reason reason, int action)
{
	__u32 key = reason;
	__u64 *n = bpf_map_lookup_elem(&counters, &key);

	if (n)
		*n += 1; // per-CPU slot: no atomic needed
	return action;
}

// Frames this program does not steer go to the kernel. Malformed frames go
// there too rather than to XDP_DROP: the kernel drops them anyway and
// accounts for them in its own SNMP counters (IpInHdrErrors,
// IpInTruncatedPkts, TcpInErrs, UdpInErrors), where operators look first.
static __always_inline int pass(enum xlb_reason reason)
{
	return count(reason, XDP_PASS);
}

// Frames to a service that the kernel would drop are dropped here, as the
// kernel does, rather than passed: passed, the kernel would answer some of
// them (a TCP reset for the VIP it owns).
static __always_inline int drop(enum xlb_reason reason)
{
	return count(reason, XDP_DROP);
}

static __always_inline int steer(struct xdp_md *ctx, enum xlb_reason reason)
{
	// Count before the helper: with no socket bound on this queue (and
	// under BPF_PROG_RUN) the helper returns its fallback, XDP_PASS, and
	// the frame would otherwise look like any other passed frame.
	count(reason, XDP_PASS);
	return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
}

static __always_inline void prefix_of(struct src_prefix *pfx, const struct svc_key *src)
{
	__builtin_memcpy(pfx->addr, src->addr, 16);
	if (pfx->addr[10] == 0xff && pfx->addr[11] == 0xff) // IPv4-mapped: the /24
		pfx->addr[15] = 0;
	else
		__builtin_memset(&pfx->addr[8], 0, 8); // IPv6: the /64
}

// syn_guard_check decides whether a TCP segment from src to a service
// arriving on this queue goes on to the worker: XLB_REASON_REDIRECT, or
// the reason it is dropped. Only pure SYNs (syn set, ack clear) are ever
// refused: every other segment belongs to a connection the worker must
// not lose. Under pressure the others only mark their prefix as one that
// completes handshakes. Nothing is looked up at level 0 but syn_guard.
static __always_inline enum xlb_reason syn_guard_check(struct xdp_md *ctx, const struct svc_key *src, int syn, int ack)
{
	__u32 q = ctx->rx_queue_index;
	struct syn_guard *g = bpf_map_lookup_elem(&syn_guard, &q);
	struct src_prefix pfx;
	struct src_state *st;
	__u32 level;
	__u64 now, t;

	if (!g || (syn && ack) || (!syn && !ack))
		return XLB_REASON_REDIRECT;
	level = g->level;
	if (level == 0) {
		struct syn_auto *a;

		if (!syn || !g->auto_per_ms)
			return XLB_REASON_REDIRECT;
		a = bpf_map_lookup_elem(&syn_auto, &q);
		if (!a)
			return XLB_REASON_REDIRECT;
		now = bpf_ktime_get_ns();
		if (now - a->window > 1000000ULL) {
			a->window = now;
			a->count = 0;
		}
		if (++a->count > g->auto_per_ms)
			a->until = now + XLB_SYN_AUTO_HOLD_NS;
		if (now >= a->until)
			return XLB_REASON_REDIRECT;
		level = 1;
	}
	prefix_of(&pfx, src);
	now = bpf_ktime_get_ns();
	st = bpf_map_lookup_elem(&syn_sources, &pfx);
	if (!syn) {
		if (!st) {
			struct src_state n = {.acked = now};

			bpf_map_update_elem(&syn_sources, &pfx, &n, BPF_ANY);
		} else if (now - st->acked > 1000000000ULL) {
			st->acked = now; // at most one write a second per prefix
		}
		return XLB_REASON_REDIRECT;
	}
	if (!st) {
		struct src_state n = {.tat = now + g->interval_ns};

		if (level >= 2)
			return XLB_REASON_DROP_SYN_PRESSURE;
		bpf_map_update_elem(&syn_sources, &pfx, &n, BPF_ANY);
		return XLB_REASON_REDIRECT;
	}
	// GCRA: admit if the prefix is no more than burst_ns ahead of now.
	// A refused SYN is charged too, up to 2 * burst_ns ahead: a prefix
	// that keeps flooding stays refused (drops land on it, not on the
	// prefixes within their rate) until it slows down for burst_ns.
	// CPUs racing on one entry may admit a SYN or two more: harmless.
	t = st->tat > now ? st->tat : now;
	if (t + g->interval_ns - now > g->burst_ns) {
		if (t + g->interval_ns - now <= 2 * g->burst_ns)
			st->tat = t + g->interval_ns;
		return XLB_REASON_DROP_SYN_RATE;
	}
	if (level >= 2 && (!st->acked || now - st->acked > XLB_SYN_ACKED_NS)) {
		st->tat = t + g->interval_ns;
		return XLB_REASON_DROP_SYN_PRESSURE;
	}
	st->tat = t + g->interval_ns;
	return XLB_REASON_REDIRECT;
}

// What the checks after the lookup need of a parsed frame.
struct pkt {
	struct ethhdr *eth;
	void *data_end;
	struct iphdr *iph; // IPv4 header, or NULL for IPv6
	void *l3;          // the IP header
	__u16 vid;         // VLAN ID of the one tag (inline or stripped); 0 untagged
	__u8 tags;         // VLAN tags, inline and stripped together
	__u8 stripped;     // the tag is in the RX descriptor, not the frame
	__be16 vproto;     // stripped tag's TPID
	__u16 vtci;        // stripped tag's TCI
};

// Puts a tag the NIC stripped back into the frame before it goes to
// AF_XDP, so that the workers, which see only the frame, forward it on its
// VLAN. Returns 0, or -1 without headroom.
static __always_inline int reinsert_tag(struct xdp_md *ctx, struct pkt *p)
{
	void *data, *data_end;
	struct vlan_hdr *vh;
	__u8 macs[12];

	if (!p->stripped || p->vid == 0)
		return 0; // untagged or priority-tagged: nothing to keep
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + 12 > data_end)
		return -1;
	__builtin_memcpy(macs, data, 12);
	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(*vh)))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + 12 + sizeof(__be16) + sizeof(*vh) > data_end)
		return -1;
	__builtin_memcpy(data, macs, 12);
	*(__be16 *)(data + 12) = p->vproto;
	vh = data + 12 + sizeof(__be16);
	vh->tci = bpf_htons(p->vtci);
	// encapsulated_proto is where the EtherType was: it is still there,
	// now right after the TCI.
	return 0;
}

static __always_inline int vlan_served(__u16 vid)
{
	return (xlb_vlans[(vid >> 6) & 63] >> (vid & 63)) & 1;
}

// IPv4 header checksum (RFC 791, RFC 1071): the one's complement sum of the
// header's 16-bit words, the checksum included, is 0xffff when it is right.
// hlen has been checked against the frame; each word is checked again for
// the verifier.
static __always_inline int ipv4_csum_ok(struct iphdr *iph, void *data_end)
{
	__u16 *w = (__u16 *)iph;
	__u32 words = iph->ihl * 2, sum = 0;

	for (int i = 0; i < 30; i++) { // IHL <= 15: at most 60 bytes
		if (i >= words || (void *)(w + i + 1) > data_end)
			break;
		sum += w[i];
	}
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff;
}

// Martian sources, as the kernel's ip_route_input_slow and ip6_rcv_core
// drop them: 0/8, 127/8, 224/4 (multicast) and 240/4 (reserved, with
// 255.255.255.255); ::, ::1, ff00::/8 and IPv4-mapped. A source equal to the
// destination (a LAND attack) is one too. addr is IPv4-mapped for IPv4.
static __always_inline int martian(const struct svc_key *src, const struct svc_key *dst, int v4)
{
	const __u32 *a = (const __u32 *)src->addr;
	const __u32 *b = (const __u32 *)dst->addr;

	if (a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3])
		return 1;
	if (v4) {
		__u8 hi = src->addr[12];

		return hi == 0 || hi == 127 || hi >= 224;
	}
	if (src->addr[0] == 0xff)
		return 1;
	if (a[0] == 0 && a[1] == 0) {
		if (a[2] == 0 && (a[3] == 0 || a[3] == bpf_htonl(1)))
			return 1; // :: and ::1
		if (a[2] == bpf_htonl(0xffff))
			return 1; // ::ffff:0:0/96
	}
	return 0;
}

// Checks a frame that the lookup would steer: the tests the kernel makes
// before it delivers a frame, which AF_XDP skips. The first that fails
// decides; the others are left to the kernel (pass_vlan) or drop it.
static __always_inline int admit(struct pkt *p, const struct svc_key *src, const struct svc_key *dst)
{
	struct ethhdr *eth = p->eth;

	if (p->tags > 1 || !vlan_served(p->vid))
		return XLB_REASON_PASS_VLAN;
	if (eth->h_dest[0] & 1) // group bit: broadcast or multicast
		return XLB_REASON_DROP_L2_MULTICAST;
	if (eth->h_dest[0] != xlb_mac[0] || eth->h_dest[1] != xlb_mac[1] ||
	    eth->h_dest[2] != xlb_mac[2] || eth->h_dest[3] != xlb_mac[3] ||
	    eth->h_dest[4] != xlb_mac[4] || eth->h_dest[5] != xlb_mac[5])
		return XLB_REASON_DROP_OTHER_HOST;
	if (p->iph && !ipv4_csum_ok(p->iph, p->data_end))
		return XLB_REASON_DROP_BAD_CHECKSUM;
	if (martian(src, dst, p->iph != NULL))
		return XLB_REASON_DROP_MARTIAN;
	return XLB_REASON_MAX;
}


// The IPv4 header checksum after the TTL drops by one (RFC 1624 eqn. 3,
// HC' = ~(~HC + ~m + m') over the TTL/protocol word), exactly as
// packet.DecrementTTLWithChecksumUpdate computes it.
static __always_inline void ipv4_dec_ttl(struct iphdr *iph)
{
	__u16 old = ((__u16)iph->ttl << 8) | iph->protocol;
	__u32 sum = (__u16)~bpf_ntohs(iph->check);

	sum += (__u16)~old;
	sum += (__u16)(old - 0x100);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	iph->ttl--;
	iph->check = bpf_htons((__u16)~sum);
}

// csum_apply returns checksum c (network order) updated by a folded
// delta d: ~fold(~c + d), as packet.ChecksumDelta.Apply computes it.
static __always_inline __be16 csum_apply(__be16 c, __u16 d)
{
	__u32 s = (__u16)~bpf_ntohs(c);

	s += d;
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return bpf_htons((__u16)~s);
}

// l4_of returns the TCP or UDP header of the untagged frame p, with the
// whole header inside the frame, or NULL: IPv4 after its IHL, IPv6 right
// after its fixed header (NAT offload takes no extension headers). It is
// recomputed rather than kept in struct pkt: a packet pointer kept on
// the stack for the whole program multiplies the verifier's states.
static __always_inline void *l4_of(struct pkt *p, __u8 proto)
{
	void *l4;
	__u32 n = proto == IPPROTO_TCP ? sizeof(struct tcphdr) : sizeof(struct udphdr);

	if (p->iph) {
		struct iphdr *iph = p->iph;

		if ((void *)(iph + 1) > p->data_end)
			return NULL;
		l4 = (void *)iph + iph->ihl * 4;
	} else {
		struct ipv6hdr *ip6h = p->l3;

		if ((void *)(ip6h + 1) > p->data_end || ip6h->nexthdr != proto)
			return NULL;
		l4 = ip6h + 1;
	}
	if (l4 + n > p->data_end)
		return NULL;
	return l4;
}

// nat rewrites the addresses and ports of the frame, whose TCP or UDP
// header is at l4 (l4_of), as packet.SetAddrPortsWithChecksumUpdate
// does: NAT in the destination, NAT out the source (from addr:port),
// FULLNAT both (source from saddr:sport, destination from addr:port); the
// IPv4 header checksum by ipd, the TCP or UDP checksum by l4d (a UDP
// checksum of 0, none computed, stays 0; a computed 0 is sent as 0xffff,
// RFC 768). A field that does not change is written with its own value,
// which changes no byte; the deltas leave it out, as the Go side does.
static __always_inline void nat(struct pkt *p, void *l4, __u8 proto, const struct flow_value *v, __u32 op)
{
	void *data_end = p->data_end;
	__be16 *ports = l4;
	int fnat = op == XLB_FLOW_FNAT_IN || op == XLB_FLOW_FNAT_OUT;
	int out = op == XLB_FLOW_NAT_OUT;

	if ((void *)(ports + 4) > data_end)
		return;
	if (p->iph) {
		struct iphdr *iph = p->iph;

		if ((void *)(iph + 1) > data_end)
			return;
		if (fnat) {
			__builtin_memcpy(&iph->saddr, &v->saddr[12], 4);
			__builtin_memcpy(&iph->daddr, &v->addr[12], 4);
		} else if (out) {
			__builtin_memcpy(&iph->saddr, &v->addr[12], 4);
		} else {
			__builtin_memcpy(&iph->daddr, &v->addr[12], 4);
		}
		iph->check = csum_apply(iph->check, v->ipd);
	} else {
		struct ipv6hdr *ip6h = p->l3;

		if ((void *)(ip6h + 1) > data_end)
			return;
		if (fnat) {
			__builtin_memcpy(&ip6h->saddr, v->saddr, 16);
			__builtin_memcpy(&ip6h->daddr, v->addr, 16);
		} else if (out) {
			__builtin_memcpy(&ip6h->saddr, v->addr, 16);
		} else {
			__builtin_memcpy(&ip6h->daddr, v->addr, 16);
		}
	}
	if (fnat) {
		ports[0] = v->sport;
		ports[1] = v->port;
	} else {
		ports[out ? 0 : 1] = v->port;
	}
	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end)
			return;
		th->check = csum_apply(th->check, v->l4d);
	} else {
		__be16 c = ports[3]; // the UDP checksum

		if (c) {
			c = csum_apply(c, v->l4d);
			ports[3] = c ? c : 0xffff;
		}
	}
}

// The IPv4 header checksum of the 20-byte header at h, its checksum field
// 0 (RFC 1071): the words are summed as stored, which gives the checksum
// as stored (the one's complement sum does not depend on byte order).
static __always_inline __u16 ipv4_csum20(const __u16 *h)
{
	__u32 sum = 0;

	for (int i = 0; i < 10; i++)
		sum += h[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

// The outer DS field for an inner one: DSCP and ECN copied, but CE, which
// becomes ECT(0) (RFC 6040 section 4.1, normal mode), as modes.ecnEncap.
static __always_inline __u8 ecn_encap(__u8 ds)
{
	return (ds & 3) == 3 ? (ds & ~3) | 2 : ds;
}

// The egress of an offloaded frame the rewrite left in place: its
// counters (frame bytes flen, as conntrack counts them; IP bytes iplen,
// before any encapsulation, as IPVS counts them), then XDP_TX back out
// of the ingress interface or a redirect to the other.
static __always_inline int offload_send(struct xdp_md *ctx, struct flow_value *v, __u32 op, __u32 flen, __u32 iplen)
{
	struct dest_counters *dc;
	__u32 id;

	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, (__u64)flen);
	// The coarse clock (CLOCK_MONOTONIC at the last tick): the precise
	// one reads kvm-clock, which cost ~25 of the ~100 ns this path took
	// in BPF_PROG_RUN on the bench's VM. A stamp up to a tick early only
	// moves an expiry measured in seconds by milliseconds.
	v->last_seen = bpf_ktime_get_coarse_ns();
	id = v->dest;
	dc = bpf_map_lookup_elem(&dest_stats, &id);
	if (dc && (op == XLB_FLOW_NAT_OUT || op == XLB_FLOW_FNAT_OUT)) {
		__sync_fetch_and_add(&dc->out_pkts, 1);
		__sync_fetch_and_add(&dc->out_bytes, iplen);
	} else if (dc) {
		__sync_fetch_and_add(&dc->in_pkts, 1);
		__sync_fetch_and_add(&dc->in_bytes, iplen);
	}
	count(XLB_REASON_REDIRECT_OFFLOAD, XDP_TX);
	if (v->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(v->ifindex, 0);
}

// tunnel encapsulates a TUN flow's frame, as modes.tunIn does for ipip:
// an outer header of hl bytes (20: IPv4, protocol 4; 40: IPv6, next
// header 4 or 41) from saddr to addr pushed between the Ethernet header
// and the packet, whose TTL or hop limit drops by one. Outer fields as
// tunIn's: TTL the inner one after the decrement, DS field by
// ecn_encap, IPv4 identification and DF the inner ones, IPv6 flow label
// 0; Ethernet padding after the packet is cut. The checks come first and
// write nothing: a frame is encapsulated whole or left to the worker (a
// TTL of 1, larger than the MTU with the outer header, the worker's
// frag-needed or packet-too-big; IPv6 in IPv4, whose outer identification
// is a hash of the inner packet, stays the worker's).
static __always_inline int tunnel(struct xdp_md *ctx, struct pkt *p, struct flow_value *v, __u32 op, const __u32 hl)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = p->data_end;
	__u32 iplen, flen = data_end - data, mtu = v->mtu, pad;
	struct ethhdr *eth;
	__u8 *o, ttl, ds;
	int v4 = p->iph != NULL;

	if (v4) {
		struct iphdr *iph = p->iph;

		if ((void *)(iph + 1) > data_end || iph->ttl <= 1)
			return -1;
		iplen = bpf_ntohs(iph->tot_len);
	} else {
		struct ipv6hdr *ip6h = p->l3;

		if (hl == 20 || (void *)(ip6h + 1) > data_end || ip6h->hop_limit <= 1)
			return -1;
		iplen = sizeof(*ip6h) + bpf_ntohs(ip6h->payload_len);
	}
	if (mtu && iplen + hl > mtu)
		return -1;
	if (iplen + sizeof(*eth) > flen) // the parser checked it; the verifier wants it here
		return -1;
	pad = flen - sizeof(*eth) - iplen;
	if (bpf_xdp_adjust_head(ctx, -(int)hl))
		return -1;
	if (pad && bpf_xdp_adjust_tail(ctx, -(int)pad)) {
		bpf_xdp_adjust_head(ctx, (int)hl);
		return -1;
	}
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	o = (void *)(eth + 1);
	if (v4) {
		struct iphdr *in = (void *)(o + hl);

		if ((void *)(in + 1) > data_end)
			return drop(XLB_REASON_MALFORMED); // cannot be: the frame held it before the push
		ipv4_dec_ttl(in);
		ttl = in->ttl;
		ds = ecn_encap(in->tos);
		if (hl == 20) {
			struct iphdr *oh = (void *)o;

			o[0] = 0x45; // version 4, IHL 5
			oh->tos = ds;
			oh->tot_len = bpf_htons(20 + iplen);
			oh->id = in->id;
			oh->frag_off = in->frag_off & bpf_htons(0x4000); // DF; the inner is no fragment
			oh->ttl = ttl;
			oh->protocol = IPPROTO_IPIP;
			oh->check = 0;
			__builtin_memcpy(&oh->saddr, &v->saddr[12], 4);
			__builtin_memcpy(&oh->daddr, &v->addr[12], 4);
			oh->check = ipv4_csum20((const __u16 *)oh);
		}
	} else {
		struct ipv6hdr *in = (void *)(o + hl);
		__u8 *b = (void *)in;

		if ((void *)(in + 1) > data_end)
			return drop(XLB_REASON_MALFORMED);
		in->hop_limit--;
		ttl = in->hop_limit;
		ds = ecn_encap((b[0] << 4) | (b[1] >> 4)); // the traffic class
	}
	if (hl == 40) {
		struct ipv6hdr *oh = (void *)o;

		if ((void *)(oh + 1) > data_end)
			return drop(XLB_REASON_MALFORMED);
		o[0] = 0x60 | (ds >> 4);
		o[1] = ds << 4;
		o[2] = 0;
		o[3] = 0;
		oh->payload_len = bpf_htons(iplen);
		oh->nexthdr = v4 ? IPPROTO_IPIP : IPPROTO_IPV6;
		oh->hop_limit = ttl;
		__builtin_memcpy(&oh->saddr, v->saddr, 16);
		__builtin_memcpy(&oh->daddr, v->addr, 16);
	}
	__builtin_memcpy(eth->h_dest, v->dmac, 6);
	__builtin_memcpy(eth->h_source, v->smac, 6);
	eth->h_proto = hl == 20 ? bpf_htons(ETH_P_IP) : bpf_htons(ETH_P_IPV6);
	return offload_send(ctx, v, op, flen, iplen);
}

// to_tc marks the frame in its metadata for xlb_tc, which runs next on
// the same skb (generic mode) and forwards it, and returns 0; or -1 when
// the interface runs no xlb_tc.
static __always_inline int to_tc(struct xdp_md *ctx)
{
	__u32 ifindex = ctx->ingress_ifindex;
	void *meta, *data;

	if (!bpf_map_lookup_elem(&gso_tc, &ifindex) || bpf_xdp_adjust_meta(ctx, -(int)sizeof(__u32)))
		return -1;
	meta = (void *)(long)ctx->data_meta;
	data = (void *)(long)ctx->data;
	if (meta + sizeof(__u32) > data)
		return -1;
	*(__u32 *)meta = XLB_GSO_MAGIC;
	return 0;
}

// oversize disposes of a steered frame too large for a socket, which the
// redirect would lose: with xlb_tc on this interface it goes on to tc;
// otherwise it is dropped, counted. Such a frame cannot go to the
// worker: AF_XDP copy mode takes one frame of at most xlb_max_frame
// bytes.
static __always_inline int oversize(struct xdp_md *ctx)
{
	if (to_tc(ctx))
		return drop(XLB_REASON_DROP_OVERSIZE);
	return pass(XLB_REASON_PASS_GSO);
}

// partial passes a frame of a FlowPartial flow to xlb_tc, which forwards
// it with the skb's checksum state (CHECKSUM_PARTIAL) intact, as it does
// the flow's GSO skbs: all of the flow's frames then take one path, and
// the receiver sees them in order. -1 (to the worker, which completes
// the checksum) without xlb_tc.
static __always_inline int partial(struct xdp_md *ctx)
{
	if (to_tc(ctx))
		return -1;
	return pass(XLB_REASON_PASS_PARTIAL);
}

// too_big decides for an offloaded flow's frame of iplen IP bytes, more
// than its egress MTU: a GSO skb (larger than the ingress interface's
// MTU, which only GRO or a local sender's TSO makes in generic mode) goes
// to xlb_tc, which sends it segmented; anything else, -1, to the worker,
// which answers a frame really too big for the path (frag needed, packet
// too big). A GSO skb of a few segments fits a socket's frame: the worker
// would answer it as too big, and the sender retransmit it, after a
// timeout.
static __always_inline int too_big(struct xdp_md *ctx, __u32 iplen)
{
	__u32 ifindex = ctx->ingress_ifindex, *mtu = bpf_map_lookup_elem(&gso_tc, &ifindex);

	if (!mtu || iplen <= *mtu || to_tc(ctx))
		return -1;
	return pass(XLB_REASON_PASS_GSO);
}

// offload forwards a frame of an offloaded flow itself: the frame's flow
// is in the flows map, it passed admit, and it carries no SYN, FIN or RST
// (those are the worker's, whose state machine they drive). It returns
// the XDP action, or -1 for a frame the worker must handle: no entry, a
// TTL of 1 or less (the worker answers time exceeded), larger than the
// egress MTU (the worker answers too big), or a VLAN tag (the worker
// keeps it). The rewrite is modes.drIn's: next hop's and egress MACs, TTL
// or hop limit minus one, and for NAT and FULLNAT modes.natIn's,
// natOut's, fullnatIn's or fullnatOut's addresses and ports; for TUN
// (ipip) tunnel's encapsulation, modes.tunIn's. The checks are
// modes.check's, in its order.
static __always_inline int offload(struct xdp_md *ctx, struct pkt *p, const struct svc_key *src,
			      const struct svc_key *dst)
{
	struct flow_key k;
	struct flow_value *v;
	struct ethhdr *eth = p->eth;
	void *data = (void *)(long)ctx->data;
	__u32 iplen, op, part;
	void *l4 = NULL;

	if (p->tags || p->stripped || p->l3 != (void *)(eth + 1))
		return -1;
	__builtin_memcpy(&k.src, src, sizeof(k.src));
	__builtin_memcpy(&k.dst, dst, sizeof(k.dst));
	v = bpf_map_lookup_elem(&flows, &k);
	if (!v)
		return -1;
	// Read once: the verifier takes every read of map memory as a new
	// unknown value, and would walk each combination.
	op = v->op;
	part = v->flags & XLB_FLOW_F_PARTIAL;
	if (op < XLB_FLOW_DR || op > XLB_FLOW_FNAT_OUT)
		return -1;
	if (part && (op == XLB_FLOW_TUN4 || op == XLB_FLOW_TUN6))
		return -1;
	if (op == XLB_FLOW_TUN4)
		return tunnel(ctx, p, v, op, 20);
	if (op == XLB_FLOW_TUN6)
		return tunnel(ctx, p, v, op, 40);
	if (op != XLB_FLOW_DR) {
		// Every header NAT writes must be in the frame before anything
		// is written: a frame is rewritten whole or left to the worker.
		l4 = l4_of(p, src->proto);
		if (!l4)
			return -1;
	}
	if (p->iph) {
		struct iphdr *iph = p->iph;

		if ((void *)(iph + 1) > p->data_end || iph->ttl <= 1)
			return -1;
		iplen = bpf_ntohs(iph->tot_len);
		if (v->mtu && iplen > v->mtu)
			return too_big(ctx, iplen);
		if (part)
			return partial(ctx);
		ipv4_dec_ttl(iph);
	} else {
		struct ipv6hdr *ip6h = p->l3;

		if ((void *)(ip6h + 1) > p->data_end || ip6h->hop_limit <= 1)
			return -1;
		iplen = sizeof(*ip6h) + bpf_ntohs(ip6h->payload_len);
		if (v->mtu && iplen > v->mtu)
			return too_big(ctx, iplen);
		if (part)
			return partial(ctx);
		ip6h->hop_limit--;
	}
	if (l4)
		nat(p, l4, src->proto, v, op);
	__builtin_memcpy(eth->h_dest, v->dmac, 6);
	__builtin_memcpy(eth->h_source, v->smac, 6);
	return offload_send(ctx, v, op, p->data_end - data, iplen);
}

// offl: the frame may be an offloaded flow's (TCP without SYN, FIN or
// RST, or UDP; not an ICMP error).
static __always_inline int verdict(struct xdp_md *ctx, struct pkt *p, enum xlb_reason steered,
				   const struct svc_key *src, const struct svc_key *dst, int offl)
{
	enum xlb_reason r = admit(p, src, dst);

	if (r == XLB_REASON_MAX) {
		if (xlb_offload && offl) {
			int a = offload(ctx, p, src, dst);

			if (a >= 0)
				return a;
		}
		if (xlb_max_frame && ctx->data_end - ctx->data > xlb_max_frame)
			return oversize(ctx);
		if (reinsert_tag(ctx, p))
			return pass(XLB_REASON_PASS_VLAN); // the kernel keeps the tag
		return steer(ctx, steered);
	}
	if (r == XLB_REASON_PASS_VLAN)
		return pass(r);
	return drop(r);
}

static __always_inline void map4(__u8 addr[16], __be32 v4)
{
	addr[10] = 0xff;
	addr[11] = 0xff;
	__builtin_memcpy(&addr[12], &v4, 4);
}

// Looks k up in m, then with port 0 as ip_vs_service_find does: the
// exact entry first, then the port-0 one of the same protocol and address
// (IPVS's persistent all-ports services, whose NAT real servers are
// configured with port 0 too: they answer from any port). k is left as it
// was.
static __always_inline void *lookup_port0(void *m, struct svc_key *k)
{
	__be16 port = k->port;
	void *v = bpf_map_lookup_elem(m, k);

	if (!v && port) {
		k->port = 0;
		v = bpf_map_lookup_elem(m, k);
		k->port = port;
	}
	return v;
}

// mark_service is the firewall-mark service of a frame to dst, or NULL:
// the mark of the longest prefix holding dst's address, in the first of
// its ranges holding dst's port, and that mark's service of dst's family.
// A draining mark service takes no SYN (syn): like the kernel, whose
// deleted service is no longer found, the lookup then falls back to the
// address and port, as ip_vs_service_find does after the fwmark lookup.
static __always_inline struct svc_value *mark_service(const struct svc_key *dst, int syn)
{
	struct mark_key k = {.prefixlen = 8 * (2 + 16), .proto = dst->proto};
	struct mark_svc_key sk = {};
	struct mark_value *v;
	struct svc_value *sv;
	const __u8 *a = dst->addr;
	__u16 port = bpf_ntohs(dst->port);
	int v4 = a[10] == 0xff && a[11] == 0xff && !(a[0] | a[1] | a[2] | a[3] | a[4] | a[5] | a[6] | a[7] | a[8] | a[9]);
	__u32 zero = 0, *n = bpf_map_lookup_elem(&mark_prefixes, &zero);

	if (!n || !*n)
		return NULL;
	k.family = v4 ? 4 : 6;
	__builtin_memcpy(k.addr, dst->addr, 16);
	v = bpf_map_lookup_elem(&marks, &k);
	if (!v)
		return NULL;
	for (int i = 0; i < XLB_MARK_RANGES; i++) {
		if (i >= v->n)
			return NULL;
		if (port < v->r[i].lo || port > v->r[i].hi)
			continue;
		sk.mark = v->r[i].mark;
		sk.v6 = !v4;
		sv = bpf_map_lookup_elem(&mark_services, &sk);
		if (!sv || (syn && (sv->flags & XLB_SVC_DRAINING)))
			return NULL;
		return sv;
	}
	return NULL;
}

// Looks the flow dst ← src up and steers, passes or drops the frame. msrc
// and mdst are the frame's own addresses, for the martian check: the flow's
// but for an ICMP error, whose flow is the one its quote belongs to.
static __always_inline int lookup(struct xdp_md *ctx, struct pkt *p, struct svc_key *dst,
				  struct svc_key *src, int syn, int tcp, int tsyn, int tack,
				  const struct svc_key *msrc, const struct svc_key *mdst, int offl)
{
	struct svc_value *sv;

	// A marked frame's fwmark service first, as ip_vs_service_find
	// checks skb->mark before the address and port.
	sv = mark_service(dst, syn);
	if (!sv)
		sv = lookup_port0(&services, dst);
	if (sv) {
		if (syn && (sv->flags & XLB_SVC_DRAINING))
			return pass(XLB_REASON_PASS_NO_SERVICE);
		if (tcp) {
			enum xlb_reason r = syn_guard_check(ctx, src, tsyn, tack);

			if (r != XLB_REASON_REDIRECT) {
				__u32 q = ctx->rx_queue_index;
				__u64 *n = bpf_map_lookup_elem(&syn_refused, &q);

				if (n)
					__sync_fetch_and_add(n, 1);
				return count(r, XDP_DROP);
			}
		}
		return verdict(ctx, p, XLB_REASON_REDIRECT, msrc, mdst, offl);
	}
	if (lookup_port0(&reals, src)) {
		__u32 *local = bpf_map_lookup_elem(&locals, dst->addr);

		if (local && !(*local & XLB_LOCAL_LADDR))
			return pass(XLB_REASON_PASS_LOCAL);
		return verdict(ctx, p, XLB_REASON_REDIRECT_REPLY, msrc, mdst, offl);
	}
	return pass(XLB_REASON_PASS_NO_SERVICE);
}

// Checks the TCP or UDP header at l4 whose IP payload is l4len bytes long,
// fills the ports of dst and src, and steers, passes or drops the frame.
static __always_inline int l4(struct xdp_md *ctx, struct pkt *p, void *l4, __u32 l4len,
			      __u8 proto, struct svc_key *dst, struct svc_key *src)
{
	void *data_end = p->data_end;
	int syn = 0, tsyn = 0, tack = 0, offl = 1;

	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if (l4len < sizeof(*th) || (void *)(th + 1) > data_end)
			return pass(XLB_REASON_MALFORMED);
		if (th->doff < 5 || th->doff * 4 > l4len)
			return pass(XLB_REASON_MALFORMED);
		dst->port = th->dest;
		src->port = th->source;
		syn = th->syn && !th->ack;
		tsyn = th->syn;
		tack = th->ack;
		offl = !th->syn && !th->fin && !th->rst;
	} else {
		struct udphdr *uh = l4;
		__u32 ulen;

		if (l4len < sizeof(*uh) || (void *)(uh + 1) > data_end)
			return pass(XLB_REASON_MALFORMED);
		ulen = bpf_ntohs(uh->len);
		if (ulen < sizeof(*uh) || ulen > l4len)
			return pass(XLB_REASON_MALFORMED);
		dst->port = uh->dest;
		src->port = uh->source;
	}
	dst->proto = proto;
	src->proto = proto;
	return lookup(ctx, p, dst, src, syn, proto == IPPROTO_TCP, tsyn, tack, src, dst, offl);
}

// ICMP and ICMPv6 errors, which quote the packet they are about (RFC 792,
// RFC 4443 section 3): they belong to the quoted packet's connection, so
// the lookup is the quoted flow's, reversed (Katran's parse_icmp): an
// error about a packet the director sent to a client (VIP:vport → client)
// is looked up as client → VIP:vport and steered if that is a service; one
// about a packet it sent to a real server (client or local address → RS:
// rport) as RS:rport → ..., steered if that is a real. Anything else (echo,
// redirects, quotes of other protocols, of non-first fragments or with
// IPv6 extension headers) stays with the kernel, which answers echo to the
// VIPs it owns.
#define ICMP_DEST_UNREACH 3
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PARAMPROB 4
#define ICMP_HDR_LEN 8 // type, code, checksum, the word before the quote

// Fills dst and src with the reversed flow of the TCP or UDP ports at
// ports, and looks it up.
static __always_inline int icmp_lookup(struct xdp_md *ctx, struct pkt *p, __be16 *ports, __u8 proto,
				       struct svc_key *dst, struct svc_key *src,
				       const struct svc_key *osrc, const struct svc_key *odst)
{
	dst->port = ports[0]; // the quoted source: VIP:vport of a reply
	src->port = ports[1];
	dst->proto = proto;
	src->proto = proto;
	return lookup(ctx, p, dst, src, 0, 0, 0, 0, osrc, odst, 0);
}

// The ICMP message at icmp (IP offset off) of an IPv4 packet of tot bytes
// at l3 that is not a fragment.
static __always_inline int icmp4(struct xdp_md *ctx, struct pkt *p, void *l3, __u32 off, __u32 tot,
				 const struct svc_key *osrc, const struct svc_key *odst)
{
	__u8 *ic = l3 + off;
	struct svc_key dst = {}, src = {};
	struct iphdr *q;
	__be16 *ports;
	__u32 qhl;

	if (off + ICMP_HDR_LEN > tot || (void *)(ic + ICMP_HDR_LEN) > p->data_end)
		return pass(XLB_REASON_MALFORMED);
	if (ic[0] != ICMP_DEST_UNREACH && ic[0] != ICMP_TIME_EXCEEDED && ic[0] != ICMP_PARAMETERPROB)
		return pass(XLB_REASON_PASS_NOT_TCP_UDP);
	q = (void *)(ic + ICMP_HDR_LEN);
	if (off + ICMP_HDR_LEN + sizeof(*q) > tot || (void *)(q + 1) > p->data_end)
		return pass(XLB_REASON_MALFORMED);
	if (q->version != 4 || q->ihl < 5)
		return pass(XLB_REASON_MALFORMED);
	if ((q->protocol != IPPROTO_TCP && q->protocol != IPPROTO_UDP) || (q->frag_off & bpf_htons(IP_OFFSET)))
		return pass(XLB_REASON_PASS_NOT_TCP_UDP);
	qhl = q->ihl * 4;
	if (off + ICMP_HDR_LEN + qhl + 8 > tot)
		return pass(XLB_REASON_MALFORMED);
	ports = (void *)q + qhl;
	if ((void *)(ports + 4) > p->data_end)
		return pass(XLB_REASON_MALFORMED);
	map4(dst.addr, q->saddr);
	map4(src.addr, q->daddr);
	return icmp_lookup(ctx, p, ports, q->protocol, &dst, &src, osrc, odst);
}

// The ICMPv6 message at IP offset off of an IPv6 packet of end bytes at l3.
static __always_inline int icmp6(struct xdp_md *ctx, struct pkt *p, void *l3, __u32 off, __u32 end,
				 const struct svc_key *osrc, const struct svc_key *odst)
{
	__u8 *ic = l3 + off;
	struct svc_key dst = {}, src = {};
	struct ipv6hdr *q;
	__be16 *ports;

	if (off + ICMP_HDR_LEN > end || (void *)(ic + ICMP_HDR_LEN) > p->data_end)
		return pass(XLB_REASON_MALFORMED);
	if (ic[0] < ICMPV6_DEST_UNREACH || ic[0] > ICMPV6_PARAMPROB)
		return pass(XLB_REASON_PASS_NOT_TCP_UDP);
	q = (void *)(ic + ICMP_HDR_LEN);
	if (off + ICMP_HDR_LEN + sizeof(*q) > end || (void *)(q + 1) > p->data_end)
		return pass(XLB_REASON_MALFORMED);
	if (q->version != 6)
		return pass(XLB_REASON_MALFORMED);
	if (q->nexthdr != IPPROTO_TCP && q->nexthdr != IPPROTO_UDP)
		return pass(XLB_REASON_PASS_NOT_TCP_UDP);
	ports = (void *)(q + 1);
	if (off + ICMP_HDR_LEN + sizeof(*q) + 8 > end || (void *)(ports + 4) > p->data_end)
		return pass(XLB_REASON_MALFORMED);
	__builtin_memcpy(dst.addr, &q->saddr, 16);
	__builtin_memcpy(src.addr, &q->daddr, 16);
	return icmp_lookup(ctx, p, ports, q->nexthdr, &dst, &src, osrc, odst);
}


static __always_inline int ipv4(struct xdp_md *ctx, struct pkt *p, void *l3)
{
	struct iphdr *iph = l3;
	struct svc_key dst = {}, src = {};
	__u32 hlen, tot;

	if ((void *)(iph + 1) > p->data_end)
		return pass(XLB_REASON_MALFORMED);
	if (iph->version != 4 || iph->ihl < 5)
		return pass(XLB_REASON_MALFORMED);
	hlen = iph->ihl * 4;
	tot = bpf_ntohs(iph->tot_len);
	if (tot < hlen || l3 + tot > p->data_end)
		return pass(XLB_REASON_MALFORMED);
	if (iph->protocol == IPPROTO_ICMP && !(iph->frag_off & bpf_htons(IP_MF | IP_OFFSET))) {
		p->iph = iph;
		map4(dst.addr, iph->daddr);
		map4(src.addr, iph->saddr);
		return icmp4(ctx, p, l3, hlen, tot, &src, &dst);
	}
	if (iph->protocol != IPPROTO_TCP && iph->protocol != IPPROTO_UDP)
		return pass(XLB_REASON_PASS_NOT_TCP_UDP);
	// MF set or a non-zero offset. A first fragment has ports, but its
	// followers go to the kernel whatever we do; splitting one datagram
	// between AF_XDP and the kernel guarantees it is never delivered.
	if (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return pass(XLB_REASON_PASS_FRAGMENT);

	p->iph = iph;
	p->l3 = l3;
	map4(dst.addr, iph->daddr);
	map4(src.addr, iph->saddr);
	return l4(ctx, p, l3 + hlen, tot - hlen, iph->protocol, &dst, &src);
}

// Extension headers that are not walked: Mobility (135), HIP (139), Shim6
// (140) and the experimental 253 and 254 carry no transport header in
// practice; they go to the kernel as pass_ipv6_ext. ESP (50) counts as not
// TCP/UDP: what follows it is encrypted.
static __always_inline int ipv6_ext_other(__u8 nexthdr)
{
	switch (nexthdr) {
	case IPPROTO_MH: // 135
	case 139:        // HIP, RFC 7401
	case 140:        // Shim6, RFC 5533
	case 253:        // experimentation, RFC 3692
	case 254:
		return 1;
	}
	return 0;
}

static __always_inline int ipv6(struct xdp_md *ctx, struct pkt *p, void *l3)
{
	struct ipv6hdr *ip6h = l3;
	struct svc_key dst = {}, src = {};
	__u32 plen, off = sizeof(*ip6h), end;
	__u8 next;

	if ((void *)(ip6h + 1) > p->data_end)
		return pass(XLB_REASON_MALFORMED);
	if (ip6h->version != 6)
		return pass(XLB_REASON_MALFORMED);
	plen = bpf_ntohs(ip6h->payload_len);
	if ((void *)(ip6h + 1) + plen > p->data_end)
		return pass(XLB_REASON_MALFORMED);
	end = sizeof(*ip6h) + plen;
	next = ip6h->nexthdr;

	// Walk the extension headers to the transport header, as the kernel's
	// ipv6_skip_exthdr does: Hop-by-Hop (first only, RFC 8200 section
	// 4.1), Routing, Destination Options, AH and Fragment. A fragment, but
	// an atomic one (offset 0, M clear, RFC 6946), is passed like an IPv4
	// one. Every header must lie in the payload.
	for (int i = 0; i < XLB_MAX_EXTHDRS; i++) {
		__u8 *h = l3 + off;
		__u32 hlen;

		if (next == IPPROTO_TCP || next == IPPROTO_UDP)
			break;
		if (next != IPPROTO_HOPOPTS && next != IPPROTO_ROUTING && next != IPPROTO_DSTOPTS &&
		    next != IPPROTO_AH && next != IPPROTO_FRAGMENT)
			break;
		if (next == IPPROTO_HOPOPTS && i > 0)
			return pass(XLB_REASON_MALFORMED);
		if (off + 8 > end || (void *)(h + 8) > p->data_end)
			return pass(XLB_REASON_MALFORMED);
		if (next == IPPROTO_FRAGMENT) {
			if (*(__be16 *)(h + 2) & bpf_htons(IP6_OFFSET | IP6_MF))
				return pass(XLB_REASON_PASS_FRAGMENT);
			hlen = 8;
		} else if (next == IPPROTO_AH) {
			hlen = (h[1] + 2) * 4; // RFC 4302 section 2.2
		} else {
			hlen = (h[1] + 1) * 8;
		}
		if (off + hlen > end)
			return pass(XLB_REASON_MALFORMED);
		next = h[0];
		off += hlen;
	}
	__builtin_memcpy(dst.addr, &ip6h->daddr, 16);
	__builtin_memcpy(src.addr, &ip6h->saddr, 16);
	p->l3 = l3;
	if (next == IPPROTO_ICMPV6)
		return icmp6(ctx, p, l3, off, end, &src, &dst);
	if (next != IPPROTO_TCP && next != IPPROTO_UDP) {
		if (next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS ||
		    next == IPPROTO_AH || next == IPPROTO_FRAGMENT || ipv6_ext_other(next))
			return pass(XLB_REASON_PASS_IPV6_EXT);
		return pass(XLB_REASON_PASS_NOT_TCP_UDP);
	}
	return l4(ctx, p, l3 + off, end - off, next, &dst, &src);
}

// The frame's link layer: at most one VLAN tag in the frame, plus the one
// the NIC may have stripped when hw is set (the device-bound program).
static __always_inline int classify(struct xdp_md *ctx, int hw)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *l3 = eth + 1;
	struct pkt p = {.eth = eth, .data_end = data_end};
	__be16 proto;

	if (l3 > data_end)
		return pass(XLB_REASON_MALFORMED);
	proto = eth->h_proto;
	// One 802.1Q or 802.1ad tag. rx-vlan-offload would move it into
	// metadata before XDP runs, so Attach turns it off; a second tag in
	// the frame (QinQ) counts as not IP.
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vh = l3;

		if ((void *)(vh + 1) > data_end)
			return pass(XLB_REASON_MALFORMED);
		proto = vh->encapsulated_proto;
		p.vid = bpf_ntohs(vh->tci) & VLAN_VID_MASK;
		p.tags = 1;
		l3 = vh + 1;
	}
	if (hw) {
		__be16 vproto;
		__u16 tci;

		if (bpf_xdp_metadata_rx_vlan_tag(ctx, &vproto, &tci) == 0) {
			p.vid = tci & VLAN_VID_MASK; // the outer tag decides
			p.tags++;
			p.stripped = 1;
			p.vproto = vproto;
			p.vtci = tci;
		}
	}

	switch (proto) {
	case bpf_htons(ETH_P_IP):
		return ipv4(ctx, &p, l3);
	case bpf_htons(ETH_P_IPV6):
		return ipv6(ctx, &p, l3);
	case bpf_htons(ETH_P_ARP):
		return pass(XLB_REASON_PASS_ARP);
	}
	return pass(XLB_REASON_PASS_NOT_IP);
}

// The program for any attachment and for BPF_PROG_RUN: it sees the tags
// left in the frame.
SEC("xdp")
int xlb_xdp(struct xdp_md *ctx)
{
	return classify(ctx, 0);
}

// The same, device-bound (BPF_F_XDP_DEV_BOUND_ONLY) so that it may ask
// the driver for a tag stripped into the RX descriptor. It can only be
// attached natively to the device it was loaded for.
SEC("xdp")
int xlb_xdp_dev(struct xdp_md *ctx)
{
	return classify(ctx, 1);
}

// xlb_tc, the tc ingress companion of the program in generic mode (the
// XDP program runs first, on the same skb). It forwards what generic XDP
// cannot: a GSO skb (or any frame larger than a socket's) of an
// offloaded flow, which the XDP offload leaves alone because it exceeds
// the egress MTU and the XDP redirect refuses (__xdp_generic_ok_fwd_dev
// compares skb->len with the MTU). tc's bpf_redirect goes through
// dev_queue_xmit, which segments the skb at egress (validate_xmit_skb) if
// the device cannot take it whole, as IPVS's forwarding does.
//
// Only skbs the XDP program marked (oversize) are looked at; the others
// go on untouched (TC_ACT_UNSPEC: tcx's next program, or the stack).

#define GSO_ETH 14 // Ethernet header: tc ingress sees the frame from it
// Headers pulled into the linear part before they are read: Ethernet,
// an IPv4 header with options, a TCP header with options (or the whole
// frame if shorter: a FlowPartial flow's pure ACK is 66 bytes).
#define GSO_PULL (GSO_ETH + 60 + 60)

static __always_inline int gso_drop(enum xlb_reason r)
{
	return count(r, TC_ACT_SHOT);
}

// gso_counts adds an skb of len bytes (Ethernet header included) whose
// headers are hdr bytes to v's and its destination's counters, as the
// segments it carries would count on the worker's path, which sees them
// one by one once the sender's TSO is off: gso_segs packets (computed
// from gso_size if the driver left it 0), each with its own copy of the
// headers. IPVS, which sees the skb, counts it as one packet of skb->len.
static __always_inline void gso_counts(struct __sk_buff *skb, struct flow_value *v, __u32 op, __u32 len, __u32 hdr)
{
	__u32 segs = skb->gso_segs, size = skb->gso_size, id;
	struct dest_counters *dc;
	__u64 flen, iplen;

	if (!segs)
		segs = size && len > hdr ? (len - hdr + size - 1) / size : 1;
	flen = len + (__u64)(segs - 1) * hdr;
	iplen = flen - (__u64)segs * GSO_ETH;
	__sync_fetch_and_add(&v->packets, segs);
	__sync_fetch_and_add(&v->bytes, flen);
	v->last_seen = bpf_ktime_get_coarse_ns(); // as offload_send
	id = v->dest;
	dc = bpf_map_lookup_elem(&dest_stats, &id);
	if (dc && (op == XLB_FLOW_NAT_OUT || op == XLB_FLOW_FNAT_OUT)) {
		__sync_fetch_and_add(&dc->out_pkts, segs);
		__sync_fetch_and_add(&dc->out_bytes, iplen);
	} else if (dc) {
		__sync_fetch_and_add(&dc->in_pkts, segs);
		__sync_fetch_and_add(&dc->in_bytes, iplen);
	}
}

// gso_forward looks the marked skb's flow up in the flows map, the XDP
// offload's, and for an offloaded flow rewrites it as offload does (DR:
// MACs and TTL or hop limit; NAT and FULLNAT: addresses and ports too)
// and redirects it to the flow's egress. The checksums are updated with
// the skb helpers, which keep a CHECKSUM_PARTIAL skb right (every GSO
// skb is one: its TCP or UDP checksum field holds the pseudo-header's
// sum, which only the addresses change, BPF_F_PSEUDO_HDR) as well as a
// complete one. Dropped, counted: a flow not offloaded (drop_gso_no_flow:
// the worker cannot take the skb), and drop_gso_unfit for what the XDP
// offload would leave to the worker: a VLAN tag, SYN, FIN or RST, a TTL
// or hop limit of 1 or less, a segment (gso_size and the headers) larger
// than the egress MTU, IPv6 extension headers, and TUN flows (the skb
// would need bpf_skb_adjust_room and a new GSO type).
static __always_inline int gso_forward(struct __sk_buff *skb)
{
	void *data, *data_end;
	struct ethhdr *eth;
	struct flow_key k = {};
	struct flow_value *v;
	__u32 len = skb->len, l3hl, l4off, hdr, seg, op, csum_off, mtu;
	__u64 mm = 0;
	__be16 ttlw = 0;
	__u8 proto, hop = 0;
	int v4;

	if (skb->vlan_present || bpf_skb_pull_data(skb, len < GSO_PULL ? len : GSO_PULL))
		return gso_drop(XLB_REASON_DROP_GSO_UNFIT);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return gso_drop(XLB_REASON_DROP_GSO_UNFIT);
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = (void *)(eth + 1);

		if ((void *)(iph + 1) > data_end || iph->ihl < 5 || iph->ttl <= 1 ||
		    (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET)))
			return gso_drop(XLB_REASON_DROP_GSO_UNFIT);
		l3hl = iph->ihl * 4;
		proto = iph->protocol;
		ttlw = *(__be16 *)&iph->ttl; // TTL and protocol, one checksummed word
		map4(k.src.addr, iph->saddr);
		map4(k.dst.addr, iph->daddr);
		v4 = 1;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = (void *)(eth + 1);

		if ((void *)(ip6h + 1) > data_end || ip6h->hop_limit <= 1)
			return gso_drop(XLB_REASON_DROP_GSO_UNFIT);
		l3hl = sizeof(*ip6h);
		proto = ip6h->nexthdr;
		hop = ip6h->hop_limit;
		__builtin_memcpy(k.src.addr, &ip6h->saddr, 16);
		__builtin_memcpy(k.dst.addr, &ip6h->daddr, 16);
		v4 = 0;
	} else {
		return gso_drop(XLB_REASON_DROP_GSO_UNFIT);
	}
	l4off = GSO_ETH + l3hl;
	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = data + l4off;

		if ((void *)(th + 1) > data_end || th->doff < 5 || th->syn || th->fin || th->rst)
			return gso_drop(XLB_REASON_DROP_GSO_UNFIT);
		hdr = l4off + th->doff * 4;
		k.src.port = th->source;
		k.dst.port = th->dest;
		csum_off = l4off + offsetof(struct tcphdr, check);
	} else if (proto == IPPROTO_UDP) {
		struct udphdr *uh = data + l4off;

		if ((void *)(uh + 1) > data_end)
			return gso_drop(XLB_REASON_DROP_GSO_UNFIT);
		hdr = l4off + sizeof(*uh);
		k.src.port = uh->source;
		k.dst.port = uh->dest;
		csum_off = l4off + offsetof(struct udphdr, check);
		mm = BPF_F_MARK_MANGLED_0; // a UDP checksum of 0 (none) stays 0
	} else {
		return gso_drop(XLB_REASON_DROP_GSO_UNFIT);
	}
	k.src.proto = proto;
	k.dst.proto = proto;
	v = bpf_map_lookup_elem(&flows, &k);
	if (!v)
		return gso_drop(XLB_REASON_DROP_GSO_NO_FLOW);
	op = v->op;
	if (op < XLB_FLOW_DR || op > XLB_FLOW_FNAT_OUT || op == XLB_FLOW_TUN4 || op == XLB_FLOW_TUN6)
		return gso_drop(XLB_REASON_DROP_GSO_UNFIT);
	// The largest segment the egress sends: gso_size of payload behind
	// the headers, or the skb itself if it is not GSO.
	seg = skb->gso_size ? hdr - GSO_ETH + skb->gso_size : len - GSO_ETH;
	mtu = v->mtu;
	if (mtu && seg > mtu)
		return gso_drop(XLB_REASON_DROP_GSO_UNFIT);

	// Every check is done: from here the skb is rewritten whole. The
	// helpers invalidate packet pointers, so the rest works on offsets.
	if (v4) {
		__be16 nw = ttlw;

		((__u8 *)&nw)[0] -= 1;
		bpf_l3_csum_replace(skb, GSO_ETH + offsetof(struct iphdr, check), ttlw, nw, sizeof(nw));
		bpf_skb_store_bytes(skb, GSO_ETH + offsetof(struct iphdr, ttl), &nw, 1, 0);
	} else {
		hop -= 1;
		bpf_skb_store_bytes(skb, GSO_ETH + offsetof(struct ipv6hdr, hop_limit), &hop, 1, 0);
	}
	if (op != XLB_FLOW_DR) {
		int fnat = op == XLB_FLOW_FNAT_IN || op == XLB_FLOW_FNAT_OUT;
		int out = op == XLB_FLOW_NAT_OUT;
		__be16 oldp[2], newp[2]; // source, destination port
		__s64 d;

		// The addresses: source then destination, contiguous in both
		// headers (RFC 791 section 3.1, RFC 8200 section 3), which are
		// the pseudo-header's too (RFC 9293 section 3.1, RFC 8200
		// section 8.1).
		if (v4) {
			__be32 old[2], new[2];

			if (bpf_skb_load_bytes(skb, GSO_ETH + offsetof(struct iphdr, saddr), old, sizeof(old)))
				return gso_drop(XLB_REASON_DROP_GSO_UNFIT);
			new[0] = old[0];
			new[1] = old[1];
			if (fnat) {
				__builtin_memcpy(&new[0], &v->saddr[12], 4);
				__builtin_memcpy(&new[1], &v->addr[12], 4);
			} else if (out) {
				__builtin_memcpy(&new[0], &v->addr[12], 4);
			} else {
				__builtin_memcpy(&new[1], &v->addr[12], 4);
			}
			d = bpf_csum_diff(old, sizeof(old), new, sizeof(new), 0);
			bpf_l3_csum_replace(skb, GSO_ETH + offsetof(struct iphdr, check), 0, d, 0);
			bpf_l4_csum_replace(skb, csum_off, 0, d, BPF_F_PSEUDO_HDR | mm);
			bpf_skb_store_bytes(skb, GSO_ETH + offsetof(struct iphdr, saddr), new, sizeof(new), 0);
		} else {
			__be32 old[8], new[8];

			if (bpf_skb_load_bytes(skb, GSO_ETH + offsetof(struct ipv6hdr, saddr), old, sizeof(old)))
				return gso_drop(XLB_REASON_DROP_GSO_UNFIT);
			__builtin_memcpy(new, old, sizeof(new));
			if (fnat) {
				__builtin_memcpy(&new[0], v->saddr, 16);
				__builtin_memcpy(&new[4], v->addr, 16);
			} else if (out) {
				__builtin_memcpy(&new[0], v->addr, 16);
			} else {
				__builtin_memcpy(&new[4], v->addr, 16);
			}
			d = bpf_csum_diff(old, sizeof(old), new, sizeof(new), 0);
			bpf_l4_csum_replace(skb, csum_off, 0, d, BPF_F_PSEUDO_HDR | mm);
			bpf_skb_store_bytes(skb, GSO_ETH + offsetof(struct ipv6hdr, saddr), new, sizeof(new), 0);
		}
		// The ports: in the checksummed data, not the pseudo-header
		// (a CHECKSUM_PARTIAL skb's sum is computed over them at egress).
		if (bpf_skb_load_bytes(skb, l4off, oldp, sizeof(oldp)))
			return gso_drop(XLB_REASON_DROP_GSO_UNFIT);
		newp[0] = oldp[0];
		newp[1] = oldp[1];
		if (fnat) {
			newp[0] = v->sport;
			newp[1] = v->port;
		} else if (out) {
			newp[0] = v->port;
		} else {
			newp[1] = v->port;
		}
		d = bpf_csum_diff((__be32 *)oldp, sizeof(oldp), (__be32 *)newp, sizeof(newp), 0);
		bpf_l4_csum_replace(skb, csum_off, 0, d, mm);
		bpf_skb_store_bytes(skb, l4off, newp, sizeof(newp), 0);
	}
	bpf_skb_store_bytes(skb, 0, v->dmac, 12, 0); // destination then source MAC, as in flow_value
	gso_counts(skb, v, op, len, hdr);
	count(XLB_REASON_REDIRECT_GSO, 0);
	return bpf_redirect(v->ifindex, 0);
}

SEC("tc")
int xlb_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *meta = (void *)(long)skb->data_meta;

	if (meta + sizeof(__u32) > data || *(__u32 *)meta != XLB_GSO_MAGIC)
		return TC_ACT_UNSPEC;
	return gso_forward(skb);
}

// xlb_tc without the mark: every skb is taken for a marked one. For
// BPF_PROG_RUN only (Objects.GSOTestProgram), whose skbs carry no
// metadata; never attached.
SEC("tc")
int xlb_tc_unmarked(struct __sk_buff *skb)
{
	return gso_forward(skb);
}

char _license[] SEC("license") = "Dual BSD/GPL";
