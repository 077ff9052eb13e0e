package service

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestOpenAPIMatchesRoutes checks that the document lists exactly the
// routes the server serves, with the same methods, and the same pages
// where the security differs.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI  string                                `json:"openapi"`
		Paths    map[string]map[string]json.RawMessage `json:"paths"`
		Security []map[string][]string                 `json:"security"`
	}
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.0.") {
		t.Errorf("openapi %q, want 3.0.x", doc.OpenAPI)
	}
	var documented []string
	publicDoc := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, raw := range ops {
			op := strings.ToUpper(method) + " " + path
			documented = append(documented, op)
			var o struct {
				Security *[]map[string][]string `json:"security"`
			}
			if err := json.Unmarshal(raw, &o); err != nil {
				t.Fatalf("%s: %v", op, err)
			}
			publicDoc[op] = o.Security != nil && len(*o.Security) == 0
		}
	}
	srv := &Server{}
	var served []string
	for _, rt := range srv.routeTable() {
		op := rt.method + " " + rt.pattern
		served = append(served, op)
		if publicDoc[op] != rt.public {
			t.Errorf("%s: public %v in the router, %v in the document", op, rt.public, publicDoc[op])
		}
	}
	sort.Strings(documented)
	sort.Strings(served)
	if strings.Join(documented, "\n") != strings.Join(served, "\n") {
		t.Errorf("routes and document differ\nserved:\n%s\ndocumented:\n%s", strings.Join(served, "\n"), strings.Join(documented, "\n"))
	}
}

// TestOpenAPIDocsCopy keeps docs/openapi.json identical to the embedded one.
func TestOpenAPIDocsCopy(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "openapi.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, OpenAPI) {
		t.Error("docs/openapi.json differs from provisioner/service/openapi.json: copy the service's over it")
	}
}

func TestOpenAPIServed(t *testing.T) {
	h := start(t, newFakeFlows(), "", nil)
	rec := h.do("GET", "/openapi.json", "")
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), OpenAPI) || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("GET /openapi.json: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
}
