// Package keepalived reads keepalived.conf into xlb's configuration: an
// *ipvs.Config with the virtual and real servers, as keepalived programs
// IPVS at start (every real server up at its configured weight), and a
// health.Config with the checkers, quorum and sorry servers for package
// health.
//
// # Syntax
//
// As keepalived's parser: words separated by blanks; "{" and "}" are words
// even when written against others; a block's "{" may end its keyword's
// line or start the next; '#' and '!' at the start of a word begin a
// comment; "..." is one word; a line ending in '\' continues on the next.
// "include PATTERN" reads the files matching a glob, in place, anywhere; a
// relative pattern is relative to the directory of the including file. A
// pattern with wildcards that matches nothing is a warning; a plain path
// that does not exist, an include cycle or nesting deeper than 16 is an
// error.
//
// # Keywords
//
// Top level: virtual_server ADDRESS PORT | fwmark MARK | group NAME;
// virtual_server_group NAME { ADDRESS[-LAST] PORT ... fwmark MARK ... },
// where LAST replaces the last byte of an IPv4 address or the last group of
// an IPv6 one (at most 256 addresses per range, 4096 services per group);
// global_defs, of which lvs_timeouts tcp N tcpfin N udp N and
// lvs_sync_daemon INTERFACE [VRRP_INSTANCE] [id N] [maxlen N] [port N]
// [ttl N] [group ADDRESS] are used (the sync daemon starts as a backup:
// with no VRRP, the instance is reported and ignored);
// local_address_group NAME { ADDRESS [IFNAME] ... } (DPVS keepalived's
// FULLNAT local addresses).
//
// virtual_server: lb_algo or lvs_sched (any xlb scheduler; wlc by
// default), the scheduler flags sh-port, sh-fallback, mh-port,
// mh-fallback, flag-1..3 (ipvsadm -b), ops (-o), lb_kind or lvs_method NAT
// | DR | TUN [type ipip|gue|gre] [port N] [nocsum|csum|remcsum] | FNAT (NAT
// by default, as keepalived; FNAT is DPVS keepalived's FULLNAT, with
// laddr_group_name NAME naming its local addresses), persistence_timeout (-p),
// persistence_granularity (a netmask or prefix length: -M), protocol TCP |
// UDP | SCTP (TCP by default), ip_family inet | inet6 (of a fwmark
// service), delay_loop, alpha, inhibit_on_failure (for all its real
// servers), quorum, hysteresis, quorum_up, quorum_down, sorry_server
// ADDRESS [PORT], sorry_server_inhibit, sorry_server_lvs_method,
// virtualhost, and as defaults for the checkers below: connect_timeout,
// retry, delay_before_retry, warmup.
//
// real_server ADDRESS PORT (the port may be left out for fwmark
// services): weight (1 by default), inhibit_on_failure, lb_kind or
// lvs_method, uthreshold, lthreshold, notify_up, notify_down, virtualhost,
// the checker defaults above and delay_loop, and the checkers TCP_CHECK,
// HTTP_GET, SSL_GET (url { path digest status_code virtualhost },
// enable_sni), UDP_CHECK (payload, require_reply, min_reply_length,
// max_reply_length), PING_CHECK and MISC_CHECK (misc_path, misc_timeout,
// misc_dynamic), each with connect_ip, connect_port, bindto, bind_port,
// bind_if, fwmark, connect_timeout, retry (nb_get_retry), delay_before_retry,
// warmup, delay_loop and xlb's rise. Times are seconds, with a fraction if
// wanted. See package health for what each means and its default.
//
// A direct-routing or tunnel destination of a service with a port keeps the
// virtual port (ipvsadm and package ipvs store it so); its checkers still
// probe the port written on the real_server line, through connect_port, as
// keepalived's do.
//
// A virtual_server_group gives one service per address and mark, with the
// same settings and real servers; its real servers are checked once for
// all of them (health.VirtualService.Also).
//
// # Ignored keywords
//
// VRRP (vrrp_instance, vrrp_sync_group, vrrp_script, ...), static
// addresses and routes, BFD, the global_defs other than lvs_timeouts and
// lvs_sync_daemon,
// SMTP_CHECK, DNS_CHECK, BFD_CHECK, FILE_CHECK, and unknown keywords are
// returned as Warnings with file and line, each keyword once (Warning.More
// counts the others), and ignored. Nothing is ignored silently.
// persistence_engine is an error: xlb has none.
//
// # Errors
//
// Bad input is an *Error naming file and line: syntax, values out of
// range, and whatever package ipvs refuses (wrapped, so errors.Is works
// with ipvs.ErrSchedNotFound and the others). Parse never panics on any
// input (FuzzParse).
package keepalived
