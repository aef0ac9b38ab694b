package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// req builds a request whose x-test header drives the test plugin.
func req(xtest string, body ...string) Request {
	r := Request{RequestHead: RequestHead{
		Method: "POST", Path: "/p?q=1", Authority: "example.com",
		Headers: [][2]string{{"X-Test", xtest}, {"User-Agent", "test-agent"}},
	}}
	for _, b := range body {
		r.Body = append(r.Body, []byte(b))
	}
	return r
}

// upstreamOK answers 200 "ok".
func upstreamOK(context.Context, Verdict) (Response, error) {
	return Response{Status: 200, Headers: [][2]string{{"Content-Type", "text/plain"}}, Body: [][]byte{[]byte("ok")}}, nil
}

func exchange(t *testing.T, h *Host, r Request) (fwd, client Verdict) {
	t.Helper()
	fwd, client, err := h.Exchange(context.Background(), StreamInfo{SourceAddress: "10.1.2.3:4567"}, r, upstreamOK)
	if err != nil {
		t.Fatalf("Exchange(x-test %q): %v", xtestOf(r), err)
	}
	return fwd, client
}

func xtestOf(r Request) string { v, _ := HeaderValue(r.Headers, "x-test"); return v }

func header(t *testing.T, h [][2]string, name string) string {
	t.Helper()
	v, ok := HeaderValue(h, name)
	if !ok {
		t.Fatalf("no header %q in %v", name, h)
	}
	return v
}

func TestStartAndRefusedConfiguration(t *testing.T) {
	h, sink := newTestHost(t, testPlugin, Options{Workers: 2, VMConfig: []byte("vm-cfg"), PluginConfig: []byte("ok")})
	if got := len(h.VMStates()); got != 2 {
		t.Fatalf("%d workers, want 2", got)
	}
	for _, want := range []string{"vm config: vm-cfg", "plugin started: ok"} {
		if _, ok := sink.find(want); !ok {
			t.Errorf("no log line %q in:\n%s", want, sink)
		}
	}

	refused, err := New(context.Background(), testPlugin, Options{PluginConfig: []byte("fail"), Logger: func(LogRecord) {}})
	if refused != nil {
		defer refused.Close(context.Background())
	}
	var se *StartError
	if !errors.As(err, &se) {
		t.Fatalf("New with a refused configuration: %v, want a *StartError", err)
	}
	if se.Phase != "proxy_on_configure" || len(se.Logs) != 1 || se.Logs[0] != "config rejected: fail requested" {
		t.Fatalf("StartError = %+v, want phase proxy_on_configure and the plugin's one error line", se)
	}
	if !strings.Contains(err.Error(), "config rejected: fail requested") {
		t.Errorf("error %q does not show the plugin's line", err)
	}

	// Options.LogLevel drops lower lines but not the StartError's.
	quiet := &logSink{}
	refusedQuietly, err := New(context.Background(), testPlugin, Options{PluginConfig: []byte("fail"), LogLevel: LogCritical, Logger: quiet.log})
	if refusedQuietly != nil {
		defer refusedQuietly.Close(context.Background())
	}
	if !errors.As(err, &se) || len(se.Logs) != 1 {
		t.Fatalf("quiet New: %v, want the plugin's error line in the StartError", err)
	}
	if r, ok := quiet.find("config rejected"); ok {
		t.Errorf("an error line reached a Logger set to critical: %v", r)
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, c := range []struct {
		opts Options
		want string
	}{
		{Options{Workers: MaxWorkers + 1}, "Options.Workers = 257: want 1..256"},
		{Options{Workers: -1}, "Options.Workers = -1"},
		{Options{Profile: 7}, "Options.Profile = 7"},
		{Options{FailurePolicy: 9}, "Options.FailurePolicy = 9"},
		{Options{ReloadBackoff: -time.Second}, "Options.ReloadBackoff = -1s"},
		{Options{BufferLimit: MaxBufferLimit + 1}, "Options.BufferLimit"},
		{Options{LogLevel: 6}, "Options.LogLevel = 6"},
		{Options{VMConfig: make([]byte, MaxConfigBytes+1)}, "Options.VMConfig is 16777217 bytes"},
		{Options{PluginConfig: make([]byte, MaxConfigBytes+1)}, "Options.PluginConfig is 16777217 bytes"},
	} {
		h, err := New(context.Background(), newTiny().bytes(), c.opts)
		if h != nil {
			h.Close(context.Background())
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v): %v, want an error containing %q", c.want, err, c.want)
		}
	}
	// The edges themselves are accepted.
	h, _ := newTestHost(t, newTiny().bytes(), Options{Workers: MaxWorkers, BufferLimit: MaxBufferLimit,
		VMConfig: make([]byte, MaxConfigBytes), PluginConfig: make([]byte, MaxConfigBytes)})
	if h.Workers() != MaxWorkers {
		t.Fatalf("Workers() = %d, want %d", h.Workers(), MaxWorkers)
	}
	if h, err := New(context.Background(), nil, Options{}); err == nil {
		h.Close(context.Background())
		t.Error("New(nil wasm) succeeded")
	}
}

func TestParseNames(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
	}{{"envoy-1.33", "envoy-1.33"}, {"1.39", "envoy-1.39"}, {"ENVOY-1.39", "envoy-1.39"}} {
		p, err := ParseProfile(c.in)
		if err != nil || p.String() != c.want {
			t.Errorf("ParseProfile(%q) = %v, %v; want %s", c.in, p, err, c.want)
		}
	}
	if _, err := ParseProfile("1.20"); err == nil {
		t.Error("ParseProfile(1.20) succeeded")
	}
	for _, c := range []struct{ in, want string }{{"fail_closed", "fail_closed"}, {"fail-open", "fail_open"}, {"reload", "reload"}} {
		p, err := ParseFailurePolicy(c.in)
		if err != nil || p.String() != c.want {
			t.Errorf("ParseFailurePolicy(%q) = %v, %v; want %s", c.in, p, err, c.want)
		}
	}
	if _, err := ParseFailurePolicy("maybe"); err == nil {
		t.Error("ParseFailurePolicy(maybe) succeeded")
	}
	for _, c := range []struct {
		in   string
		want LogLevel
	}{{"trace", LogTrace}, {"warn", LogWarn}, {"Warning", LogWarn}, {"critical", LogCritical}} {
		l, err := ParseLogLevel(c.in)
		if err != nil || l != c.want {
			t.Errorf("ParseLogLevel(%q) = %v, %v; want %v", c.in, l, err, c.want)
		}
	}
	if _, err := ParseLogLevel("loud"); err == nil {
		t.Error("ParseLogLevel(loud) succeeded")
	}
}

func TestPassThroughAndRequestID(t *testing.T) {
	h, _ := newTestHost(t, testPlugin, Options{})
	fwd, client := exchange(t, h, req("", "hello ", "world"))
	for name, want := range map[string]string{
		":method": "POST", ":path": "/p?q=1", ":authority": "example.com", ":scheme": "http",
		"user-agent": "test-agent",
	} {
		if got := header(t, fwd.Headers, name); got != want {
			t.Errorf("forwarded %s = %q, want %q", name, got, want)
		}
	}
	if id := header(t, fwd.Headers, "x-request-id"); !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(id) {
		t.Errorf("added x-request-id %q is not a version 4 UUID", id)
	}
	if string(fwd.Body) != "hello world" {
		t.Errorf("forwarded body %q, want \"hello world\"", fwd.Body)
	}
	if client.Status() != 200 || string(client.Body) != "ok" || header(t, client.Headers, "x-seen-by-plugin") != "1" {
		t.Errorf("client got %+v, want the upstream's 200 \"ok\" tagged by the plugin", client)
	}

	r := req("")
	r.Headers = append(r.Headers, [2]string{"X-Request-Id", "given"}, [2]string{"Host", "ignored.example"})
	fwd, _ = exchange(t, h, r)
	if got := header(t, fwd.Headers, "x-request-id"); got != "given" {
		t.Errorf("x-request-id %q, want the client's \"given\"", got)
	}
	if n := strings.Count(fmt.Sprint(fwd.Headers), "x-request-id"); n != 1 {
		t.Errorf("%d x-request-id headers, want 1", n)
	}
	if _, ok := HeaderValue(fwd.Headers, "host"); ok {
		t.Error("host header forwarded; Envoy folds it into :authority")
	}

	// Trailers both ways.
	r = req("", "b")
	r.Trailers = [][2]string{{"X-Checksum", "abc"}}
	fwd, client, err := h.Exchange(context.Background(), StreamInfo{}, r, func(context.Context, Verdict) (Response, error) {
		return Response{Status: 200, Body: [][]byte{[]byte("x")}, Trailers: [][2]string{{"Grpc-Status", "0"}}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(fwd.Trailers) != "[[x-checksum abc]]" || string(fwd.Body) != "b" {
		t.Errorf("forwarded body %q trailers %v, want \"b\" and [[x-checksum abc]]", fwd.Body, fwd.Trailers)
	}
	if fmt.Sprint(client.Trailers) != "[[grpc-status 0]]" || string(client.Body) != "x" {
		t.Errorf("client body %q trailers %v, want \"x\" and [[grpc-status 0]]", client.Body, client.Trailers)
	}
}

func TestLocalResponse(t *testing.T) {
	h, _ := newTestHost(t, testPlugin, Options{})
	for _, xtest := range []string{"deny", "denycont"} {
		t.Run(xtest, func(t *testing.T) {
			s, err := h.NewStream(StreamInfo{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			r := req(xtest)
			st, err := s.RequestHeaders(r.RequestHead, false)
			if err != nil {
				t.Fatal(err)
			}
			if st.Action != LocalReply || st.Local == nil {
				t.Fatalf("RequestHeaders: %+v, want a local reply", st)
			}
			lr := st.Local
			if lr.Status != 403 || string(lr.Body) != "denied" || lr.GrpcStatus != -1 {
				t.Errorf("local reply %+v, want 403 \"denied\" without gRPC status", lr)
			}
			want := [][2]string{{"x-denied", "1"}, {"content-length", "6"}, {"content-type", "text/plain"}, {"x-seen-by-plugin", "1"}}
			if fmt.Sprint(lr.Headers) != fmt.Sprint(want) {
				t.Errorf("local reply headers %v, want %v (plugin's, then Envoy's, then the plugin's response callback)", lr.Headers, want)
			}
			if st.Headers != nil || len(st.Body) > 0 {
				t.Errorf("the local reply released request data: %+v", st)
			}
			// Later callbacks of the request are not called.
			if _, err := s.RequestBody([]byte("x"), true); !errors.Is(err, ErrStreamEnded) {
				t.Errorf("RequestBody after a local reply: %v, want ErrStreamEnded", err)
			}
			if _, err := s.ResponseHeaders(200, nil, true); !errors.Is(err, ErrStreamEnded) {
				t.Errorf("ResponseHeaders after a local reply: %v, want ErrStreamEnded", err)
			}
		})
	}
	t.Run("from the response phase", func(t *testing.T) {
		fwd, client := exchange(t, h, req("denyresponse"))
		if fwd.Headers == nil {
			t.Fatal("the request was not forwarded")
		}
		if client.Local == nil || client.Local.Status != 502 || string(client.Local.Body) != "bad upstream" {
			t.Fatalf("client got %+v, want the plugin's 502 \"bad upstream\"", client)
		}
		if _, ok := HeaderValue(client.Local.Headers, "x-seen-by-plugin"); ok {
			t.Error("a local reply sent while encoding went through the plugin again; Envoy sends it directly")
		}
	})
	if v, _ := h.Stat("wasmhost.streams.local_replies"); v != 3 {
		t.Errorf("local_replies = %d, want 3", v)
	}
}

// TestPauseBuffersBody holds a body in the body callback until its end,
// both ways a plugin can: holding the headers too ("pausebody", which
// needs Options.AllowOnHeadersStopIteration, Envoy's
// allow_on_headers_stop_iteration) or letting them go first ("holdbody",
// what works in Envoy by default).
func TestPauseBuffersBody(t *testing.T) {
	allow, sink := newTestHost(t, testPlugin, Options{AllowOnHeadersStopIteration: true})
	def, defSink := newTestHost(t, testPlugin, Options{})
	t.Run("step by step, headers held (allow_on_headers_stop_iteration)", func(t *testing.T) {
		s, _ := allow.NewStream(StreamInfo{})
		defer s.Close()
		r := req("pausebody,bodysizes")
		steps := []func() (Step, error){
			func() (Step, error) { return s.RequestHeaders(r.RequestHead, false) },
			func() (Step, error) { return s.RequestBody([]byte("ab"), false) },
			func() (Step, error) { return s.RequestBody([]byte("cd"), false) },
			func() (Step, error) { return s.RequestBody([]byte("ef"), true) },
		}
		for i, step := range steps[:3] {
			st, err := step()
			if err != nil || st.Action != Pause || st.Headers != nil || len(st.Body) > 0 {
				t.Fatalf("step %d: %+v, %v; want a pause releasing nothing", i, st, err)
			}
		}
		st, err := steps[3]()
		if err != nil || st.Action != Continue || !st.EndOfStream || string(st.Body) != "abcdef" {
			t.Fatalf("last chunk: %+v, %v; want the whole body released with the end of stream", st, err)
		}
		// The plugin saw the buffered size grow (Envoy passes the total)
		// and could still edit the held headers.
		if got := header(t, st.Headers, "x-body-sizes"); got != "2;4;6;" {
			t.Errorf("body sizes seen by the plugin %q, want \"2;4;6;\"", got)
		}
		if got := header(t, st.Headers, "x-body-size"); got != "6" {
			t.Errorf("x-body-size %q, want 6", got)
		}
	})
	t.Run("step by step, headers gone (Envoy's default)", func(t *testing.T) {
		s, _ := def.NewStream(StreamInfo{})
		defer s.Close()
		r := req("holdbody,bodylog")
		st, err := s.RequestHeaders(r.RequestHead, false)
		if err != nil || st.Action != Continue || st.Headers == nil {
			t.Fatalf("headers: %+v, %v; want them released", st, err)
		}
		for i, c := range []string{"ab", "cd"} {
			if st, err := s.RequestBody([]byte(c), false); err != nil || st.Action != Pause || len(st.Body) > 0 {
				t.Fatalf("chunk %d: %+v, %v; want a pause releasing nothing", i, st, err)
			}
		}
		st, err = s.RequestBody([]byte("ef"), true)
		if err != nil || st.Action != Continue || !st.EndOfStream || string(st.Body) != "abcdef" || st.Headers != nil {
			t.Fatalf("last chunk: %+v, %v; want the whole body and the end of stream", st, err)
		}
		want := []string{"request body size=2 end=false", "request body size=4 end=false", "request body size=6 end=true"}
		if got := callbackLog(defSink); !equalStrings(got, want) {
			t.Errorf("body callbacks %q, want %q", got, want)
		}
	})
	for _, m := range []struct {
		name  string
		h     *Host
		xtest string
	}{
		{"headers held", allow, "pausebody"},
		{"headers gone", def, "holdbody"},
	} {
		t.Run("payload split across chunks is blocked, "+m.name, func(t *testing.T) {
			_, client := exchange(t, m.h, req(m.xtest, "an ev", "il body"))
			if client.Local == nil || client.Local.Status != 403 || string(client.Local.Body) != "blocked" {
				t.Fatalf("client got %+v, want 403 blocked", client)
			}
		})
		t.Run("body rewritten, "+m.name, func(t *testing.T) {
			fwd, _ := exchange(t, m.h, req(m.xtest+",rewritebody", "one", "two"))
			if string(fwd.Body) != "rewritten" {
				t.Fatalf("forwarded body %q, want \"rewritten\"", fwd.Body)
			}
		})
	}
	t.Run("streaming without pause", func(t *testing.T) {
		s, _ := allow.NewStream(StreamInfo{})
		defer s.Close()
		r := req("bodysizes")
		st, _ := s.RequestHeaders(r.RequestHead, false)
		if st.Action != Continue || st.Headers == nil {
			t.Fatalf("headers: %+v, want them released", st)
		}
		for i, c := range []string{"ab", "cd"} {
			st, err := s.RequestBody([]byte(c), i == 1)
			if err != nil || st.Action != Continue || string(st.Body) != c {
				t.Fatalf("chunk %d: %+v, %v; want it released as is", i, st, err)
			}
		}
		// Once continued, headers are read-only, as in Envoy.
		if _, ok := sink.find("body sizes: error status returned by host: bad argument"); !ok {
			t.Errorf("editing released headers did not fail with BadArgument; logs:\n%s", sink)
		}
	})
}

// callbackLog returns the "bodylog" lines of the test plugin: its body
// and trailers callbacks, in order.
func callbackLog(sink *logSink) []string {
	var out []string
	for _, r := range sink.records() {
		for _, p := range []string{"request body ", "request trailers ", "response body ", "response trailers "} {
			if strings.HasPrefix(r.Message, p) {
				out = append(out, r.Message)
			}
		}
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// BufferLimit bounds a body the plugin buffers in its body callback,
// whether it held the headers too or not.
func TestBufferLimit(t *testing.T) {
	for _, m := range []struct {
		name  string
		opts  Options
		xtest string
	}{
		{"headers held", Options{BufferLimit: 8, AllowOnHeadersStopIteration: true}, "pausebody"},
		{"headers gone", Options{BufferLimit: 8}, "holdbody"},
	} {
		t.Run(m.name, func(t *testing.T) {
			h, _ := newTestHost(t, testPlugin, m.opts)
			fwd, client := exchange(t, h, req(m.xtest, "1234", "5678"))
			if client.Local != nil || string(fwd.Body) != "12345678" {
				t.Fatalf("a body of exactly BufferLimit: client %+v, forwarded %q; want it through", client.Local, fwd.Body)
			}
			_, client = exchange(t, h, req(m.xtest, "1234", "56789"))
			if client.Local == nil || client.Local.Status != 413 || client.Local.Details != DetailsRequestTooLarge {
				t.Fatalf("a body one byte over BufferLimit: client %+v, want 413 %s", client.Local, DetailsRequestTooLarge)
			}
		})
	}
}

func TestProperties(t *testing.T) {
	h, _ := newTestHost(t, testPlugin, Options{PluginName: "sec", RootID: "root-1", VMID: "vm-1"})
	r := req("props")
	r.Path = "/a/b?x=1"
	fwd, _ := exchange(t, h, r)
	id := header(t, fwd.Headers, "x-request-id")
	for prop, want := range map[string]string{
		"source.address":             "10.1.2.3:4567",
		"source.port":                "4567/8",
		"request.path":               "/a/b?x=1",
		"request.url_path":           "/a/b",
		"request.query":              "x=1",
		"request.method":             "POST",
		"request.host":               "example.com",
		"request.scheme":             "http",
		"request.id":                 id,
		"request.protocol":           "HTTP/1.1",
		"plugin_name":                "sec",
		"plugin_root_id":             "root-1",
		"plugin_vm_id":               "vm-1",
		"request.headers.user-agent": "test-agent",
		"no_such.thing":              "error: error status returned by host: not found",
	} {
		if got := header(t, fwd.Headers, "x-prop-"+prop); got != want {
			t.Errorf("property %s = %q, want %q", prop, got, want)
		}
	}
	if got := header(t, fwd.Headers, "x-prop-headers-map"); !strings.HasPrefix(got, ":authority :path :method :scheme x-test user-agent x-request-id") {
		t.Errorf("request.headers map keys %q", got)
	}
}

func TestMetricsSharedAcrossWorkers(t *testing.T) {
	h, _ := newTestHost(t, testPlugin, Options{Workers: 4})
	seen := map[int]bool{}
	for i := 0; i < 8; i++ {
		s, _ := h.NewStream(StreamInfo{})
		seen[s.Worker()] = true
		if _, err := s.ProcessRequest(context.Background(), req("metrics")); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	if len(seen) != 4 {
		t.Fatalf("streams ran on workers %v, want all 4", seen)
	}
	for name, want := range map[string]int64{
		"test.requests": 8, "test.gauge": 24, "test.hist.count": 8, "test.hist.sum": 56,
		"wasmhost.vm.created": 4,
	} {
		if got, ok := h.Stat(name); !ok || got != want {
			t.Errorf("stat %s = %d (present %v), want %d", name, got, ok, want)
		}
	}
	var b strings.Builder
	if err := h.WriteStats(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "\ntest.requests: 8\n") {
		t.Errorf("stats text lacks \"test.requests: 8\":\n%s", b.String())
	}
}

// Each request adds 1 to a shared counter with a CAS retry loop; K
// concurrent requests over 4 workers must leave exactly K.
func TestSharedDataCASAcrossWorkers(t *testing.T) {
	const k, clients = 200, 8
	h, _ := newTestHost(t, testPlugin, Options{Workers: 4})
	var wg sync.WaitGroup
	errs := make(chan error, k)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < k/clients; i++ {
				_, _, err := h.Exchange(context.Background(), StreamInfo{}, req("cas"), upstreamOK)
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := h.SharedData()["counter"]
	if string(got.Value) != fmt.Sprint(k) {
		t.Fatalf("shared counter = %q after %d concurrent increments, want %d", got.Value, k, k)
	}
	if got.CAS == 0 {
		t.Error("CAS value 0 handed out")
	}
	retries, _ := h.Stat("test.cas_retries")
	t.Logf("CAS retries: %d", retries)
}

func TestSharedDataCASRules(t *testing.T) {
	var d sharedData
	d.init()
	if _, _, ok := d.get("vm", "k"); ok {
		t.Fatal("get of a missing key succeeded")
	}
	if !d.set("vm", "k", []byte("a"), 12345) {
		t.Fatal("set of a missing key with a cas failed; Envoy ignores the cas then")
	}
	v, cas1, ok := d.get("vm", "k")
	if !ok || string(v) != "a" || cas1 != 1 {
		t.Fatalf("get = %q, %d, %v; want \"a\", 1, true", v, cas1, ok)
	}
	if d.set("vm", "k", []byte("b"), cas1+1) {
		t.Fatal("set with a stale cas succeeded")
	}
	if !d.set("vm", "k", []byte("b"), cas1) {
		t.Fatal("set with the current cas failed")
	}
	if !d.set("vm", "k", []byte("c"), 0) {
		t.Fatal("set with cas 0 failed; it is unconditional")
	}
	if _, _, ok := d.get("other-vm", "k"); ok {
		t.Fatal("keys leak across vm ids")
	}
	// The counter skips 0 when it wraps.
	d.cas = ^uint32(0)
	d.set("vm", "w", nil, 0)
	d.set("vm", "w2", nil, 0)
	_, c1, _ := d.get("vm", "w")
	_, c2, _ := d.get("vm", "w2")
	if c1 != ^uint32(0) || c2 != 1 {
		t.Fatalf("cas across the wrap = %d, %d; want %d, 1", c1, c2, ^uint32(0))
	}
}

func TestFailurePolicies(t *testing.T) {
	// Under Envoy 1.33 a Go panic cannot even print itself: the runtime's
	// usleep in startpanic_m hits poll_oneoff's ENOSYS first.
	for p, wantLine := range map[Profile]string{Envoy133: "fatal error: wasi_snapshot_preview1.poll_oneoff", Envoy139: "panic: boom"} {
		t.Run("fail_closed "+p.String(), func(t *testing.T) {
			h, sink := newTestHost(t, testPlugin, Options{Profile: p})
			_, client := exchange(t, h, req("panic"))
			if client.Local == nil || client.Local.Status != 503 || client.Local.Details != DetailsWasmFailStream {
				t.Fatalf("the trapping request got %+v, want 503 %s", client.Local, DetailsWasmFailStream)
			}
			fwd, client := exchange(t, h, req(""))
			if client.Status() != 503 || fwd.Headers != nil {
				t.Fatalf("a later request got %d (forwarded %v), want 503 and nothing forwarded", client.Status(), fwd.Headers != nil)
			}
			if st := h.VMStates()[0]; !st.Failed {
				t.Error("VM not marked failed")
			}
			if r, ok := sink.find(wantLine); !ok || r.Source != FromStderr || r.Level != LogError {
				t.Errorf("no stderr line %q:\n%s", wantLine, sink)
			}
			if r, ok := sink.find("VM failed (fail_closed)"); !ok || r.Source != FromHost || r.Level != LogCritical ||
				!strings.Contains(r.Message, "OnHttpRequestHeaders") {
				t.Errorf("no critical host line with the trap's stack:\n%s", sink)
			}
			if v, _ := h.Stat("wasmhost.streams.fail_closed"); v != 2 {
				t.Errorf("fail_closed = %d, want 2", v)
			}
		})
	}
	t.Run("fail_open", func(t *testing.T) {
		h, _ := newTestHost(t, testPlugin, Options{FailurePolicy: FailOpen})
		for i, x := range []string{"panic", ""} {
			fwd, client := exchange(t, h, req(x, "body"))
			if fwd.Headers == nil || string(fwd.Body) != "body" || client.Status() != 200 {
				t.Fatalf("request %d: forwarded %+v, client %+v; want it passed", i, fwd, client)
			}
			if _, ok := HeaderValue(client.Headers, "x-seen-by-plugin"); ok {
				t.Errorf("request %d: the failed plugin still saw the response", i)
			}
			if _, ok := HeaderValue(fwd.Headers, "x-request-id"); !ok {
				t.Errorf("request %d: no x-request-id (Envoy adds it before filters)", i)
			}
		}
	})
	t.Run("reload", func(t *testing.T) {
		clock := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
		var mu sync.Mutex
		now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
		advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
		h, sink := newTestHost(t, testPlugin, Options{FailurePolicy: FailReload, ReloadBackoff: 10 * time.Second, Clock: now})
		if _, client := exchange(t, h, req("panic")); client.Status() != 503 {
			t.Fatalf("trapping request got %d, want 503", client.Status())
		}
		advance(10*time.Second - time.Nanosecond)
		if _, client := exchange(t, h, req("")); client.Status() != 503 {
			t.Fatalf("within the backoff: %d, want 503", client.Status())
		}
		advance(time.Nanosecond)
		if _, client := exchange(t, h, req("")); client.Status() != 200 {
			t.Fatalf("after the backoff: %d, want 200 from a fresh VM", client.Status())
		}
		st := h.VMStates()[0]
		if st.Failed || st.Generation != 2 {
			t.Fatalf("VM state %+v, want generation 2, healthy", st)
		}
		if v, _ := h.Stat("wasmhost.vm.reloaded"); v != 1 {
			t.Errorf("vm.reloaded = %d, want 1", v)
		}
		if _, ok := sink.find("started a fresh VM (generation 2)"); !ok {
			t.Errorf("reload not logged:\n%s", sink)
		}
	})
}

// A Go plugin with a pending runtime timer dies at its next GC under
// Envoy 1.33's WASI (poll_oneoff answers ENOSYS, and is a restricted
// callback inside proxy_on_memory_allocate) and survives Envoy 1.39's.
func TestBadTimerPlugin(t *testing.T) {
	big := strings.Repeat("x", 16<<20)
	for _, c := range []struct {
		name    string
		profile Profile
		r       Request
		want    int
		logged  string
	}{
		{"GC in a callback, 1.33", Envoy133, req("gc"), 503, "fatal error: poll_oneoff failed"},
		{"GC in proxy_on_memory_allocate, 1.33", Envoy133, req("holdbody", big), 503,
			"restricted_callback: wasi_snapshot_preview1.poll_oneoff may not be called during proxy_on_memory_allocate"},
		{"GC in a callback, 1.39", Envoy139, req("gc"), 200, ""},
		{"GC in proxy_on_memory_allocate, 1.39", Envoy139, req("holdbody", big), 200, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, sink := newTestHost(t, testPlugin, Options{Profile: c.profile, PluginConfig: []byte("badtimer")})
			if _, client := exchange(t, h, req("")); client.Status() != 200 {
				t.Fatalf("before any GC: %d, want 200", client.Status())
			}
			_, client := exchange(t, h, c.r)
			if client.Status() != c.want {
				t.Fatalf("status %d, want %d; logs:\n%s", client.Status(), c.want, sink)
			}
			if st := h.VMStates()[0]; st.Failed != (c.want == 503) {
				t.Fatalf("VM failed = %v, want %v", st.Failed, c.want == 503)
			}
			if c.logged != "" {
				if _, ok := sink.find(c.logged); !ok {
					t.Errorf("no log line containing %q:\n%s", c.logged, sink)
				}
			}
		})
	}
}

func TestTickResumesPausedStream(t *testing.T) {
	h, _ := newTestHost(t, testPlugin, Options{PluginConfig: []byte("tick=5")})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, _ := h.NewStream(StreamInfo{})
	defer s.Close()
	// Headers only: nothing but the tick can resume the request.
	v, err := s.ProcessRequest(ctx, req("waittick"))
	if err != nil {
		t.Fatalf("ProcessRequest: %v", err)
	}
	if header(t, v.Headers, ":path") != "/p?q=1" {
		t.Fatalf("released %+v, want the held headers", v)
	}
	if n, _ := h.Stat("test.ticks"); n < 1 {
		t.Errorf("ticks = %d, want at least 1", n)
	}
}

// A stream the plugin never resumes ends with the caller's context: one
// held at the headers without a body, and, by default (Envoy's
// StopAllIterationAndWatermark), one held at the headers whose plugin waits
// for a body callback that never comes.
func TestPausedForeverEndsWithContext(t *testing.T) {
	for _, c := range []struct {
		name string
		r    Request
	}{
		{"headers only", Request{RequestHead: req("pausebody").RequestHead}},
		{"waiting for a body callback", req("pausebody,bodylog", "an evil body")},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, sink := newTestHost(t, testPlugin, Options{})
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			s, _ := h.NewStream(StreamInfo{})
			defer s.Close()
			v, err := s.ProcessRequest(ctx, c.r)
			if !errors.Is(err, ErrPaused) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("ProcessRequest: %+v, %v; want ErrPaused wrapping the deadline", v, err)
			}
			if got := callbackLog(sink); len(got) > 0 {
				t.Errorf("body callbacks %q ran while the headers stopped all iteration", got)
			}
		})
	}
}

func TestSharedQueue(t *testing.T) {
	h, _ := newTestHost(t, testPlugin, Options{PluginConfig: []byte("queue")})
	exchange(t, h, req("enqueue"))
	exchange(t, h, req("enqueue"))
	if n, _ := h.Stat("test.queue_items"); n != 2 {
		t.Fatalf("queue_items = %d, want 2 (proxy_on_queue_ready runs after the enqueuing call)", n)
	}
}

func TestStreamMisuse(t *testing.T) {
	h, sink := newTestHost(t, testPlugin, Options{})
	s, _ := h.NewStream(StreamInfo{})
	if _, err := s.RequestBody([]byte("x"), false); err == nil || !strings.Contains(err.Error(), "request body before request headers") {
		t.Errorf("body before headers: %v", err)
	}
	r := req("")
	if _, err := s.RequestHeaders(r.RequestHead, true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RequestHeaders(r.RequestHead, true); err == nil {
		t.Error("RequestHeaders twice succeeded")
	}
	if _, err := s.RequestTrailers(nil); err == nil || !strings.Contains(err.Error(), "after the end of the request") {
		t.Errorf("trailers after the end: %v", err)
	}
	if _, err := s.ResponseHeaders(42, nil, true); err == nil || !strings.Contains(err.Error(), "response status 42") {
		t.Errorf("status 42: %v", err)
	}
	id := s.ContextID()
	s.Close()
	s.Close()
	if _, ok := sink.find(fmt.Sprintf("stream done %d", id)); !ok {
		t.Errorf("proxy_on_log did not run at Close:\n%s", sink)
	}
	if _, err := s.ResponseHeaders(200, nil, true); !errors.Is(err, ErrStreamEnded) {
		t.Errorf("after Close: %v, want ErrStreamEnded", err)
	}
	h.Close(context.Background())
	if _, err := h.NewStream(StreamInfo{}); !errors.Is(err, ErrClosed) {
		t.Errorf("NewStream after Close: %v, want ErrClosed", err)
	}
}

func TestMaxMetrics(t *testing.T) {
	var m metricStore
	m.init()
	for i := 0; i < MaxMetrics; i++ {
		if _, ok := m.define(metricCounter, fmt.Sprint(i)); !ok {
			t.Fatalf("metric %d refused, want MaxMetrics = %d accepted", i, MaxMetrics)
		}
	}
	if _, ok := m.define(metricCounter, "0"); !ok {
		t.Fatal("redefining an existing metric at the limit failed")
	}
	if _, ok := m.define(metricGauge, "one too many"); ok {
		t.Fatal("metric MaxMetrics+1 accepted")
	}
}
