//go:build linux

package bpf

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

// skipUnlessRequired is testenv.SkipUnlessRequired, which this package's
// internal tests cannot import (testenv imports bpf): with XLB_REQUIRE_E2E
// set, as in CI, a missing capability fails the test.
func skipUnlessRequired(tb testing.TB, format string, args ...any) {
	tb.Helper()
	why := fmt.Sprintf(format, args...)
	if os.Getenv("XLB_REQUIRE_E2E") != "" {
		tb.Fatalf("%s, and XLB_REQUIRE_E2E is set: this test must run here", why)
	}
	tb.Skip(why)
}

// TestGeneratedUpToDate compiles xdp.c (and every other go:generate
// line's source) again with gen.go's own bpf2go
// invocation into a temporary directory and compares the result with the
// committed xlb_bpfel.o and xlb_bpfel.go: a change to xdp.c that was not
// regenerated fails here. Identical bytes pass at once; otherwise (another
// clang) the programs' instructions, the maps and the variables must be
// the same.
func TestGeneratedUpToDate(t *testing.T) {
	if _, err := exec.LookPath("clang"); err != nil {
		skipUnlessRequired(t, "no clang to compile xdp.c (make deps installs it): %v", err)
	}
	src, err := os.ReadFile("gen.go")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(src), "\n") {
		cmd, ok := strings.CutPrefix(line, "//go:generate ")
		if !ok {
			continue
		}
		n++
		checkGenerated(t, strings.Fields(cmd))
	}
	if n == 0 {
		t.Fatal("gen.go has no go:generate line")
	}
}

// checkGenerated runs one bpf2go line into a temporary directory and
// compares its outputs, IDENT_bpfel.go and .o, with the committed ones.
func checkGenerated(t *testing.T, args []string) {
	i := slices.Index(args, "github.com/cilium/ebpf/cmd/bpf2go")
	if i < 0 || args[0] != "go" {
		t.Fatalf("go:generate line does not run bpf2go: %q", args)
	}
	ident := ""
	for j := i + 1; j+1 < len(args); j++ {
		if strings.HasSuffix(args[j+1], ".c") && !strings.HasPrefix(args[j], "-") {
			ident = args[j]
			break
		}
	}
	if ident == "" {
		t.Fatalf("no identifier and C source in %q", args)
	}
	dir := t.TempDir()
	args = append(append(append([]string(nil), args[:i+1]...), "-output-dir", dir), args[i+1:]...)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "GOPACKAGE=bpf", "GOFILE=gen.go")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}

	for _, f := range []string{ident + "_bpfel.go", ident + "_bpfel.o"} {
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(got, want) {
			continue
		}
		if strings.HasSuffix(f, ".go") {
			t.Errorf("committed %s differs from bpf2go's output: run go generate ./bpf", f)
			continue
		}
		t.Logf("%s: bytes differ (%d vs %d), comparing programs, maps and variables", f, len(got), len(want))
		if diff := specDiff(t, filepath.Join(dir, f), f); diff != "" {
			t.Errorf("committed %s is not its C source compiled: %s; run go generate ./bpf", f, diff)
		}
	}
}

// specDiff describes the first difference between the two objects'
// programs, maps and variables, or returns "".
func specDiff(t *testing.T, a, b string) string {
	sa, err := ebpf.LoadCollectionSpec(a)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := ebpf.LoadCollectionSpec(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(sa.Programs) != len(sb.Programs) || len(sa.Maps) != len(sb.Maps) || len(sa.Variables) != len(sb.Variables) {
		return fmt.Sprintf("%d programs, %d maps, %d variables vs %d, %d, %d",
			len(sa.Programs), len(sa.Maps), len(sa.Variables), len(sb.Programs), len(sb.Maps), len(sb.Variables))
	}
	for name, pa := range sa.Programs {
		pb := sb.Programs[name]
		if pb == nil {
			return "program " + name + " missing"
		}
		if ia, ib := fmt.Sprint(pa.Instructions), fmt.Sprint(pb.Instructions); ia != ib {
			return fmt.Sprintf("program %s instructions differ:\n%s\nvs\n%s", name, ia, ib)
		}
	}
	for name, ma := range sa.Maps {
		mb := sb.Maps[name]
		if mb == nil {
			return "map " + name + " missing"
		}
		if ma.Type != mb.Type || ma.KeySize != mb.KeySize || ma.ValueSize != mb.ValueSize || ma.MaxEntries != mb.MaxEntries {
			return fmt.Sprintf("map %s: %v vs %v", name, ma, mb)
		}
		if name == ".rodata" || name == ".data" || name == ".bss" {
			if !bytes.Equal(fmt.Append(nil, ma.Contents), fmt.Append(nil, mb.Contents)) {
				return "map " + name + " contents differ"
			}
		}
	}
	for name, va := range sa.Variables {
		vb := sb.Variables[name]
		if vb == nil || va.Size() != vb.Size() || va.Offset != vb.Offset {
			return "variable " + name + " differs"
		}
	}
	return ""
}
