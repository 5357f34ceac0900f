//go:build linux

package dataplane

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// 10^8 connections on one queue need about 14 GB; the refusal names the
// figures (10^8 used to be accepted and 10^9 died with Go's out of
// memory).
func TestMemoryNeeded(t *testing.T) {
	got := MemoryNeeded(1e8, 1, DefaultSocketOptions())
	// 128-byte entries, 2^28 8-byte index slots, 16 MiB of UMEM.
	if want := uint64(1e8*128 + (1<<28)*8 + 16<<20); got != want {
		t.Errorf("MemoryNeeded(1e8, 1) = %d, want %d", got, want)
	}
	if got := MemoryNeeded(1e6, 4, DefaultSocketOptions()); got != 4*(1e6*128+(1<<22)*8+16<<20) {
		t.Errorf("MemoryNeeded(1e6, 4) = %d", got)
	}
	e := &MemoryError{Capacity: 1e8, Queues: 1, Need: 15.6e9, Avail: 9.8e9, Source: "MemAvailable"}
	if want := "connection capacity 100000000: needs 15.6 GB for 1 queue, 9.8 GB available (MemAvailable)"; e.Error() != want {
		t.Errorf("MemoryError = %q, want %q", e.Error(), want)
	}
}

func TestAvailableMemory(t *testing.T) {
	avail, src, err := AvailableMemory()
	if err != nil || avail == 0 || src == "" {
		t.Fatalf("AvailableMemory() = %d, %q, %v", avail, src, err)
	}
	total, _ := memInfo("MemTotal")
	if avail > total {
		t.Errorf("AvailableMemory() = %d > MemTotal %d", avail, total)
	}
	err = checkMemory(Options{ConnCapacity: 1 << 30, Socket: DefaultSocketOptions()}, 64)
	var merr *MemoryError
	if !errors.As(err, &merr) || !strings.Contains(err.Error(), "needs") {
		t.Errorf("checkMemory(2^30 x 64 queues) = %v, want a MemoryError", err)
	}
	if err := checkMemory(Options{ConnCapacity: 1000, Socket: DefaultSocketOptions()}, 1); err != nil {
		t.Errorf("checkMemory(1000, 1) = %v", err)
	}
}

func TestUsableInterface(t *testing.T) {
	if _, err := usableInterface("nonexistent0"); err == nil || err.Error() != "interface nonexistent0 does not exist" {
		t.Errorf("usableInterface(nonexistent0) = %v", err)
	}
	if _, err := usableInterface("lo"); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("usableInterface(lo) = %v", err)
	}
}

// A socket setup error releases what was opened without crashing: the
// deferred release used the named result, which every error return sets
// to nil (a second xlb on an interface panicked in socket.close).
func TestNewSocketErrorReleases(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("AF_XDP sockets need CAP_NET_RAW")
	}
	s, err := newSocket(1<<30, 0, DefaultSocketOptions()) // no such ifindex: bind fails
	if err == nil || s != nil {
		t.Fatalf("newSocket(no such ifindex) = %v, %v; want an error", s, err)
	}
	o := DefaultSocketOptions()
	o.NumFrames = 3
	if _, err := newSocket(1, 0, o); err == nil {
		t.Error("newSocket with 3 frames succeeded")
	}
	var nilSock *socket
	if err := nilSock.close(); err != nil {
		t.Errorf("nil socket close = %v", err)
	}
}
