#!/bin/bash
# What generic XDP's copy costs per frame on a veth: trafgen (AF_PACKET,
# TX checksum off, one CPU) sends N 64-byte UDP frames into a veth whose
# peer drops them at ingress with nft netdev, a tc program, or a generic
# XDP program; the sender's and the drop's CPU are all on CPU 0, so the
# time per frame of each variant, minus nft's, is what the drop point
# adds. Bounded: N frames, 20 s at most per run. Usage: run.sh [rounds] [N]
set -eu
rounds=${1:-4}; n=${2:-3000000}
dir=$(cd "$(dirname "$0")" && pwd)
obj=$(mktemp /tmp/xlbcopy.XXXXXX.o); cfg=$(mktemp /tmp/xlbcopy.XXXXXX.cfg)
cleanup() { ip netns del xlbcopy-a 2>/dev/null || true; ip netns del xlbcopy-b 2>/dev/null || true; rm -f "$obj" "$cfg"; }
trap cleanup EXIT
clang -O2 -target bpf -I/usr/include/"$(uname -m)"-linux-gnu -c "$dir/drop.c" -o "$obj"
ip netns add xlbcopy-a; ip netns add xlbcopy-b
ip link add va netns xlbcopy-a numtxqueues 1 numrxqueues 1 type veth peer vb netns xlbcopy-b numtxqueues 1 numrxqueues 1
ip -n xlbcopy-a link set va up; ip -n xlbcopy-b link set vb up
ip netns exec xlbcopy-a ethtool -K va tx off >/dev/null
da=$(ip -n xlbcopy-b -br link show vb | awk '{print $3}'); sa=$(ip -n xlbcopy-a -br link show va | awk '{print $3}')
echo "{ eth(da=$da, sa=$sa), ipv4(sa=10.99.0.1, da=10.99.0.2, ttl=64), udp(sp=1234, dp=9), fill(0x00, 18) }" > "$cfg"
send() { # prints ns per frame
	ip netns exec xlbcopy-a timeout 20 taskset -c 0 trafgen -i "$cfg" -o va -n "$n" -q -P1 2>&1 |
		awk -v n="$n" '/sec,.*usec/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^sec/) s = $i; if ($(i+1) ~ /^usec/) u = $i }; printf "%.0f", (s * 1e6 + u) * 1000 / n }'
}
for r in $(seq "$rounds"); do
	printf 'table netdev xlbcopy {\n chain in {\n  type filter hook ingress device vb priority 0\n  udp dport 9 drop\n }\n}\n' | ip netns exec xlbcopy-b nft -f -
	echo "round $r nft-netdev-drop $(send)"
	ip netns exec xlbcopy-b nft delete table netdev xlbcopy
	ip netns exec xlbcopy-b tc qdisc add dev vb clsact
	ip netns exec xlbcopy-b tc filter add dev vb ingress bpf da obj "$obj" sec tc
	echo "round $r tc-drop $(send)"
	ip netns exec xlbcopy-b tc qdisc del dev vb clsact
	ip -n xlbcopy-b link set vb xdpgeneric obj "$obj" sec xdp
	echo "round $r xdp-generic-drop $(send)"
	ip -n xlbcopy-b link set vb xdpgeneric off
done
