package conntrack

import (
	"sync"
	"sync/atomic"
	"time"
)

// State is a connection entry's protocol state. The TCP values are IPVS's
// IP_VS_TCP_S_* (ip_vs_proto_tcp.c), in the kernel's order, so a state
// number means the same here and in /proc/net/ip_vs_conn.
type State uint8

const (
	StateNone        State = iota // NONE
	StateEstablished              // ESTABLISHED
	StateSynSent                  // SYN_SENT
	StateSynRecv                  // SYN_RECV
	StateFinWait                  // FIN_WAIT
	StateTimeWait                 // TIME_WAIT
	StateClose                    // CLOSE
	StateCloseWait                // CLOSE_WAIT
	StateLastAck                  // LAST_ACK
	StateListen                   // LISTEN
	StateSynAck                   // SYNACK

	// StateUDP is the one state of a UDP entry (IP_VS_UDP_S_NORMAL).
	StateUDP
	// StateICMP is the one state of an ICMP (echo) entry, and of any
	// protocol without a state machine of its own.
	StateICMP
	// StateTemplateNone and StateTemplateAssured are the states of a
	// persistence template (IP_VS_CTPL_S_NONE, IP_VS_CTPL_S_ASSURED): a
	// template becomes assured when a connection it controls reaches
	// ESTABLISHED (TCP) or sees a reply (UDP).
	StateTemplateNone
	StateTemplateAssured
	numStates
)

// numTCPStates is IP_VS_TCP_S_LAST.
const numTCPStates = StateUDP

var stateNames = [numStates]string{
	StateNone:            "NONE",
	StateEstablished:     "ESTABLISHED",
	StateSynSent:         "SYN_SENT",
	StateSynRecv:         "SYN_RECV",
	StateFinWait:         "FIN_WAIT",
	StateTimeWait:        "TIME_WAIT",
	StateClose:           "CLOSE",
	StateCloseWait:       "CLOSE_WAIT",
	StateLastAck:         "LAST_ACK",
	StateListen:          "LISTEN",
	StateSynAck:          "SYNACK",
	StateUDP:             "UDP",
	StateICMP:            "ICMP",
	StateTemplateNone:    "NONE",
	StateTemplateAssured: "ASSURED",
}

// String returns the name ipvsadm -L -c prints.
func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return "ERR!"
}

// Dir is the direction of a packet relative to its connection.
type Dir uint8

const (
	// DirInput is client → server: the packet matched the forward key.
	DirInput Dir = iota
	// DirOutput is server → client: the packet matched the reply key of
	// a NAT (Masq or FullNAT) connection.
	DirOutput
	// DirInputOnly is client → server on a connection whose replies
	// bypass the director (DR, TUN). Update picks it by itself for such
	// entries until an output packet is seen (IP_VS_CONN_F_NOOUTPUT), so
	// callers normally pass DirInput.
	DirInputOnly
)

func (d Dir) String() string {
	switch d {
	case DirInput:
		return "input"
	case DirOutput:
		return "output"
	case DirInputOnly:
		return "input-only"
	}
	return "Dir(?)"
}

// TCP header flag bits, as in byte 13 of the TCP header.
const (
	TCPFin uint8 = 0x01
	TCPSyn uint8 = 0x02
	TCPRst uint8 = 0x04
	TCPPsh uint8 = 0x08
	TCPAck uint8 = 0x10
)

// Short names for the transition tables below.
const (
	sNO = StateNone
	sES = StateEstablished
	sSS = StateSynSent
	sSR = StateSynRecv
	sFW = StateFinWait
	sTW = StateTimeWait
	sCL = StateClose
	sCW = StateCloseWait
	sLA = StateLastAck
	sLI = StateListen
	sSA = StateSynAck
)

// tcpTable[dir][event][state] is the next state, event being the first of
// RST, SYN, FIN, ACK set in the segment (tcp_state_idx: RST wins over
// SYN). These are the tables of mainline ip_vs_proto_tcp.c (tcp_states),
// where an ACK in state NONE leads to ESTABLISHED in the input
// directions.
type tcpTable [3][4][numTCPStates]State

const (
	evSyn = iota
	evFin
	evAck
	evRst
)

var tcpStates = tcpTable{
	DirInput: {
		//        sNO  sES  sSS  sSR  sFW  sTW  sCL  sCW  sLA  sLI  sSA
		evSyn: {sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR},
		evFin: {sCL, sCW, sSS, sTW, sTW, sTW, sCL, sCW, sLA, sLI, sTW},
		evAck: {sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES},
		evRst: {sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sSR},
	},
	DirOutput: {
		evSyn: {sSS, sES, sSS, sSR, sSS, sSS, sSS, sSS, sSS, sLI, sSR},
		evFin: {sTW, sFW, sSS, sTW, sFW, sTW, sCL, sTW, sLA, sLI, sTW},
		evAck: {sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sLA, sES, sES},
		evRst: {sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL},
	},
	DirInputOnly: {
		evSyn: {sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR},
		evFin: {sCL, sFW, sSS, sTW, sFW, sTW, sCL, sCW, sLA, sLI, sTW},
		evAck: {sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES},
		evRst: {sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL},
	},
}

// tcpStatesSecure are IPVS's tcp_states_dos, used while the secure_tcp
// defense is on: a SYN does not move an entry out of SYNACK, and a
// handshake must be seen in both directions, so spoofed SYN+ACK floods
// keep their entries short-lived.
var tcpStatesSecure = tcpTable{
	DirInput: {
		evSyn: {sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSA},
		evFin: {sCL, sCW, sSS, sTW, sTW, sTW, sCL, sCW, sLA, sLI, sSA},
		evAck: {sES, sES, sSS, sSR, sFW, sTW, sCL, sCW, sCL, sLI, sSA},
		evRst: {sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL},
	},
	DirOutput: {
		evSyn: {sSS, sES, sSS, sSA, sSS, sSS, sSS, sSS, sSS, sLI, sSA},
		evFin: {sTW, sFW, sSS, sTW, sFW, sTW, sCL, sTW, sLA, sLI, sTW},
		evAck: {sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sLA, sES, sES},
		evRst: {sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL},
	},
	DirInputOnly: {
		evSyn: {sSA, sES, sES, sSR, sSA, sSA, sSA, sSA, sSA, sSA, sSA},
		evFin: {sCL, sFW, sSS, sTW, sFW, sTW, sCL, sCW, sLA, sLI, sTW},
		evAck: {sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES},
		evRst: {sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL},
	},
}

// tcpEvent maps TCP flags to a table row as tcp_state_idx does; -1 means
// no RST, SYN, FIN or ACK, which IPVS treats as a move to CLOSE.
func tcpEvent(flags uint8) int {
	switch {
	case flags&TCPRst != 0:
		return evRst
	case flags&TCPSyn != 0:
		return evSyn
	case flags&TCPFin != 0:
		return evFin
	case flags&TCPAck != 0:
		return evAck
	}
	return -1
}

// NextTCPState is the IPVS transition from s on a segment with the given
// flags in direction d (secure selects the secure_tcp tables).
func NextTCPState(s State, d Dir, flags uint8, secure bool) State {
	if s >= numTCPStates || d > DirInputOnly {
		return StateClose
	}
	ev := tcpEvent(flags)
	if ev < 0 {
		return StateClose
	}
	if secure {
		return tcpStatesSecure[d][ev][s]
	}
	return tcpStates[d][ev][s]
}

// Timeouts are the per-state connection timeouts.
type Timeouts struct {
	// TCP is indexed by State (StateNone .. StateSynAck).
	TCP  [numTCPStates]time.Duration
	UDP  time.Duration
	ICMP time.Duration
}

// DefaultTimeouts returns IPVS's defaults (tcp_timeouts, udp_timeouts):
// ESTABLISHED 900 s, SYN_RECV 60 s, FIN_WAIT 120 s, CLOSE 10 s, UDP
// 300 s. IPVS has no ICMP entries; xlb gives ICMP echo flows 60 s, the
// value of the ICMP protocol of IPVS for Linux 2.4.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		TCP: [numTCPStates]time.Duration{
			StateNone:        2 * time.Second,
			StateEstablished: 900 * time.Second,
			StateSynSent:     120 * time.Second,
			StateSynRecv:     60 * time.Second,
			StateFinWait:     120 * time.Second,
			StateTimeWait:    120 * time.Second,
			StateClose:       10 * time.Second,
			StateCloseWait:   60 * time.Second,
			StateLastAck:     30 * time.Second,
			StateListen:      120 * time.Second,
			StateSynAck:      120 * time.Second,
		},
		UDP:  300 * time.Second,
		ICMP: 60 * time.Second,
	}
}

// Settings are the knobs the control plane may change while the workers
// run: the timeouts (ipvsadm --set) and IPVS sysctls. One Settings is
// normally shared by the tables of all workers.
//
// Writers publish an immutable copy through an atomic pointer; a table
// picks the newest copy up at its next LookupBatch or Expire call (a
// batch edge), so the packet path reads only the table's own memory. As
// in IPVS, a new timeout applies to an entry from its next packet or
// state change on.
type Settings struct {
	mu  sync.Mutex // serialises writers
	cur atomic.Pointer[settingsVal]
}

type settingsVal struct {
	timeouts Timeouts
	// expireQuiescent is the expire_quiescent_template sysctl: a
	// template whose destination has weight 0 is invalid.
	expireQuiescent bool
	// expireNodest is the expire_nodest_conn sysctl (see
	// Table.ExpireNodest).
	expireNodest bool
	// secureTCP selects the secure_tcp state tables.
	secureTCP bool
	// sloppyTCP is the sloppy_tcp sysctl: schedule TCP on any segment,
	// not only on SYN.
	sloppyTCP bool
	// connReuseMode is the conn_reuse_mode sysctl (see Table.Reuse).
	connReuseMode uint8
}

// NewSettings returns settings with the given timeouts and IPVS's
// default sysctls: conn_reuse_mode 1, the others off.
func NewSettings(t Timeouts) *Settings {
	s := &Settings{}
	s.cur.Store(&settingsVal{timeouts: t, connReuseMode: 1})
	return s
}

func (s *Settings) load() *settingsVal { return s.cur.Load() }

func (s *Settings) update(f func(v *settingsVal)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := *s.cur.Load()
	f(&v)
	s.cur.Store(&v)
}

// Timeouts returns the current timeouts.
func (s *Settings) Timeouts() Timeouts { return s.load().timeouts }

// SetTimeouts does what ipvsadm --set tcp tcpfin udp does: it sets the
// ESTABLISHED, FIN_WAIT and UDP timeouts; a zero value keeps the current
// one. Negative values are refused.
func (s *Settings) SetTimeouts(tcp, tcpFin, udp time.Duration) error {
	if tcp < 0 || tcpFin < 0 || udp < 0 {
		return errNegativeTimeout
	}
	s.update(func(v *settingsVal) {
		if tcp != 0 {
			v.timeouts.TCP[StateEstablished] = tcp
		}
		if tcpFin != 0 {
			v.timeouts.TCP[StateFinWait] = tcpFin
		}
		if udp != 0 {
			v.timeouts.UDP = udp
		}
	})
	return nil
}

// SetAllTimeouts replaces every timeout.
func (s *Settings) SetAllTimeouts(t Timeouts) { s.update(func(v *settingsVal) { v.timeouts = t }) }

// SetExpireQuiescentTemplate sets the expire_quiescent_template sysctl.
func (s *Settings) SetExpireQuiescentTemplate(on bool) {
	s.update(func(v *settingsVal) { v.expireQuiescent = on })
}

// SetExpireNodestConn sets the expire_nodest_conn sysctl.
func (s *Settings) SetExpireNodestConn(on bool) {
	s.update(func(v *settingsVal) { v.expireNodest = on })
}

// SetSecureTCP sets the secure_tcp defense (the tcp_states_dos tables).
func (s *Settings) SetSecureTCP(on bool) { s.update(func(v *settingsVal) { v.secureTCP = on }) }

// SetConnReuseMode sets the conn_reuse_mode sysctl: 0 off, bit 1 on,
// bit 2 also reuses FIN_WAIT connections of DR/TUN services.
func (s *Settings) SetConnReuseMode(mode uint8) {
	s.update(func(v *settingsVal) { v.connReuseMode = mode })
}

// SetSloppyTCP sets the sloppy_tcp sysctl.
func (s *Settings) SetSloppyTCP(on bool) { s.update(func(v *settingsVal) { v.sloppyTCP = on }) }
