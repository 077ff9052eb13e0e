package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Content commands (template download, and image downloads built on the
// same flow) share the request flags, the dry run and the result line.

// contentFlags are the flags of a command that puts a file on a storage.
type contentFlags struct {
	node     string
	storage  string
	checksum string
	filename string
	noVerify bool
	dryRun   bool
}

// request turns the source argument (a catalogue name, or a URL when it
// has a scheme) and the flags into a content request.
func (f *contentFlags) request(g *globalOptions, content, source string) (provisioner.ContentRequest, error) {
	req := provisioner.ContentRequest{Node: f.node, Storage: f.storage, Content: content, Filename: f.filename, NoVerify: f.noVerify,
		Requester: g.requester}
	if strings.Contains(source, "://") {
		req.URL = source
	} else {
		req.Appliance = source
	}
	if f.checksum != "" {
		sum, err := pve.ParseChecksum(f.checksum)
		if err != nil {
			return req, fmt.Errorf("%w: --checksum: %v", errUsage, err)
		}
		req.Checksum = sum
	}
	return req, nil
}

// runContent runs the content flow, or its dry run, and prints the result.
// subject names the kind of file in progress lines ("template", "image").
func runContent(ctx context.Context, g *globalOptions, prov *provisioner.Provisioner, req provisioner.ContentRequest, subject string, dryRun bool) error {
	req.Reporter, req.Stop = subjectProgress(g, subject), g.stop
	if dryRun {
		plan, res, err := prov.PlanContent(ctx, req)
		if err != nil {
			return err
		}
		printDryRun(g, "the download", plan, []string{res.StorageReason})
		return nil
	}
	res, err := prov.FetchContent(ctx, req)
	if jsonResult(g, res, err) || err != nil {
		return err
	}
	what := "stored"
	if res.Cached {
		what = "already there, reused"
	}
	line := fmt.Sprintf("%s %s (%s)", res.VolID, what, humanSize(res.Size))
	if res.Verified != "" {
		line += ", verified " + res.Verified
	}
	fmt.Fprintln(g.stdout, line)
	for _, w := range res.Warnings {
		fmt.Fprintf(g.stdout, "warning: %s\n", w)
	}
	return nil
}

// subjectReporter prints the events of a flow about something other than
// a guest (a file on a storage) without a guest's VMID; JSON lines are the
// same as every flow's.
type subjectReporter struct {
	p       *progress
	subject string
}

func subjectProgress(g *globalOptions, subject string) provisioner.Reporter {
	return subjectReporter{p: newProgress(g), subject: subject}
}

func (r subjectReporter) Report(e provisioner.Event) {
	if r.p.json || e.VMID != 0 {
		r.p.Report(e)
		return
	}
	if e.Phase == provisioner.PhaseStart && r.p.quietStarts {
		return
	}
	r.p.mu.Lock()
	defer r.p.mu.Unlock()
	writeEventLine(r.p.w, e, r.subject)
}

// writeEventLine is one event as a line: elapsed, mark, subject, step.
func writeEventLine(w io.Writer, e provisioner.Event, subject string) {
	mark := map[provisioner.Phase]string{
		provisioner.PhaseStart: "…", provisioner.PhaseDone: "✓", provisioner.PhaseSkip: "=",
		provisioner.PhaseFail: "✗", provisioner.PhaseWarn: "!", provisioner.PhaseInfo: "·",
	}[e.Phase]
	line := fmt.Sprintf("[%6.1fs] %s %s %-10s %s", e.Elapsed.Seconds(), mark, subject, e.Step, e.Phase)
	if e.Message != "" {
		line += ": " + e.Message
	}
	fmt.Fprintln(w, line)
}

// showPlan prints what a flow's Plan function returns (its calls and the
// reasons for its defaults), or passes its error on.
func showPlan(g *globalOptions, what string) func([]provisioner.PlannedCall, []string, error) error {
	return func(plan []provisioner.PlannedCall, reasons []string, err error) error {
		if err != nil {
			return err
		}
		printDryRun(g, what, plan, reasons)
		return nil
	}
}

// runFlow runs a flow command under --timeout: its dry run (plan: the
// calls and the reasons) or the flow (run), whose result is a JSON line or
// what print writes.
func runFlow[R any](ctx context.Context, g *globalOptions, timeout string, dryRun bool, what string,
	plan func(context.Context) ([]provisioner.PlannedCall, []string, error), run func(context.Context) (R, error), print func(R)) error {
	ctx, cancel, err := withTimeout(ctx, timeout)
	if err != nil {
		return err
	}
	defer cancel()
	if dryRun {
		return showPlan(g, what)(plan(ctx))
	}
	res, err := run(ctx)
	if !jsonResult(g, res, err) && err == nil {
		print(res)
	}
	return err
}

// jsonResult writes a command's result line when the output is JSON and
// reports whether it did.
func jsonResult(g *globalOptions, v any, err error) bool {
	if g.output != "json" {
		return false
	}
	writeJSON(g.stdout, resultLine(v, err))
	return true
}

// printDryRun prints a flow's planned calls and the reasoning behind its
// defaults (which storage, which privilege level, …), or JSON lines of
// both.
func printDryRun(g *globalOptions, what string, plan []provisioner.PlannedCall, reasons []string) {
	if g.output == "json" {
		for _, c := range plan {
			writeJSON(g.stdout, struct {
				Type string `json:"type"`
				provisioner.PlannedCall
			}{"plan", c})
		}
		for _, r := range reasons {
			if r != "" {
				writeJSON(g.stdout, map[string]string{"type": "reason", "reason": r})
			}
		}
		return
	}
	fmt.Fprintf(g.stdout, "dry run: checks passed; these are the calls %s would make (nothing was changed):\n", what)
	for i, c := range plan {
		fmt.Fprintf(g.stdout, "%2d. %-6s %s", i+1, c.Method, c.Path)
		if c.Params != "" {
			fmt.Fprintf(g.stdout, "  %s", c.Params)
		}
		if c.Note != "" {
			fmt.Fprintf(g.stdout, "  # %s", c.Note)
		}
		fmt.Fprintln(g.stdout)
	}
	first := true
	for _, r := range reasons {
		if r == "" {
			continue
		}
		if first {
			fmt.Fprintln(g.stdout, "why:")
			first = false
		}
		fmt.Fprintf(g.stdout, "  - %s\n", r)
	}
}
