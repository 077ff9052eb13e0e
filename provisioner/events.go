package provisioner

import "github.com/migrahosting/cloudpods/provisioner/flow"

// Progress types are the flow engine's; the names here keep the
// provisioner's API whole for the CLI and the service.
type (
	Phase        = flow.Phase
	Event        = flow.Event
	Reporter     = flow.Reporter
	LiveReporter = flow.LiveReporter
	ReporterFunc = flow.ReporterFunc
	// PlannedCall is one call a dry run says create would make.
	PlannedCall = flow.Call
	// StepError is a failure at one step of a flow (flow.StepError).
	StepError = flow.StepError
)

const (
	PhaseStart = flow.PhaseStart
	PhaseDone  = flow.PhaseDone
	PhaseSkip  = flow.PhaseSkip
	PhaseFail  = flow.PhaseFail
	PhaseWarn  = flow.PhaseWarn
	PhaseInfo  = flow.PhaseInfo
	// PhaseProgress reaches live reporters only (LiveReporter).
	PhaseProgress = flow.PhaseProgress
)
