package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/xlbproject/xlb/health"
	"github.com/xlbproject/xlb/internal/ipvsadm"
	"github.com/xlbproject/xlb/keepalived"
)

// healthStatus is what `xlb health` needs of the health engine
// (*health.Engine; a fake in tests).
type healthStatus interface {
	Status() health.Status
}

const healthUsage = "usage: xlb health [-o text|json]\n"

// handleHealth is `xlb health [-o json]`: every checked real server with
// its checkers, state, last result and error, and the time of its last
// transition; JSON (health.Status) for scripts.
func (s *server) handleHealth(args []string) response {
	format := "text"
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case (a == "-o" || a == "--output") && i+1 < len(args):
			format = args[i+1]
			i++
		case a == "-h" || a == "--help":
			return response{Stdout: healthUsage}
		default:
			return response{Stderr: "xlb health: unexpected argument " + a + "\n" + healthUsage, Code: ipvsadm.ExitUsage}
		}
	}
	if format != "text" && format != "json" {
		return response{Stderr: "xlb health: unknown output format " + format + ": must be text or json\n", Code: ipvsadm.ExitUsage}
	}
	if s.hc == nil {
		return response{Stderr: "xlb health: no health checks: start xlb run --keepalived FILE\n", Code: ipvsadm.ExitRuntime}
	}
	st := s.hc.Status()
	var out bytes.Buffer
	if format == "json" {
		enc := json.NewEncoder(&out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return response{Stderr: "xlb health: " + err.Error() + "\n", Code: ipvsadm.ExitRuntime}
		}
		return response{Stdout: out.String()}
	}
	if err := st.WriteText(&out, time.Now()); err != nil {
		return response{Stderr: "xlb health: " + err.Error() + "\n", Code: ipvsadm.ExitRuntime}
	}
	return response{Stdout: out.String()}
}

// logWarnings reports what keepalived.conf says that xlb ignores, each
// keyword once, with its file and line.
func logWarnings(log *slog.Logger, ws []keepalived.Warning) {
	for _, w := range ws {
		args := []any{"at", w.Pos.String(), "keyword", w.Keyword, "reason", w.Msg}
		if w.More > 0 {
			args = append(args, "more", w.More) // later occurrences, not reported on their own
		}
		log.Warn("keepalived.conf: ignored", args...)
	}
}

// reloadKeepalived is SIGHUP with --keepalived: the file is read again;
// the director replaces the operator configuration (services and real
// servers, applied as a diff: no flush, established connections stay),
// then the health engine takes the new checkers, keeping the state of
// every real server whose checkers did not change, so a failed server
// stays out (its overlay is the director's, and outlives Replace). A
// file that does not load, or that the dataplane refuses, changes
// nothing.
func reloadKeepalived(srv *server, path string, eng *health.Engine, log *slog.Logger) {
	res, err := keepalived.Load(path)
	if err != nil {
		log.Error("SIGHUP: keepalived configuration not reloaded, configuration unchanged", "err", err)
		return
	}
	logWarnings(log, res.Warnings)
	if err := srv.dir.Replace("reload "+path, res.IPVS); err != nil {
		log.Error("SIGHUP: keepalived configuration not reloaded, configuration unchanged", "file", path, "err", err)
		return
	}
	if err := eng.Update(res.Health); err != nil {
		// Load validated it: not expected. The services are the new
		// ones, checked by the old checkers.
		log.Error("SIGHUP: health checks not reloaded", "file", path, "err", err)
		return
	}
	log.Info("SIGHUP: keepalived configuration reloaded", "file", path, "services", len(res.IPVS.Services))
}
