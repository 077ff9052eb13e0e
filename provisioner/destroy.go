package provisioner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/ipam"
	"github.com/migrahosting/cloudpods/provisioner/flow"
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
	VMID int `json:"vmid"`
	// Kind is the guest's: lxc (a CloudPod, a CT) or qemu (a VM).
	Kind     pve.GuestKind `json:"-"`
	Hostname string        `json:"hostname,omitempty"`
	IP       string        `json:"ip,omitempty"`
	Tenant   string        `json:"tenant,omitempty"`
	Node     string        `json:"node"`
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
	// Config is the guest's config as PVE holds it (show prints it).
	Config pve.Config `json:"-"`
	// Marker is the guest's cloudpods marker, nil when it carries none of
	// its own: then cloudpods did not create it.
	Marker *Marker `json:"-"`
}

// Inspect reads what destroy would remove: the guest's identity, state,
// config, marker, backups and snapshots. The CLI shows it before asking for
// confirmation; the service tells a CloudPod from other guests by it.
func (p *Provisioner) Inspect(ctx context.Context, node string, vmid int) (DestroyResult, error) {
	res := DestroyResult{VMID: vmid, Node: node, Kind: pve.LXC}
	g, cfg, err := p.findGuest(ctx, node, vmid)
	res.Node, res.Kind = g.Node, g.Kind
	if err != nil {
		return res, err
	}
	node = g.Node
	res.Existed, res.Config, res.Kind = true, cfg, g.Kind
	res.Hostname = guestName(g, cfg)
	res.IP = guestIP(g, cfg)
	res.Lock = cfg.Get("lock")
	res.Protected = cfg.Get("protection") == "1"
	if m, ok := ParseMarker(cfg.Get("description")); ok && m.Owns(vmid) {
		res.Tenant, res.Marker = m.Tenant, &m
	}
	st, err := p.api.GuestStatus(ctx, g)
	if err != nil {
		return res, fmt.Errorf("status of %s: %w", g, err)
	}
	res.Status, res.HA = st.Status, st.HA
	if snaps, err := p.api.Snapshots(ctx, g); err == nil {
		for _, s := range snaps {
			res.Snapshots = append(res.Snapshots, s.Name)
		}
	}
	res.Backups = p.backupsOf(ctx, node, vmid)
	return res, nil
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

// Steps of destroy, in order; backup runs only with BackupFirst.
const (
	StepInspect  = "inspect"
	StepBackup   = "backup"
	StepShutdown = "shutdown"
	StepDelete   = "delete"
	StepRelease  = "release"
)

// destroyRun is the state of one destroy.
type destroyRun struct {
	p   *Provisioner
	req DestroyRequest
	g   pve.GuestRef
	run *flow.Run
	res DestroyResult
	// ip is the address IPAM handed out for the pod.
	ip netip.Addr
	// others are the guest's other static addresses (a second NIC's): a
	// CT or VM made by ct/vm create holds a lease for each in IPAM's pool.
	others []netip.Addr
}

// Destroy removes a CloudPod safely: refuses what is not ours, the template
// and system ids; shuts down (then stops); waits for locks; deletes with
// purge; releases its address.
func (p *Provisioner) Destroy(ctx context.Context, req DestroyRequest) (DestroyResult, error) {
	if req.Template == 0 {
		req.Template = DefaultSpec().Template
	}
	if req.ShutdownTimeout <= 0 {
		req.ShutdownTimeout = 60 * time.Second
	}
	if req.LockWait <= 0 {
		req.LockWait = 2 * time.Minute
	}
	d := &destroyRun{p: p, req: req, g: pve.CT(req.Node, req.VMID), res: DestroyResult{VMID: req.VMID, Node: req.Node}}
	d.run = p.newRun(flow.Options{Kind: pve.LXC, VMID: func() int { return req.VMID }, Reporter: req.Reporter,
		UndoBudget: p.opts.TaskTimeout + time.Minute, Nothing: "nothing was destroyed",
		Audit: func(err error, took time.Duration) {
			p.audit("destroy", Spec{VMID: req.VMID, Hostname: d.res.Hostname, Node: d.res.Node, IP: parseAddr(d.res.IP), Tenant: d.res.Tenant},
				req.Requester, took, err)
		}})
	steps := []flow.Step{
		{Name: StepInspect, ReadOnly: true, Run: d.inspect},
		{Name: StepBackup, Check: d.gone, Run: d.backup},
		{Name: StepShutdown, Check: d.gone, Run: d.shutdown},
		{Name: StepDelete, Check: d.gone, Run: d.delete},
		{Name: StepRelease, Check: d.nothingLeased, Run: d.release},
	}
	if !req.BackupFirst {
		steps = append(steps[:1], steps[2:]...)
	}
	err := d.run.Execute(ctx, steps)
	d.res.Warnings = d.run.Warnings()
	return d.res, err
}

// inspect applies the safety rules, reads what destroy will remove, warns
// about what goes with it and asks for confirmation; it changes nothing.
func (d *destroyRun) inspect(ctx context.Context) error {
	req := d.req
	if req.VMID < 100 {
		return problemf(ErrRefused, "VMID %d is below 100, reserved by PVE: destroy refuses it", req.VMID)
	}
	if req.VMID == req.Template {
		return problemf(ErrRefused, "CT %d is the golden template: destroy refuses it", req.VMID)
	}
	res, err := d.p.Inspect(ctx, req.Node, req.VMID)
	d.res = res
	d.req.Node = res.Node // where the guest is, when no node was given
	d.g = pve.GuestRef{Kind: res.Kind, Node: res.Node, VMID: req.VMID}
	d.run.SetKind(res.Kind)
	if errors.Is(err, pve.ErrNotFound) {
		if req.IfExists {
			return nil // every step after this one finds its work done
		}
		return problemf(ErrPreflight, "CT %d does not exist %s: nothing to destroy (pass --if-exists to make that a success)", req.VMID, whereText(res.Node))
	}
	if errors.Is(err, ErrNodeDown) {
		return problemf(ErrPreflight, "%v: PVE cannot destroy it until the node is back", err)
	}
	if err != nil {
		return fmt.Errorf("read CT %d: %w", req.VMID, err)
	}
	if res.Config.Get("template") == "1" {
		return problemf(ErrRefused, "%s (%s) is a template: destroy refuses templates", d.g, res.Hostname)
	}
	if res.Marker == nil && !req.IgnoreOwnership {
		return problemf(ErrRefused, "%s (%s) was not created by cloudpods (no ownership marker): destroy refuses it (pass --ignore-ownership if you are sure)", d.g, res.Hostname)
	}
	if !req.Force {
		return problemf(ErrRefused, "destroying %s (%s, %s) needs --force", d.g, res.Hostname, orNone(res.IP))
	}
	if res.Protected {
		return problemf(ErrRefused, "%s (%s) has protection mode on: turn it off in PVE (Options > Protection) first, then destroy", d.g, res.Hostname)
	}
	if len(res.Backups) > 0 || len(res.Snapshots) > 0 {
		d.run.Warn(fmt.Sprintf("%s has %s (kept) and %s (deleted with the %s)", d.g,
			listed("backup", res.Backups), listed("snapshot", res.Snapshots), d.g.Kind.Noun()))
	}
	if res.HA {
		d.run.Warn(fmt.Sprintf("%s is HA-managed: PVE's HA manager stops it and purge removes it from the HA resources", d.g))
	}
	if m := res.Marker; m != nil {
		d.ip = leasedAddr(*m, res.IP)
	} else {
		d.ip = parseAddr(res.IP)
	}
	if res.Marker != nil { // ours: its create leased each of them
		for _, a := range ipam.ConfigAddrs(res.Config.Values) {
			if a != d.ip {
				d.others = append(d.others, a)
			}
		}
	}
	if req.Confirm != nil {
		return req.Confirm(ctx, res)
	}
	return nil
}

// gone is the convergence check of the steps that act on the CT: with
// --if-exists, a CT that is not there is already destroyed.
func (d *destroyRun) gone(context.Context) (string, error) {
	if !d.res.Existed {
		return fmt.Sprintf("%s does not exist", d.g), nil
	}
	return "", nil
}

// backup takes a vzdump first (--backup-first): the backup flow, audited
// as a backup of its own.
func (d *destroyRun) backup(ctx context.Context) error {
	req := d.req
	b, err := d.p.Backup(ctx, BackupRequest{Node: req.Node, VMID: req.VMID, Storage: req.BackupStorage, LockWait: req.LockWait, Requester: req.Requester})
	var se *StepError
	if errors.As(err, &se) {
		// The backup flow's failure is this step's: its cause, not a
		// second "step backup failed" around it.
		err = se.Err
	}
	if err != nil {
		return err
	}
	d.res.BackupID = b.VolID
	d.run.Note(fmt.Sprintf("%s (%s)", b.VolID, humanBytes(b.Size)))
	return nil
}

func (d *destroyRun) shutdown(ctx context.Context) error {
	err := d.p.powerOff(ctx, d.g, d.req.ShutdownTimeout, d.req.LockWait, d.run.Warn)
	if errors.Is(err, pve.ErrNotFound) {
		return nil // gone already: delete finds it so
	}
	return err
}

func (d *destroyRun) delete(ctx context.Context) error {
	if err := d.p.deleteGuest(ctx, d.g, d.req.LockWait); err != nil {
		return err
	}
	d.res.Destroyed = true
	return nil
}

// nothingLeased skips the release when there is no IPAM or no address.
func (d *destroyRun) nothingLeased(context.Context) (string, error) {
	switch {
	case !d.res.Existed:
		return fmt.Sprintf("CT %d does not exist", d.req.VMID), nil
	case d.p.opts.Addresses == nil:
		return "no IPAM configured", nil
	case !d.ip.IsValid() && len(d.others) == 0:
		return fmt.Sprintf("%s has no address", d.g), nil
	}
	return "", nil
}

// release gives the pod's address back to IPAM, and the leases of its
// other static addresses, where IPAM holds any. A failure is a warning:
// the pod is gone either way.
func (d *destroyRun) release(ctx context.Context) error {
	var others []string
	for _, ip := range d.others {
		err := d.p.opts.Addresses.Release(ctx, AddressLease{IP: ip, VMID: d.req.VMID, Hostname: d.res.Hostname})
		switch {
		case err == nil:
			others = append(others, ip.String())
		case !errors.Is(err, ipam.ErrNotFound):
			d.run.Warn(fmt.Sprintf("IPAM: releasing %s failed: %v (free it with: cloudpod ip release %s)", ip, err, ip))
		}
	}
	ip := d.ip
	if !ip.IsValid() {
		if len(others) == 0 {
			return flow.Skip("IPAM holds no lease of its addresses")
		}
		d.res.Released = strings.Join(others, ", ")
		d.run.Note(d.res.Released)
		return nil
	}
	if len(others) > 0 {
		d.run.Info(strings.Join(others, ", ") + " released in IPAM")
	}
	err := d.p.opts.Addresses.Release(ctx, AddressLease{IP: ip, VMID: d.req.VMID, Hostname: d.res.Hostname})
	switch {
	case err == nil:
		d.res.Released = ip.String()
		d.run.Note(ip.String())
	case errors.Is(err, ipam.ErrNotFound):
		return flow.Skip(fmt.Sprintf("IPAM holds no lease for %s", ip))
	default:
		d.run.Warn(fmt.Sprintf("IPAM: releasing %s failed: %v (free it with: cloudpod ip release %s)", ip, err, ip))
	}
	return nil
}

// leasedAddr is the address IPAM handed out for the pod: the one its marker
// records (net0 may have been edited since), else net0's.
func leasedAddr(m Marker, configured string) netip.Addr {
	if pfx, err := netip.ParsePrefix(m.Spec.Address); err == nil {
		return pfx.Addr()
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
