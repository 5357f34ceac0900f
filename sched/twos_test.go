package sched

import "testing"

func TestTwosSeed(t *testing.T) {
	ds := dests(1, 2, 3, 4)
	a := mustNew(t, "twos", Options{Seed: 42})
	b := mustNew(t, "twos", Options{Seed: 42})
	c := mustNew(t, "twos", Options{Seed: 43})
	a.Update(ds)
	b.Update(ds)
	c.Update(ds)
	sa, sb, sc := run(a, 64, flow), run(b, 64, flow), run(c, 64, flow)
	if sa != sb {
		t.Errorf("same seed, different decisions:\n%s\n%s", sa, sb)
	}
	if sa == sc {
		t.Errorf("seeds 42 and 43 gave the same 64 decisions %s", sa)
	}
}

// TestTwosDistribution: with no connections anywhere choice 2 never
// beats choice 1 (0 > 0 is false), so a decision is choice 1, drawn from
// [0, total] inclusive: the first destination gets weight+1 of total+1
// draws, the others weight of total+1 (the kernel's off-by-one).
func TestTwosDistribution(t *testing.T) {
	ds := dests(1, 2, 3)
	s := mustNew(t, "twos", Options{Seed: 7})
	s.Update(ds)
	count := map[string]int{}
	const n = 700000
	for range n {
		count[letter(s.Schedule(flow))]++
	}
	want := map[string]float64{"A": 2.0 / 7, "B": 2.0 / 7, "C": 3.0 / 7}
	for k, w := range want {
		if got := float64(count[k]) / n; got < w-0.005 || got > w+0.005 {
			t.Errorf("share of %s = %.4f, want %.4f", k, got, w)
		}
	}
}

// TestTwosLoad: the less loaded of the two choices (per weight) wins.
func TestTwosLoad(t *testing.T) {
	ds := dests(1, 1, 0, 1)
	setConns(ds[0], 10, 0)
	setConns(ds[1], 0, 0)
	setConns(ds[3], 5, 0)
	ds[3].setOverload(true) // D out: choices among A and B only
	s := mustNew(t, "twos", Options{Seed: 9})
	s.Update(ds)
	count := map[string]int{}
	for range 10000 {
		count[letter(s.Schedule(flow))]++
	}
	// A wins only when both draws pick A: r in {0, 1} of {0, 1, 2} twice,
	// 4/9 of the time.
	if count["C"] != 0 || count["D"] != 0 || count["-"] != 0 {
		t.Fatalf("decisions %v: chose a quiesced or overloaded destination", count)
	}
	if a := float64(count["A"]) / 10000; a < 0.42 || a > 0.47 {
		t.Errorf("share of A = %.3f, want 4/9", a)
	}
}
