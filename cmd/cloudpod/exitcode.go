package main

import "github.com/migrahosting/cloudpods/provisioner"

// Exit codes, documented in README ("Exit codes") and docs/retry-policy.md.
// Which error gets which is provisioner.Kind's one table (Kind.Codes).
const (
	exitOK          = 0
	exitFailed      = 1  // a step failed; what the run created was rolled back
	exitUsage       = 2  // bad flags or arguments; nothing was contacted
	exitPreflight   = 3  // PVE's state refuses the request; nothing was created
	exitConflict    = 4  // VMID, IP or hostname taken, or a different spec on the VMID
	exitAuth        = 5  // token rejected or missing privilege
	exitTimeout     = 6  // a task or wait ran out of time; what the run created was rolled back
	exitUnreachable = 7  // PVE did not answer; the outcome may be unknown
	exitRefused     = 8  // a safety rule refused (destroy without --force, not ours…)
	exitBusy        = 9  // a PVE lock stayed held past the wait; what the run created was rolled back
	exitLeftBehind  = 10 // a failure left a CT behind; the message says how to finish or remove it
	exitRegistry    = 11 // the IPAM registry file is empty, damaged or has no lease list
	exitInterrupted = 130
)

// exitSentences say, in one sentence each, what an exit code means for the
// operator: what state the run left and what to do next.
var exitSentences = map[int]string{
	exitFailed:      "A step failed and everything this run created was rolled back; fix the cause and run the same command again.",
	exitUsage:       "The command line is wrong; nothing was contacted or changed.",
	exitPreflight:   "PVE's state does not allow this request; nothing was created.",
	exitConflict:    "The VMID, IP or hostname is taken, or the VMID holds a pod with a different spec; nothing was changed.",
	exitAuth:        "PVE refused the API token or it lacks a privilege; nothing was changed.",
	exitTimeout:     "A PVE task or wait ran out of time; what this run created was rolled back (see --task-timeout and --http-timeout).",
	exitUnreachable: "PVE could not be reached (refused connection, untrusted certificate) or did not answer, so whether the last action happened is unknown; the message says what to fix, then run the same command again to converge.",
	exitRefused:     "A safety rule refused the action; nothing was changed.",
	exitBusy:        "A PVE lock (a backup, clone or migration) stayed held past the wait; what this run created was rolled back, run the command again later.",
	exitLeftBehind:  "The run failed and left a CT behind; run the same command again to finish it, or destroy it as the message says.",
	exitRegistry:    "The IPAM registry file is empty, damaged or has no lease list, so nothing was changed; restore it, or move it aside and rebuild it from PVE with cloudpod ip sync --repair.",
	exitInterrupted: "Stopped on request; run the same command again to finish, as the message says.",
}

// exitCode is the exit code of err's kind (provisioner.KindOf): the same
// classification the service's HTTP statuses come from.
func exitCode(err error) int {
	code, _ := provisioner.KindOf(err).Codes()
	return code
}

// errUsage marks command-line mistakes: bad input, as the taxonomy says.
var errUsage error = usageError{}

type usageError struct{}

func (usageError) Error() string { return "usage" }

// Is makes a usage error an invalid request (exit 2, "invalid").
func (usageError) Is(target error) bool { return target == provisioner.ErrInvalidSpec }
