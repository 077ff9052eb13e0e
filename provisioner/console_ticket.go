package provisioner

import (
	"errors"
	"fmt"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// consoleRetry is the retry policy for create's work in the console: the
// running step's, saying a refused console ticket (expired before it was
// used, or bad: 401 "invalid PVEVNC ticket") as what it is, a ticket to be
// replaced by attaching again, not a token problem.
func (r *createRun) consoleRetry() pve.RetryPolicy {
	pol := r.run.Retry()
	report := pol.OnRetry
	pol.OnRetry = func(what string, attempt int, err error, wait time.Duration) {
		var ce *pve.ConsoleError
		if !errors.Is(err, pve.ErrConsoleTicket) || !errors.As(err, &ce) {
			report(what, attempt, err, wait)
			return
		}
		r.p.log.WithField("vmid", r.spec.VMID).WithField("attempt", attempt).WithError(err).Debug("retrying " + what)
		r.run.Info(fmt.Sprintf("%v; attaching again with a fresh one in %s", ce, wait.Round(time.Millisecond)))
	}
	return pol
}
