package provisioner_test

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/migrahosting/cloudpods/provisioner"
)

// docSection is the text of a file from heading up to the next heading of
// the same level.
func docSection(t *testing.T, file, heading string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i := strings.Index(text, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("%s has no %q", file, heading)
	}
	text = text[i+1+len(heading):]
	level := heading[:strings.Index(heading, " ")+1]
	if j := strings.Index(text, "\n"+level); j >= 0 {
		text = text[:j]
	}
	return text
}

// TestArchitectureTaxonomyIsKindCodes: docs/architecture.md's table of
// kinds, exit codes and HTTP statuses is Kind.Codes, row for row.
func TestArchitectureTaxonomyIsKindCodes(t *testing.T) {
	section := docSection(t, "../docs/architecture.md", "## The error taxonomy")
	documented := map[provisioner.Kind][2]int{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)`[^|]* \\| (\\d+) \\| (\\d+) \\|$").FindAllStringSubmatch(section, -1) {
		exit, _ := strconv.Atoi(m[2])
		status, _ := strconv.Atoi(m[3])
		documented[provisioner.Kind(m[1])] = [2]int{exit, status}
	}
	for _, k := range provisioner.Kinds {
		exit, status := k.Codes()
		got, ok := documented[k]
		switch {
		case !ok:
			t.Errorf("docs/architecture.md's taxonomy lacks kind %s (exit %d, HTTP %d)", k, exit, status)
		case got != [2]int{exit, status}:
			t.Errorf("docs/architecture.md says %s is exit %d, HTTP %d; Codes says %d, %d", k, got[0], got[1], exit, status)
		}
		delete(documented, k)
	}
	for k := range documented {
		t.Errorf("docs/architecture.md's taxonomy has kind %s, which is none", k)
	}
}
