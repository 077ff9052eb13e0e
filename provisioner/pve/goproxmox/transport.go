package goproxmox

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/sirupsen/logrus"

	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// TLSOptions say how PVE's certificate is trusted. With none set, the
// system roots verify it.
type TLSOptions struct {
	// Fingerprint pins the server certificate by its SHA-256, in the form
	// PVE shows (AA:BB:…); colons and case do not matter.
	Fingerprint string
	// CAFile is a PEM bundle to verify against instead of the system roots.
	CAFile string
	// Insecure skips verification entirely.
	Insecure bool
}

// TLSConfig builds the client TLS configuration.
func (o TLSOptions) TLSConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case o.Fingerprint != "":
		want, err := parseFingerprint(o.Fingerprint)
		if err != nil {
			return nil, err
		}
		// Chain verification is replaced by the pin: PVE's default
		// certificate is self-signed, which is the point of pinning.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server sent no certificate")
			}
			got := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if string(got[:]) != string(want) {
				return &pve.CertificateError{Fingerprint: formatFingerprint(got[:]), Pinned: formatFingerprint(want),
					Err: errors.New("certificate fingerprint does not match the pinned one")}
			}
			return nil
		}
	case o.CAFile != "":
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", o.CAFile)
		}
		cfg.RootCAs = pool
	case o.Insecure:
		cfg.InsecureSkipVerify = true
	}
	return cfg, nil
}

func parseFingerprint(s string) ([]byte, error) {
	h := strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(s))
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("fingerprint %q is not a SHA-256 fingerprint: copy it from PVE's Datacenter > Certificates (64 hex digits, colons optional)", s)
	}
	return b, nil
}

// certificateError is a TLS verification failure with the fingerprint of
// the certificate PVE presented, so the operator can check and pin it; nil
// when err is no such failure.
func certificateError(err error) *pve.CertificateError {
	var pinned *pve.CertificateError
	if errors.As(err, &pinned) {
		return pinned
	}
	var ve *tls.CertificateVerificationError
	if errors.As(err, &ve) && len(ve.UnverifiedCertificates) > 0 {
		sum := sha256.Sum256(ve.UnverifiedCertificates[0].Raw)
		return &pve.CertificateError{Fingerprint: formatFingerprint(sum[:]), Err: ve.Err}
	}
	return nil
}

func formatFingerprint(b []byte) string {
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02X", x)
	}
	return strings.Join(parts, ":")
}

// checkRetry is the transport half of the retry policy
// (docs/retry-policy.md): idempotent requests only, on network errors
// (timeouts included; a certificate that failed verification is final), 429, 502/503/504, and 595/596 (pveproxy lost its
// backend: for a read, harmless to repeat) — but not a 595 that says pveproxy could not connect to the node the
// call is for (No route to host, Connection refused): that node is down, and asking again at once finds it down
// again (pve.ErrNodeUnreachable; the commands then report its guests unknown). PVE's 500s carry a message and
// are judged per operation (pve.RetryPolicy), as is every non-idempotent
// request.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	method, _ := ctx.Value(methodKey{}).(string)
	if !pve.Idempotent(method) {
		return false, nil
	}
	if err != nil {
		// A certificate that failed verification fails again.
		return certificateError(err) == nil, nil
	}
	switch resp.StatusCode {
	case 595:
		return !pve.ConnectError(resp.Status), nil
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout, 596:
		return true, nil
	}
	return false, nil
}

// methodKey carries a request's method in its context to checkRetry, which
// sees no request, and whose error may have lost it (a client timeout
// replaces the transport's error with a bare string).
type methodKey struct{}

// apiErrorTransport turns every non-2xx answer into a *pve.APIError with
// PVE's message and per-parameter errors, which go-proxmox would otherwise
// drop, and every lost answer into a *TransportError.
type apiErrorTransport struct {
	next    http.RoundTripper
	apiBase string // path prefix to strip for messages, "/api2/json"
}

func (t apiErrorTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.WithContext(context.WithValue(req.Context(), methodKey{}, req.Method))
	resp, err := t.next.RoundTrip(req)
	path := strings.TrimPrefix(req.URL.Path, t.apiBase)
	if err != nil {
		if req.Context().Err() != nil {
			return nil, req.Context().Err()
		}
		if ce := certificateError(err); ce != nil {
			err = ce
		}
		return nil, &pve.TransportError{Method: req.Method, Path: path, Err: err}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	apiErr := &pve.APIError{Method: req.Method, Path: path, Status: resp.StatusCode, Message: reason(resp)}
	var parsed struct {
		Message string            `json:"message"`
		Errors  map[string]string `json:"errors"`
	}
	if json.Unmarshal(body, &parsed) == nil {
		if m := strings.TrimSpace(parsed.Message); m != "" {
			apiErr.Message = m
		}
		apiErr.Errors = parsed.Errors
	}
	return nil, apiErr
}

// reason is the status line's text after the code: PVE puts its message
// there ("500 CT is locked (disk)").
func reason(resp *http.Response) string {
	s := resp.Status
	if i := strings.IndexByte(s, ' '); i >= 0 {
		s = s[i+1:]
	}
	return strings.TrimSpace(s)
}

// HTTPOptions configure the REST transport.
type HTTPOptions struct {
	TLS TLSOptions
	// Timeout bounds one request attempt (not a task: tasks are polled).
	Timeout time.Duration
	// Retries bounds the transport's retries of idempotent reads.
	Retries int
	// Base replaces the network transport (the fixtures recorder sits here,
	// under the retries, so each attempt is its own interaction).
	Base   http.RoundTripper
	Logger logrus.FieldLogger
	// Observe, when set, sees every attempt (retries included): method,
	// the path as a template ("/nodes/{node}/lxc/{vmid}/config"), the HTTP
	// status, or the error when no answer came. For metrics.
	Observe func(method, path string, status int, err error)
}

func newHTTPClient(o HTTPOptions) (*http.Client, *tls.Config, error) {
	tlsCfg, err := o.TLS.TLSConfig()
	if err != nil {
		return nil, nil, err
	}
	base := newBaseTransport(o, tlsCfg)
	rc := retryablehttp.NewClient()
	rc.HTTPClient = &http.Client{Transport: base, Timeout: o.Timeout}
	rc.RetryMax = o.Retries
	rc.RetryWaitMin = 200 * time.Millisecond
	rc.RetryWaitMax = 3 * time.Second
	rc.CheckRetry = checkRetry
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	rc.Logger = retryLogger{log: o.Logger}
	return &http.Client{Transport: apiErrorTransport{next: &retryablehttp.RoundTripper{Client: rc}, apiBase: "/api2/json"}}, tlsCfg, nil
}

// newBaseTransport is the network transport under every request: PVE's
// TLS settings, no proxy, each attempt observed.
func newBaseTransport(o HTTPOptions, tlsCfg *tls.Config) http.RoundTripper {
	base := o.Base
	if base == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		// A copy: the transport adds h2 to its config's NextProtos, which
		// the console's websocket dialer must not offer.
		tr.TLSClientConfig = tlsCfg.Clone()
		tr.MaxIdleConnsPerHost = 32
		tr.Proxy = nil // PVE is on the LAN; never route the token through a proxy
		base = tr
	}
	if o.Observe != nil {
		base = observingTransport{next: base, observe: o.Observe}
	}
	return base
}

// retryLogger adapts retryablehttp's key/value logger to logrus; only retries
// are worth a line, at debug level.
type retryLogger struct{ log logrus.FieldLogger }

func (l retryLogger) Error(msg string, kv ...interface{}) { l.entry(kv).Debug(msg) }
func (l retryLogger) Info(msg string, kv ...interface{})  {}
func (l retryLogger) Warn(msg string, kv ...interface{})  { l.entry(kv).Debug(msg) }

func (l retryLogger) Debug(msg string, kv ...interface{}) {
	if msg == "retrying request" {
		l.entry(kv).Debug(msg)
	}
}

func (l retryLogger) entry(kv []interface{}) logrus.FieldLogger {
	log := l.log
	if log == nil {
		log = discard
	}
	f := logrus.Fields{}
	for i := 0; i+1 < len(kv); i += 2 {
		if k, ok := kv[i].(string); ok && k != "request" {
			f[k] = kv[i+1]
		}
	}
	return log.WithFields(f)
}

var discard = func() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}()

// observingTransport reports each attempt to HTTPOptions.Observe.
type observingTransport struct {
	next    http.RoundTripper
	observe func(method, path string, status int, err error)
}

func (t observingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	t.observe(req.Method, PathTemplate(req.URL.Path), status, err)
	return resp, err
}

// PathTemplate turns an API path into its route, so metrics have one series
// per endpoint: "/api2/json/nodes/pve/lxc/9101/config" →
// "/nodes/{node}/lxc/{vmid}/config".
func PathTemplate(path string) string {
	segs := strings.Split(strings.TrimPrefix(strings.TrimPrefix(path, "/api2/json"), "/"), "/")
	for i, seg := range segs {
		if i == 0 {
			continue
		}
		switch prev := segs[i-1]; {
		case prev == "nodes":
			segs[i] = "{node}"
		case prev == "storage" && i > 1:
			segs[i] = "{storage}"
		case prev == "tasks":
			segs[i] = "{upid}"
		case prev == "vnets":
			segs[i] = "{vnet}"
		case prev == "content" && i > 2:
			// A volume id may hold slashes: it is the rest of the path.
			return "/" + strings.Join(append(segs[:i], "{volume}"), "/")
		case prev == "lxc" || prev == "qemu":
			if _, err := strconv.Atoi(seg); err == nil {
				segs[i] = "{vmid}"
			}
		}
	}
	return "/" + strings.Join(segs, "/")
}
