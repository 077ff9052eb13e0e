package goproxmox

import (
	"context"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Tasks is GET /nodes/{node}/tasks (pve-manager PVE/API2/Tasks.pm
// node_tasks) with source=all, so running tasks are listed too (status
// "RUNNING"; an ended task's status is its exit status). A token sees its
// own tasks; with Sys.Audit on /nodes/{node}, everyone's.
func (c *Client) Tasks(ctx context.Context, node string, f pve.TaskFilter) ([]pve.TaskStatus, error) {
	params := map[string]string{"source": "all"}
	if f.Finished {
		params["source"] = "archive"
	}
	if f.Limit > 0 {
		params["limit"] = strconv.Itoa(f.Limit)
	}
	setIf(params, "typefilter", f.Type)
	if f.VMID != 0 {
		params["vmid"] = strconv.Itoa(f.VMID)
	}
	if !f.Since.IsZero() {
		params["since"] = strconv.FormatInt(f.Since.Unix(), 10)
	}
	var raw []taskFields
	if err := c.call(ctx, "GET", "/nodes/"+url.PathEscape(node)+"/tasks", params, &raw); err != nil {
		return nil, err
	}
	out := make([]pve.TaskStatus, 0, len(raw))
	for _, t := range raw {
		st := t.status()
		if (!f.Since.IsZero() && st.StartTime.Before(f.Since)) || (f.Own && !c.ownTask(t.UPID)) {
			continue
		}
		// The list says RUNNING, or the exit status where the status
		// call says stopped.
		if t.Status == "" || t.Status == "RUNNING" {
			st.Status = "running"
		} else {
			st.Status, st.ExitStatus = "stopped", t.Status
		}
		out = append(out, st)
	}
	// PVE lists running tasks first, in the order it started them.
	sort.SliceStable(out, func(i, j int) bool { return out[i].StartTime.After(out[j].StartTime) })
	return out, nil
}

// taskFields are what PVE says of a task, in its status (…/tasks/{upid}/
// status) and in the task list.
type taskFields struct {
	UPID       string    `json:"upid"`
	Node       string    `json:"node"`
	Type       string    `json:"type"`
	ID         string    `json:"id"`
	User       string    `json:"user"`
	TokenID    string    `json:"tokenid"`
	Status     string    `json:"status"`
	ExitStatus string    `json:"exitstatus"`
	StartTime  flexInt64 `json:"starttime"`
	EndTime    flexInt64 `json:"endtime"`
}

// status is the task as pve.TaskStatus, its user split from the token
// where PVE gave the whole user@realm!token.
func (t taskFields) status() pve.TaskStatus {
	st := pve.TaskStatus{UPID: t.UPID, Node: t.Node, Type: t.Type, ID: t.ID, User: t.User, TokenID: t.TokenID,
		Status: t.Status, ExitStatus: t.ExitStatus, StartTime: time.Unix(int64(t.StartTime), 0)}
	if t.EndTime > 0 {
		st.EndTime = time.Unix(int64(t.EndTime), 0)
	}
	if user, token, ok := strings.Cut(t.User, "!"); ok && st.TokenID == "" {
		st.User, st.TokenID = user, token
	}
	return st
}

// ownTask reports whether this client's API token started the task: the
// UPID names the user (user@realm!token) that forked it.
func (c *Client) ownTask(upid string) bool {
	u, err := pve.ParseUPID(upid)
	return err == nil && u.User == c.opts.TokenID
}
