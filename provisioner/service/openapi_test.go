package service

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/migrahosting/cloudpods/provisioner"
)

// httpMethods are the keys of an OpenAPI path item that are operations;
// the others (summary, parameters, ...) describe the path.
var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// TestOpenAPIDocumentIsValid: the document is OpenAPI 3.0 by kin-openapi's
// validator, and by the structural rules the panel's code generator relies
// on, checked on the raw JSON so they do not depend on the library.
func TestOpenAPIDocumentIsValid(t *testing.T) {
	var raw map[string]any
	if err := json.Unmarshal(OpenAPI, &raw); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	for _, key := range []string{"openapi", "info", "paths"} {
		if _, ok := raw[key]; !ok {
			t.Errorf("top-level %q is missing", key)
		}
	}
	if v, _ := raw["openapi"].(string); !strings.HasPrefix(v, "3.0.") {
		t.Errorf("openapi %q, want 3.0.x", v)
	}
	if info, _ := raw["info"].(map[string]any); info["title"] == nil || info["version"] == nil {
		t.Errorf("info needs title and version: %v", info)
	}
	paths, _ := raw["paths"].(map[string]any)
	if len(paths) == 0 {
		t.Error("no paths")
	}
	for path, item := range paths {
		for method, op := range item.(map[string]any) {
			if !slices.Contains(httpMethods, method) {
				continue
			}
			if responses, _ := op.(map[string]any)["responses"].(map[string]any); len(responses) == 0 {
				t.Errorf("%s %s has no responses", strings.ToUpper(method), path)
			}
		}
	}
	refs := 0
	var walk func(at string, v any)
	walk = func(at string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				refs++
				if _, err := resolvePointer(raw, ref); err != "" {
					t.Errorf("%s: $ref %q does not resolve: %s", at, ref, err)
				}
			}
			for k, child := range v {
				walk(at+"/"+k, child)
			}
		case []any:
			for _, child := range v {
				walk(at+"[]", child)
			}
		}
	}
	walk("#", raw)
	if refs == 0 {
		t.Error("no $ref found: the walk is broken")
	}

	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI)
	if err != nil {
		t.Fatalf("kin-openapi cannot load the document: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Errorf("kin-openapi: the document is not valid OpenAPI 3.0: %v", err)
	}
}

// resolvePointer follows a local JSON reference ("#/components/schemas/Job").
func resolvePointer(doc map[string]any, ref string) (any, string) {
	pointer, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, "only local references are used"
	}
	var cur any = doc
	for _, tok := range strings.Split(pointer, "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, "not an object at " + tok
		}
		if cur, ok = m[tok]; !ok {
			return nil, "no " + tok
		}
	}
	return cur, ""
}

// TestOpenAPIMatchesRoutes: every route the router serves is documented
// with its method, every documented operation is served, and an operation
// is public (security: []) exactly when the router serves it without a
// token.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	documented := map[string]bool{} // operation → public
	for path, item := range doc.Paths {
		for method, raw := range item {
			if !slices.Contains(httpMethods, method) {
				continue
			}
			var op struct {
				Security *[]map[string][]string `json:"security"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			documented[strings.ToUpper(method)+" "+path] = op.Security != nil && len(*op.Security) == 0
		}
	}
	served := map[string]bool{}
	for _, rt := range (&Server{}).routeTable() {
		served[rt.method+" "+rt.pattern] = rt.public
	}
	if len(served) < 10 {
		t.Fatalf("the route table has %d routes: the test reads the wrong table", len(served))
	}
	for op, public := range served {
		docPublic, ok := documented[op]
		switch {
		case !ok:
			t.Errorf("%s is served but not documented", op)
		case docPublic != public:
			t.Errorf("%s: public %v in the router, %v in the document", op, public, docPublic)
		}
	}
	for op := range documented {
		if _, ok := served[op]; !ok {
			t.Errorf("%s is documented but not served", op)
		}
	}
}

// TestOpenAPISchemasMatchGoTypes: each schema lists exactly the JSON fields
// of the Go type the handlers encode (or decode), and an answer's schema
// requires exactly the fields that are always sent.
func TestOpenAPISchemasMatchGoTypes(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties           map[string]json.RawMessage `json:"properties"`
				Required             []string                   `json:"required"`
				AdditionalProperties *bool                      `json:"additionalProperties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	tests := []struct {
		schema string
		goType any
		answer bool // sent by the API: required must match
		// stored lists fields the store keeps but the API never sends.
		stored []string
	}{
		{"Error", errorBody{}, true, nil},
		{"CreateRequest", provisioner.PodRequest{}, false, nil},
		{"BackupRequest", backupBody{}, false, nil},
		{"Accepted", accepted{}, true, nil},
		{"Job", Job{}, true, []string{"idempotency"}},
		{"CreateParams", CreateParams{}, true, nil},
		{"StepProgress", StepProgress{}, true, nil},
		{"JobError", JobError{}, true, nil},
		{"Check", provisioner.Check{}, true, nil},
		{"ConsolePath", provisioner.ConsolePath{}, true, nil},
		{"CreateResult", provisioner.CreateResult{}, true, nil},
		{"Placement", provisioner.Placement{}, true, nil},
		{"NodeFit", provisioner.NodeFit{}, true, nil},
		{"DestroyResult", provisioner.DestroyResult{}, true, nil},
		{"Backup", provisioner.Backup{}, true, nil},
		{"Pod", provisioner.Pod{}, true, nil},
		{"PodDetail", podDetail{}, true, nil},
		{"Health", provisioner.Health{}, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.schema, func(t *testing.T) {
			sc, ok := doc.Components.Schemas[tt.schema]
			if !ok {
				t.Fatalf("no schema %s", tt.schema)
			}
			if sc.AdditionalProperties == nil || *sc.AdditionalProperties {
				t.Errorf("%s does not say additionalProperties: false, so undocumented fields would pass the contract checks", tt.schema)
			}
			fields, always := jsonFields(reflect.TypeOf(tt.goType))
			for _, f := range tt.stored {
				delete(fields, f)
				delete(always, f)
			}
			for f := range fields {
				if _, ok := sc.Properties[f]; !ok {
					t.Errorf("%T sends %q, which %s does not document", tt.goType, f, tt.schema)
				}
			}
			for f := range sc.Properties {
				if !fields[f] {
					t.Errorf("%s documents %q, which %T does not have", tt.schema, f, tt.goType)
				}
			}
			if !tt.answer {
				return
			}
			want := slices.Sorted(maps.Keys(always))
			got := slices.Clone(sc.Required)
			sort.Strings(got)
			if !slices.Equal(got, want) {
				t.Errorf("%s requires %v; %T always sends %v", tt.schema, got, tt.goType, want)
			}
		})
	}
}

// jsonFields are the JSON names of a struct's fields, and those always
// encoded (neither omitempty nor omitzero).
func jsonFields(t reflect.Type) (fields, always map[string]bool) {
	fields, always = map[string]bool{}, map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		fields[name] = true
		if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") {
			always[name] = true
		}
	}
	return fields, always
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
