package main

import (
	"bytes"
	"strings"

	"github.com/xlbproject/xlb/internal/ipvsadm"
)

// handleMark runs `xlb mark add|del|list`: the firewall-mark classifier's
// rules, part of the configuration like the services, changed through the
// director's all-or-nothing path.
func (s *server) handleMark(args []string) response {
	c, err := ipvsadm.ParseMark(args)
	if err != nil {
		return errorResponse(err)
	}
	if c.Op == ipvsadm.MarkList {
		var out bytes.Buffer
		if err := ipvsadm.WriteMarks(&out, s.dir.Config()); err != nil {
			return errorResponse(err)
		}
		return response{Stdout: out.String()}
	}
	if err := s.dir.Change("xlb mark "+strings.Join(args, " "), c.Apply); err != nil {
		return changeError(err)
	}
	return response{}
}
