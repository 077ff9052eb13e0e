package provisioner

import (
	"context"
	"strings"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// privilege is one privilege a flow needs on an ACL path; any of Or
// instead of it will also do (download-url takes Sys.AccessNetwork on the
// node, or Sys.Audit with Sys.Modify on /).
type privilege struct {
	Path, Priv string
	Or         [][]privilege
}

func (p privilege) heldBy(perms pve.Permissions) bool {
	if perms.Has(p.Path, p.Priv) {
		return true
	}
	for _, alt := range p.Or {
		all := true
		for _, q := range alt {
			all = all && perms.Has(q.Path, q.Priv)
		}
		if all {
			return true
		}
	}
	return false
}

func (p privilege) String() string {
	s := p.Priv + " on " + p.Path
	for _, alt := range p.Or {
		parts := make([]string, len(alt))
		for i, q := range alt {
			parts[i] = q.Priv + " on " + q.Path
		}
		s += " (or " + strings.Join(parts, " with ") + ")"
	}
	return s
}

// checkPrivileges asks PVE for the token's privileges and names every
// missing one in one sentence with the fix, as create's preflight does.
func (p *Provisioner) checkPrivileges(ctx context.Context, need []privilege) error {
	perms, err := p.api.Permissions(ctx)
	if err != nil {
		return apiProblem("read the token's permissions", err)
	}
	return missingPrivileges(perms, need)
}

// missingPrivileges is nil when perms hold everything in need.
func missingPrivileges(perms pve.Permissions, need []privilege) error {
	var missing []string
	for _, n := range need {
		if !n.heldBy(perms) {
			missing = append(missing, n.String())
		}
	}
	if len(missing) > 0 {
		return problemf(ErrPreflight, "the API token lacks %s: grant them to the token (README: \"Token and minimal role\")", strings.Join(missing, ", "))
	}
	return nil
}
