package provisioner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// shell runs commands in a container over its console's raw PTY and gets
// back each command's output and exit status. Commands are framed by
// markers the shell prints with printf, so the echoed command line (which
// contains the marker's pieces, never the joined marker) cannot be mistaken
// for the output.
type shell struct {
	term pve.Terminal
	// cmdTimeout bounds one command: a console whose output stops coming
	// is treated as lost.
	cmdTimeout time.Duration
	out        chan []byte
	errc       chan error
	buf        bytes.Buffer
	nonce      string
	serial     int
	quit       chan struct{}
	// ready is set once the shell has answered: see handshake.
	ready bool
}

// maxLine keeps every line we type under the kernel's canonical-mode limit
// (4095 bytes), past which a PTY silently drops input.
const maxLine = 3000

func newShell(term pve.Terminal, nonce string, cmdTimeout time.Duration) *shell {
	s := &shell{term: term, cmdTimeout: cmdTimeout, out: make(chan []byte, 64), errc: make(chan error, 1), nonce: nonce, quit: make(chan struct{})}
	_ = term.Resize(200, 50)
	go s.pump()
	return s
}

func (s *shell) pump() {
	for {
		buf := make([]byte, 4096)
		n, err := s.term.Read(buf)
		if n > 0 {
			select {
			case s.out <- buf[:n]:
			case <-s.quit:
				return
			}
		}
		if err != nil {
			s.errc <- err
			close(s.out)
			return
		}
	}
}

// consoleLost is a console that closed, or stopped answering, under a
// command. It is transient for the retry policy: what the flows run in a
// pod is safe to repeat on a fresh console.
type consoleLost struct{ err error }

func (e *consoleLost) Error() string        { return "console lost: " + e.err.Error() }
func (e *consoleLost) Unwrap() error        { return e.err }
func (e *consoleLost) Is(target error) bool { return target == pve.ErrTransient }

// run executes cmd (a shell command line we composed; operator input only
// ever reaches it base64-encoded) and returns its combined output and exit
// status.
func (s *shell) run(ctx context.Context, cmd string) (string, int, error) {
	if !s.ready {
		if err := s.handshake(ctx); err != nil {
			return "", -1, err
		}
	}
	s.serial++
	id := s.nonce + strconv.Itoa(s.serial)
	line := fmt.Sprintf("printf '%%s:%%s\\n' CPB %s; { %s\n} 2>&1; printf '%%s:%%s:%%d\\n' CPE %s \"$?\"\n", id, cmd, id)
	for _, l := range strings.Split(line, "\n") {
		if len(l) > maxLine {
			return "", -1, fmt.Errorf("command line of %d bytes is over the console's %d-byte limit", len(l), maxLine)
		}
	}
	if _, err := s.term.Write([]byte(line)); err != nil {
		return "", -1, &consoleLost{fmt.Errorf("write: %w", err)}
	}
	timer := time.NewTimer(s.cmdTimeout)
	defer timer.Stop()
	begin := []byte("CPB:" + id)
	end := regexp.MustCompile(`CPE:` + id + `:(\d+)\r*\n`)
	for {
		data := s.buf.Bytes()
		if m := end.FindSubmatchIndex(data); m != nil {
			out := data[:m[0]]
			if i := bytes.LastIndex(out, begin); i >= 0 {
				out = out[i+len(begin):]
			}
			code, _ := strconv.Atoi(string(data[m[2]:m[3]]))
			s.buf.Next(m[1])
			return cleanOutput(out), code, nil
		}
		select {
		case <-ctx.Done():
			return "", -1, fmt.Errorf("console command: %w", ctx.Err())
		case <-timer.C:
			return "", -1, &consoleLost{fmt.Errorf("no answer to %q within %s", firstWord(cmd), s.cmdTimeout)}
		case chunk, ok := <-s.out:
			if !ok {
				err := <-s.errc
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return "", -1, &consoleLost{fmt.Errorf("closed: %w", err)}
			}
			s.buf.Write(chunk)
		}
	}
}

func firstWord(cmd string) string {
	if f := strings.Fields(cmd); len(f) > 0 {
		return f[0]
	}
	return cmd
}

// lineEnd is a line ending as it comes through one or more PTYs: each one
// that maps NL to CR-NL adds a CR (a real console shows "\r\r\n").
var lineEnd = regexp.MustCompile(`\r+\n`)

// ansiCSI is a terminal control sequence: colours (iproute2 colours its
// output on a terminal on some releases), bracketed-paste mode switches.
var ansiCSI = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// cleanOutput drops the line ending of the begin marker, the PTYs' CRs and
// terminal control sequences.
func cleanOutput(b []byte) string {
	s := lineEnd.ReplaceAllString(ansiCSI.ReplaceAllString(string(b), ""), "\n")
	s = strings.TrimPrefix(s, "\n")
	return strings.TrimSuffix(s, "\n")
}

// commandFailed describes a console command that failed: with the
// transport's error wrapped when there is one, else with the command's exit
// code and output alone (a plain non-zero exit has no error to wrap).
func commandFailed(what, out string, code int, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if out = strings.TrimSpace(out); out != "" {
		return fmt.Errorf("%s: %s (exit %d)", what, out, code)
	}
	return fmt.Errorf("%s: exit %d", what, code)
}

// writeFile puts content at path with mode, atomically (temp + rename), and
// checks the result by its SHA-256. Content travels base64-encoded in
// chunks, so nothing of it is ever interpreted by the shell.
func (s *shell) writeFile(ctx context.Context, path string, content []byte, mode string) error {
	if !safePath.MatchString(path) || !safeMode.MatchString(mode) {
		return fmt.Errorf("refusing unsafe path %q or mode %q", path, mode)
	}
	tmp := path + ".cloudpods-tmp"
	enc := base64.StdEncoding.EncodeToString(content)
	if _, code, err := s.run(ctx, "umask 077; : > "+tmp+".b64"); err != nil || code != 0 {
		return commandFailed("write "+path+": cannot create temp file", "", code, err)
	}
	const chunk = 2048
	for i := 0; i < len(enc); i += chunk {
		part := enc[i:min(i+chunk, len(enc))]
		if out, code, err := s.run(ctx, "printf '%s' '"+part+"' >> "+tmp+".b64"); err != nil || code != 0 {
			return commandFailed("write "+path, out, code, err)
		}
	}
	cmd := "base64 -d " + tmp + ".b64 > " + tmp + " && chmod " + mode + " " + tmp + " && mv " + tmp + " " + path + "; rc=$?; rm -f " + tmp + ".b64; test $rc -eq 0"
	if out, code, err := s.run(ctx, cmd); err != nil || code != 0 {
		return commandFailed("write "+path, out, code, err)
	}
	sum := sha256.Sum256(content)
	out, code, err := s.run(ctx, "sha256sum "+path)
	if err != nil || code != 0 {
		return commandFailed("verify "+path, out, code, err)
	}
	if !strings.HasPrefix(strings.TrimSpace(out), hex.EncodeToString(sum[:])) {
		return fmt.Errorf("verify %s: content differs after write (%q)", path, out)
	}
	return nil
}

// fileSHA256 returns the hex SHA-256 of a file in the container, "" when
// it does not exist.
func (s *shell) fileSHA256(ctx context.Context, path string) (string, error) {
	if !safePath.MatchString(path) {
		return "", fmt.Errorf("refusing unsafe path %q", path)
	}
	out, code, err := s.run(ctx, "sha256sum "+path)
	if err != nil {
		return "", err
	}
	if code != 0 {
		return "", nil
	}
	f := strings.Fields(out)
	if len(f) == 0 {
		return "", nil
	}
	return f[0], nil
}

var (
	safePath = regexp.MustCompile(`^/[A-Za-z0-9._/-]+$`)
	safeMode = regexp.MustCompile(`^[0-7]{3,4}$`)
)

// attachShell attaches to a guest's console, once.
func (p *Provisioner) attachShell(ctx context.Context, g pve.GuestRef) (*shell, func(), error) {
	term, err := p.api.OpenTerminal(ctx, g)
	if err != nil {
		return nil, nil, err
	}
	sh := newShell(term, p.randomHex(6), p.opts.ExecTimeout)
	return sh, func() { close(sh.quit); term.Close() }, nil
}

// openShell attaches to a guest's console, retrying transient refusals
// (attaching has no lasting effect in PVE).
func (p *Provisioner) openShell(ctx context.Context, g pve.GuestRef) (*shell, func(), error) {
	var sh *shell
	var done func()
	err := p.opts.Retry.Do(ctx, fmt.Sprintf("open console of %s", g), func(ctx context.Context) error {
		var err error
		sh, done, err = p.attachShell(ctx, g)
		return err
	}, nil)
	return sh, done, err
}

// handshakeEvery is how often handshake types its probe again.
const handshakeEvery = 300 * time.Millisecond

// handshake waits until the shell behind a fresh console answers. Input
// typed too early is lost on a real console: lxc-attach switches its
// terminal to raw mode with TCSAFLUSH, which discards what has not been
// read yet. So a probe is typed again until its marker comes back; probes
// answered late only leave markers no later command looks for.
func (s *shell) handshake(ctx context.Context) error {
	deadline := time.NewTimer(s.cmdTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(handshakeEvery)
	defer tick.Stop()
	probe := []byte(fmt.Sprintf("printf '%%s:%%s\\n' CPR %s\n", s.nonce))
	answer := []byte("CPR:" + s.nonce + "\n")
	for {
		if _, err := s.term.Write(probe); err != nil {
			return &consoleLost{fmt.Errorf("write: %w", err)}
		}
		for waiting := true; waiting; {
			if bytes.Contains(lineEnd.ReplaceAll(s.buf.Bytes(), []byte("\n")), answer) {
				s.ready = true
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("console command: %w", ctx.Err())
			case <-deadline.C:
				return &consoleLost{fmt.Errorf("no shell answered within %s", s.cmdTimeout)}
			case <-tick.C:
				waiting = false
			case chunk, ok := <-s.out:
				if !ok {
					err := <-s.errc
					if err == io.EOF {
						err = io.ErrUnexpectedEOF
					}
					return &consoleLost{fmt.Errorf("closed: %w", err)}
				}
				s.buf.Write(chunk)
			}
		}
	}
}
