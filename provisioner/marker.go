package provisioner

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// The ownership marker is a line in the guest's description. PVE keeps the
// description through clones, backups and restores, and any PVE user can see
// it in the GUI, so the marker both proves ownership and tells a human what
// made the guest.
const markerPrefix = "cloudpods-marker: "

// OwnerTag is put on every CloudPod so they can be listed cluster-wide from
// cluster/resources alone.
const OwnerTag = "cloudpod"

// Marker is what CloudPods records on a guest it created.
type Marker struct {
	Version  int        `json:"v"`
	By       string     `json:"by"`
	VMID     int        `json:"vmid"`
	Hostname string     `json:"hostname"`
	Tenant   string     `json:"tenant,omitempty"`
	SpecHash string     `json:"spec"`
	Spec     essentials `json:"want"`
	RunID    string     `json:"run"`
	Created  time.Time  `json:"created"`
	// State is "provisioning" until the pod is verified, then "ready";
	// "failed" when a failed run kept it on request (--keep-on-failure).
	State string `json:"state"`
}

func newMarker(s Spec, runID string, now time.Time) Marker {
	return Marker{Version: 1, By: "cloudpods", VMID: s.VMID, Hostname: s.Hostname, Tenant: s.Tenant,
		SpecHash: s.Hash(), Spec: s.essentials(), RunID: runID, Created: now.UTC().Truncate(time.Second), State: "provisioning"}
}

// Description renders the guest description: a human line, then the marker.
func (m Marker) Description() string {
	b, _ := json.Marshal(m)
	human := fmt.Sprintf("CloudPod %s", m.Hostname)
	if m.Tenant != "" {
		human += " for tenant " + m.Tenant
	}
	return human + " — managed by cloudpods, do not edit the line below\n" + markerPrefix + string(b) + "\n"
}

// ParseMarker finds the marker in a description; ok is false when the guest
// was not made by CloudPods.
func ParseMarker(description string) (Marker, bool) {
	for _, line := range strings.Split(description, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, markerPrefix) {
			continue
		}
		var m Marker
		if json.Unmarshal([]byte(strings.TrimPrefix(line, markerPrefix)), &m) == nil && m.By == "cloudpods" && m.VMID > 0 {
			return m, true
		}
	}
	return Marker{}, false
}

// Owns reports whether the marker belongs on guest vmid (a marker copied
// into another guest, by a clone made outside CloudPods, does not count).
func (m Marker) Owns(vmid int) bool { return m.VMID == vmid }
