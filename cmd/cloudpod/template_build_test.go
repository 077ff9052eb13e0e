package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
)

// TestTemplateBuildVerifyAndCreate is issue 16's golden template: on a
// node without CT 9000 (nor its Ubuntu archive), template build yields
// CT 9000 with template: 1 and the spec's resources; template verify
// passes on it, then names the difference after one is introduced (in the
// config, and inside); create 9101 migra-client-01 91 works from it.
func TestTemplateBuildVerifyAndCreate(t *testing.T) {
	c := startCLIWith(t, func(cfg *pvesim.Config) { cfg.NoTemplate = true })
	pw := filepath.Join(t.TempDir(), "pw")
	must(t, os.WriteFile(pw, []byte("golden-pw\n"), 0o600))

	out, _ := c.mustRun(t, 0, "template", "build", "--dry-run")
	wantIn(t, "dry run", out, "POST   /nodes/pve/aplinfo  storage=local template=ubuntu-24.04-standard_24.04-2_amd64.tar.zst",
		"POST   /nodes/pve/lxc", "cores=2", "features=nesting=1", "memory=2048", "rootfs=clients-main:8", "swap=512", "unprivileged=1",
		"apt-get install -y openssh-server nginx php8.3-fpm php8.3-mysql mariadb-server curl ca-certificates (retried)",
		"POST   /nodes/pve/lxc/9000/template  # answers null", "why:", "is not on storage local yet: it is downloaded from PVE's catalogue first")
	if _, ok := c.sim.Guest(9000); ok {
		t.Fatal("the dry run made CT 9000")
	}

	out, _ = c.mustRun(t, 0, "template", "build", "--password-file", pw, "--timezone", "Europe/Berlin")
	wantIn(t, "build", out, "archive    done", "provision  done", "convert    done", "verify     done",
		"ok   package mariadb-server", "ok   service php8.3-fpm", "ok   netplan", "ok   timezone", "CT 9000 cloudpod-template built: a template on clients-main")
	g, ok := c.sim.Guest(9000)
	if !ok || g.Status != "stopped" || g.Lock != "" {
		t.Fatalf("CT 9000: %+v", g)
	}
	for k, want := range map[string]string{"template": "1", "cores": "2", "memory": "2048", "swap": "512", "unprivileged": "1",
		"features": "nesting=1", "rootfs": "clients-main:basevol-9000-disk-0,size=8G", "hostname": "cloudpod-template", "ostype": "ubuntu"} {
		if g.Config[k] != want {
			t.Errorf("CT 9000 %s = %q, want %q", k, g.Config[k], want)
		}
	}
	if g.Config["cmode"] != "" {
		t.Errorf("cmode %q left on the template", g.Config["cmode"])
	}
	if guests := scratchGuests(c); len(guests) != 0 {
		t.Errorf("scratch clones left: %v", guests)
	}

	out, _ = c.mustRun(t, 0, "template", "verify", "9000", "--timezone", "Europe/Berlin")
	wantIn(t, "verify", out, "ok   template", "ok   rootfs storage", "ok   package nginx", "CT 9000 cloudpod-template verified")
	out, _ = c.mustRun(t, 0, "template", "build", "--password-file", pw, "--timezone", "Europe/Berlin")
	wantIn(t, "build again", out, "create     skip", "provision  skip: CT 9000 is a template already", "convert    skip: already a template",
		"already built and as the spec says, nothing to do")

	c.create(t, "9101", "migra-client-01", "91")
	if p, ok := c.sim.Guest(9101); !ok || p.Status != "running" {
		t.Fatalf("CT 9101 from the built template: %+v", p)
	}

	must(t, c.sim.SetConfig(9000, "cores", "4"))
	status := filepath.Join(c.sim.RootDir(9000), "var/lib/dpkg/status")
	b, err := os.ReadFile(status)
	must(t, err)
	stanzas := strings.Split(string(b), "\n\n")
	var kept []string
	for _, st := range stanzas {
		if !strings.HasPrefix(st, "Package: mariadb-server\n") {
			kept = append(kept, st)
		}
	}
	must(t, os.WriteFile(status, []byte(strings.Join(kept, "\n\n")), 0o644))
	out, errs := c.mustRun(t, exitFailed, "template", "verify", "9000")
	wantIn(t, "verify after changes", out, "DIFF cores                      4, want 2", "DIFF package mariadb-server     not installed")
	wantIn(t, "verify's error", errs, "CT 9000 differs from the golden template's spec: cores: 4, want 2; package mariadb-server: not installed")
	if guests := scratchGuests(c); len(guests) != 0 {
		t.Errorf("scratch clones left: %v", guests)
	}
}

// scratchGuests are the verify clones still in the simulator.
func scratchGuests(c *cli) []int {
	var out []int
	for id := 99900; id < 100000; id++ {
		if _, ok := c.sim.Guest(id); ok {
			out = append(out, id)
		}
	}
	return out
}
