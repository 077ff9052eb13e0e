package provisioner_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// contentEnv is the fake with a template storage and one catalogue entry.
func contentEnv(t *testing.T) (*fastEnv, pve.Appliance) {
	env := newFastEnv(t)
	env.api.StorageList = append(env.api.StorageList,
		pve.Storage{ID: "local", Type: "dir", Content: []string{"iso", "vztmpl", "import"}, Active: true, Enabled: true, Total: 100 << 30, Used: 10 << 30, Avail: 90 << 30})
	a := env.api.AddAppliance("debian-12-standard_12.7-1_amd64.tar.zst", []byte("debian 12 archive"))
	return env, a
}

func sha256Of(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestContentFromTheCatalogueIsReusedWhenPVEConfirmsIt(t *testing.T) {
	env, a := contentEnv(t)
	prov := env.withoutIPAM(provisioner.Options{})
	req := provisioner.ContentRequest{Node: "pve", Storage: "local", Content: "vztmpl", Appliance: a.Template}
	res, err := prov.FetchContent(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.VolID != "local:vztmpl/"+a.Template || res.Cached || !res.Changed || res.Checksum != "sha512:"+a.SHA512 || res.Size != int64(len("debian 12 archive")) {
		t.Errorf("first download: %+v", res)
	}
	mark := env.api.CallCount()
	var ev events
	req.Reporter = &ev
	res, err = prov.FetchContent(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Cached || res.Changed {
		t.Errorf("second download: %+v", res)
	}
	// PVE is asked again, with the catalogue's checksum, and reuses the file.
	if got, want := env.api.Mutations(mark), []string{"DownloadAppliance local " + a.Template}; !reflect.DeepEqual(got, want) {
		t.Errorf("second run called %v, want %v", got, want)
	}
	if ph := ev.lifecycle(provisioner.StepTransfer); len(ph) != 2 || ph[1] != provisioner.PhaseSkip {
		t.Errorf("transfer phases %v, want start, skip", ph)
	}
}

func TestContentChecksumMismatch(t *testing.T) {
	env, a := contentEnv(t)
	prov := env.withoutIPAM(provisioner.Options{})
	wrong := pve.Checksum{Algorithm: "sha512", Hex: strings.Repeat("0", 128)}
	_, err := prov.FetchContent(context.Background(), provisioner.ContentRequest{Node: "pve", Storage: "local", Content: "vztmpl", Appliance: a.Template, Checksum: wrong})
	if !errors.Is(err, provisioner.ErrChecksumMismatch) || !strings.Contains(err.Error(), wrong.String()) || !strings.Contains(err.Error(), a.SHA512) {
		t.Errorf("catalogue entry with a wrong sha512: %v", err)
	}
	if got := env.api.Mutations(0); len(got) != 0 {
		t.Errorf("a mismatch against the catalogue changed %v", got)
	}

	body := []byte("custom template")
	env.api.Serve("https://mirror.test/custom_1.0_amd64.tar.zst", body)
	bad := pve.Checksum{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}
	_, err = prov.FetchContent(context.Background(), provisioner.ContentRequest{Node: "pve", Storage: "local", Content: "vztmpl",
		URL: "https://mirror.test/custom_1.0_amd64.tar.zst", Checksum: bad})
	if !errors.Is(err, provisioner.ErrChecksumMismatch) || !strings.Contains(err.Error(), "expected sha256:"+bad.Hex+", got sha256:"+sha256Of(body)) ||
		!strings.Contains(err.Error(), "nothing was stored") || provisioner.KindOf(err) != provisioner.KindFailed {
		t.Errorf("URL with a wrong sha256: %v (kind %s)", err, provisioner.KindOf(err))
	}
	if _, ok := env.api.File("local:vztmpl/custom_1.0_amd64.tar.zst"); ok {
		t.Error("a file was left after the mismatch")
	}
}

func TestContentURLNeedsAChecksumOrNoVerify(t *testing.T) {
	env, _ := contentEnv(t)
	prov := env.withoutIPAM(provisioner.Options{})
	u := "https://mirror.test/custom_1.0_amd64.tar.zst"
	env.api.Serve(u, []byte("custom"))
	req := provisioner.ContentRequest{Node: "pve", Storage: "local", Content: "vztmpl", URL: u}
	_, err := prov.FetchContent(context.Background(), req)
	if provisioner.KindOf(err) != provisioner.KindInvalid || !strings.Contains(err.Error(), "pass --checksum ALGO:HEX") || env.api.CallCount() != 0 {
		t.Errorf("unverifiable URL: %v (kind %s, %d calls)", err, provisioner.KindOf(err), env.api.CallCount())
	}
	req.NoVerify = true
	if res, err := prov.FetchContent(context.Background(), req); err != nil || res.Cached {
		t.Fatalf("--no-verify: %+v %v", res, err)
	}
	// Again: PVE would refuse to overwrite a file without a checksum, so
	// the copy is taken as it is, with a warning.
	mark := env.api.CallCount()
	res, err := prov.FetchContent(context.Background(), req)
	if err != nil || !res.Cached || len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "unverified") {
		t.Fatalf("--no-verify again: %+v %v", res, err)
	}
	if got := env.api.Mutations(mark); len(got) != 0 {
		t.Errorf("the second --no-verify run changed %v", got)
	}
}

func TestContentURLNeedsTheNetworkPrivilege(t *testing.T) {
	env, _ := contentEnv(t)
	delete(env.api.Perms["/"], "Sys.AccessNetwork")
	delete(env.api.Perms["/"], "Sys.Modify")
	prov := env.withoutIPAM(provisioner.Options{})
	_, err := prov.FetchContent(context.Background(), provisioner.ContentRequest{Node: "pve", Storage: "local", Content: "vztmpl",
		URL: "https://mirror.test/x_1_amd64.tar.zst", Checksum: pve.Checksum{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}})
	if provisioner.KindOf(err) != provisioner.KindPreflight || !strings.Contains(err.Error(), "Sys.AccessNetwork on /nodes/pve (or Sys.Audit on / with Sys.Modify on /)") {
		t.Errorf("without Sys.AccessNetwork: %v", err)
	}
}

func TestContentUploadThenVerifiedInPlace(t *testing.T) {
	env, _ := contentEnv(t)
	prov := env.withoutIPAM(provisioner.Options{})
	file := filepath.Join(t.TempDir(), "openwrt-24.10.0-x86-64-rootfs.tar.gz")
	body := []byte("openwrt rootfs")
	if err := os.WriteFile(file, body, 0o644); err != nil {
		t.Fatal(err)
	}
	origin := "https://downloads.openwrt.org/releases/24.10.0/targets/x86/64/openwrt-24.10.0-x86-64-rootfs.tar.gz"
	req := provisioner.ContentRequest{Node: "pve", Storage: "auto", Content: "vztmpl", File: file, URL: origin}
	res, err := prov.FetchContent(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Source != "upload" || res.Checksum != "sha256:"+sha256Of(body) || res.VolID != "local:vztmpl/openwrt-24.10.0-x86-64-rootfs.tar.gz" {
		t.Errorf("upload: %+v", res)
	}
	if b, _ := env.api.File(res.VolID); string(b) != string(body) {
		t.Errorf("stored %q", b)
	}
	// Again: PVE checks the copy through download-url with the checksum
	// and fetches nothing (the fake serves nothing at origin).
	mark := env.api.CallCount()
	res, err = prov.FetchContent(context.Background(), req)
	if err != nil || !res.Cached || res.Changed {
		t.Fatalf("upload again: %+v %v", res, err)
	}
	if got := env.api.Mutations(mark); !reflect.DeepEqual(got, []string{"DownloadURL local openwrt-24.10.0-x86-64-rootfs.tar.gz"}) {
		t.Errorf("second run called %v", got)
	}
	// A different copy on the storage is replaced by an upload.
	env.api.PutFile(res.VolID, []byte("tampered"))
	res, err = prov.FetchContent(context.Background(), req)
	if err != nil || res.Cached || !res.Changed || len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "uploading the verified file over it") {
		t.Fatalf("over a different copy: %+v %v", res, err)
	}
	if b, _ := env.api.File(res.VolID); string(b) != string(body) {
		t.Errorf("stored %q after the replacement", b)
	}
}
