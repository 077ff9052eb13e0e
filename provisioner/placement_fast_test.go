package provisioner_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/pve"
	"github.com/migrahosting/cloudpods/provisioner/pvetest"
)

const gib = int64(1) << 30

// newClusterEnv is the fake as three nodes of 16 CPUs and 128 GiB whose
// hosts use what use says, the golden template on pve's local ZFS, and a
// shared RBD pool.
func newClusterEnv(t *testing.T, use map[string]int64) *fastEnv {
	t.Helper()
	e := newFastEnv(t)
	e.api.AddNode("pve2")
	e.api.AddNode("pve3")
	e.api.NodeUse = use
	e.api.StorageList = append(e.api.StorageList, pve.Storage{ID: "ceph-pods", Type: "rbd", Content: []string{"rootdir", "images"},
		Active: true, Enabled: true, Shared: true, Total: 12 << 40, Avail: 10 << 40})
	return e
}

func placedSpec(host string) provisioner.Spec {
	s := provisioner.DefaultSpec()
	s.Node, s.Hostname = provisioner.AutoNode, host
	return s
}

// --node auto: the node with the most memory free after the pod, among
// the online ones; the reason names every node's figures.
func TestPlaceChoosesByFreeMemory(t *testing.T) {
	e := newClusterEnv(t, map[string]int64{"pve": 30 * gib, "pve2": 10 * gib, "pve3": 20 * gib})
	p := e.provisioner(provisioner.Options{})
	pl, err := p.Place(context.Background(), placedSpec("web"))
	if err != nil {
		t.Fatal(err)
	}
	if pl.Node != "pve2" || !pl.Auto || pl.Route != provisioner.RouteMigrate || pl.Source != 9000 || pl.SourceNode != "pve" {
		t.Errorf("placement %+v", pl)
	}
	for _, want := range []string{"node pve2: most memory free after the pod (116.0 GiB", "then migrated to pve2", "pve3: 106.0 GiB memory free", "pve: 96.0 GiB memory free"} {
		if !strings.Contains(pl.Reason, want) {
			t.Errorf("reason %q lacks %q", pl.Reason, want)
		}
	}

	e.api.SetOnline("pve2", false)
	pl, err = p.Place(context.Background(), placedSpec("web"))
	if err != nil || pl.Node != "pve3" {
		t.Errorf("with pve2 offline: %+v, %v", pl, err)
	}
	if !strings.Contains(pl.Reason, "pve2: node is offline") {
		t.Errorf("reason %q", pl.Reason)
	}

	big := placedSpec("huge")
	big.MemoryMB = 120 << 10
	_, err = p.Place(context.Background(), big)
	if provisioner.KindOf(err) != provisioner.KindPreflight || !strings.Contains(err.Error(), "no node can take huge") || !strings.Contains(err.Error(), "the pod wants 122880 MB") {
		t.Errorf("a pod no node can take: %v", err)
	}
}

// How the template reaches a node, per pod: its own node, a copy there, a
// clone with target onto shared storage, or a clone then a migration; a
// linked clone cannot leave local storage.
func TestPlaceRoutes(t *testing.T) {
	e := newClusterEnv(t, nil)
	p := e.provisioner(provisioner.Options{})
	ctx := context.Background()
	route := func(node, storage string, linked bool) (provisioner.Placement, error) {
		s := placedSpec("web")
		s.Node, s.Storage, s.Linked = node, storage, linked
		return p.Place(ctx, s)
	}
	for _, tt := range []struct {
		node, storage string
		linked        bool
		route         string
		source        int
	}{
		{"pve", "clients-main", false, provisioner.RouteLocal, 9000},
		{"pve2", "clients-main", false, provisioner.RouteMigrate, 9000},
		{"pve2", "ceph-pods", false, provisioner.RouteTarget, 9000},
	} {
		pl, err := route(tt.node, tt.storage, tt.linked)
		if err != nil || pl.Route != tt.route || pl.Source != tt.source || pl.Node != tt.node || pl.Auto {
			t.Errorf("%s on %s: %+v, %v", tt.node, tt.storage, pl, err)
		}
	}
	if _, err := route("pve3", "clients-main", true); err == nil || !strings.Contains(err.Error(), "PVE migrates no linked clone: make a copy there (cloudpod template copy 9000 --node pve3)") {
		t.Errorf("linked clone to another node: %v", err)
	}
	if _, err := route("pve9", "clients-main", false); provisioner.KindOf(err) != provisioner.KindPreflight || !strings.Contains(err.Error(), `node "pve9" is not in the cluster`) {
		t.Errorf("a node the cluster lacks: %v", err)
	}

	e.api.AddGuest(pvetest.Guest{Kind: pve.LXC, Node: "pve3", VMID: 9002, Config: map[string]string{"hostname": "cloudpod-template", "template": "1",
		"memory": "2048", "cores": "2", "rootfs": "clients-main:basevol-9002-disk-0,size=8G",
		"description": "copy\ncloudpods-template-copy: {\"of\":9000,\"node\":\"pve3\",\"run\":\"r\"}\n"}})
	if pl, err := route("pve3", "clients-main", true); err != nil || pl.Route != provisioner.RouteCopy || pl.Source != 9002 || pl.SourceNode != "pve3" {
		t.Errorf("a copy on the node: %+v, %v", pl, err)
	}
}

// A batch with --node auto spreads: each placement counts the pods placed
// before it, whether they run yet or not, so the spread follows free
// memory whatever the timing.
func TestBatchSpreadsByFreeMemory(t *testing.T) {
	e := newClusterEnv(t, map[string]int64{"pve": 13 * gib, "pve2": 9 * gib, "pve3": 9 * gib})
	p := e.provisioner(provisioner.Options{})
	var reqs []provisioner.CreateRequest
	for i := 0; i < 9; i++ {
		reqs = append(reqs, provisioner.CreateRequest{Spec: placedSpec("pod-0" + string(rune('1'+i)))})
	}
	per := map[string]int{}
	for _, r := range p.CreateBatch(context.Background(), reqs, 9) {
		if r.Err != nil {
			t.Fatalf("pod %d: %v", r.Index, r.Err)
		}
		pl := r.Result.Placement
		if pl == nil || !pl.Auto || pl.Node != r.Result.Node {
			t.Fatalf("pod %d placement %+v", r.Index, pl)
		}
		per[r.Result.Node]++
	}
	// 2 GiB each: pve2 and pve3 take pods until their free memory is
	// pve's, 4 GiB more; then the three take turns (pve, pve2, pve3 on
	// ties: same CPU committed, storage, then the name).
	if per["pve"] != 2 || per["pve2"] != 4 || per["pve3"] != 3 {
		t.Errorf("pods per node %v, want pve 2, pve2 4, pve3 3", per)
	}
}

// A pod on a node that is down: list shows it unknown (its tags say it is
// a pod), health reports it unknown, not down, destroy refuses to touch it.
func TestPodOnAnOfflineNode(t *testing.T) {
	e := newClusterEnv(t, nil)
	p := e.provisioner(provisioner.Options{})
	ctx := context.Background()
	s := provisioner.DefaultSpec()
	s.VMID, s.Hostname, s.IP, s.Node, s.Storage = 9105, "far", netip.MustParseAddr("10.1.10.105"), "pve3", "ceph-pods"
	if _, err := p.Create(ctx, provisioner.CreateRequest{Spec: s}); err != nil {
		t.Fatal(err)
	}
	e.api.SetOnline("pve3", false)
	pods, err := p.List(ctx, "", "")
	if err != nil || len(pods) != 1 || pods[0].Node != "pve3" || pods[0].Status != provisioner.Unknown {
		t.Fatalf("list: %+v, %v", pods, err)
	}
	h, err := p.Health(ctx, "", 9105, false)
	if err != nil || h.State != provisioner.Unknown || h.Node != "pve3" || !strings.Contains(strings.Join(h.Problems, " "), "CT 9105 is on node pve3, which is offline") {
		t.Errorf("health: %+v, %v", h, err)
	}
	_, err = p.Destroy(ctx, provisioner.DestroyRequest{VMID: 9105, Force: true})
	if !errors.Is(err, provisioner.ErrNodeDown) && !strings.Contains(fmtErr(err), "which is offline") {
		t.Errorf("destroy: %v", err)
	}
	if g, ok := e.api.Guest(9105); !ok || g.Node != "pve3" {
		t.Errorf("the pod is gone: %+v", g)
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
