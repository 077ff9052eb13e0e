package provisioner

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// DefaultBackupStorage is where CloudPods' backups go unless told otherwise.
const DefaultBackupStorage = "vzdump-backups"

// BackupRequest is one vzdump of a pod.
type BackupRequest struct {
	Node    string
	VMID    int
	Storage string // vzdump-backups (default) or t7-backup
	// LockWait bounds waiting for another task's lock on the CT before the
	// backup starts; 0 means 2 minutes.
	LockWait  time.Duration
	Requester string
	Reporter  Reporter
}

// Backup is one backup archive.
type Backup struct {
	VolID   string    `json:"volid"`
	VMID    int       `json:"vmid"`
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
	Notes   string    `json:"notes,omitempty"`
	Storage string    `json:"storage"`
	// Mode is the mode vzdump used, from its log: snapshot, or suspend
	// when a volume cannot snapshot, or stop for a stopped CT.
	Mode string `json:"mode,omitempty"`
	Task string `json:"task,omitempty"`
}

// lostBackupGrace is how long a vzdump whose answer was lost gets to show
// its task in the node's task list before it is sent again. PVE lists the
// worker as soon as it forks, before answering; a proxy that gave up on a
// busy pvedaemon may see it fork later than that, and a second backup is
// the price of that guess (the storage's prune settings clear it).
const lostBackupGrace = 2 * time.Second

// Backup takes a vzdump of a pod: snapshot mode (vzdump itself falls back
// to suspend where a volume cannot snapshot), zstd, notes naming hostname,
// tenant and vmid. No prune-backups is sent, so the storage's own
// retention applies. It is a flow of one step, backup.
func (p *Provisioner) Backup(ctx context.Context, req BackupRequest) (Backup, error) {
	if req.Storage == "" {
		req.Storage = DefaultBackupStorage
	}
	if req.LockWait <= 0 {
		req.LockWait = 2 * time.Minute
	}
	b := &backupRun{p: p, req: req, g: pve.CT(req.Node, req.VMID), spec: Spec{VMID: req.VMID, Node: req.Node}}
	b.run = p.newRun(flow.Options{Kind: pve.LXC, VMID: func() int { return req.VMID }, Reporter: req.Reporter,
		Audit: func(err error, took time.Duration) { p.audit("backup", b.spec, req.Requester, took, err) }})
	err := b.run.Execute(ctx, []flow.Step{{Name: StepBackup, Run: b.backup}})
	return b.out, err
}

// backupRun is the state of one backup.
type backupRun struct {
	p   *Provisioner
	req BackupRequest
	g   pve.GuestRef
	run *flow.Run
	// spec is what the audit log records of the pod.
	spec Spec
	out  Backup
	// since bounds the task listings that settle a lost vzdump answer.
	since time.Time
}

// locate finds the CT when no node was given: vzdump runs on its node.
func (b *backupRun) locate(ctx context.Context) error {
	if b.req.Node != "" {
		return nil
	}
	loc, err := b.p.Locate(ctx, "", b.req.VMID)
	if errors.Is(err, pve.ErrNotFound) {
		return problemf(ErrPreflight, "CT %d does not exist %s: nothing to back up", b.req.VMID, whereText(loc.Ref.Node))
	}
	if err != nil {
		return err
	}
	if loc.NodeDown != "" {
		return problemf(ErrPreflight, "%v: it can be backed up when the node is back", nodeDownError(loc))
	}
	b.req.Node, b.spec.Node, b.g = loc.Ref.Node, loc.Ref.Node, pve.CT(loc.Ref.Node, b.req.VMID)
	return nil
}

// backup checks the CT and the storage, waits out a lock, runs vzdump and
// finds the archive it wrote.
func (b *backupRun) backup(ctx context.Context) error {
	if err := b.locate(ctx); err != nil {
		return err
	}
	p, req := b.p, b.req
	cfg, err := p.api.GuestConfig(ctx, b.g)
	if errors.Is(err, pve.ErrNotFound) {
		return problemf(ErrPreflight, "CT %d does not exist on node %s: nothing to back up", req.VMID, req.Node)
	}
	if err != nil {
		return fmt.Errorf("read CT %d: %w", req.VMID, err)
	}
	b.spec.Hostname = cfg.Get("hostname")
	b.spec.IP = parseAddr(configIP(cfg))
	if m, ok := ParseMarker(cfg.Get("description")); ok && m.Owns(req.VMID) {
		b.spec.Tenant = m.Tenant
	}
	if err := p.checkBackupStorage(ctx, req.Node, req.Storage); err != nil {
		return err
	}
	// vzdump fails at once on a locked CT; a lock from a task that is about
	// to finish (a snapshot, another backup) is worth waiting for.
	if err := p.waitNoLock(ctx, b.g, req.LockWait); err != nil {
		return err
	}
	before := archiveCounts{}
	if vols, err := p.api.StorageContent(ctx, req.Node, req.Storage, "backup"); err == nil {
		before.add(vols)
	}
	// The CT's vzdump tasks so far: a lost answer is settled by the task
	// that is not among them.
	known, err := b.knownVzdumpTasks(ctx)
	if err != nil {
		return fmt.Errorf("list the backup tasks of CT %d before starting one: %w", req.VMID, err)
	}
	opts := pve.BackupOptions{VMID: req.VMID, Storage: req.Storage, Mode: "snapshot", Compress: "zstd", NotesTemplate: backupNotes(b.spec.Tenant)}
	var upid string
	err = b.run.Retry().Do(ctx, fmt.Sprintf("back up CT %d to %s", req.VMID, req.Storage), func(ctx context.Context) error {
		var err error
		upid, err = p.api.Backup(ctx, req.Node, opts)
		if errors.Is(err, pve.ErrMaybeApplied) {
			upid, err = b.adoptLostBackup(ctx, known, err)
		}
		if err != nil {
			return err
		}
		if upid == "OK" {
			// PVE's answer when none of the guests is on this node.
			return problemf(ErrPreflight, "PVE started no backup: CT %d is not on node %s", req.VMID, req.Node)
		}
		known[upid] = true
		_, err = p.waitShowing(ctx, b.run, req.Node, upid)
		return err
	}, nil)
	if err != nil {
		return err
	}
	archive, mode := p.vzdumpLog(ctx, req.Node, upid)
	newest, err := p.archiveOf(ctx, req.Node, req.Storage, req.VMID, archive, before)
	if err != nil {
		return fmt.Errorf("backup of CT %d done (task %s), but listing %s failed: %w", req.VMID, upid, req.Storage, err)
	}
	if newest == nil {
		return fmt.Errorf("vzdump of CT %d finished (task %s) but no new archive is on %s", req.VMID, upid, req.Storage)
	}
	b.out = Backup{VolID: newest.VolID, VMID: req.VMID, Size: newest.Size, Created: newest.CTime, Notes: newest.Notes, Storage: req.Storage, Mode: mode, Task: upid}
	b.run.Note(fmt.Sprintf("%s (%s)", b.out.VolID, humanBytes(b.out.Size)))
	return nil
}

// backupNotes is the notes-template: vzdump expands the {{…}} variables;
// the tenant goes in literally, with vzdump's escapes (\\, \n) and
// variables defused.
// One line, so PVE's content listing (which shows the first) names the pod.
func backupNotes(tenant string) string {
	t := strings.NewReplacer("\\", "\\\\", "\n", " ", "\r", " ", "{{", "{ {").Replace(tenantOrNone(tenant))
	return "{{guestname}} vmid={{vmid}} tenant=" + t + " node={{node}} by=cloudpods"
}

// archiveCounts counts the listed archives by volid: a storage listing
// can name one volid twice (two backups of a CT within a second).
type archiveCounts map[string]int

func (c archiveCounts) add(vols []pve.Volume) {
	for _, v := range vols {
		c[v.VolID]++
	}
}

// newArchive is the newest archive of vmid on storage that before does not
// account for.
func (p *Provisioner) newArchive(ctx context.Context, node, storage string, vmid int, before archiveCounts) (*pve.Volume, error) {
	vols, err := p.api.StorageContent(ctx, node, storage, "backup")
	if err != nil {
		return nil, err
	}
	seen := archiveCounts{}
	var newest *pve.Volume
	for i, v := range vols {
		seen[v.VolID]++
		if v.VMID == vmid && seen[v.VolID] > before[v.VolID] && (newest == nil || !v.CTime.Before(newest.CTime)) {
			newest = &vols[i]
		}
	}
	return newest, nil
}

// archiveOf finds the archive a finished vzdump wrote: the one named
// archive when its log gave the name, else the newest new one.
func (p *Provisioner) archiveOf(ctx context.Context, node, storage string, vmid int, archive string, before archiveCounts) (*pve.Volume, error) {
	if archive == "" {
		return p.newArchive(ctx, node, storage, vmid, before)
	}
	vols, err := p.api.StorageContent(ctx, node, storage, "backup")
	if err != nil {
		return nil, err
	}
	for i := len(vols) - 1; i >= 0; i-- {
		if path.Base(vols[i].VolID) == archive {
			return &vols[i], nil
		}
	}
	return p.newArchive(ctx, node, storage, vmid, before)
}

// vzdumpLog reads what a finished vzdump task logged: the archive's file
// name ("creating vzdump archive '/…/dump/vzdump-lxc-9101-….tar.zst'") and
// the mode it settled on ("backup mode: suspend" after a snapshot failed).
// Best effort: "" for what the log does not tell.
func (p *Provisioner) vzdumpLog(ctx context.Context, node, upid string) (archive, mode string) {
	lines, err := p.api.TaskLog(ctx, node, upid, 0, 0)
	if err != nil {
		return "", ""
	}
	for _, l := range lines {
		if _, rest, ok := strings.Cut(l, "creating vzdump archive '"); ok {
			name, _, _ := strings.Cut(rest, "'")
			archive = path.Base(name)
		}
		if _, m, ok := strings.Cut(l, "backup mode: "); ok {
			mode = strings.TrimSpace(m)
		}
	}
	return archive, mode
}

func tenantOrNone(t string) string {
	if t == "" {
		return "none"
	}
	return t
}

func (p *Provisioner) checkBackupStorage(ctx context.Context, node, storage string) error {
	storages, err := p.api.Storages(ctx, node)
	if err != nil {
		return fmt.Errorf("storages of node %s: %w", node, err)
	}
	for _, st := range storages {
		if st.ID != storage {
			continue
		}
		if !contains(st.Content, "backup") {
			return problemf(ErrPreflight, "storage %s does not take backups: pass --storage with a backup storage (%s)", storage, strings.Join(backupStores(storages), ", "))
		}
		if !st.Active {
			return problemf(ErrPreflight, "backup storage %s is not active on node %s: check it in PVE", storage, node)
		}
		return nil
	}
	return problemf(ErrPreflight, "backup storage %s does not exist on node %s: pass --storage with one of %s", storage, node, strings.Join(backupStores(storages), ", "))
}

func backupStores(storages []pve.Storage) []string {
	var out []string
	for _, st := range storages {
		if contains(st.Content, "backup") {
			out = append(out, st.ID)
		}
	}
	return out
}

// Backups lists backup archives on every active backup storage of the
// node, newest first; vmid 0 lists all.
func (p *Provisioner) Backups(ctx context.Context, node string, vmid int) ([]Backup, error) {
	nodes := []string{node}
	if node == "" {
		// Every online node's backup storages: a pod's archives are on
		// the node it was on when each was made.
		list, err := p.api.Nodes(ctx)
		if err != nil {
			return nil, apiProblem("list the cluster's nodes", err)
		}
		nodes = nodes[:0]
		for _, n := range list {
			if n.Online() {
				nodes = append(nodes, n.Name)
			}
		}
	}
	var out []Backup
	seen := map[string]bool{} // a shared storage's archives show on every node
	for _, node := range nodes {
		storages, err := p.api.Storages(ctx, node)
		if err != nil {
			return nil, fmt.Errorf("storages of node %s: %w", node, err)
		}
		for _, st := range storages {
			if !contains(st.Content, "backup") || !st.Active {
				continue
			}
			vols, err := p.api.StorageContent(ctx, node, st.ID, "backup")
			if err != nil {
				return nil, fmt.Errorf("list backups on %s: %w", st.ID, err)
			}
			for _, v := range vols {
				if (vmid == 0 || v.VMID == vmid) && !seen[v.VolID] {
					seen[v.VolID] = true
					out = append(out, Backup{VolID: v.VolID, VMID: v.VMID, Size: v.Size, Created: v.CTime, Notes: v.Notes, Storage: st.ID})
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].VolID > out[j].VolID
	})
	return out, nil
}
