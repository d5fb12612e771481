package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

const (
	// maxJWKSBytes bounds a JWKS response body.
	maxJWKSBytes = 1 << 20
	// unknownKidRefreshEvery is the shortest gap between two JWKS fetches caused by tokens naming
	// a kid that is not in the set: a key rotation is picked up at once, and a flood of made-up
	// kids costs the JWKS server at most one request per interval.
	unknownKidRefreshEvery = 10 * time.Second
)

// jwksSource holds the keys of a JWKS URL. A jwk.Cache refetches the set in the background; each
// set it fetches is turned into publicKeys by PostFetch and published through keys, so Verify
// reads the keys without a lock and never waits for a fetch the cache is doing.
//
// Only the first fetch goes through jwk.Cache.Refresh: every such call schedules one more periodic
// fetch in the cache, so fetches caused by an unknown kid use fetchNow instead.
type jwksSource struct {
	// Set by newJWKSSource, read-only afterwards.
	onInstall func() // called after each new key set is installed
	url       string
	client    *http.Client
	cache     *jwk.Cache
	life      context.Context    // ends the cache's goroutines and any fetch in flight
	cancel    context.CancelFunc // cancels life

	keys atomic.Pointer[[]publicKey] // nil until a fetch succeeds; replaced whole, never mutated

	mu          sync.Mutex    // guards the fields below
	lastErr     error         // why the last fetch failed; nil after a successful one
	lastForced  time.Time     // when the last fetch not scheduled by the cache started
	forcedEvery time.Duration // least time between such fetches
}

// newJWKSSource registers cfg.JWKSURL with a new jwk.Cache and fetches it once. A failed fetch is
// recorded for ready, not returned: the cache retries it every cfg.JWKSRefresh.
func newJWKSSource(ctx context.Context, cfg Config, onInstall func()) (*jwksSource, error) {
	life, cancel := context.WithCancel(context.WithoutCancel(ctx))
	j := &jwksSource{
		onInstall:   onInstall,
		url:         cfg.JWKSURL,
		client:      cfg.HTTPClient,
		life:        life,
		cancel:      cancel,
		forcedEvery: unknownKidRefreshEvery,
		lastForced:  time.Now(),
	}
	if j.client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// One request every few minutes gains nothing from an idle connection, and none is left
		// behind when the verifier closes.
		t.DisableKeepAlives = true
		j.client = &http.Client{Timeout: jwksTimeout, Transport: t}
	}
	// The cache looks for due fetches once per window; a quarter of the interval keeps a refresh
	// at most 25% late (and at most a minute).
	window := min(max(cfg.JWKSRefresh/4, MinJWKSRefresh), time.Minute)
	j.cache = jwk.NewCache(life, jwk.WithRefreshWindow(window), jwk.WithErrSink(j))
	err := j.cache.Register(j.url,
		jwk.WithHTTPClient(jwksGetter{j}),
		jwk.WithRefreshInterval(cfg.JWKSRefresh),
		jwk.WithPostFetcher(j),
		jwk.WithIgnoreParseError(true),
	)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("auth: JWKS: %w", err)
	}
	if _, err := j.cache.Refresh(ctx, j.url); err != nil {
		j.record(err)
	}
	return j, nil
}

// close stops the background refresh and cancels fetches in flight. The cache's goroutines
// return as soon as they see the cancellation.
func (j *jwksSource) close() { j.cancel() }

// keysFor returns the keys that may verify a token signed with alg and naming kid ("" for none).
// missing reports that the set may be out of date: it was never loaded, or has no key with kid.
func (j *jwksSource) keysFor(alg jwa.SignatureAlgorithm, kid string) (keys []any, missing bool) {
	ring := j.keys.Load()
	if ring == nil {
		return nil, true
	}
	known := false
	for _, k := range *ring {
		if kid != "" && k.kid != kid {
			continue
		}
		known = true
		if k.fits(alg) {
			keys = append(keys, k.raw)
		}
	}
	return keys, kid != "" && !known
}

// fetchNow fetches the set at once unless a fetch like it started less than forcedEvery ago. It
// reports whether a new set was installed. The fetch ends when ctx or the source does.
func (j *jwksSource) fetchNow(ctx context.Context) bool {
	j.mu.Lock()
	if time.Since(j.lastForced) < j.forcedEvery {
		j.mu.Unlock()
		return false
	}
	j.lastForced = time.Now()
	j.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(j.life, cancel)()
	body, err := j.fetch(ctx)
	if err != nil {
		j.record(err)
		return false
	}
	set, err := jwk.Parse(body, jwk.WithIgnoreParseError(true))
	if err != nil {
		j.record(err)
		return false
	}
	j.install(set)
	return true
}

// fetch GETs the JWKS and returns its body. Its errors are *fetchError.
func (j *jwksSource) fetch(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
	if err != nil {
		return nil, &fetchError{err}
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	res, err := j.client.Do(req)
	if err != nil {
		return nil, &fetchError{err} // names the URL already
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, &fetchError{fmt.Errorf("GET %s: %s", j.url, res.Status)}
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, &fetchError{fmt.Errorf("GET %s: %w", j.url, err)}
	}
	if len(body) > maxJWKSBytes {
		return nil, &fetchError{fmt.Errorf("GET %s: JWKS larger than %d bytes", j.url, maxJWKSBytes)}
	}
	return body, nil
}

// fetchError is a failed GET of the JWKS, told apart from the cache's own errors by record.
type fetchError struct{ err error }

func (e *fetchError) Error() string { return e.err.Error() }
func (e *fetchError) Unwrap() error { return e.err }

// install publishes the usable keys of set.
func (j *jwksSource) install(set jwk.Set) {
	ring := make([]publicKey, 0, set.Len())
	for i := range set.Len() {
		if k, ok := set.Key(i); ok {
			if pk, ok := usableJWK(k); ok {
				ring = append(ring, pk)
			}
		}
	}
	j.keys.Store(&ring)
	j.setErr(nil)
	if j.onInstall != nil {
		j.onInstall()
	}
}

// usableJWK converts a JWK into a verification key. Symmetric keys (publishing a secret in a JWKS
// is a mistake, and HS* is only checked against Config.HMACSecret), keys meant for encryption and
// keys checkPublicKey refuses are skipped.
func usableJWK(k jwk.Key) (publicKey, bool) {
	if use := k.KeyUsage(); use != "" && use != string(jwk.ForSignature) {
		return publicKey{}, false
	}
	if k.KeyType() == jwa.OctetSeq {
		return publicKey{}, false
	}
	raw, err := jwk.PublicRawKeyOf(k)
	if err != nil {
		return publicKey{}, false
	}
	if raw, err = checkPublicKey(raw); err != nil {
		return publicKey{}, false
	}
	pk := publicKey{kid: k.KeyID(), raw: raw}
	if alg := k.Algorithm(); alg != nil {
		pk.alg = jwa.SignatureAlgorithm(alg.String())
	}
	return pk, true
}

// ready says whether keys have been loaded.
func (j *jwksSource) ready() error {
	if ring := j.keys.Load(); ring != nil {
		if len(*ring) == 0 {
			return fmt.Errorf("auth: JWKS at %s holds no usable signing key", j.url)
		}
		return nil
	}
	j.mu.Lock()
	err := j.lastErr
	j.mu.Unlock()
	if err == nil {
		return errors.New("auth: JWKS not loaded yet")
	}
	return fmt.Errorf("auth: JWKS not loaded yet: %w", err)
}

// record keeps err for ready. The cache wraps errors twice, naming the URL each time; record keeps
// the root cause and names the URL once.
func (j *jwksSource) record(err error) {
	var fe *fetchError
	if errors.As(err, &fe) {
		j.setErr(fe.err)
		return
	}
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(err) {
		err = u
	}
	j.setErr(fmt.Errorf("JWKS at %s: %w", j.url, err))
}

func (j *jwksSource) setErr(err error) {
	j.mu.Lock()
	j.lastErr = err
	j.mu.Unlock()
}

// PostFetch installs each set the cache fetches (jwk.PostFetcher).
func (j *jwksSource) PostFetch(_ string, set jwk.Set) (jwk.Set, error) {
	j.install(set)
	return set, nil
}

// Error records a failed background fetch (jwk.ErrSink).
func (j *jwksSource) Error(err error) { j.record(err) }

// jwksGetter is the cache's HTTP client: fetches are cancelled when the source closes, and the
// body is read (bounded) and closed here, whatever the cache does with it.
type jwksGetter struct{ j *jwksSource }

// Get implements jwk.HTTPClient.
func (g jwksGetter) Get(string) (*http.Response, error) {
	body, err := g.j.fetch(g.j.life)
	if err != nil {
		return nil, err
	}
	return &http.Response{
		Status:     "200 OK",
		StatusCode: http.StatusOK,
		Header:     http.Header{},
		Body:       io.NopCloser(bytes.NewReader(body)),
	}, nil
}
