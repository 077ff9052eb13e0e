package flow

import "time"

// Phase of a step event.
type Phase string

const (
	PhaseStart Phase = "start"
	PhaseDone  Phase = "done"
	PhaseSkip  Phase = "skip" // already in the wanted state
	PhaseFail  Phase = "fail"
	PhaseWarn  Phase = "warn"
	PhaseInfo  Phase = "info"
)

// Event is one line of progress.
type Event struct {
	Time    time.Time     `json:"time"`
	VMID    int           `json:"vmid,omitempty"`
	Step    string        `json:"step"`
	Phase   Phase         `json:"phase"`
	Elapsed time.Duration `json:"-"`
	Message string        `json:"message,omitempty"`
}

// Reporter receives progress. Implementations must be safe for concurrent
// use: batch creates report from several goroutines.
type Reporter interface {
	Report(Event)
}

// ReporterFunc adapts a function.
type ReporterFunc func(Event)

func (f ReporterFunc) Report(e Event) { f(e) }

type nopReporter struct{}

func (nopReporter) Report(Event) {}
