// Package ipvs is xlb's model of an IPVS configuration: virtual services,
// their destinations (real servers) and the global timeouts. It is a plain,
// validated description with no kernel handles; the ipvsadm front end
// builds it and the dataplane applies it.
//
// # Operations
//
// Config's methods are the IPVS control operations with the kernel's
// semantics and ipvsadm's wording: AddService (ipvsadm -A), EditService
// (-E), DeleteService (-D), Clear (-C), AddDest (-a), EditDest (-e),
// DeleteDest (-d) and SetTimeouts (--set), and the FULLNAT local-address
// operations of DPVS's ipvsadm: AddLocalAddr (-P, --add-laddr) and
// DeleteLocalAddr (-Q, --del-laddr). Each checks everything before it
// changes anything, so a refused operation leaves the Config as it was. A
// refusal is an *Error whose Error() is the text ipvsadm prints for it
// (libipvs's ipvs_strerror for the kernel's errno, or ipvsadm's own fail()
// message), with xlb's explanation in Detail; compare with errors.Is
// against ErrNoService, ErrDestExists, ...
//
// # FULLNAT
//
// A FwdFullNAT destination (--fullnat) gets connections whose source is
// rewritten to one of the service's LocalAddrs and a port of it, so the
// real server needs no route back to clients. Local addresses have the
// service's family (DPVS also takes the other one, for its NAT64; xlb does
// not translate families), are unique per service and may be shared
// between services. A FULLNAT destination on a service without local
// addresses is accepted, as DPVS's ipvsadm accepts it; DPVS then refuses
// each connection at run time ("no laddr available"), and so does xlb's
// dataplane, which counts and drops the SYN.
//
// Besides the kernel's checks (service exists or not, scheduler known,
// weight not negative, lower threshold not above the upper one, IPv6
// netmask 1..128, destination address unicast, GUE with a port, mixed
// families only for tunnels), the operations enforce what ipvsadm enforces
// before it asks the kernel, so that every caller gets the same model: a
// port-0 service must be persistent, one-packet scheduling is for UDP and
// firewall-mark services only, a direct-routing or tunnel destination takes
// the service's port, weights are 0..65535, scheduler flags must suit the
// scheduler.
//
// Zeroing counters (ipvsadm -Z) is the dataplane's business and has no
// operation here.
//
// # Order
//
// Service.Dests is in the order destinations were added. IPVS keeps them
// newest first (KernelDests), which is what schedulers iterate and what
// ipvsadm --nosort lists. ipvsadm's sorted listing (SortedServices,
// SortedDests) compares addresses by wrapping 32-bit subtraction, a quirk
// reproduced here, together with glibc's merge sort that the quirk's
// results depend on.
//
// # Not supported
//
// Persistence engines (--pe sip) are refused with ErrSchedNotFound, as a
// kernel without the module would. The scheduler "none" is refused.
// Firewall-mark services take their marks from Config.Marks (MarkRule,
// `xlb mark`): XDP runs before netfilter could set them.
// FwdFullNAT is not in IPVS upstream: its switches are DPVS's. IPv4 persistence
// netmasks are prefix lengths, so non-contiguous masks, which IPVS takes,
// cannot be expressed.
package ipvs
