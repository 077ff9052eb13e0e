package main

import (
	"context"
	"errors"

	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Exit codes, documented in README ("Exit codes").
const (
	exitOK          = 0
	exitFailed      = 1 // a step failed; what the run created was rolled back
	exitUsage       = 2 // bad flags or arguments; nothing was contacted
	exitPreflight   = 3 // PVE's state refuses the request; nothing was created
	exitConflict    = 4 // VMID, IP or hostname taken, or a different spec on the VMID
	exitAuth        = 5 // token rejected or missing privilege
	exitTimeout     = 6 // a task or wait ran out of time
	exitUnreachable = 7 // PVE did not answer; the outcome may be unknown
	exitRefused     = 8 // a safety rule refused (destroy without --force, not ours…)
	exitInterrupted = 130
)

func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errUsage), errors.Is(err, provisioner.ErrInvalidSpec):
		return exitUsage
	case errors.Is(err, provisioner.ErrInterrupted), errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.Is(err, provisioner.ErrConflict):
		return exitConflict
	case errors.Is(err, provisioner.ErrRefused):
		return exitRefused
	case errors.Is(err, pve.ErrUnauthorized), errors.Is(err, pve.ErrForbidden):
		return exitAuth
	case errors.Is(err, provisioner.ErrPreflight):
		return exitPreflight
	case errors.Is(err, pve.ErrWaitTimeout), errors.Is(err, context.DeadlineExceeded):
		return exitTimeout
	case errors.Is(err, pve.ErrMaybeApplied):
		return exitUnreachable
	}
	return exitFailed
}

// errUsage marks command-line mistakes.
var errUsage = errors.New("usage")
