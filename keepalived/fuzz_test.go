package keepalived

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/xlbproject/xlb/internal/ipvsadm"
)

// FuzzParse feeds arbitrary text to the parser (includes read nothing):
// it must return a result or an *Error, never panic; a result must be a
// valid configuration that ipvsadm can save and restore.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"nat.conf", "dr.conf", "group.conf", "tun.inc", "conf.d/web.conf", "fnat.conf"} {
		src, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	noFiles := Options{
		ReadFile: func(string) ([]byte, error) { return nil, os.ErrNotExist },
		Glob:     func(string) ([]string, error) { return nil, nil },
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		res, err := Parse("f.conf", src, noFiles)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse error %v (%T) is not an *Error with a position", err, err)
			}
			return
		}
		if err := res.IPVS.Validate(); err != nil {
			t.Fatalf("imported configuration invalid: %v", err)
		}
		if err := res.Health.Validate(); err != nil {
			t.Fatalf("imported health checks invalid: %v", err)
		}
		var b bytes.Buffer
		if err := ipvsadm.WriteSave(&b, res.IPVS, true); err != nil {
			t.Fatal(err)
		}
		if _, err := ipvsadm.ParseRules(bytes.NewReader(b.Bytes())); err != nil {
			t.Fatalf("saved rules do not restore: %v\n%s", err, b.String())
		}
	})
}
