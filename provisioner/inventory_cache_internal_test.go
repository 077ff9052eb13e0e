package provisioner

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/pve"
	"github.com/migrahosting/cloudpods/provisioner/pvetest"
)

// countingAPI counts listings and config reads by guest, and how many
// config reads were in flight at once; each read takes delay.
type countingAPI struct {
	*pvetest.Fake
	delay time.Duration
	// gate, when set, holds each config read until it lets one through
	// (or is closed); sent hears each read as it starts.
	gate chan struct{}
	sent chan int

	mu                    sync.Mutex
	listings              int
	reads                 map[int]int
	inFlight, maxInFlight int
	order                 []int
}

func newCountingAPI(guests int) *countingAPI {
	f := pvetest.New()
	for i := range guests {
		f.AddGuest(pvetest.Guest{Kind: pve.LXC, Node: "pve", VMID: 100 + i, Status: "running",
			Config: map[string]string{"hostname": fmt.Sprintf("g%d", i), "memory": "512",
				"net0": fmt.Sprintf("name=eth0,bridge=vmbr0,ip=10.1.20.%d/24", 10+i)}})
	}
	return &countingAPI{Fake: f, reads: map[int]int{}}
}

func (a *countingAPI) Guests(ctx context.Context) ([]pve.Guest, error) {
	a.mu.Lock()
	a.listings++
	a.mu.Unlock()
	return a.Fake.Guests(ctx)
}

func (a *countingAPI) GuestConfig(ctx context.Context, g pve.GuestRef) (pve.Config, error) {
	a.mu.Lock()
	a.reads[g.VMID]++
	a.order = append(a.order, g.VMID)
	a.inFlight++
	a.maxInFlight = max(a.maxInFlight, a.inFlight)
	a.mu.Unlock()
	// PVE reads the config when the request arrives; the answer may come
	// back later.
	cfg, err := a.Fake.GuestConfig(ctx, g)
	if a.sent != nil {
		a.sent <- g.VMID
	}
	if a.gate != nil {
		<-a.gate
	}
	time.Sleep(a.delay)
	a.mu.Lock()
	a.inFlight--
	a.mu.Unlock()
	return cfg, err
}

func (a *countingAPI) counts() (listings, reads int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, n := range a.reads {
		reads += n
	}
	return a.listings, reads
}

func (a *countingAPI) readsOf(vmid int) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reads[vmid]
}

func mustLook(t *testing.T, inv *guestInventory, lk look) map[int]*viewGuest {
	t.Helper()
	v, err := inv.look(context.Background(), lk)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestInventoryReadsEachConfigOnceWithBoundedParallelism(t *testing.T) {
	api := newCountingAPI(40)
	api.delay = 2 * time.Millisecond
	inv := newGuestInventory(api, InventoryOptions{Parallel: 3})
	v := mustLook(t, inv, look{since: time.Now()})
	if len(v) != 41 || !v[120].has(netip.MustParseAddr("10.1.20.30")) {
		t.Fatalf("first look: %d guests, guest 120 %+v", len(v), v[120])
	}
	if l, r := api.counts(); l != 1 || r != 41 || api.maxInFlight > 3 || api.maxInFlight < 2 {
		t.Fatalf("first look: %d listings, %d reads, %d at once; want 1, 41, at most 3", l, r, api.maxInFlight)
	}
	// Nothing changed: a later look lists again and reads nothing.
	mustLook(t, inv, look{since: time.Now()})
	if l, r := api.counts(); l != 2 || r != 41 {
		t.Errorf("second look: %d listings, %d reads; want 2 and still 41", l, r)
	}
	// Concurrent looks since one moment share one listing and the reads.
	since := time.Now()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mustLook(t, inv, look{since: since})
		}()
	}
	wg.Wait()
	if l, r := api.counts(); l != 3 || r != 41 {
		t.Errorf("eight concurrent looks: %d listings, %d reads; want 3 and 41", l, r)
	}
}

func TestInventoryReadsAgainWhatMayHaveChanged(t *testing.T) {
	api := newCountingAPI(5)
	inv := newGuestInventory(api, InventoryOptions{})
	mustLook(t, inv, look{since: time.Now()})
	ctx := context.Background()

	// An address typed by hand alone: the listing shows nothing, so the
	// config read before is trusted (until MaxAge, below).
	_ = api.UpdateGuestConfig(ctx, pve.CT("pve", 101), pve.ConfigUpdate{Set: map[string]string{"net0": "name=eth0,bridge=vmbr0,ip=10.1.10.95/24"}})
	v := mustLook(t, inv, look{since: time.Now()})
	if api.readsOf(101) != 1 || v[101].has(netip.MustParseAddr("10.1.10.95")) {
		t.Errorf("a change the listing does not show was read: %d reads", api.readsOf(101))
	}
	// A change the listing shows (tags, as a GUI edit of the same guest
	// would also change): read again at once.
	_ = api.UpdateGuestConfig(ctx, pve.CT("pve", 101), pve.ConfigUpdate{Set: map[string]string{"tags": "web"}})
	v = mustLook(t, inv, look{since: time.Now()})
	if api.readsOf(101) != 2 || !v[101].has(netip.MustParseAddr("10.1.10.95")) {
		t.Errorf("tags changed: %d reads of 101, addresses %v", api.readsOf(101), v[101].addrs)
	}
	// A new guest is read; a removed one leaves the view.
	api.AddGuest(pvetest.Guest{Kind: pve.QEMU, Node: "pve", VMID: 700, Config: map[string]string{"name": "vm", "ipconfig0": "ip=10.1.10.96/24"}})
	if _, err := api.DeleteGuest(ctx, pve.CT("pve", 102), pve.DeleteOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	v = mustLook(t, inv, look{since: time.Now()})
	if !v[700].has(netip.MustParseAddr("10.1.10.96")) || v[102] != nil {
		t.Errorf("new VM 700 %+v (%v), removed CT 102 %v", v[700], v[700].addrs, v[102])
	}
	if _, r := api.counts(); r != 6+1+1 {
		t.Errorf("%d reads, want 8 (6 first, 101 again, 700)", r)
	}
}

func TestInventoryReadsGuestsInTheMakingAgainAfterTheLooksStart(t *testing.T) {
	api := newCountingAPI(2)
	ctx := context.Background()
	// A pod of another controller in the making: stopped, marker provisioning.
	m := Marker{Version: 1, By: "cloudpods", State: "provisioning", VMID: 9105, Tenant: "t", Hostname: "other", RunID: "r"}
	api.AddGuest(pvetest.Guest{Kind: pve.LXC, Node: "pve", VMID: 9105, Config: map[string]string{"hostname": "other", "description": m.Description(),
		"net0": "name=eth0,bridge=vmbr0,ip=10.1.10.91/24"}})
	inv := newGuestInventory(api, InventoryOptions{})
	before := time.Now()
	mustLook(t, inv, look{since: before})
	// A look as old as the read may share it...
	mustLook(t, inv, look{since: before})
	if n := api.readsOf(9105); n != 1 {
		t.Fatalf("%d reads of the pod in the making for looks since the same moment, want 1", n)
	}
	// ...a look since a later moment (a claim after its own write) may
	// not: the pod may have written its address since.
	_ = api.UpdateGuestConfig(ctx, pve.CT("pve", 9105), pve.ConfigUpdate{Set: map[string]string{"net0": "name=eth0,bridge=vmbr0,ip=10.1.10.92/24"}})
	v := mustLook(t, inv, look{since: time.Now()})
	if api.readsOf(9105) != 2 || !v[9105].has(netip.MustParseAddr("10.1.10.92")) {
		t.Errorf("claim's look: %d reads, addresses %v", api.readsOf(9105), v[9105].addrs)
	}
	// A settled guest is not read again.
	if api.readsOf(100) != 1 {
		t.Errorf("%d reads of a settled guest", api.readsOf(100))
	}
}

// A read sent before a look's since, still in flight when the look begins,
// may have missed a write made meanwhile; once it shows its guest in the
// making, the look reads it again.
func TestInventoryReadsAgainAReadInFlightBeforeTheLook(t *testing.T) {
	api := newCountingAPI(0)
	m := Marker{Version: 1, By: "cloudpods", State: "provisioning", VMID: 9105, Tenant: "t", Hostname: "other", RunID: "r"}
	api.AddGuest(pvetest.Guest{Kind: pve.LXC, Node: "pve", VMID: 9105, Config: map[string]string{"hostname": "other", "description": m.Description(),
		"net0": "name=eth0,bridge=vmbr0,ip=10.1.10.91/24"}})
	api.gate, api.sent = make(chan struct{}), make(chan int, 10)
	inv := newGuestInventory(api, InventoryOptions{Parallel: 1})
	first := make(chan error, 1)
	go func() {
		_, err := inv.look(context.Background(), look{since: time.Now()})
		first <- err
	}()
	for vmid := range api.sent { // the template's read passes first
		if vmid == 9105 {
			break
		}
		api.gate <- struct{}{}
	}
	// 9105's read is in flight; the pod writes its address now, then a
	// claim of this process looks.
	_ = api.UpdateGuestConfig(context.Background(), pve.CT("pve", 9105), pve.ConfigUpdate{Set: map[string]string{"net0": "name=eth0,bridge=vmbr0,ip=10.1.10.92/24"}})
	time.Sleep(time.Millisecond)
	claim := make(chan map[int]*viewGuest, 1)
	go func() {
		v, err := inv.look(context.Background(), look{since: time.Now()})
		if err != nil {
			t.Error(err)
		}
		claim <- v
	}()
	time.Sleep(10 * time.Millisecond) // the claim's look joins the read in flight
	close(api.gate)
	go func() {
		for range api.sent {
		}
	}()
	v := <-claim
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if n := api.readsOf(9105); n != 2 || !v[9105].has(netip.MustParseAddr("10.1.10.92")) {
		t.Errorf("%d reads of the pod in the making; the claim's look shows %v, want 10.1.10.92", n, v[9105].addrs)
	}
}

func TestInventoryReadsAgainAfterMaxAge(t *testing.T) {
	api := newCountingAPI(10)
	inv := newGuestInventory(api, InventoryOptions{MaxAge: 40 * time.Millisecond})
	mustLook(t, inv, look{since: time.Now()})
	_ = api.UpdateGuestConfig(context.Background(), pve.CT("pve", 101), pve.ConfigUpdate{Set: map[string]string{"net0": "name=eth0,bridge=vmbr0,ip=10.1.10.95/24"}})
	time.Sleep(50 * time.Millisecond) // every read expires within MaxAge
	v := mustLook(t, inv, look{since: time.Now()})
	if !v[101].has(netip.MustParseAddr("10.1.10.95")) {
		t.Errorf("after MaxAge the hand-set address is still unseen: %v", v[101].addrs)
	}
	if _, r := api.counts(); r != 22 {
		t.Errorf("%d reads, want every config twice (22)", r)
	}
	// The expiries of configs read together are spread over the second
	// half of MaxAge.
	seen := map[time.Duration]bool{}
	for vmid := 100; vmid < 200; vmid++ {
		s := spreadOf(vmid, time.Minute)
		if s < 0 || s >= time.Minute {
			t.Fatalf("spread of %d: %v", vmid, s)
		}
		seen[s.Round(6*time.Second)] = true
	}
	if len(seen) < 8 {
		t.Errorf("expiries bunch up: %v", seen)
	}
}

func TestPartialLookWaitsOnlyForWhatItNeeds(t *testing.T) {
	api := newCountingAPI(30)
	api.delay = 5 * time.Millisecond
	inv := newGuestInventory(api, InventoryOptions{Parallel: 2})
	v := mustLook(t, inv, look{since: time.Now(), partial: true, need: func(g pve.Guest) bool { return g.VMID == 9000 || g.Name == "g25" }})
	if v[9000].unread || v[125].unread || v[9000].cfg.Get("template") != "1" {
		t.Fatalf("targets unread: template %+v, g25 %+v", v[9000], v[125])
	}
	unread := 0
	for _, g := range v {
		if g.unread {
			unread++
		}
	}
	if unread == 0 {
		t.Errorf("the partial look waited for every config")
	}
	// The targets jumped the queue: they were among the first reads.
	api.mu.Lock()
	first := append([]int(nil), api.order[:4]...)
	api.mu.Unlock()
	if !containsInt(first, 9000) || !containsInt(first, 125) {
		t.Errorf("first reads %v, want 9000 and 125 among them", first)
	}
	// The rest is read in the background: a complete look finds it read.
	v = mustLook(t, inv, look{})
	for id, g := range v {
		if g.unread {
			t.Fatalf("guest %d unread after a complete look", id)
		}
	}
	if _, r := api.counts(); r != 31 {
		t.Errorf("%d reads, want each of 31 configs once", r)
	}
}

func containsInt(list []int, n int) bool {
	for _, x := range list {
		if x == n {
			return true
		}
	}
	return false
}

// A guest read again (its listing changed: it started) keeps the addresses
// of its last read in a partial look until the new read is done: a pod
// that just started must not look free to the next pod's IPAM.
func TestPartialLookKeepsWhatItKnewWhileAGuestIsReadAgain(t *testing.T) {
	api := newCountingAPI(3)
	ctx := context.Background()
	inv := newGuestInventory(api, InventoryOptions{Parallel: 1})
	mustLook(t, inv, look{since: time.Now()})
	if _, err := api.StopGuest(ctx, pve.CT("pve", 101)); err != nil {
		t.Fatal(err)
	}
	api.gate, api.sent = make(chan struct{}), make(chan int, 10)
	v := mustLook(t, inv, look{since: time.Now(), partial: true, need: func(pve.Guest) bool { return false }})
	if <-api.sent != 101 {
		t.Fatal("101's listing changed (stopped) but it is not read again")
	}
	if g := v[101]; g.unread || !g.has(netip.MustParseAddr("10.1.20.11")) || g.Status != "stopped" {
		t.Errorf("while read again, 101 shows %+v with %v; want the listing's status and the last read's addresses", g.Guest, g.addrs)
	}
	close(api.gate)
}
