package ipvsadm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/xlbproject/xlb/internal/ipvs"
)

// RulesError is a bad line of a rules file.
type RulesError struct {
	Line int    // 1-based line number
	Text string // the line, without its end of line
	Err  error  // an *Error
}

func (e *RulesError) Error() string {
	msg := fmt.Sprintf("line %d %q: %v", e.Line, e.Text, e.Err)
	var ie *ipvs.Error
	if errors.As(e.Err, &ie) && ie.Detail != "" {
		msg += " (" + ie.Detail + ")"
	}
	return msg
}

func (e *RulesError) Unwrap() error { return e.Err }

// ParseRules reads a whole rules file in ipvsadm's save format, what
// `ipvsadm-save -n` prints:
//
//	-A -t 10.0.0.100:80 -s rr
//	-P -t 10.0.0.100:80 -z 192.168.100.1 -F eth1
//	-a -t 10.0.0.100:80 -r 10.0.0.11:80 -g -w 1
//	-a -t 10.0.0.100:80 -r 10.0.0.12:8080 --fullnat -w 1
//
// Each line is a command line for ipvsadm -R (see Restore), applied in
// order to an empty configuration with IPVS's default timeouts. It is all
// or nothing: at the first bad line it returns a *RulesError naming the
// line and no configuration.
func ParseRules(r io.Reader) (*ipvs.Config, error) {
	cfg := &ipvs.Config{Timeouts: ipvs.DefaultTimeouts}
	if err := Restore(cfg, r); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Restore applies rules to cfg as ipvsadm -R does, but all or nothing: on
// any bad line it returns a *RulesError and leaves cfg as it was.
//
// Lines are split into words at spaces, tabs and carriage returns, as
// ipvsadm's config_stream.c does; every word "ipvsadm" is dropped, so
// lines may start with it. A word starting with '#' starts a comment that
// runs to the end of the line (ipvsadm-restore drops lines starting with
// '#'; config_stream.c means to drop comments but does not). Blank lines
// are skipped. Each line must be a command that changes the configuration
// (-A, -E, -D, -C, -a, -e, -d, --set, and DPVS's -P and -Q) or -Z.
func Restore(cfg *ipvs.Config, r io.Reader) error {
	work := cfg.Clone()
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, rerr := br.ReadString('\n')
		if rerr != nil && rerr != io.EOF {
			return fmt.Errorf("read rules: line %d: %w", n, rerr)
		}
		if line == "" && rerr == io.EOF {
			break
		}
		text := strings.TrimSuffix(line, "\n")
		if err := restoreLine(work, text); err != nil {
			return &RulesError{Line: n, Text: text, Err: err}
		}
		if rerr == io.EOF {
			break
		}
	}
	*cfg = *work
	return nil
}

func restoreLine(cfg *ipvs.Config, line string) error {
	args := Tokenize(line)
	if len(args) == 0 {
		return nil
	}
	if args[0] == MarkLine {
		return restoreMarks(cfg, args[1:])
	}
	c, err := Parse(args)
	if err != nil {
		return err
	}
	switch c.Kind {
	case KindAddService, KindEditService, KindDeleteService, KindClear,
		KindAddServer, KindEditServer, KindDeleteServer, KindSet, KindZero,
		KindAddLaddr, KindDelLaddr:
		return c.Apply(cfg)
	}
	return &Error{Code: ExitUsage, Msg: fmt.Sprintf("the '%s' command is not allowed in a rules file", c.Kind)}
}

// Tokenize splits one line of a rules file into ipvsadm's arguments, as
// Restore does.
func Tokenize(line string) []string {
	var args []string
	for _, w := range strings.FieldsFunc(line, func(r rune) bool {
		return r == ' ' || r == '\t' || r == '\r' || r == '\n'
	}) {
		if strings.HasPrefix(w, "#") {
			break
		}
		if w != "ipvsadm" {
			args = append(args, w)
		}
	}
	return args
}
