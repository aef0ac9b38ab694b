package server

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmguard/wasmguard/internal/wasmhost"
)

// staticUpstream answers every request with its header and body; length
// -1 sends the body without a known length.
type staticUpstream struct {
	header http.Header
	body   string
	length int64
}

func (u staticUpstream) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	h := http.Header{}
	for k, v := range u.header {
		h[k] = append([]string(nil), v...)
	}
	return &http.Response{
		Status: "200 OK", StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(strings.NewReader(u.body)), ContentLength: u.length, Request: req,
	}, nil
}

// rawExchange writes raw (an HTTP/1.1 request, bytes as given) to the
// server at base and reads the response.
func rawExchange(t *testing.T, base, raw string) reply {
	t.Helper()
	r, _ := rawExchangeClose(t, base, raw)
	return r
}

// rawExchangeClose is rawExchange that also reports whether the server
// closed the connection after the response (Connection: close, then EOF).
func rawExchangeClose(t *testing.T, base, raw string) (reply, bool) {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the response to %q: %v", raw, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	if resp.Close { // net/http took "Connection: close" out of the header
		_, err := br.ReadByte()
		closed = err == io.EOF
	}
	return reply{resp.StatusCode, resp.Header, b}, closed
}

// TestNoInventedContentType checks that the proxy passes a response
// without Content-Type on without one: net/http would otherwise sniff the
// body and label <script> as text/html, which Envoy never does.
func TestNoInventedContentType(t *testing.T) {
	host := newPluginHost(t, wasmhost.Options{})
	const script = "<script>alert(1)</script>"
	for _, c := range []struct {
		name   string
		up     staticUpstream
		xtest  string
		status int
		want   []string // the Content-Type values the client gets; nil: none
	}{
		{name: "upstream without type", up: staticUpstream{body: script, length: int64(len(script))},
			status: 200},
		{name: "upstream without type or length", up: staticUpstream{body: script, length: -1},
			status: 200},
		{name: "upstream type kept", up: staticUpstream{header: http.Header{"Content-Type": {"application/json"}},
			body: script, length: int64(len(script))}, status: 200, want: []string{"application/json"}},
		{name: "empty body", up: staticUpstream{length: 0}, status: 200},
		// The host labels a local reply's body text/plain, as Envoy's
		// prepareLocalReply does.
		{name: "local reply", up: staticUpstream{body: script, length: -1}, xtest: "deny",
			status: 403, want: []string{"text/plain"}},
		{name: "local reply in the response phase", up: staticUpstream{body: script, length: -1}, xtest: "denyresponse",
			status: 502, want: []string{"text/plain"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			base := proxyServer(t, Options{Host: host, Upstream: c.up})
			var h http.Header
			if c.xtest != "" {
				h = http.Header{"X-Test": {c.xtest}}
			}
			got := send(t, nil, "GET", base+"/", h, nil)
			if got.status != c.status {
				t.Fatalf("status %d, want %d (%q)", got.status, c.status, got.body)
			}
			if ct := got.header["Content-Type"]; strings.Join(ct, "|") != strings.Join(c.want, "|") {
				t.Errorf("Content-Type %q, want %q", ct, c.want)
			}
			if c.xtest == "" && string(got.body) != c.up.body {
				t.Errorf("body %q, want the upstream's %q", got.body, c.up.body)
			}
		})
	}
}

// TestSendLocalContentType checks a local reply whose headers lack
// Content-Type (the plugin removed the host's text/plain in its response
// callback): the client gets none, not a sniffed one.
func TestSendLocalContentType(t *testing.T) {
	for _, c := range []struct {
		name    string
		headers [][2]string
		want    []string
	}{
		{"none", nil, nil},
		{"the plugin's", [][2]string{{"content-type", "application/json"}}, []string{"application/json"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				x := &exchange{w: w, r: r}
				x.sendLocal(&wasmhost.LocalResponse{Status: 403, Headers: c.headers, Body: []byte("<html><script>x</script>")})
			}))
			defer srv.Close()
			got := send(t, nil, "GET", srv.URL, nil, nil)
			if got.status != 403 || string(got.body) != "<html><script>x</script>" {
				t.Fatalf("%d %q", got.status, got.body)
			}
			if ct := got.header["Content-Type"]; strings.Join(ct, "|") != strings.Join(c.want, "|") {
				t.Errorf("Content-Type %q, want %q", ct, c.want)
			}
		})
	}
}

func TestNominated(t *testing.T) {
	for _, c := range []struct {
		conn []string
		name string
		want bool
	}{
		{nil, "x-a", false},
		{[]string{"x-a"}, "x-a", true},
		{[]string{"X-A"}, "x-a", true},
		{[]string{"close, X-Secret"}, "x-secret", true},
		{[]string{"close,X-Secret"}, "x-secret", true},
		{[]string{" \tx-secret\t ,close"}, "x-secret", true},
		{[]string{",, ,x-b,"}, "x-b", true},
		{[]string{"close", "keep-alive, X-Other"}, "x-other", true},
		{[]string{"x-secrets"}, "x-secret", false},
		{[]string{"x-secret"}, "x-secrets", false},
		{[]string{"x-a x-b"}, "x-b", false}, // not a list: one odd token
		{[]string{""}, "", false},
		{[]string{","}, "", false},
	} {
		if got := nominated(c.conn, c.name); got != c.want {
			t.Errorf("nominated(%q, %q) = %v, want %v", c.conn, c.name, got, c.want)
		}
	}
}

// TestConnectionNominatedRequest sends headers that the Connection
// header names (RFC 9110 section 7.6.1: connection-specific, not to be
// forwarded): neither the plugin nor the upstream sees them.
func TestConnectionNominatedRequest(t *testing.T) {
	host := newPluginHost(t, wasmhost.Options{})
	base := proxyServer(t, Options{Host: host})
	raw := "POST /p HTTP/1.1\r\nHost: shop.example\r\n" +
		"Connection: keep-alive, X-Secret\r\n" +
		"connection: X-OTHER,\tx-request-id , Content-Length\r\n" +
		"X-Secret: s1\r\nX-Other: o1\r\nX-Kept: k1\r\nX-Forwarded-For: 203.0.113.9\r\n" +
		"X-Test: props\r\nContent-Length: 5\r\n\r\nhello"
	got := rawExchange(t, base, raw)
	e := got.echo(t)
	for _, name := range []string{"x-secret", "x-other", "connection"} {
		if v, ok := e.Headers[name]; ok {
			t.Errorf("the upstream got %s: %q", name, v)
		}
	}
	if e.Headers["x-kept"] != "k1" {
		t.Errorf("x-kept %q, want k1", e.Headers["x-kept"])
	}
	if e.Headers["x-forwarded-for"] != "203.0.113.9,127.0.0.1" {
		t.Errorf("x-forwarded-for %q, want the client's and the peer", e.Headers["x-forwarded-for"])
	}
	// Nominated or not, the client's id is replaced: one fresh id.
	if !uuidRE.MatchString(e.Headers["x-request-id"]) {
		t.Errorf("x-request-id %q, want the host's fresh UUID", e.Headers["x-request-id"])
	}
	// The body's framing survives a nominated Content-Length.
	if e.Body != "hello" {
		t.Errorf("body %q, want hello", e.Body)
	}
	seen := " " + e.Headers["x-prop-headers-map"] + " "
	if !strings.Contains(seen, " x-kept ") {
		t.Fatalf("the plugin's header map %q lacks x-kept: the test plugin did not report it", seen)
	}
	for _, name := range []string{"x-secret", "x-other", "connection"} {
		if strings.Contains(seen, " "+name+" ") {
			t.Errorf("the plugin saw %s (headers %q)", name, seen)
		}
	}
}

func TestConnectionError(t *testing.T) {
	names := func(n int) string {
		var b []string
		for i := 0; i < n; i++ {
			b = append(b, "x-h"+strconv.Itoa(i))
		}
		return strings.Join(b, ", ")
	}
	for _, c := range []struct {
		conn []string
		want string // "" for nil
	}{
		{nil, ""},
		{[]string{"close"}, ""},
		{[]string{"keep-alive, x-secret, te, upgrade"}, ""},
		{[]string{names(MaxConnectionTokens)}, ""},
		{[]string{names(MaxConnectionTokens + 1)}, "lists 10 names, more than 9"},
		// Spread over two headers, counted together.
		{[]string{names(5), names(5)}, "lists 10 names, more than 9"},
		{[]string{names(MaxConnectionTokens) + ", , ,"}, ""},
		{[]string{"close, X-Forwarded-For"}, `names "X-Forwarded-For"`},
		{[]string{"close", "x-forwarded-host"}, `names "x-forwarded-host"`},
		{[]string{"X-FORWARDED-PROTO"}, `names "X-FORWARDED-PROTO"`},
		{[]string{":authority"}, `names ":authority"`},
		{[]string{"x-forwarded-port, x-forwarded-for-not"}, ""},
	} {
		t.Run(strings.Join(c.conn, "|"), func(t *testing.T) {
			h := http.Header{}
			for _, v := range c.conn {
				h.Add("Connection", v)
			}
			err := ConnectionError(h)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("ConnectionError = %v, want nil", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("ConnectionError = %v, want an error with %q", err, c.want)
			}
		})
	}
}

// TestConnectionRefused: a request Envoy's codec refuses for its
// Connection header gets 400 and a closed connection; neither the plugin
// nor the upstream sees it.
func TestConnectionRefused(t *testing.T) {
	host := newPluginHost(t, wasmhost.Options{})
	up := &countingUpstream{next: Echo{}}
	var logs strings.Builder
	var mu sync.Mutex
	base := proxyServer(t, Options{Host: host, Upstream: up, Log: func(_ wasmhost.LogLevel, msg string) {
		mu.Lock()
		logs.WriteString(msg + "\n")
		mu.Unlock()
	}})
	for _, c := range []struct {
		conn   string
		status int
	}{
		{"x-forwarded-for", 400},
		{"keep-alive, :path", 400},
		{"a, b, c, d, e, f, g, h, i, j", 400},
		{"a, b, c, d, e, f, g, h, i", 200},
	} {
		t.Run(c.conn, func(t *testing.T) {
			before := up.n.Load()
			got, closed := rawExchangeClose(t, base, "GET / HTTP/1.1\r\nHost: a\r\nConnection: "+c.conn+"\r\n"+
				"X-Forwarded-For: 203.0.113.9\r\nX-Test: deny\r\n\r\n")
			if c.status == 200 {
				// The plugin ran: it denies on X-Test: deny.
				if got.status != 403 {
					t.Fatalf("status %d, want the plugin's 403", got.status)
				}
				return
			}
			if got.status != c.status || string(got.body) != "Bad Request" {
				t.Fatalf("%d %q, want %d Bad Request", got.status, got.body, c.status)
			}
			if !closed {
				t.Error("the connection stayed open, want Connection: close and EOF")
			}
			if n := up.n.Load() - before; n != 0 {
				t.Errorf("%d request(s) reached the upstream", n)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), `"GET /" 400 11B`) || !strings.Contains(logs.String(), `connection header names "x-forwarded-for"`) {
		t.Errorf("no access line for the refused request:\n%s", logs.String())
	}
}

// TestConnectionNominatedResponse: headers the upstream's Connection
// header names do not reach the plugin or the client.
func TestConnectionNominatedResponse(t *testing.T) {
	host := newPluginHost(t, wasmhost.Options{})
	up := staticUpstream{header: http.Header{
		"Connection":   {"X-Internal, close", "keep-alive,x-hop"},
		"X-Internal":   {"secret"},
		"X-Hop":        {"h"},
		"Keep-Alive":   {"timeout=5"},
		"X-Public":     {"p"},
		"Content-Type": {"text/plain"},
	}, body: "ok", length: 2}
	base := proxyServer(t, Options{Host: host, Upstream: up})
	got := send(t, nil, "GET", base+"/", nil, nil)
	if got.status != 200 || string(got.body) != "ok" {
		t.Fatalf("%d %q", got.status, got.body)
	}
	for _, name := range []string{"X-Internal", "X-Hop", "Keep-Alive"} {
		if v, ok := got.header[name]; ok {
			t.Errorf("the client got %s: %q", name, v)
		}
	}
	if got.header.Get("X-Public") != "p" || got.header.Get("X-Seen-By-Plugin") != "1" {
		t.Errorf("headers %v: want x-public and the plugin's x-seen-by-plugin", got.header)
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// TestRequestIDRegenerated: a client's x-request-id is replaced by a
// fresh one, as Envoy at the edge (use_remote_address: true) does for an
// external client.
func TestRequestIDRegenerated(t *testing.T) {
	host := newPluginHost(t, wasmhost.Options{})
	base := proxyServer(t, Options{Host: host})
	const mine = "client-chosen-id"
	ids := map[string]bool{}
	for i := 0; i < 2; i++ {
		e := send(t, nil, "GET", base+"/", http.Header{"X-Request-Id": {mine}}, nil).echo(t)
		id := e.Headers["x-request-id"]
		if !uuidRE.MatchString(id) {
			t.Fatalf("x-request-id %q reached the upstream, want a fresh UUID v4", id)
		}
		ids[id] = true
	}
	if len(ids) != 2 {
		t.Errorf("two requests got the same x-request-id %v", ids)
	}
}

// TestRequestHeadContentLength: content-length is in the head when the
// client declared one, 0 included, and never for a chunked body.
func TestRequestHeadContentLength(t *testing.T) {
	var heads = make(chan wasmhost.RequestHead, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		heads <- RequestHead(r)
	}))
	defer srv.Close()
	for _, c := range []struct {
		name, raw string
		want      string // "" for none
	}{
		{"none", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", ""},
		{"zero", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", "0"},
		{"five", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", "5"},
		{"chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			rawExchange(t, srv.URL, c.raw)
			head := <-heads
			got, ok := wasmhost.HeaderValue(head.Headers, "content-length")
			if got != c.want || ok != (c.want != "") {
				t.Errorf("content-length %q (present %v), want %q", got, ok, c.want)
			}
			n := 0
			for _, kv := range head.Headers {
				if kv[0] == "content-length" || kv[0] == "transfer-encoding" {
					n++
				}
			}
			if want := map[bool]int{true: 1, false: 0}[c.want != ""]; n != want {
				t.Errorf("headers %q: %d framing headers, want %d", head.Headers, n, want)
			}
		})
	}
}

// TestNetHTTPFraming pins the differences from Envoy's HTTP/1 codec that
// the package doc lists: they come from net/http, which hands the handler
// no trace of them, so a change in net/http shows up here.
func TestNetHTTPFraming(t *testing.T) {
	host := newPluginHost(t, wasmhost.Options{})
	base := proxyServer(t, Options{Host: host})
	t.Run("chunked with content-length", func(t *testing.T) {
		got := rawExchange(t, base, "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"+
			"Transfer-Encoding: chunked\r\nX-Test: props\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
		if got.status != 200 {
			t.Fatalf("status %d, want 200: net/http now refuses the request; update the package doc (Envoy answers 400)", got.status)
		}
		e := got.echo(t)
		if e.Body != "hello" {
			t.Errorf("upstream got %q, want the chunked body hello", e.Body)
		}
		if strings.Contains(" "+e.Headers["x-prop-headers-map"]+" ", " content-length ") {
			t.Errorf("the plugin saw content-length (headers %q)", e.Headers["x-prop-headers-map"])
		}
	})
	t.Run("invalid percent-escape", func(t *testing.T) {
		if got := rawExchange(t, base, "GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n"); got.status != 400 {
			t.Fatalf("status %d, want net/http's 400: update the package doc", got.status)
		}
	})
}

// BenchmarkRequestHead builds the head of a typical browser request that
// names a header in Connection.
func BenchmarkRequestHead(b *testing.B) {
	r := httptest.NewRequest("GET", "http://shop.example"+typicalPath, nil)
	r.RemoteAddr = "192.0.2.7:4242"
	for _, kv := range typicalHeaders {
		r.Header.Add(kv[0], kv[1])
	}
	r.Header.Set("Connection", "keep-alive, x-hop")
	r.Header.Set("X-Hop", "1")
	b.ReportAllocs()
	for b.Loop() {
		head := RequestHead(r)
		// x-request-id dropped, x-hop dropped, x-forwarded-proto replaced,
		// x-forwarded-for added.
		if len(head.Headers) != len(typicalHeaders) {
			b.Fatalf("headers %q", head.Headers)
		}
	}
}
