package provisioner_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/internal/simtest"
	"github.com/migrahosting/cloudpods/provisioner/pve/goproxmox"
)

// leakedCredential matches a token or ticket wherever it is written down:
// the token header (PVEAPIToken=user@realm!name=SECRET), a login cookie
// (PVEAuthCookie=PVE:…), and the test token's secret itself.
var leakedCredential = regexp.MustCompile(`PVEAPIToken=[^\s"'=]+=[^\s"']+|PVEAuthCookie=PVE:|` + regexp.QuoteMeta(simtest.TokenSecret))

// TestTokenSecretIsNeverWrittenDown: debug logs (in-process and a CLI-like
// child's stderr), progress output, errors, the audit log and every
// recorded cassette in the module hold no credential, through retries,
// failures and rollbacks.
func TestTokenSecretIsNeverWrittenDown(t *testing.T) {
	env := crashEnv(t)
	must(t, env.sim.AddFault(pvesim.Fault{Method: "POST", Path: "/nodes/pve/lxc/9000/clone", Nth: 1, Times: 2, Kind: pvesim.FaultLock}))
	must(t, env.sim.AddFault(pvesim.Fault{Method: "PUT", Path: "/nodes/pve/lxc/*/config", Nth: 1, Kind: pvesim.Fault596, After: true}))
	must(t, env.sim.AddFault(pvesim.Fault{Method: "GET", Path: "/cluster/resources", Nth: 1, Kind: pvesim.FaultDrop}))
	audit := filepath.Join(t.TempDir(), "audit.log")

	// A CLI-like process, debug logs on stderr, JSON progress on stdout.
	c := startChild(t, env.childEnv(audit, "migra-client-01"))
	var stdout bytes.Buffer
	if code := c.finish(t); code != 0 {
		t.Fatalf("child exited %d: %s", code, c.result.Error)
	}
	for _, ev := range c.events {
		stdout.WriteString(ev.Message + "\n")
	}
	stdout.WriteString(c.result.Error)

	// In process, a failure with rollback, logged at debug level.
	var logs bytes.Buffer
	log := logrus.New()
	log.SetOutput(&logs)
	log.SetLevel(logrus.DebugLevel)
	api, err := goproxmox.New(goproxmox.Options{URL: env.sim.URL(), TokenID: simtest.TokenID, TokenSecret: simtest.TokenSecret, Logger: log,
		HTTP: goproxmox.HTTPOptions{TLS: goproxmox.TLSOptions{Fingerprint: env.sim.Fingerprint()}, Retries: 2}})
	if err != nil {
		t.Fatal(err)
	}
	must(t, env.sim.AddFault(pvesim.Fault{Method: "POST", Path: "/nodes/pve/lxc/*/status/start", Nth: 1, Kind: pvesim.Fault500, Message: "unable to start"}))
	must(t, env.sim.AddFault(pvesim.Fault{Method: "GET", Path: "/nodes/pve/lxc/*/status/current", Nth: 2, Kind: pvesim.Fault596}))
	prov := provisioner.New(api, provisioner.Options{Retry: simtest.FastRetry, Logger: log, Audit: &provisioner.AuditLog{Path: audit, TokenID: simtest.TokenID},
		Addresses: provisioner.IPAM{Allocator: env.allocator(t, api)}})
	spec := provisioner.DefaultSpec()
	spec.Hostname = "migra-client-02"
	var progress bytes.Buffer
	_, err = prov.Create(context.Background(), provisioner.CreateRequest{Spec: spec, Reporter: provisioner.ReporterFunc(func(ev provisioner.Event) {
		progress.WriteString(ev.Message + "\n")
	})})
	if err == nil {
		t.Fatal("the create with a failing start succeeded")
	}
	auditText, err2 := os.ReadFile(audit)
	if err2 != nil {
		t.Fatal(err2)
	}
	for name, text := range map[string]string{
		"child stderr (debug logs)": c.stderr.String(), "child progress": stdout.String(), "in-process debug log": logs.String(),
		"in-process progress": progress.String(), "error": err.Error(), "audit log": string(auditText),
	} {
		if text == "" && name != "child progress" {
			t.Errorf("%s is empty: nothing was checked", name)
		}
		if m := leakedCredential.FindString(text); m != "" {
			t.Errorf("%s holds a credential: %q", name, m)
		}
	}

	cassettes := 0
	root := filepath.Join("..")
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.Contains(filepath.ToSlash(path), "/testdata/cassettes/") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		cassettes++
		if m := leakedCredential.Find(b); m != nil {
			t.Errorf("cassette %s holds a credential: %q", path, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("checked %d cassette files, %d bytes of child logs, %d of in-process logs", cassettes, len(c.stderr.String()), logs.Len())
}
