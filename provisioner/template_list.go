package provisioner

import (
	"context"
	"sort"
	"strings"
)

// TemplateEntry is one container template: a catalogue entry, a file on a
// template storage, or both.
type TemplateEntry struct {
	Template string `json:"template"`
	OS       string `json:"os,omitempty"`
	Headline string `json:"headline,omitempty"`
	Section  string `json:"section,omitempty"`
	// InCatalogue: PVE's appliance index offers it.
	InCatalogue bool `json:"in_catalogue"`
	// Held are the volumes holding it, one per vztmpl storage.
	Held []HeldVolume `json:"held,omitempty"`
}

// HeldVolume is a template file on a storage.
type HeldVolume struct {
	VolID string `json:"volid"`
	Size  int64  `json:"size"`
}

// Templates lists the node's appliance catalogue and what every active
// vztmpl storage holds, by template name: catalogue entries first, then
// files the catalogue does not know (uploads, other sources).
func (p *Provisioner) Templates(ctx context.Context, node string) ([]TemplateEntry, error) {
	apps, err := p.api.Appliances(ctx, node)
	if err != nil {
		return nil, apiProblem("read the appliance catalogue of "+node, err)
	}
	byName := map[string]*TemplateEntry{}
	var order []string
	for _, a := range apps {
		if a.Type != "" && a.Type != "lxc" {
			continue
		}
		byName[a.Template] = &TemplateEntry{Template: a.Template, OS: a.OS, Headline: a.Headline, Section: a.Section, InCatalogue: true}
		order = append(order, a.Template)
	}
	sort.Strings(order)
	storages, err := p.api.Storages(ctx, node)
	if err != nil {
		return nil, apiProblem("list storages on "+node, err)
	}
	var extra []string
	for _, s := range storages {
		if !s.Active || !contains(s.Content, "vztmpl") {
			continue
		}
		vols, err := p.api.StorageContent(ctx, node, s.ID, "vztmpl")
		if err != nil {
			return nil, apiProblem("list the templates on storage "+s.ID, err)
		}
		for _, v := range vols {
			_, name, _ := strings.Cut(v.VolID, "/")
			e, ok := byName[name]
			if !ok {
				e = &TemplateEntry{Template: name}
				byName[name] = e
				extra = append(extra, name)
			}
			e.Held = append(e.Held, HeldVolume{VolID: v.VolID, Size: v.Size})
		}
	}
	sort.Strings(extra)
	out := make([]TemplateEntry, 0, len(order)+len(extra))
	for _, n := range append(order, extra...) {
		out = append(out, *byName[n])
	}
	return out, nil
}
