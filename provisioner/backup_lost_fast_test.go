package provisioner_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/pve"
	"github.com/migrahosting/cloudpods/provisioner/pvetest"
)

// A vzdump call whose answer is lost is settled from the task list: the
// new vzdump task of the token for the CT is the one it started, and the
// backup waits on it; an earlier backup's task is not mistaken for it.
// When the task list cannot be read, nothing is sent again.
func TestLostVzdumpAnswerOnTheFake(t *testing.T) {
	lost := &pve.APIError{Method: "POST", Path: "/nodes/pve/vzdump", Status: 596, Message: "Connection timed out"}
	for _, tc := range []struct {
		name    string
		faults  []pvetest.Fault
		wantErr string
		kind    provisioner.Kind
	}{
		{name: "answer lost after the task started", faults: []pvetest.Fault{{Method: "Backup", Nth: 1, Err: lost, After: true}}},
		{name: "task list unreadable after the loss", kind: provisioner.KindUnreachable,
			faults: []pvetest.Fault{{Method: "Backup", Nth: 1, Err: lost, After: true},
				{Method: "Tasks", Nth: 2, Err: &pve.TransportError{Method: "GET", Path: "/nodes/pve/tasks", Err: errors.New("connection reset by peer")}}},
			wantErr: "the answer to the vzdump call was lost (POST /nodes/pve/vzdump: 596 Connection timed out), and looking for the task it may have started failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newFastEnv(t)
			prov := env.provisioner(provisioner.Options{})
			ctx := context.Background()
			if _, err := prov.Create(ctx, provisioner.CreateRequest{Spec: seedSpec(9101, "migra-client-01", 91)}); err != nil {
				t.Fatal(err)
			}
			first, err := prov.Backup(ctx, provisioner.BackupRequest{Node: "pve", VMID: 9101})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range tc.faults {
				env.api.Inject(f)
			}
			mark := env.api.CallCount()
			var ev events
			b, err := prov.Backup(ctx, provisioner.BackupRequest{Node: "pve", VMID: 9101, Reporter: &ev})
			if got, want := env.api.Mutations(mark), []string{"Backup CT 9101 to vzdump-backups"}; !reflect.DeepEqual(got, want) {
				t.Errorf("changes %s, want %s", joined(got), joined(want))
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || provisioner.KindOf(err) != tc.kind {
					t.Fatalf("err = %v (kind %s), want %q (%s)", err, provisioner.KindOf(err), tc.wantErr, tc.kind)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.Task == "" || b.Task == first.Task {
				t.Errorf("backup %+v: the earlier backup's task %s taken for this one's", b, first.Task)
			}
			adopted := false
			for _, e := range ev.list {
				adopted = adopted || (e.Phase == provisioner.PhaseInfo && strings.Contains(e.Message, "task "+b.Task+" is the backup it started"))
			}
			if !adopted {
				t.Errorf("no event said task %s was adopted: %+v", b.Task, ev.list)
			}
		})
	}
}
