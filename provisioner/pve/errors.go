package pve

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
)

// Sentinels classify PVE's answers. An *APIError matches them with
// errors.Is, so callers never parse messages themselves.
var (
	// ErrUnauthorized: the token was rejected (401).
	ErrUnauthorized = errors.New("authentication failed")
	// ErrForbidden: the token lacks a privilege (403).
	ErrForbidden = errors.New("permission denied")
	// ErrNotFound: the guest, task or path does not exist.
	ErrNotFound = errors.New("not found")
	// ErrLocked: a guest or file lock is held; the condition is transient.
	ErrLocked = errors.New("locked")
	// ErrAlreadyExists: the VMID is taken.
	ErrAlreadyExists = errors.New("already exists")
	// ErrAlreadyRunning: a start found the guest running.
	ErrAlreadyRunning = errors.New("already running")
	// ErrInvalidParameter: PVE rejected a parameter (400).
	ErrInvalidParameter = errors.New("invalid parameter")
	// ErrMaybeApplied: the proxy lost the backend's answer (595/596, or
	// the connection dropped); the action may or may not have happened.
	ErrMaybeApplied = errors.New("outcome unknown")
	// ErrTransient: PVE says try again (a lock, no worker, cfs lock, 429 or
	// 502/503/504 from a proxy, an answer lost in transport).
	ErrTransient = errors.New("transient")
	// ErrConsoleRefusesTokens: this PVE's termproxy checks console tickets
	// through an endpoint that rejects API-token users (PVE before the
	// April 2026 updates: proxmox-termproxy ≤ 1.1.0).
	ErrConsoleRefusesTokens = errors.New("this PVE's console (termproxy) refuses API-token tickets")
	// ErrConsoleTicket: PVE refused a console ticket (a stale or bad
	// PVEVNC ticket: 401 "permission denied - invalid PVEVNC ticket", or
	// termproxy closing the socket after the ticket line). The token
	// itself is fine, so it never matches ErrUnauthorized; a new attach
	// gets a new ticket.
	ErrConsoleTicket = errors.New("PVE refused the console ticket")
	// ErrTaskFailed: a worker task ended with an error exit status.
	ErrTaskFailed = errors.New("task failed")
	// ErrNodeUnreachable: the node a call was forwarded to could not be
	// reached (pveproxy's 595 with the connect error: "No route to host" of
	// a node that is down, "Connection refused" of one whose pveproxy is
	// stopped). The call never got there.
	ErrNodeUnreachable = errors.New("node unreachable")
	// ErrAgentNotRunning: a VM's guest agent does not answer (yet): PVE's
	// "QEMU guest agent is not running", or QEMU's "got timeout" while it
	// starts (qemu-server QemuServer/Agent.pm).
	ErrAgentNotRunning = errors.New("guest agent not running")
)

// APIError is one non-2xx answer from the PVE API.
type APIError struct {
	Method string
	Path   string
	Status int
	// Message is PVE's message: the status line's reason, or the body's
	// "message" field when present (it carries the full text).
	Message string
	// Errors holds per-parameter messages of a 400 answer.
	Errors map[string]string
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d", e.Method, e.Path, e.Status)
	if e.Message != "" {
		b.WriteString(" ")
		b.WriteString(e.Message)
	}
	if len(e.Errors) > 0 {
		keys := make([]string, 0, len(e.Errors))
		for k := range e.Errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "; %s: %s", k, strings.TrimSpace(e.Errors[k]))
		}
	}
	return b.String()
}

// Is maps the answer onto the sentinels above.
func (e *APIError) Is(target error) bool {
	msg := strings.ToLower(e.Message)
	switch target {
	case ErrUnauthorized:
		return e.Status == 401 && !isConsoleTicketMessage(msg)
	case ErrConsoleTicket:
		return e.Status == 401 && isConsoleTicketMessage(msg)
	case ErrForbidden:
		return e.Status == 403
	case ErrInvalidParameter:
		return e.Status == 400
	case ErrMaybeApplied:
		return e.Status == 595 || e.Status == 596
	case ErrNodeUnreachable:
		return e.Status == 595 && ConnectError(msg)
	case ErrNotFound:
		return e.Status == 404 ||
			(e.Status == 500 && (strings.Contains(msg, "does not exist") || strings.Contains(msg, "no such"))) ||
			(e.Status == 400 && e.Errors["upid"] == "no such task")
	case ErrAlreadyExists:
		return strings.Contains(msg, "already exists") || strings.Contains(e.Errors["vmid"], "already exists")
	case ErrAlreadyRunning:
		return e.Status == 500 && strings.Contains(msg, "already running")
	case ErrLocked:
		return e.Status == 500 && isLockMessage(msg)
	case ErrTransient:
		return transientStatus(e.Status) || (e.Status == 500 && isTransientMessage(msg))
	case ErrAgentNotRunning:
		return e.Status == 500 && (strings.Contains(msg, "guest agent is not running") ||
			(strings.Contains(msg, "got timeout") && !isLockMessage(msg)))
	}
	return false
}

// Object names what the failed request was about, from its path: "CT
// 9101", "task UPID:…", "node pve"; "" when the path names nothing.
func (e *APIError) Object() string {
	parts := strings.Split(strings.Trim(e.Path, "/"), "/")
	for i := len(parts) - 2; i >= 0; i-- {
		switch parts[i] {
		case "lxc":
			return "CT " + parts[i+1]
		case "qemu":
			return "VM " + parts[i+1]
		case "tasks":
			return "task " + parts[i+1]
		case "storage":
			return "storage " + parts[i+1]
		}
	}
	if len(parts) >= 2 && parts[0] == "nodes" {
		return "node " + parts[1]
	}
	return ""
}

// isConsoleTicketMessage recognises verify_rsa_ticket's refusal of a
// console ticket (pve-common src/PVE/Ticket.pm): "permission denied -
// invalid PVEVNC ticket".
func isConsoleTicketMessage(msg string) bool {
	return strings.Contains(msg, "invalid pvevnc ticket")
}

// ConnectError recognises the connect errors AnyEvent::HTTP reports as
// 595 (pve-http-server proxy_request) when pveproxy cannot reach the node
// it forwards a call to: the call never reached it.
func ConnectError(reason string) bool {
	msg := strings.ToLower(reason)
	return strings.Contains(msg, "no route to host") || strings.Contains(msg, "connection refused") ||
		strings.Contains(msg, "network is unreachable") || strings.Contains(msg, "host is down")
}

// transientStatus: what a proxy in front of PVE answers when it is
// overloaded or restarting (pveproxy reloads, a load balancer).
func transientStatus(status int) bool {
	return status == 429 || status == 502 || status == 503 || status == 504
}

// isLockMessage recognises PVE's lock refusals: "CT is locked (disk)",
// "VM is locked (backup)", "can't lock file '…' - got timeout", and the
// cluster filesystem's "cfs-lock 'storage-…' error: got lock request
// timeout".
func isLockMessage(msg string) bool {
	return strings.Contains(msg, " is locked (") || strings.Contains(msg, "can't lock file") ||
		strings.Contains(msg, "cfs-lock")
}

// isTransientMessage: the 500s whose text says "try again": a lock held by
// another task (it ends), and a worker that could not be forked.
func isTransientMessage(msg string) bool {
	return isLockMessage(msg) || strings.Contains(msg, "got no worker upid")
}

// TransportError is a request whose answer never arrived (connection
// refused or dropped, timeout). For anything but a read PVE may have acted,
// so it matches ErrMaybeApplied as well as ErrTransient.
type TransportError struct {
	Method string
	Path   string
	Err    error
}

func (e *TransportError) Error() string {
	return fmt.Sprintf("%s %s: no answer from PVE: %v", e.Method, e.Path, e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

func (e *TransportError) Is(target error) bool {
	return target == ErrMaybeApplied || target == ErrTransient
}

// Idempotent reports whether a request of this method may be repeated
// blindly. Only those are retried by the transport; everything else is
// retried per operation, with an already-done check (RetryPolicy.Do).
func Idempotent(method string) bool {
	return method == "GET" || method == "HEAD" || method == "OPTIONS"
}

// ConsoleError is a console that could not be attached: termproxy, its
// websocket or the ticket handshake failed. Attaching has no lasting effect
// in PVE (an unused termproxy exits after 10 s), so the whole attach may be
// repeated when the cause is transient, though the websocket is a GET.
type ConsoleError struct {
	// Kind and VMID name the guest; the zero kind reads as a container.
	Kind GuestKind
	VMID int
	// Stage is "termproxy", "websocket" or "handshake".
	Stage string
	Err   error
}

func (e *ConsoleError) Error() string {
	if errors.Is(e.Err, ErrConsoleTicket) {
		// PVE's refusal, without the sentinel's own words: the sentence
		// says what it means.
		detail := strings.TrimPrefix(e.Err.Error(), ErrConsoleTicket.Error()+": ")
		var api *APIError
		if errors.As(e.Err, &api) {
			detail = fmt.Sprintf("%d %s", api.Status, api.Message)
		}
		return fmt.Sprintf("console of %s %d: the console ticket expired or was refused (%s: %s)", e.Kind.Noun(), e.VMID, e.Stage, detail)
	}
	return fmt.Sprintf("console of %s %d: %s: %v", e.Kind.Noun(), e.VMID, e.Stage, e.Err)
}

func (e *ConsoleError) Unwrap() error { return e.Err }

// Is makes a refused console ticket transient: attaching again asks
// termproxy for a fresh ticket.
func (e *ConsoleError) Is(target error) bool {
	return target == ErrTransient && errors.Is(e.Err, ErrConsoleTicket)
}

// failedRead reports whether err is the failure of an idempotent request:
// the transport has retried it already, so an operation must not again.
// A console attach is judged as a whole (see ConsoleError).
func failedRead(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		switch t := e.(type) {
		case *ConsoleError:
			return false
		case *APIError:
			return Idempotent(t.Method)
		case *TransportError:
			return Idempotent(t.Method)
		}
	}
	return false
}

// TaskError is a worker task that ended in error.
type TaskError struct {
	UPID       string
	Type       string
	ExitStatus string
	// LogTail is the end of the task log, for the operator.
	LogTail []string
}

func (e *TaskError) Error() string {
	s := fmt.Sprintf("task %s failed: %s", e.Type, e.ExitStatus)
	if len(e.LogTail) > 0 {
		s += " (log: " + strings.Join(e.LogTail, " | ") + ")"
	}
	return s
}

// Is lets a failed task match ErrTaskFailed, and ErrLocked when the worker
// refused because of a lock (start on a CT still locked by its clone).
func (e *TaskError) Is(target error) bool {
	switch target {
	case ErrTaskFailed:
		return true
	case ErrLocked:
		return isLockMessage(strings.ToLower(e.ExitStatus))
	case ErrTransient:
		return isTransientMessage(strings.ToLower(e.ExitStatus))
	case ErrAlreadyRunning:
		return strings.Contains(strings.ToLower(e.ExitStatus), "already running")
	}
	return false
}

// CertificateError is PVE's TLS certificate failing verification: not
// signed by a trusted CA (PVE's own certificate is self-signed), or not the
// one pinned. Fingerprint is the SHA-256 of the certificate PVE presented,
// as PVE's GUI shows it, so the operator can compare and pin it.
type CertificateError struct {
	Fingerprint string
	// Pinned is the fingerprint that was expected, when one was pinned.
	Pinned string
	Err    error
}

func (e *CertificateError) Error() string {
	check := "check it in the PVE GUI (node > System > Certificates) and, if it matches, pin it with --fingerprint " + e.Fingerprint
	if e.Pinned != "" {
		return fmt.Sprintf("PVE presented a TLS certificate with SHA-256 fingerprint %s, not the pinned %s: if PVE's certificate was renewed, %s", e.Fingerprint, e.Pinned, check)
	}
	return fmt.Sprintf("PVE's TLS certificate is not trusted (%v); it presented SHA-256 fingerprint %s: %s", e.Err, e.Fingerprint, check)
}

func (e *CertificateError) Unwrap() error { return e.Err }

// Explain is the one sentence for an operator about a failure to talk to
// PVE at all, whatever was being asked: its certificate not trusted, the
// token refused or lacking a privilege, nothing answering at the address.
// It names the cause and the fix. ok is false for any other error (those
// are about the request, and their own message says so).
func Explain(err error) (sentence string, ok bool) {
	var cert *CertificateError
	if errors.As(err, &cert) {
		return cert.Error(), true
	}
	var api *APIError
	if errors.As(err, &api) {
		switch {
		case api.Status == 401:
			return fmt.Sprintf("PVE refused the API token (%d %s): check the token id (--token-id, PVE_TOKEN_ID) and its secret (--token-file, PVE_TOKEN_SECRET), and that the token exists and has not expired (Datacenter > Permissions > API Tokens)",
				api.Status, api.Message), true
		case api.Status == 403:
			return fmt.Sprintf("PVE denied %s %s to the API token (%d %s): grant the token and its user the CloudPods role (README: \"Token and minimal role\")",
				api.Method, api.Path, api.Status, api.Message), true
		}
		return "", false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return fmt.Sprintf("PVE did not answer at %s (%v): check the address (--pve-url, PVE_URL), that pveproxy runs on the node, and that port 8006 is reachable from here",
			op.Addr, unwrapAll(op.Err)), true
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return fmt.Sprintf("PVE's host name %s does not resolve (%v): check the address (--pve-url, PVE_URL) and this machine's DNS", dns.Name, dns.Err), true
	}
	return "", false
}

// unwrapAll is the innermost error: "connection refused", not the chain.
func unwrapAll(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}
