package ipvssync

import (
	"fmt"

	"github.com/xlbproject/xlb/internal/ipvsadm"
)

// FromDaemon maps what ipvsadm parsed for `--start-daemon master|backup`
// (or --stop-daemon) to a Role and Options: zero fields of d (options not
// given) become the kernel's defaults when the Sender or Receiver opens.
// Peers are xlb's and not on ipvsadm's command line.
func FromDaemon(d ipvsadm.Daemon) (Role, Options, error) {
	role, err := ParseRole(d.State)
	if err != nil {
		return 0, Options{}, fmt.Errorf("map sync daemon: %w", err)
	}
	if d.SyncID < 0 || d.SyncID > 255 || d.SyncMaxLen < 0 || d.SyncMaxLen > maxMaxLen ||
		d.McastPort < 0 || d.McastPort > 65535 || d.McastTTL < 0 || d.McastTTL > 255 {
		return 0, Options{}, fmt.Errorf("map sync daemon %+v: value out of range", d)
	}
	o := Options{
		Interface: d.McastInterface,
		SyncID:    uint8(d.SyncID),
		MaxLen:    d.SyncMaxLen,
		Group:     d.McastGroup,
		Port:      uint16(d.McastPort),
		TTL:       uint8(d.McastTTL),
	}
	if _, err := o.check(); err != nil {
		return 0, Options{}, fmt.Errorf("map sync daemon: %w", err)
	}
	return role, o, nil
}
