// SPDX-License-Identifier: GPL-2.0
// Three ways to drop a frame at a veth's ingress, for run.sh: generic XDP
// (which first copies any skb with less than 256 bytes of headroom) and a
// tc (tcx/clsact) program; nft's netdev ingress drop is the third.
#include <linux/bpf.h>
#define SEC(n) __attribute__((section(n), used))
SEC("xdp") int xdrop(struct xdp_md *c) { return XDP_DROP; }
SEC("tc") int tdrop(struct __sk_buff *s) { return 2; /* TC_ACT_SHOT */ }
char _license[] SEC("license") = "GPL";
