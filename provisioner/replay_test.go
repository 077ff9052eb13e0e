package provisioner_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/dnaeon/go-vcr.v4/pkg/recorder"

	"github.com/migrahosting/cloudpods/fixtures"
	"github.com/migrahosting/cloudpods/fixtures/pvesim"
	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/internal/simtest"
	"github.com/migrahosting/cloudpods/provisioner/pve"
	"github.com/migrahosting/cloudpods/provisioner/pve/goproxmox"
)

// Replay tests run the create flow against recorded PVE traffic: offline,
// with no polling sleeps. `make fixtures` re-records them (PVE_FIXTURE_MODE=
// record) against pvesim, or against a real PVE when PVE_URL, PVE_TOKEN_ID,
// PVE_TOKEN_SECRET and PVE_FINGERPRINT are set.

// replayClock and replayRand make runs repeatable: the marker in the clone
// request and the console markers must be byte-identical to the recording.
var replayClock = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

type seededReader struct{ r *rand.ChaCha8 }

func (s seededReader) Read(p []byte) (int, error) { return s.r.Read(p) }

func newSeeded() seededReader {
	return seededReader{rand.NewChaCha8([32]byte{'c', 'l', 'o', 'u', 'd', 'p', 'o', 'd', 's'})}
}

type replayCase struct {
	name   string
	faults []pvesim.Fault
	check  func(t *testing.T, res provisioner.CreateResult, err error)
}

func TestReplayCreate(t *testing.T) {
	runReplay(t, replayCase{name: "create", check: func(t *testing.T, res provisioner.CreateResult, err error) {
		if err != nil || res.Status != "running" || res.IP != "10.1.10.91/24" {
			t.Fatalf("create = %+v, %v", res, err)
		}
	}})
}

func TestReplayCloneFailure(t *testing.T) {
	runReplay(t, replayCase{name: "clone-failure",
		faults: []pvesim.Fault{{Method: "POST", Path: "/nodes/pve/lxc/9000/clone", Kind: "taskfail", Message: "clone failed: zfs error: out of space"}},
		check: func(t *testing.T, res provisioner.CreateResult, err error) {
			var te *pve.TaskError
			if !errors.As(err, &te) || !strings.Contains(te.ExitStatus, "out of space") {
				t.Fatalf("err = %v, want the clone task's error", err)
			}
			var se *provisioner.StepError
			if !errors.As(err, &se) || se.Step != provisioner.StepClone {
				t.Fatalf("err = %v, want a clone step error", err)
			}
		}})
}

func TestReplayLockContention(t *testing.T) {
	runReplay(t, replayCase{name: "lock-contention",
		faults: []pvesim.Fault{{Method: "POST", Path: "/nodes/pve/lxc/9000/clone", Nth: 1, Times: 2, Kind: "lock", Message: "CT is locked (disk)"}},
		check: func(t *testing.T, res provisioner.CreateResult, err error) {
			if err != nil || res.Status != "running" {
				t.Fatalf("create after lock contention = %+v, %v", res, err)
			}
		}})
}

func runReplay(t *testing.T, tc replayCase) {
	dir := filepath.Join("testdata", "cassettes")
	cassette := filepath.Join(dir, tc.name)
	termPath := cassette + ".term.json"
	mode := fixtures.ModeFromEnv(os.Getenv)

	var (
		api     pve.API
		real    http.RoundTripper
		url     = "https://pve.replay.invalid:8006"
		against string
		cleanup []func()
	)
	tokenID, secret := simtest.TokenID, simtest.TokenSecret
	tlsOpts := goproxmox.TLSOptions{}
	if mode == recorder.ModeRecordOnly {
		if os.Getenv("PVE_URL") != "" {
			url, tokenID, secret = os.Getenv("PVE_URL"), os.Getenv("PVE_TOKEN_ID"), os.Getenv("PVE_TOKEN_SECRET")
			tlsOpts.Fingerprint = os.Getenv("PVE_FINGERPRINT")
			against = "a real PVE (" + os.Getenv("PVE_FIXTURE_LABEL") + ")"
		} else {
			env := simtest.Start(t, func(c *pvesim.Config) { c.Faults = tc.faults })
			url, tlsOpts.Fingerprint = env.Sim.URL(), env.Sim.Fingerprint()
			against = "pvesim (fixtures/pvesim), PVE " + env.Sim.Version()
		}
		tlsCfg, err := tlsOpts.TLSConfig()
		if err != nil {
			t.Fatal(err)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tlsCfg
		real = tr
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rec, err := fixtures.NewRecorder(fixtures.RecorderOptions{Cassette: cassette, Mode: mode, Real: real, RecordedAgainst: against})
	if err != nil {
		t.Fatalf("recorder: %v (run `make fixtures` to record)", err)
	}
	client, err := goproxmox.New(goproxmox.Options{URL: url, TokenID: tokenID, TokenSecret: secret,
		HTTP: goproxmox.HTTPOptions{TLS: tlsOpts, Timeout: 10 * time.Second, Retries: 2, Base: rec}})
	if err != nil {
		t.Fatal(err)
	}
	var transcript *fixtures.Transcript
	if mode == recorder.ModeRecordOnly {
		transcript = &fixtures.Transcript{RecordedAgainst: against}
		api = &fixtures.RecordingAPI{API: client, T: transcript}
	} else {
		transcript, err = fixtures.LoadTranscript(termPath)
		if err != nil {
			t.Fatalf("console transcript: %v (run `make fixtures` to record)", err)
		}
		api = &fixtures.ReplayingAPI{API: client, T: transcript}
	}
	opts := provisioner.Options{
		Now:  func() time.Time { return replayClock },
		Rand: newSeeded(),
		Retry: pve.RetryPolicy{Attempts: 5, Base: time.Millisecond, Max: time.Millisecond,
			Sleep: func(context.Context, time.Duration) error { return nil }},
	}
	if mode != recorder.ModeRecordOnly {
		// The recording holds the polls PVE answered "running" to; replay
		// walks through them without waiting.
		opts.Wait = pve.WaitOptions{Clock: pve.NoSleep{}}
	}
	prov := simtest.Provisioner(api, opts)
	start := time.Now()
	res, cerr := prov.Create(context.Background(), provisioner.CreateRequest{Spec: seedSpec(9101, "migra-client-01", 91)})
	for _, f := range cleanup {
		f()
	}
	if err := rec.Stop(); err != nil {
		t.Fatalf("recorder stop: %v", err)
	}
	if mode == recorder.ModeRecordOnly {
		if err := transcript.Save(termPath); err != nil {
			t.Fatal(err)
		}
	}
	tc.check(t, res, cerr)
	t.Logf("%s: %s in %s", tc.name, mode, time.Since(start).Round(time.Millisecond))
}

// TestFixturesHoldNoSecret greps every cassette and transcript for
// credentials.
func TestFixturesHoldNoSecret(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "cassettes", "*"))
	if len(files) == 0 {
		t.Fatal("no cassettes: run `make fixtures`")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{simtest.TokenSecret, "PVEAPIToken", "PVEVNC:", "PVE:cloudpods", "PVEAuthCookie", "simroot"} {
			if strings.Contains(string(b), secret) {
				t.Errorf("%s holds %q", f, secret)
			}
		}
		if strings.HasSuffix(f, ".yaml") && !strings.HasPrefix(strings.TrimPrefix(string(b), "---\n"), "# recorded against: ") {
			t.Errorf("%s does not say what it was recorded against", f)
		}
	}
}
