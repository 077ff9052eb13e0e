package provisioner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

var (
	// importVolRE is an import volume a disk can be imported from.
	importVolRE = regexp.MustCompile(`^([a-z][a-z0-9._-]*[a-z0-9]):import/([^/]+\.(qcow2|raw|vmdk))$`)
	// cpuRE is a CPU model name (PVE's cputype, e.g. x86-64-v2-AES, host).
	cpuRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]*$`)
	ciUserRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	domainRE = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
)

// validate checks the request alone, before PVE is contacted: every
// problem, one sentence each. Passthrough that only root may set is
// refused here, so nothing is ever sent for it.
func (r *vmRun) validate(context.Context) error {
	probs := r.validateCommon()
	s := r.spec
	switch {
	case r.isURL():
		if _, err := pveURL(s.Image); err != nil {
			probs = append(probs, err.Error())
		}
		if s.ImageChecksum != "" {
			if _, err := pve.ParseChecksum(s.ImageChecksum); err != nil {
				probs = append(probs, "--checksum: "+err.Error())
			}
		}
	case strings.Contains(s.Image, ":iso/"):
		probs = append(probs, fmt.Sprintf("--image %s is an ISO volume: PVE imports disks only from import (or images) volumes (\"has wrong type 'iso'\"): put the cloud image on an import storage (cloudpod image download URL --content import)", s.Image))
	case !importVolRE.MatchString(s.Image):
		probs = append(probs, fmt.Sprintf("--image %q is neither an import volume nor a URL: give STORAGE:import/FILE.qcow2 (.raw, .vmdk; cloudpod image list shows them) or the image's https:// URL with --checksum", s.Image))
	}
	if s.DiskGB < 0 || s.DiskGB > 65536 {
		probs = append(probs, fmt.Sprintf("--disk %d GB is out of range: use 1 to 65536, or 0 to keep the image's size", s.DiskGB))
	}
	if s.BIOS != BIOSSeaBIOS && s.BIOS != BIOSOVMF {
		probs = append(probs, fmt.Sprintf("--bios %q is not one PVE has: use seabios or ovmf (UEFI)", s.BIOS))
	}
	if s.Machine != "" && s.Machine != "q35" && s.Machine != "i440fx" {
		probs = append(probs, fmt.Sprintf("--machine %q: use q35 or i440fx", s.Machine))
	}
	if s.CPU != "" && !cpuRE.MatchString(s.CPU) {
		probs = append(probs, fmt.Sprintf("--cpu %q is not a CPU model name such as x86-64-v2-AES or host", s.CPU))
	}
	if err := netcfg.ValidateVMNICs(s.NICs); err != nil {
		probs = append(probs, err.Error())
	}
	for _, t := range s.Tags {
		if _, err := netcfg.NormalizeTags(t); err != nil {
			probs = append(probs, err.Error())
		}
	}
	_, pt := s.passthrough()
	probs = append(probs, pt...)
	if len(probs) > 0 {
		return problemf(ErrInvalidSpec, "%s", strings.ReplaceAll(strings.Join(probs, "; "), "\n", "; "))
	}
	return nil
}

// validateCommon checks what every VM flow takes: the VMID, the name,
// resources, the cloud-init settings and the checks.
func (r *vmRun) validateCommon() []string {
	s := r.spec
	var probs []string
	add := func(format string, a ...any) { probs = append(probs, fmt.Sprintf(format, a...)) }
	if s.VMID < 100 || s.VMID > MaxVMID {
		add("VMID %d is out of range: PVE guest ids run from 100 to %d", s.VMID, MaxVMID)
	}
	if s.Name == "" && s.Template != 0 {
		// A clone without --name is named after its template (preflight).
	} else if err := netcfg.ValidHostname(s.Name); err != nil {
		add("--name: %v", err)
	}
	if s.Cores < 1 || s.Cores > 8192 {
		add("%d cores is out of range: use 1 to 8192", s.Cores)
	}
	if s.MemoryMB < 16 {
		add("%d MB of memory is too little: PVE needs at least 16", s.MemoryMB)
	}
	if s.CIUser != "" && !ciUserRE.MatchString(s.CIUser) {
		add("--ciuser %q is not a Linux user name: use lower-case letters, digits, '-' and '_', e.g. ops", s.CIUser)
	}
	if err := validateSSHKeys(s.SSHKeys); err != nil {
		add("%s", strings.Replace(err.Error(), "--ssh-public-keys", "--sshkeys", 1))
	}
	for _, ns := range strings.Fields(s.Nameserver) {
		if _, err := netip.ParseAddr(ns); err != nil {
			add("--nameserver %q is not an IP address: give DNS servers' addresses, space-separated", ns)
		}
	}
	for _, d := range strings.Fields(s.Searchdomain) {
		if !domainRE.MatchString(d) {
			add("--searchdomain %q is not a domain name", d)
		}
	}
	nics := map[int]bool{}
	for _, n := range s.NICs {
		nics[n.Index] = true
	}
	for _, i := range sortedInts(s.IPConfigs) {
		if len(s.NICs) > 0 && !nics[i] {
			add("--ipconfig%d has no card: add --net name=net%d,bridge=…", i, i)
		}
		if _, err := netcfg.ParseIPConfig("--ipconfig"+strconv.Itoa(i), s.IPConfigs[i]); err != nil {
			add("%v", err)
		}
	}
	if len(r.req.Checks) > 0 && !(s.Agent && s.Start) {
		add("--check runs through the guest agent: add --agent and --start (and use an image with qemu-guest-agent)")
	}
	return probs
}

// pveURL checks a URL PVE is to fetch.
func pveURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "ftp") || u.Host == "" {
		return "", fmt.Errorf("%q is not an http, https or ftp URL: give the file's full address", raw)
	}
	return u.Host, nil
}

// importNeeds84 refuses, on a PVE before 8.4, what only 8.4 imports:
// download-url and upload take content import for qcow2, raw and vmdk from
// libpve-storage-perl 8.3.6 on (PVE 8.4; 8.3 took only .ova).
func importNeeds84(v pve.Version, file string) error {
	major, minor := releaseNumbers(v)
	if major > 8 || (major == 8 && minor >= 4) {
		return nil
	}
	return problemf(ErrPreflight, "PVE %s cannot take %s as an import volume: content type import for qcow2, raw and vmdk images came with PVE 8.4 (libpve-storage-perl 8.3.6); update the node to 8.4 or later, or import the disk as root on the node (qm disk import)",
		v.Release, file)
}

func releaseNumbers(v pve.Version) (int, int) {
	major, rest, _ := strings.Cut(v.Release, ".")
	minor, _, _ := strings.Cut(rest, ".")
	a, _ := strconv.Atoi(major)
	b, _ := strconv.Atoi(minor)
	return a, b
}

// agentPrivileges are what the guest agent's calls need: VM.Monitor on
// PVE 8; on 9, VM.GuestAgent.Audit (ping, interfaces) and
// VM.GuestAgent.Unrestricted for exec (pve-access-control 9.0.2 split
// VM.Monitor).
func agentPrivileges(v pve.Version, vm string, exec bool) []privilege {
	major, _ := releaseNumbers(v)
	if major < 9 {
		return []privilege{{Path: vm, Priv: "VM.Monitor"}}
	}
	unrestricted := privilege{Path: vm, Priv: "VM.GuestAgent.Unrestricted"}
	if exec {
		return []privilege{unrestricted}
	}
	return []privilege{{Path: vm, Priv: "VM.GuestAgent.Audit", Or: [][]privilege{{unrestricted}}}}
}

// vmPrivileges are what making and booting the VM needs, by ACL path
// (seed004 §5.2): the create's, the cloud-init keys' (VM.Config.Cloudinit
// or VM.Config.Network), the bridges' SDN.Use, start's and the agent's.
func (r *vmRun) vmPrivileges(devs []passthroughDevice) []privilege {
	s := r.spec
	vm := "/vms/" + strconv.Itoa(s.VMID)
	need := []privilege{
		{Path: vm, Priv: "VM.Allocate"}, {Path: vm, Priv: "VM.Audit"}, {Path: vm, Priv: "VM.Config.Disk"}, {Path: vm, Priv: "VM.Config.CPU"},
		{Path: vm, Priv: "VM.Config.Memory"}, {Path: vm, Priv: "VM.Config.Network"}, {Path: vm, Priv: "VM.Config.Options"},
		{Path: vm, Priv: "VM.Config.HWType"},
		{Path: "/storage/" + r.storage.ID, Priv: "Datastore.AllocateSpace"},
	}
	need = append(need, r.bootPrivileges(vm)...)
	need = append(need, bridgePrivileges(s.NICs)...)
	return append(need, passthroughPrivileges(vm, devs)...)
}

// bootPrivileges are what the cloud-init settings, start and the agent
// need: VM.Config.Cloudinit (or VM.Config.Network) for cloud-init keys
// (API2/Qemu.pm check_vm_modify_config_perm), VM.PowerMgmt, the agent's.
func (r *vmRun) bootPrivileges(vm string) []privilege {
	s := r.spec
	var need []privilege
	if len(s.cloudInitParams()) > 0 {
		need = append(need, privilege{Path: vm, Priv: "VM.Config.Cloudinit", Or: [][]privilege{{{Path: vm, Priv: "VM.Config.Network"}}}})
	}
	if s.Start {
		need = append(need, privilege{Path: vm, Priv: "VM.PowerMgmt"})
		if s.Agent {
			need = append(need, agentPrivileges(r.version, vm, len(r.req.Checks) > 0)...)
		}
	}
	return need
}

// bridgePrivileges: SDN.Use on each bridge (and VLAN) the cards use.
func bridgePrivileges(nics []netcfg.VMNIC) []privilege {
	var need []privilege
	seen := map[string]bool{}
	for _, n := range nics {
		p := "/sdn/zones/localnetwork/" + n.Bridge
		if n.VLAN != 0 {
			p += "/" + strconv.Itoa(n.VLAN)
		}
		if !seen[p] {
			seen[p] = true
			need = append(need, privilege{Path: p, Priv: "SDN.Use"})
		}
	}
	return need
}

// preflight reads PVE: the version, an existing VM (converge or refuse),
// the disks' storage, the image (on its storage, or where a URL goes),
// the token's privileges, the node, the bridges, the mappings, the static
// addresses.
func (r *vmRun) preflight(ctx context.Context) error {
	s := r.spec
	var err error
	if r.version, err = r.p.api.Version(ctx); err != nil {
		return apiProblem("read PVE's version", err)
	}
	if err := r.checkExisting(ctx); err != nil {
		return err
	}
	if r.existing != nil {
		r.storage = StorageChoice{ID: rootfsStorage(r.existing.Get("scsi0")), Reason: "the VM exists: its disks stay where they are"}
		r.reasons = append(r.reasons, r.storage.Reason)
		r.image = r.existingImage()
		return nil
	}
	if err := r.chooseDiskStorage(ctx); err != nil {
		return err
	}
	devs, _ := s.passthrough()
	need := r.vmPrivileges(devs)
	if err := r.checkImage(ctx); err != nil {
		return err
	}
	if !r.isURL() {
		sid := rootfsStorage(r.image)
		need = append(need, privilege{Path: "/storage/" + sid, Priv: "Datastore.Audit", Or: [][]privilege{{{Path: "/storage/" + sid, Priv: "Datastore.AllocateSpace"}}}})
	}
	if err := r.p.checkPrivileges(ctx, need); err != nil {
		return err
	}
	if err := r.p.checkNodeOnline(ctx, s.Node); err != nil {
		return err
	}
	if err := r.p.checkBridges(ctx, s.Node, vmBridges(s.NICs)); err != nil {
		return err
	}
	if err := r.p.checkMappings(ctx, devs); err != nil {
		return err
	}
	return r.checkAddresses(ctx)
}

// chooseDiskStorage picks the storage for the disks: the image's size is
// not known before the import, so the room asked is --disk's.
func (r *vmRun) chooseDiskStorage(ctx context.Context) error {
	storages, err := r.p.api.Storages(ctx, r.spec.Node)
	if err != nil {
		return apiProblem("list storages on "+r.spec.Node, err)
	}
	if r.storage, err = ChooseStorage(storages, r.spec.Storage, "images", int64(r.spec.DiskGB)<<30); err != nil {
		return err
	}
	r.reasons = append(r.reasons, "disks: "+r.storage.Reason)
	if r.storage.Warning != "" {
		r.run.Warn(r.storage.Warning)
	}
	return nil
}

// existingImage is what an existing VM was made from, as its spec says.
func (r *vmRun) existingImage() string {
	if r.isURL() {
		return ""
	}
	return r.spec.Image
}

// checkExisting: a free VMID is a fresh create; one holding a VM this
// spec made is a converging re-run; anything else is refused.
func (r *vmRun) checkExisting(ctx context.Context) error {
	cfg, sameRun, err := r.p.existingGuest(ctx, r.run, r.vm(), r.spec.Hash(), r.runID, r.spec.diff)
	if err != nil || cfg == nil {
		return err
	}
	r.existing = cfg
	r.createTried, r.created = sameRun, sameRun
	return nil
}

// checkImage: an import volume must be on its storage, on a PVE that
// imports it; a URL goes through the content flow's preflight (the import
// storage, the network privilege, a cached copy).
func (r *vmRun) checkImage(ctx context.Context) error {
	s := r.spec
	if r.isURL() {
		req := ContentRequest{Node: s.Node, Storage: StorageAuto, Content: "import", URL: s.Image, Filename: s.ImageFilename,
			NoVerify: r.req.NoVerify, InsecureTLS: r.req.InsecureTLS, Reporter: r.req.Reporter, Requester: r.req.Requester}
		if s.ImageChecksum != "" {
			req.Checksum, _ = pve.ParseChecksum(s.ImageChecksum)
		}
		r.content = r.p.newContentRun(req, r.run)
		if err := r.content.validate(ctx); err != nil {
			return err
		}
		if err := r.content.preflight(ctx); err != nil {
			return err
		}
		r.image = r.content.volid
		r.reasons = append(r.reasons, "image: "+r.content.res.StorageReason)
		return nil
	}
	m := importVolRE.FindStringSubmatch(s.Image)
	if err := importNeeds84(r.version, m[2]); err != nil {
		return err
	}
	vols, err := r.p.api.StorageContent(ctx, s.Node, m[1], "import")
	if errors.Is(err, pve.ErrNotFound) {
		return problemf(ErrPreflight, "storage %s of --image does not exist on node %s: cloudpod image list shows where images are", m[1], s.Node)
	}
	if err != nil {
		return apiProblem("list the import content of storage "+m[1], err)
	}
	for _, v := range vols {
		if v.VolID == s.Image {
			r.image = v.VolID
			return nil
		}
	}
	return problemf(ErrPreflight, "image %s is not on storage %s: fetch it first with: cloudpod image download URL --content import --storage %s --checksum ALGO:HEX", m[2], m[1], m[1])
}

// checkAddresses refuses a static cloud-init address another guest's
// config holds.
func (r *vmRun) checkAddresses(ctx context.Context) error {
	return r.p.checkAddressesFree(ctx, r.spec.staticAddrs(), r.spec.VMID, "--ipconfigN ip=")
}

func vmBridges(nics []netcfg.VMNIC) map[string]string {
	out := map[string]string{}
	for _, n := range nics {
		out[n.Key()] = n.Bridge
	}
	return out
}
