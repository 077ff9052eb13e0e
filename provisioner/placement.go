package provisioner

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Placement: which node a pod lives on, and how the golden template gets
// there. PVE clones a container only on the node its template's config is
// on, and moves the clone to another node only when it lands on shared
// storage (pve-container API2/LXC.pm clone_vm, "can't clone CT to node …
// (CT uses local storage)"); it locks the template for the whole clone, so
// clones of one template never run in parallel. Per pod, the first of
// these routes the cluster allows:
//
//   - local: the template is on the pod's node;
//   - copy: a per-node copy of the template is on the pod's node (`cloudpod
//     template copy`): cloned there, in parallel with the other nodes';
//   - target: a clone with target=node, landing on shared storage (the
//     pod's --storage is shared, or a linked clone of a template on it);
//   - migrate: a full clone on the template's node, then an offline
//     migration (its local volume copied to the node).
//
// --node auto chooses among the online nodes a route reaches, with the
// storage room the rootfs needs and the pod's cores and memory, the one
// with the most free memory after the pod; CPU, then storage room, break
// ties. Free memory counts guests as PVE's static-load scheduler does (the
// memory and cores they may use, not what they touch now:
// proxmox-resource-scheduling's pve_static), plus the host's own use and
// the pods this process is placing there, so a batch spreads.

// AutoNode is the node value that has create choose the node.
const AutoNode = "auto"

// Clone routes.
const (
	RouteLocal   = "local"
	RouteCopy    = "copy"
	RouteTarget  = "target"
	RouteMigrate = "migrate"
)

// Placement is where a pod lives and how its clone gets there.
type Placement struct {
	Node string `json:"node"`
	// Auto: chosen (--node auto); else the node was given.
	Auto bool `json:"auto"`
	// Route is local, copy, target or migrate (see above).
	Route string `json:"route"`
	// Source is the template cloned (the golden one or its copy on
	// Node), on SourceNode.
	Source     int    `json:"source"`
	SourceNode string `json:"sourceNode"`
	// Reason says why, in one sentence (events, results, dry runs).
	Reason string `json:"reason"`
	// Nodes is every node as placement saw it.
	Nodes []NodeFit `json:"nodes,omitempty"`
}

// NodeFit is one node as placement saw it for a pod.
type NodeFit struct {
	Node  string `json:"node"`
	Route string `json:"route,omitempty"`
	// FreeMemory is the memory left for guests after the pod (bytes).
	FreeMemory int64 `json:"freeMemory"`
	// CPU is the cores its guests may use, the pod's included, per CPU.
	CPU float64 `json:"cpu"`
	// StorageFree is the pod's storage's room there (bytes).
	StorageFree int64 `json:"storageFree"`
	// Unfit says why the pod cannot go there; "" when it can.
	Unfit string `json:"unfit,omitempty"`
}

func (f NodeFit) summary() string {
	if f.Unfit != "" {
		return fmt.Sprintf("%s: %s", f.Node, f.Unfit)
	}
	return fmt.Sprintf("%s: %s memory free after it, CPU %.0f%% committed, %s on storage, by %s", f.Node,
		humanBytes(f.FreeMemory), 100*f.CPU, humanBytes(f.StorageFree), f.Route)
}

// clusterTemplate is a template a pod can be cloned from: the golden one
// or a per-node copy of it.
type clusterTemplate struct {
	VMID    int
	Node    string
	Storage string // its rootfs storage
	Size    int64  // its rootfs size (bytes)
}

// placer holds what placement reads of the cluster for one pod.
type placer struct {
	spec      Spec
	nodes     []pve.Node
	guests    []pve.Guest
	golden    clusterTemplate
	copies    map[string]clusterTemplate // node → copy of the golden template
	storages  map[string][]pve.Storage   // node → its storages
	inflight  []inflightPod
	rootBytes int64
}

// inflightPod is a pod this process placed whose create has not ended;
// once PVE lists it running (by its hostname) it counts as a guest.
type inflightPod struct {
	id       int // placement ledger key
	node     string
	memory   int64
	cores    int
	hostname string
}

// placements is the process's ledger of pods being placed and made, so
// that concurrent creates (a batch) see each other before PVE does.
type placements struct {
	seq  int
	pods map[int]inflightPod
}

// templatesOf finds the golden template and its per-node copies in the
// view: a copy is a CT template whose description says it copies vmid
// (template copy's marker).
func templatesOf(v *clusterView, vmid int) (clusterTemplate, map[string]clusterTemplate, error) {
	g := v.get(vmid)
	if g == nil || g.Type != pve.LXC {
		return clusterTemplate{}, nil, problemf(ErrPreflight, "template CT %d does not exist in the cluster: pass --template with the golden template's VMID", vmid)
	}
	if g.cfg.Get("template") != "1" {
		return clusterTemplate{}, nil, problemf(ErrPreflight, "CT %d is not a template: convert it in PVE (More > Convert to template) or pass --template with the golden template", vmid)
	}
	golden := clusterTemplate{VMID: vmid, Node: g.Node, Size: rootfsSize(g.cfg.Get("rootfs"))}
	golden.Storage, _, _ = strings.Cut(g.cfg.Get("rootfs"), ":")
	copies := map[string]clusterTemplate{}
	for _, c := range v.sorted() {
		m, ok := parseCopyMarker(c.cfg.Get("description"))
		if c.Type != pve.LXC || !ok || m.Of != vmid || c.cfg.Get("template") != "1" || c.Node == golden.Node {
			continue
		}
		if _, seen := copies[c.Node]; seen {
			continue // the lowest VMID on a node serves
		}
		ct := clusterTemplate{VMID: c.VMID, Node: c.Node, Size: rootfsSize(c.cfg.Get("rootfs"))}
		ct.Storage, _, _ = strings.Cut(c.cfg.Get("rootfs"), ":")
		copies[c.Node] = ct
	}
	return golden, copies, nil
}

// storageOn is the pod's storage on node as that node reports it.
func (pl *placer) storageOn(node, id string) (pve.Storage, bool) {
	for _, s := range pl.storages[node] {
		if s.ID == id {
			return s, true
		}
	}
	return pve.Storage{}, false
}

// route says how the template reaches node, or why it cannot.
func (pl *placer) route(node string) (route string, source clusterTemplate, unfit string) {
	s := pl.spec
	g := pl.golden
	if node == g.Node {
		return RouteLocal, g, ""
	}
	if c, ok := pl.copies[node]; ok && (!s.Linked || c.Storage == s.Storage) {
		return RouteCopy, c, ""
	}
	tplStore, _ := pl.storageOn(g.Node, g.Storage)
	podStore, onNode := pl.storageOn(node, s.Storage)
	if s.Linked {
		if tplStore.Shared {
			return RouteTarget, g, ""
		}
		return "", g, fmt.Sprintf("a linked clone of CT %d stays on its local storage %s on %s, and PVE migrates no linked clone: make a copy there (cloudpod template copy %d --node %s) or drop --linked", g.VMID, g.Storage, g.Node, g.VMID, node)
	}
	if onNode && podStore.Shared {
		return RouteTarget, g, ""
	}
	if _, there := pl.storageOn(g.Node, s.Storage); there {
		return RouteMigrate, g, ""
	}
	return "", g, fmt.Sprintf("storage %s is not on %s, where CT %d is cloned before it moves", s.Storage, g.Node, g.VMID)
}

// committed is what node's guests may use (memory bytes, cores): the
// running ones and those being made or moved (locked), the pods this
// process is placing there until PVE shows them running, and pod itself.
func (pl *placer) committed(node string) (mem int64, cores int) {
	ours := map[string]bool{} // our pods in the making there, by hostname
	for _, p := range pl.inflight {
		if p.node == node {
			ours[p.hostname] = true
		}
	}
	running := map[string]bool{}
	for _, g := range pl.guests {
		if g.Node != node || g.Template {
			continue
		}
		if g.Status == "running" {
			running[g.Name] = true
		}
		if g.Status == "running" || (g.Lock != "" && !ours[g.Name]) {
			mem += g.MaxMem
			cores += int(math.Ceil(g.MaxCPU))
		}
	}
	for _, p := range pl.inflight {
		if p.node == node && !running[p.hostname] {
			mem += p.memory
			cores += p.cores
		}
	}
	return mem + int64(pl.spec.MemoryMB)<<20, cores + pl.spec.Cores
}

// hostUse is what node's host uses besides its guests: its memory in use
// less what its running guests use.
func (pl *placer) hostUse(n pve.Node) int64 {
	use := n.Mem
	for _, g := range pl.guests {
		if g.Node == n.Name && g.Status == "running" {
			use -= g.Mem
		}
	}
	return max(use, 0)
}

// fit is one node's figures for the pod.
func (pl *placer) fit(n pve.Node) (NodeFit, clusterTemplate) {
	f := NodeFit{Node: n.Name}
	if !n.Online() {
		f.Unfit = "node is " + orDefault(n.Status, "unknown")
		return f, clusterTemplate{}
	}
	route, src, unfit := pl.route(n.Name)
	f.Route = route
	mem, cores := pl.committed(n.Name)
	f.FreeMemory = n.MaxMem - pl.hostUse(n) - mem
	if n.MaxCPU > 0 {
		f.CPU = float64(cores) / float64(n.MaxCPU)
	}
	st, ok := pl.storageOn(n.Name, pl.spec.Storage)
	f.StorageFree = st.Avail
	need := pl.rootBytes
	if pl.spec.Linked {
		need = 0 // a linked clone shares the template's blocks
	}
	switch {
	case unfit != "":
		f.Unfit = unfit
	case !ok:
		f.Unfit = fmt.Sprintf("storage %s does not exist there", pl.spec.Storage)
	case storageUnfit(st, "rootdir", need) != "":
		f.Unfit = fmt.Sprintf("storage %s: %s", pl.spec.Storage, storageUnfit(st, "rootdir", need))
	case n.MaxCPU > 0 && pl.spec.Cores > n.MaxCPU:
		f.Unfit = fmt.Sprintf("%d CPUs, the pod wants %d cores", n.MaxCPU, pl.spec.Cores)
	case n.MaxMem > 0 && f.FreeMemory < 0:
		f.Unfit = fmt.Sprintf("%s memory free, the pod wants %d MB", humanBytes(f.FreeMemory+int64(pl.spec.MemoryMB)<<20), pl.spec.MemoryMB)
	}
	return f, src
}

// choose fits every node and picks the best fit; pinned, when set, is
// the only node that may take the pod.
func (pl *placer) choose(pinned string) (Placement, error) {
	var fits []NodeFit
	sources := map[string]clusterTemplate{}
	for _, n := range pl.nodes {
		if pinned != "" && n.Name != pinned {
			continue
		}
		f, src := pl.fit(n)
		fits = append(fits, f)
		sources[n.Name] = src
	}
	if pinned != "" {
		if len(fits) == 0 {
			return Placement{}, problemf(ErrPreflight, "node %q is not in the cluster: pass --node with one of the cluster's nodes (%s), or --node auto", pinned, nodeNames(pl.nodes))
		}
		f := fits[0]
		if f.Route == "" {
			return Placement{}, problemf(ErrPreflight, "CT %d cannot be cloned to node %s: %s", pl.golden.VMID, pinned, f.Unfit)
		}
		src := sources[pinned]
		return Placement{Node: pinned, Route: f.Route, Source: src.VMID, SourceNode: src.Node, Nodes: fits,
			Reason: fmt.Sprintf("node %s as asked; %s", pinned, routeReason(f.Route, src, pinned, pl.spec.Storage))}, nil
	}
	best := -1
	for i, f := range fits {
		if f.Unfit == "" && (best < 0 || better(f, fits[best])) {
			best = i
		}
	}
	if best < 0 {
		why := make([]string, len(fits))
		for i, f := range fits {
			why[i] = f.summary()
		}
		return Placement{}, problemf(ErrPreflight, "no node can take %s (%d cores, %d MB, rootfs on %s): %s; free room or pass --node",
			pl.spec.Hostname, pl.spec.Cores, pl.spec.MemoryMB, pl.spec.Storage, strings.Join(why, "; "))
	}
	f := fits[best]
	src := sources[f.Node]
	var others []string
	for _, o := range fits {
		if o.Node != f.Node {
			others = append(others, o.summary())
		}
	}
	reason := fmt.Sprintf("node %s: most memory free after the pod (%s, CPU %.0f%% committed, %s free on %s); %s",
		f.Node, humanBytes(f.FreeMemory), 100*f.CPU, humanBytes(f.StorageFree), pl.spec.Storage, routeReason(f.Route, src, f.Node, pl.spec.Storage))
	if len(others) > 0 {
		reason += "; " + strings.Join(others, "; ")
	}
	return Placement{Node: f.Node, Auto: true, Route: f.Route, Source: src.VMID, SourceNode: src.Node, Reason: reason, Nodes: fits}, nil
}

// better: more free memory, then less CPU committed, then more storage
// room, then the name.
func better(a, b NodeFit) bool {
	switch {
	case a.FreeMemory != b.FreeMemory:
		return a.FreeMemory > b.FreeMemory
	case a.CPU != b.CPU:
		return a.CPU < b.CPU
	case a.StorageFree != b.StorageFree:
		return a.StorageFree > b.StorageFree
	}
	return a.Node < b.Node
}

// routeReason says how the template gets to node.
func routeReason(route string, src clusterTemplate, node, storage string) string {
	switch route {
	case RouteLocal:
		return fmt.Sprintf("cloned from CT %d there", src.VMID)
	case RouteCopy:
		return fmt.Sprintf("cloned from CT %d, the template's copy there", src.VMID)
	case RouteTarget:
		return fmt.Sprintf("cloned from CT %d on %s straight to %s (shared storage)", src.VMID, src.Node, node)
	case RouteMigrate:
		return fmt.Sprintf("cloned from CT %d on %s onto %s, then migrated to %s (no copy of the template there: cloudpod template copy makes one)", src.VMID, src.Node, storage, node)
	}
	return ""
}

func nodeNames(nodes []pve.Node) string {
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name
	}
	return strings.Join(names, ", ")
}

// readPlacer reads what placement needs besides the view: the nodes and
// the pod's storage on each online one.
func (p *Provisioner) readPlacer(ctx context.Context, spec Spec, v *clusterView) (*placer, error) {
	golden, copies, err := templatesOf(v, spec.Template)
	if err != nil {
		return nil, err
	}
	nodes, err := p.api.Nodes(ctx)
	if err != nil {
		return nil, apiProblem("list the cluster's nodes", err)
	}
	pl := &placer{spec: spec, nodes: nodes, golden: golden, copies: copies, storages: map[string][]pve.Storage{}, rootBytes: golden.Size}
	for _, g := range v.sorted() {
		pl.guests = append(pl.guests, g.Guest)
	}
	for _, n := range nodes {
		if !n.Online() || (spec.Node != AutoNode && n.Name != spec.Node && n.Name != golden.Node) {
			continue
		}
		list, err := p.api.Storages(ctx, n.Name)
		if errors.Is(err, pve.ErrNodeUnreachable) {
			continue // went down since the listing: no route reaches it
		}
		if err != nil {
			return nil, apiProblem("list storages on "+n.Name, err)
		}
		pl.storages[n.Name] = list
	}
	return pl, nil
}

// Place says where a pod of spec would go and how (spec.Node AutoNode
// chooses, a node name checks that node's route), from a fresh look at
// the cluster; it reserves nothing. The wizard's node question takes its
// default from it.
func (p *Provisioner) Place(ctx context.Context, spec Spec) (Placement, error) {
	v := p.newView()
	if err := v.refresh(ctx); err != nil {
		return Placement{}, apiProblem("read the cluster's guests", err)
	}
	pl, err := p.readPlacer(ctx, spec, v)
	if err != nil {
		return Placement{}, err
	}
	p.mu.Lock()
	pl.inflight = p.placed.list()
	p.mu.Unlock()
	return pl.choose(pinnedNode(spec))
}

func pinnedNode(spec Spec) string {
	if spec.Node == AutoNode {
		return ""
	}
	return spec.Node
}

func (l *placements) list() []inflightPod {
	out := make([]inflightPod, 0, len(l.pods))
	for _, p := range l.pods {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// place chooses the pod's node in preflight (or checks the pinned one's
// route) under the provisioner's placement lock, and enters an auto
// choice in the ledger until the create ends (a dry run enters nothing).
func (r *createRun) place(ctx context.Context, dryRun bool) error {
	p := r.p
	p.placeMu.Lock()
	defer p.placeMu.Unlock()
	pl, err := p.readPlacer(ctx, r.spec, r.view)
	if err != nil {
		return err
	}
	p.mu.Lock()
	pl.inflight = p.placed.list()
	p.mu.Unlock()
	choice, err := pl.choose(pinnedNode(r.spec))
	if err != nil {
		return err
	}
	r.placement = &choice
	r.spec.Node = choice.Node
	r.res.Node, r.res.Placement = choice.Node, &choice
	if choice.Auto || choice.Route != RouteLocal {
		r.run.Info("placement: " + choice.Reason)
	}
	if choice.Auto && !dryRun {
		p.mu.Lock()
		if p.placed.pods == nil {
			p.placed.pods = map[int]inflightPod{}
		}
		p.placed.seq++
		id := p.placed.seq
		p.placed.pods[id] = inflightPod{id: id, node: choice.Node, memory: int64(r.spec.MemoryMB) << 20, cores: r.spec.Cores, hostname: r.spec.Hostname}
		p.mu.Unlock()
		r.unplace = func() {
			p.mu.Lock()
			delete(p.placed.pods, id)
			p.mu.Unlock()
		}
	}
	return nil
}

// placePinned is placement for a node given: the template's own node
// clones locally without reading more of the cluster (one node works as
// it always did); another node gets its route.
func (r *createRun) placePinned(ctx context.Context) error {
	if tpl := r.view.get(r.spec.Template); tpl != nil && tpl.Node == r.spec.Node {
		r.placement = &Placement{Node: r.spec.Node, Route: RouteLocal, Source: tpl.VMID, SourceNode: tpl.Node,
			Reason: fmt.Sprintf("node %s as asked; %s", r.spec.Node, routeReason(RouteLocal, clusterTemplate{VMID: tpl.VMID}, r.spec.Node, r.spec.Storage))}
		return nil
	}
	return r.place(ctx, r.dryRun)
}
