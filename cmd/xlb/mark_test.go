//go:build linux

package main

import (
	"strings"
	"testing"

	"github.com/xlbproject/xlb/internal/ipvsadm"
)

// TestMarkCommands: xlb mark add, del and list through the control
// socket; -S saves the rules, -R restores them; bad input changes nothing.
func TestMarkCommands(t *testing.T) {
	sock := sockPath(t)
	s, fdp := testServer(t, sock, -1)
	base := fdp.applied // the director applies the starting configuration
	do := func(args ...string) response {
		t.Helper()
		resp, err := call(sock, request{Args: args})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if r := do("mark", "add", "1", "-t", "198.18.0.100:80", "-t", "198.18.0.100:443", "-u", "[2001:db8::]/64:53"); r.Code != 0 {
		t.Fatalf("mark add: %+v", r)
	}
	if fdp.applied != base+1 || len(s.dir.Config().Marks) != 3 {
		t.Fatalf("after mark add: %d applies, %d rules; want 1, 3", fdp.applied-base, len(s.dir.Config().Marks))
	}
	for _, bad := range [][]string{
		{"mark", "add", "2", "-t", "198.18.0.0/24:80", "-t", "198.18.0.100:80"}, // second overlaps
		{"mark", "add", "2", "-t", "198.18.0.1/24:80"},                          // host bits
		{"mark", "add", "x", "-t", "198.18.0.1"},
		{"mark", "del", "1", "-t", "198.18.0.100:81"},
		{"mark", "del", "9"},
		{"mark"},
	} {
		r := do(bad...)
		if r.Code == 0 || r.Stderr == "" {
			t.Errorf("%q = %+v, want an error", bad, r)
		}
		if fdp.applied != base+1 || len(s.dir.Config().Marks) != 3 {
			t.Errorf("%q changed the configuration: %d applies, %d rules", bad, fdp.applied-base, len(s.dir.Config().Marks))
		}
	}
	r := do("mark", "add", "2", "-t", "198.18.0.100:80")
	if r.Code != ipvsadm.ExitRuntime || !strings.Contains(r.Stderr, "overlaps 1 -t 198.18.0.100/32:80-80") {
		t.Errorf("overlapping add = %+v, want exit 1 naming the rule it overlaps", r)
	}
	list := do("mark", "list")
	if list.Code != 0 || !strings.Contains(list.Stdout, "1          TCP  198.18.0.100/32") || strings.Count(list.Stdout, "\n") != 4 {
		t.Errorf("mark list = %+v", list)
	}
	saved := save(t, sock)
	if !strings.Contains(saved, "--xlb-mark 1 -t 198.18.0.100/32:80-80 -t 198.18.0.100/32:443-443 -u [2001:db8::]/64:53-53\n") {
		t.Errorf("-S -n =\n%s\nwant a --xlb-mark line", saved)
	}
	if r := do("mark", "del", "1"); r.Code != 0 || len(s.dir.Config().Marks) != 0 {
		t.Fatalf("mark del 1: %+v, %d rules left", r, len(s.dir.Config().Marks))
	}
	if r := do("-C"); r.Code != 0 {
		t.Fatalf("-C: %+v", r)
	}
	resp, err := call(sock, request{Args: []string{"-R"}, Stdin: saved})
	if err != nil || resp.Code != 0 || len(s.dir.Config().Marks) != 3 {
		t.Fatalf("-R of the save: %v %+v, %d rules; want 3", err, resp, len(s.dir.Config().Marks))
	}
}
