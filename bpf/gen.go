package bpf

// bpf2go compiles xdp.c for little-endian targets only and writes
// xlb_bpfel.go and xlb_bpfel.o, both committed so that building and testing
// need no clang. The bpf2go version is the github.com/cilium/ebpf version in
// go.mod. UAPI headers include <asm/types.h>, which Debian keeps under the
// multiarch directory; clang ignores the one that does not exist.
//
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target bpfel -no-global-types xlb xdp.c -- -O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu
//
// decap.c, the real servers' tunnel decapsulation program, is a separate
// object (decap_bpfel.go/.o) so that `xlb decap` loads nothing of xdp.c.
//
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target bpfel -no-global-types decap decap.c -- -O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu
