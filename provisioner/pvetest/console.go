package pvetest

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strings"
	"sync"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// OpenTerminal attaches to a running guest's console: a terminal that runs
// each command the provisioner frames (printf CPB …; { cmd } 2>&1; printf
// CPE … "$?") against the guest's files and answers with its output and
// exit status.
func (f *Fake) OpenTerminal(ctx context.Context, g pve.GuestRef) (pve.Terminal, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	consoleErr := func(stage string, err error) error {
		return &pve.ConsoleError{Kind: g.Kind, VMID: g.VMID, Stage: stage, Err: err}
	}
	if err, _ := f.enter("OpenTerminal", g, ""); err != nil {
		return nil, consoleErr("termproxy", err)
	}
	got, ok := f.guest(g)
	if !ok {
		return nil, consoleErr("termproxy", notFound("POST", g, "/termproxy"))
	}
	if got.Status != "running" {
		return nil, consoleErr("termproxy", refused("POST", g, "/termproxy", fmt.Sprintf("%s %d not running", g.Kind.Noun(), g.VMID)))
	}
	if f.ConsoleRefusesTokens {
		return nil, consoleErr("handshake", fmt.Errorf("%w (handshake: %v)", pve.ErrConsoleRefusesTokens, io.ErrUnexpectedEOF))
	}
	t := &terminal{f: f, vmid: g.VMID}
	t.cond = sync.NewCond(&t.mu)
	return t, nil
}

// terminal is one console session of the fake.
type terminal struct {
	f    *Fake
	vmid int

	mu     sync.Mutex
	cond   *sync.Cond
	in     []byte // written, not yet a whole command
	out    []byte // to be read
	closed bool
}

// framed is one command as the provisioner's shell sends it; probe is its
// handshake, typed until the shell answers.
var (
	framed = regexp.MustCompile(`(?s)^printf '%s:%s\\n' CPB (\S+); \{ (.*?)\n\} 2>&1; printf '%s:%s:%d\\n' CPE \S+ "\$\?"\n`)
	probe  = regexp.MustCompile(`^printf '%s:%s\\n' CPR (\S+)\n`)
)

func (t *terminal) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return 0, errors.New("console closed")
	}
	t.in = append(t.in, p...)
	for {
		if m := probe.FindSubmatchIndex(t.in); m != nil {
			t.out = append(t.out, fmt.Sprintf("CPR:%s\n", t.in[m[2]:m[3]])...)
			t.in = t.in[m[1]:]
			t.cond.Broadcast()
			continue
		}
		m := framed.FindSubmatchIndex(t.in)
		if m == nil {
			break
		}
		id, cmd := string(t.in[m[2]:m[3]]), string(t.in[m[4]:m[5]])
		t.in = t.in[m[1]:]
		out, code := t.f.exec(t.vmid, cmd)
		if out != "" && !strings.HasSuffix(out, "\n") {
			out += "\n"
		}
		t.out = append(t.out, fmt.Sprintf("CPB:%s\n%sCPE:%s:%d\n", id, out, id, code)...)
		t.cond.Broadcast()
	}
	return len(p), nil
}

func (t *terminal) Read(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(t.out) == 0 && !t.closed {
		t.cond.Wait()
	}
	if len(t.out) == 0 {
		return 0, io.EOF
	}
	n := copy(p, t.out)
	t.out = t.out[n:]
	return n, nil
}

func (t *terminal) Resize(cols, rows int) error { return nil }

func (t *terminal) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	t.cond.Broadcast()
	return nil
}

// The commands create and health run in a pod, as the fake answers them.
var (
	truncate  = regexp.MustCompile(`^umask 077; : > (\S+)$`)
	appendTo  = regexp.MustCompile(`^printf '%s' '([^']*)' >> (\S+)$`)
	install   = regexp.MustCompile(`^base64 -d (\S+) > (\S+) && chmod ([0-7]+) \S+ && mv \S+ (\S+); rc=\$\?; rm -f \S+; test \$rc -eq 0$`)
	sha256sum = regexp.MustCompile(`^sha256sum (\S+)$`)
)

// exec runs one command in guest vmid.
func (f *Fake) exec(vmid int, cmd string) (string, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, Call{Method: "exec", Guest: pve.CT("", vmid), Arg: cmd})
	g, ok := f.guests[vmid]
	if !ok {
		return "sh: the container is gone", 255
	}
	if f.Shell != nil {
		if out, code, handled := f.Shell(g, cmd); handled {
			return out, code
		}
	}
	switch {
	case truncate.MatchString(cmd):
		g.Files[truncate.FindStringSubmatch(cmd)[1]] = nil
		return "", 0
	case appendTo.MatchString(cmd):
		m := appendTo.FindStringSubmatch(cmd)
		g.Files[m[2]] = append(g.Files[m[2]], m[1]...)
		return "", 0
	case install.MatchString(cmd):
		m := install.FindStringSubmatch(cmd)
		b, err := base64.StdEncoding.DecodeString(string(g.Files[m[1]]))
		delete(g.Files, m[1])
		if err != nil {
			return "base64: invalid input", 1
		}
		g.Files[m[4]] = b
		return "", 0
	case sha256sum.MatchString(cmd):
		path := sha256sum.FindStringSubmatch(cmd)[1]
		b, ok := g.Files[path]
		if !ok {
			return "sha256sum: " + path + ": No such file or directory", 1
		}
		sum := sha256.Sum256(b)
		return hex.EncodeToString(sum[:]) + "  " + path, 0
	case cmd == "true", strings.HasPrefix(cmd, "netplan "), strings.HasPrefix(cmd, "networkctl "):
		return "", 0
	case cmd == "systemctl is-system-running":
		return "running", 0
	case cmd == "ip -j -4 addr show dev eth0":
		// The pod has net0's address.
		addr, err := netip.ParsePrefix(field(g.Config["net0"])["ip"])
		if err != nil {
			return `[{"ifname":"eth0","addr_info":[]}]`, 0
		}
		return fmt.Sprintf(`[{"ifname":"eth0","addr_info":[{"family":"inet","local":"%s","prefixlen":%d}]}]`, addr.Addr(), addr.Bits()), 0
	case cmd == "ip -j -4 route show default":
		return fmt.Sprintf(`[{"dst":"default","gateway":"%s","dev":"eth0","protocol":"static","flags":[]}]`, gateway(g.Config)), 0
	case cmd == "ip -4 route show default":
		return fmt.Sprintf("default via %s dev eth0 proto static", gateway(g.Config)), 0
	case strings.HasPrefix(cmd, "ping "):
		return "1 packets transmitted, 1 received, 0% packet loss, time 0ms", 0
	case cmd == "cat /etc/resolv.conf":
		var b strings.Builder
		for _, ns := range strings.Fields(g.Config["nameserver"]) {
			b.WriteString("nameserver " + ns + "\n")
		}
		return b.String(), 0
	case strings.HasPrefix(cmd, "systemctl is-active "):
		return "active", 0
	case strings.HasPrefix(cmd, "getent hosts "):
		return "192.0.2.10      " + strings.TrimPrefix(cmd, "getent hosts "), 0
	}
	return "sh: 1: " + strings.Fields(cmd)[0] + ": not found", 127
}
