package provisioner

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Create is one flow on the flow engine: the steps below, in createSteps'
// order, each in the file of its concern (validate.go, preflight.go,
// reserve.go, clone.go, configure.go, claim.go, start.go, network.go,
// verify.go, finalize.go; rollback.go holds what undoing them means). Plan
// derives the dry run from the same steps.

// Steps of create. Their names appear in progress events, JSON results,
// errors and the fault matrix.
const (
	StepValidate  = "validate"
	StepPreflight = "preflight"
	StepReserve   = "reserve"
	StepClone     = "clone"
	StepConfigure = "configure"
	StepClaim     = "claim"
	StepStart     = "start"
	StepNetwork   = "network"
	StepVerify    = "verify"
	StepFinalize  = "finalize"
)

// createSteps is create's step order, as data: moving a step is moving its
// line. README's "What it does" lists the same order (a test holds them
// together). Preflight only reads, so a refused request reserves nothing;
// claim settles, against other controllers, the address configure wrote.
var createSteps = []func(*createRun) flow.Step{
	(*createRun).validateStep,
	(*createRun).preflightStep,
	(*createRun).reserveStep,
	(*createRun).cloneStep,
	(*createRun).configureStep,
	(*createRun).claimStep,
	(*createRun).startStep,
	(*createRun).networkStep,
	(*createRun).verifyStep,
	(*createRun).finalizeStep,
}

// DefaultServices are the golden template's services checked by verify.
var DefaultServices = []string{"ssh", "nginx", "php8.3-fpm", "mariadb"}

// CreateRequest is one create.
type CreateRequest struct {
	Spec          Spec
	KeepOnFailure bool
	// Services checked active inside the pod; nil means DefaultServices.
	Services []string
	Reporter Reporter
	// Stop asks the flow to stop at the next step boundary (SIGINT); ctx
	// cancellation aborts mid-step.
	Stop <-chan struct{}
	// Requester is who asked (audit log).
	Requester string
	// AllowDuplicateHostname lets the pod have a hostname another guest in
	// the cluster has (compared in any case); without it that is a conflict.
	AllowDuplicateHostname bool
	// RunID names the run in the ownership marker; empty picks a fresh
	// one. A caller that resumes a run after a crash (the service, for a
	// job) passes the same id, so the resumed run may roll back what its
	// earlier attempt cloned.
	RunID string
	// turn orders a batch's reservations (batch.go); nil outside one.
	turn *batchTurn
}

// CreateResult is what create reports.
type CreateResult struct {
	VMID     int                `json:"vmid"`
	Hostname string             `json:"hostname"`
	IP       string             `json:"ip"`
	Node     string             `json:"node"`
	Status   string             `json:"status"`
	Changed  bool               `json:"changed"`
	Steps    map[string]float64 `json:"steps"` // seconds per step
	Warnings []string           `json:"warnings,omitempty"`
	Checks   []Check            `json:"checks,omitempty"`
	Console  *ConsolePath       `json:"console,omitempty"` // said in preflight (console_path.go)
	// Placement is where the pod went and how (placement.go): set when
	// placement chose the node or the template reaches it from another.
	Placement *Placement `json:"placement,omitempty"`
}

// Check is one verification inside or about the pod.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// createRun is the state of one create: what its steps learn and leave for
// the steps after them and for the rollback.
type createRun struct {
	p     *Provisioner
	req   CreateRequest
	spec  Spec
	runID string
	run   *flow.Run
	res   CreateResult
	// cloneTried: a clone POST went out, so a CT of this run may exist
	// whatever its answer said; created: it does.
	cloneTried bool
	created    bool
	// ctGone: the rollback found no CT at the VMID, or removed it.
	ctGone bool
	// tasks are the UPIDs this run started; rollback waits for them, since
	// a wait that failed or timed out leaves its task running in PVE.
	tasks    []string
	existing *pve.Config
	// view is the cluster as preflight read it; reserve and claim refresh it.
	view *clusterView
	// started is when the create began: preflight's look at the cluster may
	// share a listing begun since (a batch's pods share one).
	started time.Time
	// dryRun: Plan runs the read-only steps; nothing will be claimed after
	// them, so preflight reads the cluster in full.
	dryRun bool
	// autoVMID and autoIP: the request left them to IPAM, so a VMID or an
	// address another controller took meanwhile is replaced, not refused.
	autoVMID, autoIP bool
	lease            *AddressLease
	cmode            string // the template's cmode, restored after the push
	// rootfsBytes is the template's rootfs size: the room a full clone needs.
	rootfsBytes int64
	hwaddr      string
	// cloned is the clone's net0: the template's NIC options (firewall,
	// MTU, VLAN tag) carry over to the pod.
	cloned netcfg.Net0
	// consoleRefused: this PVE's console refused the token, so nothing
	// could be changed inside the pod.
	consoleRefused bool
	// current and want are configure's: the config its check read and the
	// values its run sets.
	current pve.Config
	want    map[string]string
	// placement is the pod's node and clone route (placement.go); unplace
	// takes it out of the provisioner's ledger when the create ends.
	placement *Placement
	unplace   func()
	// ctNode is where the CT is while the route moves it (its clone's
	// node until it reaches spec.Node); "" is spec.Node.
	ctNode string
}

func (p *Provisioner) newCreateRun(req CreateRequest, runID string) *createRun {
	if req.Services == nil {
		req.Services = DefaultServices
	}
	r := &createRun{p: p, req: req, spec: req.Spec, runID: runID, autoVMID: req.Spec.VMID == 0, autoIP: !req.Spec.IP.IsValid(), started: time.Now()}
	r.res = CreateResult{VMID: r.spec.VMID, Hostname: r.spec.Hostname, Node: r.spec.Node}
	r.run = p.newRun(flow.Options{Kind: pve.LXC, VMID: func() int { return r.spec.VMID }, Name: r.spec.Hostname, Reporter: req.Reporter, Stop: req.Stop,
		// The rollback may wait for this run's tasks, then remove the CT.
		UndoBudget: p.opts.TaskTimeout + time.Minute, Nothing: "nothing was created",
		Audit: func(err error, took time.Duration) { p.audit("create", r.spec, req.Requester, took, err) }})
	return r
}

func (r *createRun) steps() []flow.Step {
	out := make([]flow.Step, len(createSteps))
	for i, step := range createSteps {
		out[i] = step(r)
	}
	return out
}

// ct is the pod: its VMID may come from IPAM in reserve; its node is the
// spec's, or where the clone route has it meanwhile.
func (r *createRun) ct() pve.GuestRef {
	if r.ctNode != "" {
		return pve.CT(r.ctNode, r.spec.VMID)
	}
	return pve.CT(r.spec.Node, r.spec.VMID)
}

// Create turns the golden template into a running, verified CloudPod, or
// converges an existing one made from the same spec.
func (p *Provisioner) Create(ctx context.Context, req CreateRequest) (CreateResult, error) {
	runID := req.RunID
	if runID == "" {
		runID = p.randomHex(8)
	}
	r := p.newCreateRun(req, runID)
	defer r.release()
	err := r.run.Execute(ctx, r.steps())
	if err == nil {
		r.res.Status = "running"
	}
	r.res.Steps, r.res.Warnings = r.run.Seconds(), r.run.Warnings()
	if r.spec.IP.IsValid() {
		r.res.IP = r.spec.Address().String()
	}
	r.res.VMID = r.spec.VMID
	return r.res, err
}

// Plan is create's dry run, derived from create's own steps: the read-only
// ones (validate, preflight) run for real, the others say what they would
// call (reserve asks IPAM what it would hand out, reserving nothing). It
// changes nothing.
func (p *Provisioner) Plan(ctx context.Context, req CreateRequest) ([]PlannedCall, error) {
	r := p.newCreateRun(req, "dry-run")
	r.dryRun = true
	return r.run.DryRun(ctx, r.steps())
}

// release takes the pod out of the placement ledger.
func (r *createRun) release() {
	if r.unplace != nil {
		r.unplace()
	}
}

// formatParams renders a planned call's parameters as sorted k=v pairs.
func formatParams(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, " ")
}
