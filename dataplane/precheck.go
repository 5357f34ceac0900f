//go:build linux

package dataplane

import (
	"bufio"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/conntrack"
)

// ErrBusy says that the interface already has an XDP program or an
// AF_XDP socket on one of its queues: a second xlb on it is refused
// before it changes anything.
var ErrBusy = errors.New("another xlb (or AF_XDP program) is attached")

// usableInterface finds name and checks that xlb can balance on it: it
// exists, is an Ethernet device other than loopback, and has no XDP
// program attached yet.
func usableInterface(name string) (*net.Interface, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		if strings.Contains(err.Error(), "no such network interface") {
			return nil, fmt.Errorf("interface %s does not exist", name)
		}
		return nil, fmt.Errorf("find interface %s: %w", name, err)
	}
	if ifc.Flags&net.FlagLoopback != 0 {
		return nil, fmt.Errorf("interface %s is the loopback device: xlb balances on an Ethernet interface", name)
	}
	if len(ifc.HardwareAddr) != 6 {
		return nil, fmt.Errorf("interface %s is not an Ethernet device (no MAC address): xlb cannot balance on it", name)
	}
	l, err := netlink.LinkByIndex(ifc.Index)
	if err != nil {
		return nil, fmt.Errorf("read link %s: %w", name, err)
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		return nil, fmt.Errorf("interface %s is busy: %w (xdp program id %d)", name, ErrBusy, x.ProgId)
	}
	return ifc, nil
}

// MemoryNeeded is what New allocates for queues queues of connCapacity
// connection entries each: the entries and the index of each queue's
// connection table (as conntrack.New sizes them: two keys per entry at a
// load factor of at most 3/4, rounded up to a power of two) and each
// queue's UMEM.
func MemoryNeeded(connCapacity, queues int, sock SocketOptions) uint64 {
	nslots := 2 * uint64(connCapacity) * 4 / 3
	if nslots < 8 {
		nslots = 8
	}
	nslots = 1 << bits.Len64(nslots-1)
	perQueue := uint64(connCapacity)*uint64(unsafe.Sizeof(conntrack.Entry{})) + nslots*8 +
		uint64(sock.NumFrames)*uint64(sock.FrameSize)
	return perQueue * uint64(queues)
}

// MemoryError refuses a connection capacity whose tables do not fit in
// the memory the process can have.
type MemoryError struct {
	Capacity, Queues int
	Need, Avail      uint64
	Source           string // where Avail comes from, e.g. "MemAvailable"
}

func (e *MemoryError) Error() string {
	q := "queues"
	if e.Queues == 1 {
		q = "queue"
	}
	return fmt.Sprintf("connection capacity %d: needs %s for %d %s, %s available (%s)",
		e.Capacity, FormatBytes(e.Need), e.Queues, q, FormatBytes(e.Avail), e.Source)
}

// FormatBytes writes n in decimal gigabytes (or megabytes below 1 GB),
// one decimal.
func FormatBytes(n uint64) string {
	if n >= 1e9 {
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}

func checkMemory(opts Options, queues int) error {
	need := MemoryNeeded(opts.ConnCapacity, queues, opts.Socket)
	avail, src, err := AvailableMemory()
	if err != nil {
		return fmt.Errorf("check memory: %w", err)
	}
	if need > avail {
		return &MemoryError{Capacity: opts.ConnCapacity, Queues: queues, Need: need, Avail: avail, Source: src}
	}
	return nil
}

// AvailableMemory is the least of what the kernel says it can give
// without swapping (MemAvailable), what RLIMIT_AS leaves this process
// and what the cgroup's memory.max leaves it, and names which it is.
func AvailableMemory() (uint64, string, error) {
	avail, err := memInfo("MemAvailable")
	if err != nil {
		return 0, "", err
	}
	src := "MemAvailable"
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_AS, &rl) == nil && rl.Cur != unix.RLIM_INFINITY {
		var left uint64
		if vm, err := procStatus("VmSize"); err == nil && vm < rl.Cur {
			left = rl.Cur - vm
		}
		if left < avail {
			avail, src = left, "RLIMIT_AS"
		}
	}
	if max, cur, ok := cgroupMemory(); ok {
		var left uint64
		if cur < max {
			left = max - cur
		}
		if left < avail {
			avail, src = left, "cgroup memory.max"
		}
	}
	return avail, src, nil
}

// memInfo reads a /proc/meminfo field in bytes.
func memInfo(field string) (uint64, error) {
	return kbField("/proc/meminfo", field)
}

func procStatus(field string) (uint64, error) {
	return kbField("/proc/self/status", field)
}

// kbField reads "Field:   123 kB" from a /proc file, in bytes.
func kbField(path, field string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != field {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s in %s: %w", field, path, err)
		}
		return n * 1024, nil
	}
	return 0, fmt.Errorf("no %s in %s", field, path)
}

// cgroupMemory reads the memory limit and usage of this process's
// cgroup (v2 memory.max, or v1 memory.limit_in_bytes); ok is false
// without a limit.
func cgroupMemory() (max, cur uint64, ok bool) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0, 0, false
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		var limit, usage string
		switch {
		case f[0] == "0" && f[1] == "":
			dir := filepath.Join("/sys/fs/cgroup", f[2])
			limit, usage = filepath.Join(dir, "memory.max"), filepath.Join(dir, "memory.current")
		case strings.Contains(","+f[1]+",", ",memory,"):
			dir := filepath.Join("/sys/fs/cgroup/memory", f[2])
			limit, usage = filepath.Join(dir, "memory.limit_in_bytes"), filepath.Join(dir, "memory.usage_in_bytes")
		default:
			continue
		}
		m, err := os.ReadFile(limit)
		if err != nil {
			continue
		}
		max, err := strconv.ParseUint(strings.TrimSpace(string(m)), 10, 64)
		if err != nil || max >= 1<<62 { // "max", or v1's "unlimited"
			continue
		}
		c, _ := os.ReadFile(usage)
		cur, _ = strconv.ParseUint(strings.TrimSpace(string(c)), 10, 64)
		return max, cur, true
	}
	return 0, 0, false
}
