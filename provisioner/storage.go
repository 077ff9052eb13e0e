package provisioner

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// Choosing a storage for a content type and a size, the way
// community-scripts' build.func does it with `pvesm status -content …`
// (validate_storage_space, check_storage_health): only active, enabled
// storages that hold the content type; the most room wins; a storage at
// 98 % used or more is refused, one at 85 % or more is used with a
// warning. PVE reports an inactive storage as 0/0, so it could never be
// judged by its room anyway.

// Storage fill levels, as fractions of the total.
const (
	StorageWarnUsed   = 0.85
	StorageRefuseUsed = 0.98
)

// StorageAuto asks ChooseStorage to pick.
const StorageAuto = "auto"

// StorageChoice is a chosen storage and why.
type StorageChoice struct {
	Storage pve.Storage `json:"-"`
	ID      string      `json:"storage"`
	// Reason says why this storage, in one sentence (dry runs show it).
	Reason string `json:"reason"`
	// Warning is set when the storage is used but nearly full.
	Warning string `json:"warning,omitempty"`
}

// UsedFraction is how full a storage is; 0 for one that reports no total.
func UsedFraction(s pve.Storage) float64 {
	if s.Total <= 0 {
		return 0
	}
	return float64(s.Used) / float64(s.Total)
}

// storageUnfit says why a storage cannot take need bytes of content, ""
// when it can.
func storageUnfit(s pve.Storage, content string, need int64) string {
	switch {
	case !s.Enabled:
		return "disabled"
	case !s.Active:
		return "not active"
	case !contains(s.Content, content):
		return "does not hold " + content + " (content " + strings.Join(s.Content, ",") + ")"
	case UsedFraction(s) >= StorageRefuseUsed:
		return fmt.Sprintf("%.0f%% used, at or over the %.0f%% limit", 100*UsedFraction(s), 100*StorageRefuseUsed)
	case need > 0 && s.Avail < need:
		return fmt.Sprintf("%s free, %s needed", humanBytes(s.Avail), humanBytes(need))
	}
	return ""
}

// ChooseStorage picks the storage for need bytes of content (rootdir,
// images, vztmpl, iso, import) among a node's storages: want is a name, or
// StorageAuto for the active storage with the most room. A refusal is a
// preflight error naming every storage and why it does not fit.
func ChooseStorage(storages []pve.Storage, want, content string, need int64) (StorageChoice, error) {
	room := func(s pve.Storage) string {
		return fmt.Sprintf("%s free of %s, %.0f%% used", humanBytes(s.Avail), humanBytes(s.Total), 100*UsedFraction(s))
	}
	warn := func(c *StorageChoice) {
		if u := UsedFraction(c.Storage); u >= StorageWarnUsed {
			c.Warning = fmt.Sprintf("storage %s is %.0f%% full (%s): free space soon; at %.0f%% it is refused", c.ID, 100*u, room(c.Storage), 100*StorageRefuseUsed)
		}
	}
	if want != "" && want != StorageAuto {
		for _, s := range storages {
			if s.ID != want {
				continue
			}
			if why := storageUnfit(s, content, need); why != "" {
				return StorageChoice{}, problemf(ErrPreflight, "storage %s cannot take the %s: %s: pass --storage auto or another storage (cloudpod storage list shows them)", want, content, why)
			}
			c := StorageChoice{Storage: s, ID: s.ID, Reason: fmt.Sprintf("storage %s as asked (%s)", s.ID, room(s))}
			warn(&c)
			return c, nil
		}
		return StorageChoice{}, problemf(ErrPreflight, "storage %s does not exist on this node: pass --storage auto or one of %s", want, storageNames(storages))
	}
	var fit []pve.Storage
	var skipped []string
	for _, s := range storages {
		if why := storageUnfit(s, content, need); why != "" {
			if contains(s.Content, content) {
				skipped = append(skipped, s.ID+" ("+why+")")
			}
			continue
		}
		fit = append(fit, s)
	}
	if len(fit) == 0 {
		if len(skipped) == 0 {
			return StorageChoice{}, problemf(ErrPreflight, "no storage on this node holds %s: add %s to a storage's content in PVE (Datacenter > Storage)", content, content)
		}
		return StorageChoice{}, problemf(ErrPreflight, "no storage can take the %s (%s needed): %s; free space or add a storage", content, humanBytes(need), strings.Join(skipped, "; "))
	}
	sort.SliceStable(fit, func(i, j int) bool { return fit[i].Avail > fit[j].Avail })
	best := fit[0]
	reason := fmt.Sprintf("storage %s: the active %s storage with the most room (%s)", best.ID, content, room(best))
	var others []string
	for _, s := range fit[1:] {
		others = append(others, s.ID+" "+humanBytes(s.Avail)+" free")
	}
	if len(others) > 0 {
		reason += "; also fit: " + strings.Join(others, ", ")
	}
	if len(skipped) > 0 {
		reason += "; passed over: " + strings.Join(skipped, ", ")
	}
	c := StorageChoice{Storage: best, ID: best.ID, Reason: reason}
	warn(&c)
	return c, nil
}

func storageNames(storages []pve.Storage) string {
	names := make([]string, len(storages))
	for i, s := range storages {
		names[i] = s.ID
	}
	return strings.Join(names, ", ")
}

// StorageRow is one storage as `cloudpod storage list` shows it.
type StorageRow struct {
	ID      string   `json:"storage"`
	Type    string   `json:"type"`
	Content []string `json:"content"`
	Active  bool     `json:"active"`
	Enabled bool     `json:"enabled"`
	Shared  bool     `json:"shared"`
	Used    int64    `json:"used"`
	Total   int64    `json:"total"`
	Avail   int64    `json:"avail"`
	// UsedFraction is Used/Total (0 for a storage that reports no total).
	UsedFraction float64 `json:"used_fraction"`
	// Fullest marks the active storage with the highest UsedFraction.
	Fullest bool `json:"fullest,omitempty"`
	// Level is "ok", "warn" (≥85 %: chosen with a warning) or "full"
	// (≥98 %: never chosen).
	Level string `json:"level"`
}

// StorageList is every storage of node with its fill level, sorted by
// name, the fullest active one marked.
func (p *Provisioner) StorageList(ctx context.Context, node string) ([]StorageRow, error) {
	storages, err := p.api.Storages(ctx, node)
	if err != nil {
		return nil, apiProblem("list storages on "+node, err)
	}
	rows := make([]StorageRow, 0, len(storages))
	fullest := -1
	for _, s := range storages {
		r := StorageRow{ID: s.ID, Type: s.Type, Content: s.Content, Active: s.Active, Enabled: s.Enabled, Shared: s.Shared,
			Used: s.Used, Total: s.Total, Avail: s.Avail, UsedFraction: UsedFraction(s), Level: "ok"}
		switch {
		case r.UsedFraction >= StorageRefuseUsed:
			r.Level = "full"
		case r.UsedFraction >= StorageWarnUsed:
			r.Level = "warn"
		}
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].ID < rows[j].ID })
	for i, r := range rows {
		if r.Active && r.Total > 0 && (fullest < 0 || r.UsedFraction > rows[fullest].UsedFraction) {
			fullest = i
		}
	}
	if fullest >= 0 {
		rows[fullest].Fullest = true
	}
	return rows, nil
}
