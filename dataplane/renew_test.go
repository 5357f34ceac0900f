//go:build linux

package dataplane

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/ipvsadm"
)

// TestApplyRestoreRecreates: a restore file that deletes a service (-D,
// or -C) and adds it again, as ipvsadm -R runs it, leaves a new service:
// the kernel frees the old one with its scheduler (ip_vs_del_service) and
// -A binds a fresh one, whose rr cursor is at the head of the list again.
func TestApplyRestoreRecreates(t *testing.T) {
	key := ipvs.ServiceKey{Proto: ipvs.TCP, Addr: testVIP, Port: 80}
	for _, c := range []struct{ name, rules string }{
		{"delete", "-D -t 198.18.0.100:80\n"},
		{"clear", "-C\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, _ := testDataplane(t, 16)
			cur := wrrConfig("rr", nil, 1, 1, 1)
			if err := d.Apply(cur); err != nil {
				t.Fatal(err)
			}
			if got, want := picks(t, d, 2), ".3 .2"; got != want {
				t.Fatalf("first picks = %s, want %s", got, want)
			}
			inst := d.state.services[key].scheds[0]
			rules := c.rules + "-A -t 198.18.0.100:80 -s rr\n" +
				"-a -t 198.18.0.100:80 -r 10.0.0.1 -g -w 1\n" +
				"-a -t 198.18.0.100:80 -r 10.0.0.2 -g -w 1\n" +
				"-a -t 198.18.0.100:80 -r 10.0.0.3 -g -w 1\n"
			next := cur.Clone()
			if err := ipvsadm.Restore(next, strings.NewReader(rules)); err != nil {
				t.Fatal(err)
			}
			if err := d.Apply(next); err != nil {
				t.Fatal(err)
			}
			if d.state.services[key].scheds[0] == inst {
				t.Errorf("-R %q: the service kept its scheduler instance, want a new one", strings.TrimSpace(c.rules))
			}
			if got, want := picks(t, d, 4), ".3 .2 .1 .3"; got != want {
				t.Errorf("picks after -R = %s, want %s (a new rr, at the head)", got, want)
			}

			// The same file once more, without .3: .3 goes to the trash,
			// unavailable, as the deleted service's destination it is;
			// .1 and .2 are the same destinations (their IDs, their
			// connections).
			svc := d.state.services[key]
			d1, d3 := svc.dests[netip.AddrPortFrom(destAddr(1), 80)], svc.dests[netip.AddrPortFrom(destAddr(3), 80)]
			cur = next.Settled()
			next = cur.Clone()
			if err := ipvsadm.Restore(next, strings.NewReader(c.rules+"-A -t 198.18.0.100:80 -s rr\n"+
				"-a -t 198.18.0.100:80 -r 10.0.0.1 -g -w 1\n"+
				"-a -t 198.18.0.100:80 -r 10.0.0.2 -g -w 1\n")); err != nil {
				t.Fatal(err)
			}
			if err := d.Apply(next); err != nil {
				t.Fatal(err)
			}
			svc = d.state.services[key]
			if svc.dests[netip.AddrPortFrom(destAddr(1), 80)] != d1 || svc.dests[netip.AddrPortFrom(destAddr(3), 80)] != nil {
				t.Errorf("after -R without .3: dests %v, want .1 (the same) and .2", svc.dests)
			}
			if !slices.Contains(svc.trash, d3) || !slices.Contains(d.state.removed, d3) || d3.Available() {
				t.Errorf(".3 after -R without it: in trash %v, removed %v, available %v; want true, true, false",
					slices.Contains(svc.trash, d3), slices.Contains(d.state.removed, d3), d3.Available())
			}
			if got, want := picks(t, d, 3), ".2 .1 .2"; got != want {
				t.Errorf("picks after the second -R = %s, want %s", got, want)
			}

			// A settled configuration renews nothing: an -a on it keeps
			// the scheduler.
			inst = d.state.services[key].scheds[0]
			cur = next.Settled()
			next = cur.Clone()
			if err := ipvsadm.Restore(next, strings.NewReader("-a -t 198.18.0.100:80 -r 10.0.0.4 -g -w 1\n")); err != nil {
				t.Fatal(err)
			}
			if err := d.Apply(next); err != nil {
				t.Fatal(err)
			}
			if d.state.services[key].scheds[0] != inst {
				t.Errorf("-a after a settled -R made a new scheduler, want the same one")
			}
		})
	}
}

// TestApplyRenewedIsTwoApplies: a renewed service (deleted and added again
// in one configuration) ends as an Apply without it and one with it leave
// it, the way `xlb -D` and `xlb -A` as two commands do: the same
// scheduler picks, the same destinations, the same trash.
func TestApplyRenewedIsTwoApplies(t *testing.T) {
	key := ipvs.ServiceKey{Proto: ipvs.TCP, Addr: testVIP, Port: 80}
	start := wrrConfig("wrr", nil, 4, 3, 2)
	after := "-A -t 198.18.0.100:80 -s wrr\n" +
		"-a -t 198.18.0.100:80 -r 10.0.0.3 -g -w 1\n" +
		"-a -t 198.18.0.100:80 -r 10.0.0.1 -g -w 5\n"
	run := func(two bool) (*Dataplane, string) {
		d, _ := testDataplane(t, 16)
		if err := d.Apply(start); err != nil {
			t.Fatal(err)
		}
		picks(t, d, 4)
		next := start.Clone()
		if two {
			if err := next.DeleteService(key); err != nil {
				t.Fatal(err)
			}
			if err := d.Apply(next.Settled()); err != nil {
				t.Fatal(err)
			}
			next = next.Settled().Clone()
		} else if err := ipvsadm.Restore(next, strings.NewReader("-D -t 198.18.0.100:80\n")); err != nil {
			t.Fatal(err)
		}
		if err := ipvsadm.Restore(next, strings.NewReader(after)); err != nil {
			t.Fatal(err)
		}
		if !two && !next.Renewed(key) {
			t.Fatal("-D then -A in one restore: Renewed = false, want true")
		}
		if err := d.Apply(next); err != nil {
			t.Fatal(err)
		}
		return d, picks(t, d, 12)
	}
	d1, one := run(false)
	d2, two := run(true)
	if one != two {
		t.Errorf("renewed in one Apply picks %s, in two %s; want the same", one, two)
	}
	s1, s2 := d1.state.services[key], d2.state.services[key]
	if s1.id != s2.id || len(s1.trash) != 1 || len(s2.trash) != 1 || s1.trash[0].Addr != s2.trash[0].Addr || len(d1.state.dying) != 0 {
		t.Errorf("one Apply: id %d, trash %v, dying %d; two: id %d, trash %v; want the same, .2 in the trash",
			s1.id, s1.trash, len(d1.state.dying), s2.id, s2.trash)
	}
}
