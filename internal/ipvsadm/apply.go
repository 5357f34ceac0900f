package ipvsadm

import (
	"errors"
	"fmt"

	"github.com/xlbproject/xlb/internal/ipvs"
)

// Apply carries out a command that changes a configuration: -A, -E, -D,
// -C, -a, -e, -d, --set, and DPVS's -P and -Q. -Z only checks that its service exists
// (zeroing counters is the dataplane's business). Any other command is
// refused: it changes nothing (-L, -S, -G, -h, -v) or needs more than a
// configuration (-R: see Restore; --start-daemon and --stop-daemon: the
// daemon's sync daemons).
//
// A refusal is an *Error: Msg is what ipvsadm prints (the kernel's answer
// as ipvs_strerror words it), Code is 255 for the kernel's refusals and 2
// for ipvsadm's own checks. On error cfg is unchanged.
func (c *Command) Apply(cfg *ipvs.Config) error {
	var err error
	switch c.Kind {
	case KindAddService:
		err = cfg.AddService(c.Service)
	case KindEditService:
		err = cfg.EditService(c.Service)
	case KindDeleteService:
		err = cfg.DeleteService(c.Service.Key)
	case KindClear:
		cfg.Clear()
	case KindAddServer:
		err = cfg.AddDest(c.Service.Key, c.Dest)
	case KindEditServer:
		err = cfg.EditDest(c.Service.Key, c.Dest)
	case KindDeleteServer:
		err = cfg.DeleteDest(c.Service.Key, c.Dest.AddrPort())
	case KindSet:
		err = cfg.SetTimeouts(c.Timeouts)
	case KindAddLaddr:
		err = cfg.AddLocalAddr(c.Service.Key, c.LocalAddr)
	case KindDelLaddr:
		err = cfg.DeleteLocalAddr(c.Service.Key, c.LocalAddr.Addr)
	case KindZero:
		if c.Options&OptService != 0 && cfg.Service(c.Service.Key) == nil {
			err = ipvs.ErrNoService
		}
	default:
		return &Error{Code: ExitUsage, Msg: fmt.Sprintf("the '%s' command does not change the configuration", c.Kind)}
	}
	return kernelError(err)
}

// kernelError turns an *ipvs.Error into the *Error ipvsadm's exit would
// be: status 255 when the kernel refused (main returns
// process_options's -1), 2 when ipvsadm itself did.
func kernelError(err error) error {
	if err == nil {
		return nil
	}
	var ie *ipvs.Error
	if errors.As(err, &ie) {
		code := ExitKernel
		if ie.Errno == 0 {
			code = ExitUsage
		}
		return &Error{Code: code, Msg: ie.Msg, Err: ie}
	}
	return &Error{Code: ExitRuntime, Msg: err.Error(), Err: err}
}

// noService is list_service's answer for a service that does not exist:
// ipvs_strerror, then exit(1), not the 255 of a refused change.
func noService() error {
	return &Error{Code: ExitRuntime, Msg: ipvs.ErrNoService.Msg, Err: ipvs.ErrNoService}
}
