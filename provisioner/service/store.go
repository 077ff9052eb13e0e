package service

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Store keeps jobs across restarts. Save must be durable when it returns:
// a job the API acknowledged must still be there after a crash.
type Store interface {
	Load() ([]Job, error)
	Save(job Job) error
	Delete(id string) error
}

// DirStore is a directory with one JSON file per job, each written to a
// temporary file, fsynced and renamed over the old one, then the directory
// fsynced: a crash leaves either the old or the new state, never a torn
// file. Chosen over an embedded database because jobs are few (panel
// clicks, not a firehose) and small, operators can read and repair them
// with cat and an editor, and it needs no dependency. An exclusive flock on
// the directory keeps a second `cloudpod serve` from sharing it.
type DirStore struct {
	dir  string
	lock *os.File
}

var _ Store = (*DirStore)(nil)

const lockName = ".lock"

// OpenDirStore opens (creating) dir and locks it for this process.
func OpenDirStore(dir string) (*DirStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("job store %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("job store %s: %w", dir, err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("job store %s is in use by another cloudpod serve", dir)
		}
		return nil, fmt.Errorf("job store %s: lock: %w", dir, err)
	}
	// A crash between write and rename leaves a temporary file behind;
	// the job's previous state is still in its .json.
	leftovers, _ := filepath.Glob(filepath.Join(dir, "*.tmp"))
	for _, f := range leftovers {
		_ = os.Remove(f)
	}
	return &DirStore{dir: dir, lock: lock}, nil
}

// Close releases the directory.
func (d *DirStore) Close() error { return d.lock.Close() }

func (d *DirStore) path(id string) string { return filepath.Join(d.dir, id+".json") }

// Load reads every job, oldest first.
func (d *DirStore) Load() ([]Job, error) {
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, fmt.Errorf("job store %s: %w", d.dir, err)
	}
	var jobs []Job
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d.dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("job store %s: %w", d.dir, err)
		}
		var j Job
		if err := json.Unmarshal(b, &j); err != nil {
			return nil, fmt.Errorf("job file %s is damaged (move it away to start without it): %w", filepath.Join(d.dir, e.Name()), err)
		}
		jobs = append(jobs, j)
	}
	sort.SliceStable(jobs, func(a, b int) bool { return jobs[a].Created.Before(jobs[b].Created) })
	return jobs, nil
}

// Save writes the job durably.
func (d *DirStore) Save(j Job) error {
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return fmt.Errorf("job %s: %w", j.ID, err)
	}
	tmp, err := os.CreateTemp(d.dir, j.ID+".*.tmp")
	if err != nil {
		return fmt.Errorf("job %s: %w", j.ID, err)
	}
	_, werr := tmp.Write(append(b, '\n'))
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), d.path(j.ID))
	}
	if werr != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("job %s: %w", j.ID, werr)
	}
	return d.syncDir()
}

// Delete removes a job for good.
func (d *DirStore) Delete(id string) error {
	if err := os.Remove(d.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("job %s: %w", id, err)
	}
	return d.syncDir()
}

// syncDir makes renames and removals durable.
func (d *DirStore) syncDir() error {
	f, err := os.Open(d.dir)
	if err != nil {
		return fmt.Errorf("job store %s: %w", d.dir, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("job store %s: %w", d.dir, err)
	}
	return nil
}
