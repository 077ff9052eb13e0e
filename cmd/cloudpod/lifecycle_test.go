package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
	"github.com/migrahosting/cloudpods/provisioner"
)

const (
	testTokenID     = "cloudpods@pve!provisioner"
	testTokenSecret = "5f0c2a8e-7d1b-4c3e-9a64-0b9e3f2d1c7a"
)

// cli is a simulator and the flags that point the CLI at it, with its own
// IPAM registry, audit log and (empty) settings file.
type cli struct {
	sim      *pvesim.Sim
	flags    []string
	audit    string
	ipamFile string
}

// skipIfShort skips an end-to-end test under -short, which runs the fast
// tier alone.
func skipIfShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test against pvesim: skipped by -short (the fast tier)")
	}
}

func startCLI(t *testing.T) *cli {
	t.Helper()
	return startCLIWith(t, nil)
}

// startCLIWith is startCLI with the simulator's config adjusted by mutate.
func startCLIWith(t *testing.T, mutate func(*pvesim.Config)) *cli {
	t.Helper()
	skipIfShort(t)
	dir := t.TempDir()
	cfg := pvesim.Config{Listen: "127.0.0.1:0", Scale: 0.01, AuthFailDelay: -1,
		Tokens: []pvesim.Token{{ID: testTokenID, Secret: testTokenSecret}}, DataDir: filepath.Join(dir, "sim")}
	if mutate != nil {
		mutate(&cfg)
	}
	sim, err := pvesim.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	tokenFile, settings := filepath.Join(dir, "token"), filepath.Join(dir, "cloudpods.env")
	for path, content := range map[string]string{tokenFile: testTokenSecret + "\n", settings: "# tests pass everything as flags\n"} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := &cli{sim: sim, audit: filepath.Join(dir, "audit.log"), ipamFile: filepath.Join(dir, "ipam.json")}
	c.flags = []string{"--config", settings, "--pve-url", sim.URL(), "--token-id", testTokenID, "--token-file", tokenFile,
		"--fingerprint", sim.Fingerprint(), "--audit-log", c.audit, "--ipam-file", c.ipamFile, "--requester", "ops"}
	return c
}

// run executes the CLI with args plus the connection flags.
func (c *cli) run(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = execute(context.Background(), nil, append(args, c.flags...), strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func (c *cli) create(t *testing.T, args ...string) {
	t.Helper()
	if code, out, errs := c.run(t, "", append([]string{"create"}, args...)...); code != exitOK {
		t.Fatalf("create %v: exit %d\n%s%s", args, code, out, errs)
	}
}

func TestLifecycleCommandsAgainstTheSimulator(t *testing.T) {
	c := startCLI(t)
	c.create(t, "9101", "migra-client-01", "91", "--tenant", "acme")
	c.create(t, "9102", "migra-client-02", "92", "--tenant", "globex")
	if err := c.sim.AddContainer(9150, map[string]string{"hostname": "legacy", "ostype": "ubuntu", "memory": "512",
		"rootfs": "clients-main:subvol-9150-disk-0,size=8G"}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name   string
		before func(t *testing.T)
		args   []string
		code   int
		// stdout and stderr hold substrings the output must contain; an
		// error message is always one line.
		stdout, stderr []string
		lines          int // stdout lines when > 0
		jsonLines      bool
	}{
		{name: "list", args: []string{"list"}, lines: 3,
			stdout: []string{"VMID  HOSTNAME         IP          TENANT  NODE  STATUS   CREATED", "9101  migra-client-01  10.1.10.91  acme    pve   running", "9102  migra-client-02  10.1.10.92  globex  pve   running"}},
		{name: "list by tenant", args: []string{"list", "--tenant", "globex"}, lines: 2, stdout: []string{"9102  migra-client-02"}},
		{name: "list as JSON", args: []string{"list", "-o", "json"}, lines: 2, jsonLines: true, stdout: []string{`"vmid":9101`, `"tenant":"acme"`}},
		{name: "list with a bad status", args: []string{"list", "--status", "paused"}, code: exitUsage, stderr: []string{`--status "paused": use running, stopped or unknown`}},
		{name: "health of a fresh pod", args: []string{"health", "9101"}, lines: 1, stdout: []string{"CT 9101 migra-client-01 (10.1.10.91) healthy: up ", "mem 96.0 MiB/2.0 GiB, disk 1.2 GiB/8.0 GiB"}},
		{name: "health, deep", args: []string{"health", "9101", "--deep"}, lines: 1, stdout: []string{"healthy", "checks inside"}},
		{name: "health as JSON", args: []string{"health", "9101", "-o", "json"}, lines: 1, jsonLines: true, stdout: []string{`"state":"healthy"`, `"tenant":"acme"`}},
		{name: "health of a drifted pod", before: func(t *testing.T) { must(t, c.sim.SetConfig(9101, "cores", "3")) }, args: []string{"health", "9101"}, code: 1,
			stdout: []string{"CT 9101 migra-client-01 (10.1.10.91) degraded", "config drift: cores 3, want 2"}},
		{name: "health of a missing pod", before: func(t *testing.T) { must(t, c.sim.SetConfig(9101, "cores", "2")) }, args: []string{"health", "9199"}, code: 2,
			stdout: []string{"CT 9199 down — CT 9199 does not exist on node pve"}},
		{name: "health, deep, where the console gives no shell", before: func(t *testing.T) { must(t, c.sim.SetConfig(9101, "cmode", "tty")) },
			args: []string{"health", "9101", "--deep"}, code: exitUnknown, lines: 1,
			stdout: []string{"CT 9101 migra-client-01 (10.1.10.91) unknown: up ", " — deep checks skipped: the console of CT 9101 gave no shell within 3s (configured cmode tty)"}},
		{name: "health of all, deep, the console a shell again", before: func(t *testing.T) { must(t, c.sim.SetConfig(9101, "cmode", "shell")) },
			args: []string{"health", "--all", "--deep"}, code: exitHealthy, lines: 2},
		{name: "show of a missing pod", args: []string{"show", "9199"}, code: exitFailed, stderr: []string{"cloudpod: CT 9199 does not exist on node pve.\n"}},
		{name: "health needs a VMID or --all", args: []string{"health"}, code: exitUsage, stderr: []string{"give one VMID or --all"}},
		{name: "health of all", args: []string{"health", "--all"}, lines: 2, stdout: []string{"CT 9101 ", "CT 9102 "}},
		{name: "backup", args: []string{"backup", "9101"}, lines: 2, stdout: []string{"backup of CT 9101: vzdump-backups:backup/vzdump-lxc-9101-", "mode snapshot) on vzdump-backups"}},
		{name: "backup to t7", args: []string{"backup", "9101", "--storage", "t7-backup"}, stdout: []string{"on t7-backup"}},
		{name: "backup list", args: []string{"backup", "--list", "9101"}, lines: 3, stdout: []string{"STORAGE", "t7-backup:backup/vzdump-lxc-9101-", "migra-client-01 vmid=9101 tenant=acme"}},
		{name: "backup list of one storage as JSON", args: []string{"backup", "--list", "--storage", "t7-backup", "-o", "json"}, lines: 1, jsonLines: true, stdout: []string{`"storage":"t7-backup"`}},
		{name: "backup without a VMID", args: []string{"backup"}, code: exitUsage, stderr: []string{"give the VMID to back up, or --list"}},
		{name: "backup to a storage without backups", args: []string{"backup", "9101", "--storage", "clients-main"}, code: exitPreflight, stderr: []string{"storage clients-main does not take backups"}},
		{name: "destroy without --force", args: []string{"destroy", "9101"}, code: exitRefused, stderr: []string{"destroying CT 9101 (migra-client-01, 10.1.10.91) needs --force"}},
		{name: "destroy without --yes off a terminal", args: []string{"destroy", "9101", "--force"}, code: exitRefused, stderr: []string{"not on a terminal", "CT 9101 (migra-client-01, 10.1.10.91)", "pass --yes"}},
		{name: "destroy a guest cloudpods did not create", args: []string{"destroy", "9150", "--force", "--yes"}, code: exitRefused, stderr: []string{"CT 9150 (legacy) was not created by cloudpods"}},
		{name: "destroy the template", args: []string{"destroy", "9000", "--force", "--yes", "--ignore-ownership"}, code: exitRefused, stderr: []string{"CT 9000 is the golden template"}},
		{name: "destroy a missing pod", args: []string{"destroy", "9199", "--force", "--yes"}, code: exitPreflight, stderr: []string{"CT 9199 does not exist on node pve", "--if-exists"}},
		{name: "destroy a missing pod, if it exists", args: []string{"destroy", "9199", "--force", "--yes", "--if-exists"}, stdout: []string{"CT 9199 does not exist on node pve: nothing to destroy"}},
		{name: "destroy with a bad VMID", args: []string{"destroy", "abc"}, code: exitUsage, stderr: []string{`VMID "abc" is not a number`}},
		{name: "destroy, backup first to a missing storage", args: []string{"destroy", "9102", "--force", "--yes", "--backup-first", "--backup-storage", "nowhere"},
			code: exitPreflight, stderr: []string{"step backup failed: backup storage nowhere does not exist on node pve", "nothing was destroyed"}},
		{name: "list after a refused destroy", args: []string{"list"}, lines: 3},
		{name: "destroy", args: []string{"destroy", "9101", "--force", "--yes"},
			stdout: []string{"CT 9101 migra-client-01 (10.1.10.91) destroyed; 10.1.10.91 released in IPAM"}},
		{name: "destroy again, if it exists", args: []string{"destroy", "9101", "--force", "--yes", "--if-exists"}, stdout: []string{"nothing to destroy"}},
		{name: "destroy as JSON", args: []string{"destroy", "9102", "--force", "--yes", "--backup-first", "-o", "json"}, jsonLines: true,
			stdout: []string{`"type":"result"`, `"destroyed":true`, `"released_ip":"10.1.10.92"`, `"backup":"vzdump-backups:backup/vzdump-lxc-9102-`}},
		{name: "list after", args: []string{"list"}, lines: 1},
		{name: "ip list shows both addresses free", args: []string{"ip", "list"}, stdout: []string{"10.1.10.91", "10.1.10.92", "released"}},
		{name: "health of all, none left", args: []string{"health", "--all"}, stdout: []string{"no CloudPods in the cluster"}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.before != nil {
				s.before(t)
			}
			code, stdout, stderr := c.run(t, "", s.args...)
			if code != s.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, s.code, stdout, stderr)
			}
			for _, want := range s.stdout {
				if !strings.Contains(stdout, want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout)
				}
			}
			for _, want := range s.stderr {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			if s.code != exitOK && s.stderr != nil && strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("error is not one line: %q", stderr)
			}
			lines := strings.Split(strings.TrimSpace(stdout), "\n")
			if s.jsonLines {
				var results []string
				for _, l := range lines {
					var v map[string]interface{}
					if err := json.Unmarshal([]byte(l), &v); err != nil {
						t.Errorf("stdout line %q is not JSON: %v", l, err)
					}
					if v["type"] != "event" {
						results = append(results, l)
					}
				}
				lines = results
			}
			if s.lines > 0 && len(lines) != s.lines {
				t.Errorf("%d lines, want %d:\n%s", len(lines), s.lines, stdout)
			}
		})
	}

	f, err := os.Open(c.audit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	outcomes := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e provisioner.AuditEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if e.Requester != "ops" || e.TokenID != testTokenID {
			t.Errorf("audit line without requester or token id: %+v", e)
		}
		outcomes[e.Command] = append(outcomes[e.Command], e.Outcome)
	}
	// destroy: 7 refused or failed, 3 done (two real, one already gone);
	// backup: 3 ok (two asked, one before the JSON destroy), 1 refused storage.
	if got := strings.Join(outcomes["destroy"], " "); got != "failed failed failed failed failed ok failed ok ok ok" {
		t.Errorf("destroy outcomes = %s", got)
	}
	if got := strings.Join(outcomes["backup"], " "); got != "ok ok failed failed ok" {
		t.Errorf("backup outcomes = %s", got)
	}
}

func TestDestroyAsksForTheHostnameOnATerminal(t *testing.T) {
	c := startCLI(t)
	c.create(t, "9101", "migra-client-01", "91", "--tenant", "acme")
	tests := []struct {
		answer string
		code   int
		gone   bool
	}{
		{answer: "migra-client-02", code: exitRefused},
		{answer: "", code: exitRefused},
		{answer: "migra-client-01", code: exitOK, gone: true},
	}
	for _, tt := range tests {
		t.Run("answer "+tt.answer, func(t *testing.T) {
			ptmx, tty, err := pty.Open()
			if err != nil {
				t.Skipf("no pty: %v", err)
			}
			defer ptmx.Close()
			defer tty.Close()
			prompt := make(chan string, 1)
			go func() {
				var seen bytes.Buffer
				buf := make([]byte, 1024)
				for !strings.Contains(seen.String(), "to confirm: ") {
					n, err := ptmx.Read(buf)
					if err != nil {
						break
					}
					seen.Write(buf[:n])
				}
				prompt <- seen.String()
				_, _ = ptmx.Write([]byte(tt.answer + "\n"))
			}()
			var stdout bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			code := execute(ctx, nil, append([]string{"destroy", "9101", "--force"}, c.flags...), tty, &stdout, tty)
			if code != tt.code {
				t.Fatalf("exit %d, want %d (stdout %s)", code, tt.code, stdout.String())
			}
			shown := <-prompt
			for _, want := range []string{"Destroy CT 9101 migra-client-01 (10.1.10.91, tenant acme, running) on node pve?", `Type "migra-client-01" to confirm: `} {
				if !strings.Contains(shown, want) {
					t.Errorf("prompt %q lacks %q", shown, want)
				}
			}
			if _, exists := c.sim.Guest(9101); exists == tt.gone {
				t.Errorf("CT 9101 exists = %v after answering %q", exists, tt.answer)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestHealthExitCodeOfAll: --all exits with the worst pod's code, down
// before degraded before unknown before healthy.
func TestHealthExitCodeOfAll(t *testing.T) {
	worst := func(states ...string) int {
		w := exitHealthy
		for _, st := range states {
			if code := healthCode(st); healthSeverity(code) > healthSeverity(w) {
				w = code
			}
		}
		return w
	}
	for _, tt := range []struct {
		states []string
		want   int
	}{
		{[]string{provisioner.Healthy, provisioner.Healthy}, exitHealthy},
		{[]string{provisioner.Healthy, provisioner.Unknown}, exitUnknown},
		{[]string{provisioner.Unknown, provisioner.Degraded, provisioner.Healthy}, exitDegraded},
		{[]string{provisioner.Down, provisioner.Unknown}, exitDown},
		{[]string{provisioner.Degraded, provisioner.Down}, exitDown},
	} {
		if got := worst(tt.states...); got != tt.want {
			t.Errorf("%v: exit %d, want %d", tt.states, got, tt.want)
		}
	}
}
