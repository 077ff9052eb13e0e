package service

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// Base is the path prefix of the pod API.
const Base = "/internal/proxmox/cloudpods"

// route is one endpoint. Patterns use {name} for a whole segment; routes
// are tried in order, so a literal segment listed first wins over a
// wildcard (net/http's ServeMux refuses jobs/{id} beside {vmid}/health as
// ambiguous).
type route struct {
	method  string
	pattern string
	public  bool // served without a token
	handle  http.HandlerFunc
}

func (s *Server) routeTable() []route {
	return []route{
		// The probes say "ok" or "unready" and why, nothing a caller could
		// use: load balancers and kubelets probe without a token.
		{method: http.MethodGet, pattern: "/healthz", public: true, handle: s.handleHealthz},
		{method: http.MethodGet, pattern: "/readyz", public: true, handle: s.handleReadyz},
		{method: http.MethodGet, pattern: "/metrics", public: s.opts.MetricsPublic, handle: s.handleMetrics},
		{method: http.MethodGet, pattern: "/openapi.json", handle: s.handleOpenAPI},
		{method: http.MethodPost, pattern: Base, handle: s.handleCreate},
		{method: http.MethodGet, pattern: Base, handle: s.handleList},
		{method: http.MethodGet, pattern: Base + "/jobs/{id}", handle: s.handleJob},
		{method: http.MethodGet, pattern: Base + "/{vmid}", handle: s.handleGet},
		{method: http.MethodDelete, pattern: Base + "/{vmid}", handle: s.handleDestroy},
		{method: http.MethodPost, pattern: Base + "/{vmid}/backup", handle: s.handleBackup},
		{method: http.MethodGet, pattern: Base + "/{vmid}/health", handle: s.handleHealth},
	}
}

// match fills r's path values when path fits pattern.
func match(pattern, path string, r *http.Request) bool {
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(xs) {
		return false
	}
	var names, values []string
	for i, p := range ps {
		if strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}") {
			if xs[i] == "" {
				return false
			}
			names, values = append(names, p[1:len(p)-1]), append(values, xs[i])
			continue
		}
		if p != xs[i] {
			return false
		}
	}
	for i := range names {
		r.SetPathValue(names[i], values[i])
	}
	return true
}

// statusWriter remembers the status for the request log and metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

// ServeHTTP routes, authenticates, and logs one line per request: never the
// Authorization header, the query string or a body.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	reqID := r.Header.Get("X-Request-Id")
	if reqID == "" || len(reqID) > 128 {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		reqID = hex.EncodeToString(b)
	}
	w.Header().Set("X-Request-Id", reqID)
	sw := &statusWriter{ResponseWriter: w}
	routeName, requester := s.dispatch(sw, r)
	if sw.status == 0 {
		sw.status = http.StatusOK
	}
	s.metrics.request(s.methodLabel(r.Method), routeName, sw.status)
	// Method and path are the client's to choose, of any length: the log
	// keeps their start.
	fields := logrus.Fields{"request_id": reqID, "method": clip(r.Method, 16), "path": clip(r.URL.Path, 256), "route": routeName,
		"status": sw.status, "bytes": sw.bytes, "duration_ms": time.Since(start).Milliseconds(), "remote": r.RemoteAddr}
	if requester != "" {
		fields["requester"] = requester
	}
	s.log.WithFields(fields).Info("request")
}

// serves says whether a route answers method: HEAD is served wherever GET
// is (net/http sends the headers and drops the body).
func (rt route) serves(method string) bool {
	return rt.method == method || (method == http.MethodHead && rt.method == http.MethodGet)
}

// methodLabel is the method as the metrics count it: one of the route
// table's methods (HEAD included), else "other", so a flood of invented
// method names adds one series, not one per name.
func (s *Server) methodLabel(method string) string {
	if method == http.MethodHead {
		return method
	}
	for _, rt := range s.routes {
		if rt.method == method {
			return method
		}
	}
	return "other"
}

// clip cuts s to n bytes, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func (s *Server) dispatch(w http.ResponseWriter, r *http.Request) (routeName, requester string) {
	var allowed []string
	for _, rt := range s.routes {
		if !match(rt.pattern, r.URL.Path, r) {
			continue
		}
		if !rt.serves(r.Method) {
			allowed = append(allowed, rt.method)
			if rt.method == http.MethodGet {
				allowed = append(allowed, http.MethodHead)
			}
			continue
		}
		if !rt.public {
			name, presented, ok := s.auth.requester(r)
			if !ok {
				challenge := `Bearer realm="cloudpods"`
				msg := "authentication required: send Authorization: Bearer <token>"
				if presented {
					challenge += `, error="invalid_token"`
					msg = "the bearer token is not valid"
				}
				w.Header().Set("WWW-Authenticate", challenge)
				writeError(w, &apiError{status: http.StatusUnauthorized, msg: msg, kind: "unauthorized"})
				return rt.pattern, ""
			}
			requester = name
			r = r.WithContext(withRequester(r.Context(), name))
		}
		rt.handle(w, r)
		return rt.pattern, requester
	}
	if len(allowed) > 0 {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		// The method is not echoed: it may be anything, of any length.
		writeError(w, &apiError{status: http.StatusMethodNotAllowed, msg: "the method is not allowed here: use " + strings.Join(allowed, " or "), kind: "method_not_allowed"})
		return "unmatched", ""
	}
	writeError(w, &apiError{status: http.StatusNotFound, msg: "no such endpoint: see /openapi.json", kind: kindNotFound})
	return "unmatched", ""
}

// apiError is a refusal the API answers with.
type apiError struct {
	status     int
	msg        string
	kind       string
	fields     map[string]string
	job        *Job
	retryAfter time.Duration
}

// errorBody is the JSON of every error answer.
type errorBody struct {
	Error  string            `json:"error"`
	Kind   string            `json:"kind"`
	Errors map[string]string `json:"errors,omitempty"`
	JobID  string            `json:"jobId,omitempty"`
}

func writeError(w http.ResponseWriter, e *apiError) {
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", itoa(int(e.retryAfter.Round(time.Second)/time.Second)))
	}
	body := errorBody{Error: e.msg, Kind: e.kind, Errors: e.fields}
	if e.job != nil {
		body.JobID = e.job.ID
	}
	writeJSON(w, e.status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
