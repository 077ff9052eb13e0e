package netcfg

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// tagRE is PVE's pve-tag format ($PVE_TAG_RE, matched case-insensitively),
// spelled out in ASCII because Go's (?i) would also let the Kelvin sign
// match k.
var tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_\-+.]*$`)

// NormalizeTags returns tags the way PVE stores them with the default
// datacenter tag-style: split on ',', ';' and whitespace (or only on NUL
// when the input holds one, as PVE's split_list does), lower-cased, sorted,
// deduplicated and joined by ';'. Every tag must match PVE's pve-tag format,
// checked before lower-casing as PVE's schema check is. "" gives "".
func NormalizeTags(in string) (string, error) {
	var tags []string
	if strings.ContainsRune(in, 0) {
		// Perl's split drops trailing empty fields.
		tags = strings.Split(strings.TrimRight(in, "\x00"), "\x00")
	} else {
		tags = strings.FieldsFunc(in, func(r rune) bool {
			return r == ',' || r == ';' || r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\f' || r == '\v'
		})
	}
	var bad []string
	for i, t := range tags {
		if !tagRE.MatchString(t) {
			bad = append(bad, fmt.Sprintf("%q", t))
		}
		tags[i] = strings.ToLower(t)
	}
	switch len(bad) {
	case 0:
	case 1:
		return "", fmt.Errorf("tag %s is not valid: use letters, digits and _ - + . (starting with a letter, digit or _), e.g. tenant-acme", bad[0])
	default:
		return "", fmt.Errorf("tags %s are not valid: use letters, digits and _ - + . (starting with a letter, digit or _), e.g. tenant-acme", strings.Join(bad, ", "))
	}
	slices.Sort(tags)
	return strings.Join(slices.Compact(tags), ";"), nil
}
