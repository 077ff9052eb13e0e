package ipam

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The child half of TestTwoProcessesAllocateDistinctAddresses runs in a
// re-executed test binary, selected by these variables.
const (
	childRegistryEnv = "CLOUDPODS_IPAM_TEST_CHILD_REGISTRY"
	childNameEnv     = "CLOUDPODS_IPAM_TEST_CHILD_NAME"
	perProcess       = 200
)

// twoProcessPool is a /22, room for both processes with addresses to spare.
func twoProcessPool() Pool {
	return Pool{Name: "wide", Subnet: netip.MustParsePrefix("10.1.8.0/22"), Bridge: "vmbr0",
		Gateway: addr("10.1.8.1"), Reserved: []netip.Addr{addr("10.1.8.90")},
		First: addr("10.1.8.10"), Last: addr("10.1.11.250")}
}

// twoProcessGuests are set by hand in PVE; neither process may hand them out.
var twoProcessGuests = []Guest{
	{VMID: 9105, Type: "lxc", Name: "manual-a", Addrs: []netip.Addr{addr("10.1.8.12")}},
	{VMID: 9250, Type: "qemu", Name: "manual-b", Addrs: []netip.Addr{addr("10.1.8.200"), addr("10.1.9.3")}},
}

func TestTwoProcessesAllocateDistinctAddresses(t *testing.T) {
	if path := os.Getenv(childRegistryEnv); path != "" {
		reserveAsChild(t, path, os.Getenv(childNameEnv))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "ipam.json")

	names := []string{"proc-a", "proc-b"}
	var cmds []*exec.Cmd
	var gates []io.WriteCloser
	for _, name := range names {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestTwoProcessesAllocateDistinctAddresses$", "-test.count=1")
		cmd.Env = append(os.Environ(), childRegistryEnv+"="+path, childNameEnv+"="+name)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		gate, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s output:\n%s", name, out.String())
			}
		})
		cmds, gates = append(cmds, cmd), append(gates, gate)
	}
	// Both children are up; let them go at the same moment.
	for _, g := range gates {
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("%s: %v", names[i], err)
		}
	}

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var reg Registry
	if err := json.Unmarshal(raw, &reg); err != nil {
		t.Fatalf("registry does not parse after two writers: %v", err)
	}
	if len(reg.Leases) != 2*perProcess {
		t.Fatalf("registry holds %d leases, want %d", len(reg.Leases), 2*perProcess)
	}
	ips, vmids, perOwner := map[netip.Addr]bool{}, map[int]bool{}, map[string]int{}
	for _, l := range reg.Leases {
		if ips[l.IP] || vmids[l.VMID] {
			t.Fatalf("handed out twice: %s / %d", l.IP, l.VMID)
		}
		ips[l.IP], vmids[l.VMID] = true, true
		perOwner[l.Owner]++
		for _, g := range twoProcessGuests {
			if l.VMID == g.VMID || (len(g.Addrs) > 0 && (l.IP == g.Addrs[0] || l.IP == g.Addrs[len(g.Addrs)-1])) {
				t.Fatalf("handed out what PVE guest %s uses: %+v", g, l)
			}
		}
		if !twoProcessPool().Allocatable(l.IP) || !DefaultVMIDs().Contains(l.VMID) {
			t.Fatalf("lease outside the pool: %+v", l)
		}
	}
	for _, name := range names {
		if perOwner[name] != perProcess {
			t.Fatalf("owner %s holds %d leases, want %d", name, perOwner[name], perProcess)
		}
	}
	// How often the writer changed shows the two really overlapped.
	byTime := slices.Clone(reg.Leases)
	slices.SortStableFunc(byTime, func(x, y Lease) int { return x.ReservedAt.Compare(y.ReservedAt) })
	switches := 0
	for i := 1; i < len(byTime); i++ {
		if byTime[i].Owner != byTime[i-1].Owner {
			switches++
		}
	}
	t.Logf("the writer changed %d times over %d reservations", switches, len(byTime))
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".ipam.json.tmp-*"))
	if len(leftovers) != 0 {
		t.Fatalf("temp files left behind: %v", leftovers)
	}
}

func reserveAsChild(t *testing.T, path, name string) {
	inv := &staticInventory{guests: twoProcessGuests}
	a, err := New(NewFileStore(path), twoProcessPool(), DefaultVMIDs(), inv)
	if err != nil {
		t.Fatal(err)
	}
	// Wait for the parent to close stdin: the start signal.
	if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range perProcess {
		if _, err := a.Reserve(ctx, Request{Hostname: fmt.Sprintf("%s-%03d", name, i), Owner: name, Tenant: "load"}); err != nil {
			t.Fatalf("%s reservation %d: %v", name, i, err)
		}
	}
}
