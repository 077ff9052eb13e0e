package provisioner

import (
	"context"
	"errors"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// realConsole behaves as a real LXC console seen through termproxy: input
// typed before the shell is up is thrown away (lxc-attach sets its terminal
// raw with TCSAFLUSH), every line ends in CR CR LF (two PTYs each map NL to
// CR-NL), and bash adds terminal control sequences.
type realConsole struct {
	mu      sync.Mutex
	dropped int // writes lost before the shell came up
	lostN   int // how many writes to lose
	pending string
	out     chan []byte
	closed  chan struct{}
	once    sync.Once
}

func newRealConsole(lose int) *realConsole {
	return &realConsole{lostN: lose, out: make(chan []byte, 64), closed: make(chan struct{})}
}

var (
	probeRE = regexp.MustCompile(`^printf '%s:%s\\n' CPR (\w+)$`)
	beginRE = regexp.MustCompile(`^printf '%s:%s\\n' CPB (\w+); \{ (.*)$`)
)

func (c *realConsole) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dropped < c.lostN {
		c.dropped++
		return len(p), nil
	}
	c.pending += string(p)
	for {
		line, rest, ok := strings.Cut(c.pending, "\n")
		if !ok {
			return len(p), nil
		}
		if m := probeRE.FindStringSubmatch(line); m != nil {
			c.pending = rest
			c.out <- []byte(line + "\r\r\n\x1b[?2004l\rCPR:" + m[1] + "\r\r\n\x1b[?2004hroot@pod:~# ")
			continue
		}
		m := beginRE.FindStringSubmatch(line)
		if m == nil {
			c.pending = rest
			continue
		}
		// The framed command spans two lines: "{ cmd" and "} 2>&1; …".
		tail, rest2, ok := strings.Cut(rest, "\n")
		if !ok {
			return len(p), nil
		}
		c.pending = rest2
		id, cmd := m[1], m[2]
		out, code := "", "0"
		switch cmd {
		case "ip -4 route show default":
			out = "default via \x1b[35m10.1.10.1 \x1b[0mdev \x1b[36meth0 \x1b[0mproto static \r\r\n"
		case "false":
			code = "1"
		}
		c.out <- []byte(line + "\r\r\n> " + tail + "\r\r\n\x1b[?2004l\rCPB:" + id + "\r\r\n" + out + "CPE:" + id + ":" + code + "\r\r\n\x1b[?2004hroot@pod:~# ")
	}
}

func (c *realConsole) Read(p []byte) (int, error) {
	select {
	case b := <-c.out:
		return copy(p, b), nil
	case <-c.closed:
		return 0, io.EOF
	}
}

func (c *realConsole) Resize(int, int) error { return nil }
func (c *realConsole) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// TestShellOnARealConsole: the first lines typed are lost, the shell
// answers with CR CR LF and colours; run still frames every command.
func TestShellOnARealConsole(t *testing.T) {
	term := newRealConsole(2)
	sh := newShell(term, "n0nce", 10*time.Second)
	defer func() { close(sh.quit); term.Close() }()
	ctx := context.Background()
	out, code, err := sh.run(ctx, "ip -4 route show default")
	if err != nil || code != 0 || out != "default via 10.1.10.1 dev eth0 proto static " {
		t.Fatalf("run = %q, %d, %v", out, code, err)
	}
	term.mu.Lock()
	dropped := term.dropped
	term.mu.Unlock()
	if dropped != 2 {
		t.Errorf("the console lost %d probes, want 2: the handshake should have typed again", dropped)
	}
	if _, code, err := sh.run(ctx, "false"); err != nil || code != 1 {
		t.Errorf("false = %d, %v", code, err)
	}
}

// TestShellHandshakeGivesUp: a console that never answers (a login prompt
// eating our lines) is lost after the command timeout.
func TestShellHandshakeGivesUp(t *testing.T) {
	term := newRealConsole(1 << 30)
	sh := newShell(term, "n0nce", 800*time.Millisecond)
	defer func() { close(sh.quit); term.Close() }()
	_, _, err := sh.run(context.Background(), "true")
	var lost *consoleLost
	if !errors.As(err, &lost) || !strings.Contains(err.Error(), "no shell answered") {
		t.Fatalf("run = %v, want the console lost", err)
	}
}

func TestCommandFailedSaysWhatFailed(t *testing.T) {
	lost := errors.New("console closed")
	for _, tc := range []struct {
		name, out string
		code      int
		err       error
		want      string
	}{
		{"exit with output", "mv: cannot move\n", 1, nil, "write /etc/x: mv: cannot move (exit 1)"},
		{"exit without output", "", 2, nil, "write /etc/x: exit 2"},
		{"transport error", "", -1, lost, "write /etc/x: console closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := commandFailed("write /etc/x", tc.out, tc.code, tc.err)
			if got.Error() != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			if strings.Contains(got.Error(), "%!") {
				t.Fatalf("formatting verb leaked: %q", got)
			}
			if tc.err != nil && !errors.Is(got, tc.err) {
				t.Fatalf("%q does not wrap %v", got, tc.err)
			}
		})
	}
}
