package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmguard/wasmguard/internal/wasmhost"
)

// reply is what a test reads of a response.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) echo(t *testing.T) EchoReply {
	t.Helper()
	if r.header.Get(EchoHeader) != "echo" {
		t.Fatalf("the response did not come from the echo upstream: %d %v %.300q", r.status, r.header, r.body)
	}
	var e EchoReply
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("echo body: %v: %.300q", err, r.body)
	}
	return e
}

// send sends one request with c (nil: client) and reads the whole reply.
func send(t *testing.T, c *http.Client, method, url string, header http.Header, body io.Reader) reply {
	t.Helper()
	if c == nil {
		c = client
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return reply{resp.StatusCode, resp.Header, b}
}

// clientFrom returns a client whose connections come from ip (a
// 127.0.0.0/8 address): the filter's source.address.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: d.DialContext, DisableCompression: true}}
}

// unsized hides a reader's length, so the client sends it chunked.
type unsized struct{ r io.Reader }

func (u unsized) Read(p []byte) (int, error) { return u.r.Read(p) }

func TestSeedThroughHandler(t *testing.T) {
	base := proxyServer(t, Options{Host: newSeedHost(t, 2, nil)})
	big := bytes.Repeat([]byte("a"), 5*DefaultChunkSize+123)
	// A <script> tag across the first chunk boundary: seen only if the
	// chunks are reassembled.
	split := append(bytes.Repeat([]byte("b"), DefaultChunkSize-5), []byte("<script>x</script>")...)
	cases := []struct {
		name     string
		method   string
		path     string
		header   http.Header
		body     []byte
		chunked  bool
		status   int
		rule     string
		echoBody []byte // nil: do not check
	}{
		{name: "allowed", method: "GET", path: "/index.html", status: 200, echoBody: []byte{}},
		{name: "exe", method: "GET", path: "/download/evil.exe", status: 403, rule: "block_patterns[0]"},
		{name: "encoded-dot", method: "GET", path: "/download/evil%2Eexe", status: 403, rule: "block_patterns[0]"},
		{name: "script-header", method: "GET", path: "/c", header: http.Header{"X-Comment": {"<script>alert(1)</script>"}},
			status: 403, rule: "block_patterns[1]"},
		{name: "json-body", method: "POST", path: "/api", header: http.Header{"Content-Type": {"application/json"}},
			body: []byte(`{"c":"\u003cscript\u003ealert(1)\u003c/script\u003e"}`), status: 403, rule: "block_patterns[1]"},
		{name: "big-body-passes-intact", method: "POST", path: "/upload", body: big, status: 200, echoBody: big},
		{name: "big-body-chunked", method: "PUT", path: "/upload", body: big, chunked: true, status: 200, echoBody: big},
		{name: "script-across-chunks", method: "POST", path: "/upload", body: split, status: 403, rule: "block_patterns[1]"},
		{name: "script-across-chunks-chunked", method: "POST", path: "/upload", body: split, chunked: true, status: 403, rule: "block_patterns[1]"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body io.Reader
			if c.body != nil {
				body = bytes.NewReader(c.body)
				if c.chunked {
					body = unsized{body}
				}
			}
			cl := clientFrom("127.0.1." + strconv.Itoa(i+1))
			got := send(t, cl, c.method, base+c.path, c.header, body)
			if got.status != c.status {
				t.Fatalf("status %d, want %d (body %.300q)", got.status, c.status, got.body)
			}
			if rule := got.header.Get("x-wasmguard-rule"); rule != c.rule {
				t.Errorf("x-wasmguard-rule %q, want %q", rule, c.rule)
			}
			if c.rule != "" && got.header.Get("Content-Length") != strconv.Itoa(len(got.body)) {
				t.Errorf("content-length %q for a %d-byte reply", got.header.Get("Content-Length"), len(got.body))
			}
			if c.status == 200 {
				if got.header.Get("x-ratelimit-limit") != "20" {
					t.Errorf("x-ratelimit-limit %q, want 20: the response did not pass the filter", got.header.Get("x-ratelimit-limit"))
				}
				e := got.echo(t)
				if e.Method != c.method || e.URI != c.path {
					t.Errorf("upstream saw %s %s, want %s %s", e.Method, e.URI, c.method, c.path)
				}
				if e.BodyBytes != int64(len(c.echoBody)) || e.Body != string(c.echoBody[:min(len(c.echoBody), MaxEchoBody)]) {
					t.Errorf("upstream got %d body bytes, want %d intact", e.BodyBytes, len(c.echoBody))
				}
				if e.Headers["x-request-id"] == "" {
					t.Error("no x-request-id reached the upstream")
				}
				if want := "127.0.1." + strconv.Itoa(i+1); e.Headers["x-forwarded-for"] != want {
					t.Errorf("x-forwarded-for %q, want the peer %s", e.Headers["x-forwarded-for"], want)
				}
			}
		})
	}
}

// bodySizes parses the test plugin's x-body-sizes ("16;32;40;").
func bodySizes(t *testing.T, s string) []int {
	t.Helper()
	var out []int
	for _, f := range strings.Split(strings.TrimSuffix(s, ";"), ";") {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("x-body-sizes %q: %v", s, err)
		}
		out = append(out, n)
	}
	return out
}

// TestChunkSize checks that a body reaches the plugin in several
// callbacks of at most ChunkSize bytes each, at the edges 1 and a size
// larger than the body, with and without a known length. The plugin
// records the sizes in a request header it holds ("pausebody"), which
// needs allow_on_headers_stop_iteration: by default Envoy calls no body
// callback while the headers are held.
func TestChunkSize(t *testing.T) {
	host := newPluginHost(t, wasmhost.Options{AllowOnHeadersStopIteration: true})
	body := []byte(strings.Repeat("0123456789", 350)) // 3500 bytes
	for _, c := range []struct {
		chunk   int
		body    []byte
		chunked bool
	}{
		{1, []byte("abc"), false},
		{1000, body, false},
		{1000, body, true},
		{DefaultChunkSize, body, false},
		{MaxChunkSize, body, true},
	} {
		name := strconv.Itoa(c.chunk) + "/" + strconv.Itoa(len(c.body))
		if c.chunked {
			name += "/chunked"
		}
		t.Run(name, func(t *testing.T) {
			base := proxyServer(t, Options{Host: host, ChunkSize: c.chunk})
			var r io.Reader = bytes.NewReader(c.body)
			if c.chunked {
				r = unsized{r}
			}
			got := send(t, nil, "POST", base+"/up", http.Header{"X-Test": {"pausebody,bodysizes"}}, r)
			e := got.echo(t)
			if e.Body != string(c.body) {
				t.Fatalf("upstream got %d bytes, want the %d sent", e.BodyBytes, len(c.body))
			}
			sizes := bodySizes(t, e.Headers["x-body-sizes"])
			prev := 0
			for i, s := range sizes {
				// Each callback is told the whole buffered size; the
				// growth is one chunk (the chunked case may end with an
				// empty end-of-stream chunk).
				if s-prev > c.chunk || s < prev || (s == prev && i != len(sizes)-1) {
					t.Fatalf("x-body-sizes %v: callback %d grew by %d, chunk size %d", sizes, i, s-prev, c.chunk)
				}
				prev = s
			}
			if prev != len(c.body) {
				t.Fatalf("x-body-sizes %v: ends at %d, want %d", sizes, prev, len(c.body))
			}
			if want := (len(c.body) + c.chunk - 1) / c.chunk; len(sizes) < want {
				t.Fatalf("x-body-sizes %v: %d callbacks, want at least %d", sizes, len(sizes), want)
			}
			if e.Headers["x-body-size"] != strconv.Itoa(len(c.body)) {
				t.Errorf("x-body-size %q: the plugin did not see the whole body", e.Headers["x-body-size"])
			}
		})
	}
}

func TestNewHandlerOptions(t *testing.T) {
	host := newPluginHost(t, wasmhost.Options{})
	for _, c := range []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"defaults", Options{Host: host}, ""},
		{"chunk 1", Options{Host: host, ChunkSize: 1}, ""},
		{"chunk max", Options{Host: host, ChunkSize: MaxChunkSize}, ""},
		{"chunk max+1", Options{Host: host, ChunkSize: MaxChunkSize + 1}, "Options.ChunkSize"},
		{"chunk negative", Options{Host: host, ChunkSize: -1}, "Options.ChunkSize"},
		{"no host", Options{}, "Options.Host"},
		{"negative upstream timeout", Options{Host: host, UpstreamTimeout: -time.Second}, "Options.UpstreamTimeout"},
		{"negative pause timeout", Options{Host: host, PauseTimeout: -time.Second}, "Options.PauseTimeout"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, err := NewHandler(c.opts)
			if c.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if h.opts.ChunkSize == 0 || h.opts.UpstreamTimeout == 0 || h.opts.PauseTimeout == 0 || h.opts.Upstream == nil {
					t.Fatalf("defaults not filled: %+v", h.opts)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("NewHandler = %v, want an error naming %s", err, c.wantErr)
			}
		})
	}
}

// countingUpstream counts the requests that reach it, then asks next.
type countingUpstream struct {
	n    atomic.Int32
	next http.RoundTripper
}

func (c *countingUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// TestPluginDecisions drives the request and response phases through
// the test plugin: local replies in either phase, a rewritten body, a
// request held past PauseTimeout, a VM that traps.
func TestPluginDecisions(t *testing.T) {
	host := newPluginHost(t, wasmhost.Options{})
	up := &countingUpstream{next: Echo{}}
	base := proxyServer(t, Options{Host: host, Upstream: up, PauseTimeout: 200 * time.Millisecond})
	cases := []struct {
		name     string
		xtest    string
		body     string
		status   int
		wantBody string // exact client body; "" skips
		upstream int32  // requests that must reach the upstream
		check    func(t *testing.T, r reply)
	}{
		{name: "deny in request headers", xtest: "deny", status: 403, wantBody: "denied"},
		{name: "deny with a body pending", xtest: "deny", body: "some body", status: 403, wantBody: "denied"},
		// The headers went on before the verdict: the upstream request
		// started, and the local reply aborts it.
		{name: "body judged whole", xtest: "holdbody", body: "an evil payload", status: 403, wantBody: "blocked", upstream: 1},
		{name: "rewritten body", xtest: "holdbody,rewritebody", body: "hello world", status: 200, upstream: 1,
			check: func(t *testing.T, r reply) {
				e := r.echo(t)
				if e.Body != "rewritten" || e.BodyBytes != 9 {
					t.Errorf("upstream got body %q (%d bytes), want the plugin's \"rewritten\"", e.Body, e.BodyBytes)
				}
			}},
		{name: "local reply in the response phase", xtest: "denyresponse", status: 502, wantBody: "bad upstream", upstream: 1},
		{name: "header added for the upstream", xtest: "setheader", status: 200, upstream: 1,
			check: func(t *testing.T, r reply) {
				if e := r.echo(t); e.Headers["x-added"] != "yes" {
					t.Errorf("x-added %q reached the upstream, want yes", e.Headers["x-added"])
				}
				if r.header.Get("x-seen-by-plugin") != "1" {
					t.Error("the response did not pass the plugin's response phase")
				}
			}},
		{name: "held past the pause timeout", xtest: "waittick", status: http.StatusRequestTimeout},
		// Envoy's default: no body callback while the headers are held,
		// so a plugin that waits for one never decides.
		{name: "headers held waiting for a body callback", xtest: "pausebody", body: "an evil payload",
			status: http.StatusRequestTimeout},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := up.n.Load()
			var body io.Reader
			if c.body != "" {
				body = strings.NewReader(c.body)
			}
			got := send(t, nil, "POST", base+"/x", http.Header{"X-Test": {c.xtest}}, body)
			if got.status != c.status {
				t.Fatalf("status %d, want %d (body %.300q)", got.status, c.status, got.body)
			}
			if c.wantBody != "" && string(got.body) != c.wantBody {
				t.Errorf("body %q, want %q", got.body, c.wantBody)
			}
			if n := up.n.Load() - before; n != c.upstream {
				t.Errorf("%d request(s) reached the upstream, want %d", n, c.upstream)
			}
			if c.check != nil {
				c.check(t, got)
			}
		})
	}
}

func TestFailurePolicies(t *testing.T) {
	for _, c := range []struct {
		policy wasmhost.FailurePolicy
		after  int // status of the next request on the failed VM
	}{
		{wasmhost.FailClosed, 503},
		{wasmhost.FailOpen, 200},
	} {
		t.Run(c.policy.String(), func(t *testing.T) {
			host := newPluginHost(t, wasmhost.Options{FailurePolicy: c.policy})
			base := proxyServer(t, Options{Host: host})
			got := send(t, nil, "GET", base+"/", http.Header{"X-Test": {"panic"}}, nil)
			if want := map[wasmhost.FailurePolicy]int{wasmhost.FailClosed: 503, wasmhost.FailOpen: 200}[c.policy]; got.status != want {
				t.Fatalf("the trapping request: status %d, want %d", got.status, want)
			}
			got = send(t, nil, "GET", base+"/", nil, nil)
			if got.status != c.after {
				t.Fatalf("the next request: status %d, want %d (%.200q)", got.status, c.after, got.body)
			}
		})
	}
}

// blockingUpstream never answers; it returns when the request is
// canceled.
type blockingUpstream struct{}

func (blockingUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	<-r.Context().Done()
	return nil, r.Context().Err()
}

type failingUpstream struct{}

func (failingUpstream) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("connection refused")
}

// TestUpstreamFailures checks the proxy's own replies: 504 past
// UpstreamTimeout, 503 when the upstream fails; both pass the filter's
// response phase (it adds its x-ratelimit headers) as Envoy's router
// replies do.
func TestUpstreamFailures(t *testing.T) {
	host := newSeedHost(t, 1, nil)
	for _, c := range []struct {
		name   string
		up     http.RoundTripper
		status int
	}{
		{"timeout", blockingUpstream{}, http.StatusGatewayTimeout},
		{"error", failingUpstream{}, http.StatusServiceUnavailable},
	} {
		t.Run(c.name, func(t *testing.T) {
			base := proxyServer(t, Options{Host: host, Upstream: c.up, UpstreamTimeout: 100 * time.Millisecond})
			start := time.Now()
			got := send(t, nil, "GET", base+"/", nil, nil)
			if got.status != c.status {
				t.Fatalf("status %d, want %d", got.status, c.status)
			}
			if got.header.Get("x-ratelimit-limit") != "20" {
				t.Errorf("x-ratelimit-limit %q: the reply did not pass the filter", got.header.Get("x-ratelimit-limit"))
			}
			if c.status == http.StatusGatewayTimeout && time.Since(start) < 100*time.Millisecond {
				t.Errorf("504 after %v, before UpstreamTimeout", time.Since(start))
			}
		})
	}
}

func TestClosedHost(t *testing.T) {
	host := newPluginHost(t, wasmhost.Options{})
	base := proxyServer(t, Options{Host: host})
	host.Close(context.Background())
	if got := send(t, nil, "GET", base+"/", nil, nil); got.status != http.StatusServiceUnavailable {
		t.Fatalf("status %d after the host closed, want 503", got.status)
	}
}

func TestRequestHead(t *testing.T) {
	r := httptest.NewRequest("POST", "http://shop.example/a%2Fb?q=1", strings.NewReader("hello"))
	r.RemoteAddr = "192.0.2.7:4242"
	r.Header.Set("X-Forwarded-For", "203.0.113.1")
	r.Header.Set("X-Forwarded-Proto", "https") // a client cannot claim https
	r.Header.Set("Connection", "keep-alive, x-secret")
	r.Header.Set("X-Secret", "named by Connection")
	r.Header.Set("X-Request-Id", "chosen-by-the-client")
	r.Header.Set("Te", "trailers")
	r.Header.Add("Accept", "a")
	r.Header.Add("Accept", "b")
	head := RequestHead(r)
	if head.Method != "POST" || head.Path != "/a%2Fb?q=1" || head.Authority != "shop.example" || head.Scheme != "http" {
		t.Errorf("head = %s %s %s %s", head.Method, head.Path, head.Authority, head.Scheme)
	}
	want := [][2]string{{"accept", "a"}, {"accept", "b"}, {"content-length", "5"},
		{"x-forwarded-for", "203.0.113.1,192.0.2.7"}, {"x-forwarded-proto", "http"}}
	if len(head.Headers) != len(want) {
		t.Fatalf("headers %q, want %q", head.Headers, want)
	}
	for i := range want {
		if head.Headers[i] != want[i] {
			t.Errorf("header %d: %q, want %q", i, head.Headers[i], want[i])
		}
	}
}

func TestCopyHeaders(t *testing.T) {
	dst := http.Header{}
	copyHeaders(dst, [][2]string{{":status", "200"}, {"x-ok", "1"}, {"bad name", "x"}, {"connection", "close"},
		{"content-length", "7"}, {"x-ok", "2"}, {"", "empty"}})
	if got := dst.Values("X-Ok"); len(got) != 2 || got[0] != "1" || got[1] != "2" {
		t.Errorf("x-ok = %q", got)
	}
	if dst.Get("Content-Length") != "7" || len(dst) != 2 {
		t.Errorf("headers = %v, want only x-ok and content-length", dst)
	}
}

func TestValidStatus(t *testing.T) {
	for s, want := range map[int]bool{0: false, 100: false, 199: false, 200: true, 599: true, 999: true, 1000: false, -1: false} {
		if validStatus(s) != want {
			t.Errorf("validStatus(%d) = %v, want %v", s, !want, want)
		}
	}
}

// TestRequestTrailers sends chunked bodies with trailers: the filter
// judges the body when the trailers end the request (Envoy does not flag
// a body chunk as the end then).
func TestRequestTrailers(t *testing.T) {
	base := proxyServer(t, Options{Host: newSeedHost(t, 1, nil)})
	for _, c := range []struct {
		body   string
		status int
	}{
		{"comment=%3Cscript%3Ealert(1)%3C%2Fscript%3E", 403},
		{"comment=hello", 200},
	} {
		t.Run(strconv.Itoa(c.status), func(t *testing.T) {
			req, _ := http.NewRequest("POST", base+"/form", unsized{strings.NewReader(c.body)})
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Trailer = http.Header{"X-Checksum": {"abc"}}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d (%.200q)", resp.StatusCode, c.status, b)
			}
			if c.status == 200 {
				if e := (reply{resp.StatusCode, resp.Header, b}).echo(t); e.Body != c.body {
					t.Errorf("upstream got %q, want %q", e.Body, c.body)
				}
			}
		})
	}
}

// TestHeadersStopIteration runs a plugin that holds the request headers
// while it waits for the body, with and without
// allow_on_headers_stop_iteration: the test plugin's "pausebody" and
// security.wasm with hold_headers (the seed patterns), next to
// security.wasm's default, which lets the headers go and holds the body.
// Without the option the request gets no verdict: it ends with the pause
// timeout's 408 and reaches no upstream.
func TestHeadersStopIteration(t *testing.T) {
	const pauseTimeout = 200 * time.Millisecond
	var seed map[string]any
	if err := json.Unmarshal(seedConfig(t), &seed); err != nil {
		t.Fatal(err)
	}
	seed["hold_headers"] = true
	holdHeaders, err := json.Marshal(seed)
	if err != nil {
		t.Fatal(err)
	}
	const (
		evil   = "msg=<script>alert(1)</script>"
		benign = "msg=hello+world&n=1"
	)
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	type send1 struct {
		xtest  string
		body   string
		status int
		// upstream: the upstream request started (the headers went on
		// before the verdict; a 403 then aborts it).
		upstream bool
	}
	for _, c := range []struct {
		name  string
		host  func(t *testing.T) *wasmhost.Host
		sends []send1
	}{
		{"test plugin, allow_on_headers_stop_iteration", func(t *testing.T) *wasmhost.Host {
			return newPluginHost(t, wasmhost.Options{AllowOnHeadersStopIteration: true})
		}, []send1{{"pausebody", "an evil payload", 403, false}, {"pausebody", "a fine payload", 200, true}}},
		{"test plugin, Envoy's default", func(t *testing.T) *wasmhost.Host {
			return newPluginHost(t, wasmhost.Options{})
		}, []send1{{"pausebody", "an evil payload", http.StatusRequestTimeout, false}, {"holdbody", "an evil payload", 403, true},
			{"holdbody", "a fine payload", 200, true}}},
		{"security.wasm seed, Envoy's default", func(t *testing.T) *wasmhost.Host {
			return newSeedHost(t, 1, nil)
		}, []send1{{"", evil, 403, true}, {"", benign, 200, true}}},
		{"security.wasm hold_headers, allow_on_headers_stop_iteration", func(t *testing.T) *wasmhost.Host {
			h, err := wasmhost.New(context.Background(), securityWasmOrSkip(t), wasmhost.Options{PluginConfig: holdHeaders,
				AllowOnHeadersStopIteration: true, Logger: discard})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.Close(context.Background()) })
			return h
		}, []send1{{"", evil, 403, false}, {"", benign, 200, true}}},
		{"security.wasm hold_headers, Envoy's default", func(t *testing.T) *wasmhost.Host {
			h, err := wasmhost.New(context.Background(), securityWasmOrSkip(t), wasmhost.Options{PluginConfig: holdHeaders, Logger: discard})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.Close(context.Background()) })
			return h
		}, []send1{{"", evil, http.StatusRequestTimeout, false}, {"", benign, http.StatusRequestTimeout, false}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			up := &countingUpstream{next: Echo{}}
			base := proxyServer(t, Options{Host: c.host(t), Upstream: up, PauseTimeout: pauseTimeout})
			for _, s := range c.sends {
				before := up.n.Load()
				h := form.Clone()
				if s.xtest != "" {
					h.Set("X-Test", s.xtest)
				}
				got := send(t, nil, "POST", base+"/comment", h, strings.NewReader(s.body))
				if got.status != s.status {
					t.Fatalf("x-test %q, body %q: status %d, want %d (%.300q)", s.xtest, s.body, got.status, s.status, got.body)
				}
				if reached := up.n.Load() - before; reached != b2n(s.upstream) {
					t.Errorf("x-test %q, body %q: the upstream request started %d time(s), want %d", s.xtest, s.body, reached, b2n(s.upstream))
				}
				if s.status != 200 {
					continue
				}
				if e := got.echo(t); e.Body != s.body {
					t.Errorf("x-test %q: the upstream got body %q, want %q intact", s.xtest, e.Body, s.body)
				}
			}
		})
	}
}

func b2n(b bool) int32 {
	if b {
		return 1
	}
	return 0
}
