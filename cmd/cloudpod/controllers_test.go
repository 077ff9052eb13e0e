package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/ipam"
)

// controller is one `cloudpod create --count` process with its own
// registry, as the panel's service and an ops laptop would be.
type controller struct {
	name     string
	registry string
	cmd      *exec.Cmd
	out      strings.Builder
}

// TestTwoControllersNeverShareAnAddressOrVMID: two processes, each with
// its own registry file, create 20 pods each with --vmid auto --ip auto at
// once against one PVE. Both registries start empty, so both pick the
// same addresses, and the same VMIDs when their ranges are the same: PVE
// settles it (a clone to a VMID that exists fails; the claim after
// configure decides who keeps an address). 40 pods, 40 distinct addresses
// and VMIDs, each registry holding its own 20. With the VMID ranges apart
// nothing but the claim keeps the addresses apart.
func TestTwoControllersNeverShareAnAddressOrVMID(t *testing.T) {
	for _, tt := range []struct {
		name   string
		ranges [2]string
	}{
		{"one VMID range", [2]string{"9101-9999", "9101-9999"}},
		{"VMID ranges apart", [2]string{"9101-9499", "9501-9999"}},
	} {
		t.Run(tt.name, func(t *testing.T) { twoControllers(t, tt.ranges) })
	}
}

func twoControllers(t *testing.T, ranges [2]string) {
	c := startCLI(t)
	const each = 20
	tokenFile := c.flags[slices.Index(c.flags, "--token-file")+1]
	var ctls []*controller
	for i, name := range []string{"panel", "laptop"} {
		dir := t.TempDir()
		ctl := &controller{name: name, registry: filepath.Join(dir, "ipam.json")}
		ctl.cmd = exec.Command(os.Args[0], "create", "--count", fmt.Sprint(each), "--host", name, "--vmid", "auto", "--ip", "auto",
			"--concurrency", "8", "--output", "json", "--vmid-range", ranges[i],
			"--pve-url", c.sim.URL(), "--token-id", testTokenID, "--token-file", tokenFile, "--fingerprint", c.sim.Fingerprint(),
			"--ipam-file", ctl.registry, "--audit-log", filepath.Join(dir, "audit.log"), "--config", filepath.Join(dir, "none.env"))
		must(t, os.WriteFile(filepath.Join(dir, "none.env"), nil, 0o600))
		ctl.cmd.Env = append(os.Environ(), "CLOUDPODS_CLI_CHILD=1")
		ctl.cmd.Stdout, ctl.cmd.Stderr = &ctl.out, &ctl.out
		ctls = append(ctls, ctl)
	}
	start := time.Now()
	for _, ctl := range ctls {
		if err := ctl.cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}
	vmids, ips := map[int]string{}, map[string]string{}
	movedVMID, movedIP, waited := 0, 0, 0
	for _, ctl := range ctls {
		err := ctl.cmd.Wait()
		sc := bufio.NewScanner(strings.NewReader(ctl.out.String()))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		ok := 0
		for sc.Scan() {
			var r outputLine
			if json.Unmarshal(sc.Bytes(), &r) != nil {
				continue
			}
			switch {
			case r.Type == "event" && strings.Contains(r.Message, "cloning to VMID"):
				movedVMID++
			case r.Type == "event" && strings.Contains(r.Message, "moved to"):
				movedIP++
			case r.Type == "event" && strings.Contains(r.Message, "waiting for it to give them up"):
				waited++
			case r.Type != "result":
			case r.Error != "" || r.Result.Status != "running":
				t.Errorf("%s: %s: %s %s", ctl.name, r.Result.Hostname, r.Result.Status, r.Error)
			default:
				ok++
				if other, dup := vmids[r.Result.VMID]; dup {
					t.Errorf("VMID %d handed to %s and %s", r.Result.VMID, other, r.Result.Hostname)
				}
				if other, dup := ips[r.Result.IP]; dup {
					t.Errorf("IP %s handed to %s and %s", r.Result.IP, other, r.Result.Hostname)
				}
				vmids[r.Result.VMID], ips[r.Result.IP] = r.Result.Hostname, r.Result.Hostname
			}
		}
		if err != nil || ok != each {
			t.Errorf("%s: %v, %d pods ok\n%s", ctl.name, err, ok, lastLines(ctl.out.String(), 15))
		}
	}
	t.Logf("%d pods in %s; the controllers met on %d VMIDs and %d addresses (%d waits)", len(vmids), time.Since(start).Round(time.Millisecond), movedVMID, movedIP, waited)

	// PVE is the truth: 40 running pods, each with its own address.
	inPVE := map[string]int{}
	for vmid, host := range vmids {
		g, ok := c.sim.Guest(vmid)
		if !ok || g.Status != "running" || g.Config["hostname"] != host {
			t.Errorf("CT %d (%s) in PVE: %+v", vmid, host, g)
			continue
		}
		for _, a := range ipam.ConfigAddrs(g.Config) {
			if other, dup := inPVE[a.String()]; dup {
				t.Errorf("PVE has %s on CT %d and CT %d", a, other, vmid)
			}
			inPVE[a.String()] = vmid
		}
	}
	if len(vmids) != 2*each || len(ips) != 2*each || len(inPVE) != 2*each {
		t.Errorf("%d VMIDs, %d addresses, %d addresses in PVE; want %d each", len(vmids), len(ips), len(inPVE), 2*each)
	}
	// Each registry holds its own pods, assigned, and nothing else active.
	for _, ctl := range ctls {
		raw, err := os.ReadFile(ctl.registry)
		if err != nil {
			t.Fatal(err)
		}
		var reg ipam.Registry
		must(t, json.Unmarshal(raw, &reg))
		active := 0
		for _, l := range reg.Leases {
			if l.State == ipam.StateReleased {
				continue
			}
			active++
			if l.State != ipam.StateAssigned || !strings.HasPrefix(vmids[l.VMID], ctl.name+"-") || ips[netip.PrefixFrom(l.IP, 24).String()] != vmids[l.VMID] {
				t.Errorf("%s's registry holds %+v", ctl.name, l)
			}
		}
		if active != each {
			t.Errorf("%s's registry holds %d active leases, want %d", ctl.name, active, each)
		}
	}
}
