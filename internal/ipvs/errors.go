package ipvs

import (
	"errors"
	"fmt"
	"syscall"
)

// Error is a refused operation, worded as ipvsadm prints it.
//
// Msg is exactly what ipvsadm writes on stderr: for a kernel refusal the
// text libipvs's ipvs_strerror gives for the operation and errno (the same
// errno means different things for different operations: ESRCH is "No such
// service" when editing a service and "Service not defined" when adding a
// destination), for a refusal of ipvsadm itself its fail() message. Detail
// is xlb's explanation of which rule was broken; Error() leaves it out so
// that xlb prints what ipvsadm prints.
type Error struct {
	Errno  syscall.Errno // the kernel's errno; 0 when ipvsadm itself refuses
	Msg    string
	Detail string
}

func (e *Error) Error() string { return e.Msg }

// Is reports whether target is the same refusal (same errno and text),
// whatever the details, so that errors.Is(err, ipvs.ErrNoService) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Errno == e.Errno && t.Msg == e.Msg
}

// with returns a copy of e explaining which rule was broken.
func (e *Error) with(format string, args ...any) *Error {
	c := *e
	c.Detail = fmt.Sprintf(format, args...)
	return &c
}

// Kernel refusals, as libipvs's ipvs_strerror words them.
var (
	// EEXIST from add-service.
	ErrServiceExists = &Error{Errno: syscall.EEXIST, Msg: "Service already exists"}
	// ESRCH from edit-service, delete-service, zero and the listings.
	ErrNoService = &Error{Errno: syscall.ESRCH, Msg: "No such service"}
	// ESRCH from the destination operations.
	ErrServiceNotDefined = &Error{Errno: syscall.ESRCH, Msg: "Service not defined"}
	// EEXIST from add-server.
	ErrDestExists = &Error{Errno: syscall.EEXIST, Msg: "Destination already exists"}
	// ENOENT from edit-server and delete-server.
	ErrNoDest = &Error{Errno: syscall.ENOENT, Msg: "No such destination"}
	// ENOENT from add-service and edit-service: unknown scheduler or
	// persistence engine.
	ErrSchedNotFound = &Error{Errno: syscall.ENOENT, Msg: "Scheduler or persistence engine not found"}
	// EINVAL: a value the kernel refuses (destination address not unicast,
	// IPv6 netmask out of 1..128, GUE without a port, ...).
	ErrInvalid = &Error{Errno: syscall.EINVAL, Msg: "Invalid operation.  Possibly wrong module version, address not unicast, ..."}
	// ERANGE: negative weight, or lower threshold above the upper one. The
	// text is glibc's strerror(ERANGE).
	ErrRange = &Error{Errno: syscall.ERANGE, Msg: "Numerical result out of range"}
)

// FULLNAT local-address refusals, as DPVS's libipvs (ipvs_strerror in
// tools/keepalived/keepalived/check/libipvs.c) words them; a missing
// service is ErrServiceNotDefined there too.
var (
	// EEXIST from add-laddr.
	ErrLocalAddrExists = &Error{Errno: syscall.EEXIST, Msg: "Local address already exists"}
	// ENOENT from del-laddr. The capital L is DPVS's.
	ErrNoLocalAddr = &Error{Errno: syscall.ENOENT, Msg: "No such Local address"}
	// EAFNOSUPPORT: a local address of another family than the service's.
	// DPVS takes one (its NAT64); xlb does not translate families. The
	// text is libipvs's for the errno.
	ErrAddrFamily = &Error{Errno: syscall.EAFNOSUPPORT, Msg: "Operation not supported with specified address family"}
)

// Refusals of ipvsadm itself (process_options), which xlb's model enforces
// for every caller.
var (
	ErrZeroPort    = &Error{Msg: "Zero port specified for non-persistent service"}
	ErrOnePacket   = &Error{Msg: "One-Packet Scheduling is only for UDP virtual services"}
	ErrMixedFamily = &Error{Msg: "Different address family is allowed only for tunneling servers"}
	ErrTunnelOpts  = &Error{Msg: "Tunnel options conflict with forward method"}
)

// ErrNotSupported marks what IPVS and ipvsadm do but xlb does not.
var ErrNotSupported = errors.New("not supported by xlb")

// schedFlagError is ipvsadm's refusal of a -b flag: unknown ("invalid
// scheduler flag `x'") or meant for another scheduler ("incompatible
// scheduler flag `x'").
func schedFlagError(kind, flag string) *Error {
	return &Error{Msg: fmt.Sprintf("%s scheduler flag `%s'", kind, flag)}
}
