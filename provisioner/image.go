package provisioner

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Images on a storage for VMs: ISO images (content iso, for a CD-ROM) and
// disk images (content import: cloud images a VM's disk is imported
// from). Listing reads the storages; download is the content flow
// (download-url with a checksum PVE verifies, a cached copy reused only
// when PVE confirms it); verify has PVE check a stored copy against a
// checksum through the same call, which fetches nothing when the copy
// matches; delete removes a volume no VM uses.

// ImageContents are the content types of images.
var ImageContents = []string{"iso", "import"}

// ImageContentFor says which content type a file name goes under: .iso is
// an ISO, .qcow2, .raw, .vmdk and .ova are import images. A .img is
// either, so it must be said.
func ImageContentFor(name string) (string, error) {
	lower := strings.ToLower(name)
	switch {
	case strings.HasSuffix(lower, ".iso"):
		return "iso", nil
	case regexp.MustCompile(`\.(qcow2|raw|vmdk|ova)$`).MatchString(name):
		return "import", nil
	case strings.HasSuffix(lower, ".img"):
		return "", problemf(ErrInvalidSpec, "%s ends in .img, which is either: a cloud image (usually qcow2) to import a disk from needs --content import and --filename NAME.qcow2 (PVE takes the format from the extension); a disk image to boot as a CD-ROM needs --content iso", name)
	}
	return "", problemf(ErrInvalidSpec, "%s is neither an ISO (.iso) nor a disk image (.qcow2, .raw, .vmdk, .ova): pass --filename with the right extension and --content iso|import", name)
}

// ImageRow is one image as `cloudpod image list` shows it.
type ImageRow struct {
	VolID   string    `json:"volid"`
	Storage string    `json:"storage"`
	Content string    `json:"content"`
	Format  string    `json:"format"`
	Size    int64     `json:"size"`
	CTime   time.Time `json:"ctime"`
}

// ImageList lists the ISO and import images on node's active storages
// (only storage when given), by volume id.
func (p *Provisioner) ImageList(ctx context.Context, node, storage string) ([]ImageRow, error) {
	storages, err := p.api.Storages(ctx, node)
	if err != nil {
		return nil, apiProblem("list storages on "+node, err)
	}
	var rows []ImageRow
	found := storage == ""
	for _, s := range storages {
		if storage != "" && s.ID != storage {
			continue
		}
		found = true
		if !s.Active {
			continue
		}
		for _, content := range ImageContents {
			if !contains(s.Content, content) {
				continue
			}
			vols, err := p.api.StorageContent(ctx, node, s.ID, content)
			if err != nil {
				return nil, apiProblem("list the "+content+" content of storage "+s.ID, err)
			}
			for _, v := range vols {
				rows = append(rows, ImageRow{VolID: v.VolID, Storage: s.ID, Content: content, Format: v.Format, Size: v.Size, CTime: v.CTime})
			}
		}
	}
	if !found {
		return nil, problemf(ErrPreflight, "storage %s does not exist on node %s: cloudpod storage list shows them", storage, node)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].VolID < rows[j].VolID })
	return rows, nil
}

// volumeParts splits STORAGE:CONTENT/NAME.
var volumeRE = regexp.MustCompile(`^([a-z][a-z0-9._-]*[a-z0-9]):(iso|import)/([^/]+)$`)

func parseImageVolume(volid string) (storage, content, name string, err error) {
	m := volumeRE.FindStringSubmatch(volid)
	if m == nil {
		return "", "", "", problemf(ErrInvalidSpec, "%q is not an image volume: give STORAGE:iso/NAME or STORAGE:import/NAME (cloudpod image list shows them)", volid)
	}
	return m[1], m[2], m[3], nil
}

// ImageVerifyRequest asks PVE to check a stored image against a checksum.
type ImageVerifyRequest struct {
	Node     string
	VolID    string
	Checksum pve.Checksum
	// URL is where the image came from: PVE checks a stored file only
	// through download-url, which takes one (and fetches nothing when the
	// copy matches).
	URL       string
	Reporter  Reporter
	Stop      <-chan struct{}
	Requester string
}

// VerifyImage has PVE compute the stored image's checksum and compare:
// a match is reported, a mismatch names both sums and leaves the file as
// it is. An image that is not there is not fetched: verify refuses.
func (p *Provisioner) VerifyImage(ctx context.Context, req ImageVerifyRequest) (ContentResult, error) {
	sid, content, name, perr := parseImageVolume(req.VolID)
	creq := ContentRequest{Node: req.Node, Storage: sid, Content: content, URL: req.URL, Filename: name, Checksum: req.Checksum,
		Reporter: req.Reporter, Stop: req.Stop, Requester: req.Requester}
	var c *contentRun
	run := p.newRun(flow.Options{Reporter: req.Reporter, Stop: req.Stop, Nothing: "nothing was changed",
		Audit: func(err error, took time.Duration) {
			p.auditContent("image verify", req.VolID, req.Node, req.Requester, took, err)
		}})
	c = p.newContentRun(creq, run)
	err := run.Execute(ctx, []flow.Step{
		{Name: StepValidate, ReadOnly: true, Run: func(ctx context.Context) error {
			switch {
			case perr != nil:
				return perr
			case req.Checksum.IsZero():
				return problemf(ErrInvalidSpec, "give --checksum ALGO:HEX: the sum the image's publisher lists")
			case req.URL == "":
				return problemf(ErrInvalidSpec, "give --url, where %s came from: PVE checks a stored file only through download-url, which fetches nothing when the copy matches", name)
			}
			return c.validate(ctx)
		}},
		{Name: StepPreflight, ReadOnly: true, Run: func(ctx context.Context) error {
			if err := c.preflight(ctx); err != nil {
				return err
			}
			if !c.cached {
				return problemf(ErrPreflight, "%s is not on storage %s: nothing to verify (cloudpod image download fetches it)", name, sid)
			}
			return nil
		}},
		{Name: StepVerify, Run: func(ctx context.Context) error {
			err := c.transfer(ctx)
			if flow.IsSkip(err) {
				c.run.Note(fmt.Sprintf("%s matches %s: PVE confirmed it", req.VolID, req.Checksum))
				return nil
			}
			if err == nil {
				return fmt.Errorf("PVE did not report checking the copy of %s it had", name)
			}
			return err
		}},
	})
	c.res.Steps, c.res.Warnings = run.Seconds(), run.Warnings()
	return c.res, err
}

// ImageDeleteRequest removes an image.
type ImageDeleteRequest struct {
	Node  string
	VolID string
	// Force deletes an ISO VMs still have in a CD-ROM drive.
	Force     bool
	Reporter  Reporter
	Stop      <-chan struct{}
	Requester string
}

// ImageDeleteResult is what image delete reports.
type ImageDeleteResult struct {
	VolID   string             `json:"volid"`
	Deleted bool               `json:"deleted"`
	UsedBy  []string           `json:"used_by,omitempty"`
	Steps   map[string]float64 `json:"steps"`
}

// DeleteImage removes an image volume, refusing an ISO a VM's drive holds
// (unless Force); one that is not there is nothing to do.
func (p *Provisioner) DeleteImage(ctx context.Context, req ImageDeleteRequest) (ImageDeleteResult, error) {
	res := ImageDeleteResult{VolID: req.VolID}
	sid, content, _, perr := parseImageVolume(req.VolID)
	present := false
	run := p.newRun(flow.Options{Reporter: req.Reporter, Stop: req.Stop, Nothing: "nothing was deleted",
		Audit: func(err error, took time.Duration) {
			p.auditContent("image delete", req.VolID, req.Node, req.Requester, took, err)
		}})
	err := run.Execute(ctx, []flow.Step{
		{Name: StepInspect, ReadOnly: true, Run: func(ctx context.Context) error {
			if perr != nil {
				return perr
			}
			if err := p.checkPrivileges(ctx, []privilege{{Path: "/storage/" + sid, Priv: "Datastore.Allocate",
				Or: [][]privilege{{{Path: "/storage/" + sid, Priv: "Datastore.AllocateTemplate"}}}}}); err != nil {
				return err
			}
			vols, err := p.api.StorageContent(ctx, req.Node, sid, content)
			if err != nil {
				return apiProblem("list the "+content+" content of storage "+sid, err)
			}
			for _, v := range vols {
				present = present || v.VolID == req.VolID
			}
			if !present {
				return nil
			}
			if res.UsedBy, err = p.volumeUsers(ctx, req.Node, req.VolID); err != nil {
				return err
			}
			if len(res.UsedBy) > 0 && !req.Force {
				return problemf(ErrRefused, "%s is in a drive of %s: eject it there first, or pass --force", req.VolID, strings.Join(res.UsedBy, ", "))
			}
			return nil
		}},
		{Name: StepDelete, Check: func(context.Context) (string, error) {
			if !present {
				return req.VolID + " is not there", nil
			}
			return "", nil
		}, Run: func(ctx context.Context) error {
			return run.Retry().Do(ctx, "delete "+req.VolID, func(ctx context.Context) error {
				upid, err := p.api.DeleteVolume(ctx, req.Node, req.VolID)
				if err == nil && upid != "" {
					_, err = p.wait(ctx, req.Node, upid)
				}
				if err != nil && errors.Is(err, pve.ErrNotFound) {
					return nil
				}
				if err == nil {
					res.Deleted = true
				}
				return err
			}, nil)
		}},
	})
	res.Steps = run.Seconds()
	return res, err
}

// volumeUsers are the VMs of node whose config holds volid (a CD-ROM
// drive with the ISO).
func (p *Provisioner) volumeUsers(ctx context.Context, node, volid string) ([]string, error) {
	guests, err := p.api.Guests(ctx)
	if err != nil {
		return nil, apiProblem("list the cluster's guests", err)
	}
	var out []string
	for _, g := range guests {
		if g.Type != pve.QEMU || g.Node != node {
			continue
		}
		cfg, err := p.api.GuestConfig(ctx, g.Ref())
		if errors.Is(err, pve.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, apiProblem("read "+g.Ref().String(), err)
		}
		for _, k := range sortedKeysOf(cfg.Values) {
			if v := cfg.Get(k); v == volid || strings.HasPrefix(v, volid+",") {
				out = append(out, "VM "+strconv.Itoa(g.VMID)+" ("+k+")")
			}
		}
	}
	return out, nil
}
