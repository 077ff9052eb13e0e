package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
	"github.com/migrahosting/cloudpods/ipam"
)

// The CLI against pvesim, as a new user would try it: PVE's state decides,
// the registry is a ledger (issue 13).

var highmem = []string{"create", "--vmid", "9201", "--host", "migra-highmem-01", "--ip", "10.1.10.101", "--cores", "4", "--mem", "8192", "--swap", "2048",
	"--storage", "clients-main", "--bridge", "vmbr0"}

// with is args with flag's value replaced.
func with(args []string, flag, value string) []string {
	out := append([]string(nil), args...)
	for i := range out {
		if out[i] == flag {
			out[i+1] = value
			return out
		}
	}
	return append(out, flag, value)
}

// leases reads the CLI's registry file as it is on disk.
func (c *cli) leases(t *testing.T) []ipam.Lease {
	t.Helper()
	raw, err := os.ReadFile(c.ipamFile)
	if err != nil {
		t.Fatal(err)
	}
	var reg ipam.Registry
	if err := json.Unmarshal(raw, &reg); err != nil {
		t.Fatal(err)
	}
	return reg.Leases
}

// leaseOf is the active lease of ip, or the zero lease.
func (c *cli) leaseOf(t *testing.T, ip string) ipam.Lease {
	t.Helper()
	for _, l := range c.leases(t) {
		if l.IP.String() == ip && l.State != ipam.StateReleased {
			return l
		}
	}
	return ipam.Lease{}
}

// TestRefusedRunChangesNoLeaseAndTheOriginalConverges is the issue's
// sequence: create 9201; the same with other cores and with another
// address, each refused with every difference and no lease touched; ip
// sync; the original again: exit 0, nothing to do, 9201 unchanged, its
// lease assigned to it throughout.
func TestRefusedRunChangesNoLeaseAndTheOriginalConverges(t *testing.T) {
	c := startCLI(t)
	c.create(t, highmem[1:]...)
	pod, _ := c.sim.Guest(9201)
	owner := "cloudpods//migra-highmem-01"
	assigned := func(after string) {
		t.Helper()
		if l := c.leaseOf(t, "10.1.10.101"); l.State != ipam.StateAssigned || l.VMID != 9201 || l.Owner != owner {
			t.Fatalf("after %s the lease of 10.1.10.101 is %+v, want assigned to 9201 for %s", after, l, owner)
		}
	}
	assigned("the create")
	registry := func() string {
		b, _ := os.ReadFile(c.ipamFile)
		return string(b)
	}
	before := registry()

	for _, tt := range []struct {
		name string
		args []string
		says []string
	}{
		{"other cores", with(highmem, "--cores", "8"), []string{"CT 9201 already exists with a different spec (cores: 4 → 8)"}},
		{"another address", with(highmem, "--ip", "10.1.10.102"), []string{"CT 9201 already exists with a different spec", "ip: 10.1.10.101/24 → 10.1.10.102/24"}},
		{"another address and memory", with(with(highmem, "--ip", "10.1.10.102"), "--mem", "4096"), []string{"ip: 10.1.10.101/24 → 10.1.10.102/24", "memory: 8192 → 4096"}},
	} {
		code, _, stderr := c.run(t, "", tt.args...)
		if code != exitConflict {
			t.Fatalf("%s: exit %d, want %d: %s", tt.name, code, exitConflict, stderr)
		}
		for _, want := range tt.says {
			if !strings.Contains(stderr, want) {
				t.Errorf("%s: %q does not say %q", tt.name, stderr, want)
			}
		}
		if strings.Contains(stderr, "IPAM") {
			t.Errorf("%s: the refusal speaks of IPAM: %s", tt.name, stderr)
		}
		if registry() != before {
			t.Fatalf("%s: the refused run changed the registry", tt.name)
		}
		assigned("the refused create with " + tt.name)
	}

	code, stdout, stderr := c.run(t, "", "ip", "sync")
	if code != exitOK || !strings.Contains(stdout, "the registry matches PVE") {
		t.Fatalf("ip sync: exit %d\n%s%s", code, stdout, stderr)
	}
	if registry() != before {
		t.Fatal("ip sync changed the registry")
	}
	assigned("ip sync")

	code, stdout, stderr = c.run(t, "", highmem...)
	if code != exitOK || !strings.Contains(stdout, "CT 9201 migra-highmem-01 (10.1.10.101/24) already provisioned, nothing to do") {
		t.Fatalf("the original create again: exit %d\n%s%s", code, stdout, stderr)
	}
	assigned("the original create again")
	if again, _ := c.sim.Guest(9201); !reflect.DeepEqual(again.Config, pod.Config) || again.Status != "running" {
		t.Errorf("CT 9201 changed:\n%v\n%v", pod.Config, again.Config)
	}

	// What the old order left behind converges too: the lease released by
	// `ip release 9201`, or recorded from PVE without an owner.
	if code, _, stderr := c.run(t, "", "ip", "release", "9201"); code != exitOK {
		t.Fatalf("ip release: %s", stderr)
	}
	if code, stdout, stderr := c.run(t, "", highmem...); code != exitOK || !strings.Contains(stdout, "nothing to do") {
		t.Fatalf("create after ip release: exit %d\n%s%s", code, stdout, stderr)
	}
	assigned("create after ip release")
	must(t, os.WriteFile(c.ipamFile, []byte(`{"version": 1, "leases": [
  {"pool":"default","ip":"10.1.10.101","vmid":9201,"hostname":"migra-highmem-01","state":"assigned","source":"pve","note":"found on PVE guest","reserved_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}
]}
`), 0o640))
	if code, stdout, _ := c.run(t, "", "ip", "sync"); code != exitOK || !strings.Contains(stdout, "is the pod of owner "+owner) {
		t.Errorf("ip sync of an ownerless lease: exit %d\n%s", code, stdout)
	}
	if code, stdout, stderr := c.run(t, "", highmem...); code != exitOK || !strings.Contains(stdout, "nothing to do") {
		t.Fatalf("create over an ownerless lease: exit %d\n%s%s", code, stdout, stderr)
	}
	assigned("create over an ownerless lease")
	if code, stdout, _ := c.run(t, "", "ip", "sync"); code != exitOK || !strings.Contains(stdout, "the registry matches PVE") {
		t.Errorf("ip sync after: exit %d\n%s", code, stdout)
	}
}

// TestAStaleLeaseNeverBlocks: a lease whose guest PVE no longer has, or a
// released one, does not stand in the way of a create; a reservation of a
// create in flight does.
func TestAStaleLeaseNeverBlocks(t *testing.T) {
	c := startCLI(t)
	c.create(t, "9101", "gone", "91")
	// Removed behind IPAM's back: the lease stays assigned, the guest is gone.
	if code, _, stderr := c.run(t, "", "destroy", "9101", "--force", "--yes", "--ipam", "none"); code != exitOK {
		t.Fatalf("destroy: %s", stderr)
	}
	if l := c.leaseOf(t, "10.1.10.91"); l.State != ipam.StateAssigned {
		t.Fatalf("lease of the gone pod = %+v", l)
	}
	c.create(t, "9101", "new-one", "91")
	if code, _, stderr := c.run(t, "", "ip", "reserve", "held", "--ip", "10.1.10.95"); code != exitOK {
		t.Fatal(stderr)
	}
	if code, _, stderr := c.run(t, "", "create", "9105", "other", "95"); code != exitConflict || !strings.Contains(stderr, "10.1.10.95 is in use by reserved lease of held") {
		t.Errorf("a reservation in flight did not block: exit %d %s", code, stderr)
	}
	if code, _, stderr := c.run(t, "", "ip", "release", "10.1.10.95"); code != exitOK {
		t.Fatal(stderr)
	}
	c.create(t, "9105", "other", "95")
}

// TestAFreshRegistryConvergesOnThePod: with the registry file deleted (a
// new ops laptop, a lost /var/lib), the same create converges with nothing
// to do and the pod's lease is recorded again, assigned, with its owner;
// an auto VMID and address find the pod by its marker too.
func TestAFreshRegistryConvergesOnThePod(t *testing.T) {
	c := startCLI(t)
	c.create(t, highmem[1:]...)
	c.create(t, "--host", "web", "--vmid", "auto", "--ip", "auto", "--tenant", "acme")
	web := c.leaseOf(t, "10.1.10.91")
	for _, args := range [][]string{highmem, {"create", "--host", "web", "--vmid", "auto", "--ip", "auto", "--tenant", "acme"}} {
		if err := os.Remove(c.ipamFile); err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := c.run(t, "", args...)
		if code != exitOK || !strings.Contains(stdout, "already provisioned, nothing to do") {
			t.Fatalf("%v with no registry: exit %d\n%s%s", args, code, stdout, stderr)
		}
	}
	if l := c.leaseOf(t, "10.1.10.91"); l.State != ipam.StateAssigned || l.VMID != web.VMID || l.Owner != "cloudpods/acme/web" || l.Tenant != "acme" {
		t.Errorf("web's lease from a fresh registry = %+v", l)
	}
	if _, ok := c.sim.Guest(9102); ok {
		t.Error("the auto create made a second pod")
	}
}

// TestConnectionFailuresHaveTheirOwnCodes: a wrong token exits 5, a closed
// port and an untrusted certificate 7, the same for create, its dry run
// and list, each in one sentence naming the fix and none about IPAM. The
// certificate's says the fingerprint PVE presented and the flag to pin it.
func TestConnectionFailuresHaveTheirOwnCodes(t *testing.T) {
	c := startCLI(t)
	dir := t.TempDir()
	wrongToken := filepath.Join(dir, "wrong-token")
	if err := os.WriteFile(wrongToken, []byte("00000000-0000-0000-0000-000000000000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "https://" + l.Addr().String()
	l.Close()
	// No --fingerprint: pvesim's self-signed certificate meets the system roots.
	unpinned := c.flags[:0:0]
	for i := 0; i < len(c.flags); i++ {
		if c.flags[i] == "--fingerprint" {
			i++
			continue
		}
		unpinned = append(unpinned, c.flags[i])
	}
	otherPin := strings.Repeat("AB:", 31) + "AB"
	for _, tt := range []struct {
		name  string
		flags []string
		code  int
		says  []string
	}{
		{"wrong token", with(c.flags, "--token-file", wrongToken), exitAuth,
			[]string{"PVE refused the API token (401", "check the token id (--token-id, PVE_TOKEN_ID) and its secret"}},
		{"closed port", with(c.flags, "--pve-url", closed), exitUnreachable,
			[]string{"PVE did not answer at " + l.Addr().String(), "connection refused", "check the address (--pve-url, PVE_URL)"}},
		{"unknown certificate", unpinned, exitUnreachable,
			[]string{"PVE's TLS certificate is not trusted", "it presented SHA-256 fingerprint " + c.sim.Fingerprint(),
				"check it in the PVE GUI (node > System > Certificates) and, if it matches, pin it with --fingerprint " + c.sim.Fingerprint()}},
		{"another certificate pinned", with(c.flags, "--fingerprint", otherPin), exitUnreachable,
			[]string{"PVE presented a TLS certificate with SHA-256 fingerprint " + c.sim.Fingerprint() + ", not the pinned " + otherPin,
				"pin it with --fingerprint " + c.sim.Fingerprint()}},
	} {
		for _, args := range [][]string{
			{"create", "9101", "migra-client-01", "91"},
			{"create", "9101", "migra-client-01", "91", "--dry-run"},
			{"create", "--host", "web", "--vmid", "auto", "--ip", "auto"},
			{"list"},
		} {
			t.Run(tt.name+": "+strings.Join(args, " "), func(t *testing.T) {
				t.Parallel() // a closed port is retried as any read is
				var out, errb strings.Builder
				code := execute(t.Context(), nil, append(args, tt.flags...), strings.NewReader(""), &out, &errb)
				stderr := errb.String()
				if code != tt.code {
					t.Fatalf("exit %d, want %d: %s", code, tt.code, stderr)
				}
				for _, want := range tt.says {
					if !strings.Contains(stderr, want) {
						t.Errorf("%q does not say %q", stderr, want)
					}
				}
				if strings.Contains(stderr, "IPAM") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
					t.Errorf("not one sentence free of IPAM: %q", stderr)
				}
			})
		}
	}
	t.Cleanup(func() {
		if _, err := os.Stat(c.ipamFile); !os.IsNotExist(err) {
			t.Errorf("a run that could not reach PVE touched the registry: %v", err)
		}
	})
}

// TestAMissingPrivilegeExits5: a token that authenticates but lacks a
// privilege create needs is refused by preflight with exit 5, naming the
// privilege and its path, for create and its dry run alike; nothing is
// reserved.
func TestAMissingPrivilegeExits5(t *testing.T) {
	c := startCLIWith(t, func(cfg *pvesim.Config) {
		cfg.Tokens[0].Privileges = []string{"VM.Audit", "VM.Allocate", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Network", "VM.Config.Options",
			"VM.PowerMgmt", "VM.Console", "Datastore.AllocateSpace", "Datastore.Audit", "SDN.Use", "Sys.Audit"}
	})
	for _, args := range [][]string{{"create", "9101", "migra-client-01", "91"}, {"create", "--host", "web", "--vmid", "auto", "--ip", "auto", "--dry-run"}} {
		code, _, stderr := c.run(t, "", args...)
		if code != exitAuth || !strings.Contains(stderr, "the API token lacks VM.Clone on /vms/9000") || strings.Contains(stderr, "IPAM") {
			t.Errorf("%v: exit %d: %s", args, code, stderr)
		}
	}
	if _, err := os.Stat(c.ipamFile); !os.IsNotExist(err) {
		t.Errorf("a refused token touched the registry: %v", err)
	}
}

// TestHostnamesAreUniqueAcrossTheCluster: a second create with a hostname
// another guest has, in any case, exits 4 naming the VMID that holds it;
// --allow-duplicate-hostname allows it on purpose.
func TestHostnamesAreUniqueAcrossTheCluster(t *testing.T) {
	c := startCLI(t)
	c.create(t, "9101", "migra-client-01", "91")
	must(t, c.sim.AddContainer(9150, map[string]string{"hostname": "Legacy-Web", "ostype": "ubuntu", "memory": "512",
		"rootfs": "clients-main:subvol-9150-disk-0,size=8G"}))
	for _, tt := range []struct {
		args []string
		says string
	}{
		{[]string{"create", "9102", "migra-client-01", "92"}, "hostname migra-client-01 is taken: CT 9101 (migra-client-01) on node pve has it"},
		{[]string{"create", "9103", "MIGRA-CLIENT-01", "93"}, "hostname MIGRA-CLIENT-01 is taken: CT 9101 (migra-client-01)"},
		{[]string{"create", "--host", "legacy-web", "--vmid", "auto", "--ip", "auto"}, "hostname legacy-web is taken: CT 9150 (Legacy-Web)"},
		{[]string{"create", "9104", "Migra-Client-01", "94", "--dry-run"}, "CT 9101 (migra-client-01)"},
	} {
		code, _, stderr := c.run(t, "", tt.args...)
		if code != exitConflict || !strings.Contains(stderr, tt.says) || !strings.Contains(stderr, "--allow-duplicate-hostname") {
			t.Errorf("%v: exit %d: %s\nwant exit 4 saying %q", tt.args, code, stderr, tt.says)
		}
	}
	for _, vmid := range []int{9102, 9103, 9104} {
		if _, ok := c.sim.Guest(vmid); ok {
			t.Errorf("CT %d was created", vmid)
		}
	}
	c.create(t, "9102", "MIGRA-CLIENT-01", "92", "--allow-duplicate-hostname")
	if g, ok := c.sim.Guest(9102); !ok || g.Status != "running" {
		t.Error("--allow-duplicate-hostname did not create CT 9102")
	}
}

// TestTenantIsValidatedAsTheServiceDoes: --tenant follows the service's
// tenantId rule, refused before PVE is contacted.
func TestTenantIsValidatedAsTheServiceDoes(t *testing.T) {
	c := startCLI(t)
	for _, tenant := range []string{"acme corp", "-acme", strings.Repeat("a", 65), "acme/x"} {
		code, _, stderr := c.run(t, "", "create", "9101", "web", "91", "--tenant", tenant)
		if code != exitUsage || !strings.Contains(stderr, "is not a tenant id: use letters, digits and _ . - (up to 64, starting with a letter or digit)") {
			t.Errorf("--tenant %q: exit %d %s", tenant, code, stderr)
		}
	}
	if n := c.sim.Requests(); len(n) != 0 {
		t.Errorf("PVE was asked %v", n)
	}
	c.create(t, "9101", "web", "91", "--tenant", "Acme_01.eu-west")
}

// TestAnEmptyOrNullRegistryIsAnError: only a registry file that does not
// exist is a new one; an empty one, or one with "leases": null, exits 11
// for create and ip alike, and stays as it is.
func TestAnEmptyOrNullRegistryIsAnError(t *testing.T) {
	c := startCLI(t)
	for _, content := range []string{"", `{"version": 1, "leases": null}`, `{"version": 1, "leases": [`} {
		must(t, os.WriteFile(c.ipamFile, []byte(content), 0o640))
		for _, args := range [][]string{{"create", "9101", "migra-client-01", "91"}, {"ip", "next"}, {"ip", "sync", "--repair"}} {
			code, _, stderr := c.run(t, "", args...)
			if code != exitRegistry || !strings.Contains(stderr, "IPAM registry "+c.ipamFile) || !strings.Contains(stderr, "cloudpod ip sync --repair") {
				t.Errorf("%v with registry %q: exit %d: %s", args, content, code, stderr)
			}
		}
		if b, _ := os.ReadFile(c.ipamFile); string(b) != content {
			t.Errorf("registry %q was rewritten to %q", content, b)
		}
	}
	if _, ok := c.sim.Guest(9101); ok {
		t.Error("a create with a corrupt registry made CT 9101")
	}
	// The way back the message gives: move it aside, rebuild it from PVE.
	must(t, os.Remove(c.ipamFile))
	c.create(t, "9101", "migra-client-01", "91", "--tenant", "acme")
	must(t, os.WriteFile(c.ipamFile, nil, 0o640))
	if code, _, _ := c.run(t, "", "ip", "list"); code != exitRegistry {
		t.Fatalf("ip list of an empty registry: exit %d", code)
	}
	must(t, os.Rename(c.ipamFile, c.ipamFile+".broken"))
	if code, stdout, stderr := c.run(t, "", "ip", "sync", "--repair"); code != exitOK || !strings.Contains(stdout, "10.1.10.91 (VMID 9101, migra-client-01) is used in PVE, not in the registry") {
		t.Fatalf("ip sync --repair: exit %d\n%s%s", code, stdout, stderr)
	}
	if l := c.leaseOf(t, "10.1.10.91"); l.State != ipam.StateAssigned || l.VMID != 9101 || l.Owner != "cloudpods/acme/migra-client-01" || l.Tenant != "acme" {
		t.Errorf("rebuilt lease = %+v", l)
	}
	if code, stdout, _ := c.run(t, "", "create", "9101", "migra-client-01", "91", "--tenant", "acme"); code != exitOK || !strings.Contains(stdout, "nothing to do") {
		t.Errorf("create after the rebuild: exit %d %s", code, stdout)
	}
}

// TestIPNextAndSync: ip next prints the address and VMID; ip sync reports
// drift both ways and writes nothing; --repair fixes it.
func TestIPNextAndSync(t *testing.T) {
	c := startCLI(t)
	c.create(t, "9101", "migra-client-01", "91")
	if code, stdout, _ := c.run(t, "", "ip", "next"); code != exitOK || strings.TrimSpace(stdout) != "IP 10.1.10.92  VMID 9102" {
		t.Fatalf("ip next: exit %d %q", code, stdout)
	}
	if code, stdout, _ := c.run(t, "", "ip", "next", "-o", "json"); code != exitOK || strings.TrimSpace(stdout) != `{"ip":"10.1.10.92","vmid":9102}` {
		t.Fatalf("ip next -o json: exit %d %q", code, stdout)
	}
	// Drift both ways: a guest set by hand, and the pod gone behind IPAM's back.
	must(t, c.sim.AddContainer(9150, map[string]string{"hostname": "by-hand", "ostype": "ubuntu", "memory": "512",
		"rootfs": "clients-main:subvol-9150-disk-0,size=8G", "net0": "name=eth0,bridge=vmbr0,ip=10.1.10.150/24,gw=10.1.10.1"}))
	if code, _, stderr := c.run(t, "", "destroy", "9101", "--force", "--yes", "--ipam", "none"); code != exitOK {
		t.Fatalf("destroy: %s", stderr)
	}
	before, _ := os.ReadFile(c.ipamFile)
	code, stdout, _ := c.run(t, "", "ip", "sync")
	for _, want := range []string{"drift found: 1 in PVE only, 1 leases without a guest",
		"PVE: 10.1.10.150 (VMID 9150, by-hand) is used in PVE, not in the registry (--repair fixes it)",
		"registry: 10.1.10.91 (VMID 9101, migra-client-01) is assigned but no guest has VMID 9101 (--repair fixes it)"} {
		if code != exitOK || !strings.Contains(stdout, want) {
			t.Errorf("ip sync: exit %d, lacks %q:\n%s", code, want, stdout)
		}
	}
	if after, _ := os.ReadFile(c.ipamFile); string(after) != string(before) {
		t.Error("ip sync without --repair wrote the registry")
	}
	if code, stdout, _ := c.run(t, "", "ip", "sync", "--repair"); code != exitOK || !strings.Contains(stdout, "drift repaired") {
		t.Fatalf("ip sync --repair: exit %d\n%s", code, stdout)
	}
	if code, stdout, _ := c.run(t, "", "ip", "sync"); code != exitOK || !strings.Contains(stdout, "the registry matches PVE") {
		t.Fatalf("ip sync after repair: exit %d\n%s", code, stdout)
	}
	if l := c.leaseOf(t, "10.1.10.150"); l.State != ipam.StateAssigned || l.VMID != 9150 {
		t.Errorf("by-hand's lease = %+v", l)
	}
}
