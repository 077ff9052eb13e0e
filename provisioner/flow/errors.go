package flow

import (
	"errors"
	"fmt"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// StepError is a failure at one step of a flow: the step, the guest, the
// cause (errors.Is/As reach PVE's typed errors through it), and what the
// run left behind.
type StepError struct {
	Step string
	// Kind and VMID name the guest; the zero kind reads as a container.
	Kind pve.GuestKind
	VMID int
	Err  error
	// RolledBack says what happened to what the run had made, and to its
	// bookkeeping (an IPAM reservation).
	RolledBack string
	// Left: something the run made remains at the guest.
	Left bool
}

func (e *StepError) Error() string {
	// A flow about no guest (a template download) or one whose VMID is
	// not known yet names none.
	guest := ""
	if e.VMID != 0 {
		guest = fmt.Sprintf("%s %d: ", e.Kind.Noun(), e.VMID)
	}
	s := fmt.Sprintf("%sstep %s failed: %v", guest, e.Step, e.Err)
	if errors.Is(e.Err, ErrInterrupted) {
		s = fmt.Sprintf("%sstopped on request before step %s", guest, e.Step)
	}
	if e.RolledBack != "" {
		s += "; " + e.RolledBack
	}
	return s
}

func (e *StepError) Unwrap() error { return e.Err }

// Is makes a failure that left something behind match ErrLeftBehind.
func (e *StepError) Is(target error) bool { return target == ErrLeftBehind && e.Left }
