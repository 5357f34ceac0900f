// Package ipvssync speaks the Linux IPVS connection synchronization
// protocol, version 1, so that xlb directors share their connections and
// persistence templates with each other and, on the wire, with kernel
// IPVS directors: the `ipvsadm --start-daemon master|backup` sync daemon.
//
// It has three parts: the codec (Builder, Decoder), a model of a synced
// connection independent of conntrack (Conn), and the transport (Sender
// for the master, Receiver for the backup). It does not touch the
// dataplane; the workers hand their new, changed and expired entries to a
// Sender at batch edges, and a Receiver's records are installed by the
// owning workers (see "Wiring" below).
//
// # Wire format, and where each part comes from
//
// Everything below was taken from net/netfilter/ipvs/ip_vs_sync.c and
// include/net/ip_vs.h, include/uapi/linux/ip_vs.h, from knowledge of
// that code (no kernel IPVS runs on the machines xlb is built on).
//
// A message is one UDP datagram: struct ip_vs_sync_mesg, then nr_conns
// records.
//
//	 0               1               2               3
//	+---------------+---------------+-------------------------------+
//	| reserved = 0  |    syncid     |        size (__be16)          |
//	+---------------+---------------+-------------------------------+
//	|   nr_conns    |  version = 1  |         spare = 0             |
//	+---------------+---------------+-------------------------------+
//
// size counts the whole message. A record (union ip_vs_sync_conn: struct
// ip_vs_sync_v4, 36 bytes, or struct ip_vs_sync_v6, 72 bytes):
//
//	+---------------+---------------+-------+-----------------------+
//	| type          | protocol      | ver=0 | size (12 bits)        |
//	+---------------+---------------+-------+-----------------------+
//	| flags (__be32, IP_VS_CONN_F_*, HASHED cleared)                |
//	+-------------------------------+-------------------------------+
//	| state (__be16)                | cport                         |
//	+-------------------------------+-------------------------------+
//	| vport                         | dport                         |
//	+-------------------------------+-------------------------------+
//	| fwmark (__be32)                                               |
//	| timeout (__be32, seconds: cp->timeout / HZ)                   |
//	| caddr, vaddr, daddr (4 or 16 bytes each)                      |
//	+---------------------------------------------------------------+
//	| options: type (1 byte), length (1 byte, > 0), data            |
//	+---------------------------------------------------------------+
//
// type is 0 for IPv4 and STYPE_F_INET6 (1) for IPv6; ports and addresses
// are in network order as the kernel copies them from the connection;
// flags, state, fwmark and timeout go through htonl/htons. The record
// size includes its options; the next record starts at the next multiple
// of 4 (the master writes the zero padding before a record, and counts it
// in the message size; there is none after the last record). Options are
// those ip_vs_sync_conn writes: IPVS_OPT_SEQ_DATA (struct
// ip_vs_sync_conn_options: in_seq and out_seq, each struct ip_vs_seq
// init_seq, delta, previous_delta, all htonl; sent when the flags have
// IP_VS_CONN_F_SEQ_MASK), IPVS_OPT_PE_DATA (at most IP_VS_PEDATA_MAXLEN =
// 255 bytes) and, only after it, IPVS_OPT_PE_NAME (at most 16 bytes).
// Builder writes exactly this; one message holds at most 255 records
// (nr_conns is 8 bits, MAX_CONNS_PER_SYNCBUFF) and MaxLen bytes.
//
// The legacy format, version 0 (struct ip_vs_sync_mesg_v0: nr_conns,
// syncid, size; struct ip_vs_sync_conn_v0: 24 bytes, IPv4 only, __be16
// flags, no fwmark, no timeout, followed by raw struct
// ip_vs_sync_conn_options when the flags have IP_VS_CONN_F_SEQ_MASK) is
// recognised as ip_vs_process_message does (anything whose header is not
// reserved=0, version=1, spare=0) and decoded as ip_vs_process_message_v0
// does, with a timeout of 0 (the protocol's default for the state). Its
// sequence options are memcpy'd from the master's memory, in its host
// byte order; they are read as little-endian. xlb never sends v0.
//
// # Validation, as the kernel's backup does it
//
// Message level (ip_vs_process_message): fewer than 4 bytes, a size field
// different from the datagram length, a record header or a record's size
// past the end, a nonzero record version, a bad type byte, a size smaller
// than the fixed part, an option header or data past the record, an
// option of length 0, a SEQ_DATA option not 24 bytes long, a PE string
// too long or any known option twice: the rest of the message is dropped
// (records before the fault stay: the kernel has applied them). Record
// level (ip_vs_proc_sync_conn's positive return codes): an unknown
// protocol (ip_vs_proto_get knows TCP, UDP, SCTP, AH, ESP), a state not
// below the protocol's number of states (11 for TCP, 1 for UDP, 13 for
// SCTP; not checked for templates), PE data without a PE name
// (ip_vs_conn_fill_param_sync), or an unknown option WITHOUT the
// IPVS_OPT_F_PARAM bit: that record alone is dropped. Each reason has a
// counter (Reason, ReceiverStats). On receipt the flags are masked with
// IP_VS_CONN_F_BACKUP_MASK and IP_VS_CONN_F_SYNC is set. A backup with
// sync ID 0 takes every sync ID, any other only its own.
//
// # The FULLNAT extension, and why a kernel backup ignores it
//
// ip_vs_proc_sync_conn's option loop switches on
// (type & ~IPVS_OPT_F_PARAM); for an unknown value it drops the record
// ("Unknown mandatory param") unless the type has IPVS_OPT_F_PARAM (0x40),
// in which case the option is skipped and the record kept. So the bit
// marks an option as optional, and an extension must set it. xlb's
// OptXLBLocal is 0x58 ('X' = 0x40 | 0x18; 0x18 is none of the kernel's
// 1, 2, 3): its data is the FULLNAT local port (__be16) then the local
// address (4 or 16 bytes; it may differ in family from the record). It is
// written after the kernel's options, on a record whose forwarding bits
// are IP_VS_CONN_F_MASQ. A kernel backup therefore installs a FULLNAT
// connection as a NAT one (without the local address, which it has no
// notion of); an xlb backup sees Conn.Local and Method() == MethodFullNAT.
// A malformed OptXLBLocal drops the record on an xlb backup (ReasonLocal).
//
// # Persistence templates
//
// A template is a record with IP_VS_CONN_F_TEMPLATE, built as
// ip_vs_sched_persist builds it: the client address masked with the
// service's persistence netmask and client port 0; the VIP and service
// port (port 0 for a port-0 service); for a fwmark service protocol
// IPPROTO_IP, the mark as vaddr (htonl(fwmark)) and vport 0; the
// destination's address and port; timeout the persistence timeout; state
// IP_VS_CTPL_S_NONE or _ASSURED. The netmask itself is not on the wire.
// See Conn for the full mapping from an xlb entry.
//
// # Timeouts
//
// The kernel sends a connection's full timeout for its current state, not
// the time left, and the backup restarts its timer with it whenever a
// record arrives; a master resends established connections every
// sync_period packets (sysctls sync_threshold, sync_period,
// sync_refresh_period). Conn.Timeout has the same meaning. Choosing
// when to resend is the exporter's job, not this package's.
//
// # Transport
//
// Defaults are the kernel's: group 224.0.0.81 (IP_VS_SYNC_GROUP), port
// 8848 (IP_VS_SYNC_PORT), TTL 1, and a message limit (--sync-maxlen) of
// the interface MTU less the IP and UDP headers (1472 for IPv4 at MTU
// 1500, 1452 for IPv6), raised if needed to hold xlb's largest record
// (399 bytes). The kernel has no default IPv6 group: an IPv6 group must
// be given with --mcast-group, as with ipvsadm (the tests use
// ff02::8:8848, link-local scope, sent with the interface as zone).
// The Sender sets IP_MULTICAST_IF (the interface's index), the TTL and no
// loopback, as make_send_sock; the Receiver joins the group on the
// interface, binds to the interface (SO_BINDTODEVICE), sets
// IP(V6)_MULTICAST_ALL = 0 (Go binds to the wildcard address where the
// kernel binds to the group) and a 4 MiB receive buffer (the kernel's
// sync_sock_size). A datagram longer than the Receiver's MaxLen is
// dropped, as the kernel's receive buffer of sync_maxlen truncates it and
// its size check then fails. Joining an IPv4 group needs an IPv4 address
// on the interface (Go joins by address).
//
// The unicast peer list (Options.Peers) is xlb's extension for networks
// without multicast: the Sender sends each message to every peer, with
// the system's unicast TTL; the Receiver listens on the port and takes
// datagrams only from the peers' addresses (ReasonNotPeer). Messages are
// unchanged, so a kernel backup can receive them too only if something
// delivers them to its group socket; a kernel master cannot send unicast.
// Like the kernel's, the protocol has no authentication: keep the sync
// network private.
//
// Limits: one port per Sender and Receiver. A kernel master with the
// sync_ports sysctl above 1 sends from several threads to port, port+1,
// ...; an xlb backup then needs one Receiver per port. As in the kernel, a
// director may run a master and a backup at once (one Sender and one
// Receiver). Records with persistence-engine data (the kernel's sip PE)
// are decoded, but xlb has no PE: the installer should drop them, as a
// kernel without the module does ("no engine found").
//
// # What was tested and what only reasoned
//
// Tested (wire_test.go): xlb's Builder produces, byte for byte, messages
// laid out by hand from the kernel's structures (IPv4 DR connection; IPv6
// NAT connection with SEQ_DATA; IPv4 persistence template with sip PE
// data and name; FULLNAT with OptXLBLocal; inter-record padding), and the
// Decoder reads those frames and a hand-built v0 message; a kernel
// backup's option loop, emulated in the test, keeps the record with the
// xlb option; every validation rule above drops what the kernel drops;
// the decoder is fuzzed (FuzzDecode, corpus in testdata/fuzz) for panics
// and for decode/encode/decode stability; Sender and Receiver exchange
// 10 000 records over IPv4 and IPv6 multicast and unicast between two
// network namespaces, with a second master of another sync ID filtered
// out (TestTransport, root).
//
// Only reasoned, not tested (no kernel IPVS here): that a kernel backup
// accepts xlb's stream and a kernel master's stream matches the
// hand-built frames, i.e. that the frames above are what the kernel
// writes; the v0 byte order of sequence options on a big-endian master.
//
// # Wiring (for the daemon)
//
//   - Master: one goroutine owns a Sender (NewSender); it drains the
//     workers' export rings at their batch edges, calls Add per entry
//     (Conn built as documented on Conn) and Flush when the rings are
//     empty, at least once a second.
//   - Backup: NewReceiver, then Serve(handle) on its own goroutine; handle
//     gets each message's records (valid during the call), maps Dest to a
//     local destination and Local to a FULLNAT pool reservation, and
//     pushes each record into the ring of the worker that owns its flow.
//   - ipvsadm: FromDaemon maps ipvsadm.Daemon to a Role and Options;
//     DaemonLine prints `ipvsadm -L --daemon` from Sender.Options or
//     Receiver.Options.
package ipvssync
