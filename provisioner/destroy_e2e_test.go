package provisioner_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
	"github.com/migrahosting/cloudpods/ipam"
	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

func TestDestroyRefusesUnsafeRequestsAndChangesNothing(t *testing.T) {
	l := startLifecycle(t)
	spec := l.pod(t, 9101, "migra-client-01", 91, "acme")
	must(t, l.env.Sim.AddContainer(9150, map[string]string{"hostname": "someone-else", "ostype": "ubuntu", "memory": "512",
		"rootfs": "clients-main:subvol-9150-disk-0,size=8G", "net0": "name=eth0,bridge=vmbr0,ip=10.1.10.150/24,type=veth"}))
	must(t, l.env.Sim.AddContainer(9050, map[string]string{"hostname": "old-template", "ostype": "ubuntu", "memory": "512",
		"rootfs": "clients-main:subvol-9050-disk-0,size=8G", "template": "1"}))
	setConfig := func(key, value string) func(t *testing.T) func() {
		return func(t *testing.T) func() {
			must(t, l.env.Sim.SetConfig(9101, key, value))
			return func() { must(t, l.env.Sim.SetConfig(9101, key, "")) }
		}
	}
	declined := errors.New("operator typed something else")
	tests := []struct {
		name  string
		req   provisioner.DestroyRequest
		setup func(t *testing.T) (undo func())
		kind  error
		want  string
	}{
		{name: "without --force", req: provisioner.DestroyRequest{VMID: 9101}, kind: provisioner.ErrRefused, want: "destroying CT 9101 (migra-client-01, 10.1.10.91) needs --force"},
		{name: "guest without our marker", req: provisioner.DestroyRequest{VMID: 9150, Force: true}, kind: provisioner.ErrRefused, want: "CT 9150 (someone-else) was not created by cloudpods"},
		{name: "the golden template", req: provisioner.DestroyRequest{VMID: 9000, Force: true, IgnoreOwnership: true}, kind: provisioner.ErrRefused, want: "CT 9000 is the golden template"},
		{name: "another template", req: provisioner.DestroyRequest{VMID: 9050, Force: true, IgnoreOwnership: true}, kind: provisioner.ErrRefused, want: "CT 9050 (old-template) is a template"},
		{name: "a VMID under 100", req: provisioner.DestroyRequest{VMID: 99, Force: true, IgnoreOwnership: true}, kind: provisioner.ErrRefused, want: "VMID 99 is below 100"},
		{name: "protection mode", req: provisioner.DestroyRequest{VMID: 9101, Force: true}, setup: setConfig("protection", "1"), kind: provisioner.ErrRefused, want: "CT 9101 (migra-client-01) has protection mode on"},
		{name: "already gone without --if-exists", req: provisioner.DestroyRequest{VMID: 9199, Force: true}, kind: provisioner.ErrPreflight, want: "CT 9199 does not exist on node pve"},
		{name: "confirmation declined", req: provisioner.DestroyRequest{VMID: 9101, Force: true,
			Confirm: func(ctx context.Context, pod provisioner.DestroyResult) error {
				if pod.Hostname != "migra-client-01" || pod.IP != "10.1.10.91" || pod.Tenant != "acme" || pod.Status != "running" {
					return fmt.Errorf("confirmation shown %+v", pod)
				}
				return fmt.Errorf("%w: %w", provisioner.ErrRefused, declined)
			}}, kind: declined, want: "operator typed something else"},
		{name: "a lock that stays", req: provisioner.DestroyRequest{VMID: 9101, Force: true, LockWait: 150 * time.Millisecond},
			setup: setConfig("lock", "create"), kind: pve.ErrWaitTimeout, want: "CT 9101 is still locked (create) after 150ms: a clone or create is running or crashed; if no such task is running (node > Task History), the lock is stale: clear it on the node with 'pct unlock 9101'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				defer tt.setup(t)()
			}
			before := guestIDs(l.env)
			req := tt.req
			req.Node, req.Requester = "pve", "ops"
			res, err := l.prov.Destroy(context.Background(), req)
			if !errors.Is(err, tt.kind) {
				t.Fatalf("err = %v, want kind %v", err, tt.kind)
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("err = %q, want one line saying %q", err, tt.want)
			}
			if res.Destroyed {
				t.Errorf("result says destroyed: %+v", res)
			}
			if after := guestIDs(l.env); after != before {
				t.Errorf("guests changed from %s to %s", before, after)
			}
			if g, ok := l.env.Sim.Guest(9101); !ok || g.Status != "running" {
				t.Errorf("CT 9101 = %+v, %v; want it running", g, ok)
			}
			if st := l.lease(t, spec.IP); st != ipam.StateAssigned {
				t.Errorf("lease of %s is %q, want assigned", spec.IP, st)
			}
		})
	}
	lines := readAudit(t, l.audit)
	refusals := 0
	for _, e := range lines {
		if e.Command == "destroy" {
			refusals++
			if e.Outcome != "failed" || e.Requester != "ops" || e.Error == "" || e.TokenID != "cloudpods@pve!provisioner" {
				t.Errorf("audit line of a refused destroy = %+v", e)
			}
		}
	}
	if refusals != len(tests) {
		t.Errorf("%d destroy audit lines, want %d", refusals, len(tests))
	}
}

func TestDestroyRemovesConfigVolumesAndLease(t *testing.T) {
	tests := []struct {
		name string
		// setup makes what is destroyed and returns its vmid and address.
		setup func(t *testing.T, l *lifecycle) (int, netip.Addr)
		req   provisioner.DestroyRequest
		check func(t *testing.T, l *lifecycle, res provisioner.DestroyResult)
	}{
		{name: "running pod", setup: func(t *testing.T, l *lifecycle) (int, netip.Addr) {
			return 9101, l.pod(t, 9101, "migra-client-01", 91, "acme").IP
		}},
		{name: "stopped pod", setup: func(t *testing.T, l *lifecycle) (int, netip.Addr) {
			s := l.pod(t, 9102, "migra-client-02", 92, "acme")
			l.stop(t, 9102)
			return 9102, s.IP
		}},
		{name: "pod with snapshots and backups, backup first", setup: func(t *testing.T, l *lifecycle) (int, netip.Addr) {
			s := l.pod(t, 9103, "migra-client-03", 93, "acme")
			l.snapshot(t, 9103, "before-upgrade")
			if _, err := l.prov.Backup(context.Background(), provisioner.BackupRequest{Node: "pve", VMID: 9103, Storage: "t7-backup"}); err != nil {
				t.Fatal(err)
			}
			return 9103, s.IP
		}, req: provisioner.DestroyRequest{BackupFirst: true, BackupStorage: "vzdump-backups"},
			check: func(t *testing.T, l *lifecycle, res provisioner.DestroyResult) {
				if len(res.Snapshots) != 1 || len(res.Backups) != 1 || !strings.Contains(strings.Join(res.Warnings, " "), "1 snapshot (before-upgrade)") {
					t.Errorf("snapshots %v, backups %v, warnings %q", res.Snapshots, res.Backups, res.Warnings)
				}
				if !strings.HasPrefix(res.BackupID, "vzdump-backups:backup/vzdump-lxc-9103-") {
					t.Errorf("backup first = %q", res.BackupID)
				}
				kept, err := l.prov.Backups(context.Background(), "pve", 9103)
				if err != nil || len(kept) != 2 {
					t.Fatalf("backups after destroy = %+v, %v; want both kept", kept, err)
				}
				for _, b := range kept {
					if !strings.Contains(b.Notes, "tenant=acme") {
						t.Errorf("backup notes %q lack the tenant", b.Notes)
					}
				}
			}},
		{name: "pod locked by a backup that ends", setup: func(t *testing.T, l *lifecycle) (int, netip.Addr) {
			s := l.pod(t, 9104, "migra-client-04", 94, "acme")
			must(t, l.env.Sim.SetConfig(9104, "lock", "backup"))
			go func() {
				time.Sleep(200 * time.Millisecond)
				_ = l.env.Sim.SetConfig(9104, "lock", "")
			}()
			return 9104, s.IP
		}},
		{name: "foreign CT with --ignore-ownership, unreferenced disk too", setup: func(t *testing.T, l *lifecycle) (int, netip.Addr) {
			must(t, l.env.Sim.AddContainer(9150, map[string]string{"hostname": "legacy", "ostype": "ubuntu", "memory": "512",
				"rootfs": "clients-main:subvol-9150-disk-0,size=8G"}))
			// disk-0 stays behind, referenced by nothing once rootfs moves on.
			must(t, l.env.Sim.SetConfig(9150, "rootfs", "clients-main:subvol-9150-disk-1,size=8G"))
			return 9150, netip.Addr{}
		}, req: provisioner.DestroyRequest{IgnoreOwnership: true},
			check: func(t *testing.T, l *lifecycle, res provisioner.DestroyResult) {
				if disk0 := filepath.Join(l.env.DataDir, "clients-main", "subvol-9150-disk-0"); exists(disk0) {
					t.Errorf("unreferenced %s is still there: destroy-unreferenced-disks did not reach PVE", disk0)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := startLifecycle(t)
			vmid, ip := tt.setup(t, l)
			root := l.env.Sim.RootDir(vmid)
			if root == "" {
				t.Fatalf("CT %d has no root directory", vmid)
			}
			var ev events
			req := tt.req
			req.Node, req.VMID, req.Force, req.Requester, req.Reporter = "pve", vmid, true, "ops", &ev
			req.ShutdownTimeout = 5 * time.Second
			res, err := l.prov.Destroy(context.Background(), req)
			if err != nil {
				t.Fatalf("destroy: %v (events %+v)", err, ev.list)
			}
			if !res.Existed || !res.Destroyed {
				t.Errorf("result = %+v", res)
			}
			if _, ok := l.env.Sim.Guest(vmid); ok {
				t.Errorf("CT %d still exists", vmid)
			}
			if exists(root) {
				t.Errorf("root directory %s is still there", root)
			}
			if ip.IsValid() {
				if st := l.lease(t, ip); st != ipam.StateReleased {
					t.Errorf("lease of %s is %q, want released", ip, st)
				}
				if res.Released != ip.String() {
					t.Errorf("released = %q, want %s", res.Released, ip)
				}
			}
			if tt.check != nil {
				tt.check(t, l, res)
			}
			lines := readAudit(t, l.audit)
			last := lines[len(lines)-1]
			if last.Command != "destroy" || last.Outcome != "ok" || last.VMID != vmid || last.Requester != "ops" {
				t.Errorf("last audit line = %+v", last)
			}
			if ip.IsValid() && (last.IP != ip.String() || last.Tenant != "acme") {
				t.Errorf("audit line lacks the pod's address or tenant: %+v", last)
			}

			// Again: gone, and --if-exists makes that a success.
			res, err = l.prov.Destroy(context.Background(), provisioner.DestroyRequest{Node: "pve", VMID: vmid, Force: true, IfExists: true})
			if err != nil || res.Existed || res.Destroyed {
				t.Errorf("second destroy with IfExists = %+v, %v", res, err)
			}
		})
	}
}

func TestDestroyThroughFaults(t *testing.T) {
	const ct = "/nodes/pve/lxc/9101"
	tests := []struct {
		name  string
		fault pvesim.Fault
		// wantErr is "" when destroy must succeed despite the fault.
		wantErr  string
		wantWarn string
		// calls counts requests where the fault makes their number certain.
		calls map[string]int
	}{
		{name: "DELETE answer lost after it ran", fault: pvesim.Fault{Method: "DELETE", Path: ct, Nth: 1, Kind: "596", After: true}},
		{name: "DELETE connection dropped before it ran", fault: pvesim.Fault{Method: "DELETE", Path: ct, Nth: 1, Kind: "drop"}, calls: map[string]int{"DELETE": 2}},
		{name: "DELETE refused once by a config lock", fault: pvesim.Fault{Method: "DELETE", Path: ct, Nth: 1, Kind: "lock"}, calls: map[string]int{"DELETE": 2}},
		{name: "DELETE slow", fault: pvesim.Fault{Method: "DELETE", Path: ct, Nth: 1, Kind: "slow", Delay: 300 * time.Millisecond}},
		{name: "shutdown answer lost after it ran", fault: pvesim.Fault{Method: "POST", Path: ct + "/status/shutdown", Nth: 1, Kind: "596", After: true}},
		{name: "shutdown task fails: hard stop", fault: pvesim.Fault{Method: "POST", Path: ct + "/status/shutdown", Kind: "taskfail", Message: "CT 9101 did not shut down in time"},
			wantWarn: "clean shutdown of CT 9101 failed", calls: map[string]int{"shutdown": 1, "stop": 1}},
		{name: "DELETE refused for good", fault: pvesim.Fault{Method: "DELETE", Path: ct, Kind: "500", Message: "zfs error: cannot destroy 'rpool/data/subvol-9101-disk-0': dataset is busy"},
			wantErr: "step delete failed", calls: map[string]int{"DELETE": 1}},
		{name: "destroy task fails", fault: pvesim.Fault{Method: "DELETE", Path: ct, Kind: "taskfail", Message: "zfs error: dataset is busy"},
			wantErr: "task vzdestroy failed: zfs error: dataset is busy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := startLifecycle(t)
			spec := l.pod(t, 9101, "migra-client-01", 91, "acme")
			must(t, l.env.Sim.AddFault(tt.fault))
			var ev events
			res, err := l.prov.Destroy(context.Background(), provisioner.DestroyRequest{Node: "pve", VMID: 9101, Force: true,
				Requester: "ops", Reporter: &ev, ShutdownTimeout: 5 * time.Second})
			served := l.env.Sim.Requests()
			for call, want := range tt.calls {
				key := map[string]string{"DELETE": "DELETE /nodes/{node}/lxc/{vmid}", "shutdown": "POST /nodes/{node}/lxc/{vmid}/status/shutdown",
					"stop": "POST /nodes/{node}/lxc/{vmid}/status/stop"}[call]
				if served[key] != want {
					t.Errorf("%s requests = %d, want %d", call, served[key], want)
				}
			}
			_, stillThere := l.env.Sim.Guest(9101)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if !stillThere || res.Destroyed {
					t.Errorf("CT 9101 there = %v, result %+v", stillThere, res)
				}
				if st := l.lease(t, spec.IP); st != ipam.StateAssigned {
					t.Errorf("lease of a pod that is still there is %q, want assigned", st)
				}
				return
			}
			if err != nil {
				t.Fatalf("destroy: %v", err)
			}
			if stillThere || !res.Destroyed {
				t.Errorf("CT 9101 there = %v, result %+v", stillThere, res)
			}
			if st := l.lease(t, spec.IP); st != ipam.StateReleased {
				t.Errorf("lease of %s is %q, want released", spec.IP, st)
			}
			if tt.wantWarn != "" && !strings.Contains(strings.Join(res.Warnings, "\n"), tt.wantWarn) {
				t.Errorf("warnings %q, want %q", res.Warnings, tt.wantWarn)
			}
		})
	}
}
