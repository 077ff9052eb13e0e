package provisioner_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/provisioner"
)

// A batch whose VMIDs and addresses IPAM picks hands them out in the
// batch's order (pod-01 the lowest), whatever order its pods' goroutines
// run in, and with fewer slots than pods; a pod that fails before it
// reserves does not hold the others up.
func TestBatchReservesInOrder(t *testing.T) {
	for _, concurrency := range []int{1, 3, 8} {
		t.Run(fmt.Sprintf("concurrency %d", concurrency), func(t *testing.T) {
			env := newFastEnv(t)
			p := env.provisioner(provisioner.Options{})
			var reqs []provisioner.CreateRequest
			for i := 1; i <= 8; i++ {
				spec := autoSpec(fmt.Sprintf("pod-%02d", i))
				if i == 3 {
					spec.Template = 4242 // no such template: fails in preflight, before reserving
				}
				reqs = append(reqs, provisioner.CreateRequest{Spec: spec})
			}
			results := p.CreateBatch(context.Background(), reqs, concurrency)
			lastVMID, lastIP := 0, netip.Prefix{}
			for _, res := range results {
				if res.Index == 2 {
					if res.Err == nil {
						t.Fatalf("pod-03 with a missing template succeeded")
					}
					continue
				}
				if res.Err != nil {
					t.Fatalf("%s: %v", reqs[res.Index].Spec.Hostname, res.Err)
				}
				r := res.Result
				ip, err := netip.ParsePrefix(r.IP)
				if err != nil {
					t.Fatalf("%s: address %q: %v", r.Hostname, r.IP, err)
				}
				if r.VMID <= lastVMID || (lastIP.IsValid() && ip.Addr().Compare(lastIP.Addr()) <= 0) {
					t.Errorf("%s got CT %d %s after CT %d %s: not in the batch's order", r.Hostname, r.VMID, ip, lastVMID, lastIP)
				}
				lastVMID, lastIP = r.VMID, ip
			}
		})
	}
}

// A pod of the batch that exists already (a re-run) passes its turn when it
// has adopted its lease, not when its whole run ends: the next pod reserves
// while it is still in a later step.
func TestBatchTurnPassesAtAnExistingPodsReserve(t *testing.T) {
	env := newFastEnv(t)
	p := env.provisioner(provisioner.Options{})
	ctx := context.Background()
	first := provisioner.CreateRequest{Spec: autoSpec("pod-01")}
	if _, err := p.Create(ctx, first); err != nil {
		t.Fatal(err)
	}
	reserved := make(chan struct{})
	blocked := make(chan bool, 1)
	// pod-01 stays in its verify step until pod-02 has reserved.
	first.Reporter = at(provisioner.StepVerify, provisioner.PhaseStart, func() {
		select {
		case <-reserved:
			blocked <- false
		case <-time.After(20 * time.Second):
			blocked <- true
		}
	})
	second := provisioner.CreateRequest{Spec: autoSpec("pod-02"),
		Reporter: at(provisioner.StepReserve, provisioner.PhaseDone, func() { close(reserved) })}
	for _, res := range p.CreateBatch(ctx, []provisioner.CreateRequest{first, second}, 2) {
		if res.Err != nil {
			t.Fatalf("%s: %v", res.Result.Hostname, res.Err)
		}
	}
	if <-blocked {
		t.Error("pod-02 could not reserve while the existing pod-01 was in its verify step")
	}
}
