package provisioner

import (
	"context"
	"errors"
	"fmt"

	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Finding a guest wherever it lives. Every command that takes a bare VMID
// (destroy, backup, health, show, ip sync's checks) asks PVE's cluster
// listing where the guest is — one cluster/resources read — instead of
// being told a node; a node given explicitly is asked directly, as PVE
// would be. A guest on a node that is offline is found too: PVE lists it
// (status unknown), but nothing can be asked of it there.

// Located is a guest found in the cluster.
type Located struct {
	Ref pve.GuestRef
	// Guest is its listing row (status, name, tags).
	Guest pve.Guest
	// NodeDown is set when its node is not online: PVE cannot be asked
	// about the guest until the node is back.
	NodeDown string
}

// ErrNodeDown marks a guest whose node is offline.
var ErrNodeDown = errors.New("its node is offline")

// Locate finds vmid: on node when one is given, else wherever the cluster
// listing has it. A VMID the cluster does not have is pve.ErrNotFound,
// named "on node X" for a one-node cluster (or a given node) and "in the
// cluster" otherwise.
func (p *Provisioner) Locate(ctx context.Context, node string, vmid int) (Located, error) {
	if node != "" {
		g, cfg, err := p.guestConfigAnyKind(ctx, node, vmid)
		if err != nil {
			return Located{Ref: g}, err
		}
		return Located{Ref: g, Guest: pve.Guest{VMID: vmid, Type: g.Kind, Node: node, Name: guestName(g, cfg)}}, nil
	}
	guests, err := p.api.Guests(ctx)
	if err != nil {
		return Located{Ref: pve.CT("", vmid)}, apiProblem("list the cluster's guests", err)
	}
	for _, g := range guests {
		if g.VMID != vmid || !g.Type.Valid() {
			continue
		}
		loc := Located{Ref: g.Ref(), Guest: g}
		if down, err := p.nodeDown(ctx, g.Node); err != nil {
			return loc, err
		} else if down != "" {
			loc.NodeDown = down
		}
		return loc, nil
	}
	where, err := p.soleNode(ctx)
	if err != nil {
		return Located{Ref: pve.CT("", vmid)}, err
	}
	return Located{Ref: pve.CT(where, vmid)}, fmt.Errorf("CT %d %s: %w", vmid, whereText(where), pve.ErrNotFound)
}

// whereText is "on node pve" or, with no node, "in the cluster".
func whereText(node string) string {
	if node == "" {
		return "in the cluster"
	}
	return "on node " + node
}

// soleNode is the cluster's node when it has one alone, else "".
func (p *Provisioner) soleNode(ctx context.Context) (string, error) {
	nodes, err := p.api.Nodes(ctx)
	if err != nil {
		return "", apiProblem("list the cluster's nodes", err)
	}
	if len(nodes) == 1 {
		return nodes[0].Name, nil
	}
	return "", nil
}

// nodeDown says how node is when it is not online ("offline", "unknown"),
// "" when it is.
func (p *Provisioner) nodeDown(ctx context.Context, node string) (string, error) {
	nodes, err := p.api.Nodes(ctx)
	if err != nil {
		return "", apiProblem("list the cluster's nodes", err)
	}
	for _, n := range nodes {
		if n.Name == node {
			if n.Online() {
				return "", nil
			}
			return orDefault(n.Status, "unknown"), nil
		}
	}
	return "unknown", nil
}

// downNodes are the cluster's nodes that are not online, by name.
func (p *Provisioner) downNodes(ctx context.Context) (map[string]string, error) {
	nodes, err := p.api.Nodes(ctx)
	if err != nil {
		return nil, apiProblem("list the cluster's nodes", err)
	}
	out := map[string]string{}
	for _, n := range nodes {
		if !n.Online() {
			out[n.Name] = orDefault(n.Status, "unknown")
		}
	}
	return out, nil
}

// migrateTo moves a stopped guest to target (offline migration) and waits
// for the task, which runs on the guest's node. A migration whose answer
// was lost is settled by where the guest is.
func (p *Provisioner) migrateTo(ctx context.Context, run *flow.Run, g pve.GuestRef, target string) error {
	moved := func(ctx context.Context, _ error) (bool, error) {
		_, err := p.api.GuestConfig(ctx, pve.GuestRef{Kind: g.Kind, Node: target, VMID: g.VMID})
		if errors.Is(err, pve.ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	}
	_, err := run.Retry().Task(ctx, fmt.Sprintf("migrate %s to node %s", g, target), func(ctx context.Context) (string, error) {
		return p.api.MigrateGuest(ctx, g, target, pve.MigrateOptions{})
	}, func(ctx context.Context, upid string) error {
		_, err := p.wait(ctx, g.Node, upid)
		return err
	}, moved)
	if err != nil {
		return err
	}
	return p.waitNoLock(ctx, pve.GuestRef{Kind: g.Kind, Node: target, VMID: g.VMID}, p.opts.TaskTimeout)
}

// unreadable is a guest whose node could not be reached: the listing's row
// with the config an earlier look read, if any (the view keeps what it
// knew of its addresses and marker), marked unknown.
func unreadable(old *viewGuest, g pve.Guest) *viewGuest {
	vg := &viewGuest{Guest: g, unknown: true}
	if old != nil {
		vg.cfg, vg.addrs, vg.marker, vg.owned = old.cfg, old.addrs, old.marker, old.owned
	}
	return vg
}

// findGuest reads vmid's config: on node when one is given (as a
// container, else as a VM), else wherever the cluster has it. A guest on
// a node that is down is ErrNodeDown with its reference; a VMID nowhere is
// pve.ErrNotFound, its reference on the only node or none.
func (p *Provisioner) findGuest(ctx context.Context, node string, vmid int) (pve.GuestRef, pve.Config, error) {
	if node != "" {
		return p.guestConfigAnyKind(ctx, node, vmid)
	}
	loc, err := p.Locate(ctx, "", vmid)
	if err != nil {
		return loc.Ref, pve.Config{}, err
	}
	if loc.NodeDown != "" {
		return loc.Ref, pve.Config{}, nodeDownError(loc)
	}
	cfg, err := p.api.GuestConfig(ctx, loc.Ref)
	if errors.Is(err, pve.ErrNodeUnreachable) {
		return loc.Ref, cfg, nodeDownError(Located{Ref: loc.Ref, NodeDown: "unreachable"})
	}
	return loc.Ref, cfg, err
}

// nodeDownError says a guest's node is down; it matches ErrNodeDown.
func nodeDownError(loc Located) error { return &nodeDown{ref: loc.Ref, state: loc.NodeDown} }

type nodeDown struct {
	ref   pve.GuestRef
	state string
}

func (e *nodeDown) Error() string {
	return fmt.Sprintf("%s is on node %s, which is %s", e.ref, e.ref.Node, e.state)
}

func (e *nodeDown) Is(target error) bool { return target == ErrNodeDown }
