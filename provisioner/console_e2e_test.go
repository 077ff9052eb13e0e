package provisioner_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/internal/simtest"
	"github.com/migrahosting/cloudpods/provisioner/pve"
	"github.com/migrahosting/cloudpods/provisioner/pve/goproxmox"
)

// PVE 8.4 before the April 2026 updates: termproxy refuses API-token
// tickets. Create says so, skips the push, and relies on net0 — which the
// template's leftover netplan file defeats, so create fails with an
// explanation and rolls back; with a console login it succeeds.
func TestCreateOnPVEWhoseConsoleRefusesTokens(t *testing.T) {
	env := simtest.Start(t, func(c *pvesim.Config) { c.Version = "8.4"; c.Packages = pvesim.PackagesPreApril2026 })
	prov := simtest.Provisioner(env.API, provisioner.Options{VerifyTimeout: 500 * time.Millisecond})
	var ev events
	_, err := prov.Create(context.Background(), provisioner.CreateRequest{Spec: seedSpec(9101, "migra-client-01", 91), Reporter: &ev})
	if err == nil || !strings.Contains(err.Error(), "template's address 10.1.10.90/24") || !strings.Contains(err.Error(), "--console-user") {
		t.Fatalf("err = %v, want the template-address explanation naming --console-user", err)
	}
	warned := false
	for _, e := range ev.list {
		if e.Phase == provisioner.PhaseWarn && strings.Contains(e.Message, "refuses API-token tickets") {
			warned = true
		}
	}
	if !warned {
		t.Error("no warning said the console refuses tokens")
	}
	if _, ok := env.Sim.Guest(9101); ok {
		t.Error("CT 9101 was left behind")
	}

	// The alternative path: a password login used for the console only.
	api, err := goproxmox.New(goproxmox.Options{URL: env.Sim.URL(), TokenID: simtest.TokenID, TokenSecret: simtest.TokenSecret,
		Console: &goproxmox.ConsoleLogin{User: "root@pam", Password: "simroot"},
		HTTP:    goproxmox.HTTPOptions{TLS: goproxmox.TLSOptions{Fingerprint: env.Sim.Fingerprint()}, Timeout: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := simtest.Provisioner(api, provisioner.Options{}).Create(context.Background(), provisioner.CreateRequest{Spec: seedSpec(9101, "migra-client-01", 91)})
	if err != nil {
		t.Fatalf("create with a console login: %v", err)
	}
	if len(res.Warnings) != 0 {
		t.Errorf("warnings = %v", res.Warnings)
	}
	got, err := os.ReadFile(filepath.Join(env.Sim.RootDir(9101), netcfg.NetplanPath))
	if err != nil || !strings.Contains(string(got), "10.1.10.91/24") {
		t.Errorf("netplan in the pod = %q, %v", got, err)
	}
}

// A naive clone — net0 set, no netplan push — comes up with the template's
// address: the reason the push exists. This guards the simulator's
// faithfulness to the bug as much as the provisioner's fix for it.
func TestTemplateNetplanWinsWithoutThePush(t *testing.T) {
	env := simtest.Start(t, nil)
	ctx := context.Background()
	upid, err := env.API.CloneGuest(ctx, pve.CT("pve", 9000), cloneOpts(9101))
	must(t, err)
	_, err = waitTask(ctx, env, upid)
	must(t, err)
	cfg, err := env.API.GuestConfig(ctx, pve.CT("pve", 9101))
	must(t, err)
	n, err := netcfg.ParseNet0(cfg.Get("net0"))
	must(t, err)
	n.IP, n.GW = "10.1.10.91/24", "10.1.10.1"
	must(t, env.API.UpdateGuestConfig(ctx, pve.CT("pve", 9101), configUpdate("net0", n.String())))
	upid, err = env.API.StartGuest(ctx, pve.CT("pve", 9101))
	must(t, err)
	_, err = waitTask(ctx, env, upid)
	must(t, err)
	ifs, err := env.API.GuestInterfaces(ctx, pve.CT("pve", 9101))
	must(t, err)
	for _, i := range ifs {
		if i.Name == "eth0" && i.Inet != "10.1.10.90/24" {
			t.Errorf("eth0 = %s, want the template's 10.1.10.90/24 (netplan's 10-netplan-eth0.network sorts before eth0.network)", i.Inet)
		}
	}
}

// A task ending in "WARNINGS: N" succeeded, as PVE counts it.
func TestCreateTreatsTaskWarningsAsSuccess(t *testing.T) {
	env := simtest.Start(t, func(c *pvesim.Config) {
		c.Faults = []pvesim.Fault{{Method: "POST", Path: "/nodes/pve/lxc/9000/clone", Kind: "taskwarn", Message: "unable to copy some files"}}
	})
	res, err := simtest.Provisioner(env.API, provisioner.Options{}).Create(context.Background(), provisioner.CreateRequest{Spec: seedSpec(9101, "migra-client-01", 91)})
	if err != nil || res.Status != "running" {
		t.Fatalf("create = %+v, %v", res, err)
	}
}

// A run resumed under the same RunID (a service job after a restart) may
// roll back what its interrupted attempt cloned; any other run leaves it.
func TestResumedRunRollsBackItsOwnClone(t *testing.T) {
	for _, tc := range []struct {
		name     string
		resumeID string
		wantLeft bool
	}{{"same run id", "job-1", false}, {"another run", "", true}} {
		t.Run(tc.name, func(t *testing.T) {
			env := simtest.Start(t, nil)
			prov := simtest.Provisioner(env.API, provisioner.Options{})
			stop := make(chan struct{})
			rep := provisioner.ReporterFunc(func(e provisioner.Event) {
				if e.Step == provisioner.StepClone && e.Phase == provisioner.PhaseDone {
					close(stop)
				}
			})
			spec := seedSpec(9101, "migra-client-01", 91)
			_, err := prov.Create(context.Background(), provisioner.CreateRequest{Spec: spec, RunID: "job-1", Stop: stop, Reporter: rep})
			if !errors.Is(err, provisioner.ErrInterrupted) {
				t.Fatalf("first attempt: %v, want interrupted", err)
			}
			if _, ok := env.Sim.Guest(9101); !ok {
				t.Fatal("the interrupted attempt left no CT to resume")
			}
			must(t, env.Sim.AddFault(pvesim.Fault{Method: "POST", Path: "/nodes/pve/lxc/9101/status/start", Kind: "taskfail", Times: 20, Message: "startup for container '9101' failed"}))
			_, err = prov.Create(context.Background(), provisioner.CreateRequest{Spec: spec, RunID: tc.resumeID})
			if err == nil {
				t.Fatal("the resumed run succeeded despite the failing start")
			}
			if _, left := env.Sim.Guest(9101); left != tc.wantLeft {
				t.Errorf("CT 9101 left = %v, want %v (%v)", left, tc.wantLeft, err)
			}
		})
	}
}
