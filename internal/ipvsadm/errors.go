package ipvsadm

// Exit statuses, as ipvsadm's.
//
// A command the kernel refuses exits 255: process_options prints
// ipvs_strerror and returns the library's -1, which main returns. Only a
// listing of one missing service (list_service: exit(1)) and a library
// that cannot start (fail(1, "Can't initialize ipvs: ..."), as for a user
// who is not root) exit 1.
const (
	ExitOK      = 0
	ExitRuntime = 1   // exit(1) / fail(1, ...): -L of a missing service, no IPVS
	ExitUsage   = 2   // fail(2, ...): a bad command line
	ExitKernel  = 255 // return -1 from main: the kernel refused (ipvs_strerror printed)
	ExitTryHelp = 255 // exit(-1): no command, or popt could not scan the line
)

// Program is the argv[0] xlb's messages use.
const Program = "ipvsadm"

// Error is a refused command line or command: Msg is what ipvsadm prints
// on stderr (without the final newline), Code its exit status.
type Error struct {
	Code int
	Msg  string
	Err  error // the cause, if any: an *ipvs.Error, ipvs.ErrNotSupported
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Err }

// usageError is fail(2, msg).
func usageError(msg string) *Error { return &Error{Code: ExitUsage, Msg: msg} }

// tryHelp is tryhelp_exit(argv[0], -1).
func tryHelp() *Error {
	return &Error{Code: ExitTryHelp, Msg: "Try `" + Program + " -h' or '" + Program + " --help' for more information."}
}

// The kernel's refusals of --start-daemon and --stop-daemon
// (start_sync_thread, stop_sync_thread), as ipvs_strerror words them.
var (
	// ErrDaemonRunning: a daemon of that role runs already (EEXIST).
	ErrDaemonRunning = &Error{Code: ExitKernel, Msg: "Daemon has already run"}
	// ErrNoDaemon: no daemon of that role runs (ESRCH).
	ErrNoDaemon = &Error{Code: ExitKernel, Msg: "No daemon is running"}
	// ErrNoDevice: the --mcast-interface does not exist (ENODEV,
	// strerror's words: ipvs_strerror has no entry of its own).
	ErrNoDevice = &Error{Code: ExitKernel, Msg: "No such device"}
)
