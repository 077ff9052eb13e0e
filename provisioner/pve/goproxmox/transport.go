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
				return fmt.Errorf("server certificate fingerprint %s does not match the pinned %s", formatFingerprint(got[:]), formatFingerprint(want))
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

func formatFingerprint(b []byte) string {
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02X", x)
	}
	return strings.Join(parts, ":")
}

// idempotent methods are the only ones the transport may repeat on its own.
func idempotent(method string) bool {
	return method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions
}

// checkRetry is the transport half of the retry policy: network errors and
// 429/502/503/504 on idempotent requests only. PVE's 500s carry a message and
// are judged per operation (pve.RetryPolicy); 595/596 mean the action may
// have happened and are reconciled there too.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	var method string
	if resp != nil && resp.Request != nil {
		method = resp.Request.Method
	}
	if err != nil {
		var re *requestError
		if errors.As(err, &re) {
			method = re.method
		}
		return idempotent(method) || method == "", nil
	}
	if !idempotent(method) {
		return false, nil
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true, nil
	}
	return false, nil
}

// requestError remembers the method of a request that failed in transport,
// since retryablehttp hands CheckRetry no response then.
type requestError struct {
	method string
	err    error
}

func (e *requestError) Error() string { return e.err.Error() }
func (e *requestError) Unwrap() error { return e.err }

type methodTaggingTransport struct{ next http.RoundTripper }

func (t methodTaggingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, &requestError{method: req.Method, err: err}
	}
	return resp, nil
}

// TransportError is a request whose answer never arrived (connection
// refused or dropped, timeout). For anything but a read, PVE may have acted.
type TransportError struct {
	Method string
	Path   string
	Err    error
}

func (e *TransportError) Error() string {
	return fmt.Sprintf("%s %s: no answer from PVE: %v", e.Method, e.Path, e.Err)
}
func (e *TransportError) Unwrap() error { return e.Err }
func (e *TransportError) Is(target error) bool {
	return target == pve.ErrMaybeApplied || target == pve.ErrTransient
}

// apiErrorTransport turns every non-2xx answer into a *pve.APIError with
// PVE's message and per-parameter errors, which go-proxmox would otherwise
// drop, and every lost answer into a *TransportError.
type apiErrorTransport struct {
	next    http.RoundTripper
	apiBase string // path prefix to strip for messages, "/api2/json"
}

func (t apiErrorTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	path := strings.TrimPrefix(req.URL.Path, t.apiBase)
	if err != nil {
		if req.Context().Err() != nil {
			return nil, req.Context().Err()
		}
		return nil, &TransportError{Method: req.Method, Path: path, Err: unwrapRequestError(err)}
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

func unwrapRequestError(err error) error {
	var re *requestError
	if errors.As(err, &re) {
		return re.err
	}
	return err
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
}

func newHTTPClient(o HTTPOptions) (*http.Client, *tls.Config, error) {
	tlsCfg, err := o.TLS.TLSConfig()
	if err != nil {
		return nil, nil, err
	}
	base := o.Base
	if base == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tlsCfg
		tr.MaxIdleConnsPerHost = 32
		tr.Proxy = nil // PVE is on the LAN; never route the token through a proxy
		base = tr
	}
	rc := retryablehttp.NewClient()
	rc.HTTPClient = &http.Client{Transport: methodTaggingTransport{next: base}, Timeout: o.Timeout}
	rc.RetryMax = o.Retries
	rc.RetryWaitMin = 200 * time.Millisecond
	rc.RetryWaitMax = 3 * time.Second
	rc.CheckRetry = checkRetry
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	rc.Logger = retryLogger{log: o.Logger}
	return &http.Client{Transport: apiErrorTransport{next: &retryablehttp.RoundTripper{Client: rc}, apiBase: "/api2/json"}}, tlsCfg, nil
}

// retryLogger adapts retryablehttp's key/value logger to logrus; only retries
// are worth a line, at debug level.
type retryLogger struct{ log logrus.FieldLogger }

func (l retryLogger) Error(msg string, kv ...interface{}) { l.entry(kv).Debug(msg) }
func (l retryLogger) Info(msg string, kv ...interface{})  {}
func (l retryLogger) Debug(msg string, kv ...interface{}) {}
func (l retryLogger) Warn(msg string, kv ...interface{})  { l.entry(kv).Debug(msg) }

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
