package pve

import (
	"fmt"
	"strconv"
	"strings"
)

// UPID is a parsed PVE task id:
// UPID:node:pid(8 hex):pstart(8-9 hex):starttime(8 hex):type:id:user:
type UPID struct {
	Raw       string
	Node      string
	PID       int64
	PStart    int64
	StartTime int64
	Type      string
	ID        string
	User      string
}

// ParseUPID checks the shape PVE's Tools.pm produces.
func ParseUPID(s string) (UPID, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 9 || parts[0] != "UPID" || parts[8] != "" {
		return UPID{}, fmt.Errorf("malformed task id %q", s)
	}
	u := UPID{Raw: s, Node: parts[1], Type: parts[5], ID: parts[6], User: parts[7]}
	var err error
	for _, f := range []struct {
		dst *int64
		src string
	}{{&u.PID, parts[2]}, {&u.PStart, parts[3]}, {&u.StartTime, parts[4]}} {
		if *f.dst, err = strconv.ParseInt(f.src, 16, 64); err != nil {
			return UPID{}, fmt.Errorf("malformed task id %q: %w", s, err)
		}
	}
	if u.Node == "" || u.Type == "" || u.User == "" {
		return UPID{}, fmt.Errorf("malformed task id %q", s)
	}
	return u, nil
}

func (u UPID) String() string { return u.Raw }
