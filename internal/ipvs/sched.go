package ipvs

import (
	"errors"
	"slices"
	"strings"

	"github.com/xlbproject/xlb/sched"
)

// DefaultSched is ipvsadm's scheduler when -s is left out (DEF_SCHED).
const DefaultSched = sched.DefaultScheduler

// KnownScheduler reports whether name is a scheduler xlb has (package
// sched's names). "none" (a service without scheduler, which IPVS accepts
// since Linux 4.x) is not among them.
func KnownScheduler(name string) bool { return slices.Contains(sched.Names(), name) }

// Schedulers returns the names of the schedulers xlb has.
func Schedulers() []string { return sched.Names() }

// Scheduler flags are three bits in the service's flags
// (IP_VS_SVC_F_SCHED1..3, sched.FlagSched1..3 = 0x8..0x20); here they
// are counted from 1 (1, 2, 4).
const schedFlagShift = 3

// SchedFlagBits turns -b flags into IP_VS_SVC_F_SCHED1..3 bits (1, 2, 4)
// for scheduler s ("" is wlc), with ipvsadm's errors (sched.ParseFlags).
//
// One deviation: flag-3 is refused for sh and mh. ipvsadm accepts it but
// neither lists nor saves it ("-b " with nothing after it), so its own save
// output would not restore.
func SchedFlagBits(s string, flags []string) (uint8, error) {
	if s == "" {
		s = DefaultSched
	}
	if (s == "sh" || s == "mh") && slices.Contains(flags, "flag-3") {
		return 0, schedFlagError("incompatible", "flag-3")
	}
	if len(flags) == 0 {
		return 0, nil
	}
	f, err := sched.ParseFlags(s, strings.Join(flags, ","))
	if err != nil {
		var fe *sched.FlagError
		if errors.As(err, &fe) {
			kind := "invalid"
			if fe.Incompatible {
				kind = "incompatible"
			}
			return 0, schedFlagError(kind, fe.Flag)
		}
		return 0, err
	}
	return uint8(f >> schedFlagShift), nil
}

// SchedFlagNames names bits as ipvsadm lists them for scheduler s
// (print_sched_flags, sched.FormatFlags): sh-fallback,sh-port for sh,
// mh-fallback,mh-port for mh, flag-1..flag-3 otherwise, in bit order.
func SchedFlagNames(s string, bits uint8) []string {
	text := sched.FormatFlags(s, sched.Flags(bits)<<schedFlagShift)
	if text == "" {
		return nil
	}
	return strings.Split(text, ",")
}
