// Package health checks real servers the way keepalived's checkers do and
// says, as transitions, which destinations of which virtual services should
// be in service, drained (weight 0) or out. It runs on the director's own
// network stack with ordinary sockets, never on the packet path: a
// Transition goes to a Sink (the configuration owner), which applies it as
// an overlay on the operator's configuration through its one validated
// change path.
//
// # Checkers
//
// Each real server has zero or more Checks; it is healthy while all of
// them pass (one without checks is always healthy), as in keepalived.
//
//   - TCP_CHECK: a TCP connect to the real server (or connect_ip:connect_port)
//     within connect_timeout. A server that accepts and never answers passes:
//     it accepted.
//   - HTTP_GET, SSL_GET: for each url, a new connection, "GET path HTTP/1.0"
//     with keepalived's User-Agent (KeepAliveClient) and a Host header
//     (virtualhost, else the address, with :port unless 80/443), over TLS for
//     SSL_GET (certificates are not verified, as keepalived's; the server
//     name is sent with enable_sni). The status must be in status_code (any
//     2xx by default) and, with digest, the MD5 of the body in hex must
//     equal it, as keepalived's genhash prints it. Each url has
//     connect_timeout for connect, request and reply together, so a server
//     that accepts and then hangs fails at the timeout. Bodies are read up to
//     16 MiB.
//   - UDP_CHECK: send payload (empty by default) from a connected socket and
//     wait connect_timeout. An ICMP port unreachable fails; silence passes
//     unless require_reply is set; with require_reply the reply must start
//     with its hex bytes and be within min_reply_length..max_reply_length.
//   - PING_CHECK: one ICMP (IPv4) or ICMPv6 echo, answered within
//     connect_timeout. It uses an unprivileged ping socket when
//     net.ipv4.ping_group_range allows the process, else a raw socket (root
//     or CAP_NET_RAW).
//   - MISC_CHECK: run misc_path (split into words like a shell, without
//     expansion or a shell) in its own process group. Exit 0 passes, anything
//     else fails; at misc_timeout (the delay_loop by default) the group gets
//     SIGTERM, then SIGKILL 0.5 s later, and the check fails. With
//     misc_dynamic, exit 2..255 passes and sets the server's weight to
//     exit-2 (0..253; an exit status has 8 bits) until another dynamic exit
//     changes it; exit 0 keeps the current weight; exit 1 fails.
//
// Every checker may set connect_ip, connect_port, bindto, bind_port,
// bind_if (SO_BINDTODEVICE) and fwmark (SO_MARK).
//
// # Timing and hysteresis (keepalived's defaults)
//
//   - delay_loop: 60 s (DefaultDelayLoop), the interval between checks;
//     a checker without its own takes its virtual service's.
//   - connect_timeout: 5 s.
//   - retry: 1 (0 for MISC_CHECK). A healthy server goes down at the
//     (retry+1)-th failure in a row; the retries come delay_before_retry
//     apart (1 s), so a server that fails hard is out within
//     delay_loop + retry × (delay_before_retry + connect_timeout).
//   - rise: 1. keepalived brings a server back at its first success; rise
//     (xlb's addition, HAProxy's name) asks for that many successes in a
//     row, checked delay_before_retry apart.
//   - warmup: the first check of each checker waits a random time of up to
//     warmup, which is the delay_loop unless set (0 starts at once), so
//     that checkers configured together do not fire together.
//   - alpha (per virtual service): servers start failed until their
//     first success; otherwise they start healthy, as in keepalived.
//
// Each checker runs in its own goroutine on its own timer. A thousand
// servers are checked side by side, a slow or hung one delays nobody else,
// and checks are planned from the previous planned start rather than from
// the end of the probe, so the period does not drift by the probe's
// duration (TestThousandChecks measures it).
//
// # What the sink is told
//
// A Transition says, for one (service, destination): Present and Weight
// (the configured weight, or the misc_dynamic one, when healthy; when not,
// weight 0 and Present with inhibit_on_failure, so that connections drain,
// else Present false, removal). The engine sends the state of every
// destination when it starts and then each change, gathered for
// Options.BatchDelay (20 ms) into one batch; a batch the sink refuses is
// merged with newer transitions and sent again after Options.RetryDelay.
// Every change of health, quorum and weight is logged with slog.
//
// # Quorum and the sorry server
//
// As keepalived's update_quorum_state: the weights of the healthy servers
// are summed. Quorum (1 by default) is lost when the sum is 0 or below
// quorum - hysteresis, and regained when it reaches quorum + hysteresis;
// quorum_down and quorum_up run then. While quorum is lost, a service with
// a sorry server sends the sorry server Present (weight 1, its own
// forwarding method in Transition.Fwd) and takes all real servers out
// (weight 0 with inhibit_on_failure); when quorum is back, the sorry server
// is removed (kept at weight 0 with sorry_server_inhibit). With the
// default quorum, this means the sorry server serves while no real server
// is healthy.
//
// # Reload
//
// Engine.Update takes a new Config while running. A real server whose
// checkers are unchanged keeps its state: a failed server stays failed,
// its counters and times stay. New ones start (healthy unless alpha),
// changed ones start afresh, removed ones are sent a Release transition.
//
// # Status
//
// Engine.Status is a JSON-marshalable snapshot for `xlb health`: per
// service its quorum state, per real server its health and what was last
// asked of the sink, per checker its state, the last result and error, the
// time of the last check and of the last transition, and its counters.
//
// # Limits
//
// Checks of DR real servers go to the real server's own address (or
// connect_ip), not to the VIP through its MAC, as keepalived's. SMTP_CHECK,
// DNS_CHECK, BFD_CHECK and FILE_CHECK are not implemented. Notify and
// quorum scripts run with Options.ScriptTimeout (60 s) as a bound, as xlb's
// user (keepalived's script_user is not supported).
package health
