package main

import (
	"strings"
	"testing"
)

func TestDrainWithoutBGP(t *testing.T) {
	s := &server{}
	for _, args := range [][]string{{"drain"}, {"undrain"}} {
		r := s.handle(request{Args: args})
		if r.Code == 0 || !strings.Contains(r.Stderr, "no BGP speaker") {
			t.Errorf("%v without BGP = %+v, want an error naming the missing speaker", args, r)
		}
	}
	if r := s.handle(request{Args: []string{"drain", "now"}}); r.Code == 0 || !strings.Contains(r.Stderr, `unexpected argument "now"`) {
		t.Errorf("drain now = %+v, want an error", r)
	}
}
