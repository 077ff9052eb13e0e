package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// sudoSetup is cloudpod-create installed as README says, for a user made
// for the test, against the simulator.
type sudoSetup struct {
	c       *cli
	dir     string
	bin     string
	wrapper string // docs/cloudpod-create.sh
	user    string
	uid     int
	gid     int
	audit   string
	dials   *atomic.Int64 // connections to the "attacker's" listener
	evilURL string
}

// setupSudo makes an unprivileged user, a root-owned settings file and
// token, cloudpod-create built with that file compiled in, and the
// README's sudoers rule for the user (with SETENV too, so sudo passes
// variables and cloudpod-create's own refusal is what is tested). All of
// it goes away with the test.
func setupSudo(t *testing.T) *sudoSetup {
	t.Helper()
	skipIfShort(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test creates an unprivileged user and a sudoers rule for it")
	}
	sudo, err := exec.LookPath("sudo")
	if err != nil {
		t.Skip("sudo is not installed (.ci/run installs it): apt-get install sudo")
	}
	for _, tool := range []string{"useradd", "userdel", "visudo"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	_ = sudo
	c := startCLI(t)
	s := &sudoSetup{c: c, dials: &atomic.Int64{}}

	// Reachable by the user: t.TempDir's parents are 0700.
	s.dir, err = os.MkdirTemp("", "cloudpod-sudo-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(s.dir) })
	must(t, os.Chmod(s.dir, 0o755))

	b := make([]byte, 4)
	_, _ = rand.Read(b)
	s.user = "cpt" + hex.EncodeToString(b)
	if out, err := exec.Command("useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", s.user).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("userdel", s.user).Run() })
	u, err := user.Lookup(s.user)
	if err != nil {
		t.Fatal(err)
	}
	s.uid, _ = strconv.Atoi(u.Uid)
	s.gid, _ = strconv.Atoi(u.Gid)

	token, settings := filepath.Join(s.dir, "token"), filepath.Join(s.dir, "cloudpods.env")
	s.audit = filepath.Join(s.dir, "audit.log")
	must(t, os.WriteFile(token, []byte(testTokenSecret+"\n"), 0o600))
	must(t, os.WriteFile(settings, []byte(strings.Join([]string{
		"PVE_URL=" + c.sim.URL(), "PVE_TOKEN_ID=" + testTokenID, "PVE_TOKEN_FILE=" + token, "PVE_FINGERPRINT=" + c.sim.Fingerprint(),
		"CLOUDPODS_AUDIT_LOG=" + s.audit, "CLOUDPODS_IPAM_FILE=" + filepath.Join(s.dir, "ipam.json"),
	}, "\n")+"\n"), 0o600))

	built := cloudpodBinary(t, "-X main.configPath="+settings)
	s.bin = filepath.Join(s.dir, restrictedName)
	data, err := os.ReadFile(built)
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(s.bin, data, 0o755))

	// docs/cloudpod-create.sh, exec'ing this cloudpod-create.
	script, err := os.ReadFile(filepath.Join("..", "..", "docs", "cloudpod-create.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(script), "\nexec /usr/local/sbin/cloudpod-create \"$@\"\n") {
		t.Fatalf("docs/cloudpod-create.sh does not exec /usr/local/sbin/cloudpod-create:\n%s", script)
	}
	s.wrapper = filepath.Join(s.dir, "cloudpod-create.sh")
	must(t, os.WriteFile(s.wrapper, []byte(strings.ReplaceAll(string(script), "/usr/local/sbin/cloudpod-create \"$@\"", s.bin+` "$@"`)), 0o755))

	// README's sudoers line, for this user and these paths.
	rule := []byte(fmt.Sprintf("%s ALL=(root) NOPASSWD:SETENV: %s, %s\n", s.user, s.bin, s.wrapper))
	check := filepath.Join(s.dir, "sudoers")
	must(t, os.WriteFile(check, rule, 0o440))
	if out, err := exec.Command("visudo", "-cf", check).CombinedOutput(); err != nil {
		t.Fatalf("visudo refuses the rule: %v\n%s", err, out)
	}
	installed := filepath.Join("/etc/sudoers.d", "cloudpods-test-"+s.user)
	must(t, os.WriteFile(installed, rule, 0o440))
	t.Cleanup(func() { _ = os.Remove(installed) })

	// The attacker's server: a --pve-url that must never be dialled.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.dials.Add(1)
			conn.Close()
		}
	}()
	s.evilURL = "https://" + ln.Addr().String()
	return s
}

// sudo runs `sudo -n [VAR=value…] cloudpod-create args…` as the user.
func (s *sudoSetup) sudo(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return s.sudoRun(t, s.bin, env, args...)
}

// sudoRun runs `sudo -n [VAR=value…] program args…` as the user.
func (s *sudoSetup) sudoRun(t *testing.T, program string, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command("sudo", append(append(append([]string{"-n"}, env...), program), args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/", "LANG=C"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(s.uid), Gid: uint32(s.gid), Groups: []uint32{}}}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &out, &errb, strings.NewReader("")
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("sudo: %v", err)
	}
	return code, out.String(), errb.String()
}

func (s *sudoSetup) requests() int {
	n := 0
	for _, c := range s.c.sim.Requests() {
		n += c
	}
	return n
}

// TestSudoEntryPointRefusesEscapes: through sudo as an unprivileged user,
// every setting that is not the pod's own — as a flag or as a variable
// sudo passes — is refused with exit 2 in one sentence, before PVE (or
// the attacker's server) is contacted and before anything is audited;
// a plain create works and its audit line names the user.
func TestSudoEntryPointRefusesEscapes(t *testing.T) {
	s := setupSudo(t)
	pod := []string{"9101", "migra-client-01", "91"}
	escapes := []struct {
		name string
		env  []string
		args []string
		says string
	}{
		{"--pve-url", nil, []string{"--pve-url", s.evilURL}, "--pve-url is not accepted"},
		{"--pve-url=", nil, []string{"--pve-url=" + s.evilURL}, "--pve-url is not accepted"},
		{"--fingerprint", nil, []string{"--fingerprint", strings.Repeat("AB:", 31) + "AB"}, "--fingerprint is not accepted"},
		{"--insecure", nil, []string{"--insecure"}, "--insecure is not accepted"},
		{"--audit-log off", nil, []string{"--audit-log", ""}, "--audit-log is not accepted"},
		{"--audit-log elsewhere", nil, []string{"--audit-log=/etc/cloudpods-owned"}, "--audit-log is not accepted"},
		{"--requester", nil, []string{"--requester", "mallory"}, "--requester is not accepted"},
		{"--ipam none", nil, []string{"--ipam", "none"}, "--ipam is not accepted"},
		{"--ipam-file", nil, []string{"--ipam-file", "/tmp/mine.json"}, "--ipam-file is not accepted"},
		{"--token-file", nil, []string{"--token-file", "/etc/shadow"}, "--token-file is not accepted"},
		{"--config", nil, []string{"--config", "/tmp/mine.env"}, "--config is not accepted"},
		{"--batch", nil, []string{"--batch", "/etc/shadow"}, "--batch is not accepted"},
		{"a shorthand", nil, []string{"-x"}, "-x is not accepted"},
		{"PVE_URL", []string{"PVE_URL=" + s.evilURL}, nil, "PVE_URL is set in the environment"},
		{"PVE_FINGERPRINT", []string{"PVE_FINGERPRINT=AB"}, nil, "PVE_FINGERPRINT is set in the environment"},
		{"CLOUDPODS_AUDIT_LOG", []string{"CLOUDPODS_AUDIT_LOG="}, nil, "CLOUDPODS_AUDIT_LOG is set in the environment"},
		{"CLOUDPODS_IPAM_FILE", []string{"CLOUDPODS_IPAM_FILE=/tmp/mine.json"}, nil, "CLOUDPODS_IPAM_FILE is set in the environment"},
		{"PVE_TOKEN_FILE", []string{"PVE_TOKEN_FILE=/etc/shadow"}, nil, "PVE_TOKEN_FILE is set in the environment"},
		{"CLOUDPODS_CONFIG", []string{"CLOUDPODS_CONFIG=/tmp/mine.env"}, nil, "CLOUDPODS_CONFIG is set in the environment"},
		{"https_proxy", []string{"https_proxy=http://127.0.0.1:1"}, nil, "https_proxy is set in the environment"},
		{"SUDO_USER forged", []string{"SUDO_USER=mallory"}, nil, `SUDO_USER says "mallory", but sudo was run by ` + s.user},
	}
	before := s.requests()
	for _, tt := range escapes {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := s.sudo(t, tt.env, append(append([]string{}, pod...), tt.args...)...)
			if code != exitUsage || !strings.HasPrefix(errs, restrictedName+": "+tt.says) || strings.Count(errs, "\n") != 1 || out != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 2 and one line starting %q", code, out, errs, tt.says)
			}
			t.Logf("exit %d: %s", code, strings.TrimSpace(errs))
		})
	}
	if n := s.requests() - before; n != 0 {
		t.Errorf("the refused runs sent %d requests to PVE", n)
	}
	if n := s.dials.Load(); n != 0 {
		t.Errorf("the refused runs dialled the attacker's server %d times", n)
	}
	if _, err := os.Stat(s.audit); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused run wrote the audit log (%v)", err)
	}
	if _, err := os.Stat("/etc/cloudpods-owned"); err == nil {
		t.Error("a refused run created /etc/cloudpods-owned")
	}

	code, out, errs := s.sudo(t, nil, append(pod, "--tenant", "acme", "--cores", "1")...)
	if code != exitOK {
		t.Fatalf("a plain create through sudo: exit %d\n%s%s", code, out, errs)
	}
	if g, ok := s.c.sim.Guest(9101); !ok || g.Status != "running" || g.Config["cores"] != "1" {
		t.Errorf("CT 9101 after the create: %+v", g)
	}
	f, err := os.Open(s.audit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	var entry struct {
		Command, Requester, Outcome string
		VMID                        int
	}
	if err := json.Unmarshal(bytes.TrimSpace(b), &entry); err != nil {
		t.Fatalf("audit log %q: %v", b, err)
	}
	t.Logf("audit: %s", bytes.TrimSpace(b))
	if entry.Command != "create" || entry.Requester != s.user || entry.Outcome != "ok" || entry.VMID != 9101 {
		t.Errorf("audit line %s; want the create of 9101 by %s", b, s.user)
	}
}

// TestSudoWrapperScript: docs/cloudpod-create.sh through sudo is
// cloudpod-create: escapes refused, a create audited under the user.
func TestSudoWrapperScript(t *testing.T) {
	s := setupSudo(t)
	code, _, errs := s.sudoRun(t, s.wrapper, nil, "9102", "migra-client-02", "92", "--audit-log", "")
	if code != exitUsage || !strings.HasPrefix(errs, restrictedName+": --audit-log is not accepted") {
		t.Fatalf("through the wrapper, --audit-log '': exit %d, %q", code, errs)
	}
	code, out, errs := s.sudoRun(t, s.wrapper, nil, "9102", "migra-client-02", "92")
	if code != exitOK {
		t.Fatalf("through the wrapper: exit %d\n%s%s", code, out, errs)
	}
	b, err := os.ReadFile(s.audit)
	if err != nil || !strings.Contains(string(b), `"requester":"`+s.user+`"`) || !strings.Contains(string(b), `"vmid":9102`) {
		t.Errorf("audit log %q (%v)", b, err)
	}
}
