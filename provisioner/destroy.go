package provisioner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/ipam"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// DestroyRequest is one destroy.
type DestroyRequest struct {
	Node string
	VMID int
	// Force must be set: destroy refuses without it (the CLI asks, or
	// takes --yes).
	Force bool
	// Confirm, when set, is asked once every safety rule has passed and
	// before anything changes; an error aborts the destroy untouched. The
	// CLI prompts on a terminal here.
	Confirm func(ctx context.Context, pod DestroyResult) error
	// IgnoreOwnership allows destroying a guest without our marker.
	IgnoreOwnership bool
	// IfExists makes a missing guest a success.
	IfExists bool
	// BackupFirst takes a vzdump to BackupStorage before destroying.
	BackupFirst   bool
	BackupStorage string
	// ShutdownTimeout is how long a clean shutdown may take before PVE
	// stops the CT hard; 0 means 60 s.
	ShutdownTimeout time.Duration
	// LockWait bounds waiting for another task's lock (a running backup,
	// a snapshot) to go away; 0 means 2 minutes.
	LockWait time.Duration
	// Template is the golden template's VMID, refused even if its
	// template flag were cleared; 0 means DefaultSpec's.
	Template  int
	Requester string
	Reporter  Reporter
}

// DestroyResult reports what destroy found and did.
type DestroyResult struct {
	VMID     int    `json:"vmid"`
	Hostname string `json:"hostname,omitempty"`
	IP       string `json:"ip,omitempty"`
	Tenant   string `json:"tenant,omitempty"`
	Node     string `json:"node"`
	// Status, Lock and HA are PVE's view when the guest was inspected.
	Status    string   `json:"status,omitempty"`
	Lock      string   `json:"lock,omitempty"`
	HA        bool     `json:"ha_managed,omitempty"`
	Protected bool     `json:"protected,omitempty"`
	Existed   bool     `json:"existed"`
	Destroyed bool     `json:"destroyed"`
	Backups   []string `json:"backups,omitempty"`
	Snapshots []string `json:"snapshots,omitempty"`
	// BackupID is the archive --backup-first made.
	BackupID string `json:"backup,omitempty"`
	// Released is the address given back to IPAM.
	Released string   `json:"released_ip,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// Inspect reads what destroy would remove: the guest's identity, state,
// backups and snapshots. The CLI shows it before asking for confirmation.
func (p *Provisioner) Inspect(ctx context.Context, node string, vmid int) (DestroyResult, pve.Config, error) {
	res := DestroyResult{VMID: vmid, Node: node}
	cfg, err := p.api.ContainerConfig(ctx, node, vmid)
	if err != nil {
		return res, cfg, err
	}
	res.Existed = true
	res.Hostname = cfg.Get("hostname")
	res.IP = configIP(cfg)
	res.Lock = cfg.Get("lock")
	res.Protected = cfg.Get("protection") == "1"
	if m, ok := ParseMarker(cfg.Get("description")); ok && m.Owns(vmid) {
		res.Tenant = m.Tenant
	}
	st, err := p.api.ContainerStatus(ctx, node, vmid)
	if err != nil {
		return res, cfg, fmt.Errorf("status of CT %d: %w", vmid, err)
	}
	res.Status, res.HA = st.Status, st.HA
	if snaps, err := p.api.Snapshots(ctx, node, vmid); err == nil {
		for _, s := range snaps {
			res.Snapshots = append(res.Snapshots, s.Name)
		}
	}
	res.Backups = p.backupsOf(ctx, node, vmid)
	return res, cfg, nil
}

// backupsOf lists the archives of vmid on the node's backup storages, best
// effort: they are shown as a warning, never destroyed.
func (p *Provisioner) backupsOf(ctx context.Context, node string, vmid int) []string {
	backups, err := p.Backups(ctx, node, vmid)
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(backups))
	for _, b := range backups {
		out = append(out, b.VolID)
	}
	return out
}

// Destroy removes a CloudPod safely: refuses what is not ours, the template
// and system ids; shuts down (then stops); waits for locks; deletes with
// purge; releases its address.
func (p *Provisioner) Destroy(ctx context.Context, req DestroyRequest) (DestroyResult, error) {
	start := p.opts.Now()
	res, err := p.destroy(ctx, req)
	p.audit("destroy", Spec{VMID: req.VMID, Hostname: res.Hostname, Node: req.Node, IP: parseAddr(res.IP), Tenant: res.Tenant},
		req.Requester, start, err)
	return res, err
}

func (p *Provisioner) destroy(ctx context.Context, req DestroyRequest) (DestroyResult, error) {
	rep := req.Reporter
	if rep == nil {
		rep = nopReporter{}
	}
	ev := func(step string, ph Phase, msg string) {
		rep.Report(Event{Time: p.opts.Now(), VMID: req.VMID, Step: step, Phase: ph, Message: msg})
	}
	if req.Template == 0 {
		req.Template = DefaultSpec().Template
	}
	if req.ShutdownTimeout <= 0 {
		req.ShutdownTimeout = 60 * time.Second
	}
	if req.LockWait <= 0 {
		req.LockWait = 2 * time.Minute
	}
	res := DestroyResult{VMID: req.VMID, Node: req.Node}
	if req.VMID < 100 {
		return res, problemf(ErrRefused, "VMID %d is below 100, reserved by PVE: destroy refuses it", req.VMID)
	}
	if req.VMID == req.Template {
		return res, problemf(ErrRefused, "CT %d is the golden template: destroy refuses it", req.VMID)
	}
	res, cfg, err := p.Inspect(ctx, req.Node, req.VMID)
	if errors.Is(err, pve.ErrNotFound) {
		if req.IfExists {
			ev("destroy", PhaseSkip, fmt.Sprintf("CT %d does not exist", req.VMID))
			return res, nil
		}
		return res, problemf(ErrPreflight, "CT %d does not exist on node %s: nothing to destroy (pass --if-exists to make that a success)", req.VMID, req.Node)
	}
	if err != nil {
		return res, fmt.Errorf("read CT %d: %w", req.VMID, err)
	}
	if cfg.Get("template") == "1" {
		return res, problemf(ErrRefused, "CT %d (%s) is a template: destroy refuses templates", req.VMID, res.Hostname)
	}
	m, ours := ParseMarker(cfg.Get("description"))
	ours = ours && m.Owns(req.VMID)
	if !ours && !req.IgnoreOwnership {
		return res, problemf(ErrRefused, "CT %d (%s) was not created by cloudpods (no ownership marker): destroy refuses it (pass --ignore-ownership if you are sure)", req.VMID, res.Hostname)
	}
	if !req.Force {
		return res, problemf(ErrRefused, "destroying CT %d (%s, %s) needs --force", req.VMID, res.Hostname, orNone(res.IP))
	}
	if res.Protected {
		return res, problemf(ErrRefused, "CT %d (%s) has protection mode on: turn it off in PVE (Options > Protection) first, then destroy", req.VMID, res.Hostname)
	}
	if len(res.Backups) > 0 || len(res.Snapshots) > 0 {
		msg := fmt.Sprintf("CT %d has %s (kept) and %s (deleted with the CT)", req.VMID,
			listed("backup", res.Backups), listed("snapshot", res.Snapshots))
		res.Warnings = append(res.Warnings, msg)
		ev("inspect", PhaseWarn, msg)
	}
	if res.HA {
		msg := fmt.Sprintf("CT %d is HA-managed: PVE's HA manager stops it and purge removes it from the HA resources", req.VMID)
		res.Warnings = append(res.Warnings, msg)
		ev("inspect", PhaseWarn, msg)
	}
	if req.Confirm != nil {
		if err := req.Confirm(ctx, res); err != nil {
			return res, err
		}
	}

	if req.BackupFirst {
		ev("backup", PhaseStart, "")
		b, err := p.Backup(ctx, BackupRequest{Node: req.Node, VMID: req.VMID, Storage: req.BackupStorage, LockWait: req.LockWait, Requester: req.Requester})
		if err != nil {
			ev("backup", PhaseFail, err.Error())
			return res, &StepError{Step: "backup", VMID: req.VMID, Err: err, RolledBack: "nothing was destroyed"}
		}
		res.BackupID = b.VolID
		ev("backup", PhaseDone, fmt.Sprintf("%s (%s)", b.VolID, humanBytes(b.Size)))
	}

	ev("shutdown", PhaseStart, "")
	warn := func(msg string) {
		res.Warnings = append(res.Warnings, msg)
		ev("shutdown", PhaseWarn, msg)
	}
	err = p.powerOff(ctx, req.Node, req.VMID, req.ShutdownTimeout, req.LockWait, warn)
	if err != nil && !errors.Is(err, pve.ErrNotFound) {
		ev("shutdown", PhaseFail, err.Error())
		return res, &StepError{Step: "shutdown", VMID: req.VMID, Err: err}
	}
	ev("shutdown", PhaseDone, "")

	ev("delete", PhaseStart, "")
	if err := p.deleteGuest(ctx, req.Node, req.VMID, req.LockWait); err != nil {
		ev("delete", PhaseFail, err.Error())
		return res, &StepError{Step: "delete", VMID: req.VMID, Err: err}
	}
	res.Destroyed = true
	ev("delete", PhaseDone, "")

	if ip := leasedAddr(m, ours, res.IP); p.opts.Addresses != nil && ip.IsValid() {
		err := p.opts.Addresses.Release(ctx, AddressLease{IP: ip, VMID: req.VMID, Hostname: res.Hostname})
		switch {
		case err == nil:
			res.Released = ip.String()
			ev("release", PhaseDone, ip.String())
		case errors.Is(err, ipam.ErrNotFound):
			ev("release", PhaseSkip, fmt.Sprintf("IPAM holds no lease for %s", ip))
		default:
			msg := fmt.Sprintf("IPAM: releasing %s failed: %v (free it with: cloudpod ip release %s)", ip, err, ip)
			res.Warnings = append(res.Warnings, msg)
			ev("release", PhaseWarn, msg)
		}
	}
	return res, nil
}

// leasedAddr is the address IPAM handed out for the pod: the one its marker
// records (net0 may have been edited since), else net0's.
func leasedAddr(m Marker, ours bool, configured string) netip.Addr {
	if ours {
		if pfx, err := netip.ParsePrefix(m.Spec.Address); err == nil {
			return pfx.Addr()
		}
	}
	return parseAddr(configured)
}

func listed(what string, names []string) string {
	switch len(names) {
	case 0:
		return "no " + what + "s"
	case 1:
		return "1 " + what + " (" + names[0] + ")"
	}
	return fmt.Sprintf("%d %ss (%s)", len(names), what, strings.Join(names, ", "))
}

func orNone(s string) string {
	if s == "" {
		return "no address"
	}
	return s
}

// powerOff shuts a running CT down cleanly (PVE stops it hard once timeout
// passes), falls back to a stop when the shutdown fails, and waits until
// it is stopped and no lock remains.
func (p *Provisioner) powerOff(ctx context.Context, node string, vmid int, timeout, lockWait time.Duration, warn func(string)) error {
	if err := p.waitNoLock(ctx, node, vmid, lockWait); err != nil {
		return err
	}
	st, err := p.api.ContainerStatus(ctx, node, vmid)
	if err != nil {
		return err
	}
	if st.Status != "running" {
		return nil
	}
	err = p.powerTask(ctx, node, vmid, "shut down", func(ctx context.Context) (string, error) {
		return p.api.ShutdownContainer(ctx, node, vmid, timeout, true)
	})
	if err != nil {
		if errors.Is(err, pve.ErrNotFound) {
			return err
		}
		warn(fmt.Sprintf("clean shutdown of CT %d failed (%v): stopping it", vmid, err))
		if err := p.powerTask(ctx, node, vmid, "stop", func(ctx context.Context) (string, error) {
			return p.api.StopContainer(ctx, node, vmid)
		}); err != nil {
			return err
		}
	}
	// An HA-managed CT's hastop task ends once the request is queued; the
	// HA manager stops the CT afterwards, within its own timeout.
	if err := p.waitStopped(ctx, node, vmid, timeout+haStopGrace); err != nil {
		return err
	}
	return p.waitNoLock(ctx, node, vmid, lockWait)
}

// haStopGrace is how long past the shutdown timeout the HA manager may
// take to act on a stop request.
const haStopGrace = time.Minute

// powerTask runs a stop-like call and waits for its task, retrying
// transient refusals; "not running" counts as done.
func (p *Provisioner) powerTask(ctx context.Context, node string, vmid int, what string, call func(ctx context.Context) (string, error)) error {
	return p.opts.Retry.Do(ctx, fmt.Sprintf("%s CT %d", what, vmid), func(ctx context.Context) error {
		upid, err := call(ctx)
		if err == nil {
			_, err = p.wait(ctx, node, upid)
		}
		if err != nil && isNotRunning(err) {
			return nil
		}
		return err
	}, func(ctx context.Context, _ error) (bool, error) {
		st, err := p.api.ContainerStatus(ctx, node, vmid)
		return err == nil && st.Status == "stopped", err
	})
}

func isNotRunning(err error) bool { return strings.Contains(err.Error(), "not running") }

func (p *Provisioner) waitStopped(ctx context.Context, node string, vmid int, limit time.Duration) error {
	var status string
	err := pollUntil(ctx, limit, func(ctx context.Context) (bool, error) {
		st, err := p.api.ContainerStatus(ctx, node, vmid)
		status = st.Status
		return err == nil && st.Status == "stopped", err
	})
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return fmt.Errorf("CT %d is still %s %s after it was told to stop: %w", vmid, status, limit, pve.ErrWaitTimeout)
	}
	return err
}

// waitNoLock waits until the CT's config carries no lock, for at most limit.
func (p *Provisioner) waitNoLock(ctx context.Context, node string, vmid int, limit time.Duration) error {
	var lock string
	err := pollUntil(ctx, limit, func(ctx context.Context) (bool, error) {
		cfg, err := p.api.ContainerConfig(ctx, node, vmid)
		lock = cfg.Get("lock")
		return err == nil && lock == "", err
	})
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return fmt.Errorf("CT %d is still locked (%s) after %s: %s: %w", vmid, lock, limit, lockAdvice(vmid, lock), pve.ErrWaitTimeout)
	}
	return err
}

// lockAdvice says what holds a PVE guest lock and what to do about it.
func lockAdvice(vmid int, lock string) string {
	stale := fmt.Sprintf("if no such task is running (node > Task History), the lock is stale: clear it on the node with 'pct unlock %d'", vmid)
	switch lock {
	case "backup":
		return "a backup (vzdump) is running; wait for it to finish, or " + stale
	case "snapshot", "snapshot-delete", "rollback":
		return "a snapshot task is running; " + stale
	case "migrate":
		return "a migration is running; " + stale
	case "create", "disk", "clone":
		return "a clone or create is running or crashed; " + stale
	}
	return "another PVE task holds it; " + stale
}

// deleteGuest is PVE's DELETE with purge (removes it from HA, replication
// jobs and pools) and destroy-unreferenced-disks, retried on locks. A lost
// answer or a failed task is settled by checking whether the CT is gone: a
// repeated DELETE racing the first one fails with "does not exist".
func (p *Provisioner) deleteGuest(ctx context.Context, node string, vmid int, lockWait time.Duration) error {
	gone := func(ctx context.Context) (bool, error) {
		_, err := p.api.ContainerConfig(ctx, node, vmid)
		if errors.Is(err, pve.ErrNotFound) {
			return true, nil
		}
		return false, err
	}
	attempt := func() error {
		return p.opts.Retry.Do(ctx, fmt.Sprintf("delete CT %d", vmid), func(ctx context.Context) error {
			upid, err := p.api.DeleteContainer(ctx, node, vmid, pve.DeleteOptions{Purge: true, DestroyUnreferencedDisks: true})
			if errors.Is(err, pve.ErrNotFound) {
				return nil
			}
			if err == nil {
				_, err = p.wait(ctx, node, upid)
			}
			if err != nil && !errors.Is(err, pve.ErrMaybeApplied) {
				if g, gerr := gone(ctx); gerr == nil && g {
					return nil
				}
			}
			return err
		}, func(ctx context.Context, _ error) (bool, error) { return gone(ctx) })
	}
	err := attempt()
	if err == nil || !errors.Is(err, pve.ErrLocked) {
		return err
	}
	// The retries ran out on a lock: wait for it as shutdown does, then
	// try once more.
	if werr := p.waitNoLock(ctx, node, vmid, lockWait); werr != nil {
		return werr
	}
	return attempt()
}

// removeGuest is rollback: only a CT whose marker carries runID goes.
func (p *Provisioner) removeGuest(ctx context.Context, node string, vmid int, runID string) error {
	cfg, err := p.api.ContainerConfig(ctx, node, vmid)
	if errors.Is(err, pve.ErrNotFound) {
		return nil // PVE already removed a failed clone's target
	}
	if err != nil {
		return err
	}
	if m, ok := ParseMarker(cfg.Get("description")); !ok || m.RunID != runID || !m.Owns(vmid) {
		return fmt.Errorf("CT %d does not carry this run's marker: left untouched", vmid)
	}
	if err := p.waitNoLock(ctx, node, vmid, p.opts.TaskTimeout); err != nil {
		return err
	}
	if err := p.powerTask(ctx, node, vmid, "stop", func(ctx context.Context) (string, error) {
		return p.api.StopContainer(ctx, node, vmid)
	}); err != nil {
		return err
	}
	return p.deleteGuest(ctx, node, vmid, p.opts.TaskTimeout)
}

// configIP is the address of net0 in a CT config, "" when static-less.
func configIP(cfg pve.Config) string {
	for _, kv := range strings.Split(cfg.Get("net0"), ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == "ip" {
			if a, _, ok := strings.Cut(v, "/"); ok {
				return a
			}
			return v
		}
	}
	return ""
}
