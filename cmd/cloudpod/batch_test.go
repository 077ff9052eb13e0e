package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// outputLine is one JSON line of a batch create: an event or a pod's result.
type outputLine struct {
	Type   string `json:"type"`
	Result struct {
		VMID     int    `json:"vmid"`
		Hostname string `json:"hostname"`
		IP       string `json:"ip"`
		Status   string `json:"status"`
	} `json:"result"`
	Step    string `json:"step"`
	Message string `json:"message"`
	Error   string `json:"error"`
}

// TestCreateCountTwenty is issue 6's batch: 20 running pods with 20
// distinct IPs and VMIDs, allocated by IPAM around an address set by hand.
func TestCreateCountTwenty(t *testing.T) {
	c := startCLI(t)
	// An operator set .93 on a VM in the GUI; IPAM must skip it.
	must(t, c.sim.AddVM(130, map[string]string{"name": "by-hand", "memory": "1024", "ipconfig0": "ip=10.1.10.93/24,gw=10.1.10.1"}))
	code, out, errs := c.run(t, "", "create", "--count", "20", "--host", "pod", "--vmid", "auto", "--ip", "auto", "--output", "json")
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, lastLines(out, 10), errs)
	}
	vmids, ips := map[int]bool{}, map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var r outputLine
		if json.Unmarshal(sc.Bytes(), &r) != nil || r.Type != "result" {
			continue
		}
		if r.Error != "" || r.Result.Status != "running" {
			t.Errorf("%s: %s %s", r.Result.Hostname, r.Result.Status, r.Error)
		}
		if vmids[r.Result.VMID] || ips[r.Result.IP] {
			t.Errorf("VMID %d or IP %s handed out twice", r.Result.VMID, r.Result.IP)
		}
		vmids[r.Result.VMID], ips[r.Result.IP] = true, true
		if r.Result.IP == "10.1.10.93/24" {
			t.Errorf("%s got 10.1.10.93, which a VM holds", r.Result.Hostname)
		}
		g, ok := c.sim.Guest(r.Result.VMID)
		if !ok || g.Status != "running" || !strings.Contains(g.Config["net0"], "ip="+r.Result.IP) {
			t.Errorf("CT %d in PVE: %+v", r.Result.VMID, g)
		}
	}
	if len(vmids) != 20 || len(ips) != 20 {
		t.Fatalf("%d VMIDs and %d IPs, want 20 each", len(vmids), len(ips))
	}
	// The registry agrees: 20 assigned leases.
	code, out, _ = c.run(t, "", "ip", "list", "--output", "json")
	if code != exitOK || strings.Count(out, `"state":"assigned"`) != 20 {
		t.Errorf("ip list: exit %d, %d assigned\n%s", code, strings.Count(out, `"state":"assigned"`), out)
	}
}

// TestCreateFromBatchFile provisions the pods of a JSON-lines file; a bad
// line is refused before anything is created.
func TestCreateFromBatchFile(t *testing.T) {
	c := startCLI(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "pods.jsonl")
	lines := []string{
		`{"hostname":"shop-01","vmid":9301,"ip":"10.1.10.131","tenantId":"acme"}`,
		`# a comment`,
		`{"hostname":"shop-02","vmid":9302,"ip":"10.1.10.132","cores":4,"memoryMb":4096,"swapMb":256,"tenantId":"acme"}`,
		`{"tenantId":"acme","vmid":"auto","hostname":"shop-03","ip":"auto","cores":1,"memoryMb":512}`,
	}
	must(t, os.WriteFile(good, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	if code, out, errs := c.run(t, "", "create", "--batch", good); code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	g, ok := c.sim.Guest(9302)
	if !ok || g.Config["cores"] != "4" || g.Config["memory"] != "4096" || g.Config["swap"] != "256" || !strings.Contains(g.Config["net0"], "ip=10.1.10.132/24") {
		t.Errorf("CT 9302 = %+v", g)
	}
	// "auto" left VMID and address to IPAM: the first free ones.
	if g, ok := c.sim.Guest(9101); !ok || g.Config["hostname"] != "shop-03" || !strings.Contains(g.Config["net0"], "ip=10.1.10.91/24") {
		t.Errorf("the auto pod: CT 9101 = %+v", g)
	}
	for _, tt := range []struct{ line, want string }{
		{`{"hostname":"x","vmid":9303,"colour":"blue"}`, "line 1: colour: unknown field"},
		{`{"hostname":"x","vmid":9303,"memory":4096}`, "line 1: memory: unknown field"},
		{`{"hostname":"x","vmid":9303,"memoryMb":512,"memoryMb":4096}`, "line 1: memoryMb: appears twice"},
		{`{"hostname":"x","vmid":"9303"}`, `line 1: vmid: must be an integer or "auto"`},
		{`{"hostname":"x","vmid":9303} {}`, "line 1: not one JSON object"},
	} {
		bad := filepath.Join(dir, "bad.jsonl")
		must(t, os.WriteFile(bad, []byte(tt.line+"\n"), 0o644))
		code, _, errs := c.run(t, "", "create", "--batch", bad)
		if code != exitUsage || !strings.Contains(errs, tt.want) {
			t.Errorf("batch %s: exit %d, %q; want exit 2 saying %q", tt.line, code, errs, tt.want)
		}
	}
	if _, ok := c.sim.Guest(9303); ok {
		t.Error("a bad batch created a pod")
	}
}

// TestCreateDryRun checks for real, prints every call it would make and
// changes nothing; a failing check is reported the same way as by create.
func TestCreateDryRun(t *testing.T) {
	c := startCLI(t)
	before := c.sim.Requests()
	code, out, errs := c.run(t, "", "create", "9101", "migra-client-01", "91", "--dry-run")
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{"POST   /nodes/pve/lxc/9000/clone", "PUT    /nodes/pve/lxc/9101/config", "net0=name=eth0,bridge=vmbr0,firewall=1,gw=10.1.10.1",
		"POST   /nodes/pve/lxc/9101/status/start", "/vncwebsocket", "/etc/netplan/50-cloud-init.yaml"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	if _, ok := c.sim.Guest(9101); ok {
		t.Error("dry run created CT 9101")
	}
	for key, n := range c.sim.Requests() {
		if !strings.HasPrefix(key, "GET ") && n != before[key] {
			t.Errorf("dry run sent %s", key)
		}
	}
	code, _, errs = c.run(t, "", "create", "9101", "migra-client-01", "91", "--dry-run", "--template", "9999")
	if code != exitPreflight || !strings.Contains(errs, "template CT 9999 does not exist") {
		t.Errorf("dry run with a missing template: exit %d, %q", code, errs)
	}
}

// TestCreateDryRunWithAutoVMIDAndIP: `create --host web --vmid auto --ip
// auto --dry-run` plans with the VMID and address IPAM would hand out,
// reserves nothing and exits 0.
func TestCreateDryRunWithAutoVMIDAndIP(t *testing.T) {
	c := startCLI(t)
	before := c.sim.Requests()
	code, out, errs := c.run(t, "", "create", "--host", "web", "--vmid", "auto", "--ip", "auto", "--dry-run")
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{"IPAM   reserve  hostname=web ip=10.1.10.91 vmid=9101", "POST   /nodes/pve/lxc/9000/clone", "newid=9101",
		"PUT    /nodes/pve/lxc/9101/config", "ip=10.1.10.91/24"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	for key, n := range c.sim.Requests() {
		if !strings.HasPrefix(key, "GET ") && n != before[key] {
			t.Errorf("dry run sent %s", key)
		}
	}
	if _, list, _ := c.run(t, "", "ip", "list"); strings.Contains(list, "10.1.10.91") {
		t.Errorf("the dry run reserved an address:\n%s", list)
	}
}

// With IPAM on (the CLI's default), an explicit address that a guest holds
// is refused by the reservation, in one sentence, before anything exists.
func TestCreateRefusesAnAddressSetByHand(t *testing.T) {
	c := startCLI(t)
	must(t, c.sim.AddVM(130, map[string]string{"name": "by-hand", "memory": "1024", "ipconfig0": "ip=10.1.10.93/24,gw=10.1.10.1"}))
	code, _, errs := c.run(t, "", "create", "9101", "migra-client-01", "93")
	if code != exitConflict || !strings.Contains(errs, "10.1.10.93") || !strings.Contains(errs, "130") || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
		t.Errorf("exit %d, stderr %q; want a one-line conflict naming 10.1.10.93 and VM 130", code, errs)
	}
	if _, ok := c.sim.Guest(9101); ok {
		t.Error("CT 9101 was created")
	}
}
