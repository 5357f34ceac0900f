package testenv

import (
	"errors"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// InNewNetNS runs f on a thread moved to a fresh network namespace, with
// a netlink handle in it; the namespace disappears with its interfaces
// when f returns. Only f's goroutine is in the namespace.
func InNewNetNS(tb testing.TB, f func(h *netlink.Handle)) {
	tb.Helper()
	RequireRoot(tb)
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		tb.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if errors.Is(err, os.ErrPermission) {
		SkipUnlessRequired(tb, "creating a network namespace not permitted: %v", err)
	} else if err != nil {
		tb.Fatal(err)
	}
	defer func() {
		ns.Close()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it dies with the goroutine
			// instead of running other code in the wrong namespace.
			tb.Errorf("restore network namespace: %v", err)
			return
		}
		runtime.UnlockOSThread()
	}()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		tb.Fatal(err)
	}
	defer h.Close()
	f(h)
}
