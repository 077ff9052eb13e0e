package provisioner

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// diffFields lists the JSON fields two values differ in, as "field: old →
// new", or for lists the items only one side has ("field: -old +new").
func diffFields(old, new any) []string {
	a, _ := json.Marshal(old)
	b, _ := json.Marshal(new)
	var ma, mb map[string]any
	_ = json.Unmarshal(a, &ma)
	_ = json.Unmarshal(b, &mb)
	keys := map[string]bool{}
	for k := range ma {
		keys[k] = true
	}
	for k := range mb {
		keys[k] = true
	}
	var out []string
	for k := range keys {
		if fmt.Sprint(ma[k]) == fmt.Sprint(mb[k]) {
			continue
		}
		la, oka := ma[k].([]any)
		lb, okb := mb[k].([]any)
		if oka && okb {
			out = append(out, k+": "+listDiff(la, lb))
			continue
		}
		out = append(out, fmt.Sprintf("%s: %v → %v", k, show(ma[k]), show(mb[k])))
	}
	sort.Strings(out)
	return out
}

// listDiff says which items only one of two lists has: -old +new.
func listDiff(a, b []any) string {
	in := func(l []any, x any) bool {
		for _, y := range l {
			if fmt.Sprint(y) == fmt.Sprint(x) {
				return true
			}
		}
		return false
	}
	var parts []string
	for _, x := range a {
		if !in(b, x) {
			parts = append(parts, fmt.Sprintf("-%v", x))
		}
	}
	for _, x := range b {
		if !in(a, x) {
			parts = append(parts, fmt.Sprintf("+%v", x))
		}
	}
	if len(parts) == 0 {
		return "order " + show(a) + " → " + show(b)
	}
	return strings.Join(parts, " ")
}
