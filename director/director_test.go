package director

import (
	"bytes"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/xlbproject/xlb/internal/ipvs"
	"github.com/xlbproject/xlb/internal/ipvsadm"
)

// fakeDataplane records what it was given; refuse makes Apply fail.
type fakeDataplane struct {
	mu      sync.Mutex
	refuse  bool
	applied []*ipvs.Config
	sysctls ipvs.Sysctls
}

func (f *fakeDataplane) Apply(c *ipvs.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse {
		return errors.New("apply configuration: too many destinations (limit 1)")
	}
	f.applied = append(f.applied, c)
	return nil
}

func (f *fakeDataplane) SetSysctls(s ipvs.Sysctls) { f.sysctls = s }

func (f *fakeDataplane) last() *ipvs.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied[len(f.applied)-1]
}

const rules = `-A -t 198.18.0.100:80 -s rr
-a -t 198.18.0.100:80 -r 198.18.0.11:80 -g -w 3
-a -t 198.18.0.100:80 -r 198.18.0.12:80 -g -w 1
`

var (
	vip = ipvs.ServiceKey{Proto: ipvs.TCP, Addr: netip.MustParseAddr("198.18.0.100"), Port: 80}
	rs1 = netip.MustParseAddrPort("198.18.0.11:80")
	rs2 = netip.MustParseAddrPort("198.18.0.12:80")
)

func newTest(t *testing.T, opts Options) (*Director, *fakeDataplane, *bytes.Buffer) {
	t.Helper()
	cfg, err := ipvsadm.ParseRules(strings.NewReader(rules))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	fdp := &fakeDataplane{}
	d, err := New(fdp, cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return d, fdp, &logs
}

func saved(t *testing.T, c *ipvs.Config) string {
	t.Helper()
	var b bytes.Buffer
	if err := ipvsadm.WriteSave(&b, c, true); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func addDest(ap netip.AddrPort, w int32) func(*ipvs.Config) error {
	return func(next *ipvs.Config) error {
		d := ipvs.NewDest(ap)
		d.Weight = w
		return next.AddDest(vip, d)
	}
}

// A change refused by its function, by validation or by the dataplane
// leaves the configuration, the dataplane and the generation as they were.
func TestRefusedChangeChangesNothing(t *testing.T) {
	d, fdp, _ := newTest(t, DefaultOptions())
	before, gen, n := d.Config(), d.Generation(), len(fdp.applied)
	want := saved(t, before)

	if err := d.Change("ipvsadm -a", addDest(rs1, 1)); !errors.Is(err, ipvs.ErrDestExists) {
		t.Errorf("adding an existing dest: %v, want %v", err, ipvs.ErrDestExists)
	}
	if err := d.Change("by hand", func(next *ipvs.Config) error {
		next.Services[0].Dests[0].Weight = -5 // broken behind the ops' back
		return nil
	}); !errors.Is(err, ipvs.ErrRange) {
		t.Errorf("invalid weight: %v, want %v", err, ipvs.ErrRange)
	}
	if err := d.Change("by hand", func(next *ipvs.Config) error {
		next.Services = append(next.Services, next.Services[0]) // defined twice
		return nil
	}); !errors.Is(err, ipvs.ErrServiceExists) {
		t.Errorf("a service defined twice: %v, want %v", err, ipvs.ErrServiceExists)
	}
	if err := d.Change("by hand", func(next *ipvs.Config) error {
		next.Timeouts.TCP = ipvs.MaxTimeout + 1
		return nil
	}); !errors.Is(err, ipvs.ErrInvalid) {
		t.Errorf("timeout out of range: %v, want %v", err, ipvs.ErrInvalid)
	}
	fdp.refuse = true
	if err := d.Change("ipvsadm -a", addDest(netip.MustParseAddrPort("198.18.0.13:80"), 1)); err == nil {
		t.Error("a change the dataplane refused succeeded")
	}
	if err := d.SetDestState(vip, rs1, DestInhibited); err == nil {
		t.Error("an overlay the dataplane refused succeeded")
	}
	fdp.refuse = false
	if d.Config() != before || d.Applied() != before || d.Generation() != gen || len(fdp.applied) != n {
		t.Errorf("refused changes changed the director: gen %d -> %d, applies %d -> %d", gen, d.Generation(), n, len(fdp.applied))
	}
	if got := saved(t, before); got != want {
		t.Errorf("the published snapshot was changed in place:\n%s\nwant\n%s", got, want)
	}
	if st := d.DestState(vip, rs1); st != DestUp {
		t.Errorf("refused overlay left state %v", st)
	}
}

// Concurrent changes are serialised: none is lost.
func TestChangesSerialised(t *testing.T) {
	d, fdp, _ := newTest(t, DefaultOptions())
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 1, byte(i)}), 80)
			if err := d.Change("ipvsadm -a", addDest(ap, 1)); err != nil {
				t.Error(err)
			}
			_ = d.Config().Services[0].Dests // snapshots are readable meanwhile
		}()
	}
	wg.Wait()
	if n := len(d.Config().Services[0].Dests); n != 52 {
		t.Errorf("%d dests after 50 concurrent adds to 2, want 52", n)
	}
	if fdp.last() != d.Applied() {
		t.Error("the dataplane does not run the published configuration")
	}
}

// Overlays compose over the operator configuration: inhibited is weight
// 0, removed is absent, in what the dataplane runs only.
func TestOverlays(t *testing.T) {
	d, fdp, logs := newTest(t, DefaultOptions())
	op := saved(t, d.Config())

	if err := d.SetDestState(vip, rs1, DestInhibited); err != nil {
		t.Fatal(err)
	}
	if w := fdp.last().Service(vip).Dest(rs1).Weight; w != 0 {
		t.Errorf("inhibited dest applied with weight %d, want 0", w)
	}
	if w := d.Applied().Service(vip).Dest(rs1).Weight; w != 0 {
		t.Errorf("inhibited dest listed with weight %d, want 0", w)
	}
	if got := saved(t, d.Config()); got != op {
		t.Errorf("overlay changed the operator configuration:\n%s", got)
	}

	if err := d.SetDestState(vip, rs2, DestRemoved); err != nil {
		t.Fatal(err)
	}
	if fdp.last().Service(vip).Dest(rs2) != nil {
		t.Error("removed dest still applied")
	}
	// An operator change keeps the overlays: -e of rs1's weight is saved
	// but rs1 stays at 0 while inhibited.
	if err := d.Change("ipvsadm -e", func(next *ipvs.Config) error {
		dst := *next.Service(vip).Dest(rs1)
		dst.Weight = 7
		return next.EditDest(vip, dst)
	}); err != nil {
		t.Fatal(err)
	}
	if w := d.Config().Service(vip).Dest(rs1).Weight; w != 7 {
		t.Errorf("operator weight %d, want 7", w)
	}
	if a := d.Applied().Service(vip); a.Dest(rs1).Weight != 0 || a.Dest(rs2) != nil {
		t.Errorf("overlays lost by an operator change: %+v", a.Dests)
	}

	// An overlay on a dest not configured waits for it.
	rs3 := netip.MustParseAddrPort("198.18.0.13:80")
	if err := d.SetDestState(vip, rs3, DestInhibited); err != nil {
		t.Fatal(err)
	}
	if err := d.Change("ipvsadm -a", addDest(rs3, 5)); err != nil {
		t.Fatal(err)
	}
	if w := d.Applied().Service(vip).Dest(rs3).Weight; w != 0 {
		t.Errorf("waiting overlay not applied: weight %d", w)
	}

	for _, ap := range []netip.AddrPort{rs1, rs2, rs3} {
		if err := d.SetDestState(vip, ap, DestUp); err != nil {
			t.Fatal(err)
		}
	}
	if d.Applied() != d.Config() {
		t.Error("with no overlay left, the applied configuration is not the operator's")
	}
	if w := d.Applied().Service(vip).Dest(rs1).Weight; w != 7 {
		t.Errorf("dest up again with weight %d, want 7", w)
	}
	for _, want := range []string{"real server inhibited", "real server removed", "real server up"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no %q in the log:\n%s", want, logs)
		}
	}
}

// One log line per state change, and none for a change that changes
// nothing.
func TestLogLines(t *testing.T) {
	d, _, logs := newTest(t, DefaultOptions())
	steps := []struct {
		fn   func(*ipvs.Config) error
		want []string
	}{
		{func(c *ipvs.Config) error {
			k := vip
			k.Port = 443
			if err := c.AddService(ipvs.NewService(k)); err != nil {
				return err
			}
			return c.AddDest(k, ipvs.NewDest(netip.MustParseAddrPort("198.18.0.11:443")))
		}, []string{`msg="service added" service="TCP 198.18.0.100:443"`, `msg="real server added" service="TCP 198.18.0.100:443" dest=198.18.0.11:443`}},
		{func(c *ipvs.Config) error {
			dst := *c.Service(vip).Dest(rs2)
			dst.Weight = 0
			return c.EditDest(vip, dst)
		}, []string{`msg="real server drained: weight 0" service="TCP 198.18.0.100:80" dest=198.18.0.12:80`}},
		{func(c *ipvs.Config) error { return c.DeleteDest(vip, rs1) },
			[]string{`msg="real server removed: its connections stay until they end" service="TCP 198.18.0.100:80" dest=198.18.0.11:80`}},
		{func(c *ipvs.Config) error {
			s := *c.Service(vip)
			s.Sched = "wlc"
			return c.EditService(s)
		}, []string{`msg="service edited" service="TCP 198.18.0.100:80" scheduler=wlc`}},
		{func(c *ipvs.Config) error { return c.DeleteService(vip) }, []string{`msg="service removed: its connections drain"`}},
		{func(c *ipvs.Config) error { return c.SetTimeouts(ipvs.Timeouts{TCP: 60}) }, []string{`msg="timeouts set" tcp=60`}},
		{func(c *ipvs.Config) error { return nil }, nil},
	}
	for i, s := range steps {
		logs.Reset()
		if err := d.Change("test", s.fn); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
		if logs.Len() == 0 {
			lines = nil
		}
		if len(lines) != len(s.want) {
			t.Errorf("step %d: %d log lines, want %d:\n%s", i, len(lines), len(s.want), logs)
			continue
		}
		for j, w := range s.want {
			if !strings.Contains(lines[j], w) || !strings.Contains(lines[j], "reason=test") {
				t.Errorf("step %d: log line %q, want %q with the reason", i, lines[j], w)
			}
		}
	}
}

// --save: every applied change rewrites the rules file whole, with the
// operator's configuration; a refused change or an overlay does not; the
// file restores the same configuration.
func TestRulesFileSaved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules")
	if err := os.WriteFile(path, []byte(rules), 0o640); err != nil {
		t.Fatal(err)
	}
	d, fdp, logs := newTest(t, Options{RulesFile: path})
	read := func() string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if err := d.Change("ipvsadm -a", addDest(netip.MustParseAddrPort("198.18.0.13:80"), 2)); err != nil {
		t.Fatal(err)
	}
	want := saved(t, d.Config())
	if got := read(); got != want {
		t.Errorf("rules file:\n%s\nwant\n%s", got, want)
	}
	back, err := ipvsadm.ParseRules(strings.NewReader(read()))
	if err != nil {
		t.Fatal(err)
	}
	if got := saved(t, back); got != want {
		t.Errorf("restored from the file:\n%s\nwant\n%s", got, want)
	}
	if err := d.SetDestState(vip, rs1, DestInhibited); err != nil {
		t.Fatal(err)
	}
	fdp.refuse = true
	d.Change("ipvsadm -d", func(c *ipvs.Config) error { return c.DeleteDest(vip, rs2) })
	fdp.refuse = false
	if got := read(); got != want {
		t.Errorf("an overlay or a refused change rewrote the file:\n%s", got)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("rules file mode %v (%v), want the original 0640", fi.Mode(), err)
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
	if !strings.Contains(logs.String(), `msg="rules saved"`) {
		t.Errorf("no save logged:\n%s", logs)
	}
}

// A rules file that cannot be written is logged; the change stays.
func TestRulesFileUnwritable(t *testing.T) {
	d, _, logs := newTest(t, Options{RulesFile: filepath.Join(t.TempDir(), "missing", "rules")})
	if err := d.Change("ipvsadm -d", func(c *ipvs.Config) error { return c.DeleteDest(vip, rs2) }); err != nil {
		t.Fatal(err)
	}
	if d.Config().Service(vip).Dest(rs2) != nil {
		t.Error("change lost")
	}
	if !strings.Contains(logs.String(), `msg="rules not saved"`) {
		t.Errorf("save failure not logged:\n%s", logs)
	}
}

func TestSysctls(t *testing.T) {
	d, fdp, logs := newTest(t, Options{Sysctls: ipvs.Sysctls{ExpireQuiescentTemplate: true}})
	if !fdp.sysctls.ExpireQuiescentTemplate {
		t.Error("start-up sysctls not given to the dataplane")
	}
	d.SetSysctls(ipvs.Sysctls{ExpireNodestConn: true})
	if fdp.sysctls != (ipvs.Sysctls{ExpireNodestConn: true}) || d.Sysctls() != fdp.sysctls {
		t.Errorf("sysctls %+v, dataplane %+v", d.Sysctls(), fdp.sysctls)
	}
	if !strings.Contains(logs.String(), "expire_nodest_conn=true") {
		t.Errorf("sysctl change not logged:\n%s", logs)
	}
}

func TestReplace(t *testing.T) {
	d, _, _ := newTest(t, DefaultOptions())
	cfg, err := ipvsadm.ParseRules(strings.NewReader("-A -u 198.18.0.100:53 -s wrr\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Replace("reload", cfg); err != nil {
		t.Fatal(err)
	}
	if got, want := saved(t, d.Config()), saved(t, cfg); got != want {
		t.Errorf("after Replace:\n%s\nwant\n%s", got, want)
	}
	if d.Config() == cfg {
		t.Error("Replace kept the caller's configuration, which the caller may change")
	}
}

// A batch of overlay changes is one Apply, all or none.
func TestSetDestStatesBatch(t *testing.T) {
	d, fdp, _ := newTest(t, DefaultOptions())
	n := len(fdp.applied)
	both := []DestChange{{Service: vip, Dest: rs1, State: DestInhibited}, {Service: vip, Dest: rs2, State: DestRemoved}}
	fdp.refuse = true
	if err := d.SetDestStates(both); err == nil {
		t.Fatal("refused batch succeeded")
	}
	fdp.refuse = false
	if d.DestState(vip, rs1) != DestUp || d.DestState(vip, rs2) != DestUp {
		t.Fatal("a refused batch left overlays")
	}
	if err := d.SetDestStates(both); err != nil {
		t.Fatal(err)
	}
	if len(fdp.applied) != n+1 {
		t.Errorf("%d applies for one batch, want 1", len(fdp.applied)-n)
	}
	a := d.Applied().Service(vip)
	if a.Dest(rs1).Weight != 0 || a.Dest(rs2) != nil {
		t.Errorf("after the batch: %+v", a.Dests)
	}
	if err := d.SetDestStates(both); err != nil || len(fdp.applied) != n+1 {
		t.Errorf("a batch that changes nothing applied (%v, %d applies)", err, len(fdp.applied)-n)
	}
	if err := d.SetDestStates([]DestChange{{Service: vip, Dest: rs1, State: DestState(9)}}); err == nil {
		t.Error("invalid state accepted")
	}
}

// A rules file reached through a symbolic link: the link stays, the file
// it names is rewritten.
func TestRulesFileSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.rules")
	link := filepath.Join(dir, "rules")
	if err := os.WriteFile(real, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	d, _, _ := newTest(t, Options{RulesFile: link})
	if err := d.Change("ipvsadm -d", func(c *ipvs.Config) error { return c.DeleteDest(vip, rs2) }); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link was replaced: %v %v", fi.Mode(), err)
	}
	b, err := os.ReadFile(real)
	if err != nil || string(b) != saved(t, d.Config()) {
		t.Errorf("linked file:\n%s (%v)\nwant\n%s", b, err, saved(t, d.Config()))
	}
	if fi, _ := os.Stat(real); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600 kept", fi.Mode().Perm())
	}
}

// TestRestoreRenews: a restore that deletes a service and adds it again
// (-D or -C, then -A) hands the dataplane a configuration in which the
// service is Renewed, with an overlay on or not, and logs it recreated;
// the configuration published has forgotten it, so the next change
// renews nothing.
func TestRestoreRenews(t *testing.T) {
	for _, overlay := range []bool{false, true} {
		d, fdp, logs := newTest(t, Options{})
		if overlay {
			if err := d.SetDestState(vip, rs2, DestInhibited); err != nil {
				t.Fatal(err)
			}
		}
		file := "-D -t 198.18.0.100:80\n" + rules
		if err := d.Change("restore", func(next *ipvs.Config) error {
			return ipvsadm.Restore(next, strings.NewReader(file))
		}); err != nil {
			t.Fatal(err)
		}
		if !fdp.last().Renewed(vip) {
			t.Errorf("overlay %v: -D then -A: the dataplane's configuration has Renewed(%s) = false, want true", overlay, vip.String())
		}
		if d.Config().Renewed(vip) || d.Applied().Renewed(vip) {
			t.Errorf("overlay %v: the published configuration still renews %s", overlay, vip.String())
		}
		if !strings.Contains(logs.String(), `msg="service recreated" service="TCP 198.18.0.100:80"`) {
			t.Errorf("overlay %v: log %q, want a \"service recreated\" line", overlay, logs.String())
		}
		if err := d.Change("add", addDest(netip.MustParseAddrPort("198.18.0.13:80"), 1)); err != nil {
			t.Fatal(err)
		}
		if fdp.last().Renewed(vip) {
			t.Errorf("overlay %v: the change after the restore renews %s again", overlay, vip.String())
		}
	}
}

// TestReplaceRenews: a rules file reloaded whole (SIGHUP, Replace) that
// starts with -C renews every service it adds, as running its lines on
// the running configuration would; without -C nothing is renewed, and
// the unchanged service keeps its state.
func TestReplaceRenews(t *testing.T) {
	for _, c := range []struct {
		file string
		want bool
	}{{rules, false}, {"-C\n" + rules, true}} {
		d, fdp, _ := newTest(t, Options{})
		cfg, err := ipvsadm.ParseRules(strings.NewReader(c.file))
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Replace("reload", cfg); err != nil {
			t.Fatal(err)
		}
		if got := fdp.last().Renewed(vip); got != c.want {
			t.Errorf("reload of %q: Renewed(%s) = %v, want %v", c.file, vip.String(), got, c.want)
		}
		if d.Config().Renewed(vip) {
			t.Errorf("reload of %q: the published configuration renews %s", c.file, vip.String())
		}
	}
}
