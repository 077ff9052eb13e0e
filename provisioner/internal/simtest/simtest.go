// Package simtest starts the PVE simulator for tests and connects the
// production adapter to it, pinned by the simulator's certificate.
package simtest

import (
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/pve"
	"github.com/migrahosting/cloudpods/provisioner/pve/goproxmox"
)

// TokenID and TokenSecret are the simulator's test token.
const (
	TokenID     = "cloudpods@pve!provisioner"
	TokenSecret = "5f0c2a8e-7d1b-4c3e-9a64-0b9e3f2d1c7a"
)

// Env is one simulator and a client for it.
type Env struct {
	Sim     *pvesim.Sim
	API     *goproxmox.Client
	DataDir string
}

// Start runs a simulator with fast tasks. mutate adjusts the config. Under
// -short (the fast tier: flow logic against pvetest's fake) the test is
// skipped.
func Start(t testing.TB, mutate func(*pvesim.Config)) *Env {
	t.Helper()
	SkipIfShort(t)
	cfg := pvesim.Config{
		Listen:        "127.0.0.1:0",
		Tokens:        []pvesim.Token{{ID: TokenID, Secret: TokenSecret}},
		Users:         []pvesim.User{{ID: "root@pam", Password: "simroot"}},
		Scale:         0.01,
		AuthFailDelay: -1,
		DataDir:       filepath.Join(t.TempDir(), "sim"),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	sim, err := pvesim.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start pvesim: %v", err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	api, err := goproxmox.New(goproxmox.Options{URL: sim.URL(), TokenID: TokenID, TokenSecret: TokenSecret,
		HTTP: goproxmox.HTTPOptions{TLS: goproxmox.TLSOptions{Fingerprint: sim.Fingerprint()}, Timeout: 10 * time.Second, Retries: 2}})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return &Env{Sim: sim, API: api, DataDir: cfg.DataDir}
}

// SkipIfShort skips an end-to-end test under -short, which runs the fast
// tier alone.
func SkipIfShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test against pvesim: skipped by -short (the fast tier)")
	}
}

// Quiet is a logger that drops everything.
func Quiet() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// FastRetry keeps tests quick: same attempts, tiny waits.
var FastRetry = pve.RetryPolicy{Attempts: 10, Base: 5 * time.Millisecond, Max: 20 * time.Millisecond}

// Provisioner wires a provisioner over api with test timings.
func Provisioner(api pve.API, opts provisioner.Options) *provisioner.Provisioner {
	if opts.Retry.Attempts == 0 {
		opts.Retry = FastRetry
	}
	if opts.TaskTimeout == 0 {
		opts.TaskTimeout = 30 * time.Second
	}
	if opts.VerifyTimeout == 0 {
		opts.VerifyTimeout = 10 * time.Second
	}
	if opts.ExecTimeout == 0 {
		opts.ExecTimeout = 20 * time.Second
	}
	opts.Logger = Quiet()
	return provisioner.New(api, opts)
}
