package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/testenv"
)

// TestRulesSchedulerStateAsKernel: xlb run --rules leaves wrr where the
// kernel's is after the file's -A and -a lines run one by one (rs1 w4,
// rs2 w3, rs3 w2 pick rs3 rs2 rs1 rs1 rs2 rs1 rs3 rs2 rs1 ...), and an
// -E that changes only the -b flags keeps the round going
// (ip_vs_edit_service rebinds only for another scheduler): the next three
// are rs3 rs2 rs1, not the rs1 rs1 rs2 of a rebound wrr.
func TestRulesSchedulerStateAsKernel(t *testing.T) {
	env, vip, rules := dirServiceEnv(t, "wrr", 4, 3, 2)
	d := startXLB(t, env, rules)
	c := env.Client.HTTPClient(false, 5*time.Second) // a new connection per request
	order := func(n int) string {
		t.Helper()
		var names []string
		for i := range n {
			name, err := testenv.Get(c, "http://"+vip+"/")
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			names = append(names, name)
		}
		return strings.Join(names, " ")
	}
	if got, want := order(9), "rs3 rs2 rs1 rs1 rs2 rs1 rs3 rs2 rs1"; got != want {
		t.Errorf("wrr 4,3,2 from --rules = %s, want the kernel's %s", got, want)
	}
	if out, err := d.ctl("-E", "-t", vip, "-s", "wrr", "-b", "flag-1"); err != nil {
		t.Fatalf("-E -b flag-1: %v %s", err, out)
	}
	if got, want := order(3), "rs3 rs2 rs1"; got != want {
		t.Errorf("after -E -b flag-1 = %s, want %s (the round goes on)", got, want)
	}
}

// TestRestoreRecreatesService: an ipvsadm -R file that deletes the
// service and adds it again (-D, -A, -a) leaves a new rr, whose round
// starts at the head again (rs3 rs2 rs1), as the kernel's does after the
// file's lines; the old service's established connection goes on, as a
// deleted service's does, to its real server.
func TestRestoreRecreatesService(t *testing.T) {
	env, vip, rules := dirServiceEnv(t, "rr", 1, 1, 1)
	d := startXLB(t, env, rules)
	fresh := env.Client.HTTPClient(false, 5*time.Second)
	kept := env.Client.HTTPClient(true, 5*time.Second) // one connection, kept alive
	get := func(c *http.Client, what string) string {
		t.Helper()
		name, err := testenv.Get(c, "http://"+vip+"/")
		if err != nil {
			t.Fatalf("%s: %v\n%s", what, err, stats(d))
		}
		return name
	}
	before := get(kept, "kept-alive request") // rs3
	if got := get(fresh, "request 1"); got != "rs2" {
		t.Fatalf("second connection went to %s, want rs2", got)
	}
	if err := d.restore("-D -t " + vip + "\n" + rules); err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range 3 {
		names = append(names, get(fresh, fmt.Sprintf("request %d after -R", i)))
	}
	if got, want := strings.Join(names, " "), "rs3 rs2 rs1"; got != want {
		t.Errorf("after -R of -D, -A, -a: %s, want %s (a new rr)", got, want)
	}
	if got := get(kept, "kept-alive request after -R"); got != before {
		t.Errorf("the kept-alive connection answered from %s after -R, before from %s", got, before)
	}
}

// dirServiceEnv is a fresh topology and the rules of one TCP service on
// VIP:80 with scheduler s and a DR real server per weight (testenv's
// real servers, in order).
func dirServiceEnv(t *testing.T, s string, weights ...int) (*testenv.Env, string, string) {
	t.Helper()
	testenv.RequireRoot(t)
	env := testenv.New(t, testenv.DefaultOptions())
	vip := fmt.Sprintf("%v:80", testenv.VIP)
	var rules strings.Builder
	fmt.Fprintf(&rules, "-A -t %s -s %s\n", vip, s)
	for i, w := range weights {
		fmt.Fprintf(&rules, "-a -t %s -r %v:80 -g -w %d\n", vip, testenv.RealAddr(i), w)
	}
	return env, vip, rules.String()
}
