package service

import (
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/migrahosting/cloudpods/provisioner"
)

// Status is where a job is in its life.
type Status string

const (
	StatusQueued    Status = "queued"
	StatusRunning   Status = "running"
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
)

func (s Status) active() bool { return s == StatusQueued || s == StatusRunning }

// Kind is the flow a job runs.
type Kind string

const (
	KindCreate  Kind = "create"
	KindDestroy Kind = "destroy"
	KindBackup  Kind = "backup"
)

// Job is one asynchronous run of a flow, as stored and as served (less the
// idempotency record).
type Job struct {
	ID        string `json:"jobId"`
	Kind      Kind   `json:"kind"`
	Status    Status `json:"status"`
	VMID      int    `json:"vmid"`
	Hostname  string `json:"hostname,omitempty"`
	IP        string `json:"ip,omitempty"`
	Tenant    string `json:"tenantId,omitempty"`
	Requester string `json:"requester"`
	// Request is what a create asked for, defaults filled in.
	Request *CreateParams `json:"request,omitempty"`
	// BackupStorage is where a backup job writes.
	BackupStorage string `json:"backupStorage,omitempty"`
	// Attempts counts runs: more than one after a restart or a shutdown
	// interrupted the job.
	Attempts int `json:"attempts"`
	// Note says why a job went back to the queue.
	Note     string          `json:"note,omitempty"`
	Created  time.Time       `json:"createdAt"`
	Started  time.Time       `json:"startedAt,omitzero"`
	Finished time.Time       `json:"finishedAt,omitzero"`
	Steps    []StepProgress  `json:"steps"`
	Warnings []string        `json:"warnings,omitempty"`
	Result   json.RawMessage `json:"result,omitempty"`
	Error    *JobError       `json:"error,omitempty"`
	// Idempotency is the Idempotency-Key the job was submitted with.
	Idempotency *IdempotencyRecord `json:"idempotency,omitempty"`
}

// IdempotencyRecord ties a requester's Idempotency-Key to the request it
// first came with.
type IdempotencyRecord struct {
	Requester   string `json:"requester"`
	Key         string `json:"key"`
	Fingerprint string `json:"fingerprint"`
}

func (r IdempotencyRecord) index() string { return r.Requester + "\x00" + r.Key }

// StepProgress is one step of the flow, built from the provisioner's
// Reporter events.
type StepProgress struct {
	Step string `json:"step"`
	// State is running, done, skipped or failed.
	State    string    `json:"state"`
	Started  time.Time `json:"startedAt,omitzero"`
	Finished time.Time `json:"finishedAt,omitzero"`
	Seconds  float64   `json:"durationS,omitempty"`
	Message  string    `json:"message,omitempty"`
}

// JobError is why a job failed.
type JobError struct {
	Step    string `json:"step,omitempty"`
	Message string `json:"message"`
	// Kind classifies the failure as the CLI's exit codes do
	// (provisioner.KindOf): invalid, preflight, conflict, refused,
	// not_found, pve_auth, timeout, unreachable, locked, left_behind,
	// interrupted or failed.
	Kind       string `json:"kind"`
	RolledBack string `json:"rolledBack,omitempty"`
}

// CreateParams is a create request with the service's defaults filled in;
// the subnet, gateway, DNS and node come from the service's configuration.
type CreateParams struct {
	TenantID string     `json:"tenantId"`
	VMID     int        `json:"vmid"`
	Hostname string     `json:"hostname"`
	IP       netip.Addr `json:"ip"`
	Cores    int        `json:"cores"`
	MemoryMB int        `json:"memoryMb"`
	SwapMB   int        `json:"swapMb"`
	Storage  string     `json:"storage"`
	Bridge   string     `json:"bridge"`
	Template int        `json:"template"`
	// Allocated says the VMID and address came from the Allocator.
	Allocated bool `json:"allocated,omitempty"`
}

// spec is the provisioner's view of the request.
func (c CreateParams) spec(defaults provisioner.Spec) provisioner.Spec {
	s := defaults
	s.DNS = slices.Clone(defaults.DNS)
	s.Tags = slices.Clone(defaults.Tags)
	s.Tenant, s.VMID, s.Hostname, s.IP = c.TenantID, c.VMID, c.Hostname, c.IP
	s.Cores, s.MemoryMB, s.SwapMB = c.Cores, c.MemoryMB, c.SwapMB
	s.Storage, s.Bridge, s.Template = c.Storage, c.Bridge, c.Template
	return s
}

func (j *Job) clone() Job {
	c := *j
	c.Steps = slices.Clone(j.Steps)
	c.Warnings = slices.Clone(j.Warnings)
	if j.Request != nil {
		r := *j.Request
		c.Request = &r
	}
	if j.Error != nil {
		e := *j.Error
		c.Error = &e
	}
	if j.Idempotency != nil {
		i := *j.Idempotency
		c.Idempotency = &i
	}
	return c
}

// view is the job as the API serves it.
func (j *Job) view() Job {
	c := j.clone()
	c.Idempotency = nil
	if c.Steps == nil {
		c.Steps = []StepProgress{}
	}
	return c
}

// sameRequest says b asks for exactly what a asks for, so b is a retry of
// a rather than a second request.
func sameRequest(a, b *Job) bool {
	if a.Kind != b.Kind || a.Tenant != b.Tenant || a.BackupStorage != b.BackupStorage {
		return false
	}
	if (a.Request == nil) != (b.Request == nil) {
		return false
	}
	if a.Request == nil {
		return a.VMID == b.VMID
	}
	ar, br := *a.Request, *b.Request
	if br.VMID == 0 && !br.IP.IsValid() && ar.Allocated {
		// b leaves VMID and address to IPAM, which gave a its pair: the
		// same request, asked again before its answer was seen.
		ar.VMID, ar.IP, ar.Allocated = 0, netip.Addr{}, false
	}
	return ar == br
}

// overlaps says a and b touch the same pod, address or hostname, so they
// must not run at once.
func overlaps(a, b *Job) bool {
	if a.VMID != 0 && a.VMID == b.VMID {
		return true
	}
	if a.Kind != KindCreate || b.Kind != KindCreate {
		return false
	}
	// A create still to be allocated has no address yet.
	return (a.Request.IP.IsValid() && a.Request.IP == b.Request.IP) || equalFoldASCII(a.Hostname, b.Hostname)
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// applyEvent folds one Reporter event into the job's step list and returns
// the step it ended, if any. Warnings go to the job's list; a warning or
// note outside any step opens none.
func (j *Job) applyEvent(e provisioner.Event) (ended *StepProgress) {
	var cur *StepProgress
	for i := len(j.Steps) - 1; i >= 0; i-- {
		if j.Steps[i].Step == e.Step {
			cur = &j.Steps[i]
			break
		}
	}
	switch e.Phase {
	case provisioner.PhaseWarn:
		j.Warnings = append(j.Warnings, e.Message)
		return nil
	case provisioner.PhaseInfo:
		if cur != nil {
			cur.Message = e.Message
		}
		return nil
	}
	if cur == nil || (e.Phase == provisioner.PhaseStart && cur.State != "running") {
		j.Steps = append(j.Steps, StepProgress{Step: e.Step, State: "running", Started: e.Time})
		cur = &j.Steps[len(j.Steps)-1]
	}
	state := map[provisioner.Phase]string{provisioner.PhaseDone: "done", provisioner.PhaseSkip: "skipped", provisioner.PhaseFail: "failed"}[e.Phase]
	if state == "" {
		return nil
	}
	cur.State, cur.Finished = state, e.Time
	cur.Seconds = e.Time.Sub(cur.Started).Seconds()
	if e.Message != "" {
		cur.Message = e.Message
	}
	return cur
}

// Error kinds of the service's answers. A flow's failure is classified by
// provisioner.KindOf, the very classification the CLI's exit codes come
// from; the service adds the kinds of its own refusals.
var (
	kindInvalid  = string(provisioner.KindInvalid)
	kindConflict = string(provisioner.KindConflict)
	kindRefused  = string(provisioner.KindRefused)
	kindNotFound = string(provisioner.KindNotFound)
	kindFailed   = string(provisioner.KindFailed)
)

// flowFailure is the JSON kind and HTTP status of a flow's failure.
func flowFailure(err error) (kind string, status int) {
	k := provisioner.KindOf(err)
	_, status = k.Codes()
	return string(k), status
}

func jobError(err error) *JobError {
	kind, _ := flowFailure(err)
	je := &JobError{Message: err.Error(), Kind: kind}
	var se *provisioner.StepError
	if errors.As(err, &se) {
		je.Step, je.RolledBack = se.Step, se.RolledBack
	}
	return je
}
