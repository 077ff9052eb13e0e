package service

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
)

// Token is one bearer token and who uses it. The requester's name goes to
// the audit log with every action taken on the token's behalf.
type Token struct {
	Requester string
	Secret    string
}

// MinTokenLength keeps guessable tokens out: `openssl rand -hex 32` gives 64.
const MinTokenLength = 24

var requesterRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9@._-]{0,63}$`)

// LoadTokens reads an auth file: one requester:token per line, # comments.
func LoadTokens(path string) ([]Token, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth file: %w", err)
	}
	defer f.Close()
	toks, err := ParseTokens(f)
	if err != nil {
		return nil, fmt.Errorf("auth file %s: %w", path, err)
	}
	return toks, nil
}

// ParseTokens reads requester:token lines. Several tokens may share a
// requester (rotation); a token may not appear twice. Errors name the line,
// never the token.
func ParseTokens(r io.Reader) ([]Token, error) {
	var toks []Token
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, secret, ok := strings.Cut(line, ":")
		name, secret = strings.TrimSpace(name), strings.TrimSpace(secret)
		switch {
		case !ok:
			return nil, fmt.Errorf("line %d is not requester:token", n)
		case !requesterRE.MatchString(name):
			return nil, fmt.Errorf("line %d: requester %q is not valid: use letters, digits and @ . _ - (up to 64)", n, name)
		case len(secret) < MinTokenLength:
			return nil, fmt.Errorf("line %d: the token of %s is shorter than %d characters: generate one with `openssl rand -hex 32`", n, name, MinTokenLength)
		case strings.IndexFunc(secret, func(c rune) bool { return c < 0x21 || c > 0x7e }) >= 0:
			// A header carries printable ASCII; a control byte (NUL, ESC)
			// in a token is a paste gone wrong, and would reach terminals.
			return nil, fmt.Errorf("line %d: the token of %s holds whitespace, a control character or non-ASCII: use printable ASCII, e.g. `openssl rand -hex 32`", n, name)
		}
		if prev, dup := seen[secret]; dup {
			return nil, fmt.Errorf("line %d repeats the token of line %d", n, prev)
		}
		seen[secret] = n
		toks = append(toks, Token{Requester: name, Secret: secret})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("no tokens: add a line such as panel:$(openssl rand -hex 32)")
	}
	return toks, nil
}

// authenticator checks bearer tokens in constant time: it compares digests
// (so lengths leak nothing) against every token without stopping early.
type authenticator struct {
	digests    [][sha256.Size]byte
	requesters []string
}

func newAuthenticator(toks []Token) *authenticator {
	a := &authenticator{}
	for _, t := range toks {
		a.digests = append(a.digests, sha256.Sum256([]byte(t.Secret)))
		a.requesters = append(a.requesters, t.Requester)
	}
	return a
}

// requester is who presented the request's token; ok is false without a
// valid one.
func (a *authenticator) requester(r *http.Request) (name string, presented, ok bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, found := strings.Cut(h, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", h != "", false
	}
	d := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	match := -1
	for i := range a.digests {
		if subtle.ConstantTimeCompare(d[:], a.digests[i][:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return "", true, false
	}
	return a.requesters[match], true, true
}

type requesterKey struct{}

func withRequester(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, requesterKey{}, name)
}

func requesterOf(ctx context.Context) string {
	s, _ := ctx.Value(requesterKey{}).(string)
	return s
}
