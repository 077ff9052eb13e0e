package provisioner

import (
	"bytes"
	"compress/gzip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/migrahosting/cloudpods/fixtures/openwrtmirror"
	"github.com/migrahosting/cloudpods/fixtures/vmimages"
)

// TestDecompressOpenWrtImage: the gzip stream of an OpenWrt image is read
// to its end and the metadata after it ignored (zcat exits 2 on it, and
// Go's default multistream reader fails on it), giving the disk; what is
// no disk image is refused.
func TestDecompressOpenWrtImage(t *testing.T) {
	dir := t.TempDir()
	img, err := openwrtmirror.Image("24.10.0", true)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "owrt.img.gz")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(file, img, 0o644))
	if zr, err := gzip.NewReader(bytes.NewReader(img)); err == nil {
		if _, err := new(bytes.Buffer).ReadFrom(zr); err == nil {
			t.Error("the default multistream reader read the image without complaint: the fixture has no trailing metadata")
		}
	}
	if zcat, err := exec.LookPath("zcat"); err == nil {
		if err := exec.Command(zcat, file).Run(); err == nil {
			t.Error("zcat read the image without complaint: the fixture has no trailing metadata")
		}
	}
	raw, size, sum, err := decompressOpenWrtImage(file)
	defer os.Remove(raw)
	disk := openwrtmirror.Disk("24.10.0", true)
	if err != nil || size != int64(len(disk)) || sum != vmimages.SHA256(disk) {
		t.Fatalf("decompress: %d bytes, %s, %v", size, sum, err)
	}
	var plain bytes.Buffer
	zw := gzip.NewWriter(&plain)
	zw.Write([]byte(strings.Repeat("not a disk ", 100)))
	zw.Close()
	must(os.WriteFile(file, plain.Bytes(), 0o644))
	raw2, _, _, err := decompressOpenWrtImage(file)
	defer os.Remove(raw2)
	if err == nil || !strings.Contains(err.Error(), "does not decompress to a disk image") {
		t.Errorf("not a disk: %v", err)
	}
	must(os.WriteFile(file, []byte("plain text"), 0o644))
	if _, _, _, err := decompressOpenWrtImage(file); err == nil || !strings.Contains(err.Error(), "not gzip-compressed") {
		t.Errorf("not gzip: %v", err)
	}
}
