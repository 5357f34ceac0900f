package director

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/xlbproject/xlb/internal/ipvs"
)

// bigConfig is services services of dests real servers each.
func bigConfig(tb testing.TB, services, dests int) *ipvs.Config {
	tb.Helper()
	c := &ipvs.Config{Timeouts: ipvs.DefaultTimeouts}
	for i := range services {
		k := ipvs.ServiceKey{Proto: ipvs.TCP, Addr: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), Port: 80}
		if err := c.AddService(ipvs.NewService(k)); err != nil {
			tb.Fatal(err)
		}
		for j := range dests {
			ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 2, byte(j >> 8), byte(j)}), 80)
			if err := c.AddDest(k, ipvs.NewDest(ap)); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return c
}

// BenchmarkChange is the director's own cost of one -e (clone,
// validate, compose, log, and with save the rules file written and
// synced), the dataplane's Apply left out.
func BenchmarkChange(b *testing.B) {
	for _, size := range []struct{ services, dests int }{{10, 10}, {1000, 10}, {100, 1000}} {
		for _, save := range []bool{false, true} {
			b.Run(fmt.Sprintf("%dx%d/save=%v", size.services, size.dests, save), func(b *testing.B) {
				opts := Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
				if save {
					opts.RulesFile = filepath.Join(b.TempDir(), "rules")
				}
				d, err := New(&fakeDataplane{}, bigConfig(b, size.services, size.dests), opts)
				if err != nil {
					b.Fatal(err)
				}
				k := d.Config().Services[0].Key
				ap := d.Config().Services[0].Dests[0].AddrPort()
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if err := d.Change("bench", func(c *ipvs.Config) error {
						dst := *c.Service(k).Dest(ap)
						dst.Weight = int32(1 + i%100)
						return c.EditDest(k, dst)
					}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkChangeOneBig is one -e on a service of 50,000 real servers:
// validating the changed service is linear in its destinations.
func BenchmarkChangeOneBig(b *testing.B) {
	d, err := New(&fakeDataplane{}, bigConfig(b, 1, 50000), Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	k := d.Config().Services[0].Key
	ap := d.Config().Services[0].Dests[0].AddrPort()
	for i := 0; b.Loop(); i++ {
		if err := d.Change("bench", func(c *ipvs.Config) error {
			dst := *c.Service(k).Dest(ap)
			dst.Weight = int32(1 + i%100)
			return c.EditDest(k, dst)
		}); err != nil {
			b.Fatal(err)
		}
	}
}
