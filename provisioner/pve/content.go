package pve

import (
	"fmt"
	"io"
	"strings"
)

// Storage content: PVE's appliance catalogue, files a storage fetches for
// itself (download-url, POST aplinfo) or is sent (upload), for the
// content types a token may put on a file storage: vztmpl, iso, import.

// Appliance is one entry of PVE's appliance catalogue (GET
// /nodes/{node}/aplinfo): the fields of the index's .dat file, as
// pve-manager's APLInfo.pm reads them.
type Appliance struct {
	// Template is the archive's file name, e.g.
	// debian-12-standard_12.7-1_amd64.tar.zst: what POST aplinfo takes.
	Template     string
	Package      string
	Version      string
	OS           string
	Section      string // system | turnkeylinux
	Type         string // lxc
	Headline     string
	Description  string
	Location     string // the URL PVE downloads from
	Architecture string
	// SHA512 and MD5 are the index's checksums; PVE verifies the download
	// against them (hash_required).
	SHA512 string
	MD5    string
}

// Checksum is the strongest checksum the catalogue gives for the entry,
// the one PVE's download verifies.
func (a Appliance) Checksum() Checksum {
	if a.SHA512 != "" {
		return Checksum{Algorithm: "sha512", Hex: a.SHA512}
	}
	if a.MD5 != "" {
		return Checksum{Algorithm: "md5", Hex: a.MD5}
	}
	return Checksum{}
}

// Checksum is a file's digest as PVE's checksum-algorithm and checksum
// parameters carry it.
type Checksum struct {
	Algorithm string // md5 sha1 sha224 sha256 sha384 sha512
	Hex       string
}

// IsZero reports a checksum that was not given.
func (c Checksum) IsZero() bool { return c.Algorithm == "" && c.Hex == "" }

// String is ALGO:HEX, the form --checksum takes.
func (c Checksum) String() string {
	if c.IsZero() {
		return ""
	}
	return c.Algorithm + ":" + c.Hex
}

// Equal compares two checksums of one algorithm, hex case aside.
func (c Checksum) Equal(o Checksum) bool {
	return c.Algorithm == o.Algorithm && strings.EqualFold(c.Hex, o.Hex)
}

// checksumHexLen is each algorithm's digest length in hex digits: PVE's
// checksum-algorithm enum (pve-storage Status.pm download_url).
var checksumHexLen = map[string]int{"md5": 32, "sha1": 40, "sha224": 56, "sha256": 64, "sha384": 96, "sha512": 128}

// ParseChecksum reads ALGO:HEX (sha256:9f86…), refusing what PVE's
// download-url would refuse; the error is one sentence naming the fix.
func ParseChecksum(s string) (Checksum, error) {
	algo, hex, ok := strings.Cut(strings.TrimSpace(s), ":")
	algo = strings.ToLower(algo)
	if !ok || algo == "" || hex == "" {
		return Checksum{}, fmt.Errorf("checksum %q is not ALGO:HEX: write it as e.g. sha256:9f86d081…", s)
	}
	n, known := checksumHexLen[algo]
	if !known {
		return Checksum{}, fmt.Errorf("checksum algorithm %q is not one PVE checks: use md5, sha1, sha224, sha256, sha384 or sha512", algo)
	}
	if len(hex) != n || strings.Trim(strings.ToLower(hex), "0123456789abcdef") != "" {
		return Checksum{}, fmt.Errorf("checksum %q is not a %s digest: give its %d hex digits", s, algo, n)
	}
	return Checksum{Algorithm: algo, Hex: strings.ToLower(hex)}, nil
}

// DownloadOptions are download-url's parameters (pve-storage
// API2/Storage/Status.pm): PVE fetches URL itself into the storage.
type DownloadOptions struct {
	URL string
	// Content is the content type: vztmpl, iso or import.
	Content string
	// Filename is the file's name on the storage; PVE normalises it.
	Filename string
	// Checksum, when set, is verified by PVE before the file is renamed
	// into place; an existing file with this checksum is kept ("OK, got
	// correct file already").
	Checksum Checksum
	// InsecureTLS sends verify-certificates=0.
	InsecureTLS bool
	// Compression is what PVE decompresses after the download (iso only).
	Compression string
}

// UploadOptions are upload's parameters: the file travels in the request
// (multipart form data), Size bytes from Body.
type UploadOptions struct {
	Content  string
	Filename string
	Checksum Checksum
	Body     io.Reader
	Size     int64
}
