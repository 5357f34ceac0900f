package health

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"syscall"
	"time"
)

// scriptGrace is how long a timed-out script has between SIGTERM and
// SIGKILL, as keepalived gives one.
const scriptGrace = 500 * time.Millisecond

// misc runs misc_path until misc_timeout (ctx's deadline). Exit 0 passes,
// anything else fails; with misc_dynamic, exit 2..255 passes and sets the
// weight to exit-2 (keepalived.conf(5): "exit status 2-255: svc check
// success, weight changed to 2 less than exit status"). An exit status
// is 8 bits, so the weights a script can set are 0..253.
func (c *Check) misc(ctx context.Context) (int32, error) {
	err := runScript(ctx, c.MiscPath)
	if err == nil {
		return noWeight, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() && ctx.Err() == nil {
		code := ee.ExitCode()
		if c.MiscDynamic && code >= 2 {
			return int32(code - 2), nil
		}
		return noWeight, fmt.Errorf("%s: exit status %d", c.MiscPath, code)
	}
	if ctx.Err() != nil {
		return noWeight, fmt.Errorf("%s: %w", c.MiscPath, errTimeout)
	}
	return noWeight, fmt.Errorf("%s: %w", c.MiscPath, err)
}

// runScript runs the command line script in its own process group, so
// that at ctx's end the whole group is terminated, then killed.
func runScript(ctx context.Context, script string) error {
	words := splitWords(script)
	if len(words) == 0 {
		return errors.New("run script: empty command")
	}
	cmd := exec.CommandContext(ctx, words[0], words[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	done := make(chan struct{})
	cmd.Cancel = func() error {
		pgid := cmd.Process.Pid
		syscall.Kill(-pgid, syscall.SIGTERM)
		go func() {
			t := time.NewTimer(scriptGrace)
			defer t.Stop()
			select {
			case <-t.C:
				syscall.Kill(-pgid, syscall.SIGKILL)
			case <-done:
			}
		}()
		return nil
	}
	cmd.WaitDelay = 2 * scriptGrace
	err := cmd.Run()
	close(done)
	return err
}
