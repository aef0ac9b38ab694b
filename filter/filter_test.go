package filter

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// seed is the design documents' configuration, verbatim.
const seed = `{"block_patterns": [".*\\.(exe|dll|scr|bat)$", ".*<script.*>.*</script>.*"],
 "rate_limit": {"requests_per_minute": 100, "burst": 20}}`

// wasmPath is the module `make build` writes; `make test` builds it first.
const wasmPath = "../security.wasm"

// A runner supplies the VM context a test table runs against: the filter
// compiled natively, or security.wasm in wazero through proxytest.
type runner struct {
	name string
	vm   func(t testing.TB) types.VMContext
}

var (
	wasmOnce sync.Once
	wasmVM   proxytest.WasmVMContext
	wasmErr  error
)

// loadWasm compiles security.wasm once per test binary. A missing module
// fails the test in CI (CI=true) and skips it elsewhere.
func loadWasm(t testing.TB) types.VMContext {
	t.Helper()
	wasmOnce.Do(func() {
		var b []byte
		if b, wasmErr = os.ReadFile(wasmPath); wasmErr == nil {
			wasmVM, wasmErr = proxytest.NewWasmVMContext(b)
		}
	})
	if wasmErr != nil {
		if os.IsNotExist(wasmErr) && os.Getenv("CI") == "" {
			t.Skipf("%s not built (run make build): %v", wasmPath, wasmErr)
		}
		t.Fatalf("loading %s: %v", wasmPath, wasmErr)
	}
	return wasmVM
}

var runners = []runner{
	{"native", func(testing.TB) types.VMContext { return &vmContext{} }},
	{"wasm", loadWasm},
}

// request is one HTTP request fed to the filter.
type request struct {
	method, path string
	headers      [][2]string
	body         []string // chunks; nil means no body
	trailers     [][2]string
	source       string // source.address; default defaultSource
}

const defaultSource = "10.0.0.1:40000"

// result is what the filter did with a request.
type result struct {
	action types.Action // after the last callback
	local  *proxytest.LocalHttpResponse
}

func (r result) status() int {
	if r.local == nil {
		return 0
	}
	return int(r.local.StatusCode)
}

func (r result) header(name string) string {
	if r.local == nil {
		return ""
	}
	for _, h := range r.local.Headers {
		if h[0] == name {
			return h[1]
		}
	}
	return ""
}

// harness is one started plugin.
type harness struct {
	t    testing.TB
	host proxytest.HostEmulator
}

// start starts the plugin with config on a fresh host and returns whether
// plugin start succeeded.
func start(t testing.TB, vm types.VMContext, config string) (*harness, types.OnPluginStartStatus) {
	t.Helper()
	opt := proxytest.NewEmulatorOption().
		WithVMContext(vm).
		WithPluginConfiguration([]byte(config)).
		WithProperty([]string{"source", "address"}, []byte(defaultSource)).
		WithProperty([]string{"plugin_root_id"}, []byte("test"))
	host, reset := proxytest.NewHostEmulator(opt)
	t.Cleanup(reset)
	if st := host.StartVM(); st != types.OnVMStartStatusOK {
		t.Fatalf("StartVM = %v", st)
	}
	return &harness{t: t, host: host}, host.StartPlugin()
}

func mustStart(t testing.TB, vm types.VMContext, config string) *harness {
	t.Helper()
	h, st := start(t, vm, config)
	if st != types.OnPluginStartStatusOK {
		t.Fatalf("StartPlugin = %v; logs: %q", st, h.host.GetCriticalLogs())
	}
	return h
}

// do runs one request through the request phase.
func (h *harness) do(r request) result {
	h.t.Helper()
	src := r.source
	if src == "" {
		src = defaultSource
	}
	if err := h.host.SetProperty([]string{"source", "address"}, []byte(src)); err != nil {
		h.t.Fatal(err)
	}
	method := r.method
	if method == "" {
		method = "GET"
	}
	headers := append([][2]string{
		{":method", method}, {":path", r.path}, {":authority", "example.com"}, {":scheme", "http"},
	}, r.headers...)
	id := h.host.InitializeHttpContext()
	noBody := r.body == nil && r.trailers == nil
	act := h.host.CallOnRequestHeaders(id, headers, noBody)
	if h.host.GetSentLocalResponse(id) == nil {
		for i, c := range r.body {
			last := i == len(r.body)-1 && r.trailers == nil
			act = h.host.CallOnRequestBody(id, []byte(c), last)
			if h.host.GetSentLocalResponse(id) != nil {
				break
			}
		}
	}
	if r.trailers != nil && h.host.GetSentLocalResponse(id) == nil {
		act = h.host.CallOnRequestTrailers(id, r.trailers)
	}
	res := result{action: act, local: h.host.GetSentLocalResponse(id)}
	h.host.CompleteHttpContext(id)
	return res
}

func (h *harness) counter(name string) uint64 {
	h.t.Helper()
	v, err := h.host.GetCounterMetric(name)
	if err != nil {
		h.t.Fatalf("counter %s: %v", name, err)
	}
	return v
}

func gzipped(s string) string {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.String()
}

var (
	formCT = [][2]string{{"content-type", "application/x-www-form-urlencoded"}}
	jsonCT = [][2]string{{"content-type", "application/json"}}
)

// blockTable is the seed configuration's table: each request from its own
// client so the rate limit stays out of the way.
var blockTable = []struct {
	name string
	req  request
	rule string // "" means the request passes
}{
	{"exe path", request{path: "/download/evil.exe"}, "block_patterns[0]"},
	{"exe path with query", request{path: "/download/evil.exe?x=1"}, "block_patterns[0]"},
	{"upper-case EXE", request{path: "/download/EVIL.EXE"}, "block_patterns[0]"},
	{"encoded dot", request{path: "/download/evil%2Eexe"}, "block_patterns[0]"},
	{"double-encoded dot", request{path: "/download/evil%252Eexe"}, "block_patterns[0]"},
	{"path params", request{path: "/download/evil.exe;jsessionid=1"}, "block_patterns[0]"},
	{"trailing slash", request{path: "/download/evil.exe/"}, "block_patterns[0]"},
	{"dot segments", request{path: "/download/x/../evil.dll"}, "block_patterns[0]"},
	{"backslash", request{path: "/download\\evil.bat"}, "block_patterns[0]"},
	{"NUL before a harmless extension", request{path: "/download/evil.exe%00.jpg"}, "block_patterns[0]"},
	{"script in query", request{path: "/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E"}, "block_patterns[1]"},
	{"script in query mixed case", request{path: "/search?q=<ScRiPt>alert(1)</sCrIpT>"}, "block_patterns[1]"},
	{"script in query double-encoded", request{path: "/search?q=%253Cscript%253Ex%253C%252Fscript%253E"}, "block_patterns[1]"},
	{"script in query with plus", request{path: "/search?q=<script+src=x>+</script>"}, "block_patterns[1]"},
	{"script in header", request{path: "/", headers: [][2]string{{"referer", "<script>alert(1)</script>"}}}, "block_patterns[1]"},
	{"encoded script in header", request{path: "/", headers: [][2]string{{"x-note", "%3Cscript%3Ex%3C/script%3E"}}}, "block_patterns[1]"},
	{"script in form body", request{method: "POST", path: "/comment", headers: formCT, body: []string{"msg=%3Cscript%3Ealert(1)%3C%2Fscript%3E"}}, "block_patterns[1]"},
	{"script in JSON body, escaped", request{method: "POST", path: "/api", headers: jsonCT, body: []string{`{"msg":"\u003cscript\u003ealert(1)\u003c/script\u003e"}`}}, "block_patterns[1]"},
	{"script split across chunks", request{method: "POST", path: "/comment", headers: formCT, body: []string{"msg=<scr", "ipt>alert(1)</scr", "ipt>"}}, "block_patterns[1]"},
	{"script in raw body with newline", request{method: "POST", path: "/upload", headers: [][2]string{{"content-type", "text/plain"}}, body: []string{"<script>\nalert(1)\n</script>"}}, "block_patterns[1]"},
	{"script in body before trailers", request{method: "POST", path: "/grpcish", headers: [][2]string{{"content-type", "text/plain"}}, body: []string{"<script>x</script>"}, trailers: [][2]string{{"grpc-status", "0"}}}, "block_patterns[1]"},
	{"script in gzip form body", request{method: "POST", path: "/comment", headers: append([][2]string{{"content-encoding", "gzip"}}, formCT...), body: []string{gzipped("msg=<script>alert(1)</script>")}}, "block_patterns[1]"},
	{"script in body claiming gzip", request{method: "POST", path: "/comment", headers: [][2]string{{"content-encoding", "gzip"}}, body: []string{"<script>alert(1)</script>"}}, "block_patterns[1]"},
	{"benign setup.exe.txt", request{path: "/setup.exe.txt"}, ""},
	{"benign scripting docs", request{path: "/docs/scripting"}, ""},
	{"benign </scripts>", request{path: "/search?q=</scripts>"}, ""},
	{"benign executive", request{path: "/team/executive"}, ""},
	{"benign JSON body", request{method: "POST", path: "/api", headers: jsonCT, body: []string{`{"msg":"hello","file":"notes.txt"}`}}, ""},
	{"benign form body", request{method: "POST", path: "/comment", headers: formCT, body: []string{"msg=I+like+scripting"}}, ""},
	{"benign root", request{path: "/"}, ""},
}

func TestSeedBlockTable(t *testing.T) {
	for _, r := range runners {
		t.Run(r.name, func(t *testing.T) {
			vm := r.vm(t)
			h := mustStart(t, vm, seed)
			blocked := 0
			for i, tt := range blockTable {
				req := tt.req
				req.source = "10.1.0." + strconv.Itoa(i+1) + ":1234"
				req.headers = append([][2]string{{"x-request-id", "req-" + strconv.Itoa(i)}}, req.headers...)
				res := h.do(req)
				if tt.rule == "" {
					if res.local != nil || res.action != types.ActionContinue {
						t.Errorf("%s: %s got %d, action %v; want it to pass", tt.name, req.path, res.status(), res.action)
					}
					continue
				}
				blocked++
				if res.status() != 403 || res.action != types.ActionPause {
					t.Errorf("%s: %s got status %d, action %v; want 403 and pause", tt.name, req.path, res.status(), res.action)
					continue
				}
				if got := res.header("x-wasmguard-rule"); got != tt.rule {
					t.Errorf("%s: x-wasmguard-rule = %q, want %q", tt.name, got, tt.rule)
				}
				var body struct {
					Error, Rule string
					RequestID   string `json:"request_id"`
				}
				if err := json.Unmarshal(res.local.Data, &body); err != nil || body.Rule != tt.rule || body.RequestID != "req-"+strconv.Itoa(i) {
					t.Errorf("%s: body %s (%v)", tt.name, res.local.Data, err)
				}
			}
			if got := h.counter(MetricBlocked); got != uint64(blocked) {
				t.Errorf("%s = %d, want %d", MetricBlocked, got, blocked)
			}
			if got := h.counter(MetricRequests); got != uint64(len(blockTable)) {
				t.Errorf("%s = %d, want %d", MetricRequests, got, len(blockTable))
			}
			if got := len(h.host.GetWarnLogs()); got != blocked {
				t.Errorf("%d decision log lines, want one per blocked request (%d)", got, blocked)
			}
		})
	}
}

// The 21st quick request from one client is limited; another client still
// passes. The wasm half's clock is proxytest's fake one (1 ms per read), so
// its assertions hold for any small elapsed time: 20 requests need 12 s of
// refill to earn a 21st token.
func TestSeedRateLimit(t *testing.T) {
	for _, r := range runners {
		t.Run(r.name, func(t *testing.T) {
			h := mustStart(t, r.vm(t), seed)
			for i := 1; i <= 20; i++ {
				if res := h.do(request{path: "/index.html"}); res.local != nil {
					t.Fatalf("request %d: got %d, want it to pass", i, res.status())
				}
			}
			res := h.do(request{path: "/index.html"})
			if res.status() != 429 {
				t.Fatalf("21st request: status %d, want 429", res.status())
			}
			ra, err := strconv.Atoi(res.header("retry-after"))
			if err != nil || ra < 1 {
				t.Errorf("retry-after = %q, want whole seconds ≥ 1", res.header("retry-after"))
			}
			if res.header("x-ratelimit-limit") != "20" || res.header("x-ratelimit-remaining") != "0" {
				t.Errorf("x-ratelimit-limit/remaining = %q/%q, want 20/0", res.header("x-ratelimit-limit"), res.header("x-ratelimit-remaining"))
			}
			var body struct {
				Error      string
				RetryAfter int `json:"retry_after"`
			}
			if err := json.Unmarshal(res.local.Data, &body); err != nil || body.Error != "rate limited" || body.RetryAfter != ra {
				t.Errorf("body %s (%v)", res.local.Data, err)
			}
			if res := h.do(request{path: "/index.html", source: "10.9.9.9:1"}); res.local != nil {
				t.Errorf("another client: got %d, want it to pass", res.status())
			}
			if got := h.counter(MetricRateLimited); got != 1 {
				t.Errorf("%s = %d, want 1", MetricRateLimited, got)
			}
			// Rate limiting comes before patterns: the limited client is
			// answered 429 even for a path a pattern would block.
			if res := h.do(request{path: "/evil.exe"}); res.status() != 429 {
				t.Errorf("limited client, blocked path: status %d, want 429", res.status())
			}
		})
	}
}

func TestMonitorMode(t *testing.T) {
	cfg := `{"mode": "monitor", "block_patterns": [".*\\.(exe|dll|scr|bat)$", ".*<script.*>.*</script>.*"],
		"rate_limit": {"requests_per_minute": 1, "burst": 1}}`
	for _, r := range runners {
		t.Run(r.name, func(t *testing.T) {
			h := mustStart(t, r.vm(t), cfg)
			reqs := []request{
				{path: "/evil.exe"},               // would block (and takes the only token)
				{path: "/ok"},                     // would rate-limit
				{path: "/x?q=<script>1</script>"}, // would rate-limit and would block
				{method: "POST", path: "/f", headers: formCT, body: []string{"a=<script>1</script>"}},
			}
			for i, req := range reqs {
				if res := h.do(req); res.local != nil || res.action != types.ActionContinue {
					t.Errorf("request %d %s: status %d, action %v; monitor mode must let it through", i, req.path, res.status(), res.action)
				}
			}
			// 1 + 1 + 2 + 2 would-be decisions.
			if got := h.counter(MetricMonitored); got != 6 {
				t.Errorf("%s = %d, want 6", MetricMonitored, got)
			}
			if b, l := h.counter(MetricBlocked), h.counter(MetricRateLimited); b != 0 || l != 0 {
				t.Errorf("blocked=%d rate_limited=%d in monitor mode, want 0", b, l)
			}
			logs := strings.Join(h.host.GetWarnLogs(), "\n")
			if !strings.Contains(logs, "action=would_block") || !strings.Contains(logs, "action=would_rate_limit") {
				t.Errorf("logs lack would_* decisions:\n%s", logs)
			}
		})
	}
}

func TestBadConfigurationRefused(t *testing.T) {
	for _, r := range runners {
		t.Run(r.name, func(t *testing.T) {
			h, st := start(t, r.vm(t), `{"block_patterns": ["ok", "("]}`)
			if st != types.OnPluginStartStatusFailed {
				t.Fatalf("StartPlugin = %v, want failed", st)
			}
			logs := h.host.GetCriticalLogs()
			want := `wasmguard: configuration refused: block_patterns[1]: invalid regex "(": missing closing )`
			if len(logs) != 1 || logs[0] != want {
				t.Errorf("critical logs = %q\nwant [%q]", logs, want)
			}
		})
	}
}

func TestBodyOptions(t *testing.T) {
	payload := "<script>alert(1)</script>"
	for _, r := range runners {
		t.Run(r.name, func(t *testing.T) {
			h := mustStart(t, r.vm(t), `{"block_patterns": [{"id": "xss", "pattern": "<script>.*</script>"}], "max_body_bytes": 32, "deny_status": 451}`)
			// The payload lies beyond the 32 inspected bytes: decided on
			// the prefix, counted, let through.
			res := h.do(request{method: "POST", path: "/", headers: [][2]string{{"content-type", "text/plain"}}, body: []string{strings.Repeat(" ", 32), payload}})
			if res.local != nil || res.action != types.ActionContinue {
				t.Errorf("payload past max_body_bytes: status %d action %v, want pass", res.status(), res.action)
			}
			if got := h.counter(MetricBodyTruncated); got != 1 {
				t.Errorf("%s = %d, want 1", MetricBodyTruncated, got)
			}
			// Within the limit it is blocked with deny_status, and the
			// body is held until it is complete. The headers go on: Envoy
			// gives no body to a plugin that holds them.
			id := h.host.InitializeHttpContext()
			hdrs := [][2]string{{":method", "POST"}, {":path", "/"}, {"content-type", "text/plain"}}
			if act := h.host.CallOnRequestHeaders(id, hdrs, false); act != types.ActionContinue {
				t.Errorf("headers with a body to inspect: action %v, want continue", act)
			}
			if act := h.host.CallOnRequestBody(id, []byte("<script>a"), false); act != types.ActionPause {
				t.Errorf("first chunk: action %v, want pause", act)
			}
			h.host.CallOnRequestBody(id, []byte("</script>"), true)
			if lr := h.host.GetSentLocalResponse(id); lr == nil || lr.StatusCode != 451 {
				t.Errorf("blocked body: local response %+v, want 451", lr)
			}
		})
	}
}

func TestNoBodyInspection(t *testing.T) {
	for _, r := range runners {
		t.Run(r.name, func(t *testing.T) {
			h := mustStart(t, r.vm(t), `{"block_patterns": [{"pattern": "<script>", "targets": ["path", "query"]}]}`)
			id := h.host.InitializeHttpContext()
			hdrs := [][2]string{{":method", "POST"}, {":path", "/"}, {"content-type", "text/plain"}}
			if act := h.host.CallOnRequestHeaders(id, hdrs, false); act != types.ActionContinue {
				t.Errorf("no pattern targets the body: headers action %v, want continue (no buffering)", act)
			}
		})
	}
}

// Buckets keyed by a header, and by the client behind a trusted proxy.
// (proxytest allows one host at a time: one mustStart per test.)
func TestHeaderKey(t *testing.T) {
	for _, r := range runners {
		t.Run(r.name, func(t *testing.T) {
			h := mustStart(t, r.vm(t), `{"rate_limit": {"requests_per_minute": 1, "burst": 1, "key": "header:x-api-key"}}`)
			a := [][2]string{{"x-api-key", "alice"}}
			if res := h.do(request{path: "/", headers: a}); res.local != nil {
				t.Fatalf("alice's first request: %d", res.status())
			}
			if res := h.do(request{path: "/", headers: a, source: "10.2.2.2:1"}); res.status() != 429 {
				t.Errorf("alice from another address: %d, want 429 (keyed by header)", res.status())
			}
			if res := h.do(request{path: "/", headers: [][2]string{{"x-api-key", "bob"}}}); res.local != nil {
				t.Errorf("bob: %d, want pass", res.status())
			}
		})
	}
}

func TestXFFTrustedHops(t *testing.T) {
	for _, r := range runners {
		t.Run(r.name, func(t *testing.T) {
			h := mustStart(t, r.vm(t), `{"rate_limit": {"requests_per_minute": 1, "burst": 1, "xff_trusted_hops": 1}}`)
			xff := func(v string) [][2]string { return [][2]string{{"x-forwarded-for", v}} }
			if res := h.do(request{path: "/", headers: xff("1.1.1.1, 203.0.113.7")}); res.local != nil {
				t.Fatalf("first: %d", res.status())
			}
			// Same trusted entry, different spoofed left part: same client.
			if res := h.do(request{path: "/", headers: xff("9.9.9.9, 203.0.113.7")}); res.status() != 429 {
				t.Errorf("same client behind the trusted hop: %d, want 429", res.status())
			}
			if res := h.do(request{path: "/", headers: xff("203.0.113.8")}); res.local != nil {
				t.Errorf("another client: %d, want pass", res.status())
			}
			// As Envoy passes it with use_remote_address: the peer (the
			// trusted load balancer, also source.address) appended.
			lb := "192.0.2.10:443"
			if res := h.do(request{path: "/", headers: xff("198.51.100.1, 192.0.2.10"), source: lb}); res.local != nil {
				t.Errorf("client behind the LB: %d, want pass", res.status())
			}
			if res := h.do(request{path: "/", headers: xff("198.51.100.2, 192.0.2.10"), source: lb}); res.local != nil {
				t.Errorf("second client behind the LB: %d, want pass (keyed by client, not by the LB)", res.status())
			}
			if res := h.do(request{path: "/", headers: xff("198.51.100.1, 192.0.2.10"), source: lb}); res.status() != 429 {
				t.Errorf("first client again: %d, want 429", res.status())
			}
		})
	}
}

// A clock that goes back (the native half controls it) refills nothing.
func TestRefillWithClock(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cur := t0
	now = func() time.Time { return cur }
	defer func() { now = time.Now }()
	h := mustStart(t, &vmContext{}, seed)
	for i := 0; i < 20; i++ {
		h.do(request{path: "/"})
	}
	if res := h.do(request{path: "/"}); res.status() != 429 || res.header("retry-after") != "1" {
		t.Fatalf("21st: %d retry-after %q, want 429 and 1 s (100/min = one token per 0.6 s)", res.status(), res.header("retry-after"))
	}
	cur = t0.Add(-time.Hour)
	if res := h.do(request{path: "/"}); res.status() != 429 {
		t.Errorf("clock back an hour: %d, want 429 (going back refills nothing)", res.status())
	}
	cur = t0.Add(600 * time.Millisecond)
	if res := h.do(request{path: "/"}); res.local != nil {
		t.Errorf("0.6 s later: %d, want pass (one token refilled)", res.status())
	}
}

// Response headers of an allowed request carry the bucket's state.
func TestRateLimitResponseHeaders(t *testing.T) {
	for _, r := range runners {
		t.Run(r.name, func(t *testing.T) {
			h := mustStart(t, r.vm(t), seed)
			id := h.host.InitializeHttpContext()
			h.host.CallOnRequestHeaders(id, [][2]string{{":method", "GET"}, {":path", "/"}}, true)
			h.host.CallOnResponseHeaders(id, [][2]string{{":status", "200"}}, true)
			got := map[string]string{}
			for _, kv := range h.host.GetCurrentResponseHeaders(id) {
				got[kv[0]] = kv[1]
			}
			if got["x-ratelimit-limit"] != "20" || got["x-ratelimit-remaining"] != "19" {
				t.Errorf("response headers %v, want x-ratelimit-limit 20 and remaining 19", got)
			}
		})
	}
}

// A log line cannot be forged: control characters in the path are escaped.
func TestLogLineEscaping(t *testing.T) {
	h := mustStart(t, &vmContext{}, seed)
	h.do(request{path: "/x\n[critical] forged/a.exe", headers: [][2]string{{"x-request-id", "id\r\nx"}}})
	logs := h.host.GetWarnLogs()
	if len(logs) != 1 {
		t.Fatalf("logs = %q, want one line", logs)
	}
	for _, want := range []string{`action=block`, `rule=block_patterns[0]`, `target=path`, `method="GET"`, `path="/x\n[critical] forged/a.exe"`, `client="ip:10.0.0.1"`, `request_id="id\r\nx"`} {
		if !strings.Contains(logs[0], want) {
			t.Errorf("log line %q lacks %s", logs[0], want)
		}
	}
	if strings.ContainsAny(logs[0], "\r\n") {
		t.Errorf("log line has a raw line break: %q", logs[0])
	}
}

// An internal error (here: a panic from the clock, natively) follows
// on_error, is counted and logged, and never escapes the callback. Monitor
// mode lets the request through whatever on_error says.
func TestOnError(t *testing.T) {
	now = func() time.Time { panic("clock exploded") }
	defer func() { now = time.Now }()
	tests := []struct {
		name, config string
		status       int
	}{
		{"deny", `{"rate_limit": {"requests_per_minute": 60}}`, 500},
		{"allow", `{"on_error": "allow", "rate_limit": {"requests_per_minute": 60}}`, 0},
		{"monitor", `{"mode": "monitor", "rate_limit": {"requests_per_minute": 60}}`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := mustStart(t, &vmContext{}, tt.config)
			res := h.do(request{path: "/", headers: [][2]string{{"x-request-id", "r1"}}})
			if res.status() != tt.status {
				t.Fatalf("status %d, want %d", res.status(), tt.status)
			}
			if tt.status == 0 && res.action != types.ActionContinue {
				t.Errorf("action %v, want continue", res.action)
			}
			if tt.status == 500 && string(res.local.Data) != `{"error":"internal error","request_id":"r1"}`+"\n" {
				t.Errorf("body %s", res.local.Data)
			}
			if got := h.counter(MetricErrors); got != 1 {
				t.Errorf("%s = %d, want 1", MetricErrors, got)
			}
			logs := h.host.GetErrorLogs()
			if len(logs) != 1 || !strings.Contains(logs[0], `error="panic: clock exploded"`) {
				t.Errorf("error logs %q, want one line with the panic", logs)
			}
		})
	}
}

// Streams are not held for their body: their client waits for the server.
func TestStreamsNotHeld(t *testing.T) {
	for _, r := range runners {
		t.Run(r.name, func(t *testing.T) {
			h := mustStart(t, r.vm(t), seed)
			for i, extra := range [][][2]string{
				{{":method", "GET"}, {"upgrade", "websocket"}, {"connection", "upgrade"}},
				{{":method", "CONNECT"}},
				{{":method", "POST"}, {"content-type", "application/grpc+proto"}},
			} {
				id := h.host.InitializeHttpContext()
				hdrs := append([][2]string{{":path", "/chat"}}, extra...)
				if act := h.host.CallOnRequestHeaders(id, hdrs, false); act != types.ActionContinue {
					t.Errorf("stream %d %v: action %v, want continue", i, extra, act)
				}
			}
		})
	}
}

// A local reply keeps its own headers: the x-ratelimit-* of an allowed
// request are not added to a 403, and a 429 keeps remaining 0.
func TestLocalReplyHeaders(t *testing.T) {
	for _, r := range runners {
		t.Run(r.name, func(t *testing.T) {
			h := mustStart(t, r.vm(t), seed)
			id := h.host.InitializeHttpContext()
			h.host.CallOnRequestHeaders(id, [][2]string{{":method", "GET"}, {":path", "/evil.exe"}}, true)
			if lr := h.host.GetSentLocalResponse(id); lr == nil || lr.StatusCode != 403 {
				t.Fatalf("local response %+v, want 403", lr)
			}
			h.host.CallOnResponseHeaders(id, [][2]string{{":status", "403"}}, false)
			for _, kv := range h.host.GetCurrentResponseHeaders(id) {
				if strings.HasPrefix(kv[0], "x-ratelimit-") {
					t.Errorf("403 got %s: %s", kv[0], kv[1])
				}
			}
		})
	}
}

// hold_headers (Envoy ≥ 1.35 with allow_on_headers_stop_iteration) holds
// the headers too until the body's verdict.
func TestHoldHeaders(t *testing.T) {
	for _, r := range runners {
		t.Run(r.name, func(t *testing.T) {
			h := mustStart(t, r.vm(t), `{"hold_headers": true, "block_patterns": ["<script>"]}`)
			id := h.host.InitializeHttpContext()
			hdrs := [][2]string{{":method", "POST"}, {":path", "/"}, {"content-type", "text/plain"}}
			if act := h.host.CallOnRequestHeaders(id, hdrs, false); act != types.ActionPause {
				t.Errorf("headers: action %v, want pause", act)
			}
			if act := h.host.CallOnRequestBody(id, []byte("fine"), true); act != types.ActionContinue {
				t.Errorf("benign body: action %v, want continue", act)
			}
			id = h.host.InitializeHttpContext()
			if act := h.host.CallOnRequestHeaders(id, hdrs, true); act != types.ActionContinue {
				t.Errorf("no body: action %v, want continue", act)
			}
		})
	}
}
