package provisioner_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/ipam"
	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/pve"
	"github.com/migrahosting/cloudpods/provisioner/pvetest"
)

// Another controller, with a registry of its own, acting between this
// create's preflight and its claim: the fake gets its guests at the moment
// an event of this run says (docs/multi-controller.md).

// rivalCT is a CT of another controller: made by hand when state is "",
// else a pod of cloudpods in that marker state.
func rivalCT(vmid int, host, ip, state, status string) pvetest.Guest {
	cfg := map[string]string{"hostname": host, "net0": "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=" + ip + "/24,gw=10.1.10.1,type=veth"}
	if state != "" {
		cfg["description"] = provisioner.Marker{Version: 1, By: "cloudpods", VMID: vmid, Hostname: host, RunID: "other-controller", State: state}.Description()
	}
	return pvetest.Guest{Kind: pve.LXC, Node: "pve", VMID: vmid, Config: cfg, Status: status}
}

// at runs fn once, when the run reports step's phase.
func at(step string, phase provisioner.Phase, fn func()) provisioner.Reporter {
	var once sync.Once
	return provisioner.ReporterFunc(func(ev provisioner.Event) {
		if ev.Step == step && ev.Phase == phase {
			once.Do(fn)
		}
	})
}

// autoSpec is `create --host web --vmid auto --ip auto`.
func autoSpec(host string) provisioner.Spec {
	s := provisioner.DefaultSpec()
	s.Hostname = host
	return s
}

func TestClaimSettlesAnAddressAnotherControllerWrote(t *testing.T) {
	for _, tt := range []struct {
		name  string
		rival pvetest.Guest
		// change, when set, is what the rival does once this run waits.
		change func(f *pvetest.Fake)
		// kept: this run keeps 10.1.10.91; otherwise it moves to .92.
		kept bool
		says string
	}{
		{name: "a guest made by hand", rival: rivalCT(9300, "by-hand", "10.1.10.91", "", "stopped"), says: "CT 9300 (by-hand)"},
		{name: "a running pod", rival: rivalCT(9300, "other", "10.1.10.91", "provisioning", "running"), says: "CT 9300 (other)"},
		{name: "a pod in the making with a lower VMID", rival: rivalCT(9100, "other", "10.1.10.91", "provisioning", "stopped"), says: "CT 9100 (other)"},
		{name: "a pod in the making with a higher VMID that gives it up", rival: rivalCT(9300, "other", "10.1.10.91", "provisioning", "stopped"),
			change: func(f *pvetest.Fake) { f.AddGuest(rivalCT(9300, "other", "10.1.10.120", "provisioning", "stopped")) }, kept: true},
		{name: "a pod in the making with a higher VMID that starts", rival: rivalCT(9300, "other", "10.1.10.91", "provisioning", "stopped"),
			change: func(f *pvetest.Fake) { f.AddGuest(rivalCT(9300, "other", "10.1.10.91", "provisioning", "running")) }, says: "CT 9300 (other)"},
		{name: "a pod in the making with a higher VMID that never settles", rival: rivalCT(9300, "other", "10.1.10.91", "provisioning", "stopped"),
			says: "CT 9300 (other)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := newFastEnv(t)
			var ev events
			waited := false
			rep := provisioner.ReporterFunc(func(e provisioner.Event) {
				ev.Report(e)
				if e.Step == provisioner.StepConfigure && e.Phase == provisioner.PhaseDone {
					env.api.AddGuest(tt.rival)
				}
				if e.Step == provisioner.StepClaim && e.Phase == provisioner.PhaseInfo && strings.Contains(e.Message, "waiting") && !waited {
					waited = true
					if tt.change != nil {
						tt.change(env.api)
					}
				}
			})
			res, err := env.provisioner(provisioner.Options{ClaimWait: 300 * time.Millisecond}).Create(context.Background(),
				provisioner.CreateRequest{Spec: autoSpec("web"), Reporter: rep})
			if err != nil {
				t.Fatal(err)
			}
			want := "10.1.10.92/24"
			if tt.kept {
				want = "10.1.10.91/24"
			}
			g, _ := env.api.Guest(res.VMID)
			m, _ := provisioner.ParseMarker(g.Config["description"])
			if res.IP != want || !strings.Contains(g.Config["net0"], "ip="+want) || m.Spec.Address != want {
				t.Fatalf("pod has %s (net0 %s, marker %s), want %s", res.IP, g.Config["net0"], m.Spec.Address, want)
			}
			if tt.rival.VMID > res.VMID && (tt.change != nil || strings.Contains(tt.name, "never")) != waited {
				t.Errorf("waited for the higher VMID: %v", waited)
			}
			moved := false
			for _, e := range ev.list {
				moved = moved || (e.Step == provisioner.StepClaim && strings.Contains(e.Message, "10.1.10.91 was taken meanwhile by "+tt.says))
			}
			if moved == tt.kept {
				t.Errorf("moved away from 10.1.10.91: %v (events %v)", moved, ev.list)
			}
			// The registry follows: the lost address is free again (released,
			// or gone with the pod's VMID handed out anew), the new one
			// assigned to the pod.
			if st := env.lease(t, strings.TrimSuffix(want, "/24")); st != ipam.StateAssigned {
				t.Errorf("lease of %s is %q", want, st)
			}
			if st := env.lease(t, "10.1.10.91"); !tt.kept && st != ipam.StateReleased && st != "" {
				t.Errorf("the lost address's lease is %q", st)
			}
			// The same command again converges on the moved pod.
			again, err := env.provisioner(provisioner.Options{}).Create(context.Background(), provisioner.CreateRequest{Spec: autoSpec("web")})
			if err != nil || again.Changed || again.VMID != res.VMID || again.IP != want {
				t.Errorf("re-run = %+v, %v", again, err)
			}
		})
	}
}

// TestClaimOfANamedAddressOrHostnameIsAConflict: an address the request
// named, or the hostname, taken by another controller meanwhile, is a
// conflict; the clone is rolled back and its lease given back.
func TestClaimOfANamedAddressOrHostnameIsAConflict(t *testing.T) {
	for _, tt := range []struct {
		name  string
		rival pvetest.Guest
		says  string
	}{
		{"the address", rivalCT(9300, "other", "10.1.10.91", "ready", "stopped"), "IP 10.1.10.91 was taken meanwhile by CT 9300 (other)"},
		{"the hostname", rivalCT(9300, "MIGRA-client-01", "10.1.10.120", "provisioning", "running"), "hostname migra-client-01 was taken meanwhile by CT 9300 (MIGRA-client-01)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := newFastEnv(t)
			_, err := env.provisioner(provisioner.Options{}).Create(context.Background(), provisioner.CreateRequest{Spec: seedSpec(9101, "migra-client-01", 91),
				Reporter: at(provisioner.StepConfigure, provisioner.PhaseDone, func() { env.api.AddGuest(tt.rival) })})
			var se *provisioner.StepError
			if !errors.As(err, &se) || se.Step != provisioner.StepClaim || provisioner.KindOf(err) != provisioner.KindConflict ||
				!strings.Contains(err.Error(), tt.says) || !strings.Contains(err.Error(), "rolled back: CT 9101 destroyed; 10.1.10.91 and VMID 9101 released in IPAM") {
				t.Fatalf("err = %v", err)
			}
			if _, ok := env.api.Guest(9101); ok {
				t.Error("CT 9101 was left")
			}
		})
	}
}

// TestCloneToAVMIDAnotherControllerTook: PVE refuses a clone to a VMID
// that exists; an auto VMID moves to the next free one, a named one is a
// conflict that created nothing.
func TestCloneToAVMIDAnotherControllerTook(t *testing.T) {
	t.Run("auto", func(t *testing.T) {
		env := newFastEnv(t)
		var ev events
		rep := provisioner.ReporterFunc(func(e provisioner.Event) {
			ev.Report(e)
			if e.Step == provisioner.StepReserve && e.Phase == provisioner.PhaseDone {
				env.api.AddGuest(rivalCT(9101, "other", "10.1.10.150", "provisioning", "stopped"))
			}
		})
		res, err := env.provisioner(provisioner.Options{}).Create(context.Background(), provisioner.CreateRequest{Spec: autoSpec("web"), Reporter: rep})
		if err != nil || res.VMID != 9102 || res.IP != "10.1.10.91/24" {
			t.Fatalf("create = %+v, %v; want VMID 9102 with 10.1.10.91", res, err)
		}
		if got := strings.Join(ev.infos(provisioner.StepClone), " | "); !strings.Contains(got, "VMID 9101 was taken in PVE meanwhile (another controller?): cloning to VMID 9102 instead") {
			t.Errorf("clone said %q", got)
		}
		if g, _ := env.api.Guest(9101); g.Config["hostname"] != "other" {
			t.Error("the other controller's CT 9101 was touched")
		}
	})
	t.Run("named", func(t *testing.T) {
		env := newFastEnv(t)
		_, err := env.provisioner(provisioner.Options{}).Create(context.Background(), provisioner.CreateRequest{Spec: seedSpec(9101, "migra-client-01", 91),
			Reporter: at(provisioner.StepReserve, provisioner.PhaseDone, func() { env.api.AddGuest(rivalCT(9101, "other", "10.1.10.150", "", "stopped")) })})
		if provisioner.KindOf(err) != provisioner.KindConflict || !strings.Contains(err.Error(), "VMID 9101 was taken in PVE after preflight") ||
			!strings.Contains(err.Error(), "nothing was created; 10.1.10.91 and VMID 9101 released in IPAM") {
			t.Fatalf("err = %v", err)
		}
		if g, _ := env.api.Guest(9101); g.Config["hostname"] != "other" {
			t.Error("the other controller's CT 9101 was touched")
		}
	})
}

// infos are the info messages of step.
func (e *events) infos(step string) []string {
	var out []string
	for _, ev := range e.list {
		if ev.Step == step && ev.Phase == provisioner.PhaseInfo {
			out = append(out, ev.Message)
		}
	}
	return out
}
