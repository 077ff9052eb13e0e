package pvetest

import (
	"context"
	"sort"
	"strconv"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Tasks lists the fake's tasks that f selects, newest first. Every task of
// the fake is the token's own.
func (f *Fake) Tasks(ctx context.Context, node string, tf pve.TaskFilter) ([]pve.TaskStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, _ := f.enter("Tasks", pve.GuestRef{}, tf.Type); err != nil {
		return nil, err
	}
	var out []pve.TaskStatus
	for _, t := range f.tasks {
		st := t.status
		if st.Node != node || (tf.Type != "" && st.Type != tf.Type) || (tf.VMID != 0 && st.ID != strconv.Itoa(tf.VMID)) ||
			(!tf.Since.IsZero() && st.StartTime.Before(tf.Since)) {
			continue
		}
		out = append(out, st)
	}
	// Newest first: UPIDs carry a growing pid.
	sort.Slice(out, func(i, j int) bool { return out[i].UPID > out[j].UPID })
	if tf.Limit > 0 && len(out) > tf.Limit {
		out = out[:tf.Limit]
	}
	return out, nil
}

// ConsolePath answers Console, or the API token as ConsoleRefusesTokens
// judges it.
func (f *Fake) ConsolePath(ctx context.Context, node string) pve.ConsolePath {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, Call{Method: "ConsolePath", Arg: node})
	if f.Console != nil {
		return *f.Console
	}
	if f.ConsoleRefusesTokens {
		return pve.ConsolePath{Tokens: pve.ConsoleTokenVerdict{Tokens: pve.ConsoleTokensRefused, Reason: "pvetest: the console refuses API-token tickets"}}
	}
	return pve.ConsolePath{Tokens: pve.ConsoleTokenVerdict{Tokens: pve.ConsoleTokensAccepted, Reason: "pvetest: the console accepts API-token tickets"}}
}
