package sched

import (
	"net/netip"
	"testing"
)

// TestThresholds pins the overload flag against the kernel's rules:
// ip_vs_bind_dest sets it at u_threshold, ip_vs_unbind_dest clears it
// below l_threshold, or below 3/4 of u_threshold without one, and
// __ip_vs_update_dest clears it on an edit that removes or raises
// u_threshold (and never sets it).
func TestThresholds(t *testing.T) {
	type op struct {
		do   string // bind, bindtpl, unbind, unbindact, unbindtpl, act, set
		u, l uint32 // for set
		want bool   // overloaded afterwards
	}
	tests := []struct {
		name string
		u, l uint32
		ops  []op
	}{
		{"upper only, 3/4 rule", 4, 0, []op{
			{do: "bind"}, {do: "bind"}, {do: "bind"},
			{do: "bind", want: true},   // 4 >= 4
			{do: "unbind", want: true}, // 3*4 < 4*3 is false
			{do: "unbind"},             // 2*4 < 12
			{do: "bind"},               // 3 < 4
			{do: "bind", want: true},
		}},
		{"lower threshold", 10, 5, []op{
			{do: "bind"}, {do: "bind"}, {do: "bind"}, {do: "bind"}, {do: "bind"},
			{do: "bind"}, {do: "bind"}, {do: "bind"}, {do: "bind"},
			{do: "bind", want: true}, // 10
			{do: "unbind", want: true}, {do: "unbind", want: true}, {do: "unbind", want: true},
			{do: "unbind", want: true}, // 6
			{do: "unbind", want: true}, // 5, not < 5
			{do: "unbind"},             // 4 < 5
		}},
		{"active connections count", 2, 0, []op{
			{do: "bind"}, {do: "act"},
			{do: "bind", want: true},       // 1 active + 1 inactive
			{do: "unbindact", want: false}, // 1*4 < 6
		}},
		{"templates do not count", 2, 0, []op{
			{do: "bindtpl"}, {do: "bindtpl"}, {do: "bindtpl"},
			{do: "bind"},
			{do: "bind", want: true},
			{do: "unbindtpl", want: true}, // total still 2
		}},
		{"no thresholds", 0, 0, []op{
			{do: "bind"}, {do: "bind"}, {do: "unbind"},
		}},
		{"edit raising upper clears", 2, 0, []op{
			{do: "bind"}, {do: "bind", want: true},
			{do: "set", u: 3, want: false}, // raised: cleared although 2 >= 3*3/4
			{do: "bind", want: true},
		}},
		{"edit lowering upper neither sets nor clears", 4, 0, []op{
			{do: "bind"}, {do: "bind"}, {do: "bind"},
			{do: "set", u: 2, want: false}, // 3 >= 2 but an edit never sets
			{do: "bind", want: true},       // the next bind does
			{do: "set", u: 1, want: true},  // lowered: stays set
			{do: "set", u: 1, l: 3, want: true},
			{do: "unbind", want: true}, // 3, not < 3
			{do: "unbind"},             // 2 < 3
		}},
		{"edit removing upper clears", 2, 0, []op{
			{do: "bind"}, {do: "bind", want: true},
			{do: "set", u: 0, l: 1, want: false},
			{do: "bind"}, // no upper threshold: never set
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDest(netip.MustParseAddr("10.0.0.1"), 80, 1)
			d.SetThresholds(tt.u, tt.l)
			for i, o := range tt.ops {
				switch o.do {
				case "bind":
					d.Bind(false)
				case "bindtpl":
					d.Bind(true)
				case "unbind":
					d.Unbind(false, false)
				case "unbindact":
					d.Unbind(false, true)
				case "unbindtpl":
					d.Unbind(true, false)
				case "act":
					d.Activate()
				case "set":
					d.SetThresholds(o.u, o.l)
				}
				if got := d.Overloaded(); got != o.want {
					t.Fatalf("op %d %s (active %d inactive %d): Overloaded() = %v, want %v",
						i, o.do, d.ActiveConns(), d.InactConns(), got, o.want)
				}
			}
		})
	}
}

func TestLastWeight(t *testing.T) {
	d := NewDest(netip.MustParseAddr("10.0.0.1"), 80, 0)
	if d.LastWeight() != 0 {
		t.Fatalf("added with weight 0: LastWeight() = %d, want 0", d.LastWeight())
	}
	d.SetWeight(5)
	d.SetWeight(0)
	if d.Weight() != 0 || d.LastWeight() != 5 {
		t.Fatalf("Weight(), LastWeight() = %d, %d, want 0, 5", d.Weight(), d.LastWeight())
	}
}
