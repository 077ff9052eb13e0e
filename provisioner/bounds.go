package provisioner

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// NodeLimits is the most one guest can have on a node: its CPUs and its
// memory, as PVE's node status reports them. PVE itself accepts any memory
// size for a container (pct set 9101 -memory 9223372036854775807 passes),
// so the bound is ours to keep.
type NodeLimits struct {
	Node     string `json:"node"`
	CPUs     int    `json:"cpus"`
	MemoryMB int    `json:"memoryMb"`
}

func limitsOf(st pve.NodeStatus) NodeLimits {
	return NodeLimits{Node: st.Node, CPUs: st.CPUs, MemoryMB: int(st.Memory >> 20)}
}

// NodeLimits reads node's size from PVE, for a caller (the service) that
// checks a request before a create's preflight does. For AutoNode it is
// the online node with the most memory's: a pod bigger than that fits
// nowhere (placement checks every node when the job runs).
func (p *Provisioner) NodeLimits(ctx context.Context, node string) (NodeLimits, error) {
	if node == AutoNode {
		nodes, err := p.api.Nodes(ctx)
		if err != nil {
			return NodeLimits{}, apiProblem("list the cluster's nodes", err)
		}
		var l NodeLimits
		for _, n := range nodes {
			if n.Online() && int(n.MaxMem>>20) > l.MemoryMB {
				l = NodeLimits{Node: n.Name, CPUs: n.MaxCPU, MemoryMB: int(n.MaxMem >> 20)}
			}
		}
		return l, nil
	}
	st, err := p.api.NodeStatus(ctx, node)
	if errors.Is(err, pve.ErrNotFound) {
		return NodeLimits{}, problemf(ErrPreflight, "node %q is not in the cluster: pick one of the cluster's nodes", node)
	}
	if err != nil {
		return NodeLimits{}, apiProblem("read node "+node, err)
	}
	return limitsOf(st), nil
}

// Problems names each resource the node cannot give one guest: cores above
// its CPUs, memory or swap above its memory. Keys are the spec's field
// names (cores, memory, swap), as FieldProblems'; a limit PVE did not
// report (zero) is not checked.
func (l NodeLimits) Problems(cores, memoryMB, swapMB int) map[string]string {
	p := map[string]string{}
	if l.CPUs > 0 && cores > l.CPUs {
		p["cores"] = fmt.Sprintf("%d cores is more than node %s has (%d CPUs): ask for at most %d", cores, l.Node, l.CPUs, l.CPUs)
	}
	if l.MemoryMB > 0 && memoryMB > l.MemoryMB {
		p["memory"] = fmt.Sprintf("%d MB of memory is more than node %s has (%d MB): ask for at most %d", memoryMB, l.Node, l.MemoryMB, l.MemoryMB)
	}
	if l.MemoryMB > 0 && swapMB > l.MemoryMB {
		p["swap"] = fmt.Sprintf("%d MB of swap is more than node %s's memory (%d MB): ask for at most %d", swapMB, l.Node, l.MemoryMB, l.MemoryMB)
	}
	return p
}

// checkBounds is preflight's check of the spec's resources against the
// node it runs on (node is the status preflight read).
func (r *createRun) checkBounds(node pve.NodeStatus) error {
	problems := limitsOf(node).Problems(r.spec.Cores, r.spec.MemoryMB, r.spec.SwapMB)
	if len(problems) == 0 {
		return nil
	}
	msgs := make([]string, 0, len(problems))
	for _, m := range problems {
		msgs = append(msgs, m)
	}
	sort.Strings(msgs)
	return problemf(ErrPreflight, "%s", strings.Join(msgs, "; "))
}
