package e2e

// The HTTP side of the end-to-end tests: an echo upstream, clients bound to a
// given loopback address, and the checks of a scenario's response. They are
// tested here against the echo upstream alone, so the Envoy test only adds
// Envoy.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// scenarioHeader names the scenario on every request, so the upstream can
	// tell which scenarios reached it.
	scenarioHeader = "x-e2e-scenario"
	// upstreamHeader marks a response that came from the echo upstream.
	upstreamHeader = "x-e2e-upstream"

	requestTimeout  = 10 * time.Second // one request, connection included
	maxResponseBody = 1 << 20          // bytes of a response body read
	maxEchoBody     = 1 << 20          // bytes of a request body the upstream echoes
)

// echo is what the upstream answers: the request as it arrived.
type echo struct {
	Method string `json:"method"`
	URI    string `json:"uri"` // the raw request target
	Body   string `json:"body"`
}

// upstream is an HTTP server on loopback that answers every request with 200
// and an echo of it, and remembers which scenarios reached it.
type upstream struct {
	srv  *http.Server
	addr string

	mu   sync.Mutex
	seen map[string]int
}

// startUpstream listens on addr ("127.0.0.1:8080", or "127.0.0.1:0" for any
// free port) and stops when the test ends.
func startUpstream(t *testing.T, addr string) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("upstream: listen on %s: %v (is something else using the port?)", addr, err)
	}
	u := &upstream{addr: ln.Addr().String(), seen: map[string]int{}}
	u.srv = &http.Server{Handler: u, ReadHeaderTimeout: requestTimeout}
	go func() { _ = u.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = u.srv.Shutdown(ctx)
	})
	return u
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxEchoBody))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if name := r.Header.Get(scenarioHeader); name != "" {
		u.mu.Lock()
		u.seen[name]++
		u.mu.Unlock()
	}
	w.Header().Set("content-type", "application/json")
	w.Header().Set(upstreamHeader, "echo")
	_ = json.NewEncoder(w).Encode(echo{Method: r.Method, URI: r.RequestURI, Body: string(body)})
}

// reached reports how many requests of a scenario reached the upstream.
func (u *upstream) reached(name string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.seen[name]
}

// clientFrom returns an HTTP client whose connections come from ip, a
// 127.0.0.0/8 address: the filter sees it as the client's address. It uses no
// proxy and no keep-alive.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: requestTimeout}
	return &http.Client{
		Timeout:   requestTimeout,
		Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// response is what a check needs of an HTTP response.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// send sends one scenario request to base ("http://127.0.0.1:10000") with its
// raw request target kept byte for byte.
func send(c *http.Client, base string, r Request) (response, error) {
	var body io.Reader
	if r.Body != "" {
		body = strings.NewReader(r.Body)
	}
	req, err := http.NewRequest(r.Method, base+r.Path, body)
	if err != nil {
		return response{}, fmt.Errorf("%s: %w", r.Name, err)
	}
	// Send the target exactly as written: Opaque bypasses Go's
	// re-encoding of the path.
	req.URL.Opaque = strings.SplitN(r.Path, "?", 2)[0]
	for k, v := range r.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set(scenarioHeader, r.Name)
	resp, err := c.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s: %w", r.Name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		return response{}, fmt.Errorf("%s: read body: %w", r.Name, err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// checkResponse compares a response with a scenario's expectation and
// returns every difference.
func checkResponse(r Request, got response) error {
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if got.Status != r.Want.Status {
		fail("status %d, want %d (body %.300q)", got.Status, r.Want.Status, got.Body)
	}
	if r.Want.Rule != "" {
		if ct := got.Header.Get("content-type"); !strings.HasPrefix(ct, "application/json") {
			fail("content-type %q, want application/json", ct)
		}
		if rule := got.Header.Get("x-wasmguard-rule"); rule != r.Want.Rule {
			fail("x-wasmguard-rule %q, want %q", rule, r.Want.Rule)
		}
		var b struct{ Error, Rule string }
		if err := json.Unmarshal(got.Body, &b); err != nil {
			fail("body is not JSON: %v: %.300q", err, got.Body)
		} else if b.Error != "request blocked" || b.Rule != r.Want.Rule {
			fail("body %.300s, want error %q and rule %q", got.Body, "request blocked", r.Want.Rule)
		}
		if got.Header.Get(upstreamHeader) != "" {
			fail("the response came from the upstream")
		}
	}
	if r.Want.Upstream {
		var e echo
		if got.Header.Get(upstreamHeader) != "echo" {
			fail("the response did not come from the upstream")
		} else if err := json.Unmarshal(got.Body, &e); err != nil {
			fail("upstream echo is not JSON: %v", err)
		} else if e.Method != r.Method || e.URI != r.Path || e.Body != r.Body {
			fail("upstream saw %s %s body %q, want %s %s body %q", e.Method, e.URI, e.Body, r.Method, r.Path, r.Body)
		}
	}
	return errors.Join(errs...)
}

// checkRateLimited checks a 429 from the filter: retry-after in whole seconds
// (at least 1), numeric x-ratelimit-limit and x-ratelimit-remaining, and a
// JSON body with "error":"rate limited".
func checkRateLimited(got response) error {
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if got.Status != http.StatusTooManyRequests {
		fail("status %d, want 429", got.Status)
	}
	if n, err := strconv.Atoi(got.Header.Get("retry-after")); err != nil || n < 1 {
		fail("retry-after %q, want whole seconds >= 1", got.Header.Get("retry-after"))
	}
	if n, err := strconv.Atoi(got.Header.Get("x-ratelimit-limit")); err != nil || n < 1 {
		fail("x-ratelimit-limit %q, want a positive integer", got.Header.Get("x-ratelimit-limit"))
	}
	if n, err := strconv.Atoi(got.Header.Get("x-ratelimit-remaining")); err != nil || n < 0 {
		fail("x-ratelimit-remaining %q, want an integer >= 0", got.Header.Get("x-ratelimit-remaining"))
	}
	if ct := got.Header.Get("content-type"); !strings.HasPrefix(ct, "application/json") {
		fail("content-type %q, want application/json", ct)
	}
	var b struct{ Error string }
	if err := json.Unmarshal(got.Body, &b); err != nil || b.Error != "rate limited" {
		fail("body %.300s, want JSON with error \"rate limited\"", got.Body)
	}
	return errors.Join(errs...)
}

func TestScenariosFile(t *testing.T) {
	s, err := LoadScenarios(ScenariosFile)
	if err != nil {
		t.Fatal(err)
	}
	var blocked, passed int
	for _, r := range s.Requests {
		if r.Want.Rule != "" {
			blocked++
		}
		if r.Want.Upstream {
			passed++
		}
	}
	if blocked == 0 || passed == 0 {
		t.Errorf("scenarios: %d blocked and %d passing requests, want some of each", blocked, passed)
	}
	if s.RateLimit.Burst != 20 || s.RateLimit.RequestsPerMinute != 100 {
		t.Errorf("rate_limit: burst %d, %d/min; the design configuration has burst 20, 100/min", s.RateLimit.Burst, s.RateLimit.RequestsPerMinute)
	}
}

func TestScenariosCheckRejects(t *testing.T) {
	base, err := LoadScenarios(ScenariosFile)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		mutate  func(s *Scenarios)
		wantErr string
	}{
		{"duplicate name", func(s *Scenarios) { s.Requests[1].Name = s.Requests[0].Name }, "duplicate"},
		{"non-loopback client", func(s *Scenarios) { s.Requests[0].ClientIP = "10.0.0.1" }, "not an IPv4 loopback"},
		{"shared client", func(s *Scenarios) { s.Requests[1].ClientIP = s.Requests[0].ClientIP }, "already used"},
		{"rate-limit client shared", func(s *Scenarios) { s.RateLimit.ClientIP = s.Requests[0].ClientIP }, "already used"},
		{"blocked without rule", func(s *Scenarios) { s.Requests[0].Want.Rule = "" }, "want.rule"},
		{"bad status", func(s *Scenarios) { s.Requests[0].Want.Status = 42 }, "want.status"},
		{"relative path", func(s *Scenarios) { s.Requests[0].Path = "download" }, "path"},
		{"zero burst", func(s *Scenarios) { s.RateLimit.Burst = 0 }, "burst"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := base
			s.Requests = append([]Request(nil), base.Requests...)
			c.mutate(&s)
			err := s.Check()
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("Check() = %v, want an error mentioning %q", err, c.wantErr)
			}
		})
	}
}

// TestHarnessAgainstEchoUpstream sends every scenario straight to the echo
// upstream, without Envoy, and checks that it arrives as written (raw target,
// method, body, from the scenario's client address) and that checkResponse
// accepts an upstream answer only where one is expected.
func TestHarnessAgainstEchoUpstream(t *testing.T) {
	s, err := LoadScenarios(ScenariosFile)
	if err != nil {
		t.Fatal(err)
	}
	u := startUpstream(t, "127.0.0.1:0")
	for _, r := range s.Requests {
		t.Run(r.Name, func(t *testing.T) {
			got, err := send(clientFrom(r.ClientIP), "http://"+u.addr, r)
			if err != nil {
				t.Fatal(err)
			}
			var e echo
			if err := json.Unmarshal(got.Body, &e); err != nil {
				t.Fatalf("echo: %v", err)
			}
			if e.Method != r.Method || e.URI != r.Path || e.Body != r.Body {
				t.Fatalf("upstream saw %s %s body %q, want %s %s body %q", e.Method, e.URI, e.Body, r.Method, r.Path, r.Body)
			}
			if u.reached(r.Name) != 1 {
				t.Errorf("upstream counted %d requests of %s, want 1", u.reached(r.Name), r.Name)
			}
			err = checkResponse(r, got)
			if r.Want.Upstream && err != nil {
				t.Errorf("checkResponse refused a correct upstream answer: %v", err)
			}
			if !r.Want.Upstream && err == nil {
				t.Errorf("checkResponse accepted an upstream answer for a request that must be blocked")
			}
		})
	}
}

func TestCheckRateLimited(t *testing.T) {
	good := response{
		Status: 429,
		Header: http.Header{
			"Retry-After":           {"1"},
			"X-Ratelimit-Limit":     {"20"},
			"X-Ratelimit-Remaining": {"0"},
			"Content-Type":          {"application/json"},
		},
		Body: []byte(`{"error":"rate limited","retry_after":1}`),
	}
	if err := checkRateLimited(good); err != nil {
		t.Fatalf("a correct 429 was refused: %v", err)
	}
	cases := map[string]func(r *response){
		"status 200":         func(r *response) { r.Status = 200 },
		"retry-after 0":      func(r *response) { r.Header.Set("Retry-After", "0") },
		"retry-after 1.5":    func(r *response) { r.Header.Set("Retry-After", "1.5") },
		"no limit header":    func(r *response) { r.Header.Del("X-Ratelimit-Limit") },
		"no remaining":       func(r *response) { r.Header.Del("X-Ratelimit-Remaining") },
		"text body":          func(r *response) { r.Header.Set("Content-Type", "text/plain") },
		"wrong error string": func(r *response) { r.Body = []byte(`{"error":"request blocked"}`) },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			r := good
			r.Header = good.Header.Clone()
			r.Body = bytes.Clone(good.Body)
			mutate(&r)
			if err := checkRateLimited(r); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
