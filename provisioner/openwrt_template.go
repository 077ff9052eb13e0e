package provisioner

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// An OpenWrt container template from the official x86-64 rootfs tarball:
// the version from the mirror's .versions.json (the newest 24.x for
// "latest"), the tarball's sha256 from the release's sha256sums, fetched
// here and checked — size, gzip, tar, and that it is that OpenWrt release
// for x86/64 — then uploaded as vztmpl with its sha256, which PVE checks
// again on arrival. A copy already on the storage is verified by PVE
// through download-url with the sha256 (nothing is fetched when it
// matches) when the token may use download-url; otherwise it is uploaded
// again (an upload overwrites).

// DefaultOpenWrtMirror is the official download server.
const DefaultOpenWrtMirror = "https://downloads.openwrt.org"

// Steps of openwrt template.
const (
	StepResolve = "resolve"
	StepFetch   = "fetch"
	StepCheck   = "check"
)

// OpenWrtMajor is the release line "latest" picks from.
const OpenWrtMajor = 24

// Size bounds of an x86-64 rootfs tarball: real ones are a few MiB.
const (
	minRootfsBytes = 1 << 10
	maxRootfsBytes = 512 << 20
)

// OpenWrtTemplateRequest asks for an OpenWrt release as a container
// template.
type OpenWrtTemplateRequest struct {
	Node    string
	Storage string
	// Version is a release (24.10.0) or "latest".
	Version string
	// Mirror is the download server's base URL.
	Mirror string
	// HTTP fetches from the mirror; nil is a client with a 10-minute
	// timeout.
	HTTP      *http.Client
	Reporter  Reporter
	Stop      <-chan struct{}
	Requester string
}

// OpenWrtTemplateResult is what openwrt template reports.
type OpenWrtTemplateResult struct {
	Version string `json:"version"`
	URL     string `json:"url"`
	SHA256  string `json:"sha256"`
	ContentResult
}

type openwrtTemplateRun struct {
	p       *Provisioner
	req     OpenWrtTemplateRequest
	run     *flow.Run
	res     OpenWrtTemplateResult
	content *contentRun
	tmp     string
}

var openwrtVersionRE = regexp.MustCompile(`^\d+\.\d+\.\d+$`)

// OpenWrtRootfsName is the release's x86-64 rootfs tarball.
func OpenWrtRootfsName(version string) string { return "openwrt-" + version + "-x86-64-rootfs.tar.gz" }

// OpenWrtTemplate makes the container template.
func (p *Provisioner) OpenWrtTemplate(ctx context.Context, req OpenWrtTemplateRequest) (OpenWrtTemplateResult, error) {
	var t *openwrtTemplateRun
	run := p.newRun(flow.Options{Reporter: req.Reporter, Stop: req.Stop, Nothing: "nothing was stored", UndoBudget: p.opts.TaskTimeout + time.Minute,
		Audit: func(err error, took time.Duration) {
			p.auditContent("openwrt template", t.content.volid, req.Node, req.Requester, took, err)
		}})
	t = p.newOpenWrtTemplateRun(req, run)
	defer t.cleanup()
	err := run.Execute(ctx, t.steps())
	t.res.ContentResult = t.content.res
	t.res.Steps, t.res.Warnings = run.Seconds(), run.Warnings()
	return t.res, err
}

// PlanOpenWrtTemplate is openwrt template's dry run: the mirror is read
// (versions, checksums), the storage chosen; nothing is fetched or sent.
func (p *Provisioner) PlanOpenWrtTemplate(ctx context.Context, req OpenWrtTemplateRequest) ([]PlannedCall, []string, error) {
	t := p.newOpenWrtTemplateRun(req, p.newRun(flow.Options{Reporter: req.Reporter, Stop: req.Stop}))
	calls, err := t.run.DryRun(ctx, t.steps())
	return calls, []string{t.res.URL, t.content.res.StorageReason}, err
}

func (p *Provisioner) newOpenWrtTemplateRun(req OpenWrtTemplateRequest, run *flow.Run) *openwrtTemplateRun {
	if req.Mirror == "" {
		req.Mirror = DefaultOpenWrtMirror
	}
	if req.HTTP == nil {
		req.HTTP = &http.Client{Timeout: 10 * time.Minute}
	}
	t := &openwrtTemplateRun{p: p, req: req, run: run}
	t.content = p.newContentRun(ContentRequest{Node: req.Node, Storage: req.Storage, Content: "vztmpl"}, run)
	t.content.prepare = func(ctx context.Context) error {
		if t.tmp != "" {
			return nil
		}
		return t.fetch(ctx)
	}
	return t
}

func (t *openwrtTemplateRun) steps() []flow.Step {
	return []flow.Step{
		{Name: StepValidate, ReadOnly: true, Run: t.validate},
		{Name: StepResolve, ReadOnly: true, Run: t.resolve},
		{Name: StepPreflight, ReadOnly: true, Run: t.content.preflight},
		{Name: StepFetch, Check: t.fetchNeeded, Run: t.fetch, Plan: t.planFetch},
		{Name: StepTransfer, Check: t.content.transferDone, Run: t.content.transfer, Plan: t.content.planTransfer, Undo: t.content.undoTransfer},
		{Name: StepVerify, Run: t.content.verify, Plan: t.content.planVerify},
	}
}

func (t *openwrtTemplateRun) cleanup() {
	if t.tmp != "" {
		_ = os.Remove(t.tmp)
	}
}

func (t *openwrtTemplateRun) validate(context.Context) error {
	v := t.req.Version
	if v != "latest" && !openwrtVersionRE.MatchString(v) {
		return problemf(ErrInvalidSpec, "--version %q is not an OpenWrt release such as 24.10.0, or latest", v)
	}
	u, err := url.Parse(t.req.Mirror)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return problemf(ErrInvalidSpec, "--mirror %q is not an http(s) URL such as %s", t.req.Mirror, DefaultOpenWrtMirror)
	}
	return nil
}

// openwrtMirror reads an OpenWrt download server laid out like
// downloads.openwrt.org: .versions.json, each release's x86/64 target
// directory with its sha256sums. The router template and the router VM
// both take their artefacts from it.
type openwrtMirror struct {
	base string
	http *http.Client
}

func (t *openwrtTemplateRun) mirror() openwrtMirror {
	return openwrtMirror{base: t.req.Mirror, http: t.req.HTTP}
}

// get fetches a small file from the mirror.
func (m openwrtMirror) get(ctx context.Context, rel string) ([]byte, error) {
	u := strings.TrimSuffix(m.base, "/") + "/" + rel
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := m.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("the mirror did not answer for %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, problemf(ErrPreflight, "the mirror answered %s for %s: check --mirror and --version", resp.Status, u)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 4<<20))
}

// resolve settles the version and the tarball's sha256 from the mirror.
func (t *openwrtTemplateRun) resolve(ctx context.Context) error {
	v, u, sum, err := t.mirror().artefact(ctx, t.req.Version, OpenWrtRootfsName, t.run.Info)
	if err != nil {
		return err
	}
	t.res.Version, t.res.URL, t.res.SHA256 = v, u, sum
	// The content steps upload the file fetch leaves, as this name, with
	// this checksum; a copy already there is verified through the URL.
	t.content.req.URL, t.content.req.File = t.res.URL, "(fetched)"
	t.content.filename, t.content.sum = OpenWrtRootfsName(v), pve.Checksum{Algorithm: "sha256", Hex: sum}
	return nil
}

// artefact settles the version (latest: the newest OpenWrtMajor.x
// release of .versions.json, said through info) and the URL and sha256
// (from the release's sha256sums) of the x86/64 file name gives for it.
func (m openwrtMirror) artefact(ctx context.Context, version string, name func(string) string, info func(string)) (v, url, sum string, err error) {
	v = version
	if v == "latest" {
		b, err := m.get(ctx, ".versions.json")
		if err != nil {
			return "", "", "", err
		}
		if v, err = latestOpenWrt(b); err != nil {
			return "", "", "", err
		}
		info(fmt.Sprintf("latest %d.x release on the mirror: %s", OpenWrtMajor, v))
	}
	dir := "releases/" + v + "/targets/x86/64/"
	file := name(v)
	sums, err := m.get(ctx, dir+"sha256sums")
	if err != nil {
		return "", "", "", err
	}
	sum, ok := sumFor(sums, file)
	if !ok {
		return "", "", "", problemf(ErrPreflight, "release %s's sha256sums lists no %s: is %s an x86/64 release on this mirror?", v, file, v)
	}
	return v, strings.TrimSuffix(m.base, "/") + "/" + dir + file, sum, nil
}

// latestOpenWrt picks the newest OpenWrtMajor.x release of .versions.json.
func latestOpenWrt(b []byte) (string, error) {
	var idx struct {
		Stable   string   `json:"stable_version"`
		Versions []string `json:"versions_list"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return "", problemf(ErrPreflight, "the mirror's .versions.json is not JSON (%v): check --mirror", err)
	}
	var cands [][3]int
	for _, v := range append(idx.Versions, idx.Stable) {
		if !openwrtVersionRE.MatchString(v) {
			continue // release candidates and snapshots
		}
		var n [3]int
		for i, part := range strings.Split(v, ".") {
			n[i], _ = strconv.Atoi(part)
		}
		if n[0] == OpenWrtMajor {
			cands = append(cands, n)
		}
	}
	if len(cands) == 0 {
		return "", problemf(ErrPreflight, "the mirror lists no %d.x release (%s): pass --version", OpenWrtMajor, strings.Join(idx.Versions, ", "))
	}
	sort.Slice(cands, func(i, j int) bool {
		for k := 0; k < 3; k++ {
			if cands[i][k] != cands[j][k] {
				return cands[i][k] > cands[j][k]
			}
		}
		return false
	})
	c := cands[0]
	return fmt.Sprintf("%d.%d.%d", c[0], c[1], c[2]), nil
}

// sumFor finds name's line in a sha256sums file ("<hex> *<name>", the '*'
// optional).
func sumFor(sums []byte, name string) (string, bool) {
	for _, line := range strings.Split(string(sums), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && strings.TrimPrefix(f[1], "*") == name && len(f[0]) == 64 {
			return strings.ToLower(f[0]), true
		}
	}
	return "", false
}

// fetchNeeded: a copy already on the storage that PVE can verify through
// download-url needs no download here.
func (t *openwrtTemplateRun) fetchNeeded(context.Context) (string, error) {
	if t.content.cached && t.content.netOK {
		return "the copy on " + t.content.res.Storage + " is verified by PVE through download-url: nothing to download here", nil
	}
	return "", nil
}

func (t *openwrtTemplateRun) planFetch(context.Context) ([]flow.Call, error) {
	return []flow.Call{{Method: "GET", Path: t.res.URL, Note: "here, not by PVE; sha256 " + t.res.SHA256 + " from sha256sums, size and format checked"}}, nil
}

// fetch downloads the tarball here, checks its sha256, size and format.
// A mismatch names both sums and leaves nothing.
func (t *openwrtTemplateRun) fetch(ctx context.Context) error {
	name := OpenWrtRootfsName(t.res.Version)
	tmp, n, err := t.mirror().fetch(ctx, t.res.URL, t.res.SHA256, name, "cloudpods-openwrt-*.tar.gz", maxRootfsBytes)
	if tmp != "" {
		t.tmp = tmp
	}
	if err != nil {
		return err
	}
	if n < minRootfsBytes {
		return fmt.Errorf("%s is %d bytes: an x86-64 rootfs is between %d and %d; nothing was stored", name, n, minRootfsBytes, maxRootfsBytes)
	}
	if err := checkOpenWrtRootfs(t.tmp, t.res.Version); err != nil {
		return fmt.Errorf("%s: %w; nothing was stored", name, err)
	}
	t.content.req.File, t.content.size = t.tmp, n
	t.run.Note(fmt.Sprintf("%s, %s, sha256 matches", name, humanBytes(n)))
	return nil
}

// fetch downloads url into a temporary file (named by pattern) and checks
// its sha256: a mismatch names both sums. The file is returned even on
// failure, for the caller to remove; more than limit bytes is refused.
func (m openwrtMirror) fetch(ctx context.Context, url, sha256sum, name, pattern string, limit int64) (string, int64, error) {
	f, err := os.CreateTemp("", pattern)
	if err != nil {
		return "", 0, err
	}
	tmp := f.Name()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		f.Close()
		return tmp, 0, err
	}
	resp, err := m.http.Do(req)
	if err != nil {
		f.Close()
		return tmp, 0, fmt.Errorf("download %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		f.Close()
		return tmp, 0, fmt.Errorf("download %s: the mirror answered %s", url, resp.Status)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(resp.Body, limit+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return tmp, n, fmt.Errorf("download %s: %w", url, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha256sum {
		return tmp, n, fmt.Errorf("%w for %s: expected sha256:%s (the release's sha256sums), got sha256:%s; the download was discarded, nothing was stored",
			ErrChecksumMismatch, name, sha256sum, got)
	}
	if n > limit {
		return tmp, n, fmt.Errorf("%s is over %d bytes: not an OpenWrt x86-64 artefact; nothing was stored", name, limit)
	}
	return tmp, n, nil
}

// checkOpenWrtRootfs reads the tarball: gzip, tar, and an
// etc/openwrt_release of this version for x86/64.
func checkOpenWrtRootfs(file, version string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return errors.New("it is not gzip-compressed")
	}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return errors.New("it has no etc/openwrt_release: not an OpenWrt rootfs")
		}
		if err != nil {
			return fmt.Errorf("it is not a readable tar archive (%v)", err)
		}
		if path.Clean("/"+hdr.Name) != "/etc/openwrt_release" {
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(tr, 64<<10))
		rel := string(b)
		if !strings.Contains(rel, "DISTRIB_RELEASE='"+version+"'") {
			return fmt.Errorf("its etc/openwrt_release is not release %s", version)
		}
		if !strings.Contains(rel, "DISTRIB_TARGET='x86/64'") {
			return errors.New("its etc/openwrt_release is not for x86/64")
		}
		return nil
	}
}
