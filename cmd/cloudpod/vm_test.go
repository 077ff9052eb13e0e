package main

import (
	"encoding/base64"
	"encoding/binary"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/migrahosting/cloudpods/fixtures/openwrtmirror"
	"github.com/migrahosting/cloudpods/fixtures/pvesim"
	"github.com/migrahosting/cloudpods/fixtures/vmimages"
)

// pubKey is a well-formed ssh-ed25519 authorized_keys line.
func pubKey(comment string) string {
	blob := binary.BigEndian.AppendUint32(nil, 11)
	blob = append(blob, "ssh-ed25519"...)
	blob = binary.BigEndian.AppendUint32(blob, 32)
	blob = append(blob, make([]byte, 32)...)
	return "ssh-ed25519 " + base64.StdEncoding.EncodeToString(blob) + " " + comment
}

// imageMirror serves files on loopback, as a cloud image publisher would.
func imageMirror(t *testing.T, files map[string][]byte) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(openwrtmirror.Handler(files))
	t.Cleanup(srv.Close)
	return srv
}

// cloudImage is a qcow2 cloud image whose guest runs cloud-init and the
// QEMU guest agent.
var cloudImage = vmimages.QCOW2(2<<30, &vmimages.Manifest{OS: "ubuntu", Agent: true, CloudInit: true})

// TestVMCreateCloudInit is issue 17's first "Done when": vm create from a
// URL with its checksum, OVMF, disk grown to 16G, a tagged card,
// cloud-init user, keys and address, the agent; PVE's config as asked and
// the agent showing the address. Then the same command converges, and
// destroy removes the VM by its marker.
func TestVMCreateCloudInit(t *testing.T) {
	for _, version := range []string{"9.1", "8.4"} {
		t.Run(version, func(t *testing.T) { testVMCreateCloudInit(t, version) })
	}
}

func testVMCreateCloudInit(t *testing.T, version string) {
	c := startCLIWith(t, func(cfg *pvesim.Config) { cfg.Version = version; withNetworkToken(cfg) })
	srv := imageMirror(t, map[string][]byte{"images/noble.qcow2": cloudImage})
	keys := pubKey("ops@laptop") + "\n" + pubKey("ci@runner")
	keyFile := filepath.Join(t.TempDir(), "keys.pub")
	must(t, os.WriteFile(keyFile, []byte(keys+"\n"), 0o644))
	args := []string{"vm", "create", "--vmid", "500", "--name", "ci1", "--image", srv.URL + "/images/noble.qcow2",
		"--checksum", "sha256:" + vmimages.SHA256(cloudImage), "--storage", "auto", "--disk", "16", "--bios", "ovmf",
		"--net", "name=net0,bridge=vmbr0,tag=30", "--ciuser", "ops", "--sshkeys", keyFile,
		"--ipconfig0", "ip=10.1.10.150/24,gw=10.1.10.1", "--agent", "--start"}

	out, _ := c.mustRun(t, 0, append(args, "--dry-run")...)
	wantIn(t, "dry run", out, "download-url", "content=import", "filename=noble.qcow2", "scsi0=clients-backup:0,import-from=local:import/noble.qcow2",
		"efidisk0=clients-backup:1,efitype=4m,pre-enrolled-keys=0", "ide2=clients-backup:cloudinit", "sshkeys=(2 keys, percent-encoded)",
		"PUT    /nodes/pve/qemu/500/resize", "disk=scsi0 size=16G", "/agent/ping", "why:", "disks: storage clients-backup: the active images storage with the most room")
	if _, ok := c.sim.Guest(500); ok {
		t.Fatal("the dry run made VM 500")
	}

	out, _ = c.mustRun(t, 0, args...)
	wantIn(t, "vm create", out, "VM 500 ci1 created: running on node pve, disks on clients-backup", "agent shows net0 10.1.10.150/24")
	g, ok := c.sim.Guest(500)
	if !ok || g.Status != "running" {
		t.Fatalf("VM 500: %v %v", ok, g.Status)
	}
	encoded := strings.ReplaceAll(url.QueryEscape(keys), "+", "%20")
	for k, want := range map[string]string{
		"scsi0":     `^clients-backup:vm-500-disk-1,discard=on,iothread=1,size=16G,ssd=1$`,
		"efidisk0":  `^clients-backup:vm-500-disk-0,efitype=4m,pre-enrolled-keys=0,size=1M$`,
		"ide2":      `^clients-backup:vm-500-cloudinit,media=cdrom$`,
		"ipconfig0": `^ip=10\.1\.10\.150/24,gw=10\.1\.10\.1$`,
		"sshkeys":   "^" + regexp.QuoteMeta(encoded) + "$",
		"net0":      `^virtio=BC:24:11:[0-9A-F:]{8},bridge=vmbr0,tag=30$`,
		"bios":      `^ovmf$`,
		"agent":     `^enabled=1$`,
		"ciuser":    `^ops$`,
	} {
		if !regexp.MustCompile(want).MatchString(g.Config[k]) {
			t.Errorf("config %s = %q, want %s", k, g.Config[k], want)
		}
	}
	if _, ok := c.sim.ContentFile("local:import/noble.qcow2"); !ok {
		t.Error("the image is not on local's import content")
	}

	out, _ = c.mustRun(t, 0, args...)
	wantIn(t, "again", out, "image      skip", "create     skip: VM 500 exists with this spec", "resize     skip", "start      skip: already running",
		"VM 500 ci1 already as asked, nothing to do")

	_, errs := c.mustRun(t, exitConflict, "vm", "create", "--vmid", "500", "--name", "ci1", "--image", "local:import/noble.qcow2",
		"--net", "name=net0,bridge=vmbr0,tag=30")
	wantIn(t, "another spec", errs, "VM 500 already exists with a different spec")

	out, _ = c.mustRun(t, 0, "vm", "list")
	wantIn(t, "vm list", out, "500", "ci1", "10.1.10.150", "running")
	out, _ = c.mustRun(t, 0, "destroy", "500", "--force", "--yes")
	wantIn(t, "destroy", out, "VM 500 ci1 (10.1.10.150) destroyed")
	if _, ok := c.sim.Guest(500); ok {
		t.Error("VM 500 is still there")
	}
}

// seedCloudImage puts the cloud image on local's import content, as an
// earlier image download would have.
func seedCloudImage(t *testing.T, c *cli) {
	t.Helper()
	must(t, c.sim.AddVolumeFile("local:import/noble.qcow2", cloudImage))
}

// TestVMTemplateAndLinkedClone is issue 17's third "Done when": vm
// template 500, then vm clone 500 --vmid 501 --linked with its own
// ipconfig0 → a running clone the agent shows at its own address; both
// commands again converge.
func TestVMTemplateAndLinkedClone(t *testing.T) {
	c := startCLIWith(t, withNetworkToken)
	seedCloudImage(t, c)
	c.mustRun(t, 0, "vm", "create", "--vmid", "500", "--name", "ci1", "--image", "local:import/noble.qcow2", "--storage", "clients-main",
		"--disk", "16", "--net", "name=net0,bridge=vmbr0", "--ciuser", "ops", "--ipconfig0", "ip=10.1.10.150/24,gw=10.1.10.1", "--agent", "--start")

	out, _ := c.mustRun(t, 0, "vm", "template", "500")
	wantIn(t, "vm template", out, "shutdown   done", "convert    done", "VM 500 ci1 is a template now")
	g, _ := c.sim.Guest(500)
	if g.Config["template"] != "1" || !strings.HasPrefix(g.Config["scsi0"], "clients-main:base-500-disk-") || g.Status != "stopped" {
		t.Fatalf("template: %s %v", g.Status, g.Config)
	}
	out, _ = c.mustRun(t, 0, "vm", "template", "500")
	wantIn(t, "again", out, "is a template already, nothing to do")

	clone := []string{"vm", "clone", "500", "--vmid", "501", "--linked", "--ipconfig0", "ip=10.1.10.151/24,gw=10.1.10.1"}
	out, _ = c.mustRun(t, 0, append(clone, "--dry-run")...)
	wantIn(t, "dry run", out, "POST   /nodes/pve/qemu/500/clone", "full=0", "newid=501", "name=ci1-501", "ipconfig0=ip=10.1.10.151/24,gw=10.1.10.1",
		"linked clone: its disks reference template VM 500's base volumes on clients-main")
	out, _ = c.mustRun(t, 0, clone...)
	wantIn(t, "vm clone", out, "clone      done: linked clone of VM 500", "VM 501 ci1-501 cloned from VM 500: running", "agent shows net0 10.1.10.151/24")
	g, _ = c.sim.Guest(501)
	if g.Status != "running" || !strings.HasPrefix(g.Config["scsi0"], "clients-main:base-500-disk-0/vm-501-disk-") || g.Config["ipconfig0"] != "ip=10.1.10.151/24,gw=10.1.10.1" {
		t.Errorf("clone: %s %v", g.Status, g.Config)
	}
	out, _ = c.mustRun(t, 0, clone...)
	wantIn(t, "again", out, "clone      skip", "configure  skip", "already as asked, nothing to do")

	_, errs := c.mustRun(t, exitRefused, "destroy", "500", "--force", "--yes")
	wantIn(t, "destroy the template", errs, "VM 500 (ci1) is a template: destroy refuses templates")
	_, errs = c.mustRun(t, exitPreflight, "vm", "clone", "501", "--vmid", "502")
	wantIn(t, "clone of a non-template", errs, "VM 501 is not a template: convert it first with: cloudpod vm template 501")
}

// TestVMPassthroughOnlyByMapping is issue 17's fourth "Done when": a raw
// host device is refused before any call, naming mappings as the way; a
// mapping the cluster lacks is refused in preflight, listing the ones it
// has; a mapping it has goes through.
func TestVMPassthroughOnlyByMapping(t *testing.T) {
	c := startCLIWith(t, func(cfg *pvesim.Config) {
		cfg.Tokens[0].Privileges = append(pvesim.PVEAdminPrivileges(cfg.Version), "Sys.AccessNetwork", "Mapping.Use")
	})
	seedCloudImage(t, c)
	c.sim.AddMapping("pci", "gpu0", "node=pve,path=0000:01:00.0,id=10de:2204")
	before := c.sim.Requests()
	_, errs := c.mustRun(t, exitUsage, "vm", "create", "--vmid", "510", "--name", "gpu1", "--image", "local:import/noble.qcow2",
		"--net", "name=net0,bridge=vmbr0", "--hostpci", "host=0000:01:00.0")
	wantIn(t, "raw host", errs, `--hostpci host=0000:01:00.0: PVE says "only root can set 'hostpci0' config for non-mapped devices"`,
		"resource mapping", "--hostpci mapping=NAME", "Mapping.Use on /mapping/pci/NAME")
	if after := c.sim.Requests(); !sameCounts(before, after) {
		t.Errorf("PVE saw requests for a refused --hostpci: before %v after %v", before, after)
	}
	_, errs = c.mustRun(t, exitUsage, "vm", "create", "--vmid", "510", "--name", "gpu1", "--image", "local:import/noble.qcow2",
		"--net", "name=net0,bridge=vmbr0", "--hostpci", "mapping=gpu0,romfile=vbios.bin", "--usb", "host=0951:1666")
	wantIn(t, "romfile and usb host", errs, "only root@pam can set 'romfile' option", "only root can set 'usb0' config for real devices")

	_, errs = c.mustRun(t, exitPreflight, "vm", "create", "--vmid", "510", "--name", "gpu1", "--image", "local:import/noble.qcow2",
		"--net", "name=net0,bridge=vmbr0", "--hostpci", "mapping=gpu9")
	wantIn(t, "unknown mapping", errs, "--hostpci mapping=gpu9: the cluster has no PCI mapping gpu9 (it has: gpu0)")

	out, _ := c.mustRun(t, 0, "vm", "create", "--vmid", "510", "--name", "gpu1", "--image", "local:import/noble.qcow2", "--machine", "q35",
		"--net", "name=net0,bridge=vmbr0", "--hostpci", "mapping=gpu0,pcie=1")
	wantIn(t, "mapped", out, "VM 510 gpu1 created: stopped")
	if g, _ := c.sim.Guest(510); g.Config["hostpci0"] != "mapping=gpu0,pcie=1" || g.Config["machine"] != "q35" {
		t.Errorf("hostpci0 %q machine %q", g.Config["hostpci0"], g.Config["machine"])
	}
}

// sameCounts reports whether two request counters are equal.
func sameCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestOpenWrtVM is issue 17's second "Done when": a tampered image is
// refused by its sha256 and leaves nothing on the storage; openwrt vm
// --version latest --vmid 600 --wan vmbr0 --lan vmbr1 gives VM 600 running
// with two cards and the imported disk, its UCI set through the serial
// console, its WAN leased; the same command again has nothing to do.
func TestOpenWrtVM(t *testing.T) {
	c := startCLIWith(t, withNetworkToken)
	const ver = "24.10.0"
	files, err := openwrtmirror.Tree(ver, "23.05.5")
	must(t, err)
	imgPath := openwrtmirror.TargetDir(ver) + "/" + openwrtmirror.ImageName(ver, true)
	tampered := map[string][]byte{}
	for p, b := range files {
		tampered[p] = b
	}
	good := files[imgPath]
	tampered[imgPath] = append(append([]byte(nil), good[:len(good)-8]...), []byte("tampered")...)
	bad := imageMirror(t, tampered)
	_, errs := c.mustRun(t, exitFailed, "openwrt", "vm", "--version", "latest", "--vmid", "600", "--wan", "vmbr0", "--lan", "vmbr1", "--mirror", bad.URL)
	wantIn(t, "tampered image", errs, "checksum mismatch for "+openwrtmirror.ImageName(ver, true)+": expected sha256:"+vmimages.SHA256(good)+" (the release's sha256sums), got sha256:"+vmimages.SHA256(tampered[imgPath]),
		"nothing was stored")
	if _, ok := c.sim.Guest(600); ok {
		t.Fatal("VM 600 was made from a tampered image")
	}
	rows, _ := c.mustRun(t, 0, "image", "list", "--storage", "local")
	if strings.Contains(rows, "openwrt") {
		t.Fatalf("the tampered image left something on local:\n%s", rows)
	}

	mirror := imageMirror(t, files)
	args := []string{"openwrt", "vm", "--version", "latest", "--vmid", "600", "--wan", "vmbr0", "--lan", "vmbr1", "--mirror", mirror.URL}
	out, _ := c.mustRun(t, 0, append(args, "--dry-run")...)
	wantIn(t, "dry run", out, "GET    "+mirror.URL+"/"+imgPath, "decompressed here", "POST   /nodes/pve/storage/local/upload",
		"content=import", "filename=openwrt-24.10.0-x86-64-generic-ext4-combined-efi.raw", "bios=ovmf",
		"scsi0=clients-backup:0,import-from=local:import/openwrt-24.10.0-x86-64-generic-ext4-combined-efi.raw",
		"net0=virtio,bridge=vmbr1", "net1=virtio,bridge=vmbr0", "serial0=socket", "/termproxy", "network.lan.ipaddr=192.168.1.1",
		"the UEFI image (combined-efi) with OVMF")

	out, _ = c.mustRun(t, 0, args...)
	wantIn(t, "openwrt vm", out, "latest 24.x release on the mirror: 24.10.0", "sha256 matches; decompressed to openwrt-24.10.0-x86-64-generic-ext4-combined-efi.raw",
		"uci        done", "router VM 600 openwrt-600 created: running", "LAN 192.168.1.1/24 on vmbr1, WAN 10.1.10.2")
	g, ok := c.sim.Guest(600)
	if !ok || g.Status != "running" {
		t.Fatalf("VM 600: %v %s", ok, g.Status)
	}
	for k, want := range map[string]string{
		"scsi0":    `^clients-backup:vm-600-disk-1,discard=on,iothread=1,size=1M,ssd=1$`,
		"efidisk0": `^clients-backup:vm-600-disk-0,efitype=4m,pre-enrolled-keys=0,size=1M$`,
		"net0":     `^virtio=BC:24:11:[0-9A-F:]{8},bridge=vmbr1$`,
		"net1":     `^virtio=BC:24:11:[0-9A-F:]{8},bridge=vmbr0$`,
		"bios":     `^ovmf$`,
		"serial0":  `^socket$`,
		"boot":     `^order=scsi0$`,
	} {
		if !regexp.MustCompile(want).MatchString(g.Config[k]) {
			t.Errorf("config %s = %q, want %s", k, g.Config[k], want)
		}
	}
	if g.Config["net2"] != "" || g.Config["ide2"] != "" {
		t.Errorf("net2 %q ide2 %q", g.Config["net2"], g.Config["ide2"])
	}
	raw, ok := c.sim.ContentFile("local:import/openwrt-24.10.0-x86-64-generic-ext4-combined-efi.raw")
	if b, err := os.ReadFile(raw); !ok || err != nil || string(b) != string(openwrtmirror.Disk(ver, true)) {
		t.Errorf("the import volume is not the decompressed image (%v %v)", ok, err)
	}
	network := readFile(t, filepath.Join(c.sim.RootDir(600), "etc/config/network"))
	wantIn(t, "UCI network", network, "config interface 'lan'\n\toption device 'br-lan'\n\toption proto 'static'\n\toption ipaddr '192.168.1.1'",
		"config interface 'wan'\n\toption device 'eth1'\n\toption proto 'dhcp'")
	wantIn(t, "UCI system", readFile(t, filepath.Join(c.sim.RootDir(600), "etc/config/system")), "option hostname 'openwrt-600'")

	out, _ = c.mustRun(t, 0, args...)
	wantIn(t, "again", out, "fetch      skip", "create     skip", "uci        skip: UCI already as wanted", "already as asked, nothing to do")
}

// TestVMAgentPrivilegesOnPVE84And91: the guest agent's privilege is
// VM.Monitor on PVE 8.4 and VM.GuestAgent.* on 9.1; a token without it is
// refused in preflight, naming it, and nothing is made.
func TestVMAgentPrivilegesOnPVE84And91(t *testing.T) {
	for version, missing := range map[string]string{"8.4": "VM.Monitor on /vms/500", "9.1": "VM.GuestAgent.Audit on /vms/500 (or VM.GuestAgent.Unrestricted on /vms/500)"} {
		t.Run(version, func(t *testing.T) {
			c := startCLIWith(t, func(cfg *pvesim.Config) {
				cfg.Version = version
				for _, p := range pvesim.PVEAdminPrivileges(version) {
					if p != "VM.Monitor" && !strings.HasPrefix(p, "VM.GuestAgent.") {
						cfg.Tokens[0].Privileges = append(cfg.Tokens[0].Privileges, p)
					}
				}
			})
			seedCloudImage(t, c)
			_, errs := c.mustRun(t, exitPreflight, "vm", "create", "--vmid", "500", "--name", "ci1", "--image", "local:import/noble.qcow2",
				"--net", "name=net0,bridge=vmbr0", "--agent", "--start")
			wantIn(t, "agent privilege", errs, "the API token lacks "+missing)
			if _, ok := c.sim.Guest(500); ok {
				t.Error("VM 500 was made")
			}
		})
	}
}

// TestImageCommands: download (a .img named as the qcow2 it is), reuse,
// an upload of a local file, verify (a match, then a mismatch naming both
// sums), an ISO in a drive refused for delete, delete.
func TestImageCommands(t *testing.T) {
	c := startCLIWith(t, withNetworkToken)
	iso := []byte("CD001 an ISO image")
	srv := imageMirror(t, map[string][]byte{"noble-server-cloudimg-amd64.img": cloudImage, "debian-12.iso": iso})
	img := srv.URL + "/noble-server-cloudimg-amd64.img"
	sum := "sha256:" + vmimages.SHA256(cloudImage)
	_, errs := c.mustRun(t, exitUsage, "image", "download", img, "--checksum", sum)
	wantIn(t, ".img", errs, "needs --content import and --filename NAME.qcow2")
	_, errs = c.mustRun(t, exitUsage, "image", "download", img, "--content", "import", "--filename", "noble.qcow2")
	wantIn(t, "no checksum", errs, "pass --checksum ALGO:HEX")

	dl := []string{"image", "download", img, "--content", "import", "--filename", "noble.qcow2", "--checksum", sum, "--storage", "local"}
	out, _ := c.mustRun(t, 0, dl...)
	wantIn(t, "download", out, "local:import/noble.qcow2 stored", "verified by PVE (sha256)")
	out, _ = c.mustRun(t, 0, dl...)
	wantIn(t, "again", out, "reused the copy already on local: PVE confirmed its sha256", "already there, reused")
	out, _ = c.mustRun(t, 0, "image", "download", srv.URL+"/debian-12.iso", "--checksum", "sha256:"+vmimages.SHA256(iso), "--storage", "local")
	wantIn(t, "iso", out, "local:iso/debian-12.iso stored")
	out, _ = c.mustRun(t, 0, "image", "list", "--storage", "local")
	if !regexp.MustCompile(`(?m)^local:import/noble\.qcow2 +import +qcow2 +384 KiB$`).MatchString(out) || !regexp.MustCompile(`(?m)^local:iso/debian-12\.iso +iso `).MatchString(out) {
		t.Errorf("image list:\n%s", out)
	}

	out, _ = c.mustRun(t, 0, "image", "verify", "local:import/noble.qcow2", "--checksum", sum, "--url", img)
	wantIn(t, "verify", out, "local:import/noble.qcow2 matches "+sum+" (384 KiB): PVE confirmed it")
	other := vmimages.SHA256([]byte("other"))
	_, errs = c.mustRun(t, exitFailed, "image", "verify", "local:import/noble.qcow2", "--checksum", "sha256:"+other, "--url", img)
	wantIn(t, "mismatch", errs, "the copy of noble.qcow2 already on storage local has "+sum+", not the expected sha256:"+other, "it was left as it was")
	_, errs = c.mustRun(t, exitPreflight, "image", "verify", "local:import/gone.qcow2", "--checksum", sum, "--url", img)
	wantIn(t, "missing", errs, "gone.qcow2 is not on storage local: nothing to verify")

	local := filepath.Join(t.TempDir(), "debian-12-genericcloud-amd64.qcow2")
	must(t, os.WriteFile(local, cloudImage, 0o644))
	out, _ = c.mustRun(t, 0, "image", "download", local, "--storage", "local")
	wantIn(t, "upload", out, "local:import/debian-12-genericcloud-amd64.qcow2 stored", "verified by PVE on arrival (sha256)")

	must(t, c.sim.AddVM(520, map[string]string{"name": "installer", "ide2": "local:iso/debian-12.iso,media=cdrom"}))
	_, errs = c.mustRun(t, exitRefused, "image", "delete", "local:iso/debian-12.iso")
	wantIn(t, "in use", errs, "local:iso/debian-12.iso is in a drive of VM 520 (ide2): eject it there first, or pass --force")
	out, _ = c.mustRun(t, 0, "image", "delete", "local:import/noble.qcow2")
	wantIn(t, "delete", out, "local:import/noble.qcow2 deleted")
	out, _ = c.mustRun(t, 0, "image", "delete", "local:import/noble.qcow2")
	wantIn(t, "delete again", out, "is not there: nothing to delete")
	if _, ok := c.sim.ContentFile("local:import/noble.qcow2"); ok {
		t.Error("the image is still there")
	}
}

// TestOpenWrtVMOnAConsoleThatRefusesTokens: the router VM's UCI needs the
// serial console; a PVE whose termproxy refuses API tokens fails the uci
// step, says what to do, and rolls back the VM and the image it uploaded.
func TestOpenWrtVMOnAConsoleThatRefusesTokens(t *testing.T) {
	c := startCLIWith(t, func(cfg *pvesim.Config) { cfg.Packages = pvesim.PackagesPreApril2026; withNetworkToken(cfg) })
	mirror, err := openwrtmirror.NewServer("24.10.0")
	must(t, err)
	defer mirror.Close()
	_, errs := c.mustRun(t, exitPreflight, "openwrt", "vm", "--vmid", "600", "--wan", "vmbr0", "--lan", "vmbr1", "--mirror", mirror.URL)
	wantIn(t, "console refusing tokens", errs, "step uci failed", "configuring OpenWrt needs the console", "--console-user",
		"rolled back: VM 600 destroyed", "rolled back: openwrt-24.10.0-x86-64-generic-ext4-combined-efi.raw removed from storage local")
	if _, ok := c.sim.Guest(600); ok {
		t.Error("VM 600 was left")
	}
	if _, ok := c.sim.ContentFile("local:import/openwrt-24.10.0-x86-64-generic-ext4-combined-efi.raw"); ok {
		t.Error("the image this run uploaded was left")
	}
}

// TestVMCreateJSONAndAudit: -o json gives the events (naming the guest a
// VM) and the result line; the audit log has the run.
func TestVMCreateJSONAndAudit(t *testing.T) {
	c := startCLIWith(t, withNetworkToken)
	seedCloudImage(t, c)
	out, _ := c.mustRun(t, 0, "vm", "create", "--vmid", "500", "--name", "ci1", "--image", "local:import/noble.qcow2", "--net", "name=net0,bridge=vmbr0",
		"--ipconfig0", "ip=10.1.10.150/24,gw=10.1.10.1", "--agent", "--start", "--check", "cloud-init status", "-o", "json")
	wantIn(t, "JSON", out, `"kind":"qemu","vmid":500,"hostname":"ci1","step":"agent","phase":"done"`, `"type":"result"`,
		`"name":"check cloud-init status","ok":true,"detail":"status: done"`, `"agent":"running"`)
	audit := readFile(t, c.audit)
	if !regexp.MustCompile(`"command":"vm create","vmid":500,"hostname":"ci1","ip":"10\.1\.10\.150","volume":"local:import/noble\.qcow2".*"outcome":"ok"`).MatchString(audit) {
		t.Errorf("audit log:\n%s", audit)
	}
}
