package goproxmox

import (
	"errors"
	"fmt"
	"io"
	"testing"

	proxmox "github.com/luthermonson/go-proxmox"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// A socket closed after the ticket line is a refused ticket; only a token
// on a console not known to accept tokens reads it as the token refusal.
func TestHandshakeRefusal(t *testing.T) {
	closed := fmt.Errorf("handshake: %w", io.ErrUnexpectedEOF)
	for _, tc := range []struct {
		name    string
		login   bool
		verdict pve.ConsoleTokens
		want    error
	}{
		{"token, console not judged", false, pve.ConsoleTokensUnknown, pve.ErrConsoleRefusesTokens},
		{"token, console refuses tokens", false, pve.ConsoleTokensRefused, pve.ErrConsoleRefusesTokens},
		{"token, console accepts tokens", false, pve.ConsoleTokensAccepted, pve.ErrConsoleTicket},
		{"console login", true, pve.ConsoleTokensUnknown, pve.ErrConsoleTicket},
	} {
		c := &Client{}
		if tc.login {
			c.opts.Console = &ConsoleLogin{User: "console@pve"}
			c.console = proxmox.NewClient("https://pve.invalid:8006/api2/json")
		}
		c.verdicts.set("pve", tc.verdict)
		if err := c.handshakeRefusal("pve", closed); !errors.Is(err, tc.want) || errors.Is(err, pve.ErrUnauthorized) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	timeout := &pve.TransportError{Method: "GET", Path: "vncwebsocket handshake", Err: errors.New("i/o timeout")}
	if err := (&Client{}).handshakeRefusal("pve", timeout); err != timeout {
		t.Errorf("a timeout became %v", err)
	}
}
