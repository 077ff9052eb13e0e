package flow_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// A flow is its state, a Run, and its steps as data: here a two-step flow
// whose second step fails, so the first one's undo runs.
func Example() {
	type state struct {
		run    *flow.Run
		made   bool // what the first step learns and its undo reads
		exists bool
	}
	s := &state{}
	s.run = flow.New(flow.Options{Kind: pve.QEMU, VMID: func() int { return 9201 }, Nothing: "nothing was created",
		Reporter: flow.ReporterFunc(func(e flow.Event) {
			if e.Phase != flow.PhaseDone { // a done event's message is the step's duration
				fmt.Println(strings.TrimSpace(fmt.Sprint(e.Step, " ", e.Phase, " ", e.Message)))
			}
		})})
	steps := []flow.Step{
		{Name: "clone",
			Check: func(context.Context) (string, error) {
				if s.exists {
					return "VM 9201 already cloned", nil
				}
				return "", nil
			},
			Run: func(context.Context) error { s.made = true; return nil },
			Plan: func(context.Context) ([]flow.Call, error) {
				return []flow.Call{{Method: "POST", Path: "/nodes/pve/qemu/9000/clone"}}, nil
			},
			Undo: func(ctx context.Context, rb flow.Rollback) flow.Outcome {
				if !s.made {
					return flow.Outcome{}
				}
				return flow.Outcome{Said: "rolled back: VM 9201 destroyed"}
			}},
		{Name: "start", Run: func(context.Context) error { return errors.New("qemu exited") }},
	}

	calls, _ := s.run.DryRun(context.Background(), steps)
	fmt.Println("dry run:", calls[0].Method, calls[0].Path)
	err := s.run.Execute(context.Background(), steps)
	fmt.Println(err)
	// Output:
	// dry run: POST /nodes/pve/qemu/9000/clone
	// clone start
	// start start
	// start fail qemu exited
	// VM 9201: step start failed: qemu exited; rolled back: VM 9201 destroyed
}
