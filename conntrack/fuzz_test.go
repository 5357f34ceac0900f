package conntrack

import (
	"testing"
	"time"
)

// FuzzTCPStateMachine feeds arbitrary sequences of TCP segments, in both
// directions, to a few connections (NAT, DR and persistent ones), with
// clock jumps, sweeps, removals and weight changes between them. After
// every step the table's index must agree with its entries and every
// destination's active/inactive/persistent counts must equal what the
// entries say; nothing may panic.
//
// Each input byte is one step: the top two bits pick the action, the low
// six its argument.
func FuzzTCPStateMachine(f *testing.F) {
	f.Add([]byte{0x02, 0x52, 0x10, 0x11, 0x51, 0x11})             // handshake, FIN both ways
	f.Add([]byte{0x02, 0x10, 0x04, 0x14, 0x90, 0xbf, 0xff})       // handshake, RST, time passes
	f.Add([]byte{0x22, 0x30, 0x31, 0x70, 0x24, 0xc5, 0x22, 0x30}) // DR flow, reuse
	f.Add([]byte{0x82, 0x02, 0x12, 0x3f, 0x7f, 0xff, 0xff, 0xc0}) // persistent flows, expiry
	f.Add([]byte{0x00, 0x40, 0x08, 0x48, 0x06, 0x46, 0xe1, 0xe2}) // flagless and SYN+FIN segments
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 512 {
			data = data[:512]
		}
		fx := newFixture(t, 8, 3, func(o *Options) { o.EvictProbe = 4 })
		svcs := [3]*Service{
			fx.service(t, func(o *ServiceOptions) { o.DefaultFwd = FwdMasq }),
			fx.service(t, func(o *ServiceOptions) { o.DefaultFwd = FwdRoute }),
			fx.service(t, func(o *ServiceOptions) {
				o.Persistent, o.Timeout, o.Netmask, o.DefaultFwd = true, 90*time.Second, 24, FwdMasq
			}),
		}
		// Flow n (0..3) of service n%3.
		keys := [4]Key{}
		for n := range keys {
			keys[n] = clientKey(ProtoTCP, uint32(n+1), uint16(1000+n))
		}
		for _, b := range data {
			arg := b & 0x3f
			now := fx.clk.advance(time.Millisecond)
			switch b >> 6 {
			case 0, 1: // a segment: bit 6 direction, bits 4-5 flow, bits 0-3 flags
				n := arg >> 4
				flags := arg & 0x0f
				if flags&0x08 != 0 {
					flags = flags&^0x08 | TCPAck
				}
				dir := DirInput
				if b>>6 == 1 {
					dir = DirOutput
				}
				k := keys[n]
				e, _ := fx.t.Lookup(&k, now)
				if e == nil {
					if dir == DirOutput {
						continue
					}
					c, _ := fx.t.NewConn(svcs[int(n)%3], &k, flags, now)
					if e = c.Entry; e == nil {
						continue
					}
				}
				fx.t.Update(e, dir, flags, 60, now)
			case 2: // time passes: arg × 5 s, then a sweep
				fx.t.Expire(fx.clk.advance(time.Duration(arg)*5*time.Second), int(arg))
			case 3:
				switch {
				case arg < 16: // remove a flow
					k := keys[arg&3]
					if e, _ := fx.t.Lookup(&k, now); e != nil {
						fx.t.Remove(e)
					}
				case arg < 32: // reweight
					fx.dests[int(arg)%3].SetWeight(int32(arg>>2) & 1)
				case arg < 48:
					fx.t.settings.SetSecureTCP(arg&1 != 0)
					fx.t.settings.SetExpireQuiescentTemplate(arg&2 != 0)
					fx.t.Expire(now, 0)
				default: // a flood of new flows into the small table
					for i := 0; i < int(arg); i++ {
						k := clientKey(ProtoTCP, uint32(100+i), uint16(i))
						fx.t.NewConn(svcs[i%3], &k, TCPSyn, now)
					}
				}
			}
			fx.checkCounts(t)
		}
		// Everything must eventually expire and leave all counts at zero.
		for i := 0; i < 6; i++ {
			fx.t.Expire(fx.clk.advance(10*time.Minute), 64)
		}
		fx.checkCounts(t)
		if fx.t.Len() != 0 {
			t.Fatalf("%d entries survive every timeout", fx.t.Len())
		}
		for _, d := range fx.dests {
			if d.ActiveConns()|d.InactConns()|d.PersistConns() != 0 {
				t.Fatalf("%v keeps counts %d/%d/%d", d.Addr, d.ActiveConns(), d.InactConns(), d.PersistConns())
			}
		}
	})
}
