package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCTCreateHoldsALease: ct create with a static address inside IPAM's
// pool leases it like a pod: `ip list` shows it assigned to the CT, and a
// pod asking for the same address is refused as a conflict (exit 4).
func TestCTCreateHoldsALease(t *testing.T) {
	c := startCLIWith(t, withNetworkToken)
	c.mustRun(t, 0, "template", "download", debian12, "--storage", "local")
	out, _ := c.mustRun(t, 0, "ct", "create", "--vmid", "300", "--hostname", "web1", "--ostemplate", "local:vztmpl/"+debian12,
		"--net", "name=eth0,bridge=vmbr0,ip=10.1.10.120/24,gw=10.1.10.1", "--dry-run")
	wantIn(t, "dry run", out, "IPAM   reserve", "hostname=web1 ip=10.1.10.120 vmid=300")
	out, _ = c.mustRun(t, 0, "ct", "create", "--vmid", "300", "--hostname", "web1", "--ostemplate", "local:vztmpl/"+debian12,
		"--net", "name=eth0,bridge=vmbr0,ip=10.1.10.120/24,gw=10.1.10.1")
	wantIn(t, "create", out, "10.1.10.120 reserved")

	out, _ = c.mustRun(t, 0, "ip", "list", "--output", "json")
	found := false
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var l struct {
			IP, State, Hostname string
			VMID                int
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("ip list: %v\n%s", err, out)
		}
		found = found || (l.IP == "10.1.10.120" && l.State == "assigned" && l.VMID == 300 && l.Hostname == "web1")
	}
	if !found {
		t.Errorf("ip list has no assigned lease of 10.1.10.120 for CT 300:\n%s", out)
	}

	_, errs := c.mustRun(t, exitConflict, "create", "--host", "pod1", "--vmid", "auto", "--ip", "10.1.10.120")
	wantIn(t, "the pod", errs, "IP 10.1.10.120 is already used by CT 300 (web1)")
}
