package pvetest

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// A cluster of several nodes: Online names them (New has pve alone),
// NodeUse is what each node's host uses by itself, NodeStorageList
// overrides a node's storages (else StorageList, every node's), and a
// storage with Shared set is one every node sees. Clones to another node
// and migrations follow PVE's rules as far as flow logic needs them.

// AddNode adds an online node with the fake's storages.
func (f *Fake) AddNode(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Online[name] = true
}

// SetOnline takes a node offline or brings it back.
func (f *Fake) SetOnline(name string, online bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Online[name] = online
}

func (f *Fake) Nodes(ctx context.Context) ([]pve.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, _ := f.enter("Nodes", pve.GuestRef{}, ""); err != nil {
		return nil, err
	}
	var out []pve.Node
	for name, online := range f.Online {
		n := pve.Node{Name: name, Status: "offline"}
		if online {
			n.Status, n.MaxCPU, n.MaxMem, n.Mem = "online", f.NodeCPUs, f.NodeMemory, f.NodeUse[name]
			for _, g := range f.guests {
				if g.Node == name && g.Status == "running" {
					m, _ := strconv.ParseInt(g.Config["memory"], 10, 64)
					n.Mem += m << 20 / 4
				}
			}
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// storagesOf is a node's storages.
func (f *Fake) storagesOf(node string) []pve.Storage {
	if list, ok := f.NodeStorageList[node]; ok {
		return list
	}
	return f.StorageList
}

// shared says whether a storage is one every node sees.
func (f *Fake) shared(id string) bool {
	for _, s := range f.StorageList {
		if s.ID == id {
			return s.Shared
		}
	}
	return false
}

// cloneTarget checks a clone to another node as PVE's clone_vm does: the
// storage the clone lands on must be shared.
func (f *Fake) cloneTarget(source pve.GuestRef, src *Guest, o pve.CloneOptions) error {
	if o.Target == "" || o.Target == source.Node {
		return nil
	}
	if _, ok := f.Online[o.Target]; !ok {
		return refused("POST", source, "/clone", fmt.Sprintf("no such cluster node '%s'", o.Target))
	}
	if o.Storage != "" && !f.shared(o.Storage) {
		return refused("POST", source, "/clone", fmt.Sprintf("can't clone to non-shared storage '%s'", o.Storage))
	}
	landing := o.Storage
	if landing == "" {
		landing, _, _ = strings.Cut(src.Config["rootfs"], ":")
		if source.Kind == pve.QEMU {
			landing, _, _ = strings.Cut(src.Config["scsi0"], ":")
		}
	}
	if !f.shared(landing) {
		return refused("POST", source, "/clone", fmt.Sprintf("can't clone %s to node '%s' (%s uses local storage)", source.Kind.Noun(), o.Target, source.Kind.Noun()))
	}
	return nil
}

func (f *Fake) MigrateGuest(ctx context.Context, g pve.GuestRef, target string, o pve.MigrateOptions) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	before, after := f.enter("MigrateGuest", g, "to "+target)
	if before != nil {
		return "", before
	}
	got, ok := f.guest(g)
	if !ok {
		return "", notFound("POST", g, "/migrate")
	}
	if target == g.Node {
		return "", &pve.APIError{Method: "POST", Path: path(g, "/migrate"), Status: 400, Message: "Parameter verification failed.",
			Errors: map[string]string{"target": "target is local node."}}
	}
	if _, ok := f.Online[target]; !ok {
		return "", refused("POST", g, "/migrate", fmt.Sprintf("no such cluster node '%s'", target))
	}
	if got.Status == "running" && !o.Restart {
		return "", refused("POST", g, "/migrate", "can't migrate running container without --online or --restart")
	}
	typ := "vzmigrate"
	if g.Kind == pve.QEMU {
		typ = "qmigrate"
	}
	upid, ok := f.startTask(g.Node, typ, strconv.Itoa(g.VMID))
	if ok {
		if !f.Online[target] {
			f.tasks[upid].status.ExitStatus = "migration aborted"
		} else {
			got.Node = target
		}
	}
	return answer(upid, after)
}
