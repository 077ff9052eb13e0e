package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/migrahosting/cloudpods/provisioner"
)

func writeJSON(w io.Writer, v interface{}) {
	b, _ := json.Marshal(v)
	fmt.Fprintln(w, string(b))
}

// progress prints step events: one line per step with the elapsed time for
// people, JSON lines for machines.
type progress struct {
	mu   sync.Mutex
	w    io.Writer
	json bool
	// quietStarts hides "start" lines when the output is not a terminal, so
	// logs hold one line per finished step.
	quietStarts bool
}

func newProgress(g *globalOptions) *progress {
	return &progress{w: g.stdout, json: g.output == "json", quietStarts: !isTerminal(g.stdout)}
}

func (p *progress) Report(e provisioner.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		writeJSON(p.w, struct {
			Type string `json:"type"`
			provisioner.Event
			Elapsed float64 `json:"elapsed_s"`
		}{"event", e, e.Elapsed.Seconds()})
		return
	}
	if e.Phase == provisioner.PhaseStart && p.quietStarts {
		return
	}
	mark := map[provisioner.Phase]string{
		provisioner.PhaseStart: "…", provisioner.PhaseDone: "✓", provisioner.PhaseSkip: "=",
		provisioner.PhaseFail: "✗", provisioner.PhaseWarn: "!", provisioner.PhaseInfo: "·",
	}[e.Phase]
	line := fmt.Sprintf("[%6.1fs] %s CT %d %-10s %s", e.Elapsed.Seconds(), mark, e.VMID, e.Step, e.Phase)
	if e.Message != "" {
		line += ": " + e.Message
	}
	fmt.Fprintln(p.w, line)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
