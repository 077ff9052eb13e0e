package provisioner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// DestroyRequest is one destroy.
type DestroyRequest struct {
	Node string
	VMID int
	// Force must be set: destroy refuses without it (the CLI asks, or
	// takes --yes).
	Force bool
	// IgnoreOwnership allows destroying a guest without our marker.
	IgnoreOwnership bool
	// IfExists makes a missing guest a success.
	IfExists bool
	// BackupFirst takes a vzdump to BackupStorage before destroying.
	BackupFirst   bool
	BackupStorage string
	// ShutdownTimeout is how long a clean shutdown may take before stop.
	ShutdownTimeout time.Duration
	Requester       string
	Reporter        Reporter
}

// DestroyResult reports what destroy found and did.
type DestroyResult struct {
	VMID      int      `json:"vmid"`
	Hostname  string   `json:"hostname,omitempty"`
	IP        string   `json:"ip,omitempty"`
	Node      string   `json:"node"`
	Existed   bool     `json:"existed"`
	Backups   []string `json:"backups,omitempty"`
	Snapshots []string `json:"snapshots,omitempty"`
	BackupID  string   `json:"backup,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
}

// Inspect reads what destroy would remove: the guest's identity, backups
// and snapshots. The CLI shows it before asking for confirmation.
func (p *Provisioner) Inspect(ctx context.Context, node string, vmid int) (DestroyResult, pve.Config, error) {
	res := DestroyResult{VMID: vmid, Node: node}
	cfg, err := p.api.ContainerConfig(ctx, node, vmid)
	if err != nil {
		return res, cfg, err
	}
	res.Existed = true
	res.Hostname = cfg.Get("hostname")
	res.IP = configIP(cfg)
	if snaps, err := p.api.Snapshots(ctx, node, vmid); err == nil {
		for _, s := range snaps {
			res.Snapshots = append(res.Snapshots, s.Name)
		}
	}
	res.Backups = p.backupsOf(ctx, node, vmid)
	return res, cfg, nil
}

func (p *Provisioner) backupsOf(ctx context.Context, node string, vmid int) []string {
	var out []string
	storages, err := p.api.Storages(ctx, node)
	if err != nil {
		return nil
	}
	for _, st := range storages {
		if !contains(st.Content, "backup") || !st.Active {
			continue
		}
		vols, err := p.api.StorageContent(ctx, node, st.ID, "backup")
		if err != nil {
			continue
		}
		for _, v := range vols {
			if v.VMID == vmid {
				out = append(out, v.VolID)
			}
		}
	}
	return out
}

// Destroy removes a CloudPod safely: refuses what is not ours, the template
// and system ids; shuts down (then stops); waits for locks; deletes with
// purge; releases its address.
func (p *Provisioner) Destroy(ctx context.Context, req DestroyRequest) (DestroyResult, error) {
	start := p.opts.Now()
	res, err := p.destroy(ctx, req)
	p.audit("destroy", Spec{VMID: req.VMID, Hostname: res.Hostname, Node: req.Node, IP: parseAddr(res.IP)}, req.Requester, start, err)
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
	if req.VMID < 100 {
		return DestroyResult{VMID: req.VMID}, problemf(ErrRefused, "VMID %d is below 100, reserved by PVE: destroy refuses it", req.VMID)
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
		return res, problemf(ErrRefused, "CT %d is a template: destroy refuses templates (remove it in PVE if you really mean to)", req.VMID)
	}
	m, ours := ParseMarker(cfg.Get("description"))
	if (!ours || !m.Owns(req.VMID)) && !req.IgnoreOwnership {
		return res, problemf(ErrRefused, "CT %d (%s) was not created by cloudpods: destroy refuses it (pass --ignore-ownership if you are sure)", req.VMID, res.Hostname)
	}
	if !req.Force {
		return res, problemf(ErrRefused, "destroying CT %d (%s, %s) needs --force (and --yes when not on a terminal)", req.VMID, res.Hostname, res.IP)
	}
	if cfg.Get("protection") == "1" {
		return res, problemf(ErrRefused, "CT %d has protection mode on: turn it off in PVE (Options > Protection) first, then destroy", req.VMID)
	}
	if len(res.Backups) > 0 || len(res.Snapshots) > 0 {
		msg := fmt.Sprintf("CT %d has %d backup(s) and %d snapshot(s); backups are kept, snapshots go with the CT", req.VMID, len(res.Backups), len(res.Snapshots))
		res.Warnings = append(res.Warnings, msg)
		ev("inspect", PhaseWarn, msg)
	}
	if req.BackupFirst {
		ev("backup", PhaseStart, "")
		b, err := p.Backup(ctx, BackupRequest{Node: req.Node, VMID: req.VMID, Storage: req.BackupStorage, Requester: req.Requester})
		if err != nil {
			return res, &StepError{Step: "backup", VMID: req.VMID, Err: err}
		}
		res.BackupID = b.VolID
		ev("backup", PhaseDone, b.VolID)
	}
	ev("stop", PhaseStart, "")
	if err := p.powerOff(ctx, req.Node, req.VMID, req.ShutdownTimeout); err != nil {
		return res, &StepError{Step: "stop", VMID: req.VMID, Err: err}
	}
	ev("stop", PhaseDone, "")
	ev("delete", PhaseStart, "")
	if err := p.deleteGuest(ctx, req.Node, req.VMID); err != nil {
		return res, &StepError{Step: "delete", VMID: req.VMID, Err: err}
	}
	ev("delete", PhaseDone, "")
	if a := p.opts.Addresses; a != nil && res.IP != "" {
		if err := a.Release(ctx, AddressLease{IP: parseAddr(res.IP), VMID: req.VMID, Hostname: res.Hostname}); err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("IPAM: releasing %s failed: %v", res.IP, err))
		}
	}
	return res, nil
}

// powerOff shuts a running CT down cleanly, then stops it if the shutdown
// does not finish in time, and waits until no lock remains.
func (p *Provisioner) powerOff(ctx context.Context, node string, vmid int, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	st, err := p.api.ContainerStatus(ctx, node, vmid)
	if err != nil {
		return err
	}
	if st.Status == "running" {
		err := p.opts.Retry.Do(ctx, fmt.Sprintf("shut down CT %d", vmid), func(ctx context.Context) error {
			upid, err := p.api.ShutdownContainer(ctx, node, vmid, timeout, true)
			if err != nil {
				return err
			}
			_, err = p.wait(ctx, node, upid)
			return err
		}, func(ctx context.Context, _ error) (bool, error) {
			st, err := p.api.ContainerStatus(ctx, node, vmid)
			return err == nil && st.Status == "stopped", err
		})
		if err != nil && !isNotRunning(err) {
			return err
		}
	}
	return p.waitNoLock(ctx, node, vmid)
}

func isNotRunning(err error) bool { return strings.Contains(err.Error(), "not running") }

func (p *Provisioner) waitNoLock(ctx context.Context, node string, vmid int) error {
	ctx, cancel := context.WithTimeout(ctx, p.opts.TaskTimeout)
	defer cancel()
	delay := 50 * time.Millisecond
	for {
		cfg, err := p.api.ContainerConfig(ctx, node, vmid)
		if err != nil {
			return err
		}
		if cfg.Get("lock") == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("CT %d stayed locked (%s): %w", vmid, cfg.Get("lock"), ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Second)
	}
}

// deleteGuest is PVE's DELETE with purge (removes it from HA, jobs and
// pools) and the unreferenced disks, retried on locks; a lost answer is
// settled by checking whether the CT is gone.
func (p *Provisioner) deleteGuest(ctx context.Context, node string, vmid int) error {
	return p.opts.Retry.Do(ctx, fmt.Sprintf("delete CT %d", vmid), func(ctx context.Context) error {
		upid, err := p.api.DeleteContainer(ctx, node, vmid, pve.DeleteOptions{Purge: true, DestroyUnreferencedDisks: true})
		if err != nil {
			if errors.Is(err, pve.ErrNotFound) {
				return nil
			}
			return err
		}
		_, err = p.wait(ctx, node, upid)
		return err
	}, func(ctx context.Context, _ error) (bool, error) {
		_, err := p.api.ContainerConfig(ctx, node, vmid)
		if errors.Is(err, pve.ErrNotFound) {
			return true, nil
		}
		return false, err
	})
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
	if err := p.waitNoLock(ctx, node, vmid); err != nil {
		return err
	}
	st, err := p.api.ContainerStatus(ctx, node, vmid)
	if err != nil {
		return err
	}
	if st.Status == "running" {
		upid, err := p.api.StopContainer(ctx, node, vmid)
		if err != nil && !isNotRunning(err) {
			return err
		}
		if err == nil {
			if _, err := p.wait(ctx, node, upid); err != nil {
				return err
			}
		}
	}
	return p.deleteGuest(ctx, node, vmid)
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
