package service

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
)

// apiDoc is OpenAPI parsed, its references resolved, and validated once.
var apiDoc = sync.OnceValues(func() (*openapi3.T, error) {
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI)
	if err != nil {
		return nil, err
	}
	return doc, doc.Validate(context.Background())
})

// checkContract holds one exchange to the OpenAPI document, so every test
// that talks to the API also checks the document against the handlers: an
// answer to a documented operation must have a documented status, headers
// and body, and a request the handler accepted (2xx) must be one the
// document allows. Paths no route serves answer 404/405 and are not
// operations.
func checkContract(t testing.TB, req *http.Request, reqBody []byte, status int, header http.Header, respBody []byte) {
	t.Helper()
	doc, err := apiDoc()
	if err != nil {
		t.Errorf("openapi.json: %v", err) // not Fatal: callers may be goroutines
		return
	}
	probe := req.Clone(context.Background())
	var rt *route
	for _, candidate := range (&Server{}).routeTable() {
		if candidate.method == req.Method && match(candidate.pattern, req.URL.Path, probe) {
			rt = &candidate
			break
		}
	}
	if rt == nil {
		return
	}
	op := req.Method + " " + rt.pattern
	item := doc.Paths.Value(rt.pattern)
	if item == nil || item.GetOperation(req.Method) == nil {
		t.Errorf("%s is served but not documented", op)
		return
	}
	params := map[string]string{}
	for _, seg := range strings.Split(rt.pattern, "/") {
		if name, ok := strings.CutPrefix(seg, "{"); ok {
			name = strings.TrimSuffix(name, "}")
			params[name] = probe.PathValue(name)
		}
	}
	probe.Body = io.NopCloser(bytes.NewReader(reqBody))
	in := &openapi3filter.RequestValidationInput{
		Request:    probe,
		PathParams: params,
		Route:      &routers.Route{Spec: doc, Path: rt.pattern, PathItem: item, Method: req.Method, Operation: item.GetOperation(req.Method)},
		Options:    &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, MultiError: true},
	}
	if status >= 200 && status < 300 {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			t.Errorf("%s: the handler accepted (%d) a request the document does not allow: %v\nbody: %s", op, status, err, reqBody)
		}
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: header, Options: in.Options}
	out.SetBodyBytes(respBody)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s answered %d outside the document: %v\nbody: %s", op, status, err, respBody)
	}
}

// checkRecorded is checkContract for a handler called directly.
func checkRecorded(t testing.TB, req *http.Request, reqBody string, rec *httptest.ResponseRecorder) {
	t.Helper()
	checkContract(t, req, []byte(reqBody), rec.Code, rec.Header(), rec.Body.Bytes())
}
