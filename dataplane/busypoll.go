//go:build linux

package dataplane

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Busy polling needs the interface's NAPI to stay off its interrupt (or,
// on veth, off the sender's softirq) while the worker polls it: the
// kernel defers the re-arm napi_defer_hard_irqs times, and a timer of
// gro_flush_timeout ns takes the NAPI back when the worker stops polling
// (Documentation/networking/napi.rst, "Busy polling"). These are the
// values the AF_XDP busy-polling examples use: 2 deferrals, 200 µs.
const (
	busyDeferHardIRQs  = "2"
	busyGROFlushTimout = "200000"
)

// napiSetting is one sysfs file of an interface set for busy polling,
// with the value to restore when the dataplane closes.
type napiSetting struct {
	path, old string
}

// setBusyPollNAPI sets napi_defer_hard_irqs and gro_flush_timeout of
// iface for busy polling and returns the previous values, restored by
// restoreNAPI. On a failure it restores what it set. The interface's
// sysfs directory must be the one of ifindex: in a network namespace
// entered without remounting /sys, the name can be another namespace's
// interface, which is left alone.
func setBusyPollNAPI(iface string, ifindex int) (set []napiSetting, err error) {
	defer func() {
		if err != nil {
			err = errors.Join(err, restoreNAPI(set))
			set = nil
		}
	}()
	dir := "/sys/class/net/" + iface + "/"
	b, err := os.ReadFile(dir + "ifindex")
	if err != nil {
		return nil, fmt.Errorf("read %sifindex: %w", dir, err)
	}
	if got := strings.TrimSpace(string(b)); got != strconv.Itoa(ifindex) {
		return nil, fmt.Errorf("%s is ifindex %s, not %d: /sys is another network namespace's (mount sysfs in this one)", dir, got, ifindex)
	}
	for _, f := range []struct{ name, v string }{
		{"napi_defer_hard_irqs", busyDeferHardIRQs},
		{"gro_flush_timeout", busyGROFlushTimout},
	} {
		p := dir + f.name
		b, err := os.ReadFile(p)
		if err != nil {
			return set, fmt.Errorf("read %s: %w", p, err)
		}
		if err := os.WriteFile(p, []byte(f.v), 0); err != nil {
			return set, fmt.Errorf("set %s to %s: %w", p, f.v, err)
		}
		set = append(set, napiSetting{path: p, old: strings.TrimSpace(string(b))})
	}
	return set, nil
}

// restoreNAPI writes back the values setBusyPollNAPI found.
func restoreNAPI(set []napiSetting) error {
	var errs []error
	for i := len(set) - 1; i >= 0; i-- {
		if err := os.WriteFile(set[i].path, []byte(set[i].old), 0); err != nil {
			errs = append(errs, fmt.Errorf("restore %s to %s: %w", set[i].path, set[i].old, err))
		}
	}
	return errors.Join(errs...)
}
