package sched

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Flags are a service's scheduler flags (ipvsadm -b), with the values of
// IP_VS_SVC_F_SCHED1..3 in include/uapi/linux/ip_vs.h so that they can go
// to and come from netlink unchanged.
type Flags uint32

// Scheduler flags. sh and mh give SCHED1 and SCHED2 their own names; for
// every other scheduler ipvsadm accepts them as flag-1..flag-3 and the
// kernel ignores them.
const (
	FlagSched1 Flags = 0x0008 // IP_VS_SVC_F_SCHED1, "flag-1"
	FlagSched2 Flags = 0x0010 // IP_VS_SVC_F_SCHED2, "flag-2"
	FlagSched3 Flags = 0x0020 // IP_VS_SVC_F_SCHED3, "flag-3"

	// SHFallback ("sh-fallback"): when the hashed destination is
	// unavailable, sh probes the other buckets (ip_vs_sh.c).
	SHFallback = FlagSched1
	// SHPort ("sh-port"): sh hashes the source port too.
	SHPort = FlagSched2
	// MHFallback ("mh-fallback"): as SHFallback, for mh (ip_vs_mh.c).
	MHFallback = FlagSched1
	// MHPort ("mh-port"): mh hashes the source port too.
	MHPort = FlagSched2

	flagsMask = FlagSched1 | FlagSched2 | FlagSched3
)

// DefaultScheduler is the scheduler of a service created without -s
// (ipvsadm's DEF_SCHED).
const DefaultScheduler = "wlc"

// names lists the fourteen kernel schedulers in the order ipvsadm's
// usage text gives them.
var names = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}

// Names returns the names New accepts.
func Names() []string { return append([]string(nil), names...) }

// ErrUnknownScheduler is matched (errors.Is) by the error New returns for
// a name that is not one of [Names].
var ErrUnknownScheduler = errors.New("unknown scheduler")

// UnknownSchedulerError is New's error for an unknown name. Its text is
// what ipvsadm prints when the kernel answers ENOENT to ipvsadm -A or -E
// (libipvs.c ipvs_strerror); the name is kept for logs.
type UnknownSchedulerError struct{ Name string }

func (e *UnknownSchedulerError) Error() string {
	return "Scheduler or persistence engine not found"
}

// Is makes errors.Is(err, ErrUnknownScheduler) true.
func (e *UnknownSchedulerError) Is(target error) bool { return target == ErrUnknownScheduler }

// Sentinels matched by a *FlagError.
var (
	ErrInvalidFlag      = errors.New("invalid scheduler flag")
	ErrIncompatibleFlag = errors.New("incompatible scheduler flag")
)

// FlagError is ParseFlags's error, worded as ipvsadm 1.31's
// parse_sched_flags words it.
type FlagError struct {
	Flag string
	// Incompatible is set for a known flag of another scheduler (sh-port
	// on an mh service); otherwise the flag is unknown.
	Incompatible bool
}

func (e *FlagError) Error() string {
	if e.Incompatible {
		return "incompatible scheduler flag `" + e.Flag + "'"
	}
	return "invalid scheduler flag `" + e.Flag + "'"
}

// Is matches ErrIncompatibleFlag or ErrInvalidFlag.
func (e *FlagError) Is(target error) bool {
	if e.Incompatible {
		return target == ErrIncompatibleFlag
	}
	return target == ErrInvalidFlag
}

// schedFlagsArgMax is sizeof(sched_flags_arg) in ipvsadm's parse_options:
// the -b argument is snprintf'd into 128 bytes before it is parsed, so
// only its first 127 bytes count.
const schedFlagsArgMax = 127

// ParseFlags parses an ipvsadm -b argument for scheduler sched ("" means
// the default, wlc) exactly as ipvsadm 1.31's parse_sched_flags does:
// comma-separated, empty items skipped (strtok), flag-1..flag-3 valid for
// every scheduler, sh-fallback/sh-port only for sh, mh-fallback/mh-port
// only for mh; the first bad item is reported. An empty argument gives no
// flags. ParseFlags does not check sched itself (ipvsadm does not either;
// New does).
//
// ipvsadm crashes on an argument made only of commas; ParseFlags reports
// it as an invalid empty flag.
func ParseFlags(sched, arg string) (Flags, error) {
	if arg == "" {
		return 0, nil
	}
	if len(arg) > schedFlagsArgMax {
		arg = arg[:schedFlagsArgMax]
	}
	if sched == "" {
		sched = DefaultScheduler
	}
	var f Flags
	seen := false
	for _, item := range strings.Split(arg, ",") {
		if item == "" {
			continue
		}
		seen = true
		var want string // the scheduler the flag belongs to, "" for any
		switch item {
		case "flag-1":
			f |= FlagSched1
		case "flag-2":
			f |= FlagSched2
		case "flag-3":
			f |= FlagSched3
		case "sh-fallback":
			f, want = f|SHFallback, "sh"
		case "sh-port":
			f, want = f|SHPort, "sh"
		case "mh-fallback":
			f, want = f|MHFallback, "mh"
		case "mh-port":
			f, want = f|MHPort, "mh"
		default:
			return 0, &FlagError{Flag: item}
		}
		if want != "" && sched != want {
			return 0, &FlagError{Flag: item, Incompatible: true}
		}
	}
	if !seen {
		return 0, &FlagError{Flag: ""}
	}
	return f, nil
}

// FormatFlags renders f as ipvsadm's print_sched_flags does for a service
// with scheduler sched: "sh-fallback,sh-port" for sh, "mh-fallback,mh-port"
// for mh, "flag-1,flag-2,flag-3" otherwise; bits the scheduler has no name
// for are left out. It is the inverse of ParseFlags.
func FormatFlags(sched string, f Flags) string {
	var parts []string
	switch sched {
	case "sh":
		if f&SHFallback != 0 {
			parts = append(parts, "sh-fallback")
		}
		if f&SHPort != 0 {
			parts = append(parts, "sh-port")
		}
	case "mh":
		if f&MHFallback != 0 {
			parts = append(parts, "mh-fallback")
		}
		if f&MHPort != 0 {
			parts = append(parts, "mh-port")
		}
	default:
		for i, b := range []Flags{FlagSched1, FlagSched2, FlagSched3} {
			if f&b != 0 {
				parts = append(parts, fmt.Sprintf("flag-%d", i+1))
			}
		}
	}
	return strings.Join(parts, ",")
}

// mhPrimes are the Maglev table sizes the kernel can be built with
// (ip_vs_mh.c primes[], selected by CONFIG_IP_VS_MH_TAB_INDEX 8..17).
var mhPrimes = []int{251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071}

// Defaults, as a stock kernel has them.
const (
	// DefaultMHTableSize is primes[CONFIG_IP_VS_MH_TAB_INDEX - 8] for the
	// Kconfig default index 12.
	DefaultMHTableSize = 4093
	// DefaultExpiration is the lblc_expiration and lblcr_expiration
	// sysctls' default (DEFAULT_EXPIRATION, 24 h).
	DefaultExpiration = 24 * time.Hour
	// DefaultCacheSize is how many lblc/lblcr entries an instance
	// preallocates: twice the size (16 × 1024 buckets) above which the
	// kernel's garbage collector starts removing entries idle for 6 min.
	// At 40 bytes an entry that is 1.3 MB per instance.
	DefaultCacheSize = 2 * lblcMaxSize
)

// Options configure a scheduler instance. The zero value is usable and
// means the defaults.
type Options struct {
	// Flags are the service's -b flags; only sh and mh look at them.
	Flags Flags
	// MHTableSize is mh's lookup table size M, one of the kernel's primes
	// 251, 509, 1021, 2039, 4093 (default), 8191, 16381, 32749, 65521,
	// 131071. A director that must agree with a kernel IPVS director
	// needs the kernel's CONFIG_IP_VS_MH_TAB_INDEX (4093 unless rebuilt).
	MHTableSize int
	// Clock is lblc/lblcr's time source (nil: time.Now). Only differences
	// between its readings are used; tests pass a fake clock.
	Clock func() time.Time
	// Expiration is lblc_expiration / lblcr_expiration: lblc forgets a
	// client address idle this long, lblcr also drops a member from a
	// replica set unchanged this long. Default 24 h.
	Expiration time.Duration
	// CacheSize caps lblc/lblcr's address cache; entries are
	// preallocated so Schedule never allocates. When it is full a new
	// address is scheduled but not cached, as the kernel does when
	// kmalloc fails. Default DefaultCacheSize.
	CacheSize int
	// Seed seeds twos's random generator; 0 picks a random seed, so that
	// each worker's instance draws a different sequence.
	Seed uint64
}

// DefaultOptions returns the options of a stock kernel.
func DefaultOptions() Options {
	return Options{
		MHTableSize: DefaultMHTableSize,
		Expiration:  DefaultExpiration,
		CacheSize:   DefaultCacheSize,
	}
}

// withDefaults fills zero fields and validates the rest.
func (o Options) withDefaults() (Options, error) {
	if o.Flags&^flagsMask != 0 {
		return o, fmt.Errorf("invalid scheduler flags %#x: only %#x (SCHED1..3) are defined", uint32(o.Flags), uint32(flagsMask))
	}
	if o.MHTableSize == 0 {
		o.MHTableSize = DefaultMHTableSize
	}
	okSize := false
	for _, p := range mhPrimes {
		okSize = okSize || p == o.MHTableSize
	}
	if !okSize {
		return o, fmt.Errorf("invalid mh table size %d: must be one of %v", o.MHTableSize, mhPrimes)
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	switch {
	case o.Expiration == 0:
		o.Expiration = DefaultExpiration
	case o.Expiration < 0:
		return o, fmt.Errorf("invalid expiration %v: must not be negative", o.Expiration)
	}
	switch {
	case o.CacheSize == 0:
		o.CacheSize = DefaultCacheSize
	case o.CacheSize < 0 || o.CacheSize > 1<<24:
		return o, fmt.Errorf("invalid cache size %d: must be between 1 and %d", o.CacheSize, 1<<24)
	}
	return o, nil
}

// New returns a scheduler instance, bound to an empty service, for the
// IPVS scheduler called name; Update gives it the destinations. Every
// dataplane worker needs its own instance (see [Scheduler]).
func New(name string, opts Options) (Scheduler, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("new %s scheduler: %w", name, err)
	}
	switch name {
	case "rr":
		return newRR(), nil
	case "wrr":
		return newWRR(), nil
	case "lc":
		return newList("lc", lcPick), nil
	case "wlc":
		return newList("wlc", wlcPick), nil
	case "sed":
		return newList("sed", sedPick), nil
	case "nq":
		return newList("nq", nqPick), nil
	case "fo":
		return newList("fo", foPick), nil
	case "ovf":
		return newList("ovf", ovfPick), nil
	case "twos":
		return newTwos(o.Seed), nil
	case "dh":
		return newDH(), nil
	case "sh":
		return newSH(o.Flags), nil
	case "mh":
		return newMH(o.Flags, o.MHTableSize), nil
	case "lblc":
		return newLBLC(o), nil
	case "lblcr":
		return newLBLCR(o), nil
	}
	return nil, &UnknownSchedulerError{Name: name}
}
