//go:build linux

package conntrack

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// adviseHuge asks for transparent huge pages over the 2 MiB-aligned part
// of [p, p+n). The table's arrays are large, long-lived and accessed at
// random: with 4 KiB pages almost every lookup in a 10^6-entry table also
// misses the TLB. It is advice: with THP off it changes nothing, and
// errors are ignored. It must run before the memory is first touched.
func adviseHuge(p unsafe.Pointer, n uintptr) {
	const huge = 2 << 20
	start := (uintptr(p) + huge - 1) &^ (huge - 1)
	end := (uintptr(p) + n) &^ (huge - 1)
	if end <= start {
		return
	}
	q := unsafe.Add(p, start-uintptr(p))
	_ = unix.Madvise(unsafe.Slice((*byte)(q), end-start), unix.MADV_HUGEPAGE)
}
