package provisioner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Steps of create, in order. Their names appear in progress events, JSON
// results, errors and the fault matrix.
const (
	StepValidate  = "validate"
	StepPreflight = "preflight"
	StepReserve   = "reserve"
	StepClone     = "clone"
	StepConfigure = "configure"
	StepStart     = "start"
	StepNetwork   = "network"
	StepVerify    = "verify"
	StepFinalize  = "finalize"
)

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
	// RunID names the run in the ownership marker; empty picks a fresh
	// one. A caller that resumes a run after a crash (the service, for a
	// job) passes the same id, so the resumed run may roll back what its
	// earlier attempt cloned.
	RunID string
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
}

// Check is one verification inside or about the pod.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// ErrInterrupted: the run stopped at a step boundary on request.
var ErrInterrupted = errors.New("interrupted")

// createRun is the state of one create.
type createRun struct {
	p     *Provisioner
	req   CreateRequest
	spec  Spec
	runID string
	rep   Reporter
	res   CreateResult
	step  string // the step running, for retry events
	// cloneTried: a clone POST went out, so a CT of this run may exist
	// whatever its answer said; created: it does.
	cloneTried bool
	created    bool
	// tasks are the UPIDs this run started; rollback waits for them, since
	// a wait that failed or timed out leaves its task running in PVE.
	tasks    []string
	existing *pve.Config
	lease    *AddressLease
	cmode    string // the template's cmode, restored after the push
	// rootfsBytes is the template's rootfs size: the room a full clone needs.
	rootfsBytes int64
	hwaddr      string
	// cloned is the clone's net0: the template's NIC options (firewall,
	// MTU, VLAN tag) carry over to the pod.
	cloned netcfg.Net0
	// consoleRefused: this PVE's console refused the token, so nothing
	// could be changed inside the pod.
	consoleRefused bool
	start          time.Time
	skipped        map[string]bool
}

// Create turns the golden template into a running, verified CloudPod, or
// converges an existing one made from the same spec.
func (p *Provisioner) Create(ctx context.Context, req CreateRequest) (CreateResult, error) {
	runID := req.RunID
	if runID == "" {
		runID = p.randomHex(8)
	}
	r := &createRun{p: p, req: req, spec: req.Spec, runID: runID, rep: req.Reporter, start: p.opts.Now(), skipped: map[string]bool{}}
	if r.rep == nil {
		r.rep = nopReporter{}
	}
	if r.req.Services == nil {
		r.req.Services = DefaultServices
	}
	r.res = CreateResult{VMID: r.spec.VMID, Hostname: r.spec.Hostname, Node: r.spec.Node, Steps: map[string]float64{}}
	err := r.run(ctx)
	if r.spec.IP.IsValid() {
		r.res.IP = r.spec.Address().String()
	}
	r.res.VMID = r.spec.VMID
	p.audit("create", r.spec, req.Requester, r.start, err)
	return r.res, err
}

func (r *createRun) run(ctx context.Context) error {
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{StepValidate, r.validate},
		{StepReserve, r.reserve},
		{StepPreflight, r.preflight},
		{StepClone, r.clone},
		{StepConfigure, r.configure},
		{StepStart, r.startCT},
		{StepNetwork, r.network},
		{StepVerify, r.verify},
		{StepFinalize, r.finalize},
	}
	for i, s := range steps {
		if i > 0 && r.stopRequested() {
			return r.interrupted(ctx, s.name)
		}
		r.step = s.name
		t0 := time.Now()
		r.event(s.name, PhaseStart, "")
		err := s.fn(ctx)
		r.res.Steps[s.name] = time.Since(t0).Seconds()
		if err != nil {
			r.event(s.name, PhaseFail, err.Error())
			return r.fail(ctx, s.name, err)
		}
		if !r.skipped[s.name] {
			r.event(s.name, PhaseDone, fmt.Sprintf("%.2fs", r.res.Steps[s.name]))
		}
	}
	r.res.Status = "running"
	return nil
}

func (r *createRun) stopRequested() bool {
	select {
	case <-r.req.Stop:
		return true
	default:
		return false
	}
}

// interrupted ends a run stopped at a step boundary (SIGINT, SIGTERM) and
// says what it leaves: a partly provisioned CT and its reservation for the
// re-run, or nothing at all.
func (r *createRun) interrupted(ctx context.Context, next string) error {
	se := &StepError{Step: next, VMID: r.spec.VMID, Err: fmt.Errorf("%w before step %s", ErrInterrupted, next)}
	if r.created || r.existing != nil {
		se.Left = true
		se.RolledBack = fmt.Sprintf("CT %d exists, partly provisioned, and %s stays reserved for it: run the same command again to finish it, or remove it with: cloudpod destroy %d --force",
			r.spec.VMID, r.spec.IP, r.spec.VMID)
		return se
	}
	se.RolledBack = "nothing was created"
	if r.lease != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		se.RolledBack += r.releaseLease(rctx)
	}
	return se
}

func (r *createRun) event(step string, ph Phase, msg string) {
	r.rep.Report(Event{Time: r.p.opts.Now(), VMID: r.spec.VMID, Step: step, Phase: ph, Message: msg, Elapsed: r.p.opts.Now().Sub(r.start)})
}

func (r *createRun) skip(step, why string) {
	r.skipped[step] = true
	r.event(step, PhaseSkip, why)
}

func (r *createRun) warn(step, msg string) {
	r.res.Warnings = append(r.res.Warnings, msg)
	r.event(step, PhaseWarn, msg)
}

// retry is the provisioner's policy, reporting each retry as progress of
// the step running.
func (r *createRun) retry() pve.RetryPolicy {
	pol := r.p.opts.Retry
	pol.OnRetry = func(what string, attempt int, err error, wait time.Duration) {
		r.p.log.WithFields(map[string]interface{}{"vmid": r.spec.VMID, "step": r.step, "attempt": attempt}).WithError(err).Debug("retrying " + what)
		r.event(r.step, PhaseInfo, fmt.Sprintf("%s: %v; retrying in %s", what, err, wait.Round(time.Millisecond)))
	}
	return pol
}

// fail rolls back what this run created (unless asked to keep it) and
// releases the IPAM reservation when no CT is left at the VMID, then says
// what state it leaves.
func (r *createRun) fail(ctx context.Context, step string, err error) error {
	se := &StepError{Step: step, VMID: r.spec.VMID, Err: err}
	// Rollback must run even when ctx is what failed (a timeout).
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.p.opts.TaskTimeout+time.Minute)
	defer cancel()
	left := true
	switch {
	case r.existing != nil && !r.created:
		se.RolledBack = fmt.Sprintf("CT %d was there before this run and is left as it is: run the same command again to finish it", r.spec.VMID)
	case errors.Is(err, context.Canceled):
		// Aborted mid-step (a second signal): touch nothing, say what is there.
		left, se.RolledBack = r.leftBehind(rctx)
	case r.cloneTried:
		left, se.RolledBack = r.rollbackClone(rctx, step, err)
	default:
		left, se.RolledBack = false, "nothing was created"
	}
	if r.lease != nil && !left {
		se.RolledBack += r.releaseLease(rctx)
	}
	se.Left = left
	return se
}

// releaseLease gives the reservation back and says so.
func (r *createRun) releaseLease(ctx context.Context) string {
	if err := r.p.opts.Addresses.Release(ctx, *r.lease); err != nil {
		return fmt.Sprintf("; releasing %s in IPAM failed, run `cloudpod ip release %s`: %v", r.lease.IP, r.lease.IP, err)
	}
	return fmt.Sprintf("; %s and VMID %d released in IPAM", r.lease.IP, r.lease.VMID)
}

// leftBehind reports whether a CT of this run is at the VMID, for a run
// that stops without rolling back.
func (r *createRun) leftBehind(ctx context.Context) (bool, string) {
	if !r.cloneTried {
		return false, "nothing was created"
	}
	_, err := r.p.api.ContainerConfig(ctx, r.spec.Node, r.spec.VMID)
	if errors.Is(err, pve.ErrNotFound) {
		return false, "nothing was created"
	}
	return true, fmt.Sprintf("CT %d may exist, partly provisioned, and %s stays reserved for it: run the same command again to finish it, or remove it with: cloudpod destroy %d --force",
		r.spec.VMID, r.spec.IP, r.spec.VMID)
}

// rollbackClone removes the CT this run cloned, and only that one: the
// marker on the VMID must carry this run's id. It waits for the tasks this
// run started first (a clone whose wait timed out still holds its lock; a
// start whose status read failed may still bring the CT up).
func (r *createRun) rollbackClone(ctx context.Context, step string, cause error) (bool, string) {
	s := r.spec
	wo := r.p.opts.Wait
	wo.Timeout = 0 // ctx bounds it: the rollback's own budget
	for _, upid := range r.tasks {
		_, _ = pve.WaitTask(ctx, r.p.api, s.Node, upid, wo)
	}
	cfg, err := r.p.api.ContainerConfig(ctx, s.Node, s.VMID)
	if errors.Is(err, pve.ErrNotFound) {
		return false, "nothing was left: no CT at VMID " + strconv.Itoa(s.VMID)
	}
	if err != nil {
		return true, fmt.Sprintf("could not read CT %d to roll it back (%v): if it carries run %s's marker, remove it with: cloudpod destroy %d --force", s.VMID, err, r.runID, s.VMID)
	}
	if m, ok := ParseMarker(cfg.Get("description")); !ok || !m.Owns(s.VMID) || m.RunID != r.runID {
		return true, fmt.Sprintf("CT %d is not this run's (another run or tool made it): left untouched", s.VMID)
	}
	if r.req.KeepOnFailure {
		if merr := r.markFailed(ctx, step, cause); merr != nil {
			return true, fmt.Sprintf("kept CT %d (--keep-on-failure) but marking it failed did not work: %v", s.VMID, merr)
		}
		return true, fmt.Sprintf("kept CT %d, marked failed (--keep-on-failure): inspect it, then remove it with: cloudpod destroy %d --force", s.VMID, s.VMID)
	}
	r.event("rollback", PhaseStart, "")
	if err := r.p.removeGuest(ctx, s.Node, s.VMID, r.runID); err != nil {
		r.event("rollback", PhaseFail, err.Error())
		return true, fmt.Sprintf("rollback of CT %d failed, remove it with: cloudpod destroy %d --force (%v)", s.VMID, s.VMID, err)
	}
	r.event("rollback", PhaseDone, "")
	return false, fmt.Sprintf("rolled back: CT %d destroyed", s.VMID)
}

// markFailed keeps a failed pod recognisable: the marker's state, the
// failure in the description, and a cloudpod-failed tag for listings.
func (r *createRun) markFailed(ctx context.Context, step string, cause error) error {
	if err := r.p.waitNoLock(ctx, r.spec.Node, r.spec.VMID, r.p.opts.TaskTimeout); err != nil {
		return err
	}
	m := newMarker(r.spec, r.runID, r.p.opts.Now())
	m.State = "failed"
	set := map[string]string{
		"description": m.Description() + fmt.Sprintf("failed at %s: %s\n", step, strings.ReplaceAll(cause.Error(), "\n", " ")),
		"tags":        tagString(append(r.tags(), "cloudpod-failed")),
	}
	return r.retry().Do(ctx, fmt.Sprintf("mark CT %d failed", r.spec.VMID), func(ctx context.Context) error {
		return r.p.api.UpdateContainerConfig(ctx, r.spec.Node, r.spec.VMID, pve.ConfigUpdate{Set: set})
	}, nil)
}

// validate checks the request alone, before PVE is contacted.
func (r *createRun) validate(context.Context) error {
	fields := r.spec.FieldProblems(r.p.opts.Addresses != nil)
	var probs []string
	for _, f := range []string{"vmid", "hostname", "ip", "cores", "memory", "swap", "tags"} {
		if msg, ok := fields[f]; ok {
			probs = append(probs, msg)
		}
	}
	if len(probs) == 0 && r.spec.IP.IsValid() {
		if err := r.netSpec().Validate(); err != nil {
			probs = append(probs, err.Error())
		}
	}
	if len(probs) > 0 {
		return problemf(ErrInvalidSpec, "%s", strings.ReplaceAll(strings.Join(probs, "; "), "\n", "; "))
	}
	return nil
}

func (r *createRun) netSpec() netcfg.Spec {
	s := r.spec
	ns := netcfg.Spec{Interface: "eth0", Bridge: s.Bridge, Address: s.Address(), Gateway: s.Gateway,
		Nameservers: s.DNS, HWAddr: r.hwaddr, Firewall: r.cloned.Firewall, MTU: r.cloned.MTU, VLAN: r.cloned.Tag}
	if s.SearchDomain != "" {
		ns.SearchDomains = strings.Fields(strings.ReplaceAll(s.SearchDomain, ",", " "))
	}
	return ns
}

func (r *createRun) tags() []string {
	t := []string{OwnerTag}
	if r.spec.Tenant != "" {
		t = append(t, "tenant-"+strings.ToLower(r.spec.Tenant))
	}
	return append(t, r.spec.Tags...)
}

func tagString(tags []string) string {
	out, err := netcfg.NormalizeTags(strings.Join(tags, ";"))
	if err != nil {
		return strings.Join(tags, ";")
	}
	return out
}

// requiredPrivileges are what create needs, by ACL path (pve-facts §7).
func (r *createRun) requiredPrivileges() []struct{ path, priv string } {
	s := r.spec
	vm := "/vms/" + strconv.Itoa(s.VMID)
	return []struct{ path, priv string }{
		{"/vms/" + strconv.Itoa(s.Template), "VM.Clone"},
		{"/vms/" + strconv.Itoa(s.Template), "VM.Audit"},
		{vm, "VM.Allocate"},
		{vm, "VM.Config.CPU"},
		{vm, "VM.Config.Memory"},
		{vm, "VM.Config.Network"},
		{vm, "VM.Config.Options"},
		{vm, "VM.PowerMgmt"},
		{vm, "VM.Console"},
		{vm, "VM.Audit"},
		{"/storage/" + s.Storage, "Datastore.AllocateSpace"},
		{"/sdn/zones/localnetwork/" + s.Bridge, "SDN.Use"},
		{"/nodes/" + s.Node, "Sys.Audit"},
	}
}

// preflight checks PVE's state; it changes nothing.
func (r *createRun) preflight(ctx context.Context) error {
	s := r.spec
	perms, err := r.p.api.Permissions(ctx)
	if err != nil {
		return r.apiProblem("read the token's permissions", err)
	}
	var missing []string
	for _, rp := range r.requiredPrivileges() {
		if !perms.Has(rp.path, rp.priv) {
			missing = append(missing, rp.priv+" on "+rp.path)
		}
	}
	if len(missing) > 0 {
		return problemf(ErrPreflight, "the API token lacks %s: grant them to the token (README: \"Token and minimal role\")", strings.Join(missing, ", "))
	}
	node, err := r.p.api.NodeStatus(ctx, s.Node)
	if errors.Is(err, pve.ErrNotFound) {
		return problemf(ErrPreflight, "node %q is not in the cluster: pass --node with one of the cluster's nodes", s.Node)
	}
	if err != nil {
		return r.apiProblem("read node "+s.Node, err)
	}
	if !node.Online {
		return problemf(ErrPreflight, "node %s is offline: bring it back or pass --node with an online node", s.Node)
	}
	if err := r.checkTemplate(ctx); err != nil {
		return err
	}
	if err := r.checkExisting(ctx); err != nil {
		return err
	}
	if r.existing != nil {
		return nil // the pod exists and is ours: the remaining checks were its first run's
	}
	if err := r.checkStorage(ctx); err != nil {
		return err
	}
	if err := r.checkBridge(ctx); err != nil {
		return err
	}
	if r.lease != nil {
		// IPAM's reservation just checked the address against every
		// guest in the cluster: reading them all again adds nothing.
		return nil
	}
	return r.checkAddressFree(ctx)
}

func (r *createRun) apiProblem(what string, err error) error {
	switch {
	case errors.Is(err, pve.ErrUnauthorized):
		return problemf(ErrPreflight, "PVE refused the API token (%v): check PVE_TOKEN_ID and the secret, and that the token is not expired", err)
	case errors.Is(err, pve.ErrForbidden):
		return problemf(ErrPreflight, "PVE denied %s (%v): grant the token the CloudPods role", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (r *createRun) checkTemplate(ctx context.Context) error {
	s := r.spec
	cfg, err := r.p.api.ContainerConfig(ctx, s.Node, s.Template)
	if errors.Is(err, pve.ErrNotFound) {
		return problemf(ErrPreflight, "template CT %d does not exist on node %s: pass --template with the golden template's VMID", s.Template, s.Node)
	}
	if err != nil {
		return r.apiProblem(fmt.Sprintf("read template CT %d", s.Template), err)
	}
	if cfg.Get("template") != "1" {
		return problemf(ErrPreflight, "CT %d is not a template: convert it in PVE (More > Convert to template) or pass --template with the golden template", s.Template)
	}
	r.cmode = cfg.Get("cmode")
	r.rootfsBytes = rootfsSize(cfg.Get("rootfs"))
	// The clone will carry the template's NIC options; configure reads the
	// clone's own net0, a dry run only has the template's.
	if n, err := netcfg.ParseNet0(cfg.Get("net0")); err == nil {
		r.cloned = n
	}
	tplStorage, _, _ := strings.Cut(cfg.Get("rootfs"), ":")
	if s.Linked && tplStorage != s.Storage {
		return problemf(ErrPreflight, "template CT %d is on storage %s, and a linked clone stays there: drop --linked or pass --storage %s", s.Template, tplStorage, tplStorage)
	}
	return nil
}

// checkExisting decides between a fresh create, a converging re-run and a
// refusal.
func (r *createRun) checkExisting(ctx context.Context) error {
	s := r.spec
	cfg, err := r.p.api.ContainerConfig(ctx, s.Node, s.VMID)
	if errors.Is(err, pve.ErrNotFound) {
		free, ferr := r.p.api.VMIDFree(ctx, s.VMID)
		if ferr != nil {
			return r.apiProblem(fmt.Sprintf("check VMID %d", s.VMID), ferr)
		}
		if !free {
			return problemf(ErrConflict, "VMID %d is taken by another guest in the cluster (a VM, or a CT on another node): pick another --vmid", s.VMID)
		}
		return nil
	}
	if err != nil {
		return r.apiProblem(fmt.Sprintf("read CT %d", s.VMID), err)
	}
	m, ok := ParseMarker(cfg.Get("description"))
	if !ok || !m.Owns(s.VMID) {
		return problemf(ErrConflict, "CT %d already exists and was not created by cloudpods: pick another --vmid", s.VMID)
	}
	if m.SpecHash != s.Hash() {
		return problemf(ErrConflict, "CT %d already exists with a different spec (%s): destroy it first or pass the spec it was created with", s.VMID, strings.Join(diffEssentials(m.Spec, s.essentials()), ", "))
	}
	r.existing = &cfg
	if m.RunID == r.runID {
		// An earlier attempt of this same run (a resumed service job) made
		// it: it is this run's to finish or to roll back.
		r.cloneTried, r.created = true, true
	}
	r.event(StepPreflight, PhaseInfo, fmt.Sprintf("CT %d exists with this spec (run %s): converging", s.VMID, m.RunID))
	return nil
}

func (r *createRun) checkStorage(ctx context.Context) error {
	s := r.spec
	need := r.rootfsBytes
	storages, err := r.p.api.Storages(ctx, s.Node)
	if err != nil {
		return r.apiProblem("list storages on "+s.Node, err)
	}
	for _, st := range storages {
		if st.ID != s.Storage {
			continue
		}
		if !st.Enabled || !st.Active {
			return problemf(ErrPreflight, "storage %s is not active on node %s: check it in PVE (Datacenter > Storage) or pass --storage", s.Storage, s.Node)
		}
		if !contains(st.Content, "rootdir") {
			return problemf(ErrPreflight, "storage %s does not hold container volumes (content %s): pass --storage with a rootdir storage such as clients-main", s.Storage, strings.Join(st.Content, ","))
		}
		if need > 0 && st.Avail < need {
			return problemf(ErrPreflight, "storage %s has %s free but the rootfs needs %s: free space or pass another --storage", s.Storage, humanBytes(st.Avail), humanBytes(need))
		}
		return nil
	}
	return problemf(ErrPreflight, "storage %s does not exist on node %s: pass --storage with one of the node's storages", s.Storage, s.Node)
}

func (r *createRun) checkBridge(ctx context.Context) error {
	ifs, err := r.p.api.NetworkInterfaces(ctx, r.spec.Node)
	if err != nil {
		return r.apiProblem("list network interfaces on "+r.spec.Node, err)
	}
	for _, i := range ifs {
		if i.Name == r.spec.Bridge && (i.Type == "bridge" || i.Type == "OVSBridge") {
			return nil
		}
	}
	return problemf(ErrPreflight, "bridge %s does not exist on node %s: pass --bridge with one of the node's bridges", r.spec.Bridge, r.spec.Node)
}

// checkAddressFree refuses an address any guest in the cluster already uses
// in its config, whoever set it.
func (r *createRun) checkAddressFree(ctx context.Context) error {
	used, err := addressHolders(ctx, r.p.api)
	if err != nil {
		return r.apiProblem("read the cluster's guest addresses", err)
	}
	if holder, ok := used[r.spec.IP]; ok && holder.VMID != r.spec.VMID {
		return problemf(ErrConflict, "IP %s is already used by %s: pick another --ip, or run `cloudpod ip next`", r.spec.IP, holder)
	}
	return nil
}

func (r *createRun) reserve(ctx context.Context) error {
	a := r.p.opts.Addresses
	if a == nil {
		r.skip(StepReserve, "no IPAM configured")
		return nil
	}
	if r.spec.VMID == 0 || !r.spec.IP.IsValid() {
		if err := r.adopt(ctx); err != nil {
			return err
		}
	}
	lease, err := a.Reserve(ctx, AddressRequest{Hostname: r.spec.Hostname, Tenant: r.spec.Tenant,
		Owner: LeaseOwner(r.spec.Tenant, r.spec.Hostname), IP: r.spec.IP, VMID: r.spec.VMID})
	if err != nil {
		return problemf(ErrConflict, "IPAM cannot reserve %s: %v", describeWant(r.spec), err)
	}
	r.lease = &lease
	r.spec.IP, r.spec.VMID = lease.IP, lease.VMID
	r.res.VMID = lease.VMID
	if err := r.netSpec().Validate(); err != nil {
		return problemf(ErrInvalidSpec, "%v", err)
	}
	return nil
}

// adopt finds the pod an earlier run of the same command made (it may have
// been killed before IPAM recorded it, or its reservation may have
// expired), so an auto VMID or IP re-run converges on it instead of
// creating a second pod. A pod of the same hostname and tenant with a
// different spec is a conflict.
func (r *createRun) adopt(ctx context.Context) error {
	s := r.spec
	guests, err := r.p.api.Guests(ctx)
	if err != nil {
		return r.apiProblem("list the cluster's guests", err)
	}
	for _, g := range guests {
		if g.Type != "lxc" || g.Name != s.Hostname || (s.VMID != 0 && g.VMID != s.VMID) {
			continue
		}
		cfg, err := r.p.api.ContainerConfig(ctx, g.Node, g.VMID)
		if errors.Is(err, pve.ErrNotFound) {
			continue
		}
		if err != nil {
			return r.apiProblem(fmt.Sprintf("read CT %d", g.VMID), err)
		}
		m, ok := ParseMarker(cfg.Get("description"))
		if !ok || !m.Owns(g.VMID) || m.Hostname != s.Hostname || m.Tenant != s.Tenant {
			continue
		}
		want := s
		want.VMID = g.VMID
		if !want.IP.IsValid() {
			if p, err := netip.ParsePrefix(m.Spec.Address); err == nil {
				want.IP = p.Addr()
			}
		}
		if m.SpecHash != want.Hash() {
			return problemf(ErrConflict, "%s is already CT %d, made by cloudpods with a different spec (%s): destroy it first or pass the spec it was created with",
				s.Hostname, g.VMID, strings.Join(diffEssentials(m.Spec, want.essentials()), ", "))
		}
		r.spec.VMID, r.spec.IP = want.VMID, want.IP
		r.event(StepReserve, PhaseInfo, fmt.Sprintf("%s is CT %d with %s from an earlier run (%s): converging on it", s.Hostname, want.VMID, want.IP, m.RunID))
		return nil
	}
	return nil
}

// clone makes the pod from the template: one clone of a source at a time in
// this process, PVE's lock errors (a clone by another process holds the
// template's disk lock) waited out, and an unknown outcome (596, dropped
// connection, timeout) settled by looking for this run's marker on the new
// id before anything is repeated.
func (r *createRun) clone(ctx context.Context) error {
	s := r.spec
	if r.existing != nil {
		r.skip(StepClone, fmt.Sprintf("CT %d already cloned", s.VMID))
		return r.waitUnlocked(ctx)
	}
	unlock, err := r.p.lockClone(ctx, s.Node, s.Template)
	if err != nil {
		return err
	}
	defer unlock()
	marker := newMarker(s, r.runID, r.p.opts.Now())
	r.cloneTried = true
	r.res.Changed = true
	upid, err := r.retry().Task(ctx, fmt.Sprintf("clone CT %d to %d", s.Template, s.VMID), func(ctx context.Context) (string, error) {
		upid, err := r.p.api.CloneContainer(ctx, s.Node, s.Template, pve.CloneOptions{
			NewID: s.VMID, Hostname: s.Hostname, Description: marker.Description(), Storage: s.Storage, Full: !s.Linked})
		if err == nil {
			r.created = true
			r.tasks = append(r.tasks, upid)
		}
		return upid, err
	}, func(ctx context.Context, upid string) error {
		_, err := r.p.wait(ctx, s.Node, upid)
		return err
	}, r.cloneDone)
	if err != nil {
		return err
	}
	r.created = true
	if upid == "" {
		// The POST's answer was lost but the clone is there: wait for its
		// lock to clear instead of for a task we have no id of.
		return r.waitUnlocked(ctx)
	}
	return nil
}

// cloneDone is the clone's already-done check: a CT at the new id carrying
// this run's marker is our clone. The same command's marker from another
// run means two runs race for one pod.
func (r *createRun) cloneDone(ctx context.Context, _ error) (bool, error) {
	s := r.spec
	cfg, err := r.p.api.ContainerConfig(ctx, s.Node, s.VMID)
	if errors.Is(err, pve.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	m, ok := ParseMarker(cfg.Get("description"))
	if ok && m.Owns(s.VMID) && m.RunID != r.runID && m.SpecHash == s.Hash() {
		return false, problemf(ErrConflict, "CT %d is being created by another run of the same command (run %s): let it finish, then run the command again", s.VMID, m.RunID)
	}
	return ok && m.RunID == r.runID, nil
}

// waitUnlocked waits for a clone that an earlier run started (or whose
// answer was lost) to finish: PVE clears 'lock: create' at the end.
func (r *createRun) waitUnlocked(ctx context.Context) error {
	err := r.p.waitNoLock(ctx, r.spec.Node, r.spec.VMID, r.p.opts.TaskTimeout)
	if errors.Is(err, pve.ErrNotFound) {
		return fmt.Errorf("CT %d disappeared while its clone finished (PVE removes a failed clone's target): run the command again", r.spec.VMID)
	}
	return err
}

// wantedConfig is the pod's config as create sets it: resources, net0
// (with the clone's MAC and NIC options), DNS and tags.
func (r *createRun) wantedConfig() map[string]string {
	s := r.spec
	want := map[string]string{
		"cores":  strconv.Itoa(s.Cores),
		"memory": strconv.Itoa(s.MemoryMB),
		"swap":   strconv.Itoa(s.SwapMB),
		"net0":   netcfg.BuildNet0(r.netSpec()),
		"tags":   tagString(r.tags()),
	}
	if len(s.DNS) > 0 {
		ns := make([]string, len(s.DNS))
		for i, d := range s.DNS {
			ns[i] = d.String()
		}
		want["nameserver"] = strings.Join(ns, " ")
	}
	if s.SearchDomain != "" {
		want["searchdomain"] = s.SearchDomain
	}
	return want
}

// configure sets resources, net0 (keeping the MAC PVE generated), DNS and
// tags, plus cmode=shell so the console gives a root shell for the push.
func (r *createRun) configure(ctx context.Context) error {
	s := r.spec
	cfg, err := r.p.api.ContainerConfig(ctx, s.Node, s.VMID)
	if err != nil {
		return err
	}
	if cur, perr := netcfg.ParseNet0(cfg.Get("net0")); perr == nil {
		r.hwaddr, r.cloned = cur.HWAddr, cur
	}
	want := r.wantedConfig()
	st, err := r.p.api.ContainerStatus(ctx, s.Node, s.VMID)
	if err != nil {
		return err
	}
	if st.Status != "running" {
		// cmode is not hot-pluggable: set it while stopped, so the first
		// console after start is a root shell.
		want["cmode"] = "shell"
	}
	upd := configChanges(cfg, want, nil)
	if upd == nil {
		r.skip(StepConfigure, "config already as wanted")
		return nil
	}
	r.res.Changed = true
	keys := make([]string, 0, len(upd.Set))
	for k := range upd.Set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	r.event(StepConfigure, PhaseInfo, "setting "+strings.Join(keys, ", "))
	return r.applyConfig(ctx, fmt.Sprintf("configure CT %d", s.VMID), cfg, want, nil, true)
}

// configChanges is the update that brings cfg to want (and removes the
// keys in del), with cfg's digest; nil when cfg is already there.
func configChanges(cfg pve.Config, want map[string]string, del []string) *pve.ConfigUpdate {
	upd := &pve.ConfigUpdate{Set: map[string]string{}, Digest: cfg.Digest}
	for k, v := range want {
		if !configEqual(k, cfg.Get(k), v) {
			upd.Set[k] = v
		}
	}
	for _, k := range del {
		if _, ok := cfg.Values[k]; ok {
			upd.Delete = append(upd.Delete, k)
		}
	}
	if len(upd.Set) == 0 && len(upd.Delete) == 0 {
		return nil
	}
	return upd
}

// applyConfig brings a CT's config to want. PUT …/config is synchronous
// but not idempotent with a digest, so an attempt whose outcome is unknown
// is settled by reading the config again: a retry computes its update, and
// digest, from what is there now. guarded sends the digest, so PVE refuses
// the update if someone changed the config since it was read.
func (r *createRun) applyConfig(ctx context.Context, what string, cfg pve.Config, want map[string]string, del []string, guarded bool) error {
	s := r.spec
	first := true
	current := func(ctx context.Context) (*pve.ConfigUpdate, error) {
		now := cfg
		if !first {
			var err error
			if now, err = r.p.api.ContainerConfig(ctx, s.Node, s.VMID); err != nil {
				return nil, err
			}
		}
		first = false
		upd := configChanges(now, want, del)
		if upd != nil && !guarded {
			upd.Digest = ""
		}
		return upd, nil
	}
	return r.retry().Do(ctx, what, func(ctx context.Context) error {
		upd, err := current(ctx)
		if err != nil || upd == nil {
			return err
		}
		return r.p.api.UpdateContainerConfig(ctx, s.Node, s.VMID, *upd)
	}, func(ctx context.Context, _ error) (bool, error) {
		upd, err := current(ctx)
		return upd == nil, err
	})
}

// configEqual compares a stored value with a wanted one, allowing for PVE's
// normalisation of net0 key order.
func configEqual(key, have, want string) bool {
	if key == "net0" {
		a, err1 := netcfg.ParseNet0(have)
		b, err2 := netcfg.ParseNet0(want)
		return err1 == nil && err2 == nil && a.String() == b.String()
	}
	return have == want
}

func (r *createRun) startCT(ctx context.Context) error {
	s := r.spec
	st, err := r.p.api.ContainerStatus(ctx, s.Node, s.VMID)
	if err != nil {
		return err
	}
	if st.Status == "running" {
		r.skip(StepStart, "already running")
		return nil
	}
	r.res.Changed = true
	_, err = r.retry().Task(ctx, fmt.Sprintf("start CT %d", s.VMID), func(ctx context.Context) (string, error) {
		upid, err := r.p.api.StartContainer(ctx, s.Node, s.VMID)
		if err == nil {
			r.tasks = append(r.tasks, upid)
		}
		return upid, err
	}, func(ctx context.Context, upid string) error {
		_, err := r.p.wait(ctx, s.Node, upid)
		return err
	}, func(ctx context.Context, _ error) (bool, error) {
		// A start whose answer was lost may still be booting the CT: give
		// its task a moment before starting again (a second start of a
		// booting CT fails as "already running", which this check also
		// settles).
		return r.runningSoon(ctx)
	})
	return err
}

// runningSoon reports whether the CT is running, or gets there within a
// start task's usual time.
func (r *createRun) runningSoon(ctx context.Context) (bool, error) {
	running := false
	err := pollUntil(ctx, 2*time.Second, func(ctx context.Context) (bool, error) {
		st, err := r.p.api.ContainerStatus(ctx, r.spec.Node, r.spec.VMID)
		running = err == nil && st.Status == "running"
		return running, err
	})
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return false, nil
	}
	return running, err
}

// inConsole attaches to the pod's console and runs fn there, as one
// operation: a console that fails to attach, or is lost mid-way, is
// attached again and fn runs again from the start (everything create runs
// in the pod is safe to repeat). It returns skipped=true, with a warning,
// when this PVE's console refuses tokens and no console login is
// configured: net0 still sets the address.
func (r *createRun) inConsole(ctx context.Context, step string, fn func(ctx context.Context, sh *shell) error) (skipped bool, err error) {
	s := r.spec
	err = r.retry().Do(ctx, fmt.Sprintf("%s in the console of CT %d", step, s.VMID), func(ctx context.Context) error {
		sh, done, err := r.p.attachShell(ctx, s.Node, s.VMID)
		if err != nil {
			return err
		}
		defer done()
		return fn(ctx, sh)
	}, nil)
	if errors.Is(err, pve.ErrConsoleRefusesTokens) {
		r.consoleRefused = true
		r.warn(step, fmt.Sprintf("%v: netplan was not pushed and in-container checks were skipped; relying on net0 (pass --console-user and --console-password-file to use a console login instead)", err))
		return true, nil
	}
	return false, err
}

// network pushes the netplan file rendered from the same spec as net0, so
// the template's leftover cloud-init netplan cannot win over PVE's
// eth0.network.
func (r *createRun) network(ctx context.Context) error {
	content, err := netcfg.RenderNetplan(r.netSpec())
	if err != nil {
		return err
	}
	inPlace := false
	_, err = r.inConsole(ctx, StepNetwork, func(ctx context.Context, sh *shell) error {
		if have, err := sh.fileSHA256(ctx, netcfg.NetplanPath); err != nil {
			return err
		} else if have == sha256Hex(content) {
			if inPlace, err = netplanInEffect(ctx, sh, r.spec); inPlace || err != nil {
				return err
			}
		}
		// Replacing the template's cloud-init leftover (rather than adding
		// a file beside it) is what keeps the template's address from
		// winning.
		if err := sh.writeFile(ctx, netcfg.NetplanPath, content, fmt.Sprintf("%o", netcfg.NetplanMode)); err != nil {
			return err
		}
		return applyNetplan(ctx, sh, r.spec, r.p.opts.VerifyTimeout)
	})
	if err == nil && inPlace {
		r.skip(StepNetwork, netcfg.NetplanPath+" already as wanted")
	} else if err == nil {
		r.res.Changed = true
	}
	return err
}

// verify checks the pod from outside (PVE's view of eth0) and from inside
// (route, gateway, resolver, services).
func (r *createRun) verify(ctx context.Context) error {
	s := r.spec
	want := s.Address().String()
	var last string
	err := pollUntil(ctx, r.p.opts.VerifyTimeout, func(ctx context.Context) (bool, error) {
		ifs, err := r.p.api.ContainerInterfaces(ctx, s.Node, s.VMID)
		if errors.Is(err, pve.ErrTransient) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		last = "no eth0"
		for _, i := range ifs {
			if i.Name == "eth0" {
				last = i.Inet
			}
		}
		return last == want, nil
	})
	switch {
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		if r.consoleRefused && last == s.TemplateIP.String()+"/"+strconv.Itoa(s.Subnet.Bits()) {
			return fmt.Errorf("eth0 of CT %d came up with the template's address %s, not %s: the template's %s overrides net0 and this PVE's console refuses API tokens, so it could not be replaced; pass --console-user and --console-password-file, or remove that file from the template", s.VMID, last, want, netcfg.NetplanPath)
		}
		return fmt.Errorf("eth0 of CT %d shows %q, not %s, after %s", s.VMID, last, want, r.p.opts.VerifyTimeout)
	case err != nil:
		return err
	}
	r.res.Checks = append(r.res.Checks, Check{Name: "eth0 address", OK: true, Detail: want})

	var checks []Check
	skipped, err := r.inConsole(ctx, StepVerify, func(ctx context.Context, sh *shell) error {
		var err error
		checks, err = inPodChecks(ctx, sh, s, r.req.Services)
		return err
	})
	if err != nil || skipped {
		return err
	}
	r.res.Checks = append(r.res.Checks, checks...)
	var failed []string
	for _, c := range checks {
		if !c.OK {
			if strings.HasPrefix(c.Name, "service ") {
				r.warn(StepVerify, c.Name+" is not active: "+c.Detail)
				continue
			}
			failed = append(failed, c.Name+" ("+c.Detail+")")
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("network inside CT %d is not working: %s", s.VMID, strings.Join(failed, "; "))
	}
	return nil
}

// inPodChecks runs the in-container checks shared by create and health.
func inPodChecks(ctx context.Context, sh *shell, s Spec, services []string) ([]Check, error) {
	var checks []Check
	out, code, err := sh.run(ctx, "ip -4 route show default")
	if err != nil {
		return checks, err
	}
	checks = append(checks, Check{Name: "default route", OK: code == 0 && strings.Contains(out, "via "+s.Gateway.String()), Detail: strings.TrimSpace(out)})
	out, code, err = sh.run(ctx, "ping -c 1 -W 2 "+s.Gateway.String())
	if err != nil {
		return checks, err
	}
	checks = append(checks, Check{Name: "gateway reachable", OK: code == 0, Detail: lastLine(out)})
	out, code, err = sh.run(ctx, "cat /etc/resolv.conf")
	if err != nil {
		return checks, err
	}
	resolverOK := code == 0
	for _, d := range s.DNS {
		resolverOK = resolverOK && strings.Contains(out, "nameserver "+d.String())
	}
	checks = append(checks, Check{Name: "resolver", OK: resolverOK, Detail: strings.Join(grepLines(out, "nameserver"), ", ")})
	for _, svc := range services {
		if !safeUnit.MatchString(svc) {
			continue
		}
		c, err := serviceCheck(ctx, sh, svc)
		if err != nil {
			return checks, err
		}
		checks = append(checks, c)
	}
	return checks, nil
}

// finalize marks the pod ready, restores the template's console mode and
// assigns the address in IPAM.
func (r *createRun) finalize(ctx context.Context) error {
	s := r.spec
	cfg, err := r.p.api.ContainerConfig(ctx, s.Node, s.VMID)
	if err != nil {
		return err
	}
	m, _ := ParseMarker(cfg.Get("description"))
	want := map[string]string{}
	var del []string
	if m.State != "ready" {
		m.State = "ready"
		want["description"] = m.Description()
	}
	if r.cmode == "" {
		del = []string{"cmode"}
	} else {
		want["cmode"] = r.cmode
	}
	if configChanges(cfg, want, del) != nil {
		r.res.Changed = true
		// Unguarded: the marker and cmode are ours alone to set.
		if err := r.applyConfig(ctx, fmt.Sprintf("mark CT %d ready", s.VMID), cfg, want, del, false); err != nil {
			return err
		}
	}
	if r.lease != nil {
		if err := r.p.opts.Addresses.Assign(ctx, *r.lease); err != nil {
			r.warn(StepFinalize, fmt.Sprintf("IPAM: marking %s assigned failed: %v", r.lease.IP, err))
		}
	}
	return nil
}

func describeWant(s Spec) string {
	ip, vmid := "the next free address", "the next free VMID"
	if s.IP.IsValid() {
		ip = s.IP.String()
	}
	if s.VMID != 0 {
		vmid = "VMID " + strconv.Itoa(s.VMID)
	}
	return ip + " and " + vmid + " for " + s.Hostname
}
