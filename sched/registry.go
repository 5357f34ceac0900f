package sched

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// Registry maps destination IDs to destinations, so that the connection
// table can store a 32-bit ID per entry instead of a pointer. Get is
// lock-free and may be called from any goroutine; Add and Release are for
// the control plane.
type Registry struct {
	slots []atomic.Pointer[Dest]

	mu   sync.Mutex // serialises Add and Release
	free []uint32
	next uint32
}

// NewRegistry returns a registry for at most max destinations. ID 0 is
// never handed out, so a zero ID can mean "no destination".
func NewRegistry(max int) *Registry {
	return &Registry{slots: make([]atomic.Pointer[Dest], max+1), next: 1}
}

// Add assigns d a free ID and registers it.
func (r *Registry) Add(d *Dest) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var id uint32
	switch {
	case len(r.free) > 0:
		id = r.free[len(r.free)-1]
		r.free = r.free[:len(r.free)-1]
	case int(r.next) < len(r.slots):
		id = r.next
		r.next++
	default:
		return fmt.Errorf("add destination %v: registry full (%d destinations)", d.Addr, len(r.slots)-1)
	}
	d.ID = id
	r.slots[id].Store(d)
	return nil
}

// Get returns the destination with the given ID, or nil.
func (r *Registry) Get(id uint32) *Dest {
	if int(id) >= len(r.slots) {
		return nil
	}
	return r.slots[id].Load()
}

// Release frees d's ID. The caller makes sure no connection refers to it
// any more (d removed from its service and all its counts at zero).
func (r *Registry) Release(d *Dest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.slots[d.ID].CompareAndSwap(d, nil) {
		r.free = append(r.free, d.ID)
	}
}
