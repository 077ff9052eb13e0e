package provisioner_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/migrahosting/cloudpods/provisioner"
)

// TestConcurrentCreatesFromOneTemplate: ten creates at once, each with its
// own Provisioner (so each is its own "process" for the in-process clone
// lock: PVE's "CT is locked (disk)" on the template is what serializes
// them), one IPAM registry file, VMID and IP auto. All succeed, and no VMID
// or IP is handed out twice.
func TestConcurrentCreatesFromOneTemplate(t *testing.T) {
	env := startPodEnv(t, envOptions{})
	const n = 10
	results := make([]provisioner.CreateResult, n)
	errs := make([]error, n)
	locked := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prov := env.provisioner(t, env.api, provisioner.Options{})
			spec := provisioner.DefaultSpec()
			spec.Hostname = fmt.Sprintf("migra-client-%02d", i+1)
			rep := provisioner.ReporterFunc(func(ev provisioner.Event) {
				if ev.Step == provisioner.StepClone && ev.Phase == provisioner.PhaseInfo {
					locked[i]++
				}
			})
			results[i], errs[i] = prov.Create(context.Background(), provisioner.CreateRequest{Spec: spec, Reporter: rep})
		}()
	}
	wg.Wait()
	vmids, ips := map[int]string{}, map[string]string{}
	waits := 0
	for i, res := range results {
		if errs[i] != nil {
			t.Errorf("%s: %v", res.Hostname, errs[i])
			continue
		}
		waits += locked[i]
		if other, dup := vmids[res.VMID]; dup {
			t.Errorf("VMID %d given to %s and %s", res.VMID, other, res.Hostname)
		}
		if other, dup := ips[res.IP]; dup {
			t.Errorf("IP %s given to %s and %s", res.IP, other, res.Hostname)
		}
		vmids[res.VMID], ips[res.IP] = res.Hostname, res.Hostname
		spec := provisioner.DefaultSpec()
		spec.VMID, spec.Hostname = res.VMID, res.Hostname
		spec.IP = parseIP(t, res.IP)
		env.checkPod(t, spec)
	}
	if len(env.activeLeases(t)) != n {
		t.Errorf("registry holds %d active leases, want %d", len(env.activeLeases(t)), n)
	}
	t.Logf("%d pods, VMIDs %v; the clones waited out the template's lock %d times", len(vmids), keys(vmids), waits)
}

// TestConcurrentCreateProcesses: the same with real separate processes
// sharing the registry file.
func TestConcurrentCreateProcesses(t *testing.T) {
	env := crashEnv(t)
	const n = 4
	audit := filepath.Join(t.TempDir(), "audit.log")
	children := make([]*child, n)
	for i := range children {
		children[i] = startChild(t, env.childEnv(audit, fmt.Sprintf("migra-proc-%02d", i+1)))
	}
	// Every process finishes before any pod is checked: a pod's check
	// includes "the template is not locked", which holds only once no
	// clone is running.
	for i, c := range children {
		if code := c.finish(t); code != 0 {
			t.Fatalf("process %d exited %d: %s\n%s", i, code, c.result.Error, c.stderr.String())
		}
	}
	vmids, ips := map[int]bool{}, map[string]bool{}
	for i, c := range children {
		if vmids[c.result.VMID] || ips[c.result.IP] {
			t.Errorf("VMID %d or IP %s handed out twice", c.result.VMID, c.result.IP)
		}
		vmids[c.result.VMID], ips[c.result.IP] = true, true
		env.checkOneOf(t, fmt.Sprintf("migra-proc-%02d", i+1), c.result)
	}
	if got := len(readAudit(t, audit)); got != n {
		t.Errorf("audit log has %d lines, want %d", got, n)
	}
}

// checkOneOf is checkPod for one of several pods.
func (e *podEnv) checkOneOf(t *testing.T, hostname string, res childResult) {
	t.Helper()
	spec := provisioner.DefaultSpec()
	spec.VMID, spec.Hostname = res.VMID, hostname
	spec.IP = parseIP(t, res.IP)
	e.checkPod(t, spec)
}
