package provisioner_test

import (
	"context"
	"strings"
	"testing"

	"github.com/migrahosting/cloudpods/provisioner"
)

func TestHealthOfFreshStoppedLockedAndDriftedPods(t *testing.T) {
	l := startLifecycle(t)
	l.pod(t, 9101, "migra-client-01", 91, "acme")
	l.pod(t, 9102, "migra-client-02", 92, "globex")
	l.stop(t, 9102)
	must(t, l.env.Sim.AddContainer(9150, map[string]string{"hostname": "legacy", "ostype": "ubuntu", "memory": "512",
		"rootfs": "clients-main:subvol-9150-disk-0,size=8G"}))
	fresh, _ := l.env.Sim.Guest(9101)
	set := func(key, value string) func(t *testing.T) func() {
		return func(t *testing.T) func() {
			must(t, l.env.Sim.SetConfig(9101, key, value))
			return func() { must(t, l.env.Sim.SetConfig(9101, key, fresh.Config[key])) }
		}
	}
	tests := []struct {
		name  string
		vmid  int
		deep  bool
		setup func(t *testing.T) (undo func())
		state string
		// problems must each appear in the report; none are allowed when empty.
		problems []string
		warning  string
	}{
		{name: "fresh pod", vmid: 9101, state: provisioner.Healthy},
		{name: "fresh pod, deep", vmid: 9101, deep: true, state: provisioner.Healthy},
		{name: "stopped pod", vmid: 9102, state: provisioner.Down, problems: []string{"CT is stopped"}},
		{name: "stopped pod, deep: nothing to look into", vmid: 9102, deep: true, state: provisioner.Down, problems: []string{"CT is stopped"}},
		{name: "locked pod", vmid: 9101, setup: set("lock", "backup"), state: provisioner.Degraded, problems: []string{"CT is locked (backup): a backup (vzdump) is running"}},
		{name: "cores changed by hand", vmid: 9101, setup: set("cores", "4"), state: provisioner.Degraded, problems: []string{"config drift: cores 4, want 2"}},
		{name: "memory changed by hand", vmid: 9101, setup: set("memory", "4096"), state: provisioner.Degraded, problems: []string{"config drift: memory 4096, want 2048"}},
		{name: "address changed by hand", vmid: 9101, setup: set("net0", strings.Replace(fresh.Config["net0"], "ip=10.1.10.91/24", "ip=10.1.10.99/24", 1)),
			state: provisioner.Degraded, problems: []string{"config drift: ip 10.1.10.99/24, want 10.1.10.91/24"}},
		{name: "tag removed", vmid: 9101, setup: set("tags", "web"), state: provisioner.Degraded, problems: []string{"config drift: the cloudpod tag is missing"}},
		// Asked to look inside and unable to: not known to be healthy.
		{name: "console in tty mode, deep", vmid: 9101, deep: true, setup: set("cmode", "tty"), state: provisioner.Unknown,
			warning: "deep checks skipped: the console of CT 9101 gave no shell within 3s (configured cmode tty)"},
		{name: "guest without marker", vmid: 9150, state: provisioner.Down, problems: []string{"CT is stopped", "no cloudpods marker"}},
		{name: "no such CT", vmid: 9199, state: provisioner.Down, problems: []string{"CT 9199 does not exist on node pve"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				defer tt.setup(t)()
			}
			h, err := l.prov.Health(context.Background(), "pve", tt.vmid, tt.deep)
			if err != nil {
				t.Fatalf("health: %v", err)
			}
			if h.State != tt.state {
				t.Errorf("state = %s, want %s (problems %q)", h.State, tt.state, h.Problems)
			}
			got := strings.Join(h.Problems, "\n")
			if len(tt.problems) == 0 && got != "" {
				t.Errorf("problems %q, want none", h.Problems)
			}
			for _, p := range tt.problems {
				if !strings.Contains(got, p) {
					t.Errorf("problems %q, want %q", h.Problems, p)
				}
			}
			if w := strings.Join(h.Warnings, "\n"); (tt.warning == "") != (w == "") || !strings.Contains(w, tt.warning) {
				t.Errorf("warnings %q, want %q", h.Warnings, tt.warning)
			}
			if tt.deep && tt.state == provisioner.Healthy && tt.warning == "" {
				names := map[string]bool{}
				for _, c := range h.Checks {
					names[c.Name] = true
				}
				for _, want := range []string{"default route", "gateway reachable", "resolver", "dns resolution", "service nginx"} {
					if !names[want] {
						t.Errorf("deep checks %+v lack %q", h.Checks, want)
					}
				}
			}
			if tt.state == provisioner.Healthy && (h.MemMax != 2048<<20 || h.CPUs != 2 || h.DiskMax != 8<<30 || h.Tenant != "acme") {
				t.Errorf("usage and limits = %+v", h)
			}
		})
	}

	all, err := l.prov.HealthAll(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].VMID != 9101 || all[0].State != provisioner.Healthy || all[1].VMID != 9102 || all[1].State != provisioner.Down {
		t.Errorf("health --all = %+v, want 9101 healthy and 9102 down (9150 is not a CloudPod)", all)
	}
}

func TestListShowsExactlyTheCloudPods(t *testing.T) {
	l := startLifecycle(t)
	l.pod(t, 9101, "migra-client-01", 91, "acme")
	l.pod(t, 9102, "migra-client-02", 92, "acme")
	l.pod(t, 9103, "globex-web", 93, "globex")
	l.stop(t, 9102)
	must(t, l.env.Sim.AddContainer(9150, map[string]string{"hostname": "legacy", "ostype": "ubuntu", "memory": "512", "tags": "cloudpod",
		"rootfs": "clients-main:subvol-9150-disk-0,size=8G"}))
	must(t, l.env.Sim.AddVM(120, map[string]string{"name": "vm", "memory": "1024"}))
	// A marker copied along with a clone made outside cloudpods does not
	// make the copy a CloudPod.
	pod1, _ := l.env.Sim.Guest(9101)
	must(t, l.env.Sim.AddContainer(9160, map[string]string{"hostname": "copy", "ostype": "ubuntu", "memory": "512",
		"description": pod1.Config["description"], "tags": "cloudpod", "rootfs": "clients-main:subvol-9160-disk-0,size=8G"}))
	// Tags are edited by hand; the marker still finds the pod.
	must(t, l.env.Sim.SetConfig(9103, "tags", "web"))

	tests := []struct {
		tenant, status string
		want           []int
	}{
		{want: []int{9101, 9102, 9103}},
		{tenant: "acme", want: []int{9101, 9102}},
		{tenant: "globex", want: []int{9103}},
		{tenant: "initech"},
		{status: "running", want: []int{9101, 9103}},
		{status: "stopped", want: []int{9102}},
		{tenant: "acme", status: "running", want: []int{9101}},
	}
	for _, tt := range tests {
		t.Run("tenant="+tt.tenant+",status="+tt.status, func(t *testing.T) {
			pods, err := l.prov.List(context.Background(), tt.tenant, tt.status)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, p := range pods {
				got = append(got, p.VMID)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("list = %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("list = %v, want %v", got, tt.want)
				}
			}
		})
	}
	pods, err := l.prov.List(context.Background(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	p := pods[0]
	if p.Hostname != "migra-client-01" || p.IP != "10.1.10.91" || p.Tenant != "acme" || p.Node != "pve" || p.Status != "running" || p.State != "ready" || p.Created.IsZero() {
		t.Errorf("row = %+v", p)
	}
}
