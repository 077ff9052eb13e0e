package ipam

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// FileStore keeps the registry in one JSON file. Updates are serialised
// across processes by flock(2) on a sidecar "<file>.lock" and replace the
// file by rename, so readers see the old or the new registry, never a
// partial one, and a crash at any point leaves a readable registry.
type FileStore struct {
	path string
}

var _ Store = (*FileStore)(nil)

// NewFileStore returns a store for the registry at path. The file and its
// directory are created on the first Update.
func NewFileStore(path string) *FileStore { return &FileStore{path: path} }

// Path is the registry file.
func (s *FileStore) Path() string { return s.path }

func (s *FileStore) lockPath() string { return s.path + ".lock" }

// tempPrefix names the temporary files of an update; they live next to the
// registry so the rename stays on one filesystem.
func (s *FileStore) tempPrefix() string { return "." + filepath.Base(s.path) + ".tmp-" }

// Load reads the registry. The rename-based writes make a lock unnecessary.
func (s *FileStore) Load(ctx context.Context) (*Registry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	reg, _, err := s.read()
	return reg, err
}

// Update locks the registry, runs fn and writes the result if it changed.
func (s *FileStore) Update(ctx context.Context, fn func(*Registry) error) error {
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("ipam registry %s: create directory: %w", s.path, err)
	}
	unlock, err := lockExclusive(ctx, s.lockPath())
	if err != nil {
		return fmt.Errorf("ipam registry %s: %w", s.path, err)
	}
	defer unlock()

	// Only the lock holder writes temp files, so any found now were left by
	// a writer that died before its rename.
	s.removeStaleTemps(dir)

	reg, before, err := s.read()
	if err != nil {
		return err
	}
	if err := fn(reg); err != nil {
		return err
	}
	after, err := marshalRegistry(reg)
	if err != nil {
		return fmt.Errorf("ipam registry %s: encode: %w", s.path, err)
	}
	if bytes.Equal(before, after) {
		return nil
	}
	if err := writeAtomic(s.path, s.tempPrefix(), after); err != nil {
		return fmt.Errorf("ipam registry %s: %w", s.path, err)
	}
	return nil
}

// read returns the registry and the bytes it was decoded from. Only a
// file that does not exist is a new, empty registry: an existing one that
// is empty, unparsable or has no lease list is a *RegistryError
// (ErrRegistryCorrupt), never silently replaced: taking it as empty would
// forget every lease.
func (s *FileStore) read() (*Registry, []byte, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Registry{Version: registryVersion}, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("ipam registry %s: %w", s.path, err)
	}
	corrupt := func(format string, args ...interface{}) error {
		return &RegistryError{Path: s.path, Problem: fmt.Sprintf(format, args...)}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil, corrupt("is empty (%d bytes), though it exists (a crash or a full disk may have cut it)", len(data))
	}
	var doc struct {
		Version int      `json:"version"`
		Leases  *[]Lease `json:"leases"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, nil, corrupt("is damaged (%v)", err)
	}
	if doc.Version > registryVersion {
		return nil, nil, fmt.Errorf("ipam registry %s: format version %d is newer than this cloudpod understands (%d): use the cloudpod that wrote it, or a newer one", s.path, doc.Version, registryVersion)
	}
	if doc.Leases == nil {
		return nil, nil, corrupt(`has no lease list ("leases" is null or missing)`)
	}
	return &Registry{Version: registryVersion, Leases: *doc.Leases}, data, nil
}

func (s *FileStore) removeStaleTemps(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), s.tempPrefix()) {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// marshalRegistry writes one lease per line, sorted, so that grep on an
// address shows its whole lease and diffs of the file stay readable.
func marshalRegistry(reg *Registry) ([]byte, error) {
	sortLeases(reg.Leases)
	var b bytes.Buffer
	fmt.Fprintf(&b, "{\"version\": %d, \"leases\": [", reg.Version)
	for i, l := range reg.Leases {
		line, err := json.Marshal(l)
		if err != nil {
			return nil, fmt.Errorf("lease %s: %w", l.IP, err)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n  ")
		b.Write(line)
	}
	b.WriteString("\n]}\n")
	return b.Bytes(), nil
}

// writeAtomic replaces path with data: temp file in the same directory,
// fsync, rename, fsync the directory so the rename itself is durable.
func writeAtomic(path, tempPrefix string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return fmt.Errorf("create temp file: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o640); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp.Name(), err)
	}
	committed = true
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory for fsync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory: %w", err)
	}
	return nil
}

// lockExclusive takes flock(LOCK_EX) on path and returns its release. The
// blocking flock runs in a goroutine so a cancelled ctx returns at once; the
// goroutine then releases the lock as soon as it gets it.
func lockExclusive(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	release := func() {
		// Closing the last descriptor drops the flock.
		_ = f.Close()
	}
	fd := int(f.Fd())
	err = flock(fd, unix.LOCK_EX|unix.LOCK_NB)
	if err == nil {
		return release, nil
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		release()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	got := make(chan error, 1)
	go func() { got <- flock(fd, unix.LOCK_EX) }()
	select {
	case err := <-got:
		if err != nil {
			release()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		return release, nil
	case <-ctx.Done():
		go func() {
			<-got
			release()
		}()
		return nil, fmt.Errorf("wait for lock %s: %w", path, ctx.Err())
	}
}

func flock(fd, how int) error {
	for {
		err := unix.Flock(fd, how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
