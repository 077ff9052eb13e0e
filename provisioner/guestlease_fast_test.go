package provisioner_test

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/ipam"
	"github.com/migrahosting/cloudpods/provisioner"
)

// The reserve step of the guest-making flows beyond create
// (guestlease.go), on ct create and vm create against the fake with IPAM
// over a registry file.

// stepMessage is the message of step's event in phase ("" when none).
func (e *events) stepMessage(step string, phase provisioner.Phase) string {
	for _, ev := range e.list {
		if ev.Step == step && ev.Phase == phase {
			return ev.Message
		}
	}
	return ""
}

func TestCTCreateLeases(t *testing.T) {
	pod := provisioner.LeaseOwner("", "pod1")
	tests := []struct {
		name string
		net  string
		// held is a reservation another run holds before ct create.
		held string
		fail string // a task type that fails after reserve
		// want: the error's kind ("" for none), the registry's state of
		// addr afterwards, the reserve step's phase and message.
		kind    provisioner.Kind
		addr    string
		state   ipam.State
		phase   provisioner.Phase
		message string
	}{
		{name: "reserved then assigned", net: "name=eth0,bridge=vmbr0,ip=10.1.10.120/24,gw=10.1.10.1",
			addr: "10.1.10.120", state: ipam.StateAssigned, phase: provisioner.PhaseDone, message: "10.1.10.120 reserved"},
		{name: "released on rollback", net: "name=eth0,bridge=vmbr0,ip=10.1.10.120/24,gw=10.1.10.1", fail: "vzstart",
			kind: provisioner.KindFailed, addr: "10.1.10.120", state: ipam.StateReleased, phase: provisioner.PhaseDone, message: "10.1.10.120 reserved"},
		{name: "held by another run", net: "name=eth0,bridge=vmbr0,ip=10.1.10.120/24,gw=10.1.10.1", held: "10.1.10.120",
			kind: provisioner.KindConflict, addr: "10.1.10.120", state: ipam.StateReserved, phase: provisioner.PhaseFail,
			message: "IPAM cannot reserve 10.1.10.120 for web1 (VMID 300): reserve web1 in pool default: address 10.1.10.120 is in use by reserved lease of pod1 (vmid 9101) owner " + pod + ": pick another ip= in --net, or free it with `cloudpod ip release 10.1.10.120` if its holder is gone"},
		{name: "outside the pool", net: "name=eth0,bridge=vmbr0,ip=10.1.10.50/24,gw=10.1.10.1",
			addr: "10.1.10.50", phase: provisioner.PhaseDone, message: "10.1.10.50 is outside IPAM's pool: no lease, IPAM leaves it alone"},
		{name: "DHCP only", net: "name=eth0,bridge=vmbr0,ip=dhcp",
			phase: provisioner.PhaseSkip, message: "no static IPv4 address to lease (eth0 by DHCP)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, _ := ctFastEnv(t)
			prov := env.provisioner(provisioner.Options{})
			ctx := context.Background()
			if tt.held != "" {
				if _, err := env.alloc.Reserve(ctx, ipam.Request{Hostname: "pod1", Owner: pod, IP: netip.MustParseAddr(tt.held)}); err != nil {
					t.Fatal(err)
				}
			}
			if tt.fail != "" {
				env.api.FailTasks(tt.fail, "startup for container '300' failed")
			}
			var ev events
			req := ctRequest(t, tt.net)
			req.Reporter = &ev
			_, err := prov.CreateCT(ctx, req)
			if got := provisioner.KindOf(err); (tt.kind == "") != (err == nil) || (err != nil && got != tt.kind) {
				t.Fatalf("err %v (kind %s), want kind %q", err, got, tt.kind)
			}
			if tt.addr != "" {
				if got := env.lease(t, tt.addr); got != tt.state {
					t.Errorf("lease of %s is %q, want %q", tt.addr, got, tt.state)
				}
			}
			if got := ev.lifecycle(provisioner.StepReserve); len(got) != 2 || got[1] != tt.phase {
				t.Errorf("reserve step %v, want start then %s", got, tt.phase)
			}
			if got := ev.stepMessage(provisioner.StepReserve, tt.phase); !strings.Contains(got, tt.message) {
				t.Errorf("reserve step says %q, want %q", got, tt.message)
			}
			switch {
			case tt.kind == provisioner.KindConflict:
				if n := len(env.api.Mutations(0)); n != 0 {
					t.Errorf("a refused reservation made %d changes in PVE", n)
				}
			case tt.fail != "":
				// The CT is deleted first, then its address released.
				calls := len(env.api.Calls())
				if got := env.addrs.entries(); len(got) != 2 || got[1] != "release 10.1.10.120 after "+strconv.Itoa(calls)+" calls" {
					t.Errorf("IPAM changes %q", got)
				}
			case tt.state == ipam.StateAssigned:
				// Reserved before the CT was made.
				made := -1
				for i, c := range env.api.Calls() {
					if c.Method == "CreateGuest" && made < 0 {
						made = i
					}
				}
				var after int
				if got := env.addrs.entries(); len(got) != 1 || !strings.HasPrefix(got[0], "reserve 10.1.10.120 after ") {
					t.Errorf("IPAM changes %q", got)
				} else if _, err := fmt.Sscanf(got[0], "reserve 10.1.10.120 after %d calls", &after); err != nil || made < 0 || after > made {
					t.Errorf("reserved after %d calls, the CT made at call %d", after, made)
				}
			}
		})
	}
}

// TestCTCreateLeaseConverges: a re-run adopts the lease of the CT PVE has,
// even from a registry that lost it, and changes nothing in PVE.
func TestCTCreateLeaseConverges(t *testing.T) {
	env, _ := ctFastEnv(t)
	prov := env.provisioner(provisioner.Options{})
	ctx := context.Background()
	req := ctRequest(t, "name=eth0,bridge=vmbr0,ip=10.1.10.120/24,gw=10.1.10.1", "name=eth1,bridge=vmbr0,ip=10.1.10.121/24")
	if _, err := prov.CreateCT(ctx, req); err != nil {
		t.Fatal(err)
	}
	for _, ip := range []string{"10.1.10.120", "10.1.10.121"} {
		if got := env.lease(t, ip); got != ipam.StateAssigned {
			t.Fatalf("after create, %s is %q", ip, got)
		}
	}
	if _, err := env.alloc.Release(ctx, ipam.Ref{VMID: 300}); err != nil {
		t.Fatal(err)
	}
	mark := env.api.CallCount()
	var ev events
	req.Reporter = &ev
	if res, err := prov.CreateCT(ctx, req); err != nil || res.Changed {
		t.Fatalf("re-run: %+v %v", res, err)
	}
	if got := env.api.Mutations(mark); len(got) != 0 {
		t.Errorf("the re-run changed %s", joined(got))
	}
	for _, ip := range []string{"10.1.10.120", "10.1.10.121"} {
		if got := env.lease(t, ip); got != ipam.StateAssigned {
			t.Errorf("after the re-run, %s is %q", ip, got)
		}
	}
	if got := ev.stepMessage(provisioner.StepReserve, provisioner.PhaseDone); got != "10.1.10.120 adopted, assigned; 10.1.10.121 adopted, assigned" {
		t.Errorf("reserve step says %q", got)
	}
	ls, err := env.alloc.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if l.State == ipam.StateAssigned && (l.VMID != 300 || l.Owner != provisioner.LeaseOwner("", "web1")) {
			t.Errorf("lease %+v", l)
		}
	}
}

// TestGuestLeaseDryRuns: the dry run says what reserve would do, and
// reserves nothing.
func TestGuestLeaseDryRuns(t *testing.T) {
	env, _ := ctFastEnv(t)
	prov := env.provisioner(provisioner.Options{})
	req := ctRequest(t, "name=eth0,bridge=vmbr0,ip=10.1.10.120/24,gw=10.1.10.1", "name=eth1,bridge=vmbr0,ip=192.168.7.2/24", "name=eth2,bridge=vmbr0,ip=dhcp")
	calls, _, err := prov.PlanCT(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range calls {
		if c.Method == "IPAM" {
			got = append(got, c.Path+" "+c.Params+" | "+c.Note)
		}
	}
	want := []string{"reserve hostname=web1 ip=10.1.10.120 vmid=300 | assigned at finalize; the dry run reserved nothing",
		"none  | 192.168.7.2 is outside IPAM's pool: no lease, IPAM leaves it alone (eth2 by DHCP)"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("planned IPAM calls\n got %q\nwant %q", got, want)
	}
	if ls, _ := env.alloc.List(context.Background()); len(ls) != 0 {
		t.Errorf("the dry run left leases %+v", ls)
	}
}

// TestVMCreateLeases: vm create holds its cloud-init address like a CT;
// a pod asking for it meanwhile is refused; destroy gives it back.
func TestVMCreateLeases(t *testing.T) {
	env, _ := vmFastEnv(t)
	prov := env.provisioner(provisioner.Options{})
	agentShows(env, 500, "10.1.10.150/24")
	ctx := context.Background()
	if _, err := prov.CreateVM(ctx, vmRequest(t)); err != nil {
		t.Fatal(err)
	}
	if got := env.lease(t, "10.1.10.150"); got != ipam.StateAssigned {
		t.Errorf("lease of 10.1.10.150 is %q", got)
	}
	_, err := env.alloc.Reserve(ctx, ipam.Request{Hostname: "pod1", Owner: provisioner.LeaseOwner("", "pod1"), IP: netip.MustParseAddr("10.1.10.150")})
	if err == nil {
		t.Error("IPAM handed the VM's address to a pod")
	}
	if _, err := prov.Destroy(ctx, provisioner.DestroyRequest{Node: "pve", VMID: 500, Force: true}); err != nil {
		t.Fatal(err)
	}
	if got := env.lease(t, "10.1.10.150"); got != ipam.StateReleased {
		t.Errorf("after destroy, the lease of 10.1.10.150 is %q", got)
	}
}

// TestRouterLeavesItsLANAlone: an OpenWrt router's reserve step skips,
// saying why.
func TestRouterLeavesItsLANAlone(t *testing.T) {
	env, _ := ctFastEnv(t)
	prov := env.provisioner(provisioner.Options{})
	s := provisioner.DefaultOpenWrtSpec()
	s.VMID, s.Hostname, s.WAN, s.LAN = 400, "gw1", "vmbr0", "vmbr0"
	s.LANVLAN, s.OSTemplate = 20, "local:vztmpl/openwrt-24.10.0-x86-64-rootfs.tar.gz"
	env.api.PutFile(s.OSTemplate, []byte("openwrt"))
	calls, _, err := prov.PlanOpenWrt(context.Background(), provisioner.OpenWrtRequest{Spec: s})
	if err != nil {
		t.Fatal(err)
	}
	var notes []string
	for _, c := range calls {
		if c.Method == "IPAM" {
			notes = append(notes, c.Note)
		}
	}
	want := []string{"no static IPv4 address to lease (the WAN asks DHCP and the LAN address 192.168.1.1/24 is the router's own network, both set inside the router)"}
	if !reflect.DeepEqual(notes, want) {
		t.Errorf("planned IPAM calls %q", notes)
	}
}

// TestDestroyReleasesEveryLease: a CT made with addresses in IPAM's pool
// holds a lease for each; destroying it gives them all back, also when its
// first NIC asks DHCP.
func TestDestroyReleasesEveryLease(t *testing.T) {
	for _, tt := range []struct {
		name     string
		nets     []string
		leased   []string
		released string
	}{
		{"two static", []string{"name=eth0,bridge=vmbr0,ip=10.1.10.120/24,gw=10.1.10.1", "name=eth1,bridge=vmbr0,ip=10.1.10.121/24"},
			[]string{"10.1.10.120", "10.1.10.121"}, "10.1.10.120"},
		{"DHCP first", []string{"name=eth0,bridge=vmbr0,ip=dhcp", "name=eth1,bridge=vmbr0,ip=10.1.10.121/24"},
			[]string{"10.1.10.121"}, "10.1.10.121"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env, _ := ctFastEnv(t)
			prov := env.provisioner(provisioner.Options{})
			ctx := context.Background()
			req := ctRequest(t, tt.nets...)
			req.DHCPWait = time.Millisecond
			if _, err := prov.CreateCT(ctx, req); err != nil {
				t.Fatal(err)
			}
			res, err := prov.Destroy(ctx, provisioner.DestroyRequest{Node: "pve", VMID: 300, Force: true})
			if err != nil {
				t.Fatal(err)
			}
			if res.Released != tt.released {
				t.Errorf("destroy says it released %q, want %q", res.Released, tt.released)
			}
			for _, ip := range tt.leased {
				if got := env.lease(t, ip); got != ipam.StateReleased {
					t.Errorf("after destroy, %s is %q, want released", ip, got)
				}
			}
		})
	}
}
