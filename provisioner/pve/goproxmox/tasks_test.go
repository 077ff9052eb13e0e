package goproxmox

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// The task list as PVE's node_tasks answers it with source=all (pve-manager
// PVE/API2/Tasks.pm): running tasks carry status "RUNNING", ended ones
// their exit status; a token's task names the plain user with a tokenid
// field, or the whole user@realm!token in user. Own keeps the tasks whose
// UPID names this client's token; Since drops older ones even where PVE
// ignored the parameter.
func TestTasks(t *testing.T) {
	const (
		running = "UPID:pve:00001F40:0001D4C0:6A000100:vzdump:9101:cloudpods@pve!provisioner:"
		ended   = "UPID:pve:00001F30:0001D4B0:6A0000F0:vzdump:9101:cloudpods@pve!provisioner:"
		other   = "UPID:pve:00001F50:0001D4D0:6A000110:vzdump:9101:root@pam:"
		old     = "UPID:pve:00000F30:0000D4B0:69000000:vzdump:9101:cloudpods@pve!provisioner:"
	)
	srv, c := newPVEServer(t, map[string]string{"GET /nodes/pve/tasks": `[
		{"upid":"` + ended + `","node":"pve","type":"vzdump","id":"9101","user":"cloudpods@pve","tokenid":"provisioner","status":"OK","starttime":1778385136,"endtime":1778385140},
		{"upid":"` + running + `","node":"pve","type":"vzdump","id":"9101","user":"cloudpods@pve!provisioner","status":"RUNNING","starttime":1778385152},
		{"upid":"` + other + `","node":"pve","type":"vzdump","id":"9101","user":"root@pam","status":"RUNNING","starttime":1778385168},
		{"upid":"` + old + `","node":"pve","type":"vzdump","id":"9101","user":"cloudpods@pve","tokenid":"provisioner","status":"job errors","starttime":1761607680,"endtime":1761607690}]`})
	since := time.Unix(1778385000, 0)
	got, err := c.Tasks(context.Background(), "pve", pve.TaskFilter{Type: "vzdump", VMID: 9101, Since: since, Own: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []pve.TaskStatus{
		{UPID: running, Node: "pve", Type: "vzdump", ID: "9101", User: "cloudpods@pve", TokenID: "provisioner", Status: "running", StartTime: time.Unix(1778385152, 0)},
		{UPID: ended, Node: "pve", Type: "vzdump", ID: "9101", User: "cloudpods@pve", TokenID: "provisioner", Status: "stopped", ExitStatus: "OK", StartTime: time.Unix(1778385136, 0), EndTime: time.Unix(1778385140, 0)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("tasks\n got %+v\nwant %+v", got, want)
	}
	if !got[1].Succeeded() || got[0].Succeeded() || !got[0].Running() {
		t.Errorf("running %v / succeeded %v", got[0].Running(), got[1].Succeeded())
	}
	req := srv.requests()[0]
	if w := map[string]string{"source": "all", "typefilter": "vzdump", "vmid": "9101", "since": "1778385000"}; !reflect.DeepEqual(req.Params, w) {
		t.Errorf("params %v, want %v", req.Params, w)
	}
	all, err := c.Tasks(context.Background(), "pve", pve.TaskFilter{})
	if err != nil || len(all) != 4 || all[0].UPID != other || all[3].UPID != old {
		t.Errorf("every task, newest first: %+v, %v", all, err)
	}
	// A task kind's history: finished tasks only (the archive), a few.
	if _, err := c.Tasks(context.Background(), "pve", pve.TaskFilter{Type: "vzclone", VMID: 9000, Finished: true, Limit: 20}); err != nil {
		t.Fatal(err)
	}
	req = srv.requests()[2]
	if w := map[string]string{"source": "archive", "typefilter": "vzclone", "vmid": "9000", "limit": "20"}; !reflect.DeepEqual(req.Params, w) {
		t.Errorf("history params %v, want %v", req.Params, w)
	}
}
