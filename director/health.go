package director

import (
	"context"
	"fmt"

	"github.com/xlbproject/xlb/health"
)

// ApplyHealth makes the Director a health.Sink: one batch of the health
// engine's transitions becomes one SetDestStates, all of it or nothing
// (the engine sends a refused batch again, merged with newer news).
//
//   - Present false: the real server is removed (keepalived's default
//     on failure); a sorry server is taken out.
//   - Present with Weight 0: kept with weight 0, inhibit_on_failure: the
//     established connections drain.
//   - Present with another Weight: in service; a weight that differs
//     from the configured one (misc_dynamic) is put in force as an
//     overlay, the configured one is no overlay at all, so that a reload
//     that changes the weight is not pinned to the old one.
//   - Sorry: the service's sorry server, added with its Fwd while
//     Present.
//   - Release: the engine no longer checks the destination; its overlay
//     goes.
//
// Every transition is logged, one line each, once it is in force.
func (d *Director) ApplyHealth(_ context.Context, batch []health.Transition) error {
	if len(batch) == 0 {
		return nil
	}
	cfg := d.Config()
	changes := make([]DestChange, 0, len(batch))
	for _, t := range batch {
		c := DestChange{Service: t.Service, Dest: t.Dest, Sorry: t.Sorry, Fwd: t.Fwd}
		switch {
		case t.Release && t.Sorry, !t.Present && t.Sorry:
			c.State = DestRemoved
		case t.Release:
			c.State = DestUp
		case !t.Present:
			c.State = DestRemoved
		case t.Weight == 0:
			c.State = DestInhibited
		case t.Sorry:
			c.State, c.HasWeight, c.Weight = DestUp, true, t.Weight
		default:
			c.State = DestUp
			if s := cfg.Service(t.Service); s == nil || s.Dest(t.Dest) == nil || s.Dest(t.Dest).Weight != t.Weight {
				c.HasWeight, c.Weight = true, t.Weight
			}
		}
		changes = append(changes, c)
	}
	if err := d.SetDestStates(changes); err != nil {
		return fmt.Errorf("apply health transitions: %w", err)
	}
	for _, t := range batch {
		d.healthTransitions.Add(1)
		state := "down"
		if t.Healthy {
			state = "up"
		}
		args := []any{"service", t.Service.String(), "dest", t.Dest, "health", state, "present", t.Present,
			"weight", t.Weight, "reason", t.Reason}
		if t.Sorry {
			args = append(args, "sorry", true)
		}
		if t.Release {
			args = append(args, "release", true)
		}
		d.log.Info("health transition", args...)
	}
	return nil
}

// HealthTransitions counts the health transitions applied since New.
func (d *Director) HealthTransitions() uint64 { return d.healthTransitions.Load() }
