package service

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/strictjson"
)

// MaxBodyBytes bounds a request body; more is 413.
const MaxBodyBytes = 64 << 10

// decodeBody reads one JSON object into dst through the strict decoder
// batch files share (provisioner/strictjson): a key given twice, an unknown
// key, trailing data and a wrong type are per-field 400s; an empty body is
// fine when optional.
func decodeBody(w http.ResponseWriter, r *http.Request, dst any, optional bool) *apiError {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		// curl -d labels a body form-urlencoded: the fix is the header,
		// and a browser's cross-site form post stays out.
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return &apiError{status: http.StatusUnsupportedMediaType, msg: "send the body as JSON, with Content-Type: application/json", kind: kindInvalid}
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return &apiError{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("the body is larger than %d bytes", MaxBodyBytes), kind: kindInvalid}
	}
	if err != nil {
		return &apiError{status: http.StatusBadRequest, msg: "reading the body failed: " + err.Error(), kind: kindInvalid}
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		if optional {
			return nil
		}
		return &apiError{status: http.StatusBadRequest, msg: "the body is empty: send a JSON object", kind: kindInvalid}
	}
	return decodeError(strictjson.Decode(body, dst))
}

// decodeError is the answer to what the strict decoder refused.
func decodeError(err error) *apiError {
	var fe *strictjson.FieldError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &fe):
		return &apiError{status: http.StatusBadRequest, msg: "invalid request", kind: kindInvalid, fields: map[string]string{fe.Field: fe.Problem}}
	}
	return &apiError{status: http.StatusBadRequest, msg: "the body must be one JSON object: " + err.Error(), kind: kindInvalid}
}

var (
	tenantRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	// storageRE is PVE's pve-storage-id format.
	storageRE = regexp.MustCompile(`^[a-z][a-z0-9._-]*[a-z0-9]$`)
	// bridgeRE is a Linux interface name, at most 15 bytes.
	bridgeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,14}$`)
)

// validateCreate checks each field on its own, so the panel can show each
// message beside its input; the provisioner's validate step checks the
// whole spec again when the job runs.
func (s *Server) validateCreate(b provisioner.PodRequest) (CreateParams, map[string]string) {
	d := s.opts.Defaults
	p := CreateParams{TenantID: b.TenantID, Hostname: b.Hostname, SwapMB: d.SwapMB, Storage: d.Storage, Bridge: d.Bridge, Template: d.Template}
	errs := map[string]string{}
	switch {
	case b.TenantID == "":
		errs["tenantId"] = "required"
	case !tenantRE.MatchString(b.TenantID):
		errs["tenantId"] = "use letters, digits and _ . - (up to 64, starting with a letter or digit)"
	}
	if b.Hostname == "" {
		errs["hostname"] = "required"
	}
	if b.Template != nil {
		p.Template = *b.Template
		if p.Template < 100 || p.Template > provisioner.MaxVMID {
			errs["template"] = fmt.Sprintf("%d is out of range: PVE guest ids run from 100 to %d", p.Template, provisioner.MaxVMID)
		}
	}
	// "auto" is the same as leaving a field out.
	vmid, vmidGiven := b.VMID.Given()
	ipText, ipGiven := b.AddressGiven()
	switch {
	case !vmidGiven && !ipGiven:
		if s.opts.Allocator == nil {
			errs["vmid"] = "vmid and ip are required until IPAM is configured"
			errs["ip"] = "vmid and ip are required until IPAM is configured"
		}
	case !vmidGiven || !ipGiven:
		msg := "give both vmid and ip, or neither (or \"auto\") for automatic allocation"
		if s.opts.Allocator == nil {
			msg = "vmid and ip are required until IPAM is configured"
		}
		if !vmidGiven {
			errs["vmid"] = msg
		} else {
			errs["ip"] = msg
		}
	}
	p.VMID = vmid
	var ipOK bool
	if ipGiven {
		ip, err := netip.ParseAddr(ipText)
		if err != nil || !ip.Is4() {
			errs["ip"] = fmt.Sprintf("%q is not an IPv4 address: give one inside %s, or \"auto\"", ipText, d.Subnet)
		} else {
			p.IP, ipOK = ip, true
		}
	}
	for field, v := range map[string]*int{"cores": b.Cores, "memoryMb": b.MemoryMB} {
		if v == nil {
			errs[field] = "required"
		}
	}
	if b.Cores != nil {
		p.Cores = *b.Cores
	}
	if b.MemoryMB != nil {
		p.MemoryMB = *b.MemoryMB
	}
	if b.SwapMB != nil {
		p.SwapMB = *b.SwapMB
	}
	// The pod's own fields are checked by the provisioner's rules, the same
	// the CLI applies; the service only names them as the panel does.
	spec := d
	spec.VMID, spec.Hostname, spec.IP, spec.Template = p.VMID, p.Hostname, p.IP, p.Template
	spec.Cores, spec.MemoryMB, spec.SwapMB = p.Cores, p.MemoryMB, p.SwapMB
	for field, msg := range spec.FieldProblems(true) {
		name := apiField(field)
		if _, set := errs[name]; set {
			continue // required, or not an address at all
		}
		switch {
		case name == "ip" && !ipOK,
			name == "vmid" && !vmidGiven,
			name == "cores" && b.Cores == nil,
			name == "memoryMb" && b.MemoryMB == nil,
			name == "hostname" && b.Hostname == "":
			continue
		}
		errs[name] = msg
	}
	if b.Storage != "" {
		if !storageRE.MatchString(b.Storage) {
			errs["storage"] = fmt.Sprintf("%q is not a PVE storage id such as %s", b.Storage, d.Storage)
		}
		p.Storage = b.Storage
	}
	if b.Bridge != "" {
		if !bridgeRE.MatchString(b.Bridge) {
			errs["bridge"] = fmt.Sprintf("%q is not a bridge name such as %s", b.Bridge, d.Bridge)
		}
		p.Bridge = b.Bridge
	}
	return p, errs
}

// apiField is the API's name of a provisioner.Spec field in a problem map.
func apiField(specField string) string {
	if name, ok := map[string]string{"memory": "memoryMb", "swap": "swapMb"}[specField]; ok {
		return name
	}
	return specField
}

// backupBody is POST …/{vmid}/backup; the body is optional.
type backupBody struct {
	Storage string `json:"storage"`
}

// fingerprint identifies a request for Idempotency-Key matching.
func fingerprint(route string, v any) string {
	b, _ := json.Marshal(v)
	sum := sha256.Sum256(append([]byte(route+"\n"), b...))
	return hex.EncodeToString(sum[:])
}

// idempotencyKey reads the header; nil when absent.
func idempotencyKey(r *http.Request, route string, request any) (*IdempotencyRecord, *apiError) {
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		return nil, nil
	}
	if len(key) > 255 || strings.IndexFunc(key, func(c rune) bool { return c < 0x21 || c > 0x7e }) >= 0 {
		return nil, &apiError{status: http.StatusBadRequest, msg: "invalid request", kind: kindInvalid,
			fields: map[string]string{"Idempotency-Key": "use up to 255 visible ASCII characters, e.g. a UUID"}}
	}
	return &IdempotencyRecord{Requester: requesterOf(r.Context()), Key: key, Fingerprint: fingerprint(route, request)}, nil
}

// vmidParam reads {vmid}.
func vmidParam(r *http.Request) (int, *apiError) {
	raw := r.PathValue("vmid")
	n, err := strconv.Atoi(raw)
	if err != nil || n < 100 || n > provisioner.MaxVMID {
		return 0, &apiError{status: http.StatusBadRequest, msg: "invalid request", kind: kindInvalid,
			fields: map[string]string{"vmid": fmt.Sprintf("%q is not a VMID: use a number from 100 to %d", raw, provisioner.MaxVMID)}}
	}
	return n, nil
}

func boolParam(r *http.Request, name string) (bool, *apiError) {
	v := r.URL.Query().Get(name)
	switch strings.ToLower(v) {
	case "", "0", "false", "no":
		return false, nil
	case "1", "true", "yes":
		return true, nil
	}
	return false, &apiError{status: http.StatusBadRequest, msg: "invalid request", kind: kindInvalid,
		fields: map[string]string{name: fmt.Sprintf("%q is not a boolean: use 1 or 0", v)}}
}

func itoa(n int) string { return strconv.Itoa(n) }
