package provisioner_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

func TestBackupOnTheChosenStorageWithTenantNotes(t *testing.T) {
	l := startLifecycle(t)
	l.pod(t, 9101, "migra-client-01", 91, "acme")
	const vzdump = "/nodes/pve/vzdump"
	tests := []struct {
		name    string
		req     provisioner.BackupRequest
		fault   *pvesim.Fault
		setup   func(t *testing.T) (undo func())
		storage string // where the archive must land; "" when the backup must fail
		kind    error
		wantErr string
	}{
		{name: "default storage", storage: "vzdump-backups"},
		{name: "t7-backup", req: provisioner.BackupRequest{Storage: "t7-backup"}, storage: "t7-backup"},
		{name: "answer lost after vzdump started", fault: &pvesim.Fault{Method: "POST", Path: vzdump, Nth: 1, Kind: "596", After: true}, storage: "vzdump-backups"},
		{name: "connection dropped before vzdump started", fault: &pvesim.Fault{Method: "POST", Path: vzdump, Nth: 1, Kind: "drop"}, storage: "vzdump-backups"},
		{name: "vzdump refused once by a lock", fault: &pvesim.Fault{Method: "POST", Path: vzdump, Nth: 1, Kind: "lock", Message: "CT is locked (snapshot)"}, storage: "vzdump-backups"},
		{name: "vzdump task fails", fault: &pvesim.Fault{Method: "POST", Path: vzdump, Kind: "taskfail", Message: "job errors"}, wantErr: "task vzdump failed: job errors"},
		{name: "vzdump refused", fault: &pvesim.Fault{Method: "POST", Path: vzdump, Kind: "500", Message: "got unexpected control message"}, wantErr: "got unexpected control message"},
		{name: "a lock that stays", req: provisioner.BackupRequest{LockWait: 100 * time.Millisecond}, setup: func(t *testing.T) func() {
			must(t, l.env.Sim.SetConfig(9101, "lock", "snapshot"))
			return func() { must(t, l.env.Sim.SetConfig(9101, "lock", "")) }
		}, kind: pve.ErrWaitTimeout, wantErr: "CT 9101 is still locked (snapshot) after 100ms: a snapshot task is running"},
		{name: "storage without backups", req: provisioner.BackupRequest{Storage: "clients-main"}, kind: provisioner.ErrPreflight, wantErr: "storage clients-main does not take backups: pass --storage with a backup storage (vzdump-backups, t7-backup)"},
		{name: "unknown storage", req: provisioner.BackupRequest{Storage: "nas"}, kind: provisioner.ErrPreflight, wantErr: "backup storage nas does not exist on node pve"},
		{name: "no such CT", req: provisioner.BackupRequest{VMID: 9199}, kind: provisioner.ErrPreflight, wantErr: "CT 9199 does not exist on node pve: nothing to back up"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer l.env.Sim.ClearFaults()
			if tt.fault != nil {
				must(t, l.env.Sim.AddFault(*tt.fault))
			}
			if tt.setup != nil {
				defer tt.setup(t)()
			}
			ctx := context.Background()
			before, err := l.prov.Backups(ctx, "pve", 9101)
			if err != nil {
				t.Fatal(err)
			}
			req := tt.req
			req.Node, req.Requester = "pve", "ops"
			if req.VMID == 0 {
				req.VMID = 9101
			}
			if tt.storage != "" {
				// vzdump names an archive by the second it began: two
				// backups of one CT in one second write one file.
				time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
			}
			b, err := l.prov.Backup(ctx, req)
			after, lerr := l.prov.Backups(ctx, "pve", 9101)
			if lerr != nil {
				t.Fatal(lerr)
			}
			lines := readAudit(t, l.audit)
			last := lines[len(lines)-1]
			if last.Command != "backup" || last.Requester != "ops" || last.VMID != req.VMID {
				t.Errorf("last audit line = %+v", last)
			}
			if tt.storage == "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || (tt.kind != nil && !errors.Is(err, tt.kind)) {
					t.Fatalf("err = %v, want %q (kind %v)", err, tt.wantErr, tt.kind)
				}
				if len(after) != len(before) {
					t.Errorf("a failed backup left archives: %d before, %d after", len(before), len(after))
				}
				if last.Outcome != "failed" || last.Error == "" {
					t.Errorf("audit line of a failed backup = %+v", last)
				}
				return
			}
			if err != nil {
				t.Fatalf("backup: %v", err)
			}
			if len(after) != len(before)+1 {
				t.Errorf("%d archives before, %d after: want exactly one more", len(before), len(after))
			}
			if !strings.HasPrefix(b.VolID, tt.storage+":backup/vzdump-lxc-9101-") || !strings.HasSuffix(b.VolID, ".tar.zst") || b.Storage != tt.storage || b.Size <= 0 {
				t.Errorf("backup = %+v", b)
			}
			for _, want := range []string{"migra-client-01", "vmid=9101", "tenant=acme"} {
				if !strings.Contains(b.Notes, want) {
					t.Errorf("notes %q lack %q", b.Notes, want)
				}
			}
			if b.Task != "" && b.Mode != "snapshot" {
				t.Errorf("mode = %q, want snapshot for a running CT", b.Mode)
			}
			listed := false
			for _, a := range after {
				listed = listed || (a.VolID == b.VolID && a.Notes == b.Notes && a.Storage == tt.storage)
			}
			if !listed {
				t.Errorf("backup %+v is not in the listing %+v", b, after)
			}
			if last.Outcome != "ok" || last.Tenant != "acme" || last.Hostname != "migra-client-01" {
				t.Errorf("audit line = %+v", last)
			}
		})
	}
}

func TestBackupOfAStoppedPodWithoutTenant(t *testing.T) {
	l := startLifecycle(t)
	l.pod(t, 9101, "migra-client-01", 91, "")
	l.stop(t, 9101)
	b, err := l.prov.Backup(context.Background(), provisioner.BackupRequest{Node: "pve", VMID: 9101})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.Notes, "tenant=none") {
		t.Errorf("notes %q: a pod without tenant says so", b.Notes)
	}
}
