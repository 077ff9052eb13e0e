package pve

import (
	"errors"
	"fmt"
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
	// ErrInvalidParameter: PVE rejected a parameter (400).
	ErrInvalidParameter = errors.New("invalid parameter")
	// ErrMaybeApplied: the proxy lost the backend's answer (595/596, or
	// the connection dropped); the action may or may not have happened.
	ErrMaybeApplied = errors.New("outcome unknown")
	// ErrTransient: PVE says try again (no worker, cfs lock, 5xx from a proxy).
	ErrTransient = errors.New("transient")
	// ErrConsoleRefusesTokens: this PVE's termproxy checks console tickets
	// through an endpoint that rejects API-token users (PVE before the
	// April 2026 updates: proxmox-termproxy ≤ 1.1.0).
	ErrConsoleRefusesTokens = errors.New("this PVE's console (termproxy) refuses API-token tickets")
	// ErrTaskFailed: a worker task ended with an error exit status.
	ErrTaskFailed = errors.New("task failed")
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
		return e.Status == 401
	case ErrForbidden:
		return e.Status == 403
	case ErrInvalidParameter:
		return e.Status == 400
	case ErrMaybeApplied:
		return e.Status == 595 || e.Status == 596
	case ErrNotFound:
		return e.Status == 404 ||
			(e.Status == 500 && (strings.Contains(msg, "does not exist") || strings.Contains(msg, "no such"))) ||
			(e.Status == 400 && e.Errors["upid"] == "no such task")
	case ErrAlreadyExists:
		return strings.Contains(msg, "already exists") || strings.Contains(e.Errors["vmid"], "already exists")
	case ErrLocked:
		return e.Status == 500 && isLockMessage(msg)
	case ErrTransient:
		return e.Status == 429 || e.Status == 502 || e.Status == 503 || e.Status == 504 ||
			(e.Status == 500 && (isLockMessage(msg) || strings.Contains(msg, "got no worker upid") ||
				strings.Contains(msg, "cfs-lock") || strings.Contains(msg, "got timeout")))
	}
	return false
}

// isLockMessage recognises PVE's lock refusals: "CT is locked (disk)",
// "VM is locked (backup)", "can't lock file '…' - got timeout".
func isLockMessage(msg string) bool {
	return strings.Contains(msg, " is locked (") || strings.Contains(msg, "can't lock file") ||
		strings.Contains(msg, "cfs-lock")
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
	case ErrLocked, ErrTransient:
		return isLockMessage(strings.ToLower(e.ExitStatus))
	}
	return false
}
