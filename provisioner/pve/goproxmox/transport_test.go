package goproxmox

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// TestTransportRetriesOnlyIdempotentRequests: the transport repeats reads
// on network errors, timeouts, a proxy's 429/502/503/504 and 595/596;
// never a write, and never a 500 (PVE's message is judged per operation).
func TestTransportRetriesOnlyIdempotentRequests(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		answer    func(w http.ResponseWriter) // first answer; later ones are 200
		wantCalls int32
		wantErr   error
	}{
		{"read, 503", "GET", status(503, "Service Unavailable"), 2, nil},
		{"read, 596", "GET", status(596, "Connection timed out"), 2, nil},
		{"read, 429", "GET", status(429, "Too Many Requests"), 2, nil},
		{"read, dropped", "GET", drop, 2, nil},
		{"read, slow past the timeout", "GET", slow, 2, nil},
		{"read, 500 lock", "GET", status(500, "CT is locked (disk)"), 1, pve.ErrLocked},
		{"write, 503", "POST", status(503, "Service Unavailable"), 1, pve.ErrTransient},
		{"write, 596", "POST", status(596, "Connection timed out"), 1, pve.ErrMaybeApplied},
		{"write, dropped", "POST", drop, 1, pve.ErrMaybeApplied},
		{"write, slow past the timeout", "POST", slow, 1, pve.ErrMaybeApplied},
		{"delete, dropped", "DELETE", drop, 1, pve.ErrMaybeApplied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) == 1 {
					tt.answer(w)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"data":null}`))
			}))
			defer srv.Close()
			hc, _, err := newHTTPClient(HTTPOptions{Timeout: 100 * time.Millisecond, Retries: 2, Base: &http.Transport{}})
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequestWithContext(context.Background(), tt.method, srv.URL+"/api2/json/nodes/pve/lxc/9101/status/start", strings.NewReader(""))
			resp, err := hc.Do(req)
			if resp != nil {
				resp.Body.Close()
			}
			if got := calls.Load(); got != tt.wantCalls {
				t.Errorf("calls = %d, want %d", got, tt.wantCalls)
			}
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func status(code int, reason string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		// The reason phrase is PVE's message; net/http writes its own, so
		// the body carries it.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(`{"data":null,"message":"` + reason + `\n"}`))
	}
}

func drop(w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
}

func slow(w http.ResponseWriter) {
	time.Sleep(400 * time.Millisecond)
}

func TestPathTemplate(t *testing.T) {
	tests := map[string]string{
		"/api2/json/nodes/pve/lxc/9101/config":                                                    "/nodes/{node}/lxc/{vmid}/config",
		"/api2/json/nodes/pve/tasks/UPID:pve:0001:0002:0003:vzclone:9000:root@pam:/status":        "/nodes/{node}/tasks/{upid}/status",
		"/api2/json/nodes/pve/storage/vzdump-backups/content":                                     "/nodes/{node}/storage/{storage}/content",
		"/api2/json/cluster/resources":                                                            "/cluster/resources",
		"/api2/json/nodes/pve/storage":                                                            "/nodes/{node}/storage",
		"/api2/json/cluster/sdn/vnets/vnet0/ips":                                                  "/cluster/sdn/vnets/{vnet}/ips",
		"/api2/json/nodes/pve/storage/t7-backup/content/t7-backup:backup/vzdump-lxc-9101.tar.zst": "/nodes/{node}/storage/{storage}/content/{volume}",
	}
	for in, want := range tests {
		if got := PathTemplate(in); got != want {
			t.Errorf("PathTemplate(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestUntrustedCertificateSaysItsFingerprint: a certificate that fails
// verification (self-signed, as PVE's own; or not the pinned one) is
// reported with the SHA-256 fingerprint the server presented, as PVE's GUI
// shows it, and is not retried. The right pin connects.
func TestUntrustedCertificateSaysItsFingerprint(t *testing.T) {
	var calls, conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"data":null}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	sum := sha256.Sum256(srv.Certificate().Raw)
	presented := formatFingerprint(sum[:])
	other := strings.Repeat("AB:", 31) + "AB"
	for _, tt := range []struct {
		name   string
		tls    TLSOptions
		pinned string
	}{
		{"system roots", TLSOptions{}, ""},
		{"another pin", TLSOptions{Fingerprint: other}, other},
		{"the right pin", TLSOptions{Fingerprint: strings.ToLower(strings.ReplaceAll(presented, ":", ""))}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hc, _, err := newHTTPClient(HTTPOptions{TLS: tt.tls, Timeout: time.Second, Retries: 2})
			if err != nil {
				t.Fatal(err)
			}
			before, connsBefore := calls.Load(), conns.Load()
			req, _ := http.NewRequestWithContext(context.Background(), "GET", srv.URL+"/api2/json/version", nil)
			resp, err := hc.Do(req)
			if resp != nil {
				resp.Body.Close()
			}
			if tt.name == "the right pin" {
				if err != nil || calls.Load() != before+1 {
					t.Fatalf("pinned request: %v", err)
				}
				return
			}
			var ce *pve.CertificateError
			if !errors.As(err, &ce) || ce.Fingerprint != presented || ce.Pinned != tt.pinned || !errors.Is(err, pve.ErrMaybeApplied) {
				t.Fatalf("err = %v, want a certificate error with fingerprint %s", err, presented)
			}
			sentence, ok := pve.Explain(err)
			if !ok || !strings.Contains(sentence, "pin it with --fingerprint "+presented) || strings.Contains(sentence, "\n") {
				t.Errorf("Explain = %q, %v", sentence, ok)
			}
			if calls.Load() != before || conns.Load() != connsBefore+1 {
				t.Errorf("%d requests, %d connections: a failed verification was retried", calls.Load()-before, conns.Load()-connsBefore)
			}
		})
	}
}
