package ipam

import (
	"context"
	"errors"
	"testing"
)

// TestOwnVMID: a guest whose VMID is its own (ct create, a VM) leases its
// addresses whatever IPAM's VMID range, several of them, and adopting one
// keeps the others.
func TestOwnVMID(t *testing.T) {
	env := newTestEnv(t, smallPool(), DefaultVMIDs())
	ctx := context.Background()
	req := Request{Hostname: "web1", Owner: "o", IP: addr("10.1.10.91"), VMID: 300}
	if _, err := env.alloc.Reserve(ctx, req); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("a pod's VMID outside the range: %v, want ErrOutOfRange", err)
	}
	req.OwnVMID = true
	first := env.reserve(t, req)
	req.IP = addr("10.1.10.92")
	second := env.reserve(t, req)
	if first.VMID != 300 || second.VMID != 300 || second.IP != addr("10.1.10.92") {
		t.Errorf("leases %+v %+v", first, second)
	}
	// Another owner's VMID 300 is still in use.
	if _, err := env.alloc.Reserve(ctx, Request{Hostname: "web2", Owner: "p", IP: addr("10.1.10.94"), VMID: 300, OwnVMID: true}); !errors.Is(err, ErrVMIDInUse) {
		t.Errorf("VMID 300 for another owner: %v, want ErrVMIDInUse", err)
	}
	req.IP = addr("10.1.10.91")
	if _, err := env.alloc.Adopt(ctx, req); err != nil {
		t.Fatal(err)
	}
	ls, err := env.alloc.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]State{}
	for _, l := range ls {
		states[l.IP.String()] = l.State
	}
	if states["10.1.10.91"] != StateAssigned || states["10.1.10.92"] != StateReserved {
		t.Errorf("after adopting .91: %v", states)
	}
}
