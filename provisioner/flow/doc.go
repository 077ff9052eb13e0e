// Package flow is CloudPods' one flow engine. A flow is an ordered list of
// Steps; every flow (create, destroy, backup, and the VM and template flows
// to come) is written on it, so events, timing, stop-at-a-boundary, the
// retry policy, the rollback ledger, dry runs and the audit hook exist
// once.
//
// Writing a flow:
//
//  1. Keep the flow's state in a struct (the guest, what the steps learn:
//     a lease, the config read, whether a clone went out) with a *Run made
//     by New(Options{Kind, VMID, Reporter, Stop, Retry, Nothing, Audit…}).
//  2. Write each step as a Step: a Name; ReadOnly if it changes nothing
//     (a dry run then runs it for real); Check, if whether the work is done
//     can be read cheaply before doing it; Run, which may also find the
//     work done on the way and return Skip(reason); Plan, the calls Run
//     would make, which is all a dry run learns of a step that changes
//     something; Undo, if the step makes something a failure must remove.
//  3. List the steps in order, as data, and call Run.Execute (or
//     Run.DryRun for a dry run: the same steps, never a second copy).
//
// Inside a step, use Run.Retry for the retry policy (retries are reported
// as progress), Run.Warn and Run.Info for progress, Run.Note for the done
// message. An Undo is entered in the ledger when its step's Run starts and
// is called, newest first, with the Cause: it reverses only what this run
// made, reading the state to find out (a marker carrying the run's id), and
// returns an Outcome saying what it did and whether something is left, which
// stops the unwinding there.
package flow
