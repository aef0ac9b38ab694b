package filter

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/wasmguard/wasmguard/config"
	"github.com/wasmguard/wasmguard/patterns"
	"github.com/wasmguard/wasmguard/ratelimit"
)

// httpContext is one request. Envoy runs one callback of a VM at a time,
// so it needs no locking.
type httpContext struct {
	types.DefaultHttpContext
	p *pluginContext

	// Facts read once from the request headers.
	method, path, requestID, contentType, contentEncoding string
	client                                                string // rate-limit / log key, computed on first use
	streaming                                             bool   // an upgrade, CONNECT or gRPC: the body is a stream, not a document

	waitBody bool // the verdict waits for the body
	done     bool // a verdict was given: inspect nothing more

	// Set when the rate limiter allowed the request (enforce mode), for the
	// x-ratelimit-* response headers.
	rlAllowed   bool
	rlRemaining int
}

type verdictKind uint8

const (
	kindBlock verdictKind = iota
	kindLimit
	kindError
)

// verdict is a decision to answer a request locally.
type verdict struct {
	kind       verdictKind
	rule       string // kindBlock: the rule id
	target     patterns.Target
	retryAfter int   // kindLimit: whole seconds
	remaining  int   // kindLimit: tokens left
	err        error // kindError
}

// OnHttpRequestHeaders rate-limits, then checks path, query and headers.
// When a pattern targets the body and the request has one, the verdict
// waits for the body: the headers go on (Envoy delivers no body to a plugin
// that holds the headers, unless the plugin is configured with
// allow_on_headers_stop_iteration, Envoy ≥ 1.35) and the body is held until
// it has been seen; with hold_headers the headers are held too.
func (h *httpContext) OnHttpRequestHeaders(_ int, endOfStream bool) (action types.Action) {
	defer h.recoverTo(&action)
	cfg := h.p.cfg
	if cfg == nil { // the plugin did not start; Envoy does not route requests here then
		return types.ActionContinue
	}
	h.p.m.requests.Increment(1)
	headers, err := proxywasm.GetHttpRequestHeaders()
	if err != nil {
		return h.fail(fmt.Errorf("reading request headers: %w", err))
	}
	var xff []string
	var keyHeader string
	for _, kv := range headers {
		switch kv[0] {
		case ":method":
			h.method = kv[1]
		case ":path":
			h.path = kv[1]
		case "x-request-id":
			h.requestID = kv[1]
		case "content-type":
			h.contentType = kv[1]
			if strings.HasPrefix(strings.ToLower(kv[1]), "application/grpc") {
				h.streaming = true
			}
		case "content-encoding":
			h.contentEncoding = kv[1]
		case "upgrade":
			h.streaming = true
		case "x-forwarded-for":
			xff = append(xff, kv[1])
		}
		if rl := cfg.RateLimit; rl != nil && rl.Key == config.KeyHeader && kv[0] == rl.Header && keyHeader == "" {
			keyHeader = kv[1]
		}
	}
	if h.method == "CONNECT" {
		h.streaming = true
	}
	if cfg.RateLimit != nil {
		h.client = h.rateLimitKey(strings.Join(xff, ","), keyHeader)
		if v := h.checkRateLimit(); v != nil {
			if act, stop := h.act(*v); stop {
				return act
			}
		}
	}
	if m, ok := cfg.Patterns.CheckPath(h.path); ok {
		if act, stop := h.act(blocked(m)); stop || h.done {
			return act
		}
	}
	if m, ok := cfg.Patterns.CheckHeaders(headers); ok {
		if act, stop := h.act(blocked(m)); stop || h.done {
			return act
		}
	}
	// A stream (WebSocket upgrade, CONNECT, gRPC) is not held for its
	// body: its client waits for the server before it sends more, so
	// holding it would hang the request until Envoy's idle timeout.
	if !endOfStream && cfg.InspectsBody() && !h.streaming {
		h.waitBody = true
		if cfg.HoldHeaders {
			return types.ActionPause
		}
	}
	return types.ActionContinue
}

// OnHttpRequestBody holds the body (Envoy buffers the chunks; none reaches
// the upstream) until the whole body or max_body_bytes of it is there, then
// checks it.
// bodySize is the size of everything buffered so far, so a payload split
// across chunks is seen whole.
func (h *httpContext) OnHttpRequestBody(bodySize int, endOfStream bool) (action types.Action) {
	defer h.recoverTo(&action)
	if !h.waitBody {
		return types.ActionContinue
	}
	max := h.p.cfg.MaxBodyBytes
	if !endOfStream && bodySize < max {
		return types.ActionPause
	}
	return h.inspectBody(bodySize, bodySize > max || !endOfStream)
}

// OnHttpRequestTrailers ends a body that has trailers: Envoy then never
// flags a body chunk as the end of the stream.
func (h *httpContext) OnHttpRequestTrailers(int) (action types.Action) {
	defer h.recoverTo(&action)
	if !h.waitBody {
		return types.ActionContinue
	}
	return h.inspectBody(-1, false)
}

// inspectBody checks the first max_body_bytes of the buffered body. size
// is the buffered size, or -1 when unknown (trailers).
func (h *httpContext) inspectBody(size int, truncated bool) types.Action {
	h.waitBody = false
	cfg := h.p.cfg
	n := cfg.MaxBodyBytes
	if size >= 0 && size < n {
		n = size
	}
	if truncated {
		h.p.m.bodyTruncated.Increment(1)
	}
	var body []byte
	if n > 0 {
		b, err := proxywasm.GetHttpRequestBody(0, n)
		switch {
		case err == nil:
			body = b
		case errors.Is(err, types.ErrorStatusNotFound) && size < 0:
			// Trailers without a body.
		default:
			return h.fail(fmt.Errorf("reading request body: %w", err))
		}
	}
	m, ok := cfg.Patterns.CheckBody(h.contentType, body)
	if !ok && h.contentEncoding != "" {
		// A compressed body is also inspected as the application will
		// read it; the raw bytes were checked above, for applications that
		// ignore Content-Encoding.
		if plain, inflated := patterns.Inflate(h.contentEncoding, body, cfg.MaxBodyBytes); inflated {
			m, ok = cfg.Patterns.CheckBody(h.contentType, plain)
		}
	}
	if ok {
		if act, stop := h.act(blocked(m)); stop {
			return act
		}
	}
	return types.ActionContinue
}

// OnHttpResponseHeaders tells a client that the limiter let through how
// much of its bucket is left.
func (h *httpContext) OnHttpResponseHeaders(int, bool) (action types.Action) {
	defer h.recoverTo(&action)
	if h.rlAllowed {
		rl := h.p.cfg.RateLimit
		_ = proxywasm.ReplaceHttpResponseHeader("x-ratelimit-limit", strconv.Itoa(rl.Burst))
		_ = proxywasm.ReplaceHttpResponseHeader("x-ratelimit-remaining", strconv.Itoa(h.rlRemaining))
	}
	return types.ActionContinue
}

func (h *httpContext) rateLimitKey(xff, keyHeader string) string {
	rl := h.p.cfg.RateLimit
	switch {
	case rl.Key == config.KeyGlobal:
		return "global"
	case rl.Key == config.KeyHeader && keyHeader != "":
		return "hdr:" + truncate(keyHeader, maxKeyLen)
	}
	// client_ip, and header keys on requests without the header.
	return clientIP(h.sourceAddress(), xff, rl.XFFTrustedHops)
}

func (h *httpContext) sourceAddress() string {
	a, err := proxywasm.GetProperty([]string{"source", "address"})
	if err != nil {
		return ""
	}
	return string(a)
}

// clientKey is the key a log line names: the rate-limit key when rate
// limiting is on, else the downstream address.
func (h *httpContext) clientKey() string {
	if h.client == "" {
		h.client = addrKey(h.sourceAddress())
	}
	return h.client
}

// checkRateLimit takes a token from the client's bucket, or returns the
// 429 verdict.
func (h *httpContext) checkRateLimit() *verdict {
	res, err := h.p.limiter.Allow(h.client, now())
	m := h.p.m
	if res.Collision {
		m.slotCollisions.Increment(1)
	}
	if res.Corrupt {
		m.corrupt.Increment(1)
	}
	if res.Exhausted {
		m.casExhausted.Increment(1)
	}
	if err != nil {
		return &verdict{kind: kindError, err: fmt.Errorf("rate limiter: %w", err)}
	}
	if res.Allowed {
		h.rlAllowed = h.p.cfg.Mode == config.Enforce
		h.rlRemaining = res.Remaining
		return nil
	}
	return &verdict{kind: kindLimit, retryAfter: ratelimit.RetryAfterSeconds(res.RetryAfter), remaining: res.Remaining}
}

func blocked(m patterns.Match) verdict {
	return verdict{kind: kindBlock, rule: m.RuleID, target: m.Target}
}

// fail handles an internal error as on_error says: deny answers 500, allow
// lets the request through. In monitor mode the request always goes
// through: monitor mode must never change traffic.
func (h *httpContext) fail(err error) types.Action {
	act, _ := h.act(verdict{kind: kindError, err: err})
	return act
}

// recoverTo turns a panic in a callback into an internal error, so a bug
// can neither crash the VM (which would fail every later request on it) nor
// bypass on_error. Should handling the error panic too, the last resort
// still follows on_error: a bare 500, or the request goes through.
func (h *httpContext) recoverTo(action *types.Action) {
	r := recover()
	if r == nil {
		return
	}
	defer func() {
		if recover() != nil {
			*action = types.ActionContinue
			if cfg := h.p.cfg; cfg != nil && cfg.Mode == config.Enforce && cfg.OnError == config.Deny {
				if proxywasm.SendHttpResponse(500, nil, nil, -1) == nil {
					*action = types.ActionPause
				}
			}
		}
	}()
	*action = h.fail(fmt.Errorf("panic: %v", r))
}

// act is the one place that answers, counts and logs a decision. It
// returns the action for the callback and whether processing stops.
func (h *httpContext) act(v verdict) (types.Action, bool) {
	cfg, m := h.p.cfg, h.p.m
	enforce := cfg.Mode == config.Enforce
	if v.kind == kindError {
		m.errors.Increment(1)
		enforce = enforce && cfg.OnError == config.Deny
	}
	h.log(v, enforce)
	if !enforce {
		if v.kind != kindError {
			m.monitored.Increment(1)
		}
		if v.kind == kindBlock {
			h.done = true // one pattern verdict per request
		}
		return types.ActionContinue, false
	}
	switch v.kind {
	case kindBlock:
		m.blocked.Increment(1)
	case kindLimit:
		m.rateLimited.Increment(1)
	}
	h.done, h.waitBody, h.rlAllowed = true, false, false
	status, headers, body := h.response(v)
	if err := proxywasm.SendHttpResponse(status, headers, body, -1); err != nil {
		// The verdict stands but cannot be answered. With on_error allow
		// the request goes on; otherwise it stays paused until Envoy's
		// stream timeout ends it: a blocked request never passes.
		m.errors.Increment(1)
		proxywasm.LogErrorf("wasmguard: sending the %d response: %v", status, err)
		if cfg.OnError == config.Allow {
			return types.ActionContinue, true
		}
	}
	return types.ActionPause, true
}

// response builds the local response for an enforced verdict.
func (h *httpContext) response(v verdict) (uint32, [][2]string, []byte) {
	headers := [][2]string{{"content-type", "application/json"}, {"cache-control", "no-store"}}
	body := make([]byte, 0, 128)
	var status uint32
	switch v.kind {
	case kindBlock:
		status = uint32(h.p.cfg.DenyStatus)
		headers = append(headers, [2]string{"x-wasmguard-rule", v.rule})
		body = append(body, `{"error":"request blocked","rule":`...)
		body = appendJSONString(body, v.rule)
	case kindLimit:
		status = 429
		rl := h.p.cfg.RateLimit
		headers = append(headers,
			[2]string{"retry-after", strconv.Itoa(v.retryAfter)},
			[2]string{"x-ratelimit-limit", strconv.Itoa(rl.Burst)},
			[2]string{"x-ratelimit-remaining", strconv.Itoa(v.remaining)})
		body = append(body, `{"error":"rate limited","retry_after":`...)
		body = strconv.AppendInt(body, int64(v.retryAfter), 10)
	default:
		status = 500
		body = append(body, `{"error":"internal error"`...)
	}
	if h.requestID != "" {
		body = append(body, `,"request_id":`...)
		body = appendJSONString(body, truncate(h.requestID, maxLogRequestID))
	}
	body = append(body, "}\n"...)
	return status, headers, body
}

// log writes the one log line of a decision. Every request-supplied value
// is truncated and quoted, so a request cannot forge log lines.
func (h *httpContext) log(v verdict, enforce bool) {
	line := make([]byte, 0, 256)
	line = append(line, "wasmguard: action="...)
	switch {
	case v.kind == kindBlock && enforce:
		line = append(line, "block"...)
	case v.kind == kindBlock:
		line = append(line, "would_block"...)
	case v.kind == kindLimit && enforce:
		line = append(line, "rate_limit"...)
	case v.kind == kindLimit:
		line = append(line, "would_rate_limit"...)
	case enforce:
		line = append(line, "error_deny"...)
	default:
		line = append(line, "error_allow"...)
	}
	line = append(line, " mode="...)
	line = append(line, h.p.cfg.Mode.String()...)
	switch v.kind {
	case kindBlock:
		line = append(line, " rule="...)
		line = append(line, v.rule...)
		line = append(line, " target="...)
		line = append(line, v.target.String()...)
	case kindLimit:
		line = append(line, " retry_after="...)
		line = strconv.AppendInt(line, int64(v.retryAfter), 10)
	}
	line = append(line, " method="...)
	line = logValue(line, h.method, 16)
	line = append(line, " path="...)
	line = logValue(line, h.path, maxLogPath)
	line = append(line, " client="...)
	line = logValue(line, h.clientKey(), maxLogKey)
	line = append(line, " request_id="...)
	line = logValue(line, h.requestID, maxLogRequestID)
	if v.kind == kindError {
		line = append(line, " error="...)
		line = logValue(line, v.err.Error(), 512)
		proxywasm.LogError(string(line))
		return
	}
	proxywasm.LogWarn(string(line))
}
