package ipvs

import "slices"

// schedulers are the IPVS schedulers xlb knows, as Linux names them
// (ip_vs_<name>.ko). "none" (a service without scheduler, which IPVS
// accepts since Linux 4.x) is not among them.
var schedulers = []string{
	"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq",
	"fo", "ovf", "mh", "twos",
}

// DefaultSched is ipvsadm's scheduler when -s is left out (DEF_SCHED).
const DefaultSched = "wlc"

// KnownScheduler reports whether name is a scheduler xlb has.
func KnownScheduler(name string) bool { return slices.Contains(schedulers, name) }

// Schedulers returns the names of the schedulers xlb has.
func Schedulers() []string { return slices.Clone(schedulers) }

// Scheduler flags are three bits in the service's flags
// (IP_VS_SVC_F_SCHED1..3). sh and mh name the first two; for every other
// scheduler they are flag-1..flag-3.
const (
	schedFlag1 = 1 << iota
	schedFlag2
	schedFlag3
)

// schedFlagBit returns the bit of one -b flag for scheduler sched, or an
// error worded as ipvsadm's parse_sched_flags.
//
// One deviation: flag-3 is refused for sh and mh. ipvsadm accepts it but
// neither lists nor saves it ("-b " with nothing after it), so its own save
// output would not restore.
func schedFlagBit(sched, flag string) (uint8, error) {
	switch flag {
	case "flag-1":
		return schedFlag1, nil
	case "flag-2":
		return schedFlag2, nil
	case "flag-3":
		if sched == "sh" || sched == "mh" {
			return 0, schedFlagError("incompatible", flag)
		}
		return schedFlag3, nil
	case "sh-fallback", "sh-port":
		if sched != "sh" {
			return 0, schedFlagError("incompatible", flag)
		}
		if flag == "sh-fallback" {
			return schedFlag1, nil
		}
		return schedFlag2, nil
	case "mh-fallback", "mh-port":
		if sched != "mh" {
			return 0, schedFlagError("incompatible", flag)
		}
		if flag == "mh-fallback" {
			return schedFlag1, nil
		}
		return schedFlag2, nil
	}
	return 0, schedFlagError("invalid", flag)
}

// SchedFlagBits turns -b flags into IP_VS_SVC_F_SCHED1..3 bits (1, 2, 4)
// for scheduler sched ("" is wlc), with ipvsadm's errors.
func SchedFlagBits(sched string, flags []string) (uint8, error) {
	if sched == "" {
		sched = DefaultSched
	}
	var bits uint8
	for _, f := range flags {
		b, err := schedFlagBit(sched, f)
		if err != nil {
			return 0, err
		}
		bits |= b
	}
	return bits, nil
}

// SchedFlagNames names bits as ipvsadm lists them for scheduler sched
// (print_sched_flags): sh-fallback,sh-port for sh, mh-fallback,mh-port for
// mh, flag-1..flag-3 otherwise, in bit order.
func SchedFlagNames(sched string, bits uint8) []string {
	var names []string
	switch sched {
	case "sh", "mh":
		if bits&schedFlag1 != 0 {
			names = append(names, sched+"-fallback")
		}
		if bits&schedFlag2 != 0 {
			names = append(names, sched+"-port")
		}
	default:
		for i, n := range []string{"flag-1", "flag-2", "flag-3"} {
			if bits&(1<<i) != 0 {
				names = append(names, n)
			}
		}
	}
	return names
}
