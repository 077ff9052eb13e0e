package provisioner

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// An OpenWrt router as a VM, seed 004's vm/openwrt-vm.sh done through
// the API: the x86-64 ext4 combined image (combined-efi for OVMF, the
// legacy one for SeaBIOS) fetched here from the mirror and checked against
// the release's sha256sums, decompressed here — its .img.gz carries
// metadata after the gzip stream, on which zcat exits 2 and PVE's download
// fails, so gzip's reader stops at the stream's end (Multistream(false))
// — and uploaded as a raw import volume with its sha256; then the VM
// created with the disk imported, the firmware, LAN (net0, eth0) and WAN
// (net1, eth1) cards and a serial console, started, and its UCI set
// through that console (Enter first: OpenWrt asks for it) with retries;
// the WAN address comes from netifd through the console, or from the
// guest agent when the image has one. It is vm create's flow with steps
// of its own.

// OpenWrtImageName is a release's ext4 combined disk image: the UEFI one
// (combined-efi) or the legacy-BIOS one.
func OpenWrtImageName(version string, efi bool) string {
	if efi {
		return "openwrt-" + version + "-x86-64-generic-ext4-combined-efi.img.gz"
	}
	return "openwrt-" + version + "-x86-64-generic-ext4-combined.img.gz"
}

// maxOpenWrtDisk bounds a decompressed image (real ones are 120 MiB).
const maxOpenWrtDisk = 4 << 30

// OpenWrtVMSpec is one router VM.
type OpenWrtVMSpec struct {
	Node string
	VMID int
	Name string
	// Version is a release (24.10.0) or "latest"; Mirror the download
	// server.
	Version, Mirror string
	WAN, LAN        string
	WANVLAN         int
	LANVLAN         int
	LANAddress      string
	// BIOS picks the image: ovmf the combined-efi one, seabios the legacy.
	BIOS string
	// Storage holds the disks; ImageStorage the import volume.
	Storage, ImageStorage string
	Cores, MemoryMB       int
	// Agent enables the guest agent, for images with qemu-ga.
	Agent  bool
	OnBoot bool
	Tags   []string
	Tenant string
}

// DefaultOpenWrtVMSpec: OVMF, 1 core, 256 MB, LAN 192.168.1.1/24,
// started at boot, the latest 24.x from the official mirror.
func DefaultOpenWrtVMSpec() OpenWrtVMSpec {
	return OpenWrtVMSpec{Node: "pve", Version: "latest", Mirror: DefaultOpenWrtMirror, LANAddress: DefaultOpenWrtLAN, BIOS: BIOSOVMF,
		Storage: StorageAuto, ImageStorage: StorageAuto, Cores: 1, MemoryMB: 256, OnBoot: true}
}

// OpenWrtVMRequest is one openwrt vm.
type OpenWrtVMRequest struct {
	Spec OpenWrtVMSpec
	// HTTP fetches from the mirror; nil is a client with a 10-minute
	// timeout.
	HTTP *http.Client
	// WANWait bounds waiting for the WAN's DHCP lease; none by then is a
	// warning.
	WANWait       time.Duration
	KeepOnFailure bool
	Reporter      Reporter
	Stop          <-chan struct{}
	Requester     string
}

// OpenWrtVMResult is what openwrt vm reports.
type OpenWrtVMResult struct {
	VMResult
	Version string `json:"version"`
	URL     string `json:"url"`
	SHA256  string `json:"sha256"`
	LAN     string `json:"lan"`
	WAN     string `json:"wan,omitempty"`
}

type openwrtVMRun struct {
	*vmRun
	ospec  OpenWrtVMSpec
	mirror openwrtMirror
	lan    netip.Prefix
	// release, url and sha256 are the image's, from the mirror.
	release, url, sha256 string
	gz, raw              string // temporary files
	wan                  string
}

// rawName is the decompressed image's name on the import storage.
func (o *openwrtVMRun) rawName() string {
	return strings.TrimSuffix(OpenWrtImageName(o.release, o.ospec.BIOS == BIOSOVMF), ".img.gz") + ".raw"
}

func (p *Provisioner) newOpenWrtVMRun(req OpenWrtVMRequest) *openwrtVMRun {
	s := req.Spec
	if s.Name == "" {
		s.Name = "openwrt-" + strconv.Itoa(s.VMID)
	}
	if req.HTTP == nil {
		req.HTTP = &http.Client{Timeout: 10 * time.Minute}
	}
	if req.WANWait <= 0 {
		req.WANWait = 30 * time.Second
	}
	lan := netcfg.VMNIC{Index: 0, Model: "virtio", NIC: netcfg.NIC{Name: "net0", Bridge: s.LAN, VLAN: s.LANVLAN}}
	wan := netcfg.VMNIC{Index: 1, Model: "virtio", NIC: netcfg.NIC{Name: "net1", Bridge: s.WAN, VLAN: s.WANVLAN}}
	vs := VMSpec{Node: s.Node, VMID: s.VMID, Name: s.Name, Storage: s.Storage, Cores: s.Cores, MemoryMB: s.MemoryMB, BIOS: s.BIOS,
		NICs: []netcfg.VMNIC{lan, wan}, Agent: s.Agent, OnBoot: s.OnBoot, Tags: s.Tags, Tenant: s.Tenant, Start: true,
		Label: "OpenWrt router", Extra: []string{"lan-ip=" + s.LANAddress, "version=" + s.Version, "mirror=" + s.Mirror}}
	r := p.newVMRun(VMRequest{Spec: vs, KeepOnFailure: req.KeepOnFailure, Reporter: req.Reporter, Stop: req.Stop, Requester: req.Requester,
		AgentWait: req.WANWait}, "openwrt vm")
	r.router = true
	r.leases.ask = routerLeases(r.leases.ask, s.LANAddress)
	o := &openwrtVMRun{vmRun: r, ospec: s, mirror: openwrtMirror{base: s.Mirror, http: req.HTTP}}
	o.req.AgentWait = req.WANWait
	return o
}

func (o *openwrtVMRun) steps() []flow.Step {
	return []flow.Step{
		{Name: StepValidate, ReadOnly: true, Run: o.validate},
		{Name: StepResolve, ReadOnly: true, Run: o.resolve},
		{Name: StepPreflight, ReadOnly: true, Run: o.preflight},
		o.leases.step(),
		{Name: StepFetch, Check: o.imageNotNeeded, Run: o.fetch, Plan: o.planFetch},
		{Name: StepImage, Check: o.imageNotNeeded, Run: o.fetchImage, Plan: o.planImage, Undo: o.undoImage},
		{Name: StepCreate, Check: o.createDone, Run: o.create, Plan: o.planCreate, Undo: o.undoCreate},
		{Name: StepStart, Check: o.startDone, Run: o.start, Plan: o.planStart},
		{Name: StepUCI, Run: o.configure, Plan: o.planConfigure},
		{Name: StepWAN, Run: o.waitWAN, Plan: o.planWAN},
		{Name: StepVerify, Run: o.verify, Plan: o.planVerify},
		{Name: StepFinalize, Check: o.finalized, Run: o.finalize, Plan: o.planFinalize},
	}
}

// CreateOpenWrtVM makes an OpenWrt router VM, or converges one an earlier
// run of the same spec made.
func (p *Provisioner) CreateOpenWrtVM(ctx context.Context, req OpenWrtVMRequest) (OpenWrtVMResult, error) {
	o := p.newOpenWrtVMRun(req)
	defer o.cleanup()
	err := o.run.Execute(ctx, o.steps())
	return OpenWrtVMResult{VMResult: o.result(ctx, err), Version: o.release, URL: o.url, SHA256: o.sha256, LAN: o.ospec.LANAddress, WAN: o.wan}, err
}

// PlanOpenWrtVM is openwrt vm's dry run: the mirror and PVE are read;
// nothing is fetched, sent or made.
func (p *Provisioner) PlanOpenWrtVM(ctx context.Context, req OpenWrtVMRequest) ([]PlannedCall, []string, error) {
	o := p.newOpenWrtVMRun(req)
	calls, err := o.run.DryRun(ctx, o.steps())
	return calls, o.reasons, err
}

func (o *openwrtVMRun) cleanup() {
	for _, f := range []string{o.gz, o.raw} {
		if f != "" {
			_ = os.Remove(f)
		}
	}
}

func (o *openwrtVMRun) validate(context.Context) error {
	s := o.ospec
	var probs []string
	o.lan, probs = validateRouter(s.WAN, s.LAN, s.WANVLAN, s.LANVLAN, s.LANAddress)
	if s.Version != "latest" && !openwrtVersionRE.MatchString(s.Version) {
		probs = append(probs, fmt.Sprintf("--version %q is not an OpenWrt release such as 24.10.0, or latest", s.Version))
	}
	if u, err := url.Parse(s.Mirror); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		probs = append(probs, fmt.Sprintf("--mirror %q is not an http(s) URL such as %s", s.Mirror, DefaultOpenWrtMirror))
	}
	if s.BIOS != BIOSSeaBIOS && s.BIOS != BIOSOVMF {
		probs = append(probs, fmt.Sprintf("--bios %q: use ovmf (the combined-efi image) or seabios (the legacy image)", s.BIOS))
	}
	probs = append(probs, o.validateCommon()...)
	if len(probs) > 0 {
		return problemf(ErrInvalidSpec, "%s", strings.ReplaceAll(strings.Join(probs, "; "), "\n", "; "))
	}
	return nil
}

// resolve settles the release and the image's sha256 from the mirror.
func (o *openwrtVMRun) resolve(ctx context.Context) error {
	efi := o.ospec.BIOS == BIOSOVMF
	v, u, sum, err := o.mirror.artefact(ctx, o.ospec.Version, func(v string) string { return OpenWrtImageName(v, efi) }, o.run.Info)
	if err != nil {
		return err
	}
	o.release, o.url, o.sha256 = v, u, sum
	o.spec.Image = u
	firmware := "the legacy-BIOS image (combined) with SeaBIOS"
	if efi {
		firmware = "the UEFI image (combined-efi) with OVMF, Secure Boot keys not enrolled (OpenWrt's GRUB is unsigned)"
	}
	o.reasons = append(o.reasons, fmt.Sprintf("OpenWrt %s: %s; sha256 %s from the release's sha256sums", v, firmware, sum),
		fmt.Sprintf("LAN on net0 (eth0, %s, %s), WAN on net1 (eth1, %s, DHCP), as OpenWrt's x86 defaults have them", o.ospec.LAN, o.ospec.LANAddress, o.ospec.WAN))
	return nil
}

// preflight: as vm create's (an existing router converges), then where
// the decompressed image goes: an import storage, uploaded with its
// sha256, or a copy already there verified by PVE.
func (o *openwrtVMRun) preflight(ctx context.Context) error {
	s := o.spec
	var err error
	if o.version, err = o.p.api.Version(ctx); err != nil {
		return apiProblem("read PVE's version", err)
	}
	if err := o.checkExisting(ctx); err != nil {
		return err
	}
	if o.existing != nil {
		o.storage = StorageChoice{ID: rootfsStorage(o.existing.Get("scsi0")), Reason: "the VM exists: its disks stay where they are"}
		o.reasons = append(o.reasons, o.storage.Reason)
		return nil
	}
	if err := o.chooseDiskStorage(ctx); err != nil {
		return err
	}
	o.content = o.p.newContentRun(ContentRequest{Node: s.Node, Storage: o.ospec.ImageStorage, Content: "import", URL: o.url, File: "(fetched)",
		Filename: o.rawName(), Reporter: o.req.Reporter, Requester: o.req.Requester}, o.run)
	// The raw image's sha256 is known once fetch has decompressed it.
	o.content.filename, o.content.sum = o.rawName(), pve.Checksum{Algorithm: "sha256", Hex: "(of the decompressed image)"}
	if err := o.content.preflight(ctx); err != nil {
		return err
	}
	o.image = o.content.volid
	o.reasons = append(o.reasons, "image: "+o.content.res.StorageReason)
	vm := "/vms/" + strconv.Itoa(s.VMID)
	if err := o.p.checkPrivileges(ctx, append(o.vmPrivileges(nil), privilege{Path: vm, Priv: "VM.Console"})); err != nil {
		return err
	}
	if err := o.p.checkNodeOnline(ctx, s.Node); err != nil {
		return err
	}
	return o.p.checkBridges(ctx, s.Node, vmBridges(s.NICs))
}

// imageNotNeeded: an existing router has its disk.
func (o *openwrtVMRun) imageNotNeeded(ctx context.Context) (string, error) {
	if o.existing != nil {
		return fmt.Sprintf("VM %d exists: its disk was imported already", o.spec.VMID), nil
	}
	return "", nil
}

func (o *openwrtVMRun) planFetch(context.Context) ([]flow.Call, error) {
	return []flow.Call{{Method: "GET", Path: o.url, Note: "here, not by PVE: sha256 " + o.sha256 + " from sha256sums; decompressed here to " + o.rawName() +
		" (gzip stream only: the trailing metadata makes zcat, and so PVE's download, fail)"}}, nil
}

// fetch downloads the image, checks its sha256 (a mismatch names both sums
// and nothing is stored) and decompresses it, keeping the raw image's
// sha256 for the upload.
func (o *openwrtVMRun) fetch(ctx context.Context) error {
	name := OpenWrtImageName(o.release, o.ospec.BIOS == BIOSOVMF)
	gz, n, err := o.mirror.fetch(ctx, o.url, o.sha256, name, "cloudpods-openwrt-*.img.gz", maxOpenWrtDisk)
	if gz != "" {
		o.gz = gz
	}
	if err != nil {
		return err
	}
	raw, size, sum, err := decompressOpenWrtImage(gz)
	if raw != "" {
		o.raw = raw
	}
	if err != nil {
		return fmt.Errorf("%s: %w; nothing was stored", name, err)
	}
	o.content.req.File, o.content.size = raw, size
	o.content.sum = pve.Checksum{Algorithm: "sha256", Hex: sum}
	o.run.Note(fmt.Sprintf("%s, %s, sha256 matches; decompressed to %s (%s)", name, humanBytes(n), o.rawName(), humanBytes(size)))
	return nil
}

// decompressOpenWrtImage writes the gzip stream of file to a temporary
// raw image and checks it is a disk (a boot sector's 55 AA); bytes after
// the stream (OpenWrt's sysupgrade metadata) are ignored.
func decompressOpenWrtImage(file string) (raw string, size int64, sum string, err error) {
	in, err := os.Open(file)
	if err != nil {
		return "", 0, "", err
	}
	defer in.Close()
	zr, err := gzip.NewReader(in)
	if err != nil {
		return "", 0, "", errors.New("it is not gzip-compressed")
	}
	zr.Multistream(false)
	out, err := os.CreateTemp("", "cloudpods-openwrt-*.raw")
	if err != nil {
		return "", 0, "", err
	}
	raw = out.Name()
	h := sha256.New()
	head := &headBuffer{max: 512}
	size, err = io.Copy(io.MultiWriter(out, h, head), io.LimitReader(zr, maxOpenWrtDisk+1))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	switch {
	case err != nil:
		return raw, size, "", fmt.Errorf("its gzip stream is damaged (%v)", err)
	case size > maxOpenWrtDisk:
		return raw, size, "", fmt.Errorf("it decompresses to more than %s: not an OpenWrt disk image", humanBytes(maxOpenWrtDisk))
	case size%512 != 0 || head.Len() < 512 || !bytes.Equal(head.Bytes()[510:512], []byte{0x55, 0xaa}):
		return raw, size, "", errors.New("it does not decompress to a disk image (no boot sector)")
	}
	return raw, size, hex.EncodeToString(h.Sum(nil)), nil
}

// headBuffer keeps the first max bytes written to it.
type headBuffer struct {
	bytes.Buffer
	max int
}

func (b *headBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (o *openwrtVMRun) planConfigure(context.Context) ([]flow.Call, error) {
	s := o.spec
	return []flow.Call{
		{Method: "POST", Path: vmPathOf(s.Node, s.VMID, "/termproxy"), Note: "serial console (serial0=socket); Enter first, as OpenWrt's console asks"},
		{Method: "GET", Path: vmPathOf(s.Node, s.VMID, "/vncwebsocket"), Note: o.uci().planNote()},
	}, nil
}

func (o *openwrtVMRun) uci() openwrtUCI { return openwrtUCI{lan: o.lan, hostname: o.spec.Name} }

// inSerial runs fn in the router's serial console, Enter typed first.
func (o *openwrtVMRun) inSerial(ctx context.Context, what string, fn func(ctx context.Context, sh *shell) error) error {
	return o.p.inConsole(ctx, o.run, o.vm(), what, []byte("\r"), fn)
}

// configure sets the router's UCI through the serial console, retried on
// a console lost or slow (OpenWrt may still be booting); a router
// configured so already is left alone.
func (o *openwrtVMRun) configure(ctx context.Context) error {
	return o.uci().configure(ctx, o.vm(), o.url, o.inSerial, &o.res.Changed)
}

func (o *openwrtVMRun) planWAN(context.Context) ([]flow.Call, error) {
	note := "ubus call network.interface.wan status in the serial console until the WAN has a DHCP lease, for up to " + o.req.AgentWait.String()
	if o.spec.Agent {
		note = "agent/network-get-interfaces (eth1) until the WAN has a DHCP lease, for up to " + o.req.AgentWait.String() + "; else the console's ubus"
	}
	return []flow.Call{{Method: "GET", Path: vmPathOf(o.spec.Node, o.spec.VMID, "/agent/network-get-interfaces"), Note: note}}, nil
}

// waitWAN waits for the WAN's address: the guest agent's eth1 when the
// image has an agent, else netifd through the serial console; a router
// without a lease is kept, with what to check.
func (o *openwrtVMRun) waitWAN(ctx context.Context) error {
	wait := o.req.AgentWait
	if o.spec.Agent {
		if err := o.waitAgent(ctx); err != nil {
			return err
		}
	}
	if o.agentUp {
		err := pollUntil(ctx, wait, func(ctx context.Context) (bool, error) {
			ifs, err := o.p.api.GuestInterfaces(ctx, o.vm())
			if errors.Is(err, pve.ErrAgentNotRunning) || errors.Is(err, pve.ErrTransient) {
				return false, nil
			}
			for _, i := range ifs {
				if i.Name == "eth1" {
					o.wan = i.Inet
				}
			}
			return o.wan != "", err
		})
		if err != nil && !(errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil) {
			return err
		}
	}
	if o.wan == "" {
		err := o.inSerial(ctx, "reading the WAN's status", func(ctx context.Context, sh *shell) error {
			perr := pollUntil(ctx, wait, func(ctx context.Context) (bool, error) {
				var err error
				o.wan, err = wanStatus(ctx, sh)
				return o.wan != "", err
			})
			if errors.Is(perr, context.DeadlineExceeded) && ctx.Err() == nil {
				return nil
			}
			return perr
		})
		if err != nil {
			return err
		}
	}
	if o.wan == "" {
		o.run.Warn(fmt.Sprintf("the WAN (eth1 on %s) has no address after %s: is there a DHCP server on %s? The router runs; check in its console with: ubus call network.interface.wan status", o.ospec.WAN, wait, o.ospec.WAN))
		return nil
	}
	o.run.Note("WAN eth1 " + o.wan)
	return nil
}

// verify is vm create's config check plus the router's UCI read back
// through the console.
func (o *openwrtVMRun) verify(ctx context.Context) error {
	if err := o.vmRun.verify(ctx); err != nil {
		return err
	}
	var checks []Check
	err := o.inSerial(ctx, "checking UCI", func(ctx context.Context, sh *shell) error {
		var err error
		checks, err = o.uci().checks(ctx, sh)
		return err
	})
	if err != nil {
		return err
	}
	o.res.Checks = append(o.res.Checks, checks...)
	cfg, err := o.p.api.GuestConfig(ctx, o.vm())
	if err != nil {
		return err
	}
	o.res.NICs = []NICState{{Key: "net0", Name: "eth0 (LAN, br-lan)", Config: cfg.Get("net0"), Address: o.lan.String()},
		{Key: "net1", Name: "eth1 (WAN)", Config: cfg.Get("net1"), Address: o.wan}}
	return failedChecks(fmt.Sprintf("router VM %d is not as asked", o.spec.VMID), checks)
}
