package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/migrahosting/cloudpods/fixtures/openwrtmirror"
)

// `cloudpod new` driven through a real 80×24 PTY with scripted keystrokes
// against pvesim: the CLI runs as a child process (this test binary with
// CLOUDPODS_CLI_CHILD=1), the test waits for each question's text on the
// screen (escape sequences stripped) before it types, and every wait is
// bounded.

const (
	keyEnter = "\r"
	keyDown  = "\x1b[B"
	keyEsc   = "\x1b"
	keyCtrlC = "\x03"
	keyCtrlU = "\x15" // clears the line of a text question
)

// promptWait bounds every wait for the wizard's screen.
const promptWait = 60 * time.Second

var ansi = regexp.MustCompile(`\x1b\[[0-9;?<=>]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>78]|\r`)

// sgrColour is an SGR sequence that sets a foreground or background
// colour (30–49, 90–107, 38;5;N, 48;2;…).
var sgrColour = regexp.MustCompile(`\x1b\[(?:[0-9]*;)*(?:3[0-9]|4[0-9]|9[0-7]|10[0-7])(?:;[0-9]+)*m`)

// wizardScreen is `cloudpod new` on a terminal, read from where the last
// wait ended.
type wizardScreen struct {
	*terminal
	t    *testing.T
	seen int
}

func startWizard(t *testing.T, c *cli, env []string, args ...string) *wizardScreen {
	t.Helper()
	env = append([]string{"CLOUDPODS_CLI_CHILD=1"}, env...)
	term := runOnTerminalWith(t, &pty.Winsize{Cols: 80, Rows: 24}, env, os.Args[0], append(append([]string{"new"}, args...), c.flags...)...)
	return &wizardScreen{terminal: term, t: t}
}

// plain is everything written so far, escape sequences and CRs removed.
func (s *wizardScreen) plain() string { return ansi.ReplaceAllString(s.text(), "") }

// waitText waits until text appears after what earlier waits consumed,
// and consumes through it.
func (s *wizardScreen) waitText(text string) {
	s.t.Helper()
	deadline := time.Now().Add(promptWait)
	for {
		p := s.plain()
		if i := strings.Index(p[min(s.seen, len(p)):], text); i >= 0 {
			s.seen += i + len(text)
			return
		}
		select {
		case err := <-s.done:
			s.done <- err
			s.t.Fatalf("cloudpod new ended (%v) before showing %q; the screen:\n%s", err, text, p)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no %q within %s; the screen after what was consumed:\n%s", text, promptWait, p[min(s.seen, len(p)):])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *wizardScreen) typeKeys(keys ...string) {
	s.t.Helper()
	for _, k := range keys {
		if _, err := s.ptmx.Write([]byte(k)); err != nil {
			s.t.Fatal(err)
		}
	}
}

// answer waits for a question's title, types keys, and waits for the
// answer's transcript line.
func (s *wizardScreen) answer(title, want string, keys ...string) {
	s.t.Helper()
	s.waitText(title)
	s.typeKeys(keys...)
	s.waitText("✓ " + want + "\n")
}

// exit waits for the program to end and returns its exit code.
func (s *wizardScreen) exit() int {
	s.t.Helper()
	select {
	case err := <-s.done:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		if err != nil {
			s.t.Fatal(err)
		}
		return 0
	case <-time.After(promptWait):
		s.t.Fatalf("cloudpod new did not end; the screen:\n%s", s.plain())
	}
	return -1
}

// printedCommands are the command lines under "The same without
// questions:", split into argv (the wizard's values need no quoting).
func (s *wizardScreen) printedCommands() [][]string {
	s.t.Helper()
	p := s.plain()
	_, rest, ok := strings.Cut(p, "The same without questions:\n")
	if !ok {
		s.t.Fatalf("no command printed:\n%s", p)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(rest), "\n")
	var out [][]string
	for _, cmd := range strings.Split(line, " && ") {
		words := strings.Fields(cmd)
		if len(words) < 2 || words[0] != "cloudpod" {
			s.t.Fatalf("printed command %q does not start with cloudpod", cmd)
		}
		out = append(out, words[1:])
	}
	return out
}

// mutating are the requests that change PVE's state.
func mutating(reqs map[string]int) []string {
	var out []string
	for k := range reqs {
		if !strings.HasPrefix(k, "GET ") {
			out = append(out, k)
		}
	}
	return out
}

// TestNewAcceptsEveryDefault is issue 18's first Done-when: Enter at every
// question makes a CloudPod with the next free VMID and address, and prints
// the command; that command run again has nothing to do.
func TestNewAcceptsEveryDefault(t *testing.T) {
	c := startCLI(t)
	s := startWizard(t, c, nil)
	s.answer("What do you want to make?", "Kind: a CloudPod, cloned from the golden template", keyEnter)
	s.answer("VMID", "VMID: 9101", keyEnter)
	s.answer("Hostname (RFC 1123)", "Hostname: pod-9101", keyEnter)
	s.answer("Node", "Node: pve", keyEnter)
	s.answer("Storages of pve that hold rootdir", "Storage: clients-main", keyEnter)
	s.answer("The bridges of node pve", "Bridge: vmbr0", keyEnter)
	s.answer("The next free address of 10.1.10.0/24", "Address: 10.1.10.91", keyEnter)
	s.answer("CPU cores", "CPU cores: 2", keyEnter)
	s.answer("Memory (MB)", "Memory (MB): 2048", keyEnter)
	s.answer("Swap (MB)", "Swap (MB): 512", keyEnter)
	s.answer("Tenant (empty: none)", "Tenant: none", keyEnter)
	s.waitText("Create it now?")
	if n := mutating(c.sim.Requests()); len(n) > 0 {
		t.Fatalf("the questions changed PVE: %v", n)
	}
	s.typeKeys(keyEnter)
	s.waitText("CT 9101 pod-9101 (10.1.10.91/24) created: running on node pve")
	if code := s.exit(); code != exitOK {
		t.Fatalf("exit %d\n%s", code, s.plain())
	}
	cmds := s.printedCommands()
	want := "create --vmid 9101 --host pod-9101 --ip 10.1.10.91 --node pve --storage clients-main --bridge vmbr0 --cores 2 --mem 2048 --swap 512"
	if len(cmds) != 1 || strings.Join(cmds[0], " ") != want {
		t.Fatalf("printed %q, want %q", cmds, want)
	}
	g, ok := c.sim.Guest(9101)
	if !ok || g.Status != "running" || !strings.Contains(g.Config["net0"], "ip=10.1.10.91/24") || g.Config["hostname"] != "pod-9101" {
		t.Fatalf("CT 9101: %v %v", g.Status, g.Config)
	}
	out, _ := c.mustRun(t, exitOK, cmds[0]...)
	wantIn(t, "the printed command again", out, "CT 9101 pod-9101 (10.1.10.91/24) already provisioned, nothing to do")
}

// TestNewContainerWithStorageAndVLAN is issue 18's second Done-when, with
// an answer refused at once and Esc back a question: a container from an
// OS template on a storage picked from the list, on VLAN 20; its answers
// saved and replayed without questions.
func TestNewContainerWithStorageAndVLAN(t *testing.T) {
	c := startCLI(t)
	saved := filepath.Join(t.TempDir(), "ct.json")
	s := startWizard(t, c, []string{"NO_COLOR=1"}, "--save", saved)
	s.answer("What do you want to make?", "Kind: a container from an OS template", keyDown, keyEnter)
	s.answer("VMID", "VMID: 9101", keyEnter)
	s.answer("Hostname (RFC 1123)", "Hostname: ct-9101", keyEnter)
	s.answer("Node", "Node: pve", keyEnter)
	s.answer("OS template", "OS template: local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst", keyEnter)
	s.answer("Disk (GB)", "Disk (GB): 8", keyEnter)
	// The list: clients-backup (the most room: the default), clients-main.
	s.waitText("Storages of pve that hold rootdir")
	s.waitText("clients-backup  images,rootdir")
	s.waitText("clients-main    images,rootdir")
	s.waitText("fullest")
	s.typeKeys(keyEsc)
	s.waitText("← back to: Disk (GB)")
	s.answer("Disk (GB)", "Disk (GB): 8", keyEnter)
	s.answer("Storages of pve that hold rootdir", "Storage: clients-main", keyDown, keyEnter)
	s.answer("CPU cores", "CPU cores: 1", keyEnter)
	s.answer("Memory (MB)", "Memory (MB): 512", keyEnter)
	s.answer("Swap (MB)", "Swap (MB): 512", keyEnter)
	s.answer("The bridges of node pve", "Bridge: vmbr0", keyEnter)
	s.waitText("VLAN tag (empty: untagged)")
	s.typeKeys("4095", keyEnter)
	s.waitText("tag=4095")
	s.typeKeys(keyCtrlU, "20", keyEnter)
	s.waitText("✓ VLAN tag: 20\n")
	s.answer("Not the CloudPods LAN (vmbr0 untagged)", "Address: dhcp", keyEnter)
	s.answer("Unprivileged or privileged?", "Privilege: unprivileged", keyEnter)
	s.answer("Only nesting", "Features: none", keyEnter)
	s.answer("Start it", "Start it: no", keyDown, keyEnter)
	s.waitText("Answers saved to " + saved)
	s.waitText("Create it now?")
	s.typeKeys(keyEnter)
	s.waitText("CT 9101 ct-9101 created")
	if code := s.exit(); code != exitOK {
		t.Fatalf("exit %d\n%s", code, s.plain())
	}
	if colours := sgrColour.FindAllString(s.text(), -1); len(colours) > 0 {
		t.Errorf("NO_COLOR, yet colours were written: %q", colours)
	}
	cmds := s.printedCommands()
	line := strings.Join(cmds[len(cmds)-1], " ")
	wantIn(t, "the printed command", line, "ct create --vmid 9101 --hostname ct-9101", "--storage clients-main", "--net name=eth0,bridge=vmbr0,tag=20,ip=dhcp", "--unprivileged")
	g, ok := c.sim.Guest(9101)
	if !ok || !strings.HasPrefix(g.Config["rootfs"], "clients-main:") || !strings.Contains(g.Config["net0"], "tag=20") {
		t.Fatalf("CT 9101: rootfs %q net0 %q", g.Config["rootfs"], g.Config["net0"])
	}

	// The saved answers, replayed without a terminal: the same container,
	// nothing to do.
	var f answerFile
	b, _ := os.ReadFile(saved)
	if err := json.Unmarshal(b, &f); err != nil || f.Answers["vlan"] != "20" || f.Answers["storage"] != "clients-main" || f.Command != "cloudpod "+line {
		t.Fatalf("saved file: %v\n%s", err, b)
	}
	out, _ := c.mustRun(t, exitOK, "new", "--from", saved, "--yes")
	wantIn(t, "replay", out, "CT 9101 ct-9101 already as asked, nothing to do")
	f.Answers["vlan"] = "4095"
	b, _ = json.Marshal(f)
	bad := filepath.Join(t.TempDir(), "bad.json")
	must(t, os.WriteFile(bad, b, 0o600))
	_, errs := c.mustRun(t, exitUsage, "new", "--from", bad, "--yes")
	wantIn(t, "a bad saved answer", errs, `the saved answer vlan="4095"`, "tag=4095")
}

// TestNewCtrlCCreatesNothing is issue 18's third Done-when: Ctrl-C at a
// question — the first, one in the middle, the confirmation — leaves with
// exit 130, and PVE saw no request that changes anything.
func TestNewCtrlCCreatesNothing(t *testing.T) {
	c := startCLI(t)
	for _, at := range []struct {
		title, label string
		before       func(s *wizardScreen)
	}{
		{title: "What do you want to make?", label: "Kind"},
		{title: "Storages of pve that hold rootdir", label: "Storage", before: func(s *wizardScreen) {
			s.answer("What do you want to make?", "Kind: a container from an OS template", keyDown, keyEnter)
			for _, a := range []string{"VMID: 9101", "Hostname: ct-9101", "Node: pve", "OS template: local:", "Disk (GB): 8"} {
				s.typeKeysWhenAsked(a)
			}
		}},
		{title: "Create it now?", label: "the confirmation", before: func(s *wizardScreen) {
			s.answer("What do you want to make?", "Kind: a CloudPod, cloned from the golden template", keyEnter)
			for _, a := range []string{"VMID", "Hostname", "Node", "Storage", "Bridge", "Address", "CPU cores", "Memory (MB)", "Swap (MB)", "Tenant"} {
				s.typeKeysWhenAsked(a + ": ")
			}
		}},
	} {
		t.Run(at.label, func(t *testing.T) {
			s := startWizard(t, c, nil)
			s.t = t
			if at.before != nil {
				at.before(s)
			}
			s.waitText(at.title)
			s.typeKeys(keyCtrlC)
			if code := s.exit(); code != exitInterrupted {
				t.Fatalf("exit %d, want %d\n%s", code, exitInterrupted, s.plain())
			}
			wantIn(t, "the screen", s.plain(), "left cloudpod new at "+at.label+"; nothing was created")
		})
	}
	if n := mutating(c.sim.Requests()); len(n) > 0 {
		t.Errorf("PVE saw requests that change things: %v", n)
	}
	if _, ok := c.sim.Guest(9101); ok {
		t.Error("CT 9101 was created")
	}
}

// typeKeysWhenAsked presses Enter at the next question and waits for its
// transcript line to start with want.
func (s *wizardScreen) typeKeysWhenAsked(want string) {
	s.t.Helper()
	s.waitText("┃ ")
	s.typeKeys(keyEnter)
	s.waitText("✓ " + want)
}

// TestNewOffTerminal: without a terminal `cloudpod new` says in one
// sentence to use the flags, and exits 2 before contacting PVE.
func TestNewOffTerminal(t *testing.T) {
	c := startCLI(t)
	before := c.sim.Requests()
	_, errs := c.mustRun(t, exitUsage, "new")
	if strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.Contains(errs, "cloudpod new asks its questions on a terminal, and this is none: give the flags to cloudpod create") {
		t.Errorf("stderr: %q", errs)
	}
	if after := c.sim.Requests(); len(after) != len(before) {
		t.Errorf("PVE was contacted: %v", after)
	}
}

// TestNewOtherKindsFromSavedAnswers: the cloud-init VM and both OpenWrt
// routers from answer files that name only the kind (every other answer
// its default, checked as the questions check it), replayed without a
// terminal; each again converges.
func TestNewOtherKindsFromSavedAnswers(t *testing.T) {
	c := startCLIWith(t, withNetworkToken)
	must(t, c.sim.AddVolumeFile("local:import/noble.qcow2", cloudImage))
	mirror, err := openwrtmirror.NewServer("24.10.0")
	must(t, err)
	defer mirror.Close()
	for _, k := range []struct {
		kind, created, again string
		vmid                 int
	}{
		{"vm", "VM 9101 vm-9101 created: running", "already as asked, nothing to do", 9101},
		{"openwrt-vm", "router VM 9102 openwrt-9102 created: running", "already as asked, nothing to do", 9102},
		{"openwrt", "router CT 9103 router-9103 created: running", "already as asked, nothing to do", 9103},
	} {
		t.Run(k.kind, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), k.kind+".json")
			must(t, os.WriteFile(file, []byte(`{"cloudpodNew": 1, "answers": {"kind": "`+k.kind+`"}}`), 0o600))
			out, _ := c.mustRun(t, exitOK, "new", "--from", file, "--yes", "--mirror", mirror.URL, "--save", file)
			wantIn(t, k.kind, out, k.created)
			if g, ok := c.sim.Guest(k.vmid); !ok || g.Status != "running" {
				t.Fatalf("guest %d: %+v", k.vmid, g)
			}
			out, _ = c.mustRun(t, exitOK, "new", "--from", file, "--yes", "--mirror", mirror.URL)
			wantIn(t, k.kind+" again", out, k.again)
		})
	}
}
