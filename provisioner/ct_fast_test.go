package provisioner_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner"
)

func TestParseFeatures(t *testing.T) {
	tests := []struct {
		in           []string
		unprivileged bool
		want         []string
		err          string
	}{
		{in: []string{"nesting=1"}, unprivileged: true, want: []string{"nesting=1"}},
		{in: []string{"nesting=1", ""}, unprivileged: true, want: []string{"nesting=1"}},
		{in: nil, unprivileged: false, want: nil},
		{in: []string{"nesting=1,keyctl=1"}, unprivileged: true, err: "--features keyctl=1: PVE lets only root@pam set keyctl"},
		{in: []string{"fuse=1"}, unprivileged: true, err: "--features fuse=1: PVE lets only root@pam set fuse"},
		{in: []string{"mount=nfs;cifs"}, unprivileged: true, err: "PVE lets only root@pam set mount"},
		{in: []string{"nesting=1"}, unprivileged: false, err: "only root@pam set features on a privileged container"},
		{in: []string{"nesting=2"}, unprivileged: true, err: "--features nesting=2 is not valid: use 1 or 0"},
		{in: []string{"tun=1"}, unprivileged: true, err: "--features key tun is not a PVE container feature"},
		{in: []string{"nesting"}, unprivileged: true, err: `--features "nesting" is not key=value`},
		{in: []string{"nesting=1", "nesting=0"}, unprivileged: true, err: "--features key nesting appears twice"},
	}
	for _, tt := range tests {
		got, err := provisioner.ParseFeatures(tt.in, tt.unprivileged)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || provisioner.KindOf(err) != provisioner.KindInvalid {
				t.Errorf("%q (unprivileged %v): err %v, want %q (invalid)", tt.in, tt.unprivileged, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q: %v %v, want %v", tt.in, got, err, tt.want)
		}
	}
}

func ctFastEnv(t *testing.T) (*fastEnv, *provisioner.Provisioner) {
	env, _ := contentEnv(t)
	env.api.PutFile("local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst", []byte("debian"))
	return env, env.withoutIPAM(provisioner.Options{})
}

func ctRequest(t *testing.T, nets ...string) provisioner.CTRequest {
	s := provisioner.DefaultCTSpec()
	s.VMID, s.Hostname, s.OSTemplate, s.Features, s.Start = 300, "web1", "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst", []string{"nesting=1"}, true
	for _, n := range nets {
		nic, err := netcfg.ParseNIC(n)
		if err != nil {
			t.Fatal(err)
		}
		s.NICs = append(s.NICs, nic)
	}
	return provisioner.CTRequest{Spec: s, DHCPWait: 10 * time.Millisecond}
}

func TestCTCreateOnTheFake(t *testing.T) {
	env, prov := ctFastEnv(t)
	req := ctRequest(t, "name=eth0,bridge=vmbr0,ip=dhcp", "name=eth1,bridge=vmbr0,ip=10.1.10.120/24")
	res, err := prov.CreateCT(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"CreateGuest CT 300 cores,description,features,hostname,memory,net0,net1,onboot,ostemplate,rootfs,swap,tags,unprivileged",
		"StartGuest CT 300", "UpdateGuestConfig CT 300 description"}
	if got := env.api.Mutations(0); !reflect.DeepEqual(got, want) {
		t.Errorf("changes\n got %s\nwant %s", joined(got), joined(want))
	}
	if !res.Changed || res.Status != "running" || res.Storage != "clients-main" || len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "eth0 asked for DHCP") {
		t.Errorf("result %+v", res)
	}
	g, _ := env.api.Guest(300)
	if g.Config["unprivileged"] != "1" || g.Config["features"] != "nesting=1" || g.Config["rootfs"] != "clients-main:subvol-300-disk-0,size=8G" {
		t.Errorf("config %v", g.Config)
	}
	if m, ok := provisioner.ParseMarker(g.Config["description"]); !ok || m.State != "ready" || m.VMID != 300 {
		t.Errorf("marker %+v", m)
	}

	mark := env.api.CallCount()
	if res, err := prov.CreateCT(context.Background(), req); err != nil || res.Changed {
		t.Fatalf("re-run: %+v %v", res, err)
	}
	if got := env.api.Mutations(mark); len(got) != 0 {
		t.Errorf("the re-run changed %s", joined(got))
	}
}

func TestCTCreateRefusesBeforeAnyCall(t *testing.T) {
	env, prov := ctFastEnv(t)
	req := ctRequest(t, "name=eth0,bridge=vmbr0,ip=dhcp")
	req.Spec.Features = []string{"nesting=1,keyctl=1"}
	_, err := prov.CreateCT(context.Background(), req)
	if provisioner.KindOf(err) != provisioner.KindInvalid || env.api.CallCount() != 0 {
		t.Errorf("keyctl: %v (kind %s), %d calls", err, provisioner.KindOf(err), env.api.CallCount())
	}
}

func TestCTCreateRollsBackOnTheFake(t *testing.T) {
	env, prov := ctFastEnv(t)
	env.api.FailTasks("vzstart", "startup for container '300' failed")
	_, err := prov.CreateCT(context.Background(), ctRequest(t, "name=eth0,bridge=vmbr0,ip=10.1.10.120/24,gw=10.1.10.1"))
	if err == nil || !strings.Contains(err.Error(), "rolled back: CT 300 destroyed") || provisioner.KindOf(err) != provisioner.KindFailed {
		t.Fatalf("failed start: %v", err)
	}
	if _, ok := env.api.Guest(300); ok {
		t.Error("CT 300 is left")
	}
	got := env.api.Mutations(0)
	if len(got) < 2 || !strings.HasPrefix(got[0], "CreateGuest CT 300") || got[len(got)-1] != "DeleteGuest CT 300" {
		t.Errorf("changes %s", joined(got))
	}
}

func TestCTCreateDryRunSaysWhy(t *testing.T) {
	env, prov := ctFastEnv(t)
	req := ctRequest(t, "name=eth0,bridge=vmbr0,ip=dhcp")
	req.Spec.Password = "s3cret-pw"
	calls, reasons, err := prov.PlanCT(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := env.api.Mutations(0); len(got) != 0 {
		t.Errorf("the dry run changed %s", joined(got))
	}
	var create string
	for _, c := range calls {
		if c.Method == "POST" && c.Path == "/nodes/pve/lxc" {
			create = c.Params
		}
	}
	if !strings.Contains(create, "unprivileged=1") || !strings.Contains(create, "password=(from --password-file)") || strings.Contains(create, "s3cret") {
		t.Errorf("planned create: %q", create)
	}
	if len(reasons) != 2 || !strings.Contains(reasons[0], "sent as unprivileged=1") || !strings.Contains(reasons[1], "storage clients-main: the active rootdir storage with the most room") {
		t.Errorf("reasons %q", reasons)
	}
}
