package service

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/migrahosting/cloudpods/provisioner"
)

// OpenAPI is the API's OpenAPI 3.0 document; docs/openapi.json is a copy
// a test keeps identical.
//
//go:embed openapi.json
var OpenAPI []byte

// readyTimeout bounds the PVE call behind /readyz.
const readyTimeout = 5 * time.Second

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if s.isStopping() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unready", "error": errStopping.Error()})
		return
	}
	if s.opts.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := s.opts.Ready(ctx); err != nil {
			// /readyz is open: the answer names the kind of trouble, the
			// log has PVE's own words (its address among them).
			s.log.WithError(err).Warn("readyz: PVE is not ready")
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unready", "error": unreadyReason(err)})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// unreadyReason says why PVE is not ready without PVE's error text.
func unreadyReason(err error) string {
	switch provisioner.KindOf(err) {
	case provisioner.KindAuth:
		return "PVE refuses the service's API token: see the service's log"
	case provisioner.KindUnreachable, provisioner.KindTimeout:
		return "PVE does not answer: see the service's log"
	}
	return "PVE's check failed: see the service's log"
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	active := map[Status]int{}
	s.mu.Lock()
	for _, j := range s.jobs {
		if j.Status.active() {
			active[j.Status]++
		}
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	s.metrics.write(w, active, s.opts.QueueSize, s.opts.Workers)
}

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(OpenAPI)
}

// accepted is the answer to a request that made (or replayed) a job.
type accepted struct {
	JobID    string `json:"jobId"`
	Status   Status `json:"status"`
	Location string `json:"location"`
	Kind     Kind   `json:"kind"`
	VMID     int    `json:"vmid"`
	Hostname string `json:"hostname,omitempty"`
	IP       string `json:"ip,omitempty"`
}

func writeAccepted(w http.ResponseWriter, j Job, replayed bool) {
	loc := Base + "/jobs/" + j.ID
	w.Header().Set("Location", loc)
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeJSON(w, http.StatusAccepted, accepted{JobID: j.ID, Status: j.Status, Location: loc, Kind: j.Kind, VMID: j.VMID, Hostname: j.Hostname, IP: j.IP})
}

// accept submits a job and answers for it.
func (s *Server) accept(w http.ResponseWriter, job *Job) {
	got, replayed, err := s.submit(job)
	s.answer(w, got, replayed, err)
}

// answer says what became of a job submitted: accepted (or replayed), or
// why not.
func (s *Server) answer(w http.ResponseWriter, got Job, replayed bool, err error) {
	var conflict *conflictError
	switch {
	case errors.Is(err, errKeyReused):
		writeError(w, &apiError{status: http.StatusUnprocessableEntity, msg: err.Error(), kind: "idempotency_key_reused", job: &got})
	case errors.As(err, &conflict):
		writeError(w, &apiError{status: http.StatusConflict, msg: err.Error(), kind: kindConflict, job: &got})
	case errors.Is(err, errQueueFull), errors.Is(err, errStopping):
		writeError(w, &apiError{status: http.StatusServiceUnavailable, msg: err.Error(), kind: "unavailable", retryAfter: s.opts.RetryAfter})
	case err != nil:
		s.log.WithError(err).Error("saving a new job failed")
		writeError(w, &apiError{status: http.StatusInternalServerError, msg: "the job could not be saved: " + err.Error(), kind: kindFailed})
	default:
		writeAccepted(w, got, replayed)
	}
}

// replayed answers a request whose Idempotency-Key was seen before; true
// when it answered.
func (s *Server) replayed(w http.ResponseWriter, idem *IdempotencyRecord) bool {
	prev, ok, err := s.replay(idem)
	switch {
	case err != nil:
		writeError(w, &apiError{status: http.StatusUnprocessableEntity, msg: err.Error(), kind: "idempotency_key_reused", job: &prev})
		return true
	case ok:
		writeAccepted(w, prev, true)
		return true
	}
	return false
}

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	var body provisioner.PodRequest
	if e := decodeBody(w, r, &body, false); e != nil {
		writeError(w, e)
		return
	}
	params, fields := s.validateCreate(body)
	if len(fields) > 0 {
		writeError(w, &apiError{status: http.StatusBadRequest, msg: "invalid request", kind: kindInvalid, fields: fields})
		return
	}
	idem, e := idempotencyKey(r, "POST "+Base, params)
	if e != nil {
		writeError(w, e)
		return
	}
	if s.replayed(w, idem) {
		return
	}
	if s.tooBig(w, r, params) {
		return
	}
	job := &Job{Kind: KindCreate, VMID: params.VMID, Hostname: params.Hostname, Tenant: params.TenantID,
		Requester: requesterOf(r.Context()), Request: &params, Idempotency: idem}
	if params.IP.IsValid() {
		job.IP = params.IP.String()
	}
	// Admitted first, allocated after (admission.go): a refusal reserves
	// nothing, and what a refusal after the reservation holds is given back.
	t, got, replayed, err := s.admit(job)
	if t == nil {
		s.answer(w, got, replayed, err)
		return
	}
	auto := params.VMID == 0
	if auto {
		vmid, ip, err := s.opts.Allocator.Reserve(r.Context(), params.Hostname, params.TenantID)
		if err != nil {
			s.cancel(t)
			// IPAM refusing is the client's conflict; IPAM unable to read
			// PVE's guests is PVE's failure (provisioner.KindOf tells).
			s.flowError(w, fmt.Sprintf("allocating a VMID and address for %s", params.Hostname), err)
			return
		}
		s.allocated(t, vmid, ip)
	}
	got, err = s.commit(t)
	if err != nil && auto {
		s.release(r.Context(), &params)
	}
	s.answer(w, got, false, err)
}

// tooBig refuses a create asking for more cores, memory or swap than the
// node has (400 naming the limit). When PVE cannot be asked now, the job's
// preflight checks the same again when it runs.
func (s *Server) tooBig(w http.ResponseWriter, r *http.Request, p CreateParams) bool {
	limits, err := s.flows.NodeLimits(r.Context(), s.opts.Defaults.Node)
	if err != nil {
		s.log.WithError(err).WithField("node", s.opts.Defaults.Node).Warn("reading the node's size failed: the create's preflight checks its resources")
		return false
	}
	problems := limits.Problems(p.Cores, p.MemoryMB, p.SwapMB)
	if len(problems) == 0 {
		return false
	}
	fields := map[string]string{}
	for field, msg := range problems {
		fields[apiField(field)] = msg
	}
	writeError(w, &apiError{status: http.StatusBadRequest, msg: "invalid request", kind: kindInvalid, fields: fields})
	return true
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	pods, err := s.flows.List(r.Context(), q.Get("tenant"), q.Get("status"))
	if err != nil {
		s.flowError(w, "listing CloudPods", err)
		return
	}
	if pods == nil {
		pods = []provisioner.Pod{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"pods": pods})
}

func (s *Server) handleJob(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	j, ok := s.jobs[id]
	var v Job
	if ok {
		v = j.view()
	}
	s.mu.Unlock()
	if !ok {
		writeError(w, &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("no job %q (finished jobs are kept for %s)", id, s.opts.Retention), kind: kindNotFound})
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// podDetail is GET …/{vmid}: the pod as its marker and PVE describe it.
type podDetail struct {
	VMID        int       `json:"vmid"`
	Hostname    string    `json:"hostname"`
	IP          string    `json:"ip,omitempty"`
	Tenant      string    `json:"tenant,omitempty"`
	Node        string    `json:"node"`
	State       string    `json:"state"`
	Created     time.Time `json:"created"`
	Backups     []string  `json:"backups"`
	Snapshots   []string  `json:"snapshots"`
	ActiveJobID string    `json:"activeJobId,omitempty"`
}

// inspectPod reads a CloudPod; a guest without our marker is not one.
func (s *Server) inspectPod(w http.ResponseWriter, r *http.Request, vmid int, notOurs int) (provisioner.DestroyResult, provisioner.Marker, bool) {
	info, err := s.flows.Inspect(r.Context(), "", vmid) // wherever the cluster has it
	if provisioner.KindOf(err) == provisioner.KindNotFound {
		where := "in the cluster"
		if info.Node != "" {
			where = "on node " + info.Node
		}
		writeError(w, &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("CT %d does not exist %s", vmid, where), kind: kindNotFound})
		return info, provisioner.Marker{}, false
	}
	if err != nil {
		s.flowError(w, fmt.Sprintf("reading CT %d", vmid), err)
		return info, provisioner.Marker{}, false
	}
	if info.Marker == nil {
		e := &apiError{status: notOurs, msg: fmt.Sprintf("CT %d (%s) is not a CloudPod: it carries no cloudpods marker", vmid, info.Hostname), kind: kindNotFound}
		if notOurs == http.StatusForbidden {
			e.kind = kindRefused
			e.msg = fmt.Sprintf("CT %d (%s) was not created by cloudpods: the API does not destroy it", vmid, info.Hostname)
		}
		writeError(w, e)
		return info, provisioner.Marker{}, false
	}
	return info, *info.Marker, true
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	vmid, e := vmidParam(r)
	if e != nil {
		writeError(w, e)
		return
	}
	info, m, ok := s.inspectPod(w, r, vmid, http.StatusNotFound)
	if !ok {
		return
	}
	d := podDetail{VMID: vmid, Hostname: info.Hostname, IP: info.IP, Tenant: m.Tenant, Node: info.Node, State: m.State,
		Created: m.Created, Backups: info.Backups, Snapshots: info.Snapshots}
	if d.Backups == nil {
		d.Backups = []string{}
	}
	if d.Snapshots == nil {
		d.Snapshots = []string{}
	}
	if j, ok := s.activeFor(vmid); ok {
		d.ActiveJobID = j.ID
	}
	writeJSON(w, http.StatusOK, d)
}

// busy answers for a pod an active job already works on: the same request
// is replayed, anything else is a conflict. Checked before PVE is read, so
// a pod still being cloned is 409, not 404.
func (s *Server) busy(w http.ResponseWriter, vmid int, kind Kind, backupStorage string) bool {
	other, ok := s.activeFor(vmid)
	if !ok {
		return false
	}
	if other.Kind == kind && other.BackupStorage == backupStorage {
		writeAccepted(w, other, true)
		return true
	}
	writeError(w, &apiError{status: http.StatusConflict, msg: (&conflictError{other: other}).Error(), kind: kindConflict, job: &other})
	return true
}

func (s *Server) handleDestroy(w http.ResponseWriter, r *http.Request) {
	vmid, e := vmidParam(r)
	if e != nil {
		writeError(w, e)
		return
	}
	if r.URL.Query().Has("ignoreOwnership") {
		writeError(w, &apiError{status: http.StatusBadRequest, msg: "invalid request", kind: kindInvalid, fields: map[string]string{
			"ignoreOwnership": "not offered over HTTP: a guest cloudpods did not create is destroyed with the CLI (cloudpod destroy --ignore-ownership)"}})
		return
	}
	force, e := boolParam(r, "force")
	if e == nil && !force {
		e = &apiError{status: http.StatusBadRequest, msg: "invalid request", kind: kindInvalid,
			fields: map[string]string{"force": fmt.Sprintf("destroying CT %d needs ?force=1", vmid)}}
	}
	if e != nil {
		writeError(w, e)
		return
	}
	idem, e := idempotencyKey(r, "DELETE "+Base+"/{vmid}", vmid)
	if e != nil {
		writeError(w, e)
		return
	}
	if s.replayed(w, idem) || s.busy(w, vmid, KindDestroy, "") {
		return
	}
	info, m, ok := s.inspectPod(w, r, vmid, http.StatusForbidden)
	if !ok {
		return
	}
	s.accept(w, &Job{Kind: KindDestroy, VMID: vmid, Hostname: info.Hostname, IP: info.IP, Tenant: m.Tenant,
		Requester: requesterOf(r.Context()), Idempotency: idem})
}

func (s *Server) handleBackup(w http.ResponseWriter, r *http.Request) {
	vmid, e := vmidParam(r)
	if e != nil {
		writeError(w, e)
		return
	}
	var body backupBody
	if e := decodeBody(w, r, &body, true); e != nil {
		writeError(w, e)
		return
	}
	if body.Storage == "" {
		body.Storage = provisioner.DefaultBackupStorage
	} else if !storageRE.MatchString(body.Storage) {
		writeError(w, &apiError{status: http.StatusBadRequest, msg: "invalid request", kind: kindInvalid,
			fields: map[string]string{"storage": fmt.Sprintf("%q is not a PVE storage id such as %s", body.Storage, provisioner.DefaultBackupStorage)}})
		return
	}
	idem, e := idempotencyKey(r, "POST "+Base+"/{vmid}/backup", []any{vmid, body})
	if e != nil {
		writeError(w, e)
		return
	}
	if s.replayed(w, idem) || s.busy(w, vmid, KindBackup, body.Storage) {
		return
	}
	info, m, ok := s.inspectPod(w, r, vmid, http.StatusNotFound)
	if !ok {
		return
	}
	s.accept(w, &Job{Kind: KindBackup, VMID: vmid, Hostname: info.Hostname, IP: info.IP, Tenant: m.Tenant, BackupStorage: body.Storage,
		Requester: requesterOf(r.Context()), Idempotency: idem})
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	vmid, e := vmidParam(r)
	if e != nil {
		writeError(w, e)
		return
	}
	deep, e := boolParam(r, "deep")
	if e != nil {
		writeError(w, e)
		return
	}
	h, err := s.flows.Health(r.Context(), "", vmid, deep) // wherever the cluster has it
	if err != nil {
		s.flowError(w, fmt.Sprintf("checking CT %d", vmid), err)
		return
	}
	writeJSON(w, http.StatusOK, h)
}

// flowError answers a synchronous flow's failure by its kind.
func (s *Server) flowError(w http.ResponseWriter, what string, err error) {
	kind, status := flowFailure(err)
	writeError(w, &apiError{status: status, msg: what + ": " + err.Error(), kind: kind})
}
