package main

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/migrahosting/cloudpods/fixtures/openwrtmirror"
	"github.com/migrahosting/cloudpods/fixtures/pvesim"
)

// TestOpenWrtTemplateAndRouter is issue 16's OpenWrt: a tampered tarball
// is refused by its sha256 (nothing stored); openwrt template from a
// loopback mirror (latest = the newest 24.x), again reused; openwrt create
// --vmid 400 --hostname router1 --wan vmbr0 --lan vmbr1 gives CT 400 with
// ostype unmanaged, unprivileged absent, two NICs, running, its UCI lan
// and wan as asked, and a WAN lease from the simulated LAN.
func TestOpenWrtTemplateAndRouter(t *testing.T) {
	c := startCLIWith(t, withNetworkToken)
	const ver = "24.10.0"
	name := openwrtmirror.RootfsName(ver)
	rootfsPath := openwrtmirror.TargetDir(ver) + "/" + name

	files, err := openwrtmirror.Tree("24.10.0", "23.05.5")
	must(t, err)
	good := files[rootfsPath]
	tampered := map[string][]byte{}
	for p, b := range files {
		tampered[p] = b
	}
	tampered[rootfsPath] = append(append([]byte(nil), good[:len(good)-8]...), []byte("tampered")...)
	bad := httptest.NewServer(openwrtmirror.Handler(tampered))
	defer bad.Close()
	sum := sha256.Sum256(good)
	badSum := sha256.Sum256(tampered[rootfsPath])
	_, errs := c.mustRun(t, exitFailed, "openwrt", "template", "--version", "latest", "--mirror", bad.URL, "--storage", "local")
	wantIn(t, "tampered tarball", errs, "checksum mismatch for "+name+": expected sha256:"+hex.EncodeToString(sum[:])+" (the release's sha256sums), got sha256:"+hex.EncodeToString(badSum[:]),
		"nothing was stored")
	if _, ok := c.sim.ContentFile("local:vztmpl/" + name); ok {
		t.Fatal("the tampered tarball was stored")
	}

	mirror := httptest.NewServer(openwrtmirror.Handler(files))
	defer mirror.Close()
	out, _ := c.mustRun(t, 0, "openwrt", "template", "--version", "latest", "--mirror", mirror.URL, "--storage", "local")
	wantIn(t, "openwrt template", out, "latest 24.x release on the mirror: 24.10.0", "fetch      done: "+name+", ", "sha256 matches",
		"OpenWrt 24.10.0: local:vztmpl/"+name+" stored", "verified by PVE on arrival (sha256)")
	stored, ok := c.sim.ContentFile("local:vztmpl/" + name)
	if b, err := os.ReadFile(stored); !ok || err != nil || string(b) != string(good) {
		t.Fatalf("stored template differs from the release's tarball (%v %v)", ok, err)
	}
	out, _ = c.mustRun(t, 0, "openwrt", "template", "--version", "24.10.0", "--mirror", mirror.URL, "--storage", "local")
	wantIn(t, "again", out, "fetch      skip: the copy on local is verified by PVE through download-url", "already there, reused")

	out, _ = c.mustRun(t, 0, "openwrt", "create", "--vmid", "400", "--hostname", "router1", "--wan", "vmbr0", "--lan", "vmbr1", "--dry-run")
	wantIn(t, "dry run", out, "ostemplate=local:vztmpl/"+name, "ostype=unmanaged", "unprivileged=0", "net0=name=eth0,bridge=vmbr1,ip=manual,type=veth",
		"net1=name=eth1,bridge=vmbr0,ip=dhcp,type=veth", "cmode=shell", "uci set", "network.lan.ipaddr=192.168.1.1",
		"why:", "the newest OpenWrt rootfs on the node's template storages", "ostype unmanaged and privileged")

	out, _ = c.mustRun(t, 0, "openwrt", "create", "--vmid", "400", "--hostname", "router1", "--wan", "vmbr0", "--lan", "vmbr1")
	wantIn(t, "openwrt create", out, "uci        done", "router CT 400 router1 created: running", "LAN 192.168.1.1/24 on vmbr1, WAN 10.1.10.2")
	g, ok := c.sim.Guest(400)
	if !ok || g.Status != "running" || g.Config["ostype"] != "unmanaged" || (g.Config["unprivileged"] != "" && g.Config["unprivileged"] != "0") {
		t.Fatalf("CT 400: %s %v", g.Status, g.Config)
	}
	if !strings.Contains(g.Config["net0"], "bridge=vmbr1") || !strings.Contains(g.Config["net1"], "bridge=vmbr0") || g.Config["net2"] != "" {
		t.Errorf("NICs: net0 %q net1 %q net2 %q", g.Config["net0"], g.Config["net1"], g.Config["net2"])
	}
	network := readFile(t, filepath.Join(c.sim.RootDir(400), "etc/config/network"))
	wantIn(t, "UCI network", network, "config interface 'lan'\n\toption device 'br-lan'\n\toption proto 'static'\n\toption ipaddr '192.168.1.1'\n\toption netmask '255.255.255.0'",
		"config interface 'wan'\n\toption device 'eth1'\n\toption proto 'dhcp'")
	wantIn(t, "UCI system", readFile(t, filepath.Join(c.sim.RootDir(400), "etc/config/system")), "option hostname 'router1'")
	wantIn(t, "UCI dropbear", readFile(t, filepath.Join(c.sim.RootDir(400), "etc/config/dropbear")), "option Interface 'lan'")

	out, _ = c.mustRun(t, 0, "openwrt", "create", "--vmid", "400", "--hostname", "router1", "--wan", "vmbr0", "--lan", "vmbr1")
	wantIn(t, "again", out, "create     skip", "uci        skip: UCI already as wanted", "already as asked, nothing to do")

	// Another LAN address is set through UCI and shows on br-lan.
	out, _ = c.mustRun(t, 0, "openwrt", "create", "--vmid", "401", "--hostname", "router2", "--wan", "vmbr0", "--lan", "vmbr1", "--lan-ip", "10.20.0.1/16")
	wantIn(t, "second router", out, "LAN 10.20.0.1/16 on vmbr1")
	wantIn(t, "UCI network 401", readFile(t, filepath.Join(c.sim.RootDir(401), "etc/config/network")), "option ipaddr '10.20.0.1'", "option netmask '255.255.0.0'")

	_, errs = c.mustRun(t, exitUsage, "openwrt", "create", "--vmid", "402", "--hostname", "router3", "--wan", "vmbr0", "--lan", "vmbr0")
	wantIn(t, "same bridge", errs, "--wan and --lan are both vmbr0")
}

// TestOpenWrtRouterNeedsSysModifyOnPVE9: a privileged CT on PVE 9 needs
// Sys.Modify on /; PVEAdmin alone is refused in preflight, naming it.
func TestOpenWrtRouterNeedsSysModifyOnPVE9(t *testing.T) {
	c := startCLIWith(t, nil)
	data, err := openwrtmirror.Rootfs("24.10.0")
	must(t, err)
	must(t, c.sim.AddVolumeFile("local:vztmpl/"+openwrtmirror.RootfsName("24.10.0"), data))
	_, errs := c.mustRun(t, exitPreflight, "openwrt", "create", "--vmid", "400", "--hostname", "router1", "--wan", "vmbr0", "--lan", "vmbr1")
	wantIn(t, "without Sys.Modify", errs, "the API token lacks Sys.Modify on /")
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestOpenWrtRouterOnAConsoleThatRefusesTokens: the router's UCI needs
// the console; a PVE whose termproxy refuses API tokens (before the April
// 2026 updates) fails the uci step, says what to do, and rolls back.
func TestOpenWrtRouterOnAConsoleThatRefusesTokens(t *testing.T) {
	c := startCLIWith(t, func(cfg *pvesim.Config) { cfg.Packages = pvesim.PackagesPreApril2026; withNetworkToken(cfg) })
	data, err := openwrtmirror.Rootfs("24.10.0")
	must(t, err)
	must(t, c.sim.AddVolumeFile("local:vztmpl/"+openwrtmirror.RootfsName("24.10.0"), data))
	_, errs := c.mustRun(t, exitPreflight, "openwrt", "create", "--vmid", "400", "--hostname", "router1", "--wan", "vmbr0", "--lan", "vmbr1")
	wantIn(t, "console refusing tokens", errs, "step uci failed", "configuring OpenWrt needs the console", "--console-user", "rolled back: CT 400 destroyed")
	if _, ok := c.sim.Guest(400); ok {
		t.Error("CT 400 was left")
	}
}
