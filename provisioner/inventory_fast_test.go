package provisioner_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/pve"
	"github.com/migrahosting/cloudpods/provisioner/pvetest"
)

// addExisting puts n running CTs in the cluster, VMIDs 100 up, addresses
// outside the pods' pool.
func addExisting(f *pvetest.Fake, n int) {
	for i := range n {
		f.AddGuest(pvetest.Guest{Kind: pve.LXC, Node: "pve", VMID: 100 + i, Status: "running", Config: map[string]string{
			"hostname": fmt.Sprintf("existing-%02d", i), "cores": "1", "memory": "1024",
			"net0": fmt.Sprintf("name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:01:%02X,ip=10.1.10.%d/24,gw=10.1.10.1,type=veth", i, 20+i)}})
	}
}

// configReads counts GuestConfig calls by VMID.
func configReads(f *pvetest.Fake) map[int]int {
	out := map[int]int{}
	for _, c := range f.Calls() {
		if c.Method == "GuestConfig" {
			out[c.Guest.VMID]++
		}
	}
	return out
}

// One inventory per process: a batch's pods and the creates after it on
// the same provisioner (a service's jobs) read each existing guest's config
// once, not once per pod.
func TestPodsOfOneProcessReadEachExistingGuestOnce(t *testing.T) {
	env := newFastEnv(t)
	addExisting(env.api, 30)
	p := env.provisioner(provisioner.Options{})
	var reqs []provisioner.CreateRequest
	for i := range 6 {
		reqs = append(reqs, provisioner.CreateRequest{Spec: autoSpec(fmt.Sprintf("pod-%02d", i))})
	}
	for _, res := range p.CreateBatch(context.Background(), reqs, 6) {
		if res.Err != nil {
			t.Fatalf("pod %d: %v", res.Index, res.Err)
		}
	}
	if _, err := p.Create(context.Background(), provisioner.CreateRequest{Spec: autoSpec("later-01")}); err != nil {
		t.Fatal(err)
	}
	reads := configReads(env.api)
	for vmid := 100; vmid < 130; vmid++ {
		if reads[vmid] != 1 {
			t.Errorf("existing CT %d read %d times, want once", vmid, reads[vmid])
		}
	}
	if reads[pvetest.TemplateVMID] != 1 {
		t.Errorf("template read %d times, want once", reads[pvetest.TemplateVMID])
	}
}

// An address typed by hand into an existing guest, with nothing else about
// it changing: a process that read the cluster before sees it once that
// guest's read expires (MaxAge), or at once when the same edit changes
// something PVE's listing shows. The consistency window README and
// docs/multi-controller.md describe.
func TestAnAddressSetByHandOnAnExistingGuest(t *testing.T) {
	ctx := context.Background()
	named := func(host, ip string) provisioner.Spec {
		s := autoSpec(host)
		s.IP = netip.MustParseAddr(ip)
		return s
	}
	handSet := func(f *pvetest.Fake, set map[string]string) {
		if err := f.UpdateGuestConfig(ctx, pve.CT("pve", 105), pve.ConfigUpdate{Set: set}); err != nil {
			t.Fatal(err)
		}
	}
	const byHand = "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:01:05,ip=10.1.10.150/24,gw=10.1.10.1,type=veth"
	refused := func(t *testing.T, err error) {
		t.Helper()
		if provisioner.KindOf(err) != provisioner.KindConflict || !strings.Contains(err.Error(), "IP 10.1.10.150 is already used by CT 105") {
			t.Fatalf("err = %v, want the hand-set address refused", err)
		}
	}

	for _, tt := range []struct {
		name   string
		maxAge time.Duration
		edit   map[string]string
		wait   time.Duration
		seen   bool
	}{
		{name: "seen once the guest's read expires", maxAge: 30 * time.Millisecond, edit: map[string]string{"net0": byHand},
			wait: 40 * time.Millisecond, seen: true},
		{name: "seen at once when the listing shows the edit", edit: map[string]string{"net0": byHand, "memory": "2048"}, seen: true},
		{name: "unseen within MaxAge otherwise", edit: map[string]string{"net0": byHand}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := newFastEnv(t)
			addExisting(env.api, 10)
			p := env.provisioner(provisioner.Options{Inventory: provisioner.InventoryOptions{MaxAge: tt.maxAge}})
			if _, err := p.Create(ctx, provisioner.CreateRequest{Spec: autoSpec("first-01")}); err != nil {
				t.Fatal(err)
			}
			handSet(env.api, tt.edit)
			time.Sleep(tt.wait)
			_, err := p.Create(ctx, provisioner.CreateRequest{Spec: named("second-01", "10.1.10.150")})
			if tt.seen {
				refused(t, err)
				return
			}
			if err != nil {
				t.Fatalf("err = %v: the window closed before MaxAge; update README and docs/multi-controller.md", err)
			}
			// A new process reads every config: the address is refused.
			fresh := env.provisioner(provisioner.Options{})
			_, err = fresh.Create(ctx, provisioner.CreateRequest{Spec: named("third-01", "10.1.10.150")})
			refused(t, err)
		})
	}
}
