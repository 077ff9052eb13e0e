package main

import (
	"bufio"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
	"github.com/migrahosting/cloudpods/provisioner"
)

// clusterLine is one JSON line of create or list on a cluster.
type clusterLine struct {
	Type   string `json:"type"`
	Result struct {
		VMID      int    `json:"vmid"`
		Hostname  string `json:"hostname"`
		IP        string `json:"ip"`
		Node      string `json:"node"`
		Status    string `json:"status"`
		Placement *struct {
			Node   string `json:"node"`
			Auto   bool   `json:"auto"`
			Route  string `json:"route"`
			Reason string `json:"reason"`
		} `json:"placement"`
	} `json:"result"`
	Error string `json:"error"`
}

func jsonLines[T any](t *testing.T, out string) []T {
	t.Helper()
	var lines []T
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("not JSON: %q: %v", sc.Text(), err)
		}
		lines = append(lines, v)
	}
	return lines
}

// TestClusterDoneWhen is issue 19's "Done when" on pvesim with three nodes
// and the template on shared storage: a batch of 9 with --node auto spread
// over the nodes by free memory (pve2's host uses 4 GiB more, so it gets
// fewer pods), distinct addresses; list shows each pod's node; destroy and
// health find a pod on pve3 without --node; with pve2 offline, health --all
// reports its pods unknown (not down) and create places nothing there.
func TestClusterDoneWhen(t *testing.T) {
	c := startCLIWith(t, func(cfg *pvesim.Config) {
		cfg.Nodes = []pvesim.NodeSpec{{Name: "pve"}, {Name: "pve2", MemoryUsed: 13 << 30}, {Name: "pve3"}}
		cfg.TemplateStorage = "ceph-pods"
		// A call to the offline node fails after a second (3 s on a real
		// node): long enough that a batch's first look has not read
		// pve2's pods when IPAM picks addresses.
		cfg.UnreachableDelay = time.Second
		cfg.RRDExpiry = -1
	})
	code, out, errs := c.run(t, "", "create", "--count", "9", "--host", "pod", "--vmid", "auto", "--ip", "auto", "--node", "auto",
		"--storage", "ceph-pods", "--output", "json")
	if code != exitOK {
		t.Fatalf("create: exit %d\n%s\n%s", code, lastLines(out, 10), errs)
	}
	perNode, ips, nodeOf, ipOf := map[string]int{}, map[string]bool{}, map[int]string{}, map[int]string{}
	for _, l := range jsonLines[clusterLine](t, out) {
		if l.Type != "result" {
			continue
		}
		r := l.Result
		if l.Error != "" || r.Status != "running" {
			t.Errorf("%s: %s %s", r.Hostname, r.Status, l.Error)
		}
		if ips[r.IP] {
			t.Errorf("%s handed out twice", r.IP)
		}
		ips[r.IP] = true
		if r.Placement == nil || !r.Placement.Auto || r.Placement.Node != r.Node || !strings.Contains(r.Placement.Reason, "most memory free") {
			t.Errorf("%s: placement %+v, node %s", r.Hostname, r.Placement, r.Node)
		}
		perNode[r.Node]++
		nodeOf[r.VMID], ipOf[r.VMID] = r.Node, r.IP
	}
	if len(nodeOf) != 9 || len(ips) != 9 {
		t.Fatalf("%d pods with %d addresses, want 9 each", len(nodeOf), len(ips))
	}
	// Free memory: pve and pve3 119 GiB, pve2 115 GiB; each pod takes
	// 2 GiB, so pve2 is chosen only once the others are two pods ahead.
	if perNode["pve2"] < 1 || perNode["pve2"] >= perNode["pve"] || perNode["pve2"] >= perNode["pve3"] || perNode["pve"]+perNode["pve2"]+perNode["pve3"] != 9 {
		t.Errorf("pods per node %v: want all three used, pve2 (least memory free) fewest", perNode)
	}

	t.Logf("pods per node: %v", perNode)

	// list shows each pod's node, as PVE has it.
	code, out, errs = c.run(t, "", "list", "--output", "json")
	if code != exitOK {
		t.Fatalf("list: exit %d %s", code, errs)
	}
	listed := jsonLines[provisioner.Pod](t, out)
	if len(listed) != 9 {
		t.Fatalf("list: %d pods, want 9\n%s", len(listed), out)
	}
	for _, p := range listed {
		if p.Node != nodeOf[p.VMID] || p.Status != "running" {
			t.Errorf("list: CT %d on %s (%s), created on %s", p.VMID, p.Node, p.Status, nodeOf[p.VMID])
		}
	}
	code, out, _ = c.run(t, "", "list")
	if code != exitOK || !strings.Contains(out, "NODE") || !strings.Contains(out, "pve3") {
		t.Errorf("list table lacks its NODE column or pve3:\n%s", out)
	}

	// health and destroy of a pod on pve3, no --node.
	on := func(node string) (vmids []int) {
		for _, p := range listed {
			if p.Node == node {
				vmids = append(vmids, p.VMID)
			}
		}
		return vmids
	}
	pve3 := on("pve3")
	if len(pve3) == 0 {
		t.Fatal("no pod on pve3")
	}
	victim := strconv.Itoa(pve3[0])
	code, out, errs = c.run(t, "", "health", victim, "--output", "json")
	var h provisioner.Health
	if err := json.Unmarshal([]byte(lastLines(out, 1)), &h); err != nil || code != exitHealthy || h.Node != "pve3" || h.State != provisioner.Healthy {
		t.Errorf("health %s: exit %d, %+v %v %s", victim, code, h, err, errs)
	}
	code, out, errs = c.run(t, "", "destroy", victim, "--force", "--yes")
	if code != exitOK || !strings.Contains(out, "destroyed") {
		t.Fatalf("destroy %s: exit %d\n%s%s", victim, code, out, errs)
	}
	if _, ok := c.sim.Guest(pve3[0]); ok {
		t.Errorf("CT %s is still in PVE after destroy", victim)
	}
	delete(ips, ipOf[pve3[0]]) // released: free again

	// pve2 goes offline: its pods are unknown, the others healthy.
	must(t, c.sim.SetNodeState("pve2", pvesim.NodeOffline))
	code, out, errs = c.run(t, "", "health", "--all", "--output", "json")
	if code != exitUnknown {
		t.Errorf("health --all: exit %d, want %d (unknown)\n%s%s", code, exitUnknown, out, errs)
	}
	checked := 0
	for _, h := range jsonLines[provisioner.Health](t, out) {
		want := provisioner.Healthy
		if nodeOf[h.VMID] == "pve2" {
			want = provisioner.Unknown
		}
		if h.State != want || h.Node != nodeOf[h.VMID] {
			t.Errorf("health --all: CT %d on %s is %s (%v), want %s", h.VMID, h.Node, h.State, h.Problems, want)
		}
		checked++
	}
	if checked != 8 {
		t.Errorf("health --all reported %d pods, want 8", checked)
	}
	code, out, errs = c.run(t, "", "list", "--output", "json")
	if code != exitOK {
		t.Fatalf("list with pve2 offline: exit %d %s", code, errs)
	}
	for _, p := range jsonLines[provisioner.Pod](t, out) {
		if nodeOf[p.VMID] == "pve2" && (p.Status != provisioner.Unknown || p.Node != "pve2") {
			t.Errorf("list: CT %d on offline pve2 is %s on %s", p.VMID, p.Status, p.Node)
		}
	}

	if code, out, _ := c.run(t, "", "list"); code != exitOK || strings.Contains(out, "0001-01-01") {
		t.Errorf("list table with pve2 offline: exit %d, a zero creation time shown:\n%s", code, out)
	}

	// ip sync reads every node's pods: the registry matches PVE, and
	// pve2's leases stay as they are (what its pods hold is not known).
	for _, args := range [][]string{{"ip", "sync"}, {"ip", "sync", "--repair"}} {
		if code, out, errs := c.run(t, "", args...); code != exitOK || !strings.Contains(out, "the registry matches PVE") {
			t.Errorf("%v with pve2 offline: exit %d\n%s%s", args, code, out, errs)
		}
	}
	if code, out, _ := c.run(t, "", "ip", "list", "--output", "json"); code != exitOK || strings.Count(out, `"state":"assigned"`) != 8 {
		t.Errorf("ip list: exit %d, %d assigned, want 8\n%s", code, strings.Count(out, `"state":"assigned"`), out)
	}

	// create places nothing on pve2, and says why.
	code, out, errs = c.run(t, "", "create", "--count", "3", "--host", "late", "--vmid", "auto", "--ip", "auto", "--node", "auto",
		"--storage", "ceph-pods", "--output", "json")
	if code != exitOK {
		t.Fatalf("create with pve2 offline: exit %d\n%s\n%s", code, lastLines(out, 10), errs)
	}
	late := 0
	for _, l := range jsonLines[clusterLine](t, out) {
		if l.Type != "result" {
			continue
		}
		late++
		// pve2's pods keep their addresses, though PVE cannot read them
		// now: the registry's leases hold them.
		if ips[l.Result.IP] {
			t.Errorf("%s got %s, which a pod (on pve2 or elsewhere) holds", l.Result.Hostname, l.Result.IP)
		}
		ips[l.Result.IP] = true
		t.Logf("late %s: %s on %s", l.Result.Hostname, l.Result.IP, l.Result.Node)
		if l.Result.Node == "pve2" || l.Result.Status != "running" {
			t.Errorf("%s: %s on %s", l.Result.Hostname, l.Result.Status, l.Result.Node)
		}
		if l.Result.Placement == nil || !strings.Contains(l.Result.Placement.Reason, "pve2: node is offline") {
			t.Errorf("%s: the reason does not say pve2 is offline: %+v", l.Result.Hostname, l.Result.Placement)
		}
	}
	if late != 3 {
		t.Errorf("%d results, want 3", late)
	}
	// Pinned to the offline node: refused before anything is made.
	code, _, errs = c.run(t, "", "create", "--host", "pinned", "--vmid", "auto", "--ip", "auto", "--node", "pve2", "--storage", "ceph-pods")
	if code != exitPreflight || !strings.Contains(errs, "pve2") {
		t.Errorf("create --node pve2 (offline): exit %d, %s", code, errs)
	}
}

// TestReadmeClusterExamples runs README's cluster examples in order on a
// 3-node simulator with the template on shared storage; each must exit 0,
// and the batch spread over the nodes.
func TestReadmeClusterExamples(t *testing.T) {
	examples := readmeExamples(t, "## Clusters", "### Makespan on three nodes")
	if len(examples) != 6 {
		t.Fatalf("%d examples, want 6: %q", len(examples), examples)
	}
	c := startCLIWith(t, func(cfg *pvesim.Config) {
		cfg.Nodes = []pvesim.NodeSpec{{Name: "pve"}, {Name: "pve2"}, {Name: "pve3"}}
	})
	for _, ex := range examples {
		args := strings.Fields(strings.TrimPrefix(ex, "cloudpod "))
		if code, out, errs := c.run(t, "", args...); code != exitOK {
			t.Fatalf("%s: exit %d\n%s%s", ex, code, lastLines(out, 10), errs)
		}
	}
	code, out, _ := c.run(t, "", "list", "--output", "json")
	perNode := map[string]int{}
	for _, p := range jsonLines[provisioner.Pod](t, out) {
		perNode[p.Node]++
	}
	if code != exitOK || perNode["pve"] != 3 || perNode["pve2"] != 3 || perNode["pve3"] != 3 {
		t.Errorf("after the examples: pods per node %v, want 3 each", perNode)
	}
	if _, ok := c.sim.Guest(9120); ok {
		t.Error("CT 9120 outlived the example's destroy")
	}
}
