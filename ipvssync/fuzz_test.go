package ipvssync

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzDecode feeds arbitrary datagrams to the decoder: it must never
// panic, and whatever it accepts from a v1 message must re-encode to
// records it decodes again the same way.
func FuzzDecode(f *testing.F) {
	f.Add(kernelV4)
	f.Add(kernelV6Seq)
	f.Add(v0Message)
	f.Add([]byte{0, 0, 0, 8, 0, 1, 0, 0})
	var d, d2 Decoder
	f.Fuzz(func(t *testing.T, msg []byte) {
		r := d.Decode(msg)
		if len(r.Conns) > int(r.Header.NConns) {
			t.Fatalf("%d conns from nr_conns %d", len(r.Conns), r.Header.NConns)
		}
		if r.Header.Version != ProtoVersion || len(r.Conns) == 0 {
			return
		}
		conns := make([]Conn, len(r.Conns))
		for i, c := range r.Conns {
			c.PEData = bytes.Clone(c.PEData)
			if len(c.PEData) == 0 {
				c.PEName = "" // the kernel sends PE_NAME only with PE_DATA
			}
			if c.Flags&FlagSeqMask == 0 {
				// Kept by a backup, but a master sends seq data only
				// with IP_VS_CONN_F_SEQ_MASK.
				c.InSeq, c.OutSeq = Seq{}, Seq{}
			}
			conns[i] = c
		}
		out, err := AppendMessage(nil, r.Header.SyncID, conns)
		if err != nil {
			return // e.g. mixed families cannot come from one record; PE name alone
		}
		r2 := d2.Decode(out)
		if r2.Dropped != ReasonNone || !reflect.DeepEqual(r2.Conns, conns) {
			t.Fatalf("re-encoded records differ: dropped %v\n%+v\n%+v", r2.Dropped, r2.Conns, conns)
		}
	})
}
