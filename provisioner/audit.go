package provisioner

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// AuditEntry is one line of the audit log. It never holds a secret: the
// token appears by its id only.
type AuditEntry struct {
	Time     time.Time `json:"time"`
	Command  string    `json:"command"`
	VMID     int       `json:"vmid,omitempty"`
	Hostname string    `json:"hostname,omitempty"`
	IP       string    `json:"ip,omitempty"`
	// Volume is the storage volume a content command made or checked.
	Volume    string  `json:"volume,omitempty"`
	Node      string  `json:"node,omitempty"`
	Tenant    string  `json:"tenant,omitempty"`
	Requester string  `json:"requester,omitempty"`
	TokenID   string  `json:"token_id,omitempty"`
	Outcome   string  `json:"outcome"`
	Error     string  `json:"error,omitempty"`
	Duration  float64 `json:"duration_s"`
}

// AuditLog appends JSON lines to a file shared by every CloudPods process.
type AuditLog struct {
	Path string
	// Requester and TokenID are stamped on every entry.
	Requester string
	TokenID   string
	mu        sync.Mutex
}

// Append writes one entry. The file is opened per entry, so a log rotated
// away (logrotate's rename) is followed at once, and each line goes out in
// one write under an exclusive flock, so concurrent processes never
// interleave.
func (a *AuditLog) Append(e AuditEntry) error {
	if a == nil || a.Path == "" {
		return nil
	}
	if e.Requester == "" {
		e.Requester = a.Requester
	}
	if e.TokenID == "" {
		e.TokenID = a.TokenID
	}
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(a.Path), 0o750); err != nil {
		return fmt.Errorf("audit log %s: %w", a.Path, err)
	}
	f, err := os.OpenFile(a.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("audit log %s: %w", a.Path, err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("audit log %s: lock: %w", a.Path, err)
	}
	defer unix.Flock(int(f.Fd()), unix.LOCK_UN)
	if _, err := f.Write(line); err != nil {
		return fmt.Errorf("audit log %s: %w", a.Path, err)
	}
	return nil
}

// audit records one run of a mutating command; a failing audit log is
// logged, not fatal: the pod's state matters more than the record of it.
func (p *Provisioner) audit(command string, s Spec, requester string, took time.Duration, err error) {
	e := AuditEntry{Time: p.opts.Now().UTC(), Command: command, VMID: s.VMID, Hostname: s.Hostname, Node: s.Node,
		Tenant: s.Tenant, Requester: requester, Outcome: "ok", Duration: took.Seconds()}
	if s.IP.IsValid() {
		e.IP = s.IP.String()
	}
	if err != nil {
		e.Outcome, e.Error = "failed", err.Error()
	}
	if aerr := p.opts.Audit.Append(e); aerr != nil {
		p.log.WithError(aerr).Error("audit log write failed")
	}
}
