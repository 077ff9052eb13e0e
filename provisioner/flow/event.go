package flow

import (
	"time"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Phase of a step event.
type Phase string

const (
	PhaseStart Phase = "start"
	PhaseDone  Phase = "done"
	PhaseSkip  Phase = "skip" // already in the wanted state
	PhaseFail  Phase = "fail"
	PhaseWarn  Phase = "warn"
	PhaseInfo  Phase = "info"
	// PhaseProgress is where a long step is (a PVE task's last log line),
	// for live reporters only (LiveReporter): others never hear it.
	PhaseProgress Phase = "progress"
)

// Event is one line of progress.
type Event struct {
	Time time.Time `json:"time"`
	// Kind is the guest's kind (lxc, qemu); "" for a flow about no guest.
	Kind pve.GuestKind `json:"kind,omitempty"`
	VMID int           `json:"vmid,omitempty"`
	// Name is the guest's name (a pod's hostname): what a reporter calls
	// it while its VMID is still to be picked.
	Name    string        `json:"hostname,omitempty"`
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

// LiveReporter is a Reporter that shows progress as it happens (a
// terminal): steps then also report where a long wait is (PhaseProgress),
// at the cost of extra reads such as a task's log.
type LiveReporter interface {
	Reporter
	Live() bool
}

// ReporterFunc adapts a function.
type ReporterFunc func(Event)

func (f ReporterFunc) Report(e Event) { f(e) }

type nopReporter struct{}

func (nopReporter) Report(Event) {}
