package provisioner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Template copy: a per-node copy of the golden template, so that clones
// on every node run at once. PVE locks a template for the whole clone
// (pve-container API2/LXC.pm clone_vm sets lock 'disk' on the source), so
// clones of one template go one after another whatever node they land on;
// a copy on each node has its own lock and clones on its own node. The
// copy is a full clone of the template made where PVE allows it: with
// target straight to the node when it lands on shared storage, else on
// the template's node and migrated offline. It then becomes a template,
// and a line in its description says what it copies; placement uses it
// for pods on that node (RouteCopy). A copy is as old as its making: after
// rebuilding the golden template, destroy the copies and copy again.

// Steps of template copy.
const (
	StepCopy    = "copy"
	StepMigrate = "migrate"
)

// copyMarkerPrefix starts the description line that makes a template a
// copy of another.
const copyMarkerPrefix = "cloudpods-template-copy: "

// copyMarker is that line's content.
type copyMarker struct {
	Of   int       `json:"of"`
	Node string    `json:"node"`
	Run  string    `json:"run"`
	Made time.Time `json:"made"`
}

func (m copyMarker) line() string {
	b, _ := json.Marshal(m)
	return copyMarkerPrefix + string(b)
}

func parseCopyMarker(description string) (copyMarker, bool) {
	for _, line := range strings.Split(description, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), copyMarkerPrefix); ok {
			var m copyMarker
			if json.Unmarshal([]byte(rest), &m) == nil && m.Of > 0 {
				return m, true
			}
		}
	}
	return copyMarker{}, false
}

// TemplateCopyRequest asks for a copy of a template on a node.
type TemplateCopyRequest struct {
	Template int
	Node     string
	// VMID is the copy's; 0 takes the first free one above the template.
	VMID int
	// Storage holds the copy on its node; "" is the template's storage
	// when it is shared (one clone straight to the node), else the same
	// storage on the node (a clone on the template's node, then moved).
	Storage   string
	Reporter  Reporter
	Stop      <-chan struct{}
	Requester string
}

// TemplateCopyResult is what template copy reports.
type TemplateCopyResult struct {
	Template int                `json:"template"`
	Node     string             `json:"node"`
	VMID     int                `json:"vmid"`
	Storage  string             `json:"storage"`
	Route    string             `json:"route"`
	Changed  bool               `json:"changed"`
	Steps    map[string]float64 `json:"steps"`
	Warnings []string           `json:"warnings,omitempty"`
}

type templateCopyRun struct {
	p      *Provisioner
	req    TemplateCopyRequest
	runID  string
	run    *flow.Run
	res    TemplateCopyResult
	golden clusterTemplate
	desc   string
	// at is where the copy is now: the template's node until it moves.
	at          string
	tried, made bool
	tasks       []string
}

// CopyTemplate makes (or finds) the copy of a template on a node.
func (p *Provisioner) CopyTemplate(ctx context.Context, req TemplateCopyRequest) (TemplateCopyResult, error) {
	t := &templateCopyRun{p: p, req: req, runID: p.randomHex(8), res: TemplateCopyResult{Template: req.Template, Node: req.Node, VMID: req.VMID}}
	t.run = p.newRun(flow.Options{Kind: pve.LXC, VMID: func() int { return t.res.VMID }, Name: "copy of CT " + fmt.Sprint(req.Template) + " on " + req.Node,
		Reporter: req.Reporter, Stop: req.Stop, UndoBudget: p.opts.TaskTimeout + time.Minute, Nothing: "nothing was made",
		Audit: func(err error, took time.Duration) {
			p.audit("template copy", Spec{VMID: t.res.VMID, Hostname: "copy of CT " + fmt.Sprint(req.Template), Node: req.Node}, req.Requester, took, err)
		}})
	err := t.run.Execute(ctx, []flow.Step{
		{Name: StepPreflight, ReadOnly: true, Run: t.preflight},
		{Name: StepCopy, Check: t.copied, Run: t.copy, Undo: t.undo},
		{Name: StepMigrate, Check: t.moved, Run: t.migrate},
		{Name: StepConvert, Check: t.converted, Run: t.convert},
	})
	t.res.Steps, t.res.Warnings = t.run.Seconds(), t.run.Warnings()
	return t.res, err
}

func (t *templateCopyRun) ct() pve.GuestRef { return pve.CT(t.at, t.res.VMID) }

// preflight finds the template, an existing copy on the node (then there
// is nothing to do), the node, the storage and route, and the VMID.
func (t *templateCopyRun) preflight(ctx context.Context) error {
	v := t.p.newView()
	if err := v.refresh(ctx); err != nil {
		return apiProblem("read the cluster's guests", err)
	}
	golden, copies, err := templatesOf(v, t.req.Template)
	if err != nil {
		return err
	}
	t.golden, t.at = golden, golden.Node
	if t.req.Node == golden.Node {
		return problemf(ErrInvalidSpec, "CT %d is on node %s already: copy it to another node", golden.VMID, golden.Node)
	}
	if c, ok := copies[t.req.Node]; ok {
		t.res.VMID, t.res.Storage, t.res.Route, t.at = c.VMID, c.Storage, RouteCopy, c.Node
		t.run.Info(fmt.Sprintf("CT %d is CT %d's copy on node %s already", c.VMID, golden.VMID, c.Node))
		return nil
	}
	nodes, err := t.p.api.Nodes(ctx)
	if err != nil {
		return apiProblem("list the cluster's nodes", err)
	}
	var node *pve.Node
	for i := range nodes {
		if nodes[i].Name == t.req.Node {
			node = &nodes[i]
		}
	}
	switch {
	case node == nil:
		return problemf(ErrPreflight, "node %q is not in the cluster: pass --node with one of %s", t.req.Node, nodeNames(nodes))
	case !node.Online():
		return problemf(ErrPreflight, "node %s is %s: copy the template there when it is back", t.req.Node, node.Status)
	}
	if err := t.chooseStorage(ctx); err != nil {
		return err
	}
	if t.res.VMID == 0 {
		for id := golden.VMID + 1; ; id++ {
			if v.get(id) != nil {
				continue
			}
			free, err := t.p.api.VMIDFree(ctx, id)
			if err != nil {
				return apiProblem(fmt.Sprintf("check VMID %d", id), err)
			}
			if free {
				t.res.VMID = id
				break
			}
		}
	} else if g := v.get(t.res.VMID); g != nil {
		return problemf(ErrConflict, "VMID %d is taken by %s on node %s: pick another --vmid", t.res.VMID, g, g.Node)
	}
	tpl := v.get(golden.VMID)
	t.desc = strings.TrimRight(tpl.cfg.Get("description"), "\n") + "\n" +
		copyMarker{Of: golden.VMID, Node: t.req.Node, Run: t.runID, Made: t.p.opts.Now().UTC().Truncate(time.Second)}.line() + "\n"
	t.run.Info(fmt.Sprintf("CT %d becomes CT %d's copy on %s, on storage %s, %s", t.res.VMID, golden.VMID, t.req.Node, t.res.Storage, map[string]string{
		RouteTarget: "cloned straight there (shared storage)", RouteMigrate: "cloned on " + golden.Node + ", then migrated"}[t.res.Route]))
	return nil
}

// chooseStorage picks the copy's storage and so its route.
func (t *templateCopyRun) chooseStorage(ctx context.Context) error {
	g := t.golden
	onTpl, err := t.p.api.Storages(ctx, g.Node)
	if err != nil {
		return apiProblem("list storages on "+g.Node, err)
	}
	onNode, err := t.p.api.Storages(ctx, t.req.Node)
	if err != nil {
		return apiProblem("list storages on "+t.req.Node, err)
	}
	find := func(list []pve.Storage, id string) (pve.Storage, bool) {
		for _, s := range list {
			if s.ID == id {
				return s, true
			}
		}
		return pve.Storage{}, false
	}
	want := t.req.Storage
	if want == "" {
		want = g.Storage
	}
	st, ok := find(onNode, want)
	if !ok {
		return problemf(ErrPreflight, "storage %s does not exist on node %s: pass --storage with one of its storages", want, t.req.Node)
	}
	if why := storageUnfit(st, "rootdir", g.Size); why != "" {
		return problemf(ErrPreflight, "storage %s on node %s cannot hold the copy: %s", want, t.req.Node, why)
	}
	t.res.Storage, t.res.Route = want, RouteTarget
	if !st.Shared {
		if _, ok := find(onTpl, want); !ok {
			return problemf(ErrPreflight, "storage %s is local to node %s and not on %s, where the copy is cloned before it moves: pass --storage with a storage both have", want, t.req.Node, g.Node)
		}
		t.res.Route = RouteMigrate
	}
	return nil
}

// mine reads the copy at node: ours when its copy marker carries this
// run; nil config when it is not there.
func (t *templateCopyRun) mine(ctx context.Context, node string) (*pve.Config, bool, error) {
	cfg, err := t.p.api.GuestConfig(ctx, pve.CT(node, t.res.VMID))
	if errors.Is(err, pve.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	m, ok := parseCopyMarker(cfg.Get("description"))
	return &cfg, ok && m.Run == t.runID, nil
}

func (t *templateCopyRun) copied(context.Context) (string, error) {
	if t.res.Route == RouteCopy {
		return "there already", nil
	}
	return "", nil
}

// copy clones the template, full, onto the copy's storage.
func (t *templateCopyRun) copy(ctx context.Context) error {
	g := t.golden
	unlock, err := t.p.lockClone(ctx, g.Node, g.VMID)
	if err != nil {
		return err
	}
	defer unlock()
	opts := pve.CloneOptions{NewID: t.res.VMID, Hostname: "", Description: t.desc, Storage: t.res.Storage, Full: true}
	if t.res.Route == RouteTarget {
		opts.Target = t.req.Node
	}
	t.tried, t.res.Changed = true, true
	_, err = t.run.Retry().Task(ctx, fmt.Sprintf("clone CT %d to %d", g.VMID, t.res.VMID), func(ctx context.Context) (string, error) {
		upid, err := t.p.api.CloneGuest(ctx, pve.CT(g.Node, g.VMID), opts)
		if err == nil {
			t.made = true
			t.tasks = append(t.tasks, upid)
		}
		return upid, err
	}, func(ctx context.Context, upid string) error {
		_, err := t.p.waitShowing(ctx, t.run, g.Node, upid)
		return err
	}, func(ctx context.Context, _ error) (bool, error) {
		for _, node := range []string{opts.Target, g.Node} {
			if node == "" {
				continue
			}
			if cfg, ours, err := t.mine(ctx, node); err != nil || cfg != nil {
				return ours, err
			}
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	t.made = true
	if t.res.Route == RouteTarget {
		t.at = t.req.Node
	}
	return t.p.waitNoLock(ctx, t.ct(), t.p.opts.TaskTimeout)
}

// undo removes the copy this run made, wherever it got to.
func (t *templateCopyRun) undo(ctx context.Context, rb flow.Rollback) flow.Outcome {
	if !t.tried || rb.Cause != flow.Failed {
		if t.tried {
			return flow.Outcome{Left: true, Said: fmt.Sprintf("CT %d may exist, a copy in the making: run the same command again, or remove it with pct destroy on its node", t.res.VMID)}
		}
		return flow.Outcome{}
	}
	for _, upid := range t.tasks {
		wo := t.p.opts.Wait
		wo.Timeout = 0
		_, _ = pve.WaitTask(ctx, t.p.api, taskNode(upid, t.golden.Node), upid, wo)
	}
	for _, node := range []string{t.at, t.golden.Node, t.req.Node} {
		cfg, ours, err := t.mine(ctx, node)
		if err != nil {
			return flow.Outcome{Left: true, Said: fmt.Sprintf("could not read CT %d to roll it back (%v): remove it in PVE if it is this run's copy", t.res.VMID, err)}
		}
		if cfg == nil {
			continue
		}
		if !ours {
			return flow.Outcome{Left: true, Said: fmt.Sprintf("CT %d is not this run's copy: left untouched", t.res.VMID)}
		}
		if err := t.p.deleteGuest(ctx, pve.CT(node, t.res.VMID), t.p.opts.TaskTimeout); err != nil {
			return flow.Outcome{Left: true, Said: fmt.Sprintf("rollback of CT %d on %s failed (%v): remove it in PVE", t.res.VMID, node, err)}
		}
		return flow.Outcome{Said: fmt.Sprintf("rolled back: CT %d destroyed", t.res.VMID)}
	}
	return flow.Outcome{Said: "nothing was left: no CT at VMID " + fmt.Sprint(t.res.VMID)}
}

func (t *templateCopyRun) moved(context.Context) (string, error) {
	if t.res.Route != RouteMigrate || t.at == t.req.Node {
		return "on node " + t.req.Node, nil
	}
	return "", nil
}

// migrate moves the stopped copy to its node, its volume copied there.
func (t *templateCopyRun) migrate(ctx context.Context) error {
	if err := t.p.migrateTo(ctx, t.run, t.ct(), t.req.Node); err != nil {
		return err
	}
	t.at = t.req.Node
	return nil
}

func (t *templateCopyRun) converted(ctx context.Context) (string, error) {
	cfg, err := t.p.api.GuestConfig(ctx, t.ct())
	if err != nil {
		return "", err
	}
	if cfg.Get("template") == "1" {
		return "a template", nil
	}
	return "", nil
}

func (t *templateCopyRun) convert(ctx context.Context) error {
	return t.p.convertCT(ctx, t.run, t.ct())
}

// taskNode is the node a task ran on, from its UPID (fallback when it is
// malformed).
func taskNode(upid, fallback string) string {
	if u, err := pve.ParseUPID(upid); err == nil {
		return u.Node
	}
	return fallback
}

// CopyTemplateToAll copies the template to every online node that has no
// copy of it yet, one node after another (each copy is a clone of the
// template, which PVE locks for the whole copy); a node that fails does
// not stop the others.
func (p *Provisioner) CopyTemplateToAll(ctx context.Context, req TemplateCopyRequest) ([]TemplateCopyResult, error) {
	v := p.newView()
	if err := v.refresh(ctx); err != nil {
		return nil, apiProblem("read the cluster's guests", err)
	}
	golden, _, err := templatesOf(v, req.Template)
	if err != nil {
		return nil, err
	}
	nodes, err := p.api.Nodes(ctx)
	if err != nil {
		return nil, apiProblem("list the cluster's nodes", err)
	}
	var out []TemplateCopyResult
	var errs []error
	for _, n := range nodes {
		if !n.Online() || n.Name == golden.Node {
			continue
		}
		r := req
		r.Node, r.VMID = n.Name, 0
		res, err := p.CopyTemplate(ctx, r)
		out = append(out, res)
		if err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", n.Name, err))
		}
	}
	return out, errors.Join(errs...)
}
