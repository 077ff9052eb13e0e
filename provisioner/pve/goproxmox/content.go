package goproxmox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Storage content: the appliance catalogue, downloads PVE makes itself,
// uploads we send, and removing a volume.

func storagePath(node, storage, rest string) string {
	return "/nodes/" + url.PathEscape(node) + "/storage/" + url.PathEscape(storage) + rest
}

func (c *Client) Appliances(ctx context.Context, node string) ([]pve.Appliance, error) {
	// The entries are free-form objects (the index's .dat fields,
	// lower-cased): read them as strings.
	var raw []map[string]json.RawMessage
	if err := c.call(ctx, "GET", "/nodes/"+url.PathEscape(node)+"/aplinfo", nil, &raw); err != nil {
		return nil, err
	}
	out := make([]pve.Appliance, 0, len(raw))
	for _, r := range raw {
		get := func(k string) string {
			var s string
			if json.Unmarshal(r[k], &s) != nil {
				return strings.Trim(string(r[k]), `"`)
			}
			return s
		}
		out = append(out, pve.Appliance{Template: get("template"), Package: get("package"), Version: get("version"), OS: get("os"),
			Section: get("section"), Type: get("type"), Headline: get("headline"), Description: get("description"),
			Location: get("location"), Architecture: get("architecture"), SHA512: get("sha512sum"), MD5: get("md5sum")})
	}
	return out, nil
}

func (c *Client) DownloadAppliance(ctx context.Context, node, storage, template string) (string, error) {
	var upid string
	err := c.call(ctx, "POST", "/nodes/"+url.PathEscape(node)+"/aplinfo", map[string]string{"storage": storage, "template": template}, &upid)
	return upid, err
}

func (c *Client) DownloadURL(ctx context.Context, node, storage string, o pve.DownloadOptions) (string, error) {
	p := map[string]string{"url": o.URL, "content": o.Content, "filename": o.Filename}
	if !o.Checksum.IsZero() {
		p["checksum"], p["checksum-algorithm"] = o.Checksum.Hex, o.Checksum.Algorithm
	}
	if o.InsecureTLS {
		p["verify-certificates"] = "0"
	}
	setIf(p, "compression", o.Compression)
	var upid string
	err := c.call(ctx, "POST", storagePath(node, storage, "/download-url"), p, &upid)
	return upid, err
}

func (c *Client) DeleteVolume(ctx context.Context, node, volid string) (string, error) {
	storage, _, ok := strings.Cut(volid, ":")
	if !ok {
		return "", fmt.Errorf("volume %q is not storage:name", volid)
	}
	// The volume id goes in the path, ':' and '/' escaped.
	var upid *string
	if err := c.call(ctx, "DELETE", storagePath(node, storage, "/content/"+url.PathEscape(volid)), nil, &upid); err != nil {
		return "", err
	}
	if upid == nil {
		return "", nil
	}
	return *upid, nil
}

// UploadFile sends the file as pveproxy wants it (file_upload_multipart):
// the form fields first, the file last in the part named "filename", with
// a Content-Length, which pveproxy requires. The body streams from
// opts.Body: the request goes around the retrying transport, which would
// buffer it whole, and an upload is never repeated blindly anyway.
func (c *Client) UploadFile(ctx context.Context, node, storage string, o pve.UploadOptions) (string, error) {
	if o.Body == nil || o.Size < 0 {
		return "", errors.New("upload: no file to send")
	}
	var head bytes.Buffer
	mw := multipart.NewWriter(&head)
	fields := [][2]string{{"content", o.Content}}
	if !o.Checksum.IsZero() {
		fields = append(fields, [2]string{"checksum-algorithm", o.Checksum.Algorithm}, [2]string{"checksum", o.Checksum.Hex})
	}
	for _, f := range fields {
		if err := mw.WriteField(f[0], f[1]); err != nil {
			return "", err
		}
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="filename"; filename=%q`, o.Filename))
	h.Set("Content-Type", "application/octet-stream")
	if _, err := mw.CreatePart(h); err != nil {
		return "", err
	}
	tail := "\r\n--" + mw.Boundary() + "--\r\n"
	body := io.MultiReader(bytes.NewReader(head.Bytes()), io.LimitReader(o.Body, o.Size), strings.NewReader(tail))
	u := c.base.String() + storagePath(node, storage, "/upload")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, body)
	if err != nil {
		return "", err
	}
	req.ContentLength = int64(head.Len()) + o.Size + int64(len(tail))
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "PVEAPIToken="+c.opts.TokenID+"="+c.opts.TokenSecret)
	resp, err := c.uploader.Do(req)
	if err != nil {
		return "", unwrapURLError(err)
	}
	defer resp.Body.Close()
	var answer struct {
		Data string `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&answer); err != nil {
		return "", fmt.Errorf("POST %s: unreadable answer: %w", storagePath(node, storage, "/upload"), err)
	}
	return answer.Data, nil
}
