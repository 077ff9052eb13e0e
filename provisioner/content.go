package provisioner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Content puts a file on a storage for guests to be made from — a
// container template (vztmpl), an ISO image (iso) or a disk image
// (import) — from one of three sources: an entry of PVE's appliance
// catalogue (POST aplinfo: PVE verifies it against the catalogue's
// sha512), a URL (download-url, with the checksum PVE verifies), or a
// local file we upload (multipart, with its checksum). A copy already on
// the storage is reused only when PVE confirms its checksum: asked to
// download again with the checksum, PVE finds the file and answers "OK,
// got correct file already" without fetching anything. A checksum that
// does not match fails with both sums, and PVE keeps nothing of the
// download. Template, image and OpenWrt flows build on the same steps.

// Steps of the content flow.
const (
	StepTransfer = "transfer"
)

// ErrChecksumMismatch: a file's checksum is not the one asked for; the
// error names both.
var ErrChecksumMismatch = errors.New("checksum mismatch")

// Content types a token may put on a file storage (upload and download-url
// take no other).
var contentTypes = map[string]*regexp.Regexp{
	// pve-storage Storage.pm VZTMPL_EXT_RE_1 (PVE 9 also takes a plain .tar).
	"vztmpl": regexp.MustCompile(`(?i)\.tar(\.(gz|xz|zst|bz2))?$`),
	"iso":    regexp.MustCompile(`(?i)\.(iso|img)$`),
	"import": regexp.MustCompile(`\.(ova|qcow2|raw|vmdk)$`),
}

// ContentRequest asks for one file on a storage. Exactly one source is set.
type ContentRequest struct {
	Node string
	// Storage is a storage name, or StorageAuto.
	Storage string
	// Content is vztmpl, iso or import.
	Content string
	// Appliance is a catalogue entry's template name (vztmpl only).
	Appliance string
	// URL is fetched by PVE itself (download-url); with File it is only
	// where the file came from, for verifying a cached copy.
	URL string
	// File is a local file to upload.
	File string
	// Filename is the name on the storage; default: the source's base name.
	Filename string
	// Checksum is verified by PVE; required for a URL unless NoVerify.
	Checksum pve.Checksum
	// NoVerify takes a URL's file without a checksum.
	NoVerify bool
	// InsecureTLS lets PVE fetch from a URL whose certificate it cannot
	// verify.
	InsecureTLS bool

	Reporter  Reporter
	Stop      <-chan struct{}
	Requester string
}

// ContentResult is what the content flow reports.
type ContentResult struct {
	VolID         string             `json:"volid"`
	Storage       string             `json:"storage"`
	StorageReason string             `json:"storage_reason,omitempty"`
	Source        string             `json:"source"` // catalogue, url or upload
	Checksum      string             `json:"checksum,omitempty"`
	Verified      string             `json:"verified"`
	Cached        bool               `json:"cached"`
	Size          int64              `json:"size"`
	Changed       bool               `json:"changed"`
	Steps         map[string]float64 `json:"steps"`
	Warnings      []string           `json:"warnings,omitempty"`
}

// contentRun is one run of the content flow: what its steps learn.
type contentRun struct {
	p   *Provisioner
	req ContentRequest
	run *flow.Run
	res ContentResult

	filename string
	volid    string
	// sum is what PVE verifies: the catalogue's, --checksum, or what we
	// computed of a local file.
	sum       pve.Checksum
	appliance *pve.Appliance
	// viaURL: a catalogue entry asked to match a checksum of another
	// algorithm than the catalogue's: PVE fetches its location with that
	// checksum instead (download-url).
	viaURL bool
	// netOK: the token may have PVE fetch URLs (download-url).
	netOK bool
	// cached: the file was on the storage before this run; made: this run
	// put it there.
	cached, made bool
	size         int64
	tasks        []string
	// prepare, when set, puts the file to upload in place first (a flow
	// that fetches it itself only when an upload turns out necessary).
	prepare func(ctx context.Context) error
}

func (p *Provisioner) newContentRun(req ContentRequest, run *flow.Run) *contentRun {
	c := &contentRun{p: p, req: req, run: run}
	switch {
	case req.File != "":
		c.res.Source = "upload"
	case req.URL != "":
		c.res.Source = "url"
	default:
		c.res.Source = "catalogue"
	}
	return c
}

// FetchContent puts the requested file on a storage, or finds it there
// already and has PVE confirm its checksum.
func (p *Provisioner) FetchContent(ctx context.Context, req ContentRequest) (ContentResult, error) {
	var c *contentRun
	run := p.newRun(flow.Options{Reporter: req.Reporter, Stop: req.Stop, Nothing: "nothing was stored",
		UndoBudget: p.opts.TaskTimeout + time.Minute,
		Audit: func(err error, took time.Duration) {
			p.auditContent("content "+c.res.Source, c.volid, req.Node, req.Requester, took, err)
		}})
	c = p.newContentRun(req, run)
	err := run.Execute(ctx, c.steps())
	c.res.Steps, c.res.Warnings = run.Seconds(), run.Warnings()
	return c.res, err
}

// PlanContent is the content flow's dry run: the request is checked, the
// catalogue, storages and their content read; nothing is fetched or sent.
func (p *Provisioner) PlanContent(ctx context.Context, req ContentRequest) ([]PlannedCall, ContentResult, error) {
	c := p.newContentRun(req, p.newRun(flow.Options{Reporter: req.Reporter, Stop: req.Stop}))
	calls, err := c.run.DryRun(ctx, c.steps())
	return calls, c.res, err
}

func (c *contentRun) steps() []flow.Step {
	return []flow.Step{
		{Name: StepValidate, ReadOnly: true, Run: c.validate},
		{Name: StepPreflight, ReadOnly: true, Run: c.preflight},
		{Name: StepTransfer, Check: c.transferDone, Run: c.transfer, Plan: c.planTransfer, Undo: c.undoTransfer},
		{Name: StepVerify, Run: c.verify, Plan: c.planVerify},
	}
}

// normalizeContentFilename is PVE's normalize_content_filename (pve-storage
// Storage.pm): the part after the last / or \, every character outside
// [a-zA-Z0-9_.-] made '_'.
func normalizeContentFilename(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	return regexp.MustCompile(`[^a-zA-Z0-9_.-]`).ReplaceAllString(name, "_")
}

func (c *contentRun) validate(context.Context) error {
	r := c.req
	n := 0
	for _, s := range []string{r.Appliance, r.File} {
		if s != "" {
			n++
		}
	}
	if r.URL != "" && r.File == "" {
		n++
	}
	if n != 1 {
		return problemf(ErrInvalidSpec, "give exactly one source: a catalogue template name, a URL, or a file to upload")
	}
	ext, ok := contentTypes[r.Content]
	if !ok {
		return problemf(ErrInvalidSpec, "content type %q cannot be put on a storage through the API: use vztmpl, iso or import", r.Content)
	}
	if r.Appliance != "" && r.Content != "vztmpl" {
		return problemf(ErrInvalidSpec, "catalogue entries are container templates (vztmpl), not %s", r.Content)
	}
	if r.NoVerify && !r.Checksum.IsZero() {
		return problemf(ErrInvalidSpec, "--checksum and --no-verify contradict each other: drop one")
	}
	name := r.Filename
	switch {
	case r.Appliance != "":
		name = r.Appliance
	case r.File != "":
		fi, err := os.Stat(r.File)
		if err != nil || !fi.Mode().IsRegular() {
			return problemf(ErrInvalidSpec, "file %s cannot be uploaded: it is not a readable regular file", r.File)
		}
		c.size = fi.Size()
		if name == "" {
			name = path.Base(r.File)
		}
	}
	if r.URL != "" {
		u, err := url.Parse(r.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "ftp") || u.Host == "" {
			return problemf(ErrInvalidSpec, "%q is not an http, https or ftp URL: give the file's full address", r.URL)
		}
		if name == "" {
			name = path.Base(u.Path)
		}
		if r.File == "" && r.Checksum.IsZero() && !r.NoVerify {
			return problemf(ErrInvalidSpec, "the download from %s cannot be verified: pass --checksum ALGO:HEX (the publisher's SHA256SUMS has it), or --no-verify to take the file unverified", u.Host)
		}
	}
	c.filename = normalizeContentFilename(name)
	if !ext.MatchString(c.filename) {
		return problemf(ErrInvalidSpec, "%q is not a %s file name (PVE wants %s): pass --filename with the right extension", c.filename, r.Content, ext.String())
	}
	return nil
}

func (c *contentRun) preflight(ctx context.Context) error {
	r := c.req
	if r.Content == "import" && !strings.HasSuffix(c.filename, ".ova") {
		v, err := c.p.api.Version(ctx)
		if err != nil {
			return apiProblem("read PVE's version", err)
		}
		if err := importNeeds84(v, c.filename); err != nil {
			return err
		}
	}
	storages, err := c.p.api.Storages(ctx, r.Node)
	if err != nil {
		return apiProblem("list storages on "+r.Node, err)
	}
	choice, err := ChooseStorage(storages, r.Storage, r.Content, c.size)
	if err != nil {
		return err
	}
	c.res.Storage, c.res.StorageReason = choice.ID, choice.Reason
	c.run.Info(choice.Reason)
	if choice.Warning != "" {
		c.run.Warn(choice.Warning)
	}
	c.volid = choice.ID + ":" + r.Content + "/" + c.filename
	c.res.VolID = c.volid
	st := "/storage/" + choice.ID
	network := privilege{Path: "/nodes/" + r.Node, Priv: "Sys.AccessNetwork", Or: [][]privilege{{{Path: "/", Priv: "Sys.Audit"}, {Path: "/", Priv: "Sys.Modify"}}}}
	need := []privilege{{Path: st, Priv: "Datastore.AllocateTemplate"}, {Path: st, Priv: "Datastore.Audit"}}
	perms, err := c.p.api.Permissions(ctx)
	if err != nil {
		return apiProblem("read the token's permissions", err)
	}
	c.netOK = network.heldBy(perms)
	if r.Appliance != "" {
		if err := c.findAppliance(ctx); err != nil {
			return err
		}
	}
	if (r.URL != "" && r.File == "") || c.viaURL {
		need = append(need, network)
	}
	if err := missingPrivileges(perms, need); err != nil {
		return err
	}
	if r.File != "" && c.sum.IsZero() {
		if c.sum, err = fileChecksum(r.File); err != nil {
			return fmt.Errorf("read %s: %w", r.File, err)
		}
	}
	if c.sum.IsZero() && r.Appliance == "" {
		c.sum = r.Checksum
	}
	c.res.Checksum = c.sum.String()
	vols, err := c.p.api.StorageContent(ctx, r.Node, choice.ID, r.Content)
	if err != nil {
		return apiProblem("list the "+r.Content+" content of storage "+choice.ID, err)
	}
	for _, v := range vols {
		if v.VolID == c.volid {
			c.cached, c.res.Size = true, v.Size
			c.run.Info(fmt.Sprintf("%s is already on storage %s (%s): PVE checks its checksum before reusing it", c.filename, choice.ID, humanBytes(v.Size)))
		}
	}
	return nil
}

// findAppliance looks the template up in the node's catalogue and settles
// which checksum PVE is to verify.
func (c *contentRun) findAppliance(ctx context.Context) error {
	r := c.req
	list, err := c.p.api.Appliances(ctx, r.Node)
	if err != nil {
		return apiProblem("read the appliance catalogue of "+r.Node, err)
	}
	for i := range list {
		if list[i].Template == r.Appliance {
			c.appliance = &list[i]
		}
	}
	if c.appliance == nil {
		return problemf(ErrPreflight, "%s is not in node %s's appliance catalogue: `cloudpod template list` shows what it offers (PVE refreshes the index daily), or give the template's URL with --checksum", r.Appliance, r.Node)
	}
	cat := c.appliance.Checksum()
	c.sum = cat
	switch {
	case r.Checksum.IsZero():
	case r.Checksum.Algorithm == cat.Algorithm:
		if !r.Checksum.Equal(cat) {
			return fmt.Errorf("%w for %s: expected %s (--checksum), but the file PVE's catalogue lists and verifies every download of is %s; nothing was downloaded", ErrChecksumMismatch, r.Appliance, r.Checksum, cat)
		}
	default:
		// PVE's catalogue download verifies only the catalogue's own sum:
		// have PVE fetch the entry's location with the asked checksum.
		c.viaURL, c.sum = true, r.Checksum
	}
	return nil
}

func fileChecksum(file string) (pve.Checksum, error) {
	f, err := os.Open(file)
	if err != nil {
		return pve.Checksum{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return pve.Checksum{}, err
	}
	return pve.Checksum{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}, nil
}

// transferDone skips the transfer when a cached copy can only be taken
// as it is (a URL with --no-verify: PVE refuses to overwrite a file
// without a checksum, and there is none to check it with).
func (c *contentRun) transferDone(context.Context) (string, error) {
	if c.cached && c.sum.IsZero() {
		c.res.Cached, c.res.Verified = true, "not verified (--no-verify)"
		c.run.Warn(fmt.Sprintf("%s was already on storage %s and is used unverified (--no-verify)", c.filename, c.res.Storage))
		return "already on " + c.res.Storage + " (not verified)", nil
	}
	return "", nil
}

// source is where PVE takes the file from: the catalogue, a URL, or our
// upload (then a cached copy is checked through its URL when the token
// may have PVE fetch URLs: PVE verifies the file it has and fetches
// nothing).
func (c *contentRun) source() string {
	switch {
	case c.req.Appliance != "" && !c.viaURL:
		return "catalogue"
	case c.req.File == "" || (c.cached && c.netOK && c.req.URL != ""):
		return "url"
	}
	return "upload"
}

func (c *contentRun) downloadOptions() pve.DownloadOptions {
	u := c.req.URL
	if c.appliance != nil {
		u = c.appliance.Location
	}
	return pve.DownloadOptions{URL: u, Content: c.req.Content, Filename: c.filename, Checksum: c.sum, InsecureTLS: c.req.InsecureTLS}
}

func (c *contentRun) planTransfer(context.Context) ([]flow.Call, error) {
	node, st := c.req.Node, c.res.Storage
	note := "PVE verifies " + c.sum.Algorithm
	if c.cached {
		note = "already there: PVE checks its " + c.sum.Algorithm + " and fetches nothing if it matches"
	}
	var call flow.Call
	kind := "download"
	switch c.source() {
	case "catalogue":
		call = flow.Call{Method: "POST", Path: "/nodes/" + node + "/aplinfo", Params: formatParams(map[string]string{"storage": st, "template": c.req.Appliance}),
			Note: strings.Replace(note, c.sum.Algorithm, c.sum.Algorithm+" from the catalogue", 1)}
	case "url":
		o := c.downloadOptions()
		p := map[string]string{"url": o.URL, "content": o.Content, "filename": o.Filename}
		if !o.Checksum.IsZero() {
			p["checksum-algorithm"], p["checksum"] = o.Checksum.Algorithm, o.Checksum.Hex
		} else {
			note = "not verified (--no-verify)"
		}
		call = flow.Call{Method: "POST", Path: "/nodes/" + node + "/storage/" + st + "/download-url", Params: formatParams(p), Note: note}
	default:
		kind = "upload"
		call = flow.Call{Method: "POST", Path: "/nodes/" + node + "/storage/" + st + "/upload",
			Params: formatParams(map[string]string{"content": c.req.Content, "filename": c.filename + " (" + humanBytes(c.size) + ")", "checksum-algorithm": c.sum.Algorithm, "checksum": c.sum.Hex}),
			Note:   "multipart; PVE verifies " + c.sum.Algorithm + " on arrival"}
	}
	return []flow.Call{call, taskPoll(node, "the "+kind)}, nil
}

func (c *contentRun) planVerify(context.Context) ([]flow.Call, error) {
	return []flow.Call{{Method: "GET", Path: "/nodes/" + c.req.Node + "/storage/" + c.res.Storage + "/content", Params: "content=" + c.req.Content,
		Note: "until it lists " + c.volid}}, nil
}

// reusedLine is what PVE's download_file_from_url logs when the file on
// the storage already has the checksum (pve-common Tools.pm).
const reusedLine = "no need to download"

func (c *contentRun) transfer(ctx context.Context) error {
	src := c.source()
	upid, err := c.send(ctx, src)
	if errors.Is(err, ErrChecksumMismatch) && src == "url" && c.req.File != "" && c.cached {
		// The copy on the storage is not the file we have: an upload
		// replaces it (PVE's upload overwrites).
		c.run.Warn(err.Error() + "; uploading the verified file over it")
		src = "upload"
		upid, err = c.send(ctx, src)
		c.cached = false
	}
	if err != nil {
		return err
	}
	c.res.Checksum = c.sum.String()
	switch src {
	case "catalogue":
		c.res.Verified = "by PVE against the catalogue's " + c.sum.Algorithm
	case "url":
		c.res.Verified = "by PVE (" + c.sum.Algorithm + ")"
	default:
		c.res.Verified = "by PVE on arrival (" + c.sum.Algorithm + ")"
	}
	if c.cached && c.reused(ctx, upid) {
		c.res.Cached = true
		return flow.Skip(fmt.Sprintf("reused the copy already on %s: PVE confirmed its %s", c.res.Storage, c.sum.Algorithm))
	}
	c.made = !c.cached
	c.res.Changed = true
	return nil
}

// send starts the transfer from src and waits for its task. An attempt
// whose answer was lost is repeated: with a checksum PVE keeps a copy that
// matches; without one (--no-verify) a file that arrived settles it.
func (c *contentRun) send(ctx context.Context, src string) (string, error) {
	r := c.req
	what := "download " + c.filename + " to storage " + c.res.Storage
	if src == "upload" {
		what = "upload " + c.filename + " to storage " + c.res.Storage
	}
	var upid string
	err := c.run.Retry().Do(ctx, what, func(ctx context.Context) error {
		var err error
		switch src {
		case "catalogue":
			upid, err = c.p.api.DownloadAppliance(ctx, r.Node, c.res.Storage, r.Appliance)
		case "url":
			upid, err = c.p.api.DownloadURL(ctx, r.Node, c.res.Storage, c.downloadOptions())
		default:
			upid, err = c.upload(ctx)
		}
		if err != nil {
			return err
		}
		c.tasks = append(c.tasks, upid)
		_, err = c.p.wait(ctx, r.Node, upid)
		return err
	}, func(ctx context.Context, _ error) (bool, error) {
		if !c.sum.IsZero() {
			return false, nil
		}
		return c.stored(ctx)
	})
	if err != nil {
		return upid, c.transferFailed(err)
	}
	return upid, nil
}

// stored reports whether the storage lists the volume.
func (c *contentRun) stored(ctx context.Context) (bool, error) {
	vols, err := c.p.api.StorageContent(ctx, c.req.Node, c.res.Storage, c.req.Content)
	if err != nil {
		return false, err
	}
	for _, v := range vols {
		if v.VolID == c.volid {
			return true, nil
		}
	}
	return false, nil
}

// reused reads the task log for PVE's "got correct file already".
func (c *contentRun) reused(ctx context.Context, upid string) bool {
	lines, err := c.p.api.TaskLog(ctx, c.req.Node, upid, 0, 0)
	if err != nil {
		return false
	}
	for _, l := range lines {
		if strings.Contains(l, reusedLine) {
			return true
		}
	}
	return false
}

func (c *contentRun) upload(ctx context.Context) (string, error) {
	if c.prepare != nil {
		if err := c.prepare(ctx); err != nil {
			return "", err
		}
	}
	f, err := os.Open(c.req.File)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	c.size = fi.Size()
	return c.p.api.UploadFile(ctx, c.req.Node, c.res.Storage, pve.UploadOptions{Content: c.req.Content, Filename: c.filename,
		Checksum: c.sum, Body: f, Size: fi.Size()})
}

// checksumMismatchRE is the error of PVE's download and upload when the
// sum differs ("checksum mismatch: got 'X' != expect 'Y'").
var checksumMismatchRE = regexp.MustCompile(`checksum mismatch: got '([0-9A-Fa-f]+)' != expect '([0-9A-Fa-f]+)'(, aborting)?`)

// transferFailed turns PVE's checksum refusal into one sentence with both
// sums and what became of the file.
func (c *contentRun) transferFailed(err error) error {
	var te *pve.TaskError
	if !errors.As(err, &te) {
		return err
	}
	m := checksumMismatchRE.FindStringSubmatch(te.ExitStatus)
	if m == nil {
		return err
	}
	algo := c.sum.Algorithm
	if m[3] != "" {
		return fmt.Errorf("%w: the copy of %s already on storage %s has %s:%s, not the expected %s:%s; it was left as it was: remove it (PVE: storage > content) or pass the checksum it has",
			ErrChecksumMismatch, c.filename, c.res.Storage, algo, m[1], algo, m[2])
	}
	return fmt.Errorf("%w for %s: expected %s:%s, got %s:%s; PVE discarded the file, nothing was stored",
		ErrChecksumMismatch, c.filename, algo, m[2], algo, m[1])
}

// undoTransfer removes a file this run stored, when a later step fails.
func (c *contentRun) undoTransfer(ctx context.Context, rb flow.Rollback) flow.Outcome {
	if !c.made || rb.Cause != flow.Failed {
		return flow.Outcome{}
	}
	upid, err := c.p.api.DeleteVolume(ctx, c.req.Node, c.volid)
	if err == nil && upid != "" {
		_, err = c.p.wait(ctx, c.req.Node, upid)
	}
	if err != nil {
		return flow.Outcome{Left: true, Said: fmt.Sprintf("%s stays on storage %s (removing it failed: %v)", c.filename, c.res.Storage, err)}
	}
	return flow.Outcome{Said: fmt.Sprintf("rolled back: %s removed from storage %s", c.filename, c.res.Storage)}
}

// verify reads the storage's content: the volume is there, with a size.
func (c *contentRun) verify(ctx context.Context) error {
	vols, err := c.p.api.StorageContent(ctx, c.req.Node, c.res.Storage, c.req.Content)
	if err != nil {
		return apiProblem("list storage "+c.res.Storage, err)
	}
	for _, v := range vols {
		if v.VolID == c.volid {
			c.res.Size = v.Size
			if c.size > 0 && v.Size != c.size {
				return fmt.Errorf("%s on storage %s is %d bytes, the file sent was %d", c.volid, c.res.Storage, v.Size, c.size)
			}
			c.run.Note(fmt.Sprintf("%s (%s)", c.volid, humanBytes(v.Size)))
			return nil
		}
	}
	return fmt.Errorf("%s is not in storage %s's content after the transfer", c.volid, c.res.Storage)
}

// auditContent records one content run: the volume stands where a
// guest's VMID would.
func (p *Provisioner) auditContent(command, volid, node, requester string, took time.Duration, err error) {
	e := AuditEntry{Time: p.opts.Now().UTC(), Command: command, Volume: volid, Node: node, Requester: requester,
		Outcome: "ok", Duration: took.Seconds()}
	if err != nil {
		e.Outcome, e.Error = "failed", err.Error()
	}
	if aerr := p.opts.Audit.Append(e); aerr != nil {
		p.log.WithError(aerr).Error("audit log write failed")
	}
}
