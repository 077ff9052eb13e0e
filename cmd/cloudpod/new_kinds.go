package main

import (
	"fmt"
	"net/netip"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// What `cloudpod new` can make, the questions each kind asks and the
// command lines its answers become. Every check builds the request the
// command would build from its flags and runs the flow's own validate
// step on it, so an answer is refused exactly when the flag would be.

// kind is one thing the wizard makes.
type kind struct {
	label     string
	questions func(w *wizard) []question
	commands  func(w *wizard) [][]string
}

var kindOrder = []string{"cloudpod", "ct", "vm", "openwrt", "openwrt-vm"}

// kinds is filled in init: the questions refer back to it through the
// wizard's answers.
var kinds map[string]kind

func init() {
	kinds = map[string]kind{
		"cloudpod":   {label: "a CloudPod, cloned from the golden template", questions: (*wizard).cloudpodQuestions, commands: (*wizard).cloudpodCommands},
		"ct":         {label: "a container from an OS template", questions: (*wizard).ctQuestions, commands: (*wizard).ctCommands},
		"vm":         {label: "a cloud-init VM from a cloud image", questions: (*wizard).vmQuestions, commands: (*wizard).vmCommands},
		"openwrt":    {label: "an OpenWrt router container", questions: (*wizard).openwrtQuestions, commands: (*wizard).openwrtCommands},
		"openwrt-vm": {label: "an OpenWrt router VM", questions: (*wizard).openwrtVMQuestions, commands: (*wizard).openwrtVMCommands},
	}
}

func kindNames() []string { return kindOrder }

// keys are the answer keys kind k asks.
func (k kind) keys() []string {
	var out []string
	for _, q := range k.questions(&wizard{a: map[string]string{}}) {
		out = append(out, q.key)
	}
	return out
}

func (q question) label() string {
	if q.name != "" {
		return q.name
	}
	return q.title
}

func (q question) shown(v string) string {
	if q.show != nil {
		return q.show(v)
	}
	if v == "" {
		return "none"
	}
	return v
}

func (w *wizard) kindQuestion() question {
	return question{key: "kind", name: "Kind", title: "What do you want to make?",
		choices: func() ([]choice, error) {
			out := make([]choice, len(kindOrder))
			for i, k := range kindOrder {
				out[i] = choice{label: kinds[k].label, value: k}
			}
			return out, nil
		},
		def:   func() (string, error) { return "cloudpod", nil },
		check: w.checkKind,
		show:  func(v string) string { return kinds[v].label },
	}
}

// checkKind refuses a router container where the token may not make a
// privileged container (PVE 9 asks Sys.Modify on /), before any other
// question.
func (w *wizard) checkKind(v string) error {
	if v != "openwrt" {
		return nil
	}
	ok, why, err := w.privilegedAllowed()
	if err != nil || ok {
		return err
	}
	return fmt.Errorf("an OpenWrt router container is privileged, and %s: grant it, or make an OpenWrt router VM", why)
}

// privilegedAllowed says whether this token may create a privileged
// container on this PVE (9.x asks Sys.Modify on /), and if not, why.
func (w *wizard) privilegedAllowed() (bool, string, error) {
	release, major, err := w.release()
	if err != nil || major < 9 {
		return true, "", err
	}
	ok, err := cached(w, "sys.modify", func() (bool, error) { return w.prov.TokenHas(w.ctx, "/", "Sys.Modify") })
	return ok, fmt.Sprintf("PVE %s asks the token for Sys.Modify on / to create one, which this token lacks", release), err
}

func (w *wizard) release() (string, int, error) {
	type rel struct {
		name  string
		major int
	}
	r, err := cached(w, "release", func() (rel, error) {
		n, m, err := w.prov.PVERelease(w.ctx)
		return rel{n, m}, err
	})
	return r.name, r.major, err
}

// ---- questions every kind shares ----

// placeNode is the node a new guest goes to by default: the one
// placement (--node auto) chooses for a default pod from the golden
// template; the default node when placement cannot say (no template yet).
// The answer is a node name, so the questions after it (storages,
// bridges) ask that node.
func (w *wizard) placeNode() string {
	spec := provisioner.DefaultSpec()
	spec.Node = provisioner.AutoNode
	pl, err := w.prov.Place(w.ctx, spec)
	if err != nil {
		return provisioner.DefaultSpec().Node
	}
	return pl.Node
}

func (w *wizard) next() (int, netip.Addr, error) {
	type lease struct {
		vmid int
		ip   netip.Addr
	}
	l, err := cached(w, "next", func() (lease, error) {
		vmid, ip, err := w.prov.NextFree(w.ctx, "", "")
		return lease{vmid, ip}, err
	})
	return l.vmid, l.ip, err
}

// vmidQuestion asks the VMID: the next free one IPAM would hand out.
// validate is the kind's check; a VMID a guest holds is refused too.
func (w *wizard) vmidQuestion(validate func() error) question {
	return question{key: "vmid", name: "VMID", title: "VMID",
		note: func() string {
			return "The next free VMID in IPAM's range (--vmid-range), reserved only when you confirm."
		},
		def: func() (string, error) {
			vmid, _, err := w.next()
			return strconv.Itoa(vmid), err
		},
		check: func(v string) error {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("VMID %q is not a number, e.g. 9101", v)
			}
			if err := w.with("vmid", v, validate); err != nil {
				return problemText(err)
			}
			if w.replaying {
				return nil
			}
			g, held, err := w.prov.VMIDHolder(w.ctx, n)
			if err != nil || !held {
				return err
			}
			free, _, _ := w.next()
			return fmt.Errorf("VMID %d is taken by %s %d (%s): pick a free one, e.g. %d", n, g.Type.Noun(), n, g.Name, free)
		},
	}
}

// nameQuestion asks a hostname (a VM's name), by default prefix-VMID.
func (w *wizard) nameQuestion(key, name, prefix string, validate func() error) question {
	return question{key: key, name: name, title: name + " (RFC 1123)",
		def:   func() (string, error) { return prefix + "-" + w.val("vmid"), nil },
		check: w.checked(key, validate),
	}
}

// checked is a check that answers key with v and runs the kind's
// validation.
func (w *wizard) checked(key string, validate func() error) func(string) error {
	return func(v string) error { return problemText(w.with(key, v, validate)) }
}

// numberQuestion asks a whole number (cores, MB, GB) for flag.
func (w *wizard) numberQuestion(key, name, flag, note string, def func() (int, error), validate func() error) question {
	return question{key: key, name: name, title: name,
		note: func() string { return note },
		def: func() (string, error) {
			n, err := def()
			return strconv.Itoa(n), err
		},
		check: func(v string) error {
			if _, err := strconv.Atoi(v); err != nil {
				return fmt.Errorf("%s %q is not a whole number", flag, v)
			}
			return problemText(w.with(key, v, validate))
		},
	}
}

// firstChoice is the first entry of a list, or fallback when it is empty.
func firstChoice(list func() ([]choice, error), fallback string) func() (string, error) {
	return func() (string, error) {
		c, err := list()
		if err != nil || len(c) == 0 {
			return fallback, err
		}
		return c[0].value, nil
	}
}

func constant(n int) func() (int, error) { return func() (int, error) { return n, nil } }

func (w *wizard) nodeQuestion() question {
	return question{key: "node", name: "Node", title: "Node",
		note: func() string {
			info, err := w.nodeInfo(w.val("node"))
			if err != nil {
				return ""
			}
			return fmt.Sprintf("%s: online, PVE %s, %d CPUs (%.0f%% busy), %s of %s memory free.", info.Node, info.PVEVersion, info.CPUs,
				100*info.CPUBusy, humanSize(info.MemoryFree), humanSize(info.MemoryTotal))
		},
		def: func() (string, error) { return w.placeNode(), nil },
		check: func(v string) error {
			_, err := w.nodeInfo(v)
			return problemText(err)
		},
	}
}

func (w *wizard) nodeInfo(node string) (provisioner.NodeInfo, error) {
	return cached(w, "node/"+node, func() (provisioner.NodeInfo, error) { return w.prov.NodeInfo(w.ctx, node) })
}

// storageQuestion lists the node's storages that hold content, with their
// fill, the fullest marked; the default is what --storage auto would take
// (or want when given). needKey names the answer with the size in GB.
func (w *wizard) storageQuestion(key, name, content string, want func() (string, error), needKey string) question {
	return question{key: key, name: name, title: name,
		note: func() string {
			return fmt.Sprintf("Storages of %s that hold %s; at %.0f%% used one is refused, at %.0f%% it warns.", w.val("node"), content,
				100*provisioner.StorageRefuseUsed, 100*provisioner.StorageWarnUsed)
		},
		choices: func() ([]choice, error) { return w.storageChoices(content) },
		def: func() (string, error) {
			if want != nil {
				if v, err := want(); err != nil || v != "" {
					return v, err
				}
			}
			c, err := w.prov.PickStorage(w.ctx, w.val("node"), provisioner.StorageAuto, content, w.num(needKey))
			return c.ID, err
		},
		check: func(v string) error {
			_, err := w.prov.PickStorage(w.ctx, w.val("node"), v, content, w.num(needKey))
			return problemText(err)
		},
	}
}

// storageChoices are the rows of `cloudpod storage list` that hold
// content, the fullest of them marked.
func (w *wizard) storageChoices(content string) ([]choice, error) {
	node := w.val("node")
	rows, err := cached(w, "storages/"+node, func() ([]provisioner.StorageRow, error) { return w.prov.StorageList(w.ctx, node) })
	if err != nil {
		return nil, err
	}
	var fit []provisioner.StorageRow
	fullest := -1
	for _, r := range rows {
		if !containsString(r.Content, content) {
			continue
		}
		fit = append(fit, r)
		if r.Active && r.Total > 0 && (fullest < 0 || r.UsedFraction > fit[fullest].UsedFraction) {
			fullest = len(fit) - 1
		}
	}
	nameW, contentW, sizeW := 0, 0, 0
	for _, r := range fit {
		nameW, contentW = max(nameW, len(r.ID)), max(contentW, len(strings.Join(r.Content, ",")))
		sizeW = max(sizeW, len(compactSize(r.Used)+"/"+compactSize(r.Total)))
	}
	out := make([]choice, len(fit))
	for i, r := range fit {
		label := fmt.Sprintf("%-*s  %-*s  ", nameW, r.ID, contentW, strings.Join(r.Content, ","))
		switch {
		case !r.Enabled:
			label += "disabled"
		case !r.Active:
			label += "inactive"
		default:
			label += fmt.Sprintf("%*s %s %3.0f%%", sizeW, compactSize(r.Used)+"/"+compactSize(r.Total), storageBar(r.UsedFraction, 10), 100*r.UsedFraction)
		}
		if r.Level == "full" {
			label += " FULL"
		}
		if i == fullest && len(fit) > 1 {
			label += " fullest"
		}
		out[i] = choice{label: label, value: r.ID}
	}
	return out, nil
}

// compactSize is a size in at most five characters (211G, 1.8T), so a
// storage's row fits an 80-column terminal.
func compactSize(n int64) string {
	switch {
	case n >= 1<<40:
		return fmt.Sprintf("%.1fT", float64(n)/(1<<40))
	case n >= 1<<30:
		return fmt.Sprintf("%.0fG", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.0fM", float64(n)/(1<<20))
}

// bridgeQuestion lists the node's bridges.
func (w *wizard) bridgeQuestion(key, name string, def func() string) question {
	return question{key: key, name: name, title: name,
		note:    func() string { return "The bridges of node " + w.val("node") + "." },
		choices: func() ([]choice, error) { return w.bridgeChoices() },
		def:     func() (string, error) { return def(), nil },
	}
}

func (w *wizard) bridges() ([]string, error) {
	node := w.val("node")
	return cached(w, "bridges/"+node, func() ([]string, error) { return w.prov.Bridges(w.ctx, node) })
}

func (w *wizard) bridgeChoices() ([]choice, error) {
	names, err := w.bridges()
	out := make([]choice, len(names))
	for i, n := range names {
		out[i] = choice{label: n, value: n}
	}
	return out, err
}

// firstBridge is want when the node has it, else its first bridge other
// than not.
func (w *wizard) firstBridge(want, not string) string {
	names, _ := w.bridges()
	for _, n := range names {
		if n == want {
			return n
		}
	}
	for _, n := range names {
		if n != not {
			return n
		}
	}
	return want
}

// vlanQuestion asks a VLAN tag on the bridge; empty is untagged.
func (w *wizard) vlanQuestion(key, name string, validate func() error) question {
	return question{key: key, name: name, title: name + " (empty: untagged)",
		check: func(v string) error {
			if v != "" {
				if _, err := strconv.Atoi(v); err != nil {
					return fmt.Errorf("VLAN tag %q is not a number from 1 to 4094", v)
				}
			}
			return problemText(w.with(key, v, validate))
		},
		show: func(v string) string {
			if v == "" {
				return "untagged"
			}
			return v
		},
	}
}

// addressQuestions ask a NIC's address (CIDR, or dhcp) and, for a static
// one, its gateway: by default the next free address of IPAM's pool when
// the NIC is on the pool's bridge untagged, else DHCP.
func (w *wizard) addressQuestions(bridgeKey, vlanKey string, validate func() error) []question {
	pool := provisioner.DefaultSpec()
	onPool := func() bool { return w.val(bridgeKey) == pool.Bridge && w.val(vlanKey) == "" }
	static := func() bool { return w.val("ip") != "dhcp" }
	return []question{
		{key: "ip", name: "Address", title: "Address (CIDR, or dhcp)",
			note: func() string {
				if onPool() {
					return fmt.Sprintf("The next free address of %s (IPAM, reserving nothing).", pool.Subnet)
				}
				return "Not the CloudPods LAN (" + pool.Bridge + " untagged): DHCP unless you give an address."
			},
			def: func() (string, error) {
				if !onPool() {
					return "dhcp", nil
				}
				_, ip, err := w.next()
				return netip.PrefixFrom(ip, pool.Subnet.Bits()).String(), err
			},
			check: func(v string) error {
				if err := w.with("ip", v, validate); err != nil {
					return problemText(err)
				}
				if p, err := netip.ParsePrefix(v); err == nil {
					return problemText(w.prov.CheckAddressFree(w.ctx, p.Addr(), w.num("vmid"), "address"))
				}
				return nil
			},
		},
		{key: "gw", name: "Gateway", title: "Gateway (empty: none)", when: static,
			def: func() (string, error) {
				if p, err := netip.ParsePrefix(w.val("ip")); err == nil && pool.Subnet.Contains(p.Addr()) {
					return pool.Gateway.String(), nil
				}
				return "", nil
			},
			check: w.checked("gw", validate),
		},
	}
}

// nicSpec is a --net value from a bridge, tag and, for containers, the
// address.
func nicSpec(name, bridge, tag string, addr ...string) string {
	s := "name=" + name + ",bridge=" + bridge
	if tag != "" {
		s += ",tag=" + tag
	}
	for _, a := range addr {
		s += "," + a
	}
	return s
}

// ipSpec is the address part of a --net or --ipconfig value.
func (w *wizard) ipSpec() string {
	s := "ip=" + w.val("ip")
	if gw := w.val("gw"); gw != "" && w.val("ip") != "dhcp" {
		s += ",gw=" + gw
	}
	return s
}

func yesNo(key, name string, def bool) question {
	d := map[bool]string{true: "yes", false: "no"}[def]
	return question{key: key, name: name, title: name,
		choices: func() ([]choice, error) { return []choice{{"yes", "yes"}, {"no", "no"}}, nil },
		def:     func() (string, error) { return d, nil },
	}
}

// flags appends --flag value for each pair whose value is not empty.
func flags(argv []string, pairs ...string) []string {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] != "" {
			argv = append(argv, pairs[i], pairs[i+1])
		}
	}
	return argv
}

// ---- a CloudPod from the golden template (cloudpod create) ----

func (w *wizard) cloudpodQuestions() []question {
	v := w.cloudpodCheck
	tmpl := func() (provisioner.GuestResources, error) {
		def := provisioner.DefaultSpec()
		return cached(w, "golden", func() (provisioner.GuestResources, error) {
			return w.prov.Resources(w.ctx, pve.CT(w.val("node"), def.Template))
		})
	}
	fromTemplate := func(pick func(provisioner.GuestResources) int) func() (int, error) {
		return func() (int, error) {
			r, err := tmpl()
			return pick(r), err
		}
	}
	note := fmt.Sprintf("The golden template CT %d's value.", provisioner.DefaultSpec().Template)
	return []question{
		w.vmidQuestion(w.cloudpodLease),
		w.nameQuestion("hostname", "Hostname", "pod", v),
		w.nodeQuestion(),
		w.storageQuestion("storage", "Storage", "rootdir", func() (string, error) {
			r, err := tmpl()
			return r.Storage, err
		}, ""),
		w.bridgeQuestion("bridge", "Bridge", func() string { return w.firstBridge(provisioner.DefaultSpec().Bridge, "") }),
		{key: "ip", name: "Address", title: "Address",
			note: func() string {
				return fmt.Sprintf("The next free address of %s (IPAM, reserving nothing).", provisioner.DefaultSpec().Subnet)
			},
			def: func() (string, error) {
				_, ip, err := w.next()
				return ip.String(), err
			},
			check: w.checked("ip", w.cloudpodLease),
		},
		w.numberQuestion("cores", "CPU cores", "--cores", note, fromTemplate(func(r provisioner.GuestResources) int { return r.Cores }), w.cloudpodBounds),
		w.numberQuestion("memory", "Memory (MB)", "--mem", note, fromTemplate(func(r provisioner.GuestResources) int { return r.MemoryMB }), w.cloudpodBounds),
		w.numberQuestion("swap", "Swap (MB)", "--swap", note, fromTemplate(func(r provisioner.GuestResources) int { return r.SwapMB }), w.cloudpodBounds),
		{key: "tenant", name: "Tenant", title: "Tenant (empty: none)",
			note:  func() string { return "Recorded in the marker, tags and audit log; " + provisioner.TenantRule + "." },
			check: w.checked("tenant", v)},
	}
}

// cloudpodSpec is the spec `cloudpod create` builds from the answers as
// flags.
func (w *wizard) cloudpodSpec() (provisioner.Spec, error) {
	def := provisioner.DefaultSpec()
	o := &createOptions{vmid: w.val("vmid"), hostname: w.val("hostname"), ip: w.val("ip"), template: def.Template, node: w.val("node"),
		cores: w.num("cores"), memory: w.num("memory"), swap: w.num("swap"), storage: w.val("storage"), bridge: w.val("bridge"),
		gateway: def.Gateway.String(), subnet: def.Subnet.String(), dns: []string{def.DNS[0].String()}, tenant: w.val("tenant")}
	return o.spec(nil)
}

// cloudpodCheck is create's validate step on the answers.
func (w *wizard) cloudpodCheck() error {
	s, err := w.cloudpodSpec()
	if err != nil {
		return err
	}
	return w.prov.CheckCreate(w.ctx, provisioner.CreateRequest{Spec: s})
}

// cloudpodLease adds IPAM's word: the VMID and address are free to
// reserve.
func (w *wizard) cloudpodLease() error {
	if err := w.cloudpodCheck(); err != nil {
		return err
	}
	s, _ := w.cloudpodSpec()
	return w.prov.CheckLease(w.ctx, s)
}

// cloudpodBounds adds preflight's bound: no more than the node has.
func (w *wizard) cloudpodBounds() error {
	if err := w.cloudpodCheck(); err != nil {
		return err
	}
	limits, err := w.prov.NodeLimits(w.ctx, w.val("node"))
	if err != nil {
		return err
	}
	probs := limits.Problems(w.num("cores"), w.num("memory"), w.num("swap"))
	for _, k := range []string{"cores", "memory", "swap"} {
		if p, ok := probs[k]; ok {
			return fmt.Errorf("%s", p)
		}
	}
	return nil
}

func (w *wizard) cloudpodCommands() [][]string {
	argv := []string{"create", "--vmid", w.val("vmid"), "--host", w.val("hostname"), "--ip", w.val("ip"), "--node", w.val("node"),
		"--storage", w.val("storage"), "--bridge", w.val("bridge"), "--cores", w.val("cores"), "--mem", w.val("memory"), "--swap", w.val("swap")}
	return [][]string{flags(argv, "--tenant", w.val("tenant"))}
}

// ---- a container from an OS template (ct create) ----

// catalogue marks a template that is downloaded from PVE's catalogue
// before the container is made.
const catalogue = "catalogue:"

func (w *wizard) ctQuestions() []question {
	v := w.ctCheck
	def := provisioner.DefaultCTSpec()
	return append(append([]question{
		w.vmidQuestion(v),
		w.nameQuestion("hostname", "Hostname", "ct", v),
		w.nodeQuestion(),
		{key: "template", name: "OS template", title: "OS template",
			note: func() string {
				return "Templates on the node's storages first, then PVE's catalogue (downloaded after you confirm)."
			},
			choices: w.templateChoices,
			def:     firstChoice(w.templateChoices, ""),
			show: func(v string) string {
				if name, ok := strings.CutPrefix(v, catalogue); ok {
					return name + " (from PVE's catalogue, downloaded first)"
				}
				return v
			},
		},
		w.numberQuestion("disk", "Disk (GB)", "--disk", "ct create's default.", constant(def.DiskGB), v),
		w.storageQuestion("storage", "Storage", "rootdir", nil, "disk"),
		w.numberQuestion("cores", "CPU cores", "--cores", "ct create's default.", constant(def.Cores), v),
		w.numberQuestion("memory", "Memory (MB)", "--memory", "ct create's default.", constant(def.MemoryMB), v),
		w.numberQuestion("swap", "Swap (MB)", "--swap", "ct create's default.", constant(def.SwapMB), v),
		w.bridgeQuestion("bridge", "Bridge", func() string { return w.firstBridge(provisioner.DefaultSpec().Bridge, "") }),
		w.vlanQuestion("vlan", "VLAN tag", v),
	}, w.addressQuestions("bridge", "vlan", v)...),
		question{key: "privilege", name: "Privilege", title: "Unprivileged or privileged?",
			note: w.privilegeNote,
			choices: func() ([]choice, error) {
				return []choice{{"unprivileged: root in the CT is not root on the node", "unprivileged"},
					{"privileged: root in the CT is root on the node", "privileged"}}, nil
			},
			def: func() (string, error) { return "unprivileged", nil },
			check: func(v string) error {
				if v != "privileged" {
					return nil
				}
				ok, why, err := w.privilegedAllowed()
				if err != nil || ok {
					return err
				}
				return fmt.Errorf("%s: choose unprivileged", why)
			},
		},
		question{key: "features", name: "Features", title: "Features",
			note: func() string {
				return "Only nesting: PVE lets an API token set no other feature, and none on a privileged CT."
			},
			when: func() bool { return w.val("privilege") == "unprivileged" },
			choices: func() ([]choice, error) {
				return []choice{{"none", ""}, {"nesting=1 (containers, systemd sandboxing inside)", "nesting=1"}}, nil
			},
			def:   func() (string, error) { return "", nil },
			check: w.checked("features", v),
		},
		yesNo("start", "Start it", true),
	)
}

func (w *wizard) privilegeNote() string {
	release, major, err := w.release()
	if err != nil {
		return ""
	}
	def := "privileged"
	if major >= 9 {
		def = "unprivileged"
	}
	return fmt.Sprintf("Sent either way: PVE %s alone would make it %s. Unprivileged is safer; a token may set features only there.", release, def)
}

// templateChoices: the templates the node's storages hold, then the
// catalogue's others.
func (w *wizard) templateChoices() ([]choice, error) {
	node := w.val("node")
	list, err := cached(w, "templates/"+node, func() ([]provisioner.TemplateEntry, error) { return w.prov.Templates(w.ctx, node) })
	if err != nil {
		return nil, err
	}
	var held, fetch []choice
	for _, t := range list {
		for _, h := range t.Held {
			held = append(held, choice{label: h.VolID, value: h.VolID})
		}
		if len(t.Held) == 0 && t.InCatalogue {
			fetch = append(fetch, choice{label: t.Template + "  (catalogue: download)", value: catalogue + t.Template})
		}
	}
	sort.SliceStable(held, func(i, j int) bool { return held[i].value < held[j].value })
	return append(held, fetch...), nil
}

// templateStorage is where a catalogue template goes: the vztmpl storage
// with the most room.
func (w *wizard) templateStorage() string {
	c, err := w.prov.PickStorage(w.ctx, w.val("node"), provisioner.StorageAuto, "vztmpl", 0)
	if err != nil {
		return "local"
	}
	return c.ID
}

// ostemplate is the template's volume once it is on a storage.
func (w *wizard) ostemplate() string {
	t := w.val("template")
	if name, ok := strings.CutPrefix(t, catalogue); ok {
		return w.templateStorage() + ":vztmpl/" + name
	}
	return t
}

func (w *wizard) ctArgs() []string {
	argv := []string{"ct", "create", "--vmid", w.val("vmid"), "--hostname", w.val("hostname"), "--node", w.val("node"), "--ostemplate", w.ostemplate(),
		"--storage", w.val("storage"), "--disk", w.val("disk"), "--cores", w.val("cores"), "--memory", w.val("memory"), "--swap", w.val("swap"),
		"--net", nicSpec("eth0", w.val("bridge"), w.val("vlan"), w.ipSpec()), "--" + w.val("privilege")}
	argv = flags(argv, "--features", w.val("features"))
	if w.val("start") == "yes" {
		argv = append(argv, "--start")
	}
	return argv
}

// ctCheck is ct create's flags and validate step on the answers.
func (w *wizard) ctCheck() error {
	f := &ctFlags{spec: provisioner.DefaultCTSpec()}
	s := &f.spec
	s.VMID, s.Hostname, s.Node, s.OSTemplate, s.Storage = w.num("vmid"), w.val("hostname"), w.val("node"), w.ostemplate(), w.val("storage")
	s.DiskGB, s.Cores, s.MemoryMB, s.SwapMB, s.Start = w.num("disk"), w.num("cores"), w.num("memory"), w.num("swap"), w.val("start") == "yes"
	f.nets = []string{nicSpec("eth0", w.val("bridge"), w.val("vlan"), w.ipSpec())}
	f.privileged = w.val("privilege") == "privileged"
	if feats := w.val("features"); feats != "" {
		f.features = []string{feats}
	}
	req, err := f.request(w.g)
	if err != nil {
		return err
	}
	return w.prov.CheckCT(w.ctx, req)
}

func (w *wizard) ctCommands() [][]string {
	var cmds [][]string
	if name, ok := strings.CutPrefix(w.val("template"), catalogue); ok {
		cmds = append(cmds, []string{"template", "download", name, "--storage", w.templateStorage(), "--node", w.val("node")})
	}
	return append(cmds, w.ctArgs())
}

// ---- a cloud-init VM (vm create) ----

// fromURL marks an image PVE downloads from a URL.
const fromURL = "url"

func (w *wizard) vmQuestions() []question {
	v := w.vmCheck
	def := provisioner.DefaultVMSpec()
	isURL := func() bool { return w.val("image") == fromURL }
	return append(append([]question{
		w.vmidQuestion(v),
		w.nameQuestion("name", "Name", "vm", v),
		w.nodeQuestion(),
		{key: "image", name: "Cloud image", title: "Cloud image",
			note: func() string {
				return "Disk images (content import) on the node's storages, or one PVE downloads from a URL."
			},
			choices: w.imageChoices,
			def:     firstChoice(w.imageChoices, fromURL),
			show: func(v string) string {
				if v == fromURL {
					return "downloaded from a URL"
				}
				return v
			},
		},
		{key: "image-url", name: "Image URL", title: "Image URL (http, https)", when: isURL, check: w.checked("image-url", v)},
		{key: "checksum", name: "Checksum", title: "The image's checksum (ALGO:HEX, e.g. sha256:…)", when: isURL,
			note: func() string { return "PVE verifies the download against it; nothing unverified is kept." },
			check: func(s string) error {
				if s == "" {
					return fmt.Errorf("give the image's checksum as ALGO:HEX, e.g. sha256:… from the publisher's SHA256SUMS")
				}
				return problemText(w.with("checksum", s, v))
			}},
		w.storageQuestion("storage", "Storage", "images", nil, "disk"),
		w.numberQuestion("disk", "Disk (GB, 0: the image's size)", "--disk", "vm create's default: the image's own size.", constant(def.DiskGB), v),
		w.numberQuestion("cores", "CPU cores", "--cores", "vm create's default.", constant(def.Cores), v),
		w.numberQuestion("memory", "Memory (MB)", "--memory", "vm create's default.", constant(def.MemoryMB), v),
		w.bridgeQuestion("bridge", "Bridge", func() string { return w.firstBridge(provisioner.DefaultSpec().Bridge, "") }),
		w.vlanQuestion("vlan", "VLAN tag", v),
	}, w.addressQuestions("bridge", "vlan", v)...),
		yesNo("agent", "QEMU guest agent", false),
		yesNo("start", "Start it", true),
	)
}

// imageChoices are the import images on the node's storages, then a URL.
func (w *wizard) imageChoices() ([]choice, error) {
	node := w.val("node")
	rows, err := cached(w, "images/"+node, func() ([]provisioner.ImageRow, error) { return w.prov.ImageList(w.ctx, node, "") })
	if err != nil {
		return nil, err
	}
	var out []choice
	for _, r := range rows {
		if r.Content == "import" {
			out = append(out, choice{label: fmt.Sprintf("%s  (%s)", r.VolID, humanSize(r.Size)), value: r.VolID})
		}
	}
	return append(out, choice{label: "an image from a URL (PVE downloads it, checked by its checksum)", value: fromURL}), nil
}

// imageFilename is the name a URL's image gets: its base name, a .img
// (qcow2 in practice) renamed .qcow2, since PVE takes the format from the
// extension.
func (w *wizard) imageFilename() string {
	base := path.Base(w.val("image-url"))
	if name, ok := strings.CutSuffix(base, ".img"); ok {
		return name + ".qcow2"
	}
	return base
}

func (w *wizard) vmImage() (image, checksum, filename string) {
	if w.val("image") != fromURL {
		return w.val("image"), "", ""
	}
	return w.val("image-url"), w.val("checksum"), w.imageFilename()
}

func (w *wizard) vmCheck() error {
	f := &vmFlags{}
	f.req.Spec = provisioner.DefaultVMSpec()
	s := &f.req.Spec
	s.VMID, s.Name, s.Node, s.Storage = w.num("vmid"), w.val("name"), w.val("node"), w.val("storage")
	s.Image, s.ImageChecksum, s.ImageFilename = w.vmImage()
	s.DiskGB, s.Cores, s.MemoryMB = w.num("disk"), w.num("cores"), w.num("memory")
	s.Agent, s.Start = w.val("agent") == "yes", w.val("start") == "yes"
	f.nets = []string{nicSpec("net0", w.val("bridge"), w.val("vlan"))}
	f.ipconfigs[0] = w.ipSpec()
	req, err := f.request(w.g)
	if err != nil {
		return err
	}
	return w.prov.CheckVM(w.ctx, req)
}

func (w *wizard) vmCommands() [][]string {
	image, sum, filename := w.vmImage()
	argv := []string{"vm", "create", "--vmid", w.val("vmid"), "--name", w.val("name"), "--node", w.val("node"), "--image", image}
	argv = flags(argv, "--checksum", sum, "--image-filename", filename)
	argv = append(argv, "--storage", w.val("storage"), "--disk", w.val("disk"), "--cores", w.val("cores"), "--memory", w.val("memory"),
		"--net", nicSpec("net0", w.val("bridge"), w.val("vlan")), "--ipconfig0", w.ipSpec())
	for _, b := range []string{"agent", "start"} {
		if w.val(b) == "yes" {
			argv = append(argv, "--"+b)
		}
	}
	return [][]string{argv}
}

// ---- OpenWrt routers (openwrt create, openwrt vm) ----

// routerQuestions are what both routers ask about their sides.
func (w *wizard) routerQuestions(v func() error) []question {
	return []question{
		w.bridgeQuestion("wan", "WAN bridge", func() string { return w.firstBridge(provisioner.DefaultSpec().Bridge, "") }),
		w.vlanQuestion("wan-tag", "WAN VLAN tag", v),
		w.bridgeQuestion("lan", "LAN bridge", func() string { return w.firstBridge("vmbr1", w.val("wan")) }),
		{key: "lan-ip", name: "LAN address", title: "LAN address (CIDR)",
			def:   func() (string, error) { return provisioner.DefaultOpenWrtLAN, nil },
			check: w.checked("lan-ip", v)},
	}
}

// latest marks the newest OpenWrt release from the mirror, made into a
// template before the router.
const latest = "mirror:latest"

func (w *wizard) openwrtQuestions() []question {
	v := w.openwrtCheck
	def := provisioner.DefaultOpenWrtSpec()
	return append(append([]question{
		w.vmidQuestion(v),
		w.nameQuestion("hostname", "Hostname", "router", v),
		w.nodeQuestion(),
		{key: "template", name: "OpenWrt template", title: "OpenWrt rootfs template",
			note: func() string {
				return "OpenWrt templates on the node's storages, or the latest release from " + w.o.mirror + "."
			},
			choices: w.openwrtTemplateChoices,
			def:     firstChoice(w.openwrtTemplateChoices, latest),
			show: func(v string) string {
				if v == latest {
					return "the latest release from " + w.o.mirror + ", made into a template first"
				}
				return v
			}},
		w.numberQuestion("disk", "Disk (GB)", "--disk", "openwrt create's default.", constant(def.DiskGB), v),
		w.storageQuestion("storage", "Storage", "rootdir", nil, "disk"),
	}, w.routerQuestions(v)...),
		w.numberQuestion("cores", "CPU cores", "--cores", "openwrt create's default.", constant(def.Cores), v),
		w.numberQuestion("memory", "Memory (MB)", "--memory", "openwrt create's default.", constant(def.MemoryMB), v),
	)
}

func (w *wizard) openwrtTemplateChoices() ([]choice, error) {
	all, err := w.templateChoices()
	var out []choice
	for _, c := range all {
		if strings.Contains(c.value, ":vztmpl/openwrt-") && strings.Contains(c.value, "-rootfs") {
			out = append(out, c)
		}
	}
	return append(out, choice{label: "the latest release from the mirror (made into a template first)", value: latest}), err
}

func (w *wizard) openwrtSpec() provisioner.OpenWrtSpec {
	s := provisioner.DefaultOpenWrtSpec()
	s.VMID, s.Hostname, s.Node, s.Storage, s.DiskGB = w.num("vmid"), w.val("hostname"), w.val("node"), w.val("storage"), w.num("disk")
	s.WAN, s.WANVLAN, s.LAN, s.LANAddress = w.val("wan"), w.num("wan-tag"), w.val("lan"), w.val("lan-ip")
	s.Cores, s.MemoryMB = w.num("cores"), w.num("memory")
	if t := w.val("template"); t != latest {
		s.OSTemplate = t
	}
	return s
}

func (w *wizard) openwrtCheck() error {
	return w.prov.CheckOpenWrt(w.ctx, provisioner.OpenWrtRequest{Spec: w.openwrtSpec()})
}

func (w *wizard) openwrtCommands() [][]string {
	s := w.openwrtSpec()
	var cmds [][]string
	mirror := ""
	if w.o.mirror != provisioner.DefaultOpenWrtMirror {
		mirror = w.o.mirror
	}
	if s.OSTemplate == "" {
		cmds = append(cmds, flags([]string{"openwrt", "template", "--version", "latest"}, "--mirror", mirror, "--storage", w.templateStorage(), "--node", s.Node))
	}
	argv := flags([]string{"openwrt", "create", "--vmid", w.val("vmid"), "--hostname", s.Hostname, "--node", s.Node}, "--ostemplate", s.OSTemplate)
	argv = append(argv, "--storage", s.Storage, "--disk", w.val("disk"), "--wan", s.WAN)
	argv = flags(argv, "--wan-tag", w.val("wan-tag"))
	argv = append(argv, "--lan", s.LAN, "--lan-ip", s.LANAddress, "--cores", w.val("cores"), "--memory", w.val("memory"))
	return append(cmds, argv)
}

func (w *wizard) openwrtVMQuestions() []question {
	v := w.openwrtVMCheck
	def := provisioner.DefaultOpenWrtVMSpec()
	return append(append([]question{
		w.vmidQuestion(v),
		w.nameQuestion("name", "Name", "openwrt", v),
		w.nodeQuestion(),
		{key: "version", name: "OpenWrt release", title: "OpenWrt release (e.g. 24.10.0, or latest)",
			note: func() string { return "Fetched from " + w.o.mirror + " and checked against the release's sha256sums." },
			def:  func() (string, error) { return def.Version, nil }, check: w.checked("version", v)},
		{key: "bios", name: "Firmware", title: "Firmware",
			choices: func() ([]choice, error) {
				return []choice{{"ovmf: UEFI, the combined-efi image", provisioner.BIOSOVMF}, {"seabios: legacy BIOS, the combined image", provisioner.BIOSSeaBIOS}}, nil
			},
			def: func() (string, error) { return def.BIOS, nil }},
		w.storageQuestion("storage", "Storage", "images", nil, ""),
	}, w.routerQuestions(v)...),
		w.numberQuestion("cores", "CPU cores", "--cores", "openwrt vm's default.", constant(def.Cores), v),
		w.numberQuestion("memory", "Memory (MB)", "--memory", "openwrt vm's default.", constant(def.MemoryMB), v),
	)
}

func (w *wizard) openwrtVMSpec() provisioner.OpenWrtVMSpec {
	s := provisioner.DefaultOpenWrtVMSpec()
	s.VMID, s.Name, s.Node, s.Version, s.Mirror, s.BIOS = w.num("vmid"), w.val("name"), w.val("node"), w.val("version"), w.o.mirror, w.val("bios")
	s.Storage, s.WAN, s.WANVLAN, s.LAN, s.LANAddress = w.val("storage"), w.val("wan"), w.num("wan-tag"), w.val("lan"), w.val("lan-ip")
	s.Cores, s.MemoryMB = w.num("cores"), w.num("memory")
	return s
}

func (w *wizard) openwrtVMCheck() error {
	return w.prov.CheckOpenWrtVM(w.ctx, provisioner.OpenWrtVMRequest{Spec: w.openwrtVMSpec()})
}

func (w *wizard) openwrtVMCommands() [][]string {
	s := w.openwrtVMSpec()
	mirror := ""
	if s.Mirror != provisioner.DefaultOpenWrtMirror {
		mirror = s.Mirror
	}
	argv := flags([]string{"openwrt", "vm", "--vmid", w.val("vmid"), "--name", s.Name, "--node", s.Node, "--version", s.Version}, "--mirror", mirror)
	argv = append(argv, "--bios", s.BIOS, "--storage", s.Storage, "--wan", s.WAN)
	argv = flags(argv, "--wan-tag", w.val("wan-tag"))
	return [][]string{append(argv, "--lan", s.LAN, "--lan-ip", s.LANAddress, "--cores", w.val("cores"), "--memory", w.val("memory"))}
}
