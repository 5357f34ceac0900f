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
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// Map sizes. A hash map preallocates max_entries elements; with a 20-byte
// key and 8-byte value that is roughly 100 bytes per element including
// htab overhead, so 16Ki services cost ~1.6 MiB and 64Ki reals ~6.5 MiB.
// IPVS has no hard limit, but a director with more than 16Ki virtual
// services is far outside what xlb targets.
#define XLB_MAX_SERVICES 16384
#define XLB_MAX_REALS 65536
// One AF_XDP socket per RX queue. 64 queues covers common 25/100G NICs;
// frames on a higher queue find no socket and fall back to XDP_PASS.
#define XLB_MAX_QUEUES 64

// IPv4 flags and fragment offset (RFC 791 section 3.1), kernel-internal.
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

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
	__u32 flags; // reserved for the dataplane; this program ignores it
};

// Outcome of one frame, the index into the counters map. Mirrored by
// Reason in reason.go; the Go names are the lower-case suffixes.
enum xlb_reason {
	XLB_REASON_PASS_NOT_IP,       // not ARP, IPv4 or IPv6 (after at most one VLAN tag)
	XLB_REASON_PASS_ARP,          // ARP
	XLB_REASON_PASS_NOT_TCP_UDP,  // IP, but neither TCP nor UDP (ICMP, ...)
	XLB_REASON_PASS_FRAGMENT,     // IPv4 TCP/UDP fragment, first or not
	XLB_REASON_PASS_IPV6_EXT,     // IPv6 with an extension header
	XLB_REASON_PASS_NO_SERVICE,   // TCP/UDP, neither to a service nor from a real
	XLB_REASON_MALFORMED,         // truncated or inconsistent header, passed
	XLB_REASON_REDIRECT,          // to a service: redirected
	XLB_REASON_REDIRECT_REPLY,    // from a real server: redirected
	XLB_REASON_DROP_SYN_RATE,     // SYN to a service under pressure, its source prefix over its rate: dropped
	XLB_REASON_DROP_SYN_PRESSURE, // SYN to a service under heavy pressure, its prefix sent no recent ACK: dropped
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

// Checks the TCP or UDP header at l4 whose IP payload is l4len bytes long,
// fills the ports of dst and src, and steers or passes the frame.
static __always_inline int l4(struct xdp_md *ctx, void *l4, void *data_end, __u32 l4len,
			      __u8 proto, struct svc_key *dst, struct svc_key *src)
{
	int syn = 0, ack = 0;

	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if (l4len < sizeof(*th) || (void *)(th + 1) > data_end)
			return pass(XLB_REASON_MALFORMED);
		if (th->doff < 5 || th->doff * 4 > l4len)
			return pass(XLB_REASON_MALFORMED);
		dst->port = th->dest;
		src->port = th->source;
		syn = th->syn;
		ack = th->ack;
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

	if (bpf_map_lookup_elem(&services, dst)) {
		if (proto == IPPROTO_TCP) {
			enum xlb_reason r = syn_guard_check(ctx, src, syn, ack);

			if (r != XLB_REASON_REDIRECT) {
				__u32 q = ctx->rx_queue_index;
				__u64 *n = bpf_map_lookup_elem(&syn_refused, &q);

				if (n)
					__sync_fetch_and_add(n, 1);
				return count(r, XDP_DROP);
			}
		}
		return steer(ctx, XLB_REASON_REDIRECT);
	}
	if (bpf_map_lookup_elem(&reals, src))
		return steer(ctx, XLB_REASON_REDIRECT_REPLY);
	return pass(XLB_REASON_PASS_NO_SERVICE);
}

static __always_inline void map4(__u8 addr[16], __be32 v4)
{
	addr[10] = 0xff;
	addr[11] = 0xff;
	__builtin_memcpy(&addr[12], &v4, 4);
}

static __always_inline int ipv4(struct xdp_md *ctx, void *l3, void *data_end)
{
	struct iphdr *iph = l3;
	struct svc_key dst = {}, src = {};
	__u32 hlen, tot;

	if ((void *)(iph + 1) > data_end)
		return pass(XLB_REASON_MALFORMED);
	if (iph->version != 4 || iph->ihl < 5)
		return pass(XLB_REASON_MALFORMED);
	hlen = iph->ihl * 4;
	tot = bpf_ntohs(iph->tot_len);
	if (tot < hlen || l3 + tot > data_end)
		return pass(XLB_REASON_MALFORMED);
	if (iph->protocol != IPPROTO_TCP && iph->protocol != IPPROTO_UDP)
		return pass(XLB_REASON_PASS_NOT_TCP_UDP);
	// MF set or a non-zero offset. A first fragment has ports, but its
	// followers go to the kernel whatever we do; splitting one datagram
	// between AF_XDP and the kernel guarantees it is never delivered.
	if (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return pass(XLB_REASON_PASS_FRAGMENT);

	map4(dst.addr, iph->daddr);
	map4(src.addr, iph->saddr);
	return l4(ctx, l3 + hlen, data_end, tot - hlen, iph->protocol, &dst, &src);
}

static __always_inline int ipv6_ext(__u8 nexthdr)
{
	switch (nexthdr) {
	case IPPROTO_HOPOPTS:  // 0
	case IPPROTO_ROUTING:  // 43
	case IPPROTO_FRAGMENT: // 44
	case IPPROTO_AH:       // 51
	case IPPROTO_DSTOPTS:  // 60
	case IPPROTO_MH:       // 135
	case 139:              // HIP, RFC 7401
	case 140:              // Shim6, RFC 5533
	case 253:              // experimentation, RFC 3692
	case 254:
		return 1;
	}
	return 0;
}

static __always_inline int ipv6(struct xdp_md *ctx, void *l3, void *data_end)
{
	struct ipv6hdr *ip6h = l3;
	struct svc_key dst = {}, src = {};
	__u32 plen;

	if ((void *)(ip6h + 1) > data_end)
		return pass(XLB_REASON_MALFORMED);
	if (ip6h->version != 6)
		return pass(XLB_REASON_MALFORMED);
	plen = bpf_ntohs(ip6h->payload_len);
	if ((void *)(ip6h + 1) + plen > data_end)
		return pass(XLB_REASON_MALFORMED);
	if (ip6h->nexthdr != IPPROTO_TCP && ip6h->nexthdr != IPPROTO_UDP) {
		if (ipv6_ext(ip6h->nexthdr))
			return pass(XLB_REASON_PASS_IPV6_EXT);
		return pass(XLB_REASON_PASS_NOT_TCP_UDP);
	}

	__builtin_memcpy(dst.addr, &ip6h->daddr, 16);
	__builtin_memcpy(src.addr, &ip6h->saddr, 16);
	return l4(ctx, ip6h + 1, data_end, plen, ip6h->nexthdr, &dst, &src);
}

SEC("xdp")
int xlb_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *l3 = eth + 1;
	__be16 proto;

	if (l3 > data_end)
		return pass(XLB_REASON_MALFORMED);
	proto = eth->h_proto;
	// One 802.1Q or 802.1ad tag. Most NICs strip the outer tag into
	// metadata (rx-vlan-offload) before XDP runs, so this matters only
	// when offload is off; a second tag (QinQ) counts as not IP.
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vh = l3;

		if ((void *)(vh + 1) > data_end)
			return pass(XLB_REASON_MALFORMED);
		proto = vh->encapsulated_proto;
		l3 = vh + 1;
	}

	switch (proto) {
	case bpf_htons(ETH_P_IP):
		return ipv4(ctx, l3, data_end);
	case bpf_htons(ETH_P_IPV6):
		return ipv6(ctx, l3, data_end);
	case bpf_htons(ETH_P_ARP):
		return pass(XLB_REASON_PASS_ARP);
	}
	return pass(XLB_REASON_PASS_NOT_IP);
}

char _license[] SEC("license") = "Dual BSD/GPL";
