package provisioner_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/migrahosting/cloudpods/ipam"
	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
	"github.com/migrahosting/cloudpods/provisioner/pvetest"
)

// createOrder is create's step order as README's "What it does" and the
// events show it (TestREADMEStepOrderIsCreates holds README to it).
var createOrder = []string{provisioner.StepValidate, provisioner.StepPreflight, provisioner.StepReserve, provisioner.StepClone,
	provisioner.StepConfigure, provisioner.StepClaim, provisioner.StepStart, provisioner.StepNetwork, provisioner.StepVerify, provisioner.StepFinalize}

func TestCreateOnTheFake(t *testing.T) {
	env := newFastEnv(t)
	spec := seedSpec(9101, "migra-client-01", 91)
	var ev events
	res, err := env.provisioner(provisioner.Options{}).Create(context.Background(), provisioner.CreateRequest{Spec: spec, Reporter: &ev})
	if err != nil {
		t.Fatal(err)
	}
	if res.VMID != 9101 || res.IP != "10.1.10.91/24" || res.Status != "running" || !res.Changed || len(res.Steps) != len(createOrder) {
		t.Errorf("result = %+v", res)
	}
	if got := ev.stepOrder(); !reflect.DeepEqual(got, createOrder) {
		t.Errorf("steps ran in order %v, want %v", got, createOrder)
	}
	for _, step := range createOrder {
		if ph := ev.lifecycle(step); len(ph) != 2 || ph[0] != provisioner.PhaseStart || ph[1] != provisioner.PhaseDone {
			t.Errorf("step %s: phases %v, want start, done", step, ph)
		}
	}
	// The template's cores, memory and swap are the spec's: not sent.
	want := []string{"CloneGuest CT 9000 to 9101", "UpdateGuestConfig CT 9101 cmode,nameserver,net0,tags",
		"StartGuest CT 9101", "UpdateGuestConfig CT 9101 description delete=cmode"}
	if got := env.api.Mutations(0); !reflect.DeepEqual(got, want) {
		t.Errorf("changes\n got %s\nwant %s", joined(got), joined(want))
	}
	g, _ := env.api.Guest(9101)
	if g.Status != "running" || !strings.Contains(string(g.Files[pvetest.NetplanLeftover]), "10.1.10.91/24") {
		t.Errorf("CT 9101 is %s with netplan %q", g.Status, g.Files[pvetest.NetplanLeftover])
	}
	if m, ok := provisioner.ParseMarker(g.Config["description"]); !ok || m.State != "ready" || g.Config["cmode"] != "" {
		t.Errorf("marker %+v, cmode %q", m, g.Config["cmode"])
	}
	if st := env.lease(t, "10.1.10.91"); st != ipam.StateAssigned {
		t.Errorf("lease is %q, want assigned", st)
	}
}

// TestCreateConvergesOnTheFake: the same command again finds every step
// done and changes nothing.
func TestCreateConvergesOnTheFake(t *testing.T) {
	env := newFastEnv(t)
	spec := seedSpec(9101, "migra-client-01", 91)
	prov := env.provisioner(provisioner.Options{})
	if _, err := prov.Create(context.Background(), provisioner.CreateRequest{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	mark := env.api.CallCount()
	var ev events
	res, err := prov.Create(context.Background(), provisioner.CreateRequest{Spec: spec, Reporter: &ev})
	if err != nil || res.Changed {
		t.Fatalf("re-run = %+v, %v", res, err)
	}
	if got := env.api.Mutations(mark); len(got) != 0 {
		t.Errorf("the re-run changed %s", joined(got))
	}
	for _, step := range []string{provisioner.StepClone, provisioner.StepConfigure, provisioner.StepStart, provisioner.StepNetwork} {
		if ph := ev.lifecycle(step); len(ph) != 2 || ph[1] != provisioner.PhaseSkip {
			t.Errorf("step %s: phases %v, want start, skip", step, ph)
		}
	}
}

// TestRollbackOnTheFake: a failure after the clone removes this run's CT
// and then gives its reservation back; one before the clone creates
// nothing and gives the reservation back.
func TestRollbackOnTheFake(t *testing.T) {
	taskFail := func(typ string) func(*pvetest.Fake) {
		return func(f *pvetest.Fake) { f.FailTasks(typ, "startup for container '9101' failed") }
	}
	callFail := func(method string, nth int) func(*pvetest.Fake) {
		return func(f *pvetest.Fake) {
			f.Inject(pvetest.Fault{Method: method, VMID: 9101, Nth: nth, Err: &pve.APIError{Method: "PUT", Status: 500, Message: "unable to apply"}})
		}
	}
	shellFail := func(cmd string) func(*pvetest.Fake) {
		return func(f *pvetest.Fake) {
			f.Shell = func(_ *pvetest.Guest, c string) (string, int, bool) { return "broken", 1, c == cmd }
		}
	}
	tests := []struct {
		step   string
		inject func(*pvetest.Fake)
		said   string
	}{
		{provisioner.StepPreflight, func(f *pvetest.Fake) { f.StorageList[0].Avail = 1 << 20 }, "nothing was created"},
		{provisioner.StepClone, func(f *pvetest.Fake) { f.FailTasks("vzclone", "clone failed: out of space") }, "nothing was left: no CT at VMID 9101; 10.1.10.91 and VMID 9101 released in IPAM"},
		{provisioner.StepConfigure, callFail("UpdateGuestConfig", 1), "rolled back: CT 9101 destroyed; 10.1.10.91 and VMID 9101 released in IPAM"},
		{provisioner.StepStart, taskFail("vzstart"), "rolled back: CT 9101 destroyed; 10.1.10.91 and VMID 9101 released in IPAM"},
		{provisioner.StepNetwork, shellFail("networkctl reload"), "rolled back: CT 9101 destroyed; 10.1.10.91 and VMID 9101 released in IPAM"},
		{provisioner.StepVerify, shellFail("ip -4 route show default"), "rolled back: CT 9101 destroyed; 10.1.10.91 and VMID 9101 released in IPAM"},
		{provisioner.StepFinalize, callFail("UpdateGuestConfig", 2), "rolled back: CT 9101 destroyed; 10.1.10.91 and VMID 9101 released in IPAM"},
	}
	for _, tt := range tests {
		t.Run(tt.step, func(t *testing.T) {
			env := newFastEnv(t)
			tt.inject(env.api)
			var ev events
			_, err := env.provisioner(provisioner.Options{}).Create(context.Background(),
				provisioner.CreateRequest{Spec: seedSpec(9101, "migra-client-01", 91), Reporter: &ev})
			var se *provisioner.StepError
			if !errors.As(err, &se) || se.Step != tt.step || se.Left || se.RolledBack != tt.said {
				t.Fatalf("err = %v\nwant step %s rolled back with %q", err, tt.step, tt.said)
			}
			if _, ok := env.api.Guest(9101); ok {
				t.Error("CT 9101 is still there")
			}
			if tt.step == provisioner.StepPreflight {
				// Preflight only reads: a refusal there never reached IPAM.
				if got := env.addrs.entries(); len(got) != 0 || env.lease(t, "10.1.10.91") != "" {
					t.Errorf("IPAM was changed before preflight passed: %v", got)
				}
				return
			}
			if st := env.lease(t, "10.1.10.91"); st != ipam.StateReleased {
				t.Errorf("lease is %q, want released", st)
			}
			// Newest first: the CT goes before its reservation is given
			// back, so no other run can take the address while it exists.
			calls := env.api.Calls()
			deleted := -1
			for i, c := range calls {
				if c.Method == "DeleteGuest" {
					deleted = i
				}
			}
			released := env.addrs.entries()
			var n int
			if _, err := fmt.Sscanf(released[len(released)-1], "release 10.1.10.91 after %d calls", &n); err != nil {
				t.Fatalf("IPAM log %q: %v", released, err)
			}
			if deleted >= 0 && n <= deleted {
				t.Errorf("lease released after %d calls, before the CT's delete (call %d)", n, deleted+1)
			}
			if tt.step != provisioner.StepClone {
				if ph := ev.phases("rollback"); !reflect.DeepEqual(ph, []provisioner.Phase{provisioner.PhaseStart, provisioner.PhaseDone}) {
					t.Errorf("rollback phases %v", ph)
				}
			}
		})
	}
}

// TestRollbackLeavesWhatThisRunDidNotMake: a CT an earlier run made stays,
// with its lease (adopted: PVE has the pod, so it is assigned); a resumed
// run (the same run id) removes its own.
func TestRollbackLeavesWhatThisRunDidNotMake(t *testing.T) {
	for _, tt := range []struct {
		name     string
		runID    string
		left     bool
		wantSaid string
		lease    ipam.State
	}{
		{"an earlier run's CT", "", true, "CT 9101 was there before this run and is left as it is: run the same command again to finish it", ipam.StateAssigned},
		{"this run's CT, resumed", "job-1", false, "rolled back: CT 9101 destroyed; 10.1.10.91 and VMID 9101 released in IPAM", ipam.StateReleased},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := newFastEnv(t)
			spec := seedSpec(9101, "migra-client-01", 91)
			// The earlier attempt: cloned and configured, stopped before the
			// start (the fake's start task fails from then on).
			prov := env.provisioner(provisioner.Options{})
			stop := make(chan struct{})
			rep := provisioner.ReporterFunc(func(e provisioner.Event) {
				if e.Step == provisioner.StepConfigure && e.Phase == provisioner.PhaseStart {
					close(stop)
				}
			})
			if _, err := prov.Create(context.Background(), provisioner.CreateRequest{Spec: spec, Stop: stop, Reporter: rep, RunID: "job-1"}); !errors.Is(err, provisioner.ErrInterrupted) {
				t.Fatalf("first attempt: %v", err)
			}
			env.api.FailTasks("vzstart", "startup for container '9101' failed")
			_, err := prov.Create(context.Background(), provisioner.CreateRequest{Spec: spec, RunID: tt.runID})
			var se *provisioner.StepError
			if !errors.As(err, &se) || se.Step != provisioner.StepStart || se.Left != tt.left || se.RolledBack != tt.wantSaid {
				t.Fatalf("err = %v\nwant left=%v saying %q", err, tt.left, tt.wantSaid)
			}
			if _, ok := env.api.Guest(9101); ok != tt.left {
				t.Errorf("CT 9101 exists: %v, want %v", ok, tt.left)
			}
			if st := env.lease(t, "10.1.10.91"); st != tt.lease {
				t.Errorf("lease is %q, want %q", st, tt.lease)
			}
		})
	}
}

// TestStopSaysWhatIsLeft: a stop before the reservation leaves nothing; one
// after the clone keeps the CT and its lease for the re-run.
func TestStopSaysWhatIsLeft(t *testing.T) {
	for _, tt := range []struct {
		stopAt string
		said   string
		left   bool
		lease  ipam.State
	}{
		{provisioner.StepPreflight, "nothing was created", false, ""},
		{provisioner.StepStart, "CT 9101 exists, partly provisioned, and 10.1.10.91 stays reserved for it: run the same command again to finish it, or remove it with: cloudpod destroy 9101 --force", true, ipam.StateReserved},
	} {
		t.Run(tt.stopAt, func(t *testing.T) {
			env := newFastEnv(t)
			stop := make(chan struct{})
			rep := provisioner.ReporterFunc(func(e provisioner.Event) {
				if e.Step == tt.stopAt && e.Phase == provisioner.PhaseStart {
					close(stop)
				}
			})
			_, err := env.provisioner(provisioner.Options{}).Create(context.Background(),
				provisioner.CreateRequest{Spec: seedSpec(9101, "migra-client-01", 91), Stop: stop, Reporter: rep})
			var se *provisioner.StepError
			if !errors.Is(err, provisioner.ErrInterrupted) || !errors.As(err, &se) || se.RolledBack != tt.said || se.Left != tt.left {
				t.Fatalf("err = %v", err)
			}
			if provisioner.KindOf(err) != provisioner.KindInterrupted {
				t.Errorf("kind %s", provisioner.KindOf(err))
			}
			if st := env.lease(t, "10.1.10.91"); st != tt.lease {
				t.Errorf("lease is %q, want %q", st, tt.lease)
			}
		})
	}
}

// TestKeepOnFailureOnTheFake: --keep-on-failure keeps the CT marked failed,
// and its lease with it.
func TestKeepOnFailureOnTheFake(t *testing.T) {
	env := newFastEnv(t)
	env.api.FailTasks("vzstart", "startup for container '9101' failed")
	_, err := env.provisioner(provisioner.Options{}).Create(context.Background(),
		provisioner.CreateRequest{Spec: seedSpec(9101, "migra-client-01", 91), KeepOnFailure: true})
	if !errors.Is(err, provisioner.ErrLeftBehind) || provisioner.KindOf(err) != provisioner.KindLeftBehind || !strings.Contains(err.Error(), "marked failed") {
		t.Fatalf("err = %v", err)
	}
	g, ok := env.api.Guest(9101)
	m, _ := provisioner.ParseMarker(g.Config["description"])
	if !ok || m.State != "failed" || !strings.Contains(g.Config["tags"], "cloudpod-failed") {
		t.Errorf("CT 9101: %v, marker %+v, tags %q", ok, m, g.Config["tags"])
	}
	if st := env.lease(t, "10.1.10.91"); st != ipam.StateReserved {
		t.Errorf("lease is %q, want reserved", st)
	}
}

// TestDryRunIsDerivedFromTheSteps: the dry run of an auto VMID and address
// (cloudpod create --host web --vmid auto --ip auto --dry-run) reads only,
// reserves nothing, and plans the calls of create's own mutating steps in
// create's order, for the VMID and address IPAM would hand out.
func TestDryRunIsDerivedFromTheSteps(t *testing.T) {
	env := newFastEnv(t)
	spec := provisioner.DefaultSpec()
	spec.Hostname = "web"
	var ev events
	plan, err := env.provisioner(provisioner.Options{}).Plan(context.Background(), provisioner.CreateRequest{Spec: spec, Reporter: &ev})
	if err != nil {
		t.Fatal(err)
	}
	if got := env.api.Mutations(0); len(got) != 0 {
		t.Errorf("the dry run changed %s", joined(got))
	}
	if leases, err := env.alloc.List(context.Background()); err != nil || len(leases) != 0 {
		t.Errorf("the dry run left leases %+v, %v", leases, err)
	}
	if got, want := ev.stepOrder(), []string{provisioner.StepValidate, provisioner.StepPreflight}; !reflect.DeepEqual(got, want) {
		t.Errorf("steps run for real: %v, want the read-only ones %v", got, want)
	}
	var lines []string
	for _, c := range plan {
		lines = append(lines, c.Method+" "+c.Path)
	}
	want := []string{"IPAM reserve", "POST /nodes/pve/lxc/9000/clone", "GET /nodes/pve/tasks/{upid}/status",
		"PUT /nodes/pve/lxc/9101/config", "GET /cluster/resources?type=vm", "POST /nodes/pve/lxc/9101/status/start", "GET /nodes/pve/tasks/{upid}/status",
		"POST /nodes/pve/lxc/9101/termproxy", "GET /nodes/pve/lxc/9101/vncwebsocket", "GET /nodes/pve/lxc/9101/interfaces",
		"POST /nodes/pve/lxc/9101/termproxy", "PUT /nodes/pve/lxc/9101/config"}
	if !reflect.DeepEqual(lines, want) {
		t.Errorf("plan\n got %s\nwant %s", joined(lines), joined(want))
	}
	if p := plan[0].Params; p != "hostname=web ip=10.1.10.91 vmid=9101" {
		t.Errorf("IPAM would hand out %q", p)
	}
	if !strings.Contains(plan[3].Params, "net0=name=eth0,bridge=vmbr0,firewall=1,gw=10.1.10.1,hwaddr=(kept from the clone),ip=10.1.10.91/24") {
		t.Errorf("configure plans %q", plan[3].Params)
	}
}

// TestDryRunRefusesAsCreateWould: a dry run meets the refusals a create
// would (here preflight's: a VM set by hand holds the address), changes
// nothing.
func TestDryRunRefusesAsCreateWould(t *testing.T) {
	env := newFastEnv(t)
	env.api.AddGuest(pvetest.Guest{Kind: pve.QEMU, Node: "pve", VMID: 130, Config: map[string]string{"name": "by-hand", "ipconfig0": "ip=10.1.10.93/24,gw=10.1.10.1"}})
	_, err := env.provisioner(provisioner.Options{}).Plan(context.Background(), provisioner.CreateRequest{Spec: seedSpec(9101, "migra-client-01", 93)})
	var se *provisioner.StepError
	if !errors.As(err, &se) || se.Step != provisioner.StepPreflight || provisioner.KindOf(err) != provisioner.KindConflict || !strings.Contains(err.Error(), "VM 130") {
		t.Fatalf("err = %v, want preflight's conflict naming VM 130", err)
	}
	if got := env.api.Mutations(0); len(got) != 0 {
		t.Errorf("the dry run changed %s", joined(got))
	}
}

// TestDryRunOfAnExistingPodConverges: the dry run of a pod that exists
// plans to converge on it instead of cloning.
func TestDryRunOfAnExistingPodConverges(t *testing.T) {
	env := newFastEnv(t)
	spec := seedSpec(9101, "migra-client-01", 91)
	prov := env.provisioner(provisioner.Options{})
	if _, err := prov.Create(context.Background(), provisioner.CreateRequest{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	plan, err := prov.Plan(context.Background(), provisioner.CreateRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	if c := plan[1]; c.Method != "GET" || c.Path != "/nodes/pve/lxc/9101/config" || !strings.Contains(c.Note, "converge") {
		t.Errorf("plan %+v", plan)
	}
}

// TestCreateWithoutIPAM: the reserve step finds nothing to do, and a
// failed clone gives nothing back.
func TestCreateWithoutIPAM(t *testing.T) {
	env := newFastEnv(t)
	var ev events
	prov := env.withoutIPAM(provisioner.Options{})
	env.api.FailTasks("vzclone", "clone failed: out of space")
	_, err := prov.Create(context.Background(), provisioner.CreateRequest{Spec: seedSpec(9101, "migra-client-01", 91), Reporter: &ev})
	var se *provisioner.StepError
	if !errors.As(err, &se) || se.Step != provisioner.StepClone || se.RolledBack != "nothing was left: no CT at VMID 9101" {
		t.Fatalf("err = %v", err)
	}
	if ph := ev.lifecycle(provisioner.StepReserve); !reflect.DeepEqual(ph, []flow.Phase{flow.PhaseStart, flow.PhaseSkip}) {
		t.Errorf("reserve phases %v", ph)
	}
}

// TestConsoleRefusingTokensOnTheFake: on a PVE whose console refuses API
// tokens, the push and the in-pod checks are skipped with a warning each,
// and create relies on net0.
func TestConsoleRefusingTokensOnTheFake(t *testing.T) {
	env := newFastEnv(t)
	env.api.ConsoleRefusesTokens = true
	var ev events
	res, err := env.provisioner(provisioner.Options{}).Create(context.Background(),
		provisioner.CreateRequest{Spec: seedSpec(9101, "migra-client-01", 91), Reporter: &ev})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 2 || !strings.Contains(res.Warnings[0], "refuses API-token tickets") || len(res.Checks) != 1 {
		t.Errorf("warnings %q, checks %+v", res.Warnings, res.Checks)
	}
	for _, step := range []string{provisioner.StepNetwork, provisioner.StepVerify} {
		if ph := ev.phases(step); !reflect.DeepEqual(ph, []provisioner.Phase{provisioner.PhaseStart, provisioner.PhaseWarn, provisioner.PhaseDone}) {
			t.Errorf("%s: %v", step, ph)
		}
	}
	if g, _ := env.api.Guest(9101); strings.Contains(string(g.Files[pvetest.NetplanLeftover]), "10.1.10.91") {
		t.Error("netplan was pushed through a console that refuses tokens")
	}
}

// TestREADMEStepOrderIsCreates: README's "What it does" lists create's
// steps in the order a run's events show them.
func TestREADMEStepOrderIsCreates(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)[strings.Index(string(readme), "## What it does"):]
	section = section[:strings.Index(section[3:], "\n## ")+3]
	var documented []string
	for _, m := range regexp.MustCompile(`(?m)^(\d+)\. \*\*(\w+)\*\*`).FindAllStringSubmatch(section, -1) {
		if n, _ := strconv.Atoi(m[1]); n != len(documented)+1 {
			t.Errorf("README's step %s is numbered %d", m[2], n)
		}
		documented = append(documented, m[2])
	}
	env := newFastEnv(t)
	var ev events
	if _, err := env.provisioner(provisioner.Options{}).Create(context.Background(),
		provisioner.CreateRequest{Spec: seedSpec(9101, "migra-client-01", 91), Reporter: &ev}); err != nil {
		t.Fatal(err)
	}
	if got := ev.stepOrder(); !reflect.DeepEqual(got, documented) {
		t.Errorf("create's events show the steps %v, README lists %v", got, documented)
	}
}
