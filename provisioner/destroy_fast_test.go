package provisioner_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/migrahosting/cloudpods/ipam"
	"github.com/migrahosting/cloudpods/provisioner"
)

// destroyOrder is destroy's steps with --backup-first.
var destroyOrder = []string{provisioner.StepInspect, provisioner.StepBackup, provisioner.StepShutdown, provisioner.StepDelete, provisioner.StepRelease}

func TestDestroyOnTheFake(t *testing.T) {
	env := newFastEnv(t)
	prov := env.provisioner(provisioner.Options{})
	if _, err := prov.Create(context.Background(), provisioner.CreateRequest{Spec: seedSpec(9101, "migra-client-01", 91)}); err != nil {
		t.Fatal(err)
	}
	mark := env.api.CallCount()
	var ev events
	res, err := prov.Destroy(context.Background(), provisioner.DestroyRequest{Node: "pve", VMID: 9101, Force: true, BackupFirst: true,
		BackupStorage: "t7-backup", Reporter: &ev})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Destroyed || res.Released != "10.1.10.91" || !strings.HasPrefix(res.BackupID, "t7-backup:backup/vzdump-lxc-9101-") {
		t.Errorf("result = %+v", res)
	}
	if got := ev.stepOrder(); !reflect.DeepEqual(got, destroyOrder) {
		t.Errorf("steps %v, want %v", got, destroyOrder)
	}
	want := []string{"Backup CT 9101 to t7-backup", "ShutdownGuest CT 9101", "DeleteGuest CT 9101"}
	if got := env.api.Mutations(mark); !reflect.DeepEqual(got, want) {
		t.Errorf("changes\n got %s\nwant %s", joined(got), joined(want))
	}
	if st := env.lease(t, "10.1.10.91"); st != ipam.StateReleased {
		t.Errorf("lease is %q", st)
	}
	var audited []string
	for _, e := range readAudit(t, env.audit) {
		audited = append(audited, e.Command+" "+e.Outcome)
	}
	if got := strings.Join(audited, ", "); got != "create ok, backup ok, destroy ok" {
		t.Errorf("audit: %s", got)
	}
}

// TestDestroyRefusalsChangeNothing: the safety rules refuse in the inspect
// step, before anything changes, and say so.
func TestDestroyRefusalsChangeNothing(t *testing.T) {
	env := newFastEnv(t)
	prov := env.provisioner(provisioner.Options{})
	if _, err := prov.Create(context.Background(), provisioner.CreateRequest{Spec: seedSpec(9101, "migra-client-01", 91)}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		req  provisioner.DestroyRequest
		kind provisioner.Kind
		want string
	}{
		{"without force", provisioner.DestroyRequest{VMID: 9101}, provisioner.KindRefused, "needs --force"},
		{"the template", provisioner.DestroyRequest{VMID: 9000, Force: true, IgnoreOwnership: true}, provisioner.KindRefused, "CT 9000 is the golden template"},
		{"missing", provisioner.DestroyRequest{VMID: 9199, Force: true}, provisioner.KindPreflight, "CT 9199 does not exist on node pve"},
		{"backup to nowhere", provisioner.DestroyRequest{VMID: 9101, Force: true, BackupFirst: true, BackupStorage: "nowhere"}, provisioner.KindPreflight,
			"step backup failed: backup storage nowhere does not exist on node pve"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mark := env.api.CallCount()
			req := tt.req
			req.Node = "pve"
			_, err := prov.Destroy(context.Background(), req)
			if provisioner.KindOf(err) != tt.kind || !strings.Contains(err.Error(), tt.want) || !strings.HasSuffix(err.Error(), "; nothing was destroyed") {
				t.Errorf("err = %v (kind %s), want %s saying %q and that nothing was destroyed", err, provisioner.KindOf(err), tt.kind, tt.want)
			}
			if got := env.api.Mutations(mark); len(got) != 0 {
				t.Errorf("changed %s", joined(got))
			}
		})
	}
}

// TestDestroyIfExistsConverges: a pod already gone makes every step after
// inspect find its work done.
func TestDestroyIfExistsConverges(t *testing.T) {
	env := newFastEnv(t)
	var ev events
	res, err := env.provisioner(provisioner.Options{}).Destroy(context.Background(),
		provisioner.DestroyRequest{Node: "pve", VMID: 9199, Force: true, IfExists: true, Reporter: &ev})
	if err != nil || res.Existed || res.Destroyed {
		t.Fatalf("destroy = %+v, %v", res, err)
	}
	for _, step := range []string{provisioner.StepShutdown, provisioner.StepDelete, provisioner.StepRelease} {
		if ph := ev.lifecycle(step); !reflect.DeepEqual(ph, []provisioner.Phase{provisioner.PhaseStart, provisioner.PhaseSkip}) {
			t.Errorf("%s: %v, want start, skip", step, ph)
		}
	}
}

// TestDestroyFailureAfterShutdown: once the shutdown has happened, a failed
// delete claims nothing about what is left but the failure.
func TestDestroyFailureAfterShutdown(t *testing.T) {
	env := newFastEnv(t)
	prov := env.provisioner(provisioner.Options{})
	if _, err := prov.Create(context.Background(), provisioner.CreateRequest{Spec: seedSpec(9101, "migra-client-01", 91)}); err != nil {
		t.Fatal(err)
	}
	env.api.FailTasks("vzdestroy", "unable to destroy volume", "unable to destroy volume", "unable to destroy volume")
	_, err := prov.Destroy(context.Background(), provisioner.DestroyRequest{Node: "pve", VMID: 9101, Force: true})
	var se *provisioner.StepError
	if !errors.As(err, &se) || se.Step != provisioner.StepDelete || se.RolledBack != "" || se.Left {
		t.Fatalf("err = %v", err)
	}
	if st := env.lease(t, "10.1.10.91"); st != ipam.StateAssigned {
		t.Errorf("lease is %q: released though the CT is still there", st)
	}
}

func TestBackupOnTheFake(t *testing.T) {
	env := newFastEnv(t)
	prov := env.provisioner(provisioner.Options{})
	spec := seedSpec(9101, "migra-client-01", 91)
	spec.Tenant = "acme"
	if _, err := prov.Create(context.Background(), provisioner.CreateRequest{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	var ev events
	b, err := prov.Backup(context.Background(), provisioner.BackupRequest{Node: "pve", VMID: 9101, Reporter: &ev})
	if err != nil {
		t.Fatal(err)
	}
	if b.Mode != "snapshot" || b.Storage != provisioner.DefaultBackupStorage || b.Task == "" ||
		b.Notes != "migra-client-01 vmid=9101 tenant=acme node=pve by=cloudpods" {
		t.Errorf("backup = %+v", b)
	}
	if ph := ev.lifecycle(provisioner.StepBackup); !reflect.DeepEqual(ph, []provisioner.Phase{provisioner.PhaseStart, provisioner.PhaseDone}) {
		t.Errorf("phases %v", ph)
	}
	_, err = prov.Backup(context.Background(), provisioner.BackupRequest{Node: "pve", VMID: 9101, Storage: "clients-main"})
	if provisioner.KindOf(err) != provisioner.KindPreflight || !strings.Contains(err.Error(), "storage clients-main does not take backups") {
		t.Errorf("backup to a storage without backups: %v", err)
	}
}
