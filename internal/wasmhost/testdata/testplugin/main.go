// Command testplugin is the multi-purpose Proxy-Wasm plugin that the
// wasmhost tests load. It lives under testdata so `go build ./...` skips it;
// TestMain builds it with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o testplugin.wasm ./internal/wasmhost/testdata/testplugin
//
// The plugin configuration is a space-separated list of words that switch on
// start-up behaviours:
//
//	fail        OnPluginStart logs an error line and refuses the configuration
//	badtimer    OnPluginStart leaves a runtime timer pending (time.AfterFunc),
//	            the Go-on-Envoy bug the host must catch at the next GC
//	tick=N      SetTickPeriodMilliSeconds(N); OnTick counts "test.ticks" and
//	            resumes the request of the stream named by the shared-data
//	            key "resume"
//	queue       registers the shared queue "q"; OnQueueReady drains it into
//	            the counter "test.queue_items"
//
// Per request, the comma-separated words of the request header "x-test"
// choose what the HTTP context does (see OnHttpRequestHeaders).
package main

import (
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func init() { proxywasm.SetVMContext(&vmContext{}) }

func main() {}

type vmContext struct{ types.DefaultVMContext }

// OnVMStart echoes the VM configuration so tests can see it arrived.
func (*vmContext) OnVMStart(int) types.OnVMStartStatus {
	cfg, err := proxywasm.GetVMConfiguration()
	if err != nil {
		proxywasm.LogInfof("vm config: <%v>", err)
	} else {
		proxywasm.LogInfof("vm config: %s", cfg)
	}
	return types.OnVMStartStatusOK
}

func (*vmContext) NewPluginContext(uint32) types.PluginContext { return &pluginContext{} }

type pluginContext struct {
	types.DefaultPluginContext
	requests, ticks, queueItems, casRetries proxywasm.MetricCounter
	gauge                                   proxywasm.MetricGauge
	hist                                    proxywasm.MetricHistogram
	queueID                                 uint32
}

var retained [][]byte // "alloc=N" keeps memory alive here

func (p *pluginContext) OnPluginStart(int) types.OnPluginStartStatus {
	cfg, err := proxywasm.GetPluginConfiguration()
	if err != nil && err != types.ErrorStatusNotFound {
		proxywasm.LogErrorf("plugin config: %v", err)
		return types.OnPluginStartStatusFailed
	}
	p.requests = proxywasm.DefineCounterMetric("test.requests")
	p.ticks = proxywasm.DefineCounterMetric("test.ticks")
	p.queueItems = proxywasm.DefineCounterMetric("test.queue_items")
	p.casRetries = proxywasm.DefineCounterMetric("test.cas_retries")
	p.gauge = proxywasm.DefineGaugeMetric("test.gauge")
	p.hist = proxywasm.DefineHistogramMetric("test.hist")
	// Creating a key ignores the CAS (two workers could both create it),
	// so the counter is created here: Envoy starts worker VMs one by one.
	if _, _, err := proxywasm.GetSharedData("counter"); err == types.ErrorStatusNotFound {
		if err := proxywasm.SetSharedData("counter", []byte("0"), 0); err != nil {
			proxywasm.LogErrorf("create counter: %v", err)
			return types.OnPluginStartStatusFailed
		}
	}
	for _, word := range strings.Fields(string(cfg)) {
		switch {
		case word == "fail":
			proxywasm.LogError("config rejected: fail requested")
			return types.OnPluginStartStatusFailed
		case word == "badtimer":
			time.AfterFunc(time.Hour, func() {})
		case strings.HasPrefix(word, "tick="):
			n, _ := strconv.Atoi(strings.TrimPrefix(word, "tick="))
			if err := proxywasm.SetTickPeriodMilliSeconds(uint32(n)); err != nil {
				proxywasm.LogErrorf("tick: %v", err)
			}
		case word == "queue":
			id, err := proxywasm.RegisterSharedQueue("q")
			if err != nil {
				proxywasm.LogErrorf("queue: %v", err)
				return types.OnPluginStartStatusFailed
			}
			p.queueID = id
		}
	}
	proxywasm.LogInfof("plugin started: %s", cfg)
	return types.OnPluginStartStatusOK
}

// OnTick counts and, when a test stored a context id under "resume",
// resumes that paused stream through proxy_set_effective_context.
func (p *pluginContext) OnTick() {
	p.ticks.Increment(1)
	resumeStored(false)
}

// resumeStored resumes the request (or response) of the stream whose
// context id is stored under the shared-data key "resume", and clears the
// key. It must come last in a callback: the effective context stays the
// other stream's.
func resumeStored(response bool) {
	v, cas, err := proxywasm.GetSharedData("resume")
	if err != nil || len(v) == 0 {
		return
	}
	id, err := strconv.Atoi(string(v))
	if err != nil {
		return
	}
	if err := proxywasm.SetSharedData("resume", nil, cas); err != nil {
		return
	}
	if err := proxywasm.SetEffectiveContext(uint32(id)); err != nil {
		proxywasm.LogErrorf("set effective context %d: %v", id, err)
		return
	}
	resume := proxywasm.ResumeHttpRequest
	if response {
		resume = proxywasm.ResumeHttpResponse
	}
	if err := resume(); err != nil {
		proxywasm.LogErrorf("resume %d: %v", id, err)
	}
}

func (p *pluginContext) OnQueueReady(queueID uint32) {
	for {
		if _, err := proxywasm.DequeueSharedQueue(queueID); err != nil {
			return
		}
		p.queueItems.Increment(1)
	}
}

func (p *pluginContext) NewHttpContext(id uint32) types.HttpContext {
	return &httpContext{p: p, id: id}
}

type httpContext struct {
	types.DefaultHttpContext
	p     *pluginContext
	id    uint32
	words []string
	late  []string // "latereads": what reading continued maps gave
}

// casRead is the cas the last "casget" read on this VM (one per worker).
var casRead uint32

func (h *httpContext) has(word string) bool {
	for _, w := range h.words {
		if w == word {
			return true
		}
	}
	return false
}

func (h *httpContext) value(prefix string) (string, bool) {
	for _, w := range h.words {
		if strings.HasPrefix(w, prefix+"=") {
			return strings.TrimPrefix(w, prefix+"="), true
		}
	}
	return "", false
}

// OnHttpRequestHeaders runs the words of x-test in this order:
//
//	panic        panic in the guest (a trap)
//	gc           runtime.GC()
//	alloc=N      retain N more bytes
//	cas          add 1 to shared "counter" with a CAS retry loop
//	enqueue      enqueue one item on the shared queue "q"
//	props        copy properties into request headers x-prop-*
//	setheader    add request header x-added: yes
//	deny         local reply 403 "denied" with x-denied: 1, ActionPause
//	denycont     the same local reply, but return ActionContinue
//	pausebody    hold the headers (ActionPause) and, in the body callback,
//	             the body until end of stream; 403 "blocked" when the body
//	             contains "evil", else add x-body-size. Envoy calls no body
//	             callback while the headers are held unless the plugin sets
//	             allow_on_headers_stop_iteration (the host's
//	             Options.AllowOnHeadersStopIteration): without it the
//	             request hangs.
//	holdbody     let the headers go, hold the body until end of stream and
//	             judge it as pausebody does (without x-body-size: the
//	             headers are gone by then); what works in Envoy by default
//	waittick     hold the request; store the context id under "resume"
//	             so that OnTick (or another stream's "resumereq") resumes it
//	waitresp     store the context id under "resume" and hold the
//	             response headers, for another stream's "resumeresp"
//	bodylog      log every body and trailers callback of either direction
//	             ("request body size=N end=B", "request trailers n=N", ...)
//	resumereq    last: resume the request of the stream stored under
//	             "resume" (proxy_set_effective_context)
//	resumeresp   last: resume that stream's response
//	metrics      bump the gauge and histogram
//	casget       read shared "casx" (creating it first if missing) and keep
//	             its cas in a VM global; add request header x-cas: <cas>
//	casset       set shared "casx" with the kept cas; add request header
//	             x-cas-set: ok or the error
//	latereads    read the request headers again after they continued: in
//	             the body callback and the response headers callback (the
//	             results go out as response header x-late-reads), and in
//	             proxy_on_log (logged as "log phase: ...")
func (h *httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	h.p.requests.Increment(1)
	v, _ := proxywasm.GetHttpRequestHeader("x-test")
	h.words = strings.Split(v, ",")
	if h.has("panic") {
		panic("boom")
	}
	if h.has("gc") {
		runtime.GC()
	}
	if n, ok := h.value("alloc"); ok {
		size, _ := strconv.Atoi(n)
		retained = append(retained, make([]byte, size))
	}
	if h.has("cas") {
		h.casIncrement()
	}
	if h.has("enqueue") {
		id, err := proxywasm.ResolveSharedQueue("", "q")
		if err == nil {
			err = proxywasm.EnqueueSharedQueue(id, []byte("item"))
		}
		if err != nil {
			proxywasm.LogErrorf("enqueue: %v", err)
		}
	}
	if h.has("casget") {
		h.casGet()
	}
	if h.has("casset") {
		res := "ok"
		if err := proxywasm.SetSharedData("casx", []byte("set"), casRead); err != nil {
			res = err.Error()
		}
		_ = proxywasm.AddHttpRequestHeader("x-cas-set", res)
	}
	if h.has("props") {
		h.copyProperties()
	}
	if h.has("setheader") {
		_ = proxywasm.AddHttpRequestHeader("x-added", "yes")
	}
	if h.has("metrics") {
		h.p.gauge.Add(5)
		h.p.gauge.Add(-2)
		h.p.hist.Record(7)
	}
	if h.has("deny") || h.has("denycont") {
		err := proxywasm.SendHttpResponse(403, [][2]string{{"x-denied", "1"}}, []byte("denied"), -1)
		if err != nil {
			proxywasm.LogErrorf("send: %v", err)
		}
		if h.has("denycont") {
			return types.ActionContinue
		}
		return types.ActionPause
	}
	if h.has("waittick") {
		if err := proxywasm.SetSharedData("resume", []byte(strconv.Itoa(int(h.id))), 0); err != nil {
			proxywasm.LogErrorf("resume key: %v", err)
		}
		return types.ActionPause
	}
	if h.has("waitresp") {
		if err := proxywasm.SetSharedData("resume", []byte(strconv.Itoa(int(h.id))), 0); err != nil {
			proxywasm.LogErrorf("resume key: %v", err)
		}
	}
	if h.has("pausebody") {
		return types.ActionPause
	}
	if h.has("resumereq") {
		resumeStored(false)
	}
	if h.has("resumeresp") {
		resumeStored(true)
	}
	return types.ActionContinue
}

func (h *httpContext) casIncrement() {
	for {
		v, cas, err := proxywasm.GetSharedData("counter")
		n := 0
		if err == nil {
			n, _ = strconv.Atoi(string(v))
		} else if err != types.ErrorStatusNotFound {
			proxywasm.LogErrorf("get counter: %v", err)
			return
		}
		spin() // widen the window in which another worker can interleave
		err = proxywasm.SetSharedData("counter", []byte(strconv.Itoa(n+1)), cas)
		if err == nil {
			return
		}
		if err != types.ErrorStatusCasMismatch {
			proxywasm.LogErrorf("set counter: %v", err)
			return
		}
		h.p.casRetries.Increment(1)
	}
}

func (h *httpContext) casGet() {
	_, cas, err := proxywasm.GetSharedData("casx")
	if err == types.ErrorStatusNotFound {
		if err = proxywasm.SetSharedData("casx", []byte("new"), 0); err == nil {
			_, cas, err = proxywasm.GetSharedData("casx")
		}
	}
	if err != nil {
		_ = proxywasm.AddHttpRequestHeader("x-cas", "error: "+err.Error())
		return
	}
	casRead = cas
	_ = proxywasm.AddHttpRequestHeader("x-cas", strconv.FormatUint(uint64(cas), 10))
}

// lateRead reads the request headers map the way a plugin would after it
// continued: one value and all pairs.
func lateRead(where string) string {
	v, err := proxywasm.GetHttpRequestHeader(":method")
	pairs, perr := proxywasm.GetHttpRequestHeaders()
	return where + " value=" + v + " err=" + errString(err) + " pairs=" + strconv.Itoa(len(pairs)) + " err=" + errString(perr)
}

func errString(err error) string {
	if err == nil {
		return "none"
	}
	return err.Error()
}

var spinSink uint32

// spin burns a little CPU (about a hundred microseconds).
func spin() {
	x := spinSink + 1
	for i := 0; i < 100000; i++ {
		x = x*1664525 + 1013904223
	}
	spinSink = x
}

func (h *httpContext) copyProperties() {
	for _, path := range [][]string{
		{"source", "address"}, {"source", "port"}, {"request", "path"},
		{"request", "url_path"}, {"request", "method"}, {"request", "host"},
		{"request", "scheme"}, {"request", "id"}, {"request", "protocol"},
		{"request", "query"}, {"plugin_name"}, {"plugin_root_id"}, {"plugin_vm_id"},
		{"request", "headers", "user-agent"}, {"no_such", "thing"},
	} {
		name := "x-prop-" + strings.Join(path, ".")
		v, err := proxywasm.GetProperty(path)
		switch {
		case err != nil:
			_ = proxywasm.AddHttpRequestHeader(name, "error: "+err.Error())
		case path[len(path)-1] == "port":
			n := uint64(0)
			for i := len(v) - 1; i >= 0; i-- {
				n = n<<8 | uint64(v[i])
			}
			_ = proxywasm.AddHttpRequestHeader(name, strconv.FormatUint(n, 10)+"/"+strconv.Itoa(len(v)))
		default:
			_ = proxywasm.AddHttpRequestHeader(name, string(v))
		}
	}
	m, err := proxywasm.GetPropertyMap([]string{"request", "headers"})
	if err != nil {
		_ = proxywasm.AddHttpRequestHeader("x-prop-headers-map", "error: "+err.Error())
		return
	}
	names := make([]string, 0, len(m))
	for _, kv := range m {
		names = append(names, kv[0])
	}
	_ = proxywasm.AddHttpRequestHeader("x-prop-headers-map", strings.Join(names, " "))
}

// OnHttpRequestBody, with "pausebody" or "holdbody", buffers until end of
// stream and then judges the whole body.
func (h *httpContext) OnHttpRequestBody(size int, end bool) types.Action {
	if h.has("bodylog") {
		proxywasm.LogInfof("request body size=%d end=%v", size, end)
	}
	if h.has("latereads") {
		h.late = append(h.late, lateRead("body"))
	}
	if h.has("bodysizes") {
		prev, _ := proxywasm.GetHttpRequestHeader("x-body-sizes")
		if err := proxywasm.ReplaceHttpRequestHeader("x-body-sizes", prev+strconv.Itoa(size)+";"); err != nil {
			proxywasm.LogErrorf("body sizes: %v", err)
		}
	}
	if !h.has("pausebody") && !h.has("holdbody") {
		return types.ActionContinue
	}
	if !end {
		return types.ActionPause
	}
	body, err := proxywasm.GetHttpRequestBody(0, size)
	if err != nil {
		proxywasm.LogErrorf("body: %v", err)
		return types.ActionContinue
	}
	if strings.Contains(string(body), "evil") {
		_ = proxywasm.SendHttpResponse(403, nil, []byte("blocked"), -1)
		return types.ActionPause
	}
	if h.has("pausebody") {
		if err := proxywasm.AddHttpRequestHeader("x-body-size", strconv.Itoa(len(body))); err != nil {
			proxywasm.LogErrorf("add header: %v", err)
		}
	}
	if h.has("rewritebody") {
		if err := proxywasm.ReplaceHttpRequestBody([]byte("rewritten")); err != nil {
			proxywasm.LogErrorf("rewrite: %v", err)
		}
	}
	return types.ActionContinue
}

// OnHttpResponseHeaders tags every response it sees, local replies included.
func (h *httpContext) OnHttpResponseHeaders(int, bool) types.Action {
	if err := proxywasm.AddHttpResponseHeader("x-seen-by-plugin", "1"); err != nil {
		proxywasm.LogErrorf("response header: %v", err)
	}
	if h.has("latereads") {
		h.late = append(h.late, lateRead("response"))
		_ = proxywasm.AddHttpResponseHeader("x-late-reads", strings.Join(h.late, "; "))
	}
	if h.has("denyresponse") {
		_ = proxywasm.SendHttpResponse(502, nil, []byte("bad upstream"), -1)
		return types.ActionPause
	}
	if h.has("waitresp") {
		return types.ActionPause
	}
	return types.ActionContinue
}

func (h *httpContext) OnHttpRequestTrailers(n int) types.Action {
	if h.has("bodylog") {
		proxywasm.LogInfof("request trailers n=%d", n)
	}
	return types.ActionContinue
}

func (h *httpContext) OnHttpResponseBody(size int, end bool) types.Action {
	if h.has("bodylog") {
		proxywasm.LogInfof("response body size=%d end=%v", size, end)
	}
	return types.ActionContinue
}

func (h *httpContext) OnHttpResponseTrailers(n int) types.Action {
	if h.has("bodylog") {
		proxywasm.LogInfof("response trailers n=%d", n)
	}
	return types.ActionContinue
}

// OnHttpStreamDone logs the context id, so tests can check proxy_on_log.
func (h *httpContext) OnHttpStreamDone() {
	proxywasm.LogDebugf("stream done %d", h.id)
	if h.has("latereads") {
		_, terr := proxywasm.GetHttpRequestTrailer("x")
		status, serr := proxywasm.GetHttpResponseHeader(":status")
		_, rterr := proxywasm.GetHttpResponseTrailer("x")
		proxywasm.LogInfof("log phase: %s; request trailer err=%s; status=%s err=%s; response trailer err=%s; set err=%s",
			lateRead("log"), errString(terr), status, errString(serr), errString(rterr),
			errString(proxywasm.ReplaceHttpRequestHeader("x-late", "1")))
	}
}
