package provisioner_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/internal/simtest"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

func seedSpec(vmid int, host string, octet int) provisioner.Spec {
	s := provisioner.DefaultSpec()
	s.VMID, s.Hostname = vmid, host
	s.IP, _ = netcfg.HostInSubnet(s.Subnet, octet)
	return s
}

// events collects progress for assertions.
type events struct{ list []provisioner.Event }

func (e *events) Report(ev provisioner.Event) { e.list = append(e.list, ev) }

func (e *events) phases(step string) []provisioner.Phase {
	var out []provisioner.Phase
	for _, ev := range e.list {
		if ev.Step == step {
			out = append(out, ev.Phase)
		}
	}
	return out
}

func TestCreateSeedExampleEndToEnd(t *testing.T) {
	env := simtest.Start(t, nil)
	audit := &provisioner.AuditLog{Path: filepath.Join(t.TempDir(), "audit.log"), Requester: "ops", TokenID: simtest.TokenID}
	prov := simtest.Provisioner(env.API, provisioner.Options{Audit: audit})
	spec := seedSpec(9101, "migra-client-01", 91)
	var ev events
	res, err := prov.Create(context.Background(), provisioner.CreateRequest{Spec: spec, Reporter: &ev})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if res.VMID != 9101 || res.IP != "10.1.10.91/24" || res.Status != "running" || !res.Changed {
		t.Errorf("result = %+v", res)
	}
	g, ok := env.Sim.Guest(9101)
	if !ok {
		t.Fatal("CT 9101 does not exist in the simulator")
	}
	if g.Status != "running" || g.Lock != "" {
		t.Errorf("CT 9101 status %q lock %q", g.Status, g.Lock)
	}
	n, err := netcfg.ParseNet0(g.Config["net0"])
	if err != nil {
		t.Fatalf("net0 %q: %v", g.Config["net0"], err)
	}
	// firewall=1 carries over from the template's net0.
	if n.IP != "10.1.10.91/24" || n.GW != "10.1.10.1" || n.Bridge != "vmbr0" || n.Name != "eth0" || n.HWAddr == "" || !n.Firewall {
		t.Errorf("net0 = %q", g.Config["net0"])
	}
	for key, want := range map[string]string{"cores": "2", "memory": "2048", "swap": "512", "hostname": "migra-client-01", "nameserver": "10.1.10.1"} {
		if g.Config[key] != want {
			t.Errorf("config %s = %q, want %q", key, g.Config[key], want)
		}
	}
	if !strings.Contains(g.Config["tags"], "cloudpod") {
		t.Errorf("tags = %q, want the cloudpod tag", g.Config["tags"])
	}
	if m, ok := provisioner.ParseMarker(g.Config["description"]); !ok || m.VMID != 9101 || m.State != "ready" {
		t.Errorf("marker = %+v, %v", m, ok)
	}
	wantNetplan, _ := netcfg.RenderNetplan(netcfg.Spec{Interface: "eth0", Bridge: "vmbr0", Address: spec.Address(), Gateway: spec.Gateway,
		Nameservers: spec.DNS, HWAddr: n.HWAddr})
	path := filepath.Join(env.Sim.RootDir(9101), "etc/netplan/50-cloud-init.yaml")
	got, err := os.ReadFile(path)
	if err != nil || string(got) != string(wantNetplan) {
		t.Errorf("netplan in the pod = %q (%v), want %q", got, err, wantNetplan)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("netplan mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}
	for _, c := range res.Checks {
		if !c.OK {
			t.Errorf("check %s failed: %s", c.Name, c.Detail)
		}
	}
	if len(res.Checks) < 4 {
		t.Errorf("checks = %+v, want eth0, route, gateway, resolver and services", res.Checks)
	}

	// The same command again converges: nothing changes.
	var ev2 events
	res2, err := prov.Create(context.Background(), provisioner.CreateRequest{Spec: spec, Reporter: &ev2})
	if err != nil {
		t.Fatalf("re-run: %v", err)
	}
	if res2.Changed {
		t.Errorf("re-run changed something: %+v", ev2.list)
	}
	for _, step := range []string{provisioner.StepClone, provisioner.StepConfigure, provisioner.StepStart, provisioner.StepNetwork} {
		if ph := ev2.phases(step); len(ph) < 2 || ph[1] != provisioner.PhaseSkip {
			t.Errorf("re-run step %s phases %v, want start then skip", step, ph)
		}
	}
	lines := readAudit(t, audit.Path)
	if len(lines) != 2 || lines[0].Outcome != "ok" || lines[0].VMID != 9101 || lines[0].IP != "10.1.10.91" || lines[0].Requester != "ops" || lines[0].TokenID != simtest.TokenID {
		t.Errorf("audit = %+v", lines)
	}
	b, _ := os.ReadFile(audit.Path)
	if strings.Contains(string(b), simtest.TokenSecret) {
		t.Error("the audit log holds the token secret")
	}
}

func readAudit(t *testing.T, path string) []provisioner.AuditEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []provisioner.AuditEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e provisioner.AuditEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

func TestCreateHighMemFlagsExample(t *testing.T) {
	env := simtest.Start(t, nil)
	prov := simtest.Provisioner(env.API, provisioner.Options{})
	spec := provisioner.DefaultSpec()
	spec.VMID, spec.Hostname, spec.IP = 9201, "migra-highmem-01", netip.MustParseAddr("10.1.10.101")
	spec.Cores, spec.MemoryMB, spec.SwapMB = 4, 8192, 2048
	if _, err := prov.Create(context.Background(), provisioner.CreateRequest{Spec: spec}); err != nil {
		t.Fatalf("create: %v", err)
	}
	g, _ := env.Sim.Guest(9201)
	for key, want := range map[string]string{"cores": "4", "memory": "8192", "swap": "2048"} {
		if g.Config[key] != want {
			t.Errorf("%s = %q, want %q", key, g.Config[key], want)
		}
	}
	if !strings.Contains(g.Config["net0"], "ip=10.1.10.101/24") {
		t.Errorf("net0 = %q", g.Config["net0"])
	}
}

func TestCreateRefusesWithOneSentenceAndCreatesNothing(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*pvesim.Config)
		setup  func(t *testing.T, env *simtest.Env)
		spec   func(s *provisioner.Spec)
		kind   error
		want   string
	}{
		{name: "template missing", spec: func(s *provisioner.Spec) { s.Template = 9999 }, kind: provisioner.ErrPreflight, want: "template CT 9999 does not exist"},
		{name: "not a template", setup: func(t *testing.T, env *simtest.Env) {
			must(t, env.Sim.AddContainer(9050, map[string]string{"hostname": "plain", "ostype": "ubuntu", "memory": "512", "rootfs": "clients-main:subvol-9050-disk-0,size=8G"}))
		}, spec: func(s *provisioner.Spec) { s.Template = 9050 }, kind: provisioner.ErrPreflight, want: "CT 9050 is not a template"},
		{name: "storage missing", spec: func(s *provisioner.Spec) { s.Storage = "nvme-fast" }, kind: provisioner.ErrPreflight, want: "storage nvme-fast does not exist"},
		{name: "storage without rootdir", spec: func(s *provisioner.Spec) { s.Storage = "vzdump-backups" }, kind: provisioner.ErrPreflight, want: "does not hold container volumes"},
		{name: "storage without room", setup: func(t *testing.T, env *simtest.Env) {
			must(t, env.Sim.SetConfig(9000, "rootfs", "clients-main:subvol-9000-disk-0,size=4000G"))
		}, kind: provisioner.ErrPreflight, want: "free but the rootfs needs 3.9 TiB"},
		{name: "bridge missing", spec: func(s *provisioner.Spec) { s.Bridge = "vmbr9" }, kind: provisioner.ErrPreflight, want: "bridge vmbr9 does not exist"},
		{name: "node missing", spec: func(s *provisioner.Spec) { s.Node = "pve2" }, kind: provisioner.ErrPreflight, want: `node "pve2" is not in the cluster`},
		{name: "vmid taken by a guest not ours", setup: func(t *testing.T, env *simtest.Env) {
			must(t, env.Sim.AddContainer(9101, map[string]string{"hostname": "someone-else", "ostype": "ubuntu", "memory": "512", "rootfs": "clients-main:subvol-9101-disk-0,size=8G"}))
		}, kind: provisioner.ErrConflict, want: "not created by cloudpods"},
		{name: "vmid taken by a VM", setup: func(t *testing.T, env *simtest.Env) {
			must(t, env.Sim.AddVM(9101, map[string]string{"name": "vm", "memory": "1024"}))
		}, kind: provisioner.ErrConflict, want: "VMID 9101 is taken"},
		{name: "ip set by hand on a VM", setup: func(t *testing.T, env *simtest.Env) {
			must(t, env.Sim.AddVM(120, map[string]string{"name": "legacy", "memory": "1024", "ipconfig0": "ip=10.1.10.91/24,gw=10.1.10.1"}))
		}, kind: provisioner.ErrConflict, want: "IP 10.1.10.91 is already used by VM 120 (legacy)"},
		{name: "ip is the gateway", spec: func(s *provisioner.Spec) { s.IP = netip.MustParseAddr("10.1.10.1") }, kind: provisioner.ErrInvalidSpec, want: "gateway"},
		{name: "ip is the template's", spec: func(s *provisioner.Spec) { s.IP = netip.MustParseAddr("10.1.10.90") }, kind: provisioner.ErrInvalidSpec, want: "10.1.10.90"},
		{name: "ip outside the subnet", spec: func(s *provisioner.Spec) { s.IP = netip.MustParseAddr("10.1.11.5") }, kind: provisioner.ErrInvalidSpec, want: "10.1.11.5"},
		{name: "hostname invalid", spec: func(s *provisioner.Spec) { s.Hostname = "migra_client" }, kind: provisioner.ErrInvalidSpec, want: "RFC 1123"},
		{name: "token lacks a privilege", mutate: func(c *pvesim.Config) {
			c.Tokens[0].Privileges = []string{"VM.Audit", "VM.Allocate", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Network", "VM.Config.Options",
				"VM.PowerMgmt", "VM.Console", "Datastore.AllocateSpace", "Datastore.Audit", "SDN.Use", "Sys.Audit"}
		}, kind: pve.ErrForbidden, want: "lacks VM.Clone on /vms/9000"},
		{name: "bad token", mutate: func(c *pvesim.Config) { c.Tokens[0].Secret = "something-else" }, kind: pve.ErrUnauthorized, want: "PVE refused the API token (401 Authentication failed!): check the token id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := simtest.Start(t, tt.mutate)
			if tt.setup != nil {
				tt.setup(t, env)
			}
			before := guestIDs(env)
			prov := simtest.Provisioner(env.API, provisioner.Options{})
			spec := seedSpec(9101, "migra-client-01", 91)
			if tt.spec != nil {
				tt.spec(&spec)
			}
			_, err := prov.Create(context.Background(), provisioner.CreateRequest{Spec: spec})
			if !errors.Is(err, tt.kind) {
				t.Fatalf("err = %v, want kind %v", err, tt.kind)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to say %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("err spans lines: %q", err)
			}
			if after := guestIDs(env); after != before {
				t.Errorf("guests changed from %s to %s", before, after)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// guestIDs lists the simulator's guests, for "nothing was created".
func guestIDs(env *simtest.Env) string {
	var ids []string
	for id := 100; id < 10000; id++ {
		if _, ok := env.Sim.Guest(id); ok {
			ids = append(ids, strconv.Itoa(id))
		}
	}
	return strings.Join(ids, ",")
}

func TestCreateRefusesADifferentSpecOnAnExistingPod(t *testing.T) {
	env := simtest.Start(t, nil)
	prov := simtest.Provisioner(env.API, provisioner.Options{})
	spec := seedSpec(9101, "migra-client-01", 91)
	if _, err := prov.Create(context.Background(), provisioner.CreateRequest{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	spec.Cores = 4
	_, err := prov.Create(context.Background(), provisioner.CreateRequest{Spec: spec})
	if !errors.Is(err, provisioner.ErrConflict) || !strings.Contains(err.Error(), "cores: 2 → 4") {
		t.Errorf("err = %v, want a conflict showing cores: 2 → 4", err)
	}
}
