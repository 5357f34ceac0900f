package dataplane

import (
	"github.com/xlbproject/xlb/internal/ipvs"
)

// tunName names a tunnel encapsulation as --tun-type does.
func tunName(t ipvs.TunType) string {
	switch t {
	case ipvs.TunIPIP:
		return "ipip tunneling (--tun-type ipip)"
	case ipvs.TunGUE:
		return "gue tunneling (--tun-type gue)"
	case ipvs.TunGRE:
		return "gre tunneling (--tun-type gre)"
	}
	return "an unknown tunnel type"
}
