package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
)

// terminal is a program running on a real PTY, with everything it wrote.
type terminal struct {
	ptmx *os.File
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan error
}

func runOnTerminal(t *testing.T, bin string, args ...string) *terminal {
	t.Helper()
	return runOnTerminalWith(t, &pty.Winsize{Cols: 160, Rows: 40}, nil, bin, args...)
}

// cursorQuery is a device status report asking the cursor's position
// (DSR 6).
const cursorQuery = "\x1b[6n"

// runOnTerminalWith runs bin on a terminal of size with env added.
func runOnTerminalWith(t *testing.T, size *pty.Winsize, env []string, bin string, args ...string) *terminal {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "TERM=xterm", "HOME=" + t.TempDir()}, env...)
	ptmx, err := pty.StartWithSize(cmd, size)
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	term := &terminal{ptmx: ptmx, cmd: cmd, done: make(chan error, 1)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			term.mu.Lock()
			term.out.Write(buf[:n])
			term.mu.Unlock()
			if bytes.Contains(buf[:n], []byte(cursorQuery)) {
				// As every terminal does: answer where the cursor is.
				// Bubble Tea asks at start (after OSC 11, which many
				// terminals leave unanswered), and waits 5 s for an
				// answer that never comes.
				_, _ = ptmx.Write([]byte("\x1b[1;1R"))
			}
			if err != nil {
				break
			}
		}
		term.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = ptmx.Close()
	})
	return term
}

func (term *terminal) text() string {
	term.mu.Lock()
	defer term.mu.Unlock()
	return term.out.String()
}

// waitFor polls the screen until cond holds on it.
func (term *terminal) waitFor(t *testing.T, what string, within time.Duration, cond func(string) bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond(term.text()) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s; the screen:\n%q", what, within, term.text())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var liveClone = regexp.MustCompile(`^[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] CT 9101 clone +(\d+)s`)

// TestTerminalShowsLifeAndAcknowledgesCtrlC runs `cloudpod create` on a
// real terminal against a clone PVE takes N seconds over (N from
// CLOUDPODS_PTY_CLONE_S, default 4; the case is 25): the live line
// is redrawn in place at least N times during the clone, counting its
// seconds up and showing the task log's last line; a Ctrl-C typed during
// the clone is acknowledged before the clone ends, and the run then stops
// at the step boundary (exit 130). Structure, not speed: the counts come
// from the configured duration.
func TestTerminalShowsLifeAndAcknowledgesCtrlC(t *testing.T) {
	skipIfShort(t)
	n := 4
	if v, err := strconv.Atoi(os.Getenv("CLOUDPODS_PTY_CLONE_S")); err == nil && v > 0 {
		n = v
	}
	c := startCLIWith(t, func(cfg *pvesim.Config) {
		cfg.Scale = 1
		cfg.TaskDurations = map[string]time.Duration{"vzclone": time.Duration(n) * time.Second, "vzdestroy": 100 * time.Millisecond}
	})
	term := runOnTerminal(t, cloudpodBinary(t, ""), append([]string{"create", "9101", "migra-client-01", "91"}, c.flags...)...)
	// Ctrl-C once the clone has run a second: the terminal's own ^C,
	// through the line discipline, as a person types it.
	term.waitFor(t, "clone on the live line", 30*time.Second, func(s string) bool {
		for _, seg := range strings.Split(s, "\r\x1b[K") {
			if m := liveClone.FindStringSubmatch(seg); m != nil && m[1] != "0" {
				return true
			}
		}
		return false
	})
	typed := time.Now()
	if _, err := term.ptmx.Write([]byte{3}); err != nil {
		t.Fatal(err)
	}
	// How soon is for the log, not a verdict: the verdict is that the
	// acknowledgement comes before the clone ends, below.
	term.waitFor(t, "the Ctrl-C acknowledgement", time.Duration(n)*time.Second+30*time.Second, func(s string) bool { return strings.Contains(s, stopAck) })
	t.Logf("Ctrl-C acknowledged %s after it was typed", time.Since(typed).Round(time.Millisecond))
	var exit *exec.ExitError
	select {
	case err := <-term.done:
		if !errors.As(err, &exit) || exit.ExitCode() != exitInterrupted {
			t.Fatalf("exit: %v, want %d\n%q", err, exitInterrupted, term.text())
		}
	case <-time.After(time.Duration(n)*time.Second + 60*time.Second):
		t.Fatalf("cloudpod did not stop:\n%q", term.text())
	}
	screen := term.text()

	// The clone's part of the screen: from its first live line to the line
	// that ends it.
	end := strings.Index(screen, "✓ CT 9101 clone")
	if end < 0 {
		t.Fatalf("the clone did not end in a done line:\n%q", screen)
	}
	redraws, top := 0, -1
	for _, seg := range strings.Split(screen[:end], "\r\x1b[K") {
		if m := liveClone.FindStringSubmatch(seg); m != nil {
			redraws++
			s, _ := strconv.Atoi(m[1])
			top = max(top, s)
		}
	}
	t.Logf("%d redraws of the live line during a %d s clone, counting up to %ds", redraws, n, top)
	if redraws < n {
		t.Errorf("the live line was drawn %d times during a %d s clone, want at least once a second", redraws, n)
	}
	if top < n-1 {
		t.Errorf("the live line counted the clone up to %ds of %ds", top, n)
	}
	if !strings.Contains(screen[:end], "· create full clone of mountpoint rootfs (clients-main:") {
		t.Errorf("the live line never showed the task log's last line:\n%q", screen[:end])
	}
	ack := strings.Index(screen, stopAck)
	if ack < 0 || ack > end {
		t.Errorf("the Ctrl-C acknowledgement came at %d, the clone's end at %d:\n%q", ack, end, screen)
	}
	// The stop comes at the boundary after the clone, and says what it left.
	if !strings.Contains(screen[end:], "stopped on request before step configure; CT 9101 exists, partly provisioned") {
		t.Errorf("the stop does not say what was left:\n%q", screen[end:])
	}
}

// TestProgressOffTerminalIsUnchanged: piped, the text output is one line
// per finished step, nothing redrawn, no progress of PVE's tasks.
func TestProgressOffTerminalIsUnchanged(t *testing.T) {
	c := startCLI(t)
	code, out, errs := c.run(t, "", "create", "9101", "migra-client-01", "91")
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	step := regexp.MustCompile(`^\[ *\d+\.\ds\] [✓=✗!·] CT 9101 [a-z]+ +(done|skip|fail|warn|info)(: .*)?$`)
	for _, l := range lines[:len(lines)-1] {
		if !step.MatchString(l) {
			t.Errorf("piped output line %q is not a finished step's", l)
		}
	}
	if !strings.HasPrefix(lines[len(lines)-1], "CT 9101 migra-client-01 (10.1.10.91/24) created") || strings.Count(out, "✓") != 10 { // create's ten steps, each done once
		t.Errorf("piped output:\n%s", out)
	}
}

// TestAutoPodsAreNamedByHostname: until IPAM picks a pod's VMID its steps
// are named by its hostname, never "CT 0".
func TestAutoPodsAreNamedByHostname(t *testing.T) {
	c := startCLI(t)
	code, out, errs := c.run(t, "", "create", "--host", "web", "--vmid", "auto", "--ip", "auto")
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	if strings.Contains(out, "CT 0") || !strings.Contains(out, "✓ web validate") || !strings.Contains(out, "✓ CT 9101 clone") {
		t.Errorf("steps before and after the VMID is known:\n%s", out)
	}
	code, out, _ = c.run(t, "", "create", "--count", "2", "--host", "pod", "--vmid", "auto", "--ip", "auto", "--tenant", "BAD TENANT!")
	if code == exitOK || strings.Contains(out, "CT 0") || !strings.Contains(out, "pod-01") {
		t.Errorf("a failed batch before VMIDs: exit %d\n%s", code, out)
	}
}
