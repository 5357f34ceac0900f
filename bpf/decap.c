// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

// xlb's tunnel decapsulation program for real servers of TUN services
// (ipvsadm -i), which xlb runs with `xlb decap --iface IF` on hosts whose
// kernel has no ipip/ip6_tunnel/fou module, as Katran ships its decap
// program. It strips the outer header of a tunnel packet addressed to one
// of the host's own addresses and passes the inner packet to the stack:
//
//	+-----+----------------+------------+----------------------+
//	| eth | outer IPv4/6   | [UDP, GUE] | inner IPv4/6 ...     |   in
//	+-----+----------------+------------+----------------------+
//	                      +-----+----------------------+
//	                      | eth | inner IPv4/6 ...     |          out (XDP_PASS)
//	                      +-----+----------------------+
//
// Tunnels matched (outer destination in the locals map):
//   IPv4 protocol 4 (IPIP, RFC 2003) and 41 (6in4, RFC 4213);
//   IPv6 next header 4 (4in6) and 41 (6in6, RFC 2473), directly or after
//   one Destination Options header (the Tunnel Encapsulation Limit option
//   Linux's ip6_tunnel adds);
//   UDP to the configured GUE port with GUE variant 0 (a 4-byte GUE header
//   and its options, inner protocol 4 or 41: what --tun-type gue sends) or
//   variant 1 (RFC draft-ietf-intarea-gue
//   section 4: the UDP payload is the inner IP packet itself, told apart by
//   its version nibble 4 or 6, Katran's choice);
//   IPv4 protocol / IPv6 next header 47, GRE version 0 (RFC 2784, with the
//   RFC 2890 key and sequence number) carrying IPv4 or IPv6, as IPVS's
//   --tun-type gre sends it (with or without --tun-csum). GRE with the
//   routing bit, version 1 (PPTP) or another payload type passes untouched.
// Everything else passes untouched. The outer IPv4 checksum is not
// verified, as the kernel's own ipip does not re-verify after ip_rcv and
// as Katran's decap does not: the inner packet's checksums still protect
// what the host delivers.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// A host has few addresses; 256 covers many VIP-less hosts with
// secondary addresses.
#define DECAP_MAX_LOCALS 256

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

#ifndef IPPROTO_GRE
#define IPPROTO_GRE 47
#endif

// GRE flags and version (RFC 2784 section 2, RFC 2890 section 2), host order.
#define GRE_C 0x8000
#define GRE_R 0x4000
#define GRE_K 0x2000
#define GRE_S 0x1000
#define GRE_VER 0x0007

struct gre_base {
	__be16 flags; // C R K S, reserved, version
	__be16 proto; // Ethernet type of the payload
};

struct vlan_hdr {
	__be16 tci;
	__be16 encapsulated_proto;
};

// IPv6 Destination Options header (RFC 8200 section 4.6).
struct opt_hdr {
	__u8 nexthdr;
	__u8 hdrlen; // in 8-byte units, not counting the first 8
};

// Key of the locals map. Mirrored by decapLocalKey in decap.go.
struct local_key {
	__u8 addr[16]; // IPv6, or IPv4-mapped ::ffff:a.b.c.d
};

// Element 0 of the config map. Mirrored by decapConfig in decap.go.
struct decap_config {
	__be16 gue_port; // UDP port of GUE, network byte order; 0: GUE off
	__u16 pad;
	__u32 flags; // reserved, 0
};

// Outcome of one frame, the index into the counters map. Mirrored by
// DecapReason in decap.go; the Go names are the lower-case suffixes.
enum decap_reason {
	DECAP_REASON_PASS_NOT_IP,      // not IPv4 or IPv6 (after at most one VLAN tag)
	DECAP_REASON_PASS_NOT_TUNNEL,  // IP, but no tunnel protocol (nor UDP to the GUE port)
	DECAP_REASON_PASS_NOT_LOCAL,   // tunnel packet to an address not in the locals map
	DECAP_REASON_PASS_FRAGMENT,    // outer IPv4 fragment: no reassembly here
	DECAP_REASON_PASS_MALFORMED,   // truncated or inconsistent outer header
	DECAP_REASON_DROP_INNER,       // tunnel packet for us with a bad inner header
	DECAP_REASON_DROP_ADJUST,      // bpf_xdp_adjust_head failed
	DECAP_REASON_DECAP_4IN4,       // IPv4 in IPv4 stripped
	DECAP_REASON_DECAP_6IN4,       // IPv6 in IPv4 stripped
	DECAP_REASON_DECAP_4IN6,       // IPv4 in IPv6 stripped
	DECAP_REASON_DECAP_6IN6,       // IPv6 in IPv6 stripped
	DECAP_REASON_DECAP_GUE,        // GUE (variant 1, either family) stripped
	DECAP_REASON_DECAP_GRE,        // GRE (version 0, either family) stripped
	DECAP_REASON_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct local_key);
	__type(value, __u32); // unused, 0
	__uint(max_entries, DECAP_MAX_LOCALS);
} decap_locals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct decap_config);
	__uint(max_entries, 1);
} decap_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, DECAP_REASON_MAX);
} decap_counters SEC(".maps");

static __always_inline int count(enum decap_reason reason, int action)
{
	__u32 key = reason;
	__u64 *n = bpf_map_lookup_elem(&decap_counters, &key);

	if (n)
		*n += 1; // per-CPU slot: no atomic needed
	return action;
}

static __always_inline int is_local(struct local_key *k)
{
	return bpf_map_lookup_elem(&decap_locals, k) != 0;
}

static __always_inline __be16 gue_port(void)
{
	__u32 zero = 0;
	struct decap_config *c = bpf_map_lookup_elem(&decap_config, &zero);

	return c ? c->gue_port : 0;
}

// Checks the inner packet at inner: its version must be want (4 or 6),
// or either when want is 0 (GUE variant 1 tells the family only by the
// version nibble), and its header must fit. Returns the inner version, or
// 0 if it is bad.
static __always_inline int inner_ok(void *inner, void *data_end, int want)
{
	__u8 *b = inner;
	int v;

	if ((void *)(b + 1) > data_end)
		return 0;
	v = *b >> 4;
	if (want && v != want)
		return 0;
	if (v == 4) {
		struct iphdr *iph = inner;

		if ((void *)(iph + 1) > data_end || iph->ihl < 5)
			return 0;
		if (inner + bpf_ntohs(iph->tot_len) > data_end || bpf_ntohs(iph->tot_len) < iph->ihl * 4)
			return 0;
		return 4;
	}
	if (v == 6) {
		struct ipv6hdr *ip6h = inner;

		if ((void *)(ip6h + 1) > data_end)
			return 0;
		if ((void *)(ip6h + 1) + bpf_ntohs(ip6h->payload_len) > data_end)
			return 0;
		return 6;
	}
	return 0;
}

// Removes the olen bytes of outer headers after the Ethernet header (l2len
// bytes: 14, or 18 with a VLAN tag) and sets the Ethernet type to that of
// the inner version v.
static __always_inline int strip(struct xdp_md *ctx, __u32 l2len, __u32 olen, int v,
				 enum decap_reason reason)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 l2[sizeof(struct ethhdr) + sizeof(struct vlan_hdr)];
	__be16 type = v == 4 ? bpf_htons(ETH_P_IP) : bpf_htons(ETH_P_IPV6);

	if (data + sizeof(l2) > data_end)
		return count(DECAP_REASON_PASS_MALFORMED, XDP_PASS);
	__builtin_memcpy(l2, data, sizeof(l2));
	if (olen > 128 || bpf_xdp_adjust_head(ctx, (int)olen))
		return count(DECAP_REASON_DROP_ADJUST, XDP_DROP);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (l2len == sizeof(struct ethhdr)) {
		struct ethhdr *eth = data;

		if ((void *)(eth + 1) > data_end)
			return count(DECAP_REASON_DROP_ADJUST, XDP_DROP);
		__builtin_memcpy(eth, l2, sizeof(*eth));
		eth->h_proto = type;
	} else {
		struct vlan_hdr *vh = data + sizeof(struct ethhdr);

		if ((void *)(vh + 1) > data_end)
			return count(DECAP_REASON_DROP_ADJUST, XDP_DROP);
		__builtin_memcpy(data, l2, sizeof(l2));
		vh->encapsulated_proto = type;
	}
	return count(reason, XDP_PASS);
}

// GUE: the UDP header at l4 (ulen bytes of IP payload) to the GUE port.
// Both variants: 1, the inner packet right after UDP (Katran's), told by
// its version nibble; and 0 with a GUE header (what IPVS's and xlb's
// --tun-type gue send: version 00, C clear, Hlen words of options, the
// inner protocol 4 or 41). GUE control messages (C set) are passed.
static __always_inline int gue(struct xdp_md *ctx, void *l4, void *data_end, __u32 l2len,
			       __u32 olen)
{
	struct udphdr *uh = l4;
	__u8 *g = (void *)(uh + 1);
	__u32 hl;
	int v, want;

	if ((void *)(g + 1) > data_end)
		return count(DECAP_REASON_DROP_INNER, XDP_DROP);
	if ((g[0] >> 6) != 0) {
		v = inner_ok(g, data_end, 0);
		if (!v)
			return count(DECAP_REASON_DROP_INNER, XDP_DROP);
		return strip(ctx, l2len, olen + sizeof(*uh), v, DECAP_REASON_DECAP_GUE);
	}
	if ((void *)(g + 4) > data_end)
		return count(DECAP_REASON_DROP_INNER, XDP_DROP);
	if (g[0] & 0x20)
		return count(DECAP_REASON_PASS_NOT_TUNNEL, XDP_PASS); // a control message
	hl = (g[0] & 0x1f) * 4;
	want = g[1] == IPPROTO_IPIP ? 4 : g[1] == IPPROTO_IPV6 ? 6 : 0;
	if (!want)
		return count(DECAP_REASON_DROP_INNER, XDP_DROP);
	v = inner_ok(g + 4 + hl, data_end, want);
	if (!v)
		return count(DECAP_REASON_DROP_INNER, XDP_DROP);
	return strip(ctx, l2len, olen + sizeof(*uh) + 4 + hl, v, DECAP_REASON_DECAP_GUE);
}

// Length of the GRE header at l4 (l4len bytes of IP payload) and the
// payload's version in *v, or 0 for GRE that is not IP-in-GRE version 0
// (pass it), or -1 if truncated.
static __always_inline int gre_len(void *l4, void *data_end, __u32 l4len, int *v)
{
	struct gre_base *g = l4;
	__u16 flags;
	__u32 len = sizeof(*g);

	if (l4len < sizeof(*g) || (void *)(g + 1) > data_end)
		return -1;
	flags = bpf_ntohs(g->flags);
	if (flags & (GRE_R | GRE_VER))
		return 0;
	if (g->proto == bpf_htons(ETH_P_IP))
		*v = 4;
	else if (g->proto == bpf_htons(ETH_P_IPV6))
		*v = 6;
	else
		return 0;
	if (flags & GRE_C)
		len += 4; // checksum and reserved1, not verified (see above)
	if (flags & GRE_K)
		len += 4;
	if (flags & GRE_S)
		len += 4;
	if (len > l4len)
		return -1;
	return len;
}

// Strips IP (olen bytes) and GRE from a GRE packet to this host.
static __always_inline int gre(struct xdp_md *ctx, void *l4, void *data_end, __u32 l4len,
			       __u32 l2len, __u32 olen)
{
	int v = 0;
	int glen = gre_len(l4, data_end, l4len, &v);

	if (glen < 0)
		return count(DECAP_REASON_PASS_MALFORMED, XDP_PASS);
	if (glen == 0)
		return count(DECAP_REASON_PASS_NOT_TUNNEL, XDP_PASS);
	if (!inner_ok(l4 + glen, data_end, v))
		return count(DECAP_REASON_DROP_INNER, XDP_DROP);
	return strip(ctx, l2len, olen + glen, v, DECAP_REASON_DECAP_GRE);
}

static __always_inline int ipv4(struct xdp_md *ctx, void *l3, void *data_end, __u32 l2len)
{
	struct iphdr *iph = l3;
	struct local_key k = {};
	__u32 hlen, tot;
	__be16 port = 0;

	if ((void *)(iph + 1) > data_end || iph->version != 4 || iph->ihl < 5)
		return count(DECAP_REASON_PASS_MALFORMED, XDP_PASS);
	hlen = iph->ihl * 4;
	tot = bpf_ntohs(iph->tot_len);
	if (tot < hlen || l3 + tot > data_end)
		return count(DECAP_REASON_PASS_MALFORMED, XDP_PASS);
	switch (iph->protocol) {
	case IPPROTO_IPIP:
	case IPPROTO_IPV6:
	case IPPROTO_GRE:
		break;
	case IPPROTO_UDP: {
		struct udphdr *uh = l3 + hlen;

		port = gue_port();
		if (!port)
			return count(DECAP_REASON_PASS_NOT_TUNNEL, XDP_PASS);
		if (tot - hlen < sizeof(*uh) || (void *)(uh + 1) > data_end)
			return count(DECAP_REASON_PASS_MALFORMED, XDP_PASS);
		if (uh->dest != port)
			return count(DECAP_REASON_PASS_NOT_TUNNEL, XDP_PASS);
		break;
	}
	default:
		return count(DECAP_REASON_PASS_NOT_TUNNEL, XDP_PASS);
	}
	k.addr[10] = 0xff;
	k.addr[11] = 0xff;
	__builtin_memcpy(&k.addr[12], &iph->daddr, 4);
	if (!is_local(&k))
		return count(DECAP_REASON_PASS_NOT_LOCAL, XDP_PASS);
	if (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return count(DECAP_REASON_PASS_FRAGMENT, XDP_PASS);
	if (port)
		return gue(ctx, l3 + hlen, data_end, l2len, hlen);
	if (iph->protocol == IPPROTO_GRE)
		return gre(ctx, l3 + hlen, data_end, tot - hlen, l2len, hlen);
	if (iph->protocol == IPPROTO_IPIP) {
		if (!inner_ok(l3 + hlen, data_end, 4))
			return count(DECAP_REASON_DROP_INNER, XDP_DROP);
		return strip(ctx, l2len, hlen, 4, DECAP_REASON_DECAP_4IN4);
	}
	if (!inner_ok(l3 + hlen, data_end, 6))
		return count(DECAP_REASON_DROP_INNER, XDP_DROP);
	return strip(ctx, l2len, hlen, 6, DECAP_REASON_DECAP_6IN4);
}

static __always_inline int ipv6(struct xdp_md *ctx, void *l3, void *data_end, __u32 l2len)
{
	struct ipv6hdr *ip6h = l3;
	struct local_key k = {};
	__u32 olen = sizeof(*ip6h);
	__u8 next;
	__be16 port = 0;

	if ((void *)(ip6h + 1) > data_end || ip6h->version != 6)
		return count(DECAP_REASON_PASS_MALFORMED, XDP_PASS);
	if ((void *)(ip6h + 1) + bpf_ntohs(ip6h->payload_len) > data_end)
		return count(DECAP_REASON_PASS_MALFORMED, XDP_PASS);
	next = ip6h->nexthdr;
	if (next == IPPROTO_DSTOPTS) {
		struct opt_hdr *oh = (void *)(ip6h + 1);

		if ((void *)(oh + 1) > data_end)
			return count(DECAP_REASON_PASS_MALFORMED, XDP_PASS);
		next = oh->nexthdr;
		olen += (oh->hdrlen + 1) * 8;
		if (olen > sizeof(*ip6h) + 64) // encap limit is 8 bytes; more is not ours
			return count(DECAP_REASON_PASS_NOT_TUNNEL, XDP_PASS);
		if (olen > sizeof(*ip6h) + bpf_ntohs(ip6h->payload_len))
			return count(DECAP_REASON_PASS_MALFORMED, XDP_PASS);
	}
	switch (next) {
	case IPPROTO_IPIP:
	case IPPROTO_IPV6:
	case IPPROTO_GRE:
		break;
	case IPPROTO_UDP: {
		struct udphdr *uh = l3 + olen;

		port = gue_port();
		if (!port)
			return count(DECAP_REASON_PASS_NOT_TUNNEL, XDP_PASS);
		if (sizeof(*ip6h) + bpf_ntohs(ip6h->payload_len) < olen + sizeof(*uh) ||
		    (void *)(uh + 1) > data_end)
			return count(DECAP_REASON_PASS_MALFORMED, XDP_PASS);
		if (uh->dest != port)
			return count(DECAP_REASON_PASS_NOT_TUNNEL, XDP_PASS);
		break;
	}
	default:
		return count(DECAP_REASON_PASS_NOT_TUNNEL, XDP_PASS);
	}
	__builtin_memcpy(k.addr, &ip6h->daddr, 16);
	if (!is_local(&k))
		return count(DECAP_REASON_PASS_NOT_LOCAL, XDP_PASS);
	if (port)
		return gue(ctx, l3 + olen, data_end, l2len, olen);
	if (next == IPPROTO_GRE)
		return gre(ctx, l3 + olen, data_end, sizeof(*ip6h) + bpf_ntohs(ip6h->payload_len) - olen,
			   l2len, olen);
	if (next == IPPROTO_IPIP) {
		if (!inner_ok(l3 + olen, data_end, 4))
			return count(DECAP_REASON_DROP_INNER, XDP_DROP);
		return strip(ctx, l2len, olen, 4, DECAP_REASON_DECAP_4IN6);
	}
	if (!inner_ok(l3 + olen, data_end, 6))
		return count(DECAP_REASON_DROP_INNER, XDP_DROP);
	return strip(ctx, l2len, olen, 6, DECAP_REASON_DECAP_6IN6);
}

SEC("xdp")
int xlb_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *l3 = eth + 1;
	__u32 l2len = sizeof(*eth);
	__be16 proto;

	if (l3 > data_end)
		return count(DECAP_REASON_PASS_MALFORMED, XDP_PASS);
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vh = l3;

		if ((void *)(vh + 1) > data_end)
			return count(DECAP_REASON_PASS_MALFORMED, XDP_PASS);
		proto = vh->encapsulated_proto;
		l3 = vh + 1;
		l2len += sizeof(*vh);
	}
	switch (proto) {
	case bpf_htons(ETH_P_IP):
		return ipv4(ctx, l3, data_end, l2len);
	case bpf_htons(ETH_P_IPV6):
		return ipv6(ctx, l3, data_end, l2len);
	}
	return count(DECAP_REASON_PASS_NOT_IP, XDP_PASS);
}

char _license[] SEC("license") = "Dual BSD/GPL";
