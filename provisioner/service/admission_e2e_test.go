package service

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/ipam"
)

// reservedLeases are the registry's reservations still in force.
func (ls *liveService) reservedLeases() []ipam.Lease {
	ls.t.Helper()
	var out []ipam.Lease
	for _, l := range ls.leases() {
		if l.State == ipam.StateReserved {
			out = append(out, l)
		}
	}
	return out
}

// TestRefusedCreatesLeaveNoLease: twenty automatic creates the service
// refuses — five whose IPAM pair a queued job already holds (refused after
// the reservation, which is given back), five whose hostname a job holds,
// five on a full queue, five during a shutdown — leave no reservation in
// the registry. The jobs run a gate that holds them, so they stay active;
// the allocator is the real provisioner with its IPAM registry.
func TestRefusedCreatesLeaveNoLease(t *testing.T) {
	g := newGate()
	flows := newFakeFlows()
	flows.create = g.create
	ls := startLive(t, liveOptions{tune: func(o *Options) { o.Flows, o.Workers, o.QueueSize = flows, 1, 3 }})
	refused := 0
	refuse := func(body string, status int, why string) {
		t.Helper()
		code, h, b := ls.call("POST", Base, body)
		if code != status || !strings.Contains(string(b), why) {
			t.Fatalf("POST %s: %d %s; want %d saying %q", body, code, b, status, why)
		}
		if status == http.StatusServiceUnavailable && h.Get("Retry-After") == "" {
			t.Errorf("503 without Retry-After")
		}
		refused++
		if r := ls.reservedLeases(); len(r) != 0 {
			t.Fatalf("after refusal %d (%s): reserved leases %+v", refused, body, r)
		}
	}
	auto := func(host, tenant string) string {
		return fmt.Sprintf(`{"tenantId":%q,"hostname":%q,"cores":1,"memoryMb":512}`, tenant, host)
	}
	// A runs (held in the gate); B waits. Both chose their numbers, which
	// IPAM learns only when their reserve steps run: IPAM's first free
	// pair is A's.
	ls.create(`{"tenantId":"acme","vmid":9101,"ip":"10.1.10.91","hostname":"a","cores":1,"memoryMb":512}`)
	<-g.blocked
	ls.create(`{"tenantId":"acme","vmid":9201,"ip":"10.1.10.201","hostname":"b","cores":1,"memoryMb":512}`)

	for i := range 5 {
		refuse(auto(fmt.Sprintf("late-%d", i), "acme"), http.StatusConflict, "VMID 9101")
	}
	for i := range 5 {
		refuse(auto([]string{"A", "a", "B", "b", "A"}[i], fmt.Sprintf("t-%d", i)), http.StatusConflict, "already holds")
	}
	ls.create(`{"tenantId":"acme","vmid":9202,"ip":"10.1.10.202","hostname":"c","cores":1,"memoryMb":512}`)
	ls.create(`{"tenantId":"acme","vmid":9203,"ip":"10.1.10.203","hostname":"d","cores":1,"memoryMb":512}`)
	for i := range 5 {
		refuse(auto(fmt.Sprintf("full-%d", i), "acme"), http.StatusServiceUnavailable, "queue is full")
	}
	// A shutdown waits for the gate's job to reach a step boundary; until
	// then the service refuses new jobs.
	stopped := make(chan error, 1)
	srvShutdown(t, ls, stopped)
	for i := range 5 {
		refuse(auto(fmt.Sprintf("late-stop-%d", i), "acme"), http.StatusServiceUnavailable, "shutting down")
	}
	close(g.release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if refused != 20 {
		t.Fatalf("%d refusals, want 20", refused)
	}
	// The five refused after their reservation (their 409 names the VMID
	// IPAM gave them, 9101) gave it back: IPAM handed each the same pair
	// again, so the registry keeps the last one, released.
	reg, err := ipam.NewFileStore(ls.ipamFile).Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	last := false
	for _, l := range reg.Leases {
		if l.Hostname == "late-4" && l.VMID == 9101 && l.State == ipam.StateReleased {
			last = true
		}
	}
	if !last {
		t.Errorf("no released lease of late-4 at 9101 in the registry: %+v", reg.Leases)
	}
}

// srvShutdown begins the live service's shutdown (its HTTP listener keeps
// serving) and waits until the service refuses new jobs.
func srvShutdown(t *testing.T, ls *liveService, done chan<- error) {
	t.Helper()
	go func() { done <- ls.srv.Shutdown(context.Background()) }()
	deadline := time.Now().Add(5 * time.Second)
	for !ls.srv.isStopping() {
		if time.Now().After(deadline) {
			t.Fatal("the service did not begin to stop")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCreateAboveTheNodeIsRefused: memory, swap or cores beyond what PVE
// reports for the node are a 400 naming the limit, before any job exists.
func TestCreateAboveTheNodeIsRefused(t *testing.T) {
	ls := startLive(t, liveOptions{})
	for _, tt := range []struct{ body, field, want string }{
		{`{"tenantId":"acme","hostname":"big","cores":1,"memoryMb":9223372036854775807}`, "memoryMb", "more than node pve has (131072 MB): ask for at most 131072"},
		{`{"tenantId":"acme","hostname":"big","cores":1,"memoryMb":512,"swapMb":131073}`, "swapMb", "more than node pve's memory (131072 MB)"},
		{`{"tenantId":"acme","hostname":"big","cores":17,"memoryMb":512}`, "cores", "more than node pve has (16 CPUs)"},
	} {
		code, _, b := ls.call("POST", Base, tt.body)
		var e errorBody
		_ = json.Unmarshal(b, &e)
		if code != http.StatusBadRequest || !strings.Contains(e.Errors[tt.field], tt.want) {
			t.Errorf("%s: %d %s; want 400 with %s saying %q", tt.body, code, b, tt.field, tt.want)
		}
	}
	if len(ls.made()) != 0 || len(ls.leases()) != 0 {
		t.Errorf("refused creates made %v and leases %v", ls.made(), ls.leases())
	}
}
