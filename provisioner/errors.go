package provisioner

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/migrahosting/cloudpods/ipam"
	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Sentinels the flows wrap their refusals in; KindOf classifies them.
var (
	// ErrInvalidSpec: the request itself is wrong; nothing was contacted.
	ErrInvalidSpec = errors.New("invalid request")
	// ErrPreflight: PVE's state forbids the request (missing template,
	// storage full, address in use…); nothing was created.
	ErrPreflight = errors.New("preflight check failed")
	// ErrConflict: the VMID holds a different pod or a guest that is not ours.
	ErrConflict = errors.New("conflict")
	// ErrRefused: a safety rule refused the action (destroy without --force…).
	ErrRefused = errors.New("refused")
	// ErrLeftBehind: a failed create left a CT at its VMID (the rollback
	// failed, --keep-on-failure kept it, or it was there before the run);
	// the error says how to finish or remove it.
	ErrLeftBehind = flow.ErrLeftBehind
	// ErrInterrupted: the run stopped at a step boundary on request.
	ErrInterrupted = flow.ErrInterrupted
)

// Kind is what kind of failure an error is. The CLI's exit code and the
// service's HTTP status and JSON "kind" are both derived from it, through
// Codes: one table, so the two can never disagree.
type Kind string

const (
	KindNone        Kind = ""            // no error
	KindInvalid     Kind = "invalid"     // bad input; nothing was contacted
	KindPreflight   Kind = "preflight"   // PVE's state refuses the request
	KindConflict    Kind = "conflict"    // VMID, IP or hostname taken, or a different spec
	KindAuth        Kind = "pve_auth"    // the token was rejected or lacks a privilege
	KindTimeout     Kind = "timeout"     // a task or wait ran out of time
	KindUnreachable Kind = "unreachable" // PVE did not answer; the outcome may be unknown
	KindRefused     Kind = "refused"     // a safety rule refused
	KindLocked      Kind = "locked"      // a PVE lock stayed held past the wait
	KindLeftBehind  Kind = "left_behind" // the run failed and left a guest behind
	KindInterrupted Kind = "interrupted" // stopped on request
	KindNotFound    Kind = "not_found"   // the guest, task or lease does not exist
	KindRegistry    Kind = "registry"    // the IPAM registry file is empty, damaged or has no lease list
	KindFailed      Kind = "failed"      // any other failure
)

// Kinds are every failure kind, KindNone excluded.
var Kinds = []Kind{KindInvalid, KindPreflight, KindConflict, KindAuth, KindTimeout, KindUnreachable, KindRefused,
	KindLocked, KindLeftBehind, KindInterrupted, KindNotFound, KindRegistry, KindFailed}

// kindCodes is the one table of exit codes (README "Exit codes") and HTTP
// statuses. Whatever is PVE's fault, not the client's, is a bad gateway.
var kindCodes = map[Kind]struct{ exit, status int }{
	KindNone:        {0, http.StatusOK},
	KindFailed:      {1, http.StatusBadGateway},
	KindNotFound:    {1, http.StatusNotFound},
	KindInvalid:     {2, http.StatusBadRequest},
	KindPreflight:   {3, http.StatusUnprocessableEntity},
	KindConflict:    {4, http.StatusConflict},
	KindAuth:        {5, http.StatusBadGateway},
	KindTimeout:     {6, http.StatusGatewayTimeout},
	KindUnreachable: {7, http.StatusBadGateway},
	KindRefused:     {8, http.StatusForbidden},
	KindLocked:      {9, http.StatusConflict},
	KindLeftBehind:  {10, http.StatusBadGateway},
	// The controller's own state is broken: neither the client's fault nor PVE's.
	KindRegistry:    {11, http.StatusInternalServerError},
	KindInterrupted: {130, http.StatusServiceUnavailable},
}

// Codes are the CLI's exit code and the service's HTTP status for k; an
// unknown kind reads as KindFailed.
func (k Kind) Codes() (exit, httpStatus int) {
	c, ok := kindCodes[k]
	if !ok {
		c = kindCodes[KindFailed]
	}
	return c.exit, c.status
}

// KindOf says what kind of failure err is. The order decides for an error
// that is several things at once: a stop on request is an interruption
// whatever it left, a failure that left a guest behind says so before its
// cause does, and the client's mistakes come before PVE's.
func KindOf(err error) Kind {
	switch {
	case err == nil:
		return KindNone
	case errors.Is(err, ErrInvalidSpec):
		return KindInvalid
	case errors.Is(err, ErrInterrupted), errors.Is(err, context.Canceled):
		return KindInterrupted
	case errors.Is(err, ErrLeftBehind):
		return KindLeftBehind
	case errors.Is(err, ipam.ErrRegistryCorrupt):
		return KindRegistry
	case errors.Is(err, ErrConflict), allocationRefused(err):
		return KindConflict
	case errors.Is(err, ErrRefused):
		return KindRefused
	case errors.Is(err, pve.ErrUnauthorized), errors.Is(err, pve.ErrForbidden):
		return KindAuth
	case errors.Is(err, ErrPreflight):
		return KindPreflight
	case errors.Is(err, pve.ErrNotFound), errors.Is(err, ipam.ErrNotFound):
		return KindNotFound
	case errors.Is(err, pve.ErrWaitTimeout), errors.Is(err, context.DeadlineExceeded):
		return KindTimeout
	case errors.Is(err, pve.ErrLocked):
		return KindLocked
	case errors.Is(err, pve.ErrMaybeApplied), errors.Is(err, ErrNodeDown):
		return KindUnreachable
	}
	return KindFailed
}

// allocationRefused says IPAM refused on the registry's or the cluster's
// contents (nothing free, the address or VMID taken, the hostname already
// holding other numbers), as opposed to failing to read them.
func allocationRefused(err error) bool {
	for _, e := range []error{ipam.ErrPoolExhausted, ipam.ErrAddressInUse, ipam.ErrVMIDInUse, ipam.ErrLeaseConflict, ipam.ErrOutOfRange} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// problem is an error made of one sentence for the operator, classified by
// kind, or by its cause when it has no kind of its own.
type problem struct {
	kind  error
	msg   string
	cause error
}

func (e *problem) Error() string        { return e.msg }
func (e *problem) Is(target error) bool { return e.kind != nil && target == e.kind }
func (e *problem) Unwrap() error        { return e.cause }

func problemf(kind error, format string, args ...interface{}) error {
	return &problem{kind: kind, msg: fmt.Sprintf(format, args...)}
}
