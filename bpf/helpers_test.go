//go:build linux

package bpf_test

import "net/netip"

func netipMapped(a netip.Addr) netip.Addr { return netip.AddrFrom16(a.As16()) }
