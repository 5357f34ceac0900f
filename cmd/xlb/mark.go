package main

import (
	"bytes"

	"github.com/xlbproject/xlb/internal/ipvsadm"
)

// handleMark runs `xlb mark add|del|list`: the firewall-mark classifier's
// rules, part of the configuration like the services, changed through the
// same all-or-nothing path.
func (s *server) handleMark(args []string) response {
	c, err := ipvsadm.ParseMark(args)
	if err != nil {
		return errorResponse(err)
	}
	if c.Op == ipvsadm.MarkList {
		s.mu.RLock()
		defer s.mu.RUnlock()
		var out bytes.Buffer
		if err := ipvsadm.WriteMarks(&out, s.cfg); err != nil {
			return errorResponse(err)
		}
		return response{Stdout: out.String()}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.cfg.Clone()
	if err := c.Apply(next); err != nil {
		return errorResponse(err)
	}
	return s.apply(next)
}
