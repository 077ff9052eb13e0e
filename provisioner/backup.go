package provisioner

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// DefaultBackupStorage is where CloudPods' backups go unless told otherwise.
const DefaultBackupStorage = "vzdump-backups"

// BackupRequest is one vzdump of a pod.
type BackupRequest struct {
	Node      string
	VMID      int
	Storage   string // vzdump-backups or t7-backup
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
}

// Backup takes a vzdump of a pod: snapshot mode (PVE falls back to suspend
// itself where the storage cannot snapshot), zstd, notes naming hostname,
// tenant and vmid; the storage's own prune settings apply.
func (p *Provisioner) Backup(ctx context.Context, req BackupRequest) (Backup, error) {
	start := p.opts.Now()
	b, spec, err := p.backup(ctx, req)
	p.audit("backup", spec, req.Requester, start, err)
	return b, err
}

func (p *Provisioner) backup(ctx context.Context, req BackupRequest) (Backup, Spec, error) {
	spec := Spec{VMID: req.VMID, Node: req.Node}
	if req.Storage == "" {
		req.Storage = DefaultBackupStorage
	}
	cfg, err := p.api.ContainerConfig(ctx, req.Node, req.VMID)
	if errors.Is(err, pve.ErrNotFound) {
		return Backup{}, spec, problemf(ErrPreflight, "CT %d does not exist on node %s: nothing to back up", req.VMID, req.Node)
	}
	if err != nil {
		return Backup{}, spec, err
	}
	spec.Hostname = cfg.Get("hostname")
	spec.IP = parseAddr(configIP(cfg))
	if m, ok := ParseMarker(cfg.Get("description")); ok {
		spec.Tenant = m.Tenant
	}
	if err := p.checkBackupStorage(ctx, req.Node, req.Storage); err != nil {
		return Backup{}, spec, err
	}
	// vzdump expands these; the tenant goes in literally. PVE notes are
	// one line per field so the content listing (first line) names the pod.
	notes := "{{guestname}} vmid={{vmid}} tenant=" + tenantOrNone(spec.Tenant) + " node={{node}} by=cloudpods"
	before := map[string]bool{}
	if vols, err := p.api.StorageContent(ctx, req.Node, req.Storage, "backup"); err == nil {
		for _, v := range vols {
			before[v.VolID] = true
		}
	}
	var upid string
	err = p.opts.Retry.Do(ctx, fmt.Sprintf("back up CT %d", req.VMID), func(ctx context.Context) error {
		var err error
		upid, err = p.api.Backup(ctx, req.Node, pve.BackupOptions{VMID: req.VMID, Storage: req.Storage, Mode: "snapshot", Compress: "zstd", NotesTemplate: notes})
		if err != nil {
			return err
		}
		if upid == "OK" {
			return fmt.Errorf("PVE answered OK without a task: CT %d is not on node %s", req.VMID, req.Node)
		}
		_, err = p.wait(ctx, req.Node, upid)
		return err
	}, nil)
	if err != nil {
		return Backup{}, spec, err
	}
	vols, err := p.api.StorageContent(ctx, req.Node, req.Storage, "backup")
	if err != nil {
		return Backup{}, spec, fmt.Errorf("backup of CT %d done, but listing %s failed: %w", req.VMID, req.Storage, err)
	}
	var newest *pve.Volume
	for i, v := range vols {
		if v.VMID == req.VMID && !before[v.VolID] && (newest == nil || v.CTime.After(newest.CTime)) {
			newest = &vols[i]
		}
	}
	if newest == nil {
		return Backup{}, spec, fmt.Errorf("vzdump of CT %d finished (task %s) but no new archive is on %s", req.VMID, upid, req.Storage)
	}
	return Backup{VolID: newest.VolID, VMID: req.VMID, Size: newest.Size, Created: newest.CTime, Notes: newest.Notes, Storage: req.Storage}, spec, nil
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
		return err
	}
	var names []string
	for _, st := range storages {
		if contains(st.Content, "backup") {
			names = append(names, st.ID)
		}
		if st.ID == storage {
			if !contains(st.Content, "backup") {
				return problemf(ErrPreflight, "storage %s does not take backups: pass --storage with a backup storage (%s)", storage, strings.Join(backupStores(storages), ", "))
			}
			if !st.Active {
				return problemf(ErrPreflight, "backup storage %s is not active on node %s: check it in PVE", storage, node)
			}
			return nil
		}
	}
	return problemf(ErrPreflight, "backup storage %s does not exist on node %s: pass --storage with one of %s", storage, node, strings.Join(names, ", "))
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

// Backups lists backup archives on every backup storage of the node,
// newest first; vmid 0 lists all.
func (p *Provisioner) Backups(ctx context.Context, node string, vmid int) ([]Backup, error) {
	storages, err := p.api.Storages(ctx, node)
	if err != nil {
		return nil, err
	}
	var out []Backup
	for _, st := range storages {
		if !contains(st.Content, "backup") || !st.Active {
			continue
		}
		vols, err := p.api.StorageContent(ctx, node, st.ID, "backup")
		if err != nil {
			return nil, fmt.Errorf("list backups on %s: %w", st.ID, err)
		}
		for _, v := range vols {
			if vmid == 0 || v.VMID == vmid {
				out = append(out, Backup{VolID: v.VolID, VMID: v.VMID, Size: v.Size, Created: v.CTime, Notes: v.Notes, Storage: st.ID})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}
