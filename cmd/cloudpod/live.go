package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/creack/pty"

	"github.com/migrahosting/cloudpods/provisioner"
)

// liveRefresh is how often the live line is redrawn: the spinner turns
// and the elapsed times count up while PVE works.
const liveRefresh = 250 * time.Millisecond

// stopAck is what the first Ctrl-C gets at once, whatever the step is
// doing: the flow stops at the next step boundary (main.go).
const stopAck = "stopping after this step; Ctrl-C again aborts"

var spinner = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// liveLine is the bottom line of a terminal while steps run: each running
// step of each pod, how long it has run and the last thing PVE said about
// it (its task log), redrawn in place. Finished steps are printed above it
// as ordinary lines. It shares the progress's lock.
type liveLine struct {
	p      *progress
	width  int
	steps  map[string]*liveStep
	frame  int
	drawn  bool
	paused bool
	done   chan struct{}
	exited chan struct{}
}

type liveStep struct {
	label, step, note string
	began             time.Time
}

func startLiveLine(p *progress, stop <-chan struct{}, width int) *liveLine {
	l := &liveLine{p: p, width: width, steps: map[string]*liveStep{}, done: make(chan struct{}), exited: make(chan struct{})}
	go l.run(stop)
	return l
}

// run redraws the line until close, and acknowledges the first Ctrl-C the
// moment it comes.
func (l *liveLine) run(stop <-chan struct{}) {
	defer close(l.exited)
	tick := time.NewTicker(liveRefresh)
	defer tick.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-stop:
			l.p.mu.Lock()
			l.p.line(stopAck)
			l.p.mu.Unlock()
			stop = nil // acknowledged once; the second Ctrl-C aborts
		case <-tick.C:
			l.p.mu.Lock()
			l.frame++
			l.draw()
			l.p.mu.Unlock()
		}
	}
}

func (l *liveLine) close() {
	close(l.done)
	<-l.exited
	l.p.mu.Lock()
	defer l.p.mu.Unlock()
	l.clear()
}

// track folds an event into the live line; true when it needs no line of
// its own (a step starting, or its progress). The caller holds the lock.
func (l *liveLine) track(e provisioner.Event) bool {
	switch e.Phase {
	case provisioner.PhaseStart:
		l.steps[l.key(e)] = &liveStep{label: podLabel(e.Kind, e.VMID, e.Name), step: e.Step, began: time.Now()}
		l.draw()
		return true
	case provisioner.PhaseProgress:
		if s := l.steps[l.key(e)]; s != nil {
			s.note = e.Message
			l.draw()
		}
		return true
	case provisioner.PhaseDone, provisioner.PhaseSkip, provisioner.PhaseFail:
		delete(l.steps, l.key(e))
	}
	return false
}

// key names a pod's step; a pod's name stays while IPAM gives it its
// VMID mid-step.
func (l *liveLine) key(e provisioner.Event) string {
	if e.Name != "" {
		return e.Name + "\x00" + e.Step
	}
	return podLabel(e.Kind, e.VMID, "") + "\x00" + e.Step
}

// pause clears the line and keeps it away (a question on the terminal);
// resume brings it back. The caller holds the lock.
func (l *liveLine) pause()  { l.clear(); l.paused = true }
func (l *liveLine) resume() { l.paused = false; l.draw() }

func (l *liveLine) clear() {
	if l.drawn {
		fmt.Fprint(l.p.w, "\r\x1b[K")
		l.drawn = false
	}
}

// draw writes the line in place of the last one. The caller holds the
// lock.
func (l *liveLine) draw() {
	if l.paused {
		return
	}
	if len(l.steps) == 0 {
		l.clear()
		return
	}
	running := make([]*liveStep, 0, len(l.steps))
	for _, s := range l.steps {
		running = append(running, s)
	}
	sort.Slice(running, func(i, j int) bool { return running[i].began.Before(running[j].began) })
	spin := spinner[l.frame%len(spinner)]
	var text string
	if len(running) == 1 {
		s := running[0]
		text = fmt.Sprintf("%s %s %-10s %s", spin, s.label, s.step, elapsed(s.began))
		if s.note != "" {
			text += " · " + s.note
		}
	} else {
		parts := make([]string, len(running))
		for i, s := range running {
			parts[i] = fmt.Sprintf("%s %s %s", s.label, s.step, elapsed(s.began))
		}
		text = fmt.Sprintf("%s %d running: %s", spin, len(running), strings.Join(parts, " · "))
	}
	fmt.Fprint(l.p.w, "\r\x1b[K"+fit(text, l.width-1))
	l.drawn = true
}

func elapsed(since time.Time) string {
	return fmt.Sprintf("%.0fs", time.Since(since).Truncate(time.Second).Seconds())
}

// fit cuts s to n characters, so the line never wraps (a wrapped line
// cannot be redrawn in place).
func fit(s string, n int) string {
	if n <= 1 || utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// terminalWidth is the columns of w's terminal, 80 when it does not say.
func terminalWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if sz, err := pty.GetsizeFull(f); err == nil && sz.Cols > 0 {
			return int(sz.Cols)
		}
	}
	return 80
}
