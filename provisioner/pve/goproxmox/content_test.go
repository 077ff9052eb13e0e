package goproxmox_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
	"github.com/migrahosting/cloudpods/provisioner/internal/simtest"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// TestContentCallsAgainstTheSimulator: the catalogue, a multipart upload
// with its checksum (refused when the sum is wrong), removing the volume,
// and creating a container from the uploaded archive.
func TestContentCallsAgainstTheSimulator(t *testing.T) {
	env := simtest.Start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	api := env.API
	wait := func(upid string) (pve.TaskStatus, error) {
		return pve.WaitTask(ctx, api, "pve", upid, pve.WaitOptions{Timeout: 30 * time.Second, MinInterval: 5 * time.Millisecond})
	}

	apps, err := api.Appliances(ctx, "pve")
	if err != nil {
		t.Fatal(err)
	}
	var debian *pve.Appliance
	for i := range apps {
		if apps[i].Template == "debian-12-standard_12.7-1_amd64.tar.zst" {
			debian = &apps[i]
		}
	}
	if debian == nil || len(debian.SHA512) != 128 || debian.Checksum().Algorithm != "sha512" || debian.OS != "debian-12" || debian.Type != "lxc" {
		t.Fatalf("catalogue entry: %+v", debian)
	}

	data, _ := pvesim.ApplianceArchive(debian.Template)
	sum := sha256.Sum256(data)
	good := pve.Checksum{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	bad := pve.Checksum{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}
	upid, err := api.UploadFile(ctx, "pve", "local", pve.UploadOptions{Content: "vztmpl", Filename: "custom_1.0_amd64.tar.zst", Checksum: bad, Body: bytes.NewReader(data), Size: int64(len(data))})
	if err != nil {
		t.Fatal(err)
	}
	var te *pve.TaskError
	if _, err := wait(upid); !errors.As(err, &te) || !strings.Contains(te.ExitStatus, "checksum mismatch: got '"+good.Hex+"'") {
		t.Fatalf("upload with a wrong checksum: %v", err)
	}
	upid, err = api.UploadFile(ctx, "pve", "local", pve.UploadOptions{Content: "vztmpl", Filename: "custom_1.0_amd64.tar.zst", Checksum: good, Body: bytes.NewReader(data), Size: int64(len(data))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wait(upid); err != nil {
		t.Fatal(err)
	}
	vols, err := api.StorageContent(ctx, "pve", "local", "vztmpl")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, v := range vols {
		if v.VolID == "local:vztmpl/custom_1.0_amd64.tar.zst" && v.Size == int64(len(data)) && v.Content == "vztmpl" && v.Format == "tzst" {
			found = true
		}
	}
	if !found {
		t.Fatalf("uploaded volume not listed: %+v", vols)
	}

	// download-url of the same name with its checksum: PVE keeps the file.
	// The default token has no Sys.AccessNetwork: refused.
	if _, err := api.DownloadURL(ctx, "pve", "local", pve.DownloadOptions{URL: "http://127.0.0.1:1/x.tar.zst", Content: "vztmpl", Filename: "custom_1.0_amd64.tar.zst", Checksum: good}); !errors.Is(err, pve.ErrForbidden) {
		t.Errorf("download-url without Sys.AccessNetwork: %v", err)
	}

	upid, err = api.CreateGuest(ctx, pve.CT("pve", 310), map[string]string{"ostemplate": "local:vztmpl/custom_1.0_amd64.tar.zst", "hostname": "c310",
		"rootfs": "clients-main:2", "unprivileged": "1", "net0": "name=eth0,bridge=vmbr0,ip=dhcp", "password": "s3cret-pw"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wait(upid); err != nil {
		t.Fatal(err)
	}
	cfg, err := api.GuestConfig(ctx, pve.CT("pve", 310))
	if err != nil || cfg.Get("unprivileged") != "1" || cfg.Get("ostype") != "debian" || cfg.Get("rootfs") != "clients-main:subvol-310-disk-0,size=2G" {
		t.Fatalf("CT 310: %v %v", cfg.Values, err)
	}

	upid, err = api.DeleteVolume(ctx, "pve", "local:vztmpl/custom_1.0_amd64.tar.zst")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wait(upid); err != nil {
		t.Fatal(err)
	}
	if _, ok := env.Sim.ContentFile("local:vztmpl/custom_1.0_amd64.tar.zst"); ok {
		t.Error("the volume is still there after DeleteVolume")
	}
}
