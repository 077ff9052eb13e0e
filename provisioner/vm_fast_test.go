package provisioner_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

const noble = "local:import/noble.qcow2"

func vmFastEnv(t *testing.T) (*fastEnv, *provisioner.Provisioner) {
	env, _ := contentEnv(t)
	env.api.PutFile(noble, []byte("QFI\xfb"))
	return env, env.withoutIPAM(provisioner.Options{})
}

// vmRequest is vm 500 ci1 from the import volume, on net0 with a static
// cloud-init address, the agent on, started.
func vmRequest(t *testing.T) provisioner.VMRequest {
	t.Helper()
	s := provisioner.DefaultVMSpec()
	s.VMID, s.Name, s.Image, s.DiskGB, s.BIOS, s.Agent, s.Start = 500, "ci1", noble, 16, provisioner.BIOSOVMF, true, true
	nic, err := netcfg.ParseVMNIC("name=net0,bridge=vmbr0,tag=30")
	if err != nil {
		t.Fatal(err)
	}
	s.NICs, s.IPConfigs, s.CIUser = []netcfg.VMNIC{nic}, map[int]string{0: "ip=10.1.10.150/24,gw=10.1.10.1"}, "ops"
	return provisioner.VMRequest{Spec: s, AgentWait: 50 * time.Millisecond}
}

// agentShows makes VM 500's agent report addr on the card of net0.
func agentShows(env *fastEnv, vmid int, addr string) {
	env.api.Agents = map[int][]pve.GuestInterface{vmid: {
		{Name: "lo", HWAddr: "00:00:00:00:00:00", Inet: "127.0.0.1/8"},
		{Name: "eth0", HWAddr: "bc:24:11:01:f4:00", Inet: addr},
	}}
}

func TestVMCreateOnTheFake(t *testing.T) {
	env, prov := vmFastEnv(t)
	agentShows(env, 500, "10.1.10.150/24")
	res, err := prov.CreateVM(context.Background(), vmRequest(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"CreateGuest VM 500 agent,bios,boot,ciuser,cores,cpu,description,efidisk0,ide2,ipconfig0,memory,name,net0,onboot,ostype,scsi0,scsihw,serial0,tags,vga",
		"ResizeDisk VM 500 scsi0 16G", "StartGuest VM 500", "UpdateGuestConfig VM 500 description"}
	if got := env.api.Mutations(0); !reflect.DeepEqual(got, want) {
		t.Errorf("changes\n got %s\nwant %s", joined(got), joined(want))
	}
	if !res.Changed || res.Status != "running" || res.Agent != "running" || len(res.NICs) != 1 || res.NICs[0].Address != "10.1.10.150/24" || len(res.Warnings) != 0 {
		t.Errorf("result %+v", res)
	}
	// Again: nothing to do, nothing changed.
	n := env.api.CallCount()
	res, err = prov.CreateVM(context.Background(), vmRequest(t))
	if err != nil || res.Changed || len(env.api.Mutations(n)) != 0 {
		t.Errorf("re-run: %v changed %v, changes %v", err, res.Changed, env.api.Mutations(n))
	}
}

// TestVMWithoutAnAgentIsAWarning: an image without qemu-guest-agent (the
// stock cloud images) leaves the VM running, with the reason.
func TestVMWithoutAnAgentIsAWarning(t *testing.T) {
	env, prov := vmFastEnv(t)
	res, err := prov.CreateVM(context.Background(), vmRequest(t))
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != "running" || !strings.HasPrefix(res.Agent, "not running after 50ms") || len(res.Warnings) != 1 ||
		!strings.Contains(res.Warnings[0], "did not answer within 50ms: the image likely has no qemu-guest-agent: stock cloud images ship without it") {
		t.Errorf("result %+v", res)
	}
	if _, ok := env.api.Guest(500); !ok {
		t.Error("the VM was removed")
	}
}

// TestVMCheckWithoutAnAgentRollsBack: --check needs the agent; without
// one the run fails as a timeout and removes the VM it made.
func TestVMCheckWithoutAnAgentRollsBack(t *testing.T) {
	env, prov := vmFastEnv(t)
	req := vmRequest(t)
	req.Checks = []string{"systemctl is-active ssh"}
	_, err := prov.CreateVM(context.Background(), req)
	if provisioner.KindOf(err) != provisioner.KindTimeout || !strings.Contains(err.Error(), "--check needs it") ||
		!strings.Contains(err.Error(), "rolled back: VM 500 destroyed") {
		t.Fatalf("err %v (kind %s)", err, provisioner.KindOf(err))
	}
	if _, ok := env.api.Guest(500); ok {
		t.Error("VM 500 was left")
	}
}

func TestVMChecksRunThroughTheAgent(t *testing.T) {
	env, prov := vmFastEnv(t)
	agentShows(env, 500, "10.1.10.150/24")
	var ran [][]string
	env.api.AgentRun = func(vmid int, argv []string) (string, int) {
		ran = append(ran, argv)
		if strings.Contains(argv[2], "nginx") {
			return "inactive\n", 3
		}
		return "active\n", 0
	}
	req := vmRequest(t)
	req.Checks = []string{"systemctl is-active ssh", "systemctl is-active nginx"}
	_, err := prov.CreateVM(context.Background(), req)
	if err == nil || !strings.Contains(err.Error(), "check systemctl is-active nginx: exit 3: inactive") || strings.Contains(err.Error(), "is-active ssh:") {
		t.Fatalf("err %v", err)
	}
	if len(ran) != 2 || !reflect.DeepEqual(ran[0], []string{"sh", "-c", "systemctl is-active ssh"}) {
		t.Errorf("ran %q", ran)
	}
}

// TestVMRefusedBeforeAnyCall: what the request alone says is wrong is
// refused, every problem named, PVE never asked.
func TestVMRefusedBeforeAnyCall(t *testing.T) {
	env, prov := vmFastEnv(t)
	req := vmRequest(t)
	req.Spec.Image = "local:iso/noble.iso"
	req.Spec.BIOS = "uefi"
	req.Spec.IPConfigs[1] = "ip=dhcp"
	req.Spec.HostPCI = []string{"0000:01:00.0"}
	req.Spec.USB = []string{"mapping=key0,usb3=1", "host=spice"}
	_, err := prov.CreateVM(context.Background(), req)
	if provisioner.KindOf(err) != provisioner.KindInvalid {
		t.Fatalf("err %v (kind %s)", err, provisioner.KindOf(err))
	}
	for _, want := range []string{"local:iso/noble.iso is an ISO volume", `--bios "uefi"`, "--ipconfig1 has no card: add --net name=net1",
		`--hostpci 0000:01:00.0: PVE says "only root can set 'hostpci0' config for non-mapped devices"`,
		`--usb host=spice: PVE says "only root can set 'usb1' config for real devices"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if n := env.api.CallCount(); n != 0 {
		t.Errorf("%d calls to PVE: %v", n, env.api.Calls())
	}
}

func TestVMImportNeedsPVE84(t *testing.T) {
	env, prov := vmFastEnv(t)
	env.api.Release = "8.3"
	_, err := prov.CreateVM(context.Background(), vmRequest(t))
	if provisioner.KindOf(err) != provisioner.KindPreflight || !strings.Contains(err.Error(), "PVE 8.3 cannot take noble.qcow2 as an import volume: content type import for qcow2, raw and vmdk images came with PVE 8.4") {
		t.Fatalf("err %v", err)
	}
	_, err = prov.FetchContent(context.Background(), provisioner.ContentRequest{Node: "pve", Storage: "local", Content: "import",
		URL: "https://images.example/x.raw", Checksum: pve.Checksum{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}})
	if err == nil || !strings.Contains(err.Error(), "PVE 8.3 cannot take x.raw as an import volume") {
		t.Fatalf("image download on 8.3: %v", err)
	}
}

// TestVMAgentPrivilegesPerVersion: the guest agent needs VM.Monitor on PVE
// 8.4 and VM.GuestAgent.* on 9; preflight names what is missing.
func TestVMAgentPrivilegesPerVersion(t *testing.T) {
	for _, tt := range []struct {
		release string
		drop    []string
		checks  bool
		want    string
	}{
		{"8.4", []string{"VM.Monitor"}, false, "the API token lacks VM.Monitor on /vms/500"},
		{"9.1", []string{"VM.GuestAgent.Audit", "VM.GuestAgent.Unrestricted"}, false, "the API token lacks VM.GuestAgent.Audit on /vms/500 (or VM.GuestAgent.Unrestricted on /vms/500)"},
		{"9.1", []string{"VM.GuestAgent.Unrestricted"}, true, "the API token lacks VM.GuestAgent.Unrestricted on /vms/500"},
	} {
		env, prov := vmFastEnv(t)
		env.api.Release = tt.release
		perms := map[string]bool{"VM.Monitor": true, "VM.GuestAgent.Audit": true, "VM.GuestAgent.Unrestricted": true, "VM.Config.HWType": true, "VM.Config.Cloudinit": true}
		for p := range env.api.Perms["/"] {
			perms[p] = true
		}
		for _, d := range tt.drop {
			delete(perms, d)
		}
		env.api.Perms = pve.Permissions{"/": perms}
		req := vmRequest(t)
		if tt.checks {
			req.Checks = []string{"true"}
		}
		_, err := prov.CreateVM(context.Background(), req)
		if provisioner.KindOf(err) != provisioner.KindPreflight || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s without %v: %v", tt.release, tt.drop, err)
		}
	}
}

// TestVMTemplateStartsTheVMAgainWhenTheConversionFails: the conversion's
// undo restarts the VM this run stopped.
func TestVMTemplateStartsTheVMAgainWhenTheConversionFails(t *testing.T) {
	env, prov := vmFastEnv(t)
	agentShows(env, 500, "10.1.10.150/24")
	if _, err := prov.CreateVM(context.Background(), vmRequest(t)); err != nil {
		t.Fatal(err)
	}
	env.api.FailTasks("qmtemplate", "you can't convert a VM to template if VM is running")
	_, err := prov.TemplateVM(context.Background(), provisioner.VMTemplateRequest{Node: "pve", VMID: 500})
	if err == nil || !strings.Contains(err.Error(), "rolled back: VM 500 started again") {
		t.Fatalf("err %v", err)
	}
	if g, _ := env.api.Guest(500); g.Status != "running" || g.Config["template"] == "1" {
		t.Errorf("VM 500 %s, template %q", g.Status, g.Config["template"])
	}
	res, err := prov.TemplateVM(context.Background(), provisioner.VMTemplateRequest{Node: "pve", VMID: 500})
	if err != nil || !res.Template || !res.Changed {
		t.Fatalf("second try: %+v %v", res, err)
	}
	if res, err = prov.TemplateVM(context.Background(), provisioner.VMTemplateRequest{Node: "pve", VMID: 500}); err != nil || res.Changed {
		t.Errorf("third: %+v %v", res, err)
	}
}

func TestSSHKeysParamIsPercentEncoded(t *testing.T) {
	got := provisioner.SSHKeysParam("# mine\nssh-ed25519 AAAA+b/c= ops@laptop\n\nssh-rsa BBBB ci@runner\n")
	if want := "ssh-ed25519%20AAAA%2Bb%2Fc%3D%20ops%40laptop%0Assh-rsa%20BBBB%20ci%40runner"; got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}

func TestImageContentFor(t *testing.T) {
	for name, want := range map[string]string{"debian-12.iso": "iso", "noble.qcow2": "import", "x.raw": "import", "a.vmdk": "import", "b.ova": "import",
		"noble-server-cloudimg-amd64.img": "--content import and --filename NAME.qcow2", "x.tar.gz": "neither an ISO"} {
		got, err := provisioner.ImageContentFor(name)
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, want) {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}

func TestVMClonePicksTheTemplatesResources(t *testing.T) {
	env, prov := vmFastEnv(t)
	agentShows(env, 500, "10.1.10.150/24")
	if _, err := prov.CreateVM(context.Background(), vmRequest(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := prov.TemplateVM(context.Background(), provisioner.VMTemplateRequest{Node: "pve", VMID: 500}); err != nil {
		t.Fatal(err)
	}
	s := provisioner.DefaultVMSpec()
	s.VMID, s.Template, s.Linked, s.Start, s.Storage = 501, 500, true, true, "clients-main"
	_, err := prov.CloneVM(context.Background(), provisioner.VMRequest{Spec: s})
	if provisioner.KindOf(err) != provisioner.KindInvalid || !strings.Contains(err.Error(), "--storage applies to full clones only") {
		t.Fatalf("linked with --storage: %v", err)
	}
	s.Storage, s.IPConfigs = "", map[int]string{0: "ip=10.1.10.151/24,gw=10.1.10.1", 3: "ip=dhcp"}
	_, err = prov.CloneVM(context.Background(), provisioner.VMRequest{Spec: s})
	if !errors.Is(err, provisioner.ErrInvalidSpec) || !strings.Contains(err.Error(), "--ipconfig3: template VM 500 has no net3 card") {
		t.Fatalf("ipconfig3: %v", err)
	}
	delete(s.IPConfigs, 3)
	env.api.Agents[501] = []pve.GuestInterface{{Name: "eth0", HWAddr: "bc:24:11:01:f5:00", Inet: "10.1.10.151/24"}}
	res, err := prov.CloneVM(context.Background(), provisioner.VMRequest{Spec: s, AgentWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Name != "ci1-501" || res.Agent != "running" || res.NICs[0].Address != "10.1.10.151/24" {
		t.Errorf("clone %+v", res)
	}
	g, _ := env.api.Guest(501)
	m, _ := provisioner.ParseMarker(g.Config["description"])
	if m.Spec.Cores != 1 || m.Spec.MemoryMB != 1024 || m.Spec.Address != "10.1.10.151/24" || m.State != "ready" {
		t.Errorf("clone's marker %+v", m)
	}
}

// TestVMCloneNeedsVMCloneOnTheTemplate: a clone is PVE's clone_vm, checked
// as PVE checks it: VM.Clone on the template.
func TestVMCloneNeedsVMCloneOnTheTemplate(t *testing.T) {
	env, prov := vmFastEnv(t)
	agentShows(env, 500, "10.1.10.150/24")
	if _, err := prov.CreateVM(context.Background(), vmRequest(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := prov.TemplateVM(context.Background(), provisioner.VMTemplateRequest{Node: "pve", VMID: 500}); err != nil {
		t.Fatal(err)
	}
	perms := map[string]bool{}
	for p := range env.api.Perms["/"] {
		perms[p] = p != "VM.Clone"
	}
	env.api.Perms = pve.Permissions{"/": perms}
	s := provisioner.DefaultVMSpec()
	s.VMID, s.Template, s.Linked = 501, 500, true
	_, err := prov.CloneVM(context.Background(), provisioner.VMRequest{Spec: s})
	if provisioner.KindOf(err) != provisioner.KindPreflight || !strings.Contains(err.Error(), "the API token lacks VM.Clone on /vms/500") {
		t.Fatalf("err %v", err)
	}
	if _, ok := env.api.Guest(501); ok {
		t.Error("VM 501 was made")
	}
}
