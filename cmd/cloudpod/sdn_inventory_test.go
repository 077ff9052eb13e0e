package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// With --ipam pve-sdn, PVE's SDN IPAM answers the address question: every
// address is claimed there (POST …/vnets/{vnet}/ips), so a create reads
// no other guest's config, only the template's and its own; a busy cluster
// costs one listing per look.
func TestSDNIPAMAnswersAddressesWithoutReadingConfigs(t *testing.T) {
	c := startCLI(t)
	must(t, c.sim.SeedGuests(60))
	existing := map[string]bool{}
	for _, g := range c.sim.Guests() {
		if g.VMID != 9000 {
			existing[fmt.Sprintf("GET /nodes/pve/%s/%d/config", g.Type, g.VMID)] = true
		}
	}
	c.sim.RecordRequests()
	code, out, errs := c.run(t, "", "create", "--count", "3", "--host", "sdn", "--vmid", "auto", "--ip", "auto", "--output", "json",
		"--ipam", "pve-sdn", "--sdn-zone", "cpods", "--sdn-vnet", "vnet0")
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, lastLines(out, 10), errs)
	}
	ips := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var r outputLine
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.Type == "result" {
			if r.Error != "" || r.Result.Status != "running" || ips[r.Result.IP] {
				t.Errorf("%s: %s %s %s", r.Result.Hostname, r.Result.Status, r.Result.IP, r.Error)
			}
			ips[r.Result.IP] = true
		}
	}
	claims, reads := 0, 0
	for _, rec := range c.sim.RequestLog() {
		switch {
		case existing[rec.Path]:
			t.Errorf("read an existing guest's config: %s", rec.Path)
		case rec.Route == "POST /cluster/sdn/vnets/{vnet}/ips":
			claims++
		case strings.HasSuffix(rec.Path, "/config") && strings.HasPrefix(rec.Path, "GET "):
			reads++
		}
	}
	if len(ips) != 3 || claims != 3 || reads == 0 {
		t.Errorf("%d pods, %d SDN claims, %d config reads of the template and the pods", len(ips), claims, reads)
	}
}
