package modes

import (
	"strings"
	"testing"

	"github.com/xlbproject/xlb/internal/packet"
)

// TestXmitAllocs: no method, family, direction or verdict allocates, nor
// do the ICMP replies.
func TestXmitAllocs(t *testing.T) {
	for _, c := range goldenCases() {
		t.Run(c.name, func(t *testing.T) {
			in := c.in.Frame()
			f0, m0 := place(t, in, c.room)
			f, m, p := f0, m0, c.plan
			n := testing.AllocsPerRun(100, func() {
				copy(f0.Buf[f0.Off:], in)
				f, m = f0, m0
				if v := Xmit(&f, &m, &p, c.dir); v != OK && c.then != nil {
					m = m0
					c.then(&f, &m, &p)
				}
			})
			if n != 0 {
				t.Errorf("Xmit allocates %v times per frame, want 0", n)
			}
		})
	}
}

// BenchmarkXmit: ns per frame of each rewrite, on a frame in L1; the
// copy that restores the input each round is measured alone as "copy".
func BenchmarkXmit(b *testing.B) {
	b.Run("copy", func(b *testing.B) {
		in := families[0].syn().Frame()
		buf := make([]byte, chunk)
		b.ReportAllocs()
		for b.Loop() {
			copy(buf[headroom:], in)
		}
	})
	for _, c := range goldenCases() {
		if c.verdict != OK || strings.Contains(c.name, ",") && !strings.Contains(c.name, "port mapping") || strings.Contains(c.name, "csum") && !strings.Contains(c.name, "gue csum") {
			continue
		}
		b.Run(strings.ReplaceAll(c.name, " ", "_"), func(b *testing.B) {
			in := c.in.Frame()
			f0, m0 := place(b, in, c.room)
			p := c.plan
			var f Frame
			var m packet.Meta
			b.ReportAllocs()
			for b.Loop() {
				copy(f0.Buf[f0.Off:], in)
				f, m = f0, m0
				if Xmit(&f, &m, &p, c.dir) != OK {
					b.Fatal("not ok")
				}
			}
		})
	}
}
