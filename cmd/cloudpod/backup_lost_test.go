package main

import (
	"strings"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
)

// A vzdump whose answer is lost while it waits for the node's global
// vzdump lock (another CT's long backup holds it) shows neither the CT's
// backup lock nor an archive for a while: backup looks the task up in
// PVE's task list and waits on it instead of starting a second backup
// (pve-manager PVE/VZDump.pm getlock; PVE/API2/Tasks.pm node_tasks).
func TestBackupAdoptsAQueuedVzdumpWhoseAnswerWasLost(t *testing.T) {
	// Each vzdump runs 3 s (300 s scaled by 0.01): longer than the 2 s
	// a lost backup gets to show itself.
	c := startCLIWith(t, func(cfg *pvesim.Config) { cfg.TaskDurations = map[string]time.Duration{"vzdump": 300 * time.Second} })
	c.create(t, "9101", "migra-client-01", "91", "--tenant", "acme")
	must(t, c.sim.AddContainer(9150, map[string]string{"hostname": "legacy", "ostype": "ubuntu", "memory": "512",
		"rootfs": "clients-main:subvol-9150-disk-0,size=8G"}))

	other := make(chan int, 1)
	go func() {
		code, _, _ := c.run(t, "", "backup", "9150")
		other <- code
	}()
	// The other backup holds the global lock once its CT carries the backup lock.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if g, _ := c.sim.Guest(9150); g.Lock == "backup" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the backup of CT 9150 never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	must(t, c.sim.AddFault(pvesim.Fault{Method: "POST", Path: "/nodes/pve/vzdump", Nth: 1, Kind: pvesim.Fault596, After: true}))
	code, stdout, stderr := c.run(t, "", "backup", "9101")
	if code != exitOK {
		t.Fatalf("backup 9101: exit %d\n%s%s", code, stdout, stderr)
	}
	if code := <-other; code != exitOK {
		t.Errorf("backup 9150: exit %d", code)
	}
	_, list, _ := c.run(t, "", "backup", "--list", "9101", "-o", "json")
	if n := strings.Count(list, `"vmid":9101`); n != 1 {
		t.Errorf("%d archives of CT 9101, want exactly one:\n%s\nbackup said:\n%s", n, list, stdout)
	}
	if !strings.Contains(stdout, "is the backup it started: waiting on it instead of starting another") || strings.Contains(stdout, "retrying") {
		t.Errorf("backup 9101 did not say it adopted the task it started:\n%s", stdout)
	}
}
