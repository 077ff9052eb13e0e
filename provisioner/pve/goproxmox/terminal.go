package goproxmox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	proxmox "github.com/luthermonson/go-proxmox"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// OpenTerminal opens a guest's console (a container's shell, a VM's serial
// terminal): POST termproxy, then the vncwebsocket with the ticket, then
// termproxy's "user:ticket\n" → "OK" handshake. What follows is the raw
// PTY. Failures are *pve.ConsoleError.
func (c *Client) OpenTerminal(ctx context.Context, g pve.GuestRef) (pve.Terminal, error) {
	vmid := g.VMID
	path, err := guestPath(g, "/termproxy")
	if err != nil {
		return nil, err
	}
	wsPath, _ := guestPath(g, "/vncwebsocket")
	consoleErr := func(stage string, err error) error {
		return &pve.ConsoleError{Kind: g.Kind, VMID: vmid, Stage: stage, Err: err}
	}
	px := c.px
	header := http.Header{}
	if c.console != nil {
		// A live session (PVE tickets last two hours) is reused.
		if err := c.console.CreateSession(ctx); err != nil && !errors.Is(err, proxmox.ErrSessionExists) {
			return nil, consoleErr("login", fmt.Errorf("as %s: %w", c.opts.Console.User, unwrapURLError(err)))
		}
		px = c.console
		header.Set("Cookie", "PVEAuthCookie="+c.console.Session().Ticket)
	} else {
		header.Set("Authorization", "PVEAPIToken="+c.opts.TokenID+"="+c.opts.TokenSecret)
	}
	var term proxmox.Term
	if err := unwrapURLError(px.Post(ctx, path, nil, &term)); err != nil {
		return nil, consoleErr("termproxy", err)
	}
	port := strconv.Itoa(int(term.Port))

	ws := *c.base
	ws.Scheme = "wss"
	ws.Path = ws.Path + wsPath
	ws.RawQuery = url.Values{"port": {port}, "vncticket": {term.Ticket}}.Encode()
	dialer := websocket.Dialer{
		TLSClientConfig:  c.tls,
		HandshakeTimeout: c.consoleTimeout(),
		Subprotocols:     []string{"binary"},
		Proxy:            nil,
	}
	conn, resp, err := dialer.DialContext(ctx, ws.String(), header)
	if err != nil {
		if ctx.Err() != nil {
			return nil, consoleErr("websocket", ctx.Err())
		}
		if resp != nil {
			return nil, consoleErr("websocket", &pve.APIError{Method: "GET", Path: wsPath, Status: resp.StatusCode, Message: reason(resp)})
		}
		return nil, consoleErr("websocket", &pve.TransportError{Method: "GET", Path: wsPath, Err: err})
	}
	t := &terminal{conn: conn}
	if err := t.handshake(ctx, term.User, term.Ticket, c.consoleTimeout()); err != nil {
		conn.Close()
		return nil, consoleErr("handshake", c.handshakeRefusal(g.Node, err))
	}
	return t, nil
}

// handshakeRefusal says what termproxy closing the socket after the
// ticket line means: it refused the ticket. For a token on a console known
// to refuse tokens, or not known to accept them (ConsoleTokenSupport not
// asked, or unsure), that is the token's owner; otherwise the ticket.
func (c *Client) handshakeRefusal(node string, err error) error {
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	if c.console == nil && c.verdicts.get(node) != pve.ConsoleTokensAccepted {
		return fmt.Errorf("%w (%v)", pve.ErrConsoleRefusesTokens, err)
	}
	return fmt.Errorf("%w: termproxy closed the console after the ticket line (%v)", pve.ErrConsoleTicket, err)
}

// consoleTimeout bounds the websocket upgrade and the ticket handshake:
// the HTTP timeout, as for any request, but never past the 10 s termproxy
// waits for its client.
func (c *Client) consoleTimeout() time.Duration {
	const termproxyWait = 10 * time.Second
	if t := c.opts.HTTP.Timeout; t > 0 && t < termproxyWait {
		return t
	}
	return termproxyWait
}

// terminal speaks termproxy's client protocol: "0:LEN:DATA" input,
// "1:COLS:ROWS:" resize, "2" ping; the server sends raw bytes.
type terminal struct {
	conn    *websocket.Conn
	wmu     sync.Mutex
	pending []byte // bytes received but not yet read
}

func (t *terminal) handshake(ctx context.Context, user, ticket string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = t.conn.SetReadDeadline(deadline)
	defer t.conn.SetReadDeadline(time.Time{})
	if err := t.send([]byte(user + ":" + ticket + "\n")); err != nil {
		return err
	}
	var got []byte
	for len(got) < 2 {
		_, msg, err := t.conn.ReadMessage()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return &pve.TransportError{Method: "GET", Path: "vncwebsocket handshake", Err: err}
		}
		if err != nil {
			// termproxy closes the socket on a refused ticket.
			return fmt.Errorf("handshake: %w", io.ErrUnexpectedEOF)
		}
		got = append(got, msg...)
	}
	if !bytes.HasPrefix(got, []byte("OK")) {
		return fmt.Errorf("handshake: termproxy answered %q instead of OK", got)
	}
	t.pending = got[2:]
	return nil
}

func (t *terminal) send(b []byte) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	return t.conn.WriteMessage(websocket.BinaryMessage, b)
}

func (t *terminal) Read(p []byte) (int, error) {
	for len(t.pending) == 0 {
		_, msg, err := t.conn.ReadMessage()
		if err != nil {
			return 0, io.EOF
		}
		t.pending = msg
	}
	n := copy(p, t.pending)
	t.pending = t.pending[n:]
	return n, nil
}

func (t *terminal) Write(p []byte) (int, error) {
	frame := make([]byte, 0, len(p)+16)
	frame = append(frame, "0:"+strconv.Itoa(len(p))+":"...)
	frame = append(frame, p...)
	if err := t.send(frame); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (t *terminal) Resize(cols, rows int) error {
	return t.send([]byte("1:" + strconv.Itoa(cols) + ":" + strconv.Itoa(rows) + ":"))
}

func (t *terminal) Close() error {
	t.wmu.Lock()
	_ = t.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	t.wmu.Unlock()
	return t.conn.Close()
}
