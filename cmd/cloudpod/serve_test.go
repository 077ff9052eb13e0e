package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/pve"
	"github.com/migrahosting/cloudpods/provisioner/service"
)

func TestServeListenSafety(t *testing.T) {
	tests := []struct {
		name   string
		o      serveOptions
		errHas string
	}{
		{"loopback v4", serveOptions{listen: "127.0.0.1:8480"}, ""},
		{"loopback v6", serveOptions{listen: "[::1]:8480"}, ""},
		{"localhost", serveOptions{listen: "localhost:8480"}, ""},
		{"all interfaces in clear", serveOptions{listen: ":8480"}, "not a loopback address"},
		{"LAN address in clear", serveOptions{listen: "192.0.2.10:8480"}, "not a loopback address"},
		{"LAN address, insecure asked for", serveOptions{listen: "192.0.2.10:8480", insecureHTTP: true}, ""},
		{"cert without key", serveOptions{listen: "192.0.2.10:8480", tlsCert: "c.pem"}, "go together"},
		{"missing key pair", serveOptions{listen: "192.0.2.10:8480", tlsCert: "/nonexistent/c.pem", tlsKey: "/nonexistent/k.pem"}, "TLS key pair"},
		{"no port", serveOptions{listen: "127.0.0.1"}, "not host:port"},
		{"no workers", serveOptions{listen: "127.0.0.1:1", workers: -1}, "at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.o
			if o.workers == 0 {
				o.workers = 1
			}
			o.queueSize = 1
			err := o.check()
			if tt.errHas == "" && err != nil || tt.errHas != "" && (err == nil || !strings.Contains(err.Error(), tt.errHas)) {
				t.Fatalf("check: %v, want %q", err, tt.errHas)
			}
			if err != nil && exitCode(err) != exitUsage {
				t.Errorf("exit code %d, want %d", exitCode(err), exitUsage)
			}
		})
	}
}

func TestServeRefusesClearTextOffLoopback(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := execute(context.Background(), nil, []string{"serve", "--listen", "0.0.0.0:8480", "--auth-file", writeTokens(t)}, strings.NewReader(""), &stdout, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), "not a loopback address") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}

func TestServeFlagsFromEnvironment(t *testing.T) {
	g := &globalOptions{}
	cmd := newServeCommand(g)
	env := map[string]string{"CLOUDPODS_LISTEN": "[::1]:9000", "CLOUDPODS_WORKERS": "7", "CLOUDPODS_DNS": "10.1.10.1,1.1.1.1", "CLOUDPODS_NODE": "pve2"}
	if err := cmd.Flags().Parse([]string{"--node", "pve3"}); err != nil {
		t.Fatal(err)
	}
	if err := flagsFromEnv(cmd.Flags(), func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	get := func(name string) string { return cmd.Flags().Lookup(name).Value.String() }
	if get("listen") != "[::1]:9000" || get("workers") != "7" || get("dns") != "[10.1.10.1,1.1.1.1]" || get("node") != "pve3" {
		t.Errorf("listen %s workers %s dns %s node %s", get("listen"), get("workers"), get("dns"), get("node"))
	}
	env["CLOUDPODS_WORKERS"] = "many"
	if err := flagsFromEnv(newServeCommand(g).Flags(), func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "CLOUDPODS_WORKERS") {
		t.Errorf("bad env value: %v", err)
	}
}

const serveTestToken = "panel-token-0123456789abcdef0123"

func writeTokens(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "serve.tokens")
	if err := os.WriteFile(p, []byte("# the panel\npanel:"+serveTestToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// quietFlows answers reads with nothing; the command test is about
// wiring, not flows.
type quietFlows struct{}

func (quietFlows) Create(ctx context.Context, req provisioner.CreateRequest) (provisioner.CreateResult, error) {
	return provisioner.CreateResult{VMID: req.Spec.VMID}, nil
}
func (quietFlows) Destroy(ctx context.Context, req provisioner.DestroyRequest) (provisioner.DestroyResult, error) {
	return provisioner.DestroyResult{VMID: req.VMID}, nil
}
func (quietFlows) Backup(ctx context.Context, req provisioner.BackupRequest) (provisioner.Backup, error) {
	return provisioner.Backup{VMID: req.VMID}, nil
}
func (quietFlows) Health(ctx context.Context, node string, vmid int, deep bool) (provisioner.Health, error) {
	return provisioner.Health{VMID: vmid, Node: node, State: provisioner.Healthy}, nil
}
func (quietFlows) List(ctx context.Context, tenant, status string) ([]provisioner.Pod, error) {
	return nil, nil
}
func (quietFlows) Inspect(ctx context.Context, node string, vmid int) (provisioner.DestroyResult, error) {
	return provisioner.DestroyResult{}, pve.ErrNotFound
}
func (quietFlows) NodeLimits(ctx context.Context, node string) (provisioner.NodeLimits, error) {
	return provisioner.NodeLimits{Node: node}, nil
}

// selfSigned writes a certificate for 127.0.0.1 and returns its files and
// a pool trusting it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cloudpods test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestRunServe serves over real loopback sockets, in clear and with TLS,
// and stops on the first signal.
func TestRunServe(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	tests := []struct {
		name   string
		o      serveOptions
		scheme string
		client *http.Client
	}{
		{"http on loopback", serveOptions{listen: "127.0.0.1:0"}, "http", &http.Client{}},
		{"https", serveOptions{listen: "127.0.0.1:0", tlsCert: certFile, tlsKey: keyFile}, "https",
			&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.o
			o.workers, o.queueSize, o.shutdownTimeout = 1, 1, 10*time.Second
			if err := o.check(); err != nil {
				t.Fatal(err)
			}
			addrs := make(chan net.Addr, 1)
			o.onListen = func(a net.Addr) { addrs <- a }
			store, err := service.OpenDirStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			tokens, err := service.LoadTokens(writeTokens(t))
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			log := logrus.New()
			log.SetOutput(&logs)
			log.SetFormatter(&logrus.JSONFormatter{})
			stop := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				done <- runServe(context.Background(), stop, &o, service.Options{Flows: quietFlows{}, AuthTokens: tokens, Store: store, Logger: log}, log)
			}()
			var base string
			select {
			case a := <-addrs:
				base = tt.scheme + "://" + a.String()
			case err := <-done:
				t.Fatalf("runServe ended early: %v", err)
			}
			get := func(path, token string) int {
				req, _ := http.NewRequest("GET", base+path, nil)
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				resp, err := tt.client.Do(req)
				if err != nil {
					t.Fatalf("GET %s: %v", path, err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode
			}
			if c := get("/healthz", ""); c != http.StatusOK {
				t.Errorf("/healthz: %d", c)
			}
			if c := get(service.Base, ""); c != http.StatusUnauthorized {
				t.Errorf("list without token: %d", c)
			}
			if c := get(service.Base, serveTestToken); c != http.StatusOK {
				t.Errorf("list with token: %d", c)
			}
			close(stop)
			if err := <-done; err != nil {
				t.Fatalf("runServe: %v", err)
			}
			if strings.Contains(logs.String(), serveTestToken) {
				t.Error("the log holds the bearer token")
			}
			if !strings.Contains(logs.String(), `"requester":"panel"`) {
				t.Errorf("the request log does not name the requester:\n%s", logs.String())
			}
		})
	}
}
