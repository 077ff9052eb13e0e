package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretFilesMustBePrivate: a token file, console password file or
// auth file that its group or others may read is refused before anything
// is contacted, with the chmod that fixes it.
func TestSecretFilesMustBePrivate(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	settings := write("cloudpods.env", "# empty\n", 0o644)
	// Nothing listens there: a refusal must come before any connection.
	conn := []string{"--config", settings, "--pve-url", "https://127.0.0.1:1", "--token-id", "a@pve!b", "--fingerprint", strings.Repeat("AA:", 31) + "AA"}
	private := write("token.ok", "secret\n", 0o600)
	tests := []struct {
		name string
		args []string
		path string
	}{
		{"token file readable by all", []string{"list", "--token-file", write("token", "secret\n", 0o644)}, filepath.Join(dir, "token")},
		{"token file readable by the group", []string{"list", "--token-file", write("token.g", "secret\n", 0o640)}, filepath.Join(dir, "token.g")},
		{"console password file", []string{"list", "--token-file", private, "--console-user", "c@pve", "--console-password-file", write("console", "pw\n", 0o604)}, filepath.Join(dir, "console")},
		{"settings file holding the secret", []string{"list", "--config", write("with-secret.env", "PVE_TOKEN_SECRET=s3cret\n", 0o644)}, filepath.Join(dir, "with-secret.env")},
		{"auth file", []string{"serve", "--token-file", private, "--auth-file", write("serve tokens", "panel:"+serveTestToken+"\n", 0o644), "--state-dir", filepath.Join(dir, "jobs")}, filepath.Join(dir, "serve tokens")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := execute(context.Background(), nil, append(append([]string{}, conn...), tt.args...), strings.NewReader(""), &out, &errb)
			want := "run `chmod 600 " + shellQuote(tt.path) + "`"
			if code != exitUsage || !strings.Contains(errb.String(), want) || strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
				t.Fatalf("exit %d, stderr %q; want exit 2 and one line saying %q", code, errb.String(), want)
			}
		})
	}
	if shellQuote(filepath.Join(dir, "serve tokens")) == filepath.Join(dir, "serve tokens") {
		t.Error("a path with a space is not quoted for the shell")
	}
}
