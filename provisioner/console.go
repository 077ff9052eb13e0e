package provisioner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// inGuest attaches to a guest's console and runs fn there as one
// operation of run's retry policy: a console that fails to attach or is
// lost mid-way is attached again and fn runs again from the start (what
// the flows run in a guest is safe to repeat). Flows that can do nothing
// without the console (building the golden template, configuring a
// router) fail on a PVE whose console refuses API tokens, saying how to
// get past it.
func (p *Provisioner) inGuest(ctx context.Context, run *flow.Run, g pve.GuestRef, what string, fn func(ctx context.Context, sh *shell) error) error {
	return p.inConsole(ctx, run, g, what, nil, fn)
}

// inConsole is inGuest on a console that wants keys first: activate is
// typed once attached (a VM's serial console on OpenWrt shows "Please
// press Enter to activate this console." until Enter starts its shell;
// on a console already active it is an empty command line).
func (p *Provisioner) inConsole(ctx context.Context, run *flow.Run, g pve.GuestRef, what string, activate []byte, fn func(ctx context.Context, sh *shell) error) error {
	err := run.Retry().Do(ctx, fmt.Sprintf("%s in the console of %s", what, g), func(ctx context.Context) error {
		sh, done, err := p.attachShell(ctx, g)
		if err != nil {
			return err
		}
		defer done()
		if len(activate) > 0 {
			if _, err := sh.term.Write(activate); err != nil {
				return &consoleLost{fmt.Errorf("write: %w", err)}
			}
		}
		return fn(ctx, sh)
	}, nil)
	if errors.Is(err, pve.ErrConsoleRefusesTokens) {
		return problemf(ErrPreflight, "%v: %s needs the console; install the April 2026 PVE updates, or pass --console-user and --console-password-file (a PVE user with VM.Console)", err, what)
	}
	return err
}

// mustRun runs cmd and fails unless it exits 0, with its output.
func (s *shell) mustRun(ctx context.Context, cmd string) (string, error) {
	out, code, err := s.run(ctx, cmd)
	if err != nil {
		return out, err
	}
	if code != 0 {
		return out, fmt.Errorf("%s exited %d: %s", firstWord(cmd), code, lastLines(out, 3))
	}
	return out, nil
}

// runRetried runs cmd (called label in messages) until it exits 0, up to attempts times with a
// backoff from base (apt behind a network still coming up, a mirror's
// hiccup); long bounds one attempt (an install outlasts the console's
// per-command limit). Each retry is reported through info.
func (s *shell) runRetried(ctx context.Context, label, cmd string, attempts int, base, long time.Duration, info func(string)) (string, error) {
	saved := s.cmdTimeout
	s.cmdTimeout = max(saved, long)
	defer func() { s.cmdTimeout = saved }()
	delay := base
	for i := 1; ; i++ {
		out, code, err := s.run(ctx, cmd)
		if err != nil {
			return out, err
		}
		if code == 0 {
			return out, nil
		}
		if i >= attempts {
			return out, fmt.Errorf("%s exited %d after %d attempts: %s", label, code, i, lastLines(out, 3))
		}
		info(fmt.Sprintf("%s exited %d (%s); retrying in %s", label, code, lastLines(out, 1), delay))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return out, ctx.Err()
		case <-t.C:
		}
		delay = min(delay*2, 30*time.Second)
	}
}

// lastLines is the last n non-empty lines of out, joined by " | ".
func lastLines(out string, n int) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
