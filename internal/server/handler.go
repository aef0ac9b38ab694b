// Package server serves HTTP through a Proxy-Wasm plugin running in a
// [wasmhost.Host], the way Envoy's HTTP connection manager runs a wasm HTTP
// filter in front of a router: it is what `wasmguard serve` runs.
//
// For each request [Handler] opens a [wasmhost.Stream] (one plugin HTTP
// context, on the next worker VM) and drives it phase by phase:
//
//   - request headers as [RequestHead] builds them: hop-by-hop headers and
//     those the Connection header names removed, the x-forwarded-for and
//     x-forwarded-proto headers Envoy adds with envoy.yaml's
//     use_remote_address: true, the client's x-request-id replaced by a
//     fresh one; source.address is the TCP peer. A request whose
//     Connection header Envoy's codec refuses gets 400 without reaching
//     the plugin ([ConnectionError]);
//   - the request body, read in chunks of at most Options.ChunkSize bytes
//     and fed as they arrive, so the plugin sees a large body in several
//     callbacks (and buffers it itself when it pauses), then trailers
//     (fed to the plugin, not forwarded: the upstream gets the body);
//   - what the plugin releases goes to the upstream as it is released: the
//     upstream request starts when the plugin lets the headers go and its
//     body is streamed to it; a local reply from the plugin goes to the
//     client and nothing more reaches the upstream;
//   - the upstream's response (or the 503/504 the proxy itself answers when
//     the upstream fails) runs through the response phases the same way
//     before it reaches the client, without its hop-by-hop headers and
//     those its Connection header names. A response (or local reply)
//     without Content-Type reaches the client without one: nothing is
//     sniffed.
//
// A stream the plugin resets (Envoy's stream reset) aborts the client
// connection. The upstream is an [http.RoundTripper]: [Echo], a built-in
// upstream that answers every request with a JSON description of it, or
// [NewProxy], a reverse proxy to a URL. [NewAdmin] is an Envoy-like admin
// page (/stats, /ready) and [Start] runs both listeners.
//
// It speaks HTTP/1.1 without TLS, which is what loopback tests and
// `make run` need; it is a test bed for the filter, not a production proxy.
// Its HTTP/1 parsing is net/http's, which differs from Envoy's codec at the
// edges: a request with both Transfer-Encoding: chunked and Content-Length
// is read as chunked, the length dropped (RFC 9112 section 6.3 allows it;
// Envoy answers 400 unless allow_chunked_length is set), and a target with
// an invalid percent-escape ("/%zz") gets 400 from net/http before the
// plugin sees it.
package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/wasmguard/wasmguard/internal/wasmhost"
)

// Limits and defaults of a Handler. Each is checked at its edge by the
// tests.
const (
	// DefaultChunkSize is the default Options.ChunkSize: a body is read and
	// fed to the plugin at most 16 KiB at a time (Envoy's HTTP/1 codec
	// hands filters the body in slices of its read buffer, 16 KiB).
	DefaultChunkSize = 16 << 10
	// MaxChunkSize bounds Options.ChunkSize.
	MaxChunkSize = 1 << 20
	// DefaultUpstreamTimeout is the default Options.UpstreamTimeout:
	// Envoy's default route timeout (15 s), from the end of the request to
	// the upstream's response headers. Past it the client gets 504.
	DefaultUpstreamTimeout = 15 * time.Second
	// DefaultPauseTimeout is the default Options.PauseTimeout, the longest
	// the plugin may hold a request or response it has paused once the
	// client or upstream sent all of it (Envoy's default stream idle
	// timeout, 5 minutes). Past it the client gets 408 (request) or 504
	// (response).
	DefaultPauseTimeout = 5 * time.Minute
)

// Options configure a Handler.
type Options struct {
	// Host runs the plugin; required. The Handler does not close it.
	Host *wasmhost.Host
	// Upstream answers the requests the plugin lets through; nil means
	// Echo{}.
	Upstream http.RoundTripper
	// Log receives the handler's own lines (one access line per request at
	// LogInfo, upstream failures at LogWarn); nil discards them. It may be
	// called concurrently.
	Log func(level wasmhost.LogLevel, msg string)
	// ChunkSize is the most body bytes read and fed to the plugin in one
	// callback, 1..MaxChunkSize; 0 means DefaultChunkSize.
	ChunkSize int
	// UpstreamTimeout bounds the wait for the upstream's response headers
	// once the request is sent; 0 means DefaultUpstreamTimeout.
	UpstreamTimeout time.Duration
	// PauseTimeout bounds how long a fully received request or response
	// may stay paused by the plugin; 0 means DefaultPauseTimeout.
	PauseTimeout time.Duration
}

func (o Options) normalize() (Options, error) {
	if o.Host == nil {
		return o, errors.New("server: Options.Host is nil")
	}
	if o.Upstream == nil {
		o.Upstream = Echo{}
	}
	if o.Log == nil {
		o.Log = func(wasmhost.LogLevel, string) {}
	}
	if o.ChunkSize == 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.ChunkSize < 1 || o.ChunkSize > MaxChunkSize {
		return o, fmt.Errorf("server: Options.ChunkSize = %d: want 1..%d", o.ChunkSize, MaxChunkSize)
	}
	if o.UpstreamTimeout == 0 {
		o.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if o.UpstreamTimeout < 0 {
		return o, fmt.Errorf("server: Options.UpstreamTimeout = %v: must not be negative", o.UpstreamTimeout)
	}
	if o.PauseTimeout == 0 {
		o.PauseTimeout = DefaultPauseTimeout
	}
	if o.PauseTimeout < 0 {
		return o, fmt.Errorf("server: Options.PauseTimeout = %v: must not be negative", o.PauseTimeout)
	}
	return o, nil
}

// Handler is the filtering proxy: an http.Handler that runs every request
// through the plugin and forwards what it lets through. It is safe for
// concurrent use.
type Handler struct {
	opts Options
}

// NewHandler checks opts and returns the Handler.
func NewHandler(opts Options) (*Handler, error) {
	opts, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	return &Handler{opts: opts}, nil
}

// errAborted ends the upstream request body when the plugin ends the
// stream before the request was fully forwarded.
var errAborted = errors.New("server: the plugin ended the stream")

// exchange is one request being served.
type exchange struct {
	h      *Handler
	w      http.ResponseWriter
	r      *http.Request
	s      *wasmhost.Stream
	start  time.Time
	status int   // sent to the client, 0 before
	sent   int64 // body bytes sent to the client
	note   string

	// The upstream request, from the moment the plugin releases the
	// request headers.
	upStarted bool
	upCancel  context.CancelFunc
	upBody    *io.PipeWriter // nil when the request had no body left
	upResult  chan upstreamResult
	reqDone   bool // the plugin released the end of the request

	respHeaders bool // response headers went to the client
	respDone    bool // the plugin released the end of the response
}

type upstreamResult struct {
	resp *http.Response
	err  error
}

// ServeHTTP runs one exchange through the plugin.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := ConnectionError(r.Header); err != nil {
		// Envoy's codec refuses the request before any filter runs, and
		// closes the connection.
		x := &exchange{h: h, w: w, r: r, start: time.Now(), note: err.Error()}
		w.Header().Set("Connection", "close")
		x.sendProxyReply(http.StatusBadRequest, "Bad Request")
		h.access(x)
		return
	}
	info := wasmhost.StreamInfo{SourceAddress: r.RemoteAddr, Protocol: r.Proto}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		info.DestinationAddress = la.String()
	}
	s, err := h.opts.Host.NewStream(info)
	if err != nil {
		h.opts.Log(wasmhost.LogWarn, "server: no stream: "+err.Error())
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		return
	}
	x := &exchange{h: h, w: w, r: r, s: s, start: time.Now()}
	defer func() {
		x.abortUpstream()
		s.Close()
		h.access(x)
	}()
	if x.requestPhase() {
		return
	}
	x.responsePhase()
}

// access logs the exchange's one access line.
func (h *Handler) access(x *exchange) {
	line := fmt.Sprintf("access: %s %q %d %dB %s", x.r.RemoteAddr,
		x.r.Method+" "+requestTarget(x.r), x.status, x.sent,
		time.Since(x.start).Round(10*time.Microsecond))
	if x.s != nil {
		line += " worker=" + strconv.Itoa(x.s.Worker())
	}
	if x.note != "" {
		line += " " + x.note
	}
	h.opts.Log(wasmhost.LogInfo, line)
}

// requestTarget is the request target as the client sent it, for :path:
// origin-form byte for byte, absolute-form reduced to path and query as
// Envoy does.
func requestTarget(r *http.Request) string {
	if strings.HasPrefix(r.RequestURI, "/") {
		return r.RequestURI
	}
	return r.URL.RequestURI()
}

// RequestHead returns the request head the Handler gives the plugin for
// r, a request as net/http's server hands it to a handler. It is what
// Envoy's HTTP connection manager, configured as envoy.yaml is
// (use_remote_address: true, xff_num_trusted_hops: 0), hands its filters
// for the same bytes on the wire:
//
//   - Method; Authority r.Host; Path the request target as sent, an
//     absolute-form target reduced to its path and query; Scheme https
//     when r.TLS is set, else http;
//   - the regular headers, names lower-cased and sorted, the values of one
//     name in order, without the hop-by-hop headers (connection,
//     keep-alive, proxy-connection, transfer-encoding, upgrade, te,
//     trailer) and without the headers the Connection header names
//     (RFC 9110 section 7.6.1; Envoy's HTTP/1 codec removes them too);
//   - content-length, r.ContentLength, when the client declared a length
//     (a Content-Length header, or r.ContentLength > 0): never for a
//     chunked body;
//   - x-forwarded-for: the client's values joined, with the TCP peer's IP
//     (from r.RemoteAddr, "ip:port") appended; x-forwarded-proto: Scheme,
//     whatever the client sent;
//   - no x-request-id: the client's is dropped, as Envoy at the edge drops
//     an external client's (preserve_external_request_id: false, and since
//     Envoy 1.33 no address counts as internal unless
//     internal_address_config says so), and the host adds a fresh one.
//
// Headers the handler adds (content-length, x-forwarded-*) are added after
// the Connection-named ones are removed, so a client cannot remove them.
// The Handler refuses a request [ConnectionError] reports before it gets
// here, as Envoy does.
func RequestHead(r *http.Request) wasmhost.RequestHead {
	head := wasmhost.RequestHead{
		Method:    r.Method,
		Path:      requestTarget(r),
		Authority: r.Host,
		Scheme:    "http",
		Headers:   make([][2]string, 0, len(r.Header)+3),
	}
	if r.TLS != nil {
		head.Scheme = "https"
	}
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	conn := r.Header.Values("Connection")
	var xff string
	for _, k := range keys {
		lk := strings.ToLower(k)
		switch {
		case hopByHop(lk), lk == "content-length", lk == "x-forwarded-proto", lk == "x-request-id",
			nominated(conn, lk):
			continue
		}
		for _, v := range r.Header[k] {
			if lk == "x-forwarded-for" {
				xff = joinList(xff, v)
				continue
			}
			head.Headers = append(head.Headers, [2]string{lk, v})
		}
	}
	// net/http keeps a declared Content-Length in r.Header (it removes it
	// from a chunked request); r.ContentLength is its parsed value.
	if _, declared := r.Header["Content-Length"]; r.ContentLength > 0 || (declared && r.ContentLength == 0) {
		head.Headers = append(head.Headers, [2]string{"content-length", strconv.FormatInt(r.ContentLength, 10)})
	}
	// envoy.yaml has use_remote_address: true: Envoy appends the peer to
	// x-forwarded-for and sets x-forwarded-proto to its own scheme.
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		xff = joinList(xff, ip)
	}
	if xff != "" {
		head.Headers = append(head.Headers, [2]string{"x-forwarded-for", xff})
	}
	head.Headers = append(head.Headers, [2]string{"x-forwarded-proto", head.Scheme})
	return head
}

func joinList(a, b string) string {
	if a == "" {
		return b
	}
	return a + "," + b
}

// hopByHop reports the connection-specific headers a proxy does not pass
// on (RFC 9110 section 7.6.1), as Envoy strips them.
func hopByHop(lk string) bool {
	switch lk {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer":
		return true
	}
	return false
}

// MaxConnectionTokens is the most names a request's Connection headers
// may list together: Envoy's HTTP/1 codec answers 400 to ten or more
// (MAX_ALLOWED_NOMINATED_HEADERS in its sanitizeConnectionHeader).
const MaxConnectionTokens = 9

// ConnectionError reports why Envoy's HTTP/1 codec would refuse, with 400
// and before any filter runs, a request whose headers are h; nil when it
// would not. Its Connection headers (a comma-separated list, in one or
// more headers) must list at most MaxConnectionTokens names, and none of
// x-forwarded-for, x-forwarded-host, x-forwarded-proto or a
// pseudo-header: removing those would hide where the request came from.
func ConnectionError(h http.Header) error {
	n := 0
	for _, v := range h.Values("Connection") {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if tok = strings.Trim(tok, " \t"); tok == "" {
				continue
			}
			n++
			if strings.HasPrefix(tok, ":") || strings.EqualFold(tok, "x-forwarded-for") ||
				strings.EqualFold(tok, "x-forwarded-host") || strings.EqualFold(tok, "x-forwarded-proto") {
				return fmt.Errorf("connection header names %q", tok)
			}
		}
	}
	if n > MaxConnectionTokens {
		return fmt.Errorf("connection header lists %d names, more than %d", n, MaxConnectionTokens)
	}
	return nil
}

// nominated reports whether the Connection header values conn name the
// header lk (lower case): RFC 9110 section 7.6.1 makes such a header
// connection-specific, so a proxy removes it before forwarding. conn is a
// comma-separated list in one or more values; names compare
// case-insensitively, spaces and tabs around them ignored. It does not
// allocate.
func nominated(conn []string, lk string) bool {
	for _, v := range conn {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			// Names are ASCII tokens: equal lengths first, cheaply.
			if tok = strings.Trim(tok, " \t"); len(tok) == len(lk) && tok != "" && strings.EqualFold(tok, lk) {
				return true
			}
		}
	}
	return false
}

// requestPhase feeds the request to the plugin and the upstream. It
// returns true when the exchange is over (a local reply was sent).
func (x *exchange) requestPhase() bool {
	r := x.r
	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	hasTrailers := len(r.Trailer) > 0
	st, err := x.s.RequestHeaders(RequestHead(r), !hasBody && !hasTrailers)
	if x.onRequestStep(st, err) {
		return true
	}
	if hasBody || hasTrailers {
		if x.feedBody(r.Body, false, hasTrailers, func() [][2]string { return flatten(r.Trailer) }) {
			return true
		}
	}
	// The client sent everything; the plugin may still hold some of it.
	if !x.reqDone {
		ctx, cancel := context.WithTimeout(r.Context(), x.h.opts.PauseTimeout)
		defer cancel()
		for !x.reqDone {
			st, err := x.s.Wait(ctx)
			switch {
			case err == nil:
			case r.Context().Err() != nil:
				return true // the client went away
			case errors.Is(err, wasmhost.ErrPaused):
				x.note = "request paused past the pause timeout"
				x.sendProxyReply(http.StatusRequestTimeout, "request timeout")
				return true
			default:
				return x.streamError(err)
			}
			if st.Response {
				if st.Action == wasmhost.LocalReply || st.Action == wasmhost.Reset {
					return x.onRequestStep(st, nil)
				}
				continue
			}
			if x.onRequestStep(st, nil) {
				return true
			}
		}
	}
	return false
}

// feedBody reads body in chunks and feeds them to the request or response
// phase. trailers, when declared, are read after the body's end. It
// returns true when the exchange is over.
func (x *exchange) feedBody(body io.Reader, response, hasTrailers bool, trailers func() [][2]string) bool {
	onStep := x.onRequestStep
	feed := x.s.RequestBody
	feedTrailers := x.s.RequestTrailers
	if response {
		onStep, feed, feedTrailers = x.onResponseStep, x.s.ResponseBody, x.s.ResponseTrailers
	}
	buf := make([]byte, x.h.opts.ChunkSize)
	for {
		// One Read: what has arrived, up to ChunkSize, is fed at once, as
		// Envoy feeds what its codec has read. net/http reports io.EOF
		// with the last bytes of a body of known length, so the last chunk
		// carries end_of_stream; a chunked body ends with an empty one.
		n, err := body.Read(buf)
		eof := err == io.EOF
		if err != nil && !eof {
			// The client (or upstream) went away mid-body: Envoy resets
			// the stream; so does the handler.
			x.note = "body read error: " + err.Error()
			panic(http.ErrAbortHandler)
		}
		if n > 0 || eof {
			end := eof && !hasTrailers
			if n > 0 || end {
				if onStep(feed(buf[:n:n], end)) {
					return true
				}
			}
		}
		if eof {
			break
		}
	}
	if hasTrailers {
		t := trailers()
		if len(t) == 0 {
			return onStep(feed(nil, true))
		}
		return onStep(feedTrailers(t))
	}
	return false
}

// flatten turns a header map into lower-cased pairs, sorted by name.
func flatten(h http.Header) [][2]string {
	keys := make([]string, 0, len(h))
	for k, vs := range h {
		if len(vs) > 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var out [][2]string
	for _, k := range keys {
		for _, v := range h[k] {
			out = append(out, [2]string{strings.ToLower(k), v})
		}
	}
	return out
}

// onRequestStep acts on what a request phase released. It returns true
// when the exchange is over.
func (x *exchange) onRequestStep(st wasmhost.Step, err error) bool {
	if err != nil {
		return x.streamError(err)
	}
	switch st.Action {
	case wasmhost.LocalReply:
		x.abortUpstream()
		x.sendLocal(st.Local)
		return true
	case wasmhost.Reset:
		x.note = "reset by the plugin"
		panic(http.ErrAbortHandler)
	}
	if st.Headers != nil && !x.upStarted {
		x.startUpstream(st)
	} else if x.upBody != nil && len(st.Body) > 0 {
		if _, err := x.upBody.Write(st.Body); err != nil {
			// The upstream request failed; its result says why.
			x.closeUpstreamBody()
		}
	}
	if st.EndOfStream {
		x.reqDone = true
		x.closeUpstreamBody()
	}
	return false
}

// streamError handles an error from the host: the host closed (shutdown),
// or a misuse that would be a bug here.
func (x *exchange) streamError(err error) bool {
	x.abortUpstream()
	x.note = "stream error: " + err.Error()
	x.h.opts.Log(wasmhost.LogError, "server: "+x.note)
	if x.respHeaders {
		panic(http.ErrAbortHandler)
	}
	x.sendProxyReply(http.StatusServiceUnavailable, "service unavailable")
	return true
}

// startUpstream sends the request the plugin released to the upstream.
// Its body, if any is still to come, is streamed through a pipe.
func (x *exchange) startUpstream(st wasmhost.Step) {
	x.upStarted = true
	method, _ := wasmhost.HeaderValue(st.Headers, ":method")
	target, _ := wasmhost.HeaderValue(st.Headers, ":path")
	authority, _ := wasmhost.HeaderValue(st.Headers, ":authority")
	path, query, _ := strings.Cut(target, "?")
	req := &http.Request{
		Method:     method,
		URL:        targetURL("http", authority, path, query),
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header, len(st.Headers)),
		Host:       authority,
	}
	contentLength := int64(-1)
	for _, kv := range st.Headers {
		k := kv[0]
		switch {
		case strings.HasPrefix(k, ":") || hopByHop(k):
			continue
		case k == "content-length":
			if n, err := strconv.ParseInt(kv[1], 10, 64); err == nil && n >= 0 {
				contentLength = n
			}
			continue
		}
		req.Header.Add(k, kv[1])
	}
	switch {
	case st.EndOfStream:
		// The whole request is here: send exactly what was released.
		req.ContentLength = int64(len(st.Body))
		if len(st.Body) > 0 {
			req.Body = io.NopCloser(bytes.NewReader(st.Body))
		} else {
			req.Body = http.NoBody
		}
	default:
		pr, pw := io.Pipe()
		req.Body = pr
		req.ContentLength = contentLength
		x.upBody = pw
	}
	ctx, cancel := context.WithCancel(x.r.Context())
	x.upCancel = cancel
	x.upResult = make(chan upstreamResult, 1)
	req = req.WithContext(ctx)
	rt := x.h.opts.Upstream
	go func() {
		resp, err := rt.RoundTrip(req)
		if err != nil {
			if pr, ok := req.Body.(*io.PipeReader); ok {
				pr.CloseWithError(err) // unblock the handler's writes
			}
		}
		x.upResult <- upstreamResult{resp, err}
	}()
	if !st.EndOfStream && len(st.Body) > 0 {
		if _, err := x.upBody.Write(st.Body); err != nil {
			x.closeUpstreamBody()
		}
	}
}

func (x *exchange) closeUpstreamBody() {
	if x.upBody != nil {
		x.upBody.Close()
		x.upBody = nil
	}
}

// abortUpstream cancels an upstream request still in flight and waits
// for it to give up, closing any response it got.
func (x *exchange) abortUpstream() {
	if x.upBody != nil {
		x.upBody.CloseWithError(errAborted)
		x.upBody = nil
	}
	if x.upCancel == nil {
		return
	}
	x.upCancel()
	x.upCancel = nil
	if x.upResult != nil {
		res := <-x.upResult
		x.upResult = nil
		if res.resp != nil {
			res.resp.Body.Close()
		}
	}
}

// responsePhase waits for the upstream and runs its response through the
// plugin to the client.
func (x *exchange) responsePhase() {
	if x.upResult == nil { // cannot happen: the request ended without headers
		x.streamError(errors.New("the plugin released the end of the request without its headers"))
		return
	}
	timer := time.NewTimer(x.h.opts.UpstreamTimeout)
	defer timer.Stop()
	var res upstreamResult
	select {
	case res = <-x.upResult:
		x.upResult = nil
	case <-timer.C:
		x.abortUpstream()
		x.note = "upstream timeout"
		x.h.opts.Log(wasmhost.LogWarn, "server: upstream request timeout after "+x.h.opts.UpstreamTimeout.String())
		x.respondThroughPlugin(http.StatusGatewayTimeout, "upstream request timeout")
		return
	case <-x.r.Context().Done():
		return // the client went away; the deferred abort cleans up
	}
	if x.upCancel != nil {
		defer func() { x.upCancel(); x.upCancel = nil }()
	}
	if res.err != nil {
		x.note = "upstream error"
		x.h.opts.Log(wasmhost.LogWarn, "server: upstream: "+res.err.Error())
		// Envoy's router answers a connection failure with 503, and the
		// filter sees that reply like any response.
		x.respondThroughPlugin(http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers")
		return
	}
	resp := res.resp
	defer resp.Body.Close()
	headers := make([][2]string, 0, len(resp.Header)+1)
	conn := resp.Header.Values("Connection")
	for _, kv := range flatten(resp.Header) {
		if !hopByHop(kv[0]) && !nominated(conn, kv[0]) {
			headers = append(headers, kv)
		}
	}
	noBody := resp.ContentLength == 0 || x.r.Method == http.MethodHead ||
		resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified
	hasTrailers := len(resp.Trailer) > 0
	if x.onResponseStep(x.s.ResponseHeaders(resp.StatusCode, headers, noBody && !hasTrailers)) {
		return
	}
	if !noBody || hasTrailers {
		if x.feedBody(resp.Body, true, hasTrailers, func() [][2]string { return flatten(resp.Trailer) }) {
			return
		}
	}
	x.waitResponse()
}

// respondThroughPlugin feeds a reply of the proxy itself (503, 504) to the
// response phase, as Envoy's router's local replies pass the filters.
func (x *exchange) respondThroughPlugin(status int, body string) {
	headers := [][2]string{{"content-type", "text/plain"}, {"content-length", strconv.Itoa(len(body))}}
	if x.onResponseStep(x.s.ResponseHeaders(status, headers, false)) {
		return
	}
	if x.onResponseStep(x.s.ResponseBody([]byte(body), true)) {
		return
	}
	x.waitResponse()
}

// waitResponse waits for the plugin to release a response it still holds.
func (x *exchange) waitResponse() {
	if x.respDone {
		return
	}
	ctx, cancel := context.WithTimeout(x.r.Context(), x.h.opts.PauseTimeout)
	defer cancel()
	for !x.respDone {
		st, err := x.s.Wait(ctx)
		switch {
		case err == nil:
		case x.r.Context().Err() != nil:
			return // the client went away
		case errors.Is(err, wasmhost.ErrPaused):
			x.note = "response paused past the pause timeout"
			x.sendProxyReply(http.StatusGatewayTimeout, "response timeout") // a reset once headers went out
			return
		default:
			x.streamError(err)
			return
		}
		if !st.Response && st.Action != wasmhost.LocalReply && st.Action != wasmhost.Reset {
			continue
		}
		if x.onResponseStep(st, nil) {
			return
		}
	}
}

// onResponseStep writes what a response phase released to the client. It
// returns true when the exchange is over.
func (x *exchange) onResponseStep(st wasmhost.Step, err error) bool {
	if err != nil {
		return x.streamError(err)
	}
	switch st.Action {
	case wasmhost.LocalReply:
		if x.respHeaders { // the host resets instead; be safe
			panic(http.ErrAbortHandler)
		}
		x.sendLocal(st.Local)
		return true
	case wasmhost.Reset:
		x.note = "reset by the plugin"
		panic(http.ErrAbortHandler)
	}
	w := x.w
	if st.Headers != nil && !x.respHeaders {
		status := 0
		if s, ok := wasmhost.HeaderValue(st.Headers, ":status"); ok {
			status, _ = strconv.Atoi(s)
		}
		if !validStatus(status) {
			x.note = fmt.Sprintf("invalid :status %d", status)
			status = http.StatusBadGateway
		}
		copyHeaders(w.Header(), st.Headers)
		noSniff(w.Header())
		if st.EndOfStream && st.Trailers == nil && bodyAllowed(x.r.Method, status) {
			// The whole body is known: its length is exact, whatever the
			// plugin did to it.
			w.Header().Set("Content-Length", strconv.Itoa(len(st.Body)))
		}
		if st.Trailers != nil {
			w.Header().Del("Content-Length")
		}
		x.respHeaders = true
		x.status = status
		w.WriteHeader(status)
	}
	if len(st.Body) > 0 {
		n, err := w.Write(st.Body)
		x.sent += int64(n)
		if err != nil {
			panic(http.ErrAbortHandler) // the client went away
		}
		if !st.EndOfStream {
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
		}
	}
	for _, kv := range st.Trailers {
		if ValidToken(kv[0]) {
			w.Header().Add(http.TrailerPrefix+kv[0], kv[1])
		}
	}
	if st.EndOfStream {
		x.respDone = true
	}
	return x.respDone
}

// sendLocal writes a local reply of the plugin (or of the host: 503 after a
// VM failure, 413) to the client.
func (x *exchange) sendLocal(lr *wasmhost.LocalResponse) {
	if lr == nil {
		x.sendProxyReply(http.StatusInternalServerError, "internal error")
		return
	}
	status := lr.Status
	if !validStatus(status) {
		x.note = fmt.Sprintf("invalid local reply status %d", status)
		status = http.StatusInternalServerError
	}
	if lr.Details != "" {
		x.note = strings.TrimSpace(x.note + " details=" + lr.Details)
	}
	copyHeaders(x.w.Header(), lr.Headers)
	noSniff(x.w.Header())
	x.w.Header().Set("Content-Length", strconv.Itoa(len(lr.Body)))
	x.status = status
	x.respHeaders, x.respDone = true, true
	x.w.WriteHeader(status)
	n, _ := x.w.Write(lr.Body)
	x.sent += int64(n)
}

// sendProxyReply answers the client without the plugin (the stream is
// over or the host is gone).
func (x *exchange) sendProxyReply(status int, body string) {
	if x.respHeaders {
		panic(http.ErrAbortHandler)
	}
	x.w.Header().Set("Content-Type", "text/plain")
	x.w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	x.status = status
	x.respHeaders, x.respDone = true, true
	x.w.WriteHeader(status)
	n, _ := io.WriteString(x.w, body)
	x.sent += int64(n)
}

// copyHeaders adds the regular headers of h to dst, leaving out
// pseudo-headers, hop-by-hop headers, content-length (the caller sets it)
// and names that are not HTTP tokens.
func copyHeaders(dst http.Header, h [][2]string) {
	for _, kv := range h {
		k := strings.ToLower(kv[0])
		if strings.HasPrefix(k, ":") || hopByHop(k) || !ValidToken(k) {
			continue
		}
		if k == "content-length" {
			dst.Set("Content-Length", kv[1])
			continue
		}
		dst.Add(k, kv[1])
	}
}

// noSniff keeps net/http from labelling a body that has no Content-Type:
// its ResponseWriter would sniff one (an upstream's "<script>…" would
// reach the client as text/html), where Envoy sends the response as it
// is. A nil value suppresses the sniffing and writes no header.
func noSniff(h http.Header) {
	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil
	}
}

// bodyAllowed reports whether a response to method with status carries a
// body whose length Content-Length gives (not HEAD, 1xx, 204 or 304).
func bodyAllowed(method string, status int) bool {
	return method != http.MethodHead && status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// validStatus reports whether net/http can send status as a final
// response.
func validStatus(s int) bool { return s >= 200 && s <= 999 }

// ValidToken reports whether s is an HTTP token (RFC 9110 section 5.6.2),
// the syntax of a header name and of a method.
func ValidToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
