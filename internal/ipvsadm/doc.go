// Package ipvsadm is xlb's ipvsadm: the command line of ipvsadm 1.31, its
// messages and exit statuses, and its listing and save formats, over the
// ipvs model instead of the kernel.
//
// # Parsing
//
// Parse reads a command line as ipvsadm does with popt: short and long
// options, clusters ("-Ln"), "--opt=value", -p's optional timeout,
// leftover arguments (--set's values) wherever they are. It applies
// ipvsadm's checks in ipvsadm's order (option values, the table of legal
// command and option combinations, the per-command rules) and fails with
// ipvsadm's text: "Illegal 'weight' option with the 'list' command", "Zero
// port specified for non-persistent service", "incompatible scheduler flag
// `sh-port'". An *Error carries the exit status: 2 for a bad command line,
// 255 where ipvsadm exits with -1 ("Try `ipvsadm -h' ...", popt's "-t:
// missing argument"), 1 for a refusal of the kernel.
//
// Addresses are read as ipvsadm reads them: "1.2.3.4:80", inet_aton's
// short and hexadecimal forms, "[2001:db8::1]:80", a bare IPv6 address
// (without port), ports by number or by name (/etc/services if present,
// else a built-in table of the usual names), -f mark with -6 for IPv6.
// ipvsadm's quirks are kept: "[1.2.3.4]:80" loses its port, -r before -t
// cannot use port names, -M before -t is read as an IPv4 mask.
//
// # Applying
//
// (*Command).Apply carries out -A, -E, -D, -C, -a, -e, -d and --set on an
// ipvs.Config with the kernel's semantics (see package ipvs): -E and -e set
// every field, so what is left out returns to its default.
// --start-daemon and --stop-daemon are not configuration: Parse gives
// their Daemon (ipvsadm's checks and defaults) to the xlb daemon, which
// runs them (package ipvssync) and lists them for -L --daemon; the
// kernel's refusals are ErrDaemonRunning, ErrNoDaemon, ErrNoDevice.
// ParseRules and
// Restore read a rules file in ipvsadm's save format, as `ipvsadm -R`
// does, but all or nothing.
//
// # Listing
//
// WriteList (-L, -l), WriteSave (-S) and WriteConns (-L -c) print byte for
// byte what ipvsadm 1.31 prints, trailing spaces included: sorted as
// ipvsadm sorts (with its wrapping address comparison) unless --nosort,
// numbers scaled by print_largenum unless --exact. The runtime figures
// (connections, packets, rates) come from the caller through Stats.
//
// # FULLNAT
//
// IPVS upstream has no FULLNAT; its switches here are those of DPVS's
// ipvsadm (the Alibaba LVS fork's are the same):
//
//	-a|-e ... -r RIP:port --fullnat      FULLNAT destination, listed "FullNat"
//	-P|--add-laddr -t VIP:port -z LADDR [-F IFNAME]
//	-Q|--del-laddr -t VIP:port -z LADDR [-F IFNAME]
//	-G|--get-laddr [-t VIP:port]         WriteLaddrs, DPVS's listing
//
// DPVS's short -b for --fullnat is not taken: in ipvsadm 1.31 -b is
// --sched-flags. -F is optional where DPVS requires it (xlb sends out the
// interface the route names and keeps the name only to list and save it).
// -z is read as a service address and its port dropped, as DPVS does. The
// save format writes --fullnat and one "-P ... -z LADDR [-F IFNAME]" line
// per local address after the service's -A line, so that -S restores
// local addresses, which DPVS's own -S leaves out. Errors are DPVS's
// ("Local address already exists", "No such Local address", "illegal
// local address", "You need to supply the 'local-address' option for the
// 'add-laddr' command"), except for a local address of the other family,
// which DPVS takes for its NAT64 and xlb refuses ("Operation not
// supported with specified address family").
//
// # Not supported
//
//   - Host names are not resolved: an address must be numeric (ipvsadm
//     would call gethostbyname), and listings without -n show addresses as
//     numbers (ipvsadm would call gethostbyaddr). Port names are supported.
//   - Persistence engines: --pe is parsed; the model refuses it as a kernel
//     without the module does ("Scheduler or persistence engine not
//     found").
//   - IPv4 persistence netmasks that are not contiguous (-M 255.0.255.0),
//     which IPVS accepts; the model holds prefix lengths.
//   - flag-3 with sh and mh, which ipvsadm accepts but cannot save.
//   - popt's "!#:+" expansion in option values.
//   - With --nosort, services are listed in the order they were added;
//     IPVS lists them in hash-table order, which depends on kernel
//     pointers.
//   - The header always reports IPVS 1.2.1; the table size is the caller's
//     (ListOptions.TableSize, 4096 by default).
package ipvsadm
