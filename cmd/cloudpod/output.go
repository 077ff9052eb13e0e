package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

func writeJSON(w io.Writer, v interface{}) {
	b, _ := json.Marshal(v)
	fmt.Fprintln(w, string(b))
}

// progress prints step events: one line per step with the elapsed time for
// people, JSON lines for machines. On a terminal a live line (live.go)
// shows the steps running, their time and PVE's last word, updated in
// place.
type progress struct {
	mu   sync.Mutex
	w    io.Writer
	json bool
	// quietStarts hides "start" lines when the output is not a terminal, so
	// logs hold one line per finished step.
	quietStarts bool
	live        *liveLine
}

// newProgress is the reporter of a command's flows; Close it when the
// command ends.
func newProgress(g *globalOptions) *progress {
	p := &progress{w: g.stdout, json: g.output == "json", quietStarts: !isTerminal(g.stdout)}
	if !p.json && isTerminal(g.stdout) {
		p.live = startLiveLine(p, g.stop, terminalWidth(g.stdout))
	}
	return p
}

// Live tells the flows that a terminal watches (provisioner.LiveReporter).
func (p *progress) Live() bool { return p.live != nil }

// Close stops the live line and clears it.
func (p *progress) Close() {
	if p.live != nil {
		p.live.close()
	}
}

// pause keeps the live line off the terminal while the command asks a
// question there; resume brings it back.
func (p *progress) pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.live != nil {
		p.live.pause()
	}
}

func (p *progress) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.live != nil {
		p.live.resume()
	}
}

func (p *progress) Report(e provisioner.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		if e.Phase == provisioner.PhaseProgress {
			return
		}
		writeJSON(p.w, struct {
			Type string `json:"type"`
			provisioner.Event
			Elapsed float64 `json:"elapsed_s"`
		}{"event", e, e.Elapsed.Seconds()})
		return
	}
	if p.live != nil && p.live.track(e) {
		return
	}
	if e.Phase == provisioner.PhaseProgress || (e.Phase == provisioner.PhaseStart && p.quietStarts) {
		return
	}
	p.line(stepLine(e))
}

// line prints one finished line, above the live line when there is one.
// The caller holds mu.
func (p *progress) line(s string) {
	if p.live != nil {
		p.live.clear()
	}
	fmt.Fprintln(p.w, s)
	if p.live != nil {
		p.live.draw()
	}
}

// stepLine is an event as one line.
func stepLine(e provisioner.Event) string {
	mark := map[provisioner.Phase]string{
		provisioner.PhaseStart: "…", provisioner.PhaseDone: "✓", provisioner.PhaseSkip: "=",
		provisioner.PhaseFail: "✗", provisioner.PhaseWarn: "!", provisioner.PhaseInfo: "·",
	}[e.Phase]
	line := fmt.Sprintf("[%6.1fs] %s %s %-10s %s", e.Elapsed.Seconds(), mark, podLabel(e.Kind, e.VMID, e.Name), e.Step, e.Phase)
	if e.Message != "" {
		line += ": " + e.Message
	}
	return line
}

// podLabel names a guest in progress: "CT 9101", "VM 500", or its
// hostname while IPAM has yet to pick its VMID.
func podLabel(kind pve.GuestKind, vmid int, name string) string {
	switch {
	case vmid != 0:
		return fmt.Sprintf("%s %d", kind.Noun(), vmid)
	case name != "":
		return name
	}
	return "CT ?"
}

func isTerminal(w io.Writer) bool { return isTerminalFile(w) }

// isTerminalFile: v (a stream) is a terminal.
func isTerminalFile(v any) bool {
	f, ok := v.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
