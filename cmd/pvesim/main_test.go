package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
)

func TestConfigFromFlags(t *testing.T) {
	o, err := parseFlags([]string{"--listen", "127.0.0.1:0", "--pve-version", "8.4", "--task-scale", "0.5",
		"--task-duration", "vzclone=10s", "--fault", "POST /nodes/pve/lxc/9000/clone #1 lock", "--user", "root@pam=pw"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, logins, err := o.config(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Version != "8.4" || cfg.Scale != 0.5 || cfg.TaskDurations["vzclone"] != 10*time.Second ||
		len(cfg.Faults) != 1 || cfg.Faults[0].Kind != pvesim.FaultLock || len(cfg.Users) != 1 || len(logins) != 0 {
		t.Errorf("config %+v logins %v", cfg, logins)
	}
	for _, bad := range [][]string{{"--task-duration", "vzclone"}, {"--fault", "nonsense"}, {"--user", "root@pam"}} {
		o, err := parseFlags(bad, &bytes.Buffer{})
		if err == nil {
			_, _, err = o.config(nil)
		}
		if err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}

func TestRunWritesEnvFile(t *testing.T) {
	dir := t.TempDir()
	env := filepath.Join(dir, "pve.env")
	o, err := parseFlags([]string{"--listen", "127.0.0.1:0", "--env-file", env, "--token-secret", "s", "--data-dir", filepath.Join(dir, "data")}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stdout bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, o, &stdout, &bytes.Buffer{}) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(env); err == nil {
			if !strings.Contains(string(b), "PVE_TOKEN_ID=cloudpods@pve!provisioner\nPVE_TOKEN_SECRET=s\n") || !strings.Contains(string(b), "PVE_URL=https://127.0.0.1:") {
				t.Errorf("env file %q", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no env file")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "PVEAPIToken=cloudpods@pve!provisioner=s") {
		t.Errorf("stdout %q", stdout.String())
	}
}

func TestPackageFlags(t *testing.T) {
	o, err := parseFlags([]string{"--pve-version", "9.1", "--packages", "pre-2026-04", "--package", "pve-container=6.1.3"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := o.config(nil)
	if err != nil || cfg.Packages != pvesim.PackagesPreApril2026 || cfg.PackageVersions["pve-container"] != "6.1.3" {
		t.Errorf("config %+v, %v", cfg, err)
	}
	o, _ = parseFlags([]string{"--package", "pve-container"}, &bytes.Buffer{})
	if _, _, err := o.config(nil); err == nil {
		t.Error("--package without a version was accepted")
	}
	o, _ = parseFlags([]string{"--listen", "127.0.0.1:0", "--packages", "ancient"}, &bytes.Buffer{})
	if err := run(context.Background(), o, &bytes.Buffer{}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), `package level "ancient"`) {
		t.Errorf("unknown level: %v", err)
	}
}

// TestNoTemplateFlag: --no-template starts a node without CT 9000 and
// without the Ubuntu archive it was made from.
func TestNoTemplateFlag(t *testing.T) {
	o, err := parseFlags([]string{"--listen", "127.0.0.1:0", "--no-template", "--token-secret", "s"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := o.config(nil)
	if err != nil || !cfg.NoTemplate {
		t.Fatalf("config %+v %v", cfg, err)
	}
	cfg.DataDir = t.TempDir()
	sim, err := pvesim.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	if _, ok := sim.Guest(9000); ok {
		t.Error("CT 9000 exists")
	}
	if _, ok := sim.ContentFile("local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst"); ok {
		t.Error("the Ubuntu archive is on local")
	}
}
