package service

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// stepBuckets span a skipped step (milliseconds) to a slow ZFS clone.
var stepBuckets = []float64{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800}

// metrics are counted in memory and written in Prometheus' text format;
// the handful of series does not justify the client library.
type metrics struct {
	mu    sync.Mutex
	jobs  map[[2]string]uint64 // kind, outcome
	steps map[[2]string]*histogram
	http  map[[3]string]uint64 // method, route, code
	pve   *PVEMetrics
}

// PVEMetrics counts the requests CloudPods sends to PVE, retries included;
// the command hands its Observe to the PVE client.
type PVEMetrics struct {
	mu       sync.Mutex
	requests map[[3]string]uint64 // method, path, code
	failures map[[3]string]uint64 // method, path, "" — no answer came
}

// NewPVEMetrics returns an empty counter.
func NewPVEMetrics() *PVEMetrics {
	return &PVEMetrics{requests: map[[3]string]uint64{}, failures: map[[3]string]uint64{}}
}

// Observe records one attempt: its HTTP status, or err when none came.
func (p *PVEMetrics) Observe(method, path string, status int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.failures[[3]string{method, path, ""}]++
		return
	}
	p.requests[[3]string{method, path, strconv.Itoa(status)}]++
}

type histogram struct {
	counts []uint64 // per bucket, not cumulative
	count  uint64
	sum    float64
}

func newMetrics(pve *PVEMetrics) *metrics {
	return &metrics{jobs: map[[2]string]uint64{}, steps: map[[2]string]*histogram{}, http: map[[3]string]uint64{}, pve: pve}
}

func (m *metrics) jobDone(kind Kind, outcome string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.jobs[[2]string{string(kind), outcome}]++
}

func (m *metrics) stepDone(kind Kind, step string, seconds float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := [2]string{string(kind), step}
	h := m.steps[k]
	if h == nil {
		h = &histogram{counts: make([]uint64, len(stepBuckets))}
		m.steps[k] = h
	}
	for i, le := range stepBuckets {
		if seconds <= le {
			h.counts[i]++
			break
		}
	}
	h.count++
	h.sum += seconds
}

func (m *metrics) request(method, route string, code int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.http[[3]string{method, route, strconv.Itoa(code)}]++
}

// write renders every series; gauges are the queue's state at the moment.
func (m *metrics) write(w io.Writer, active map[Status]int, queueCap, workers int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	family := func(name, typ, help string) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}

	family("cloudpods_jobs_finished_total", "counter", "Jobs that ended a run, by kind and outcome (interrupted: stopped by a shutdown, runs again at start).")
	for _, k := range sortedKeys(m.jobs) {
		fmt.Fprintf(w, "cloudpods_jobs_finished_total%s %d\n", labels("kind", k[0], "outcome", k[1]), m.jobs[k])
	}

	family("cloudpods_jobs_active", "gauge", "Jobs waiting or running.")
	for _, st := range []Status{StatusQueued, StatusRunning} {
		fmt.Fprintf(w, "cloudpods_jobs_active%s %d\n", labels("status", string(st)), active[st])
	}
	family("cloudpods_job_queue_capacity", "gauge", "Queued jobs accepted before the API answers 503.")
	fmt.Fprintf(w, "cloudpods_job_queue_capacity %d\n", queueCap)
	family("cloudpods_job_workers", "gauge", "Jobs run at once.")
	fmt.Fprintf(w, "cloudpods_job_workers %d\n", workers)

	family("cloudpods_step_duration_seconds", "histogram", "Duration of each step of a flow.")
	for _, k := range sortedKeys(m.steps) {
		h := m.steps[k]
		var cum uint64
		for i, le := range stepBuckets {
			cum += h.counts[i]
			fmt.Fprintf(w, "cloudpods_step_duration_seconds_bucket%s %d\n", labels("kind", k[0], "step", k[1], "le", strconv.FormatFloat(le, 'g', -1, 64)), cum)
		}
		fmt.Fprintf(w, "cloudpods_step_duration_seconds_bucket%s %d\n", labels("kind", k[0], "step", k[1], "le", "+Inf"), h.count)
		fmt.Fprintf(w, "cloudpods_step_duration_seconds_sum%s %s\n", labels("kind", k[0], "step", k[1]), strconv.FormatFloat(h.sum, 'g', -1, 64))
		fmt.Fprintf(w, "cloudpods_step_duration_seconds_count%s %d\n", labels("kind", k[0], "step", k[1]), h.count)
	}

	family("cloudpods_http_requests_total", "counter", "API requests answered, by method, route and status code.")
	for _, k := range sortedKeys(m.http) {
		fmt.Fprintf(w, "cloudpods_http_requests_total%s %d\n", labels("method", k[0], "route", k[1], "code", k[2]), m.http[k])
	}
	if m.pve == nil {
		return
	}
	m.pve.mu.Lock()
	defer m.pve.mu.Unlock()
	family("cloudpods_pve_requests_total", "counter", "Requests to the PVE API that got an answer, retries included, by method, path and status code.")
	for _, k := range sortedKeys(m.pve.requests) {
		fmt.Fprintf(w, "cloudpods_pve_requests_total%s %d\n", labels("method", k[0], "path", k[1], "code", k[2]), m.pve.requests[k])
	}
	family("cloudpods_pve_request_failures_total", "counter", "Requests to the PVE API that got no answer (refused, dropped, timed out), by method and path.")
	for _, k := range sortedKeys(m.pve.failures) {
		fmt.Fprintf(w, "cloudpods_pve_request_failures_total%s %d\n", labels("method", k[0], "path", k[1]), m.pve.failures[k])
	}
}

func sortedKeys[K [2]string | [3]string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		for n := range len(keys[i]) {
			if keys[i][n] != keys[j][n] {
				return keys[i][n] < keys[j][n]
			}
		}
		return false
	})
	return keys
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// labels renders name/value pairs as {a="x",b="y"}.
func labels(kv ...string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `%s="%s"`, kv[i], labelEscaper.Replace(kv[i+1]))
	}
	b.WriteByte('}')
	return b.String()
}
