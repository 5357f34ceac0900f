//go:build !linux

package conntrack

import "unsafe"

func adviseHuge(p unsafe.Pointer, n uintptr) {}
