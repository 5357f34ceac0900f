//go:build linux

package bpf

import (
	"errors"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// rxVLANOffload reads whether each of vlanRxFeatures is on.
func rxVLANOffload(t *testing.T, ifname string) []bool {
	t.Helper()
	idx, err := featureIndices(ifname, vlanRxFeatures)
	if err != nil {
		t.Fatal(err)
	}
	active, err := features(ifname, 4)
	if err != nil {
		t.Fatal(err)
	}
	on := make([]bool, len(idx))
	for i, b := range idx {
		if b < 0 {
			t.Fatalf("%s has no feature %s", ifname, vlanRxFeatures[i])
		}
		on[i] = active[b/32]&(1<<(b%32)) != 0
	}
	return on
}

// disableVLANOffload turns both receive VLAN offloads of a veth off and
// its restore function turns them on again; on loopback, which has none to
// change, it does nothing.
func TestDisableVLANOffload(t *testing.T) {
	l := vethInNewNetns(t)
	if on := rxVLANOffload(t, "xlb0"); !on[0] || !on[1] {
		t.Fatalf("veth rx-vlan offload before = %v, want on (the test assumes veth's default)", on)
	}
	restore, err := disableVLANOffload(l.Attrs().Index)
	if err != nil {
		t.Fatal(err)
	}
	if on := rxVLANOffload(t, "xlb0"); on[0] || on[1] {
		t.Errorf("rx-vlan offload after disableVLANOffload = %v, want off", on)
	}
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	if on := rxVLANOffload(t, "xlb0"); !on[0] || !on[1] {
		t.Errorf("rx-vlan offload after restore = %v, want on", on)
	}

	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	restore, err = disableVLANOffload(lo.Attrs().Index)
	if err != nil {
		t.Fatalf("disableVLANOffload(lo) = %v, want nil", err)
	}
	if err := restore(); err != nil {
		t.Fatal(err)
	}
}

// vethInNewNetns moves the test's thread into a new network namespace,
// for the rest of the test, and creates the veth pair xlb0-xlb1 there; it
// returns xlb0. The namespace goes, and the thread goes back, at cleanup.
func vethInNewNetns(t *testing.T) netlink.Link {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.New()
	if errors.Is(err, os.ErrPermission) {
		orig.Close()
		skipUnlessRequired(t, "creating a network namespace not permitted: %v", err)
	} else if err != nil {
		orig.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns.Close()
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread()
		}
		orig.Close()
	})
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "xlb0"}, PeerName: "xlb1"}); err != nil {
		t.Fatal(err)
	}
	l, err := netlink.LinkByName("xlb0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}
