package provisioner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Guest helpers shared by the flows (destroy, create's rollback, backup),
// for containers and VMs alike.

// powerOff shuts a running guest down cleanly (PVE stops it hard once
// timeout passes), falls back to a stop when the shutdown fails, and waits
// until it is stopped and no lock remains.
func (p *Provisioner) powerOff(ctx context.Context, g pve.GuestRef, timeout, lockWait time.Duration, warn func(string)) error {
	if err := p.waitNoLock(ctx, g, lockWait); err != nil {
		return err
	}
	st, err := p.api.GuestStatus(ctx, g)
	if err != nil {
		return err
	}
	if st.Status != "running" {
		return nil
	}
	err = p.powerTask(ctx, g, "shut down", func(ctx context.Context) (string, error) {
		return p.api.ShutdownGuest(ctx, g, timeout, true)
	})
	if err != nil {
		if errors.Is(err, pve.ErrNotFound) {
			return err
		}
		warn(fmt.Sprintf("clean shutdown of %s failed (%v): stopping it", g, err))
		if err := p.powerTask(ctx, g, "stop", func(ctx context.Context) (string, error) {
			return p.api.StopGuest(ctx, g)
		}); err != nil {
			return err
		}
	}
	// An HA-managed guest's hastop task ends once the request is queued;
	// the HA manager stops the guest afterwards, within its own timeout.
	if err := p.waitStopped(ctx, g, timeout+haStopGrace); err != nil {
		return err
	}
	return p.waitNoLock(ctx, g, lockWait)
}

// haStopGrace is how long past the shutdown timeout the HA manager may
// take to act on a stop request.
const haStopGrace = time.Minute

// powerTask runs a stop-like call and waits for its task, retrying
// transient refusals; "not running" counts as done.
func (p *Provisioner) powerTask(ctx context.Context, g pve.GuestRef, what string, call func(ctx context.Context) (string, error)) error {
	return p.opts.Retry.Do(ctx, fmt.Sprintf("%s %s", what, g), func(ctx context.Context) error {
		upid, err := call(ctx)
		if err == nil {
			_, err = p.wait(ctx, g.Node, upid)
		}
		if err != nil && isNotRunning(err) {
			return nil
		}
		return err
	}, func(ctx context.Context, _ error) (bool, error) {
		st, err := p.api.GuestStatus(ctx, g)
		return err == nil && st.Status == "stopped", err
	})
}

func isNotRunning(err error) bool { return strings.Contains(err.Error(), "not running") }

func (p *Provisioner) waitStopped(ctx context.Context, g pve.GuestRef, limit time.Duration) error {
	var status string
	err := pollUntil(ctx, limit, func(ctx context.Context) (bool, error) {
		st, err := p.api.GuestStatus(ctx, g)
		if err == nil {
			status = st.Status // a probe the limit cut short reads nothing
		}
		return err == nil && st.Status == "stopped", err
	})
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return fmt.Errorf("%s is still %s %s after it was told to stop: %w", g, status, limit, pve.ErrWaitTimeout)
	}
	return err
}

// waitNoLock waits until the guest's config carries no lock, for at most
// limit.
func (p *Provisioner) waitNoLock(ctx context.Context, g pve.GuestRef, limit time.Duration) error {
	var lock string
	err := pollUntil(ctx, limit, func(ctx context.Context) (bool, error) {
		cfg, err := p.api.GuestConfig(ctx, g)
		if err == nil {
			lock = cfg.Get("lock") // a probe the limit cut short reads nothing
		}
		return err == nil && lock == "", err
	})
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return fmt.Errorf("%s is still locked (%s) after %s: %s: %w", g, lock, limit, lockAdvice(g, lock), pve.ErrWaitTimeout)
	}
	return err
}

// lockAdvice says what holds a PVE guest lock and what to do about it.
func lockAdvice(g pve.GuestRef, lock string) string {
	tool := "pct"
	if g.Kind == pve.QEMU {
		tool = "qm"
	}
	stale := fmt.Sprintf("if no such task is running (node > Task History), the lock is stale: clear it on the node with '%s unlock %d'", tool, g.VMID)
	switch lock {
	case "backup":
		return "a backup (vzdump) is running; wait for it to finish, or " + stale
	case "snapshot", "snapshot-delete", "rollback":
		return "a snapshot task is running; " + stale
	case "migrate":
		return "a migration is running; " + stale
	case "create", "disk", "clone":
		return "a clone or create is running or crashed; " + stale
	}
	return "another PVE task holds it; " + stale
}

// deleteGuest is PVE's DELETE with purge (removes it from HA, replication
// jobs and pools) and destroy-unreferenced-disks, retried on locks. A lost
// answer or a failed task is settled by checking whether the guest is gone:
// a repeated DELETE racing the first one fails with "does not exist".
func (p *Provisioner) deleteGuest(ctx context.Context, g pve.GuestRef, lockWait time.Duration) error {
	gone := func(ctx context.Context) (bool, error) {
		_, err := p.api.GuestConfig(ctx, g)
		if errors.Is(err, pve.ErrNotFound) {
			return true, nil
		}
		return false, err
	}
	attempt := func() error {
		return p.opts.Retry.Do(ctx, fmt.Sprintf("delete %s", g), func(ctx context.Context) error {
			upid, err := p.api.DeleteGuest(ctx, g, pve.DeleteOptions{Purge: true, DestroyUnreferencedDisks: true})
			if errors.Is(err, pve.ErrNotFound) {
				return nil
			}
			if err == nil {
				_, err = p.wait(ctx, g.Node, upid)
			}
			if err != nil && !errors.Is(err, pve.ErrMaybeApplied) {
				if g, gerr := gone(ctx); gerr == nil && g {
					return nil
				}
			}
			return err
		}, func(ctx context.Context, _ error) (bool, error) { return gone(ctx) })
	}
	err := attempt()
	if err == nil || !errors.Is(err, pve.ErrLocked) {
		return err
	}
	// The retries ran out on a lock: wait for it as shutdown does, then
	// try once more.
	if werr := p.waitNoLock(ctx, g, lockWait); werr != nil {
		return werr
	}
	return attempt()
}

// removeGuest is rollback: only a guest whose marker carries runID goes.
func (p *Provisioner) removeGuest(ctx context.Context, g pve.GuestRef, runID string) error {
	cfg, err := p.api.GuestConfig(ctx, g)
	if errors.Is(err, pve.ErrNotFound) {
		return nil // PVE already removed a failed clone's target
	}
	if err != nil {
		return err
	}
	if m, ok := ParseMarker(cfg.Get("description")); !ok || m.RunID != runID || !m.Owns(g.VMID) {
		return fmt.Errorf("%s does not carry this run's marker: left untouched", g)
	}
	if err := p.waitNoLock(ctx, g, p.opts.TaskTimeout); err != nil {
		return err
	}
	if err := p.powerTask(ctx, g, "stop", func(ctx context.Context) (string, error) {
		return p.api.StopGuest(ctx, g)
	}); err != nil {
		return err
	}
	return p.deleteGuest(ctx, g, p.opts.TaskTimeout)
}

// configIP is the address of net0 in a CT config, "" when static-less.
func configIP(cfg pve.Config) string {
	for _, kv := range strings.Split(cfg.Get("net0"), ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == "ip" {
			if a, _, ok := strings.Cut(v, "/"); ok {
				return a
			}
			return v
		}
	}
	return ""
}
