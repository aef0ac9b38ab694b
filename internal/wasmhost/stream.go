package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// ErrStreamEnded is returned when a phase is fed after the stream ended
// (local reply, reset, or Close).
var ErrStreamEnded = errors.New("wasmhost: stream already ended")

// ErrPaused is wrapped in the error of ProcessRequest, ProcessResponse and
// Wait when ctx ends while the plugin still holds the stream.
var ErrPaused = errors.New("wasmhost: the plugin paused the stream and did not resume it")

// Details of local replies the host itself sends, as Envoy's.
const (
	DetailsWasmFailStream   = "wasm_fail_stream"
	DetailsRequestTooLarge  = "request_payload_too_large"
	DetailsResponseTooLarge = "response_payload_too_large"
)

// StreamInfo describes a stream's downstream connection.
type StreamInfo struct {
	// SourceAddress is the client's "ip:port": properties source.address
	// and source.port.
	SourceAddress string
	// DestinationAddress is the local "ip:port" the client reached:
	// destination.address and destination.port.
	DestinationAddress string
	// Protocol is request.protocol; "" means "HTTP/1.1".
	Protocol string
	// ConnectionID is connection.id and connection_id; 0 means a
	// host-wide counter.
	ConnectionID uint64
}

var connectionIDs atomic.Uint64

// RequestHead is what RequestHeaders turns into the request header map.
type RequestHead struct {
	// Method, Path, Authority and Scheme become :method, :path,
	// :authority and :scheme; empty means GET, /, the "host" header,
	// and http.
	Method, Path, Authority, Scheme string
	// Headers are the regular headers; names are lower-cased, pseudo
	// headers and "host" are dropped. x-request-id is added (a random UUID)
	// when absent.
	Headers [][2]string
}

// Action is what a Step asks the caller to do.
type Action int

const (
	// Continue: the plugin holds nothing of this direction; forward what
	// the Step releases and keep feeding.
	Continue Action = iota
	// Pause: the plugin holds data of this direction. Keep feeding (body,
	// trailers); held data comes out of a later Step or of Wait. After a
	// headers callback that stopped (see
	// Options.AllowOnHeadersStopIteration) what is fed is held without
	// reaching the plugin until it continues.
	Pause
	// LocalReply: the stream ended with Step.Local; send it downstream and
	// forward nothing more.
	LocalReply
	// Reset: the stream must be aborted (Envoy resets it): the response
	// had already started when the plugin replied locally, failed closed
	// or called proxy_close_stream.
	Reset
)

func (a Action) String() string {
	switch a {
	case Continue:
		return "continue"
	case Pause:
		return "pause"
	case LocalReply:
		return "local_reply"
	case Reset:
		return "reset"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Step is the outcome of one phase: what the plugin releases now.
type Step struct {
	Action Action
	// Response tells the direction the released data belongs to.
	Response bool
	// Headers are the header map, pseudo-headers first, when released by
	// this step; nil otherwise.
	Headers [][2]string
	// Body is the body bytes released by this step, in order.
	Body []byte
	// Trailers are released trailers; nil when none.
	Trailers [][2]string
	// EndOfStream: this step releases the end of the direction.
	EndOfStream bool
	// Local is the reply when Action is LocalReply.
	Local *LocalResponse
}

// LocalResponse is a reply the stream ended with instead of the upstream's.
type LocalResponse struct {
	Status int
	// Headers exclude :status. A reply sent during the request phase went
	// through the plugin's response callbacks, which may have changed them.
	Headers [][2]string
	Body    []byte
	// Details is Envoy's response code details: the plugin's, or
	// wasm_fail_stream / request_payload_too_large / response_payload_too_large.
	Details string
	// GrpcStatus is the plugin's gRPC status argument (-1: none).
	GrpcStatus int32
}

type hstate uint8

const (
	stNone hstate = iota
	stHeld
	stReleased
)

// Body callback results (proxy-wasm FilterDataStatus). cpp-host turns
// any larger value into StopIterationNoBuffer.
const (
	dataContinue      = 0
	dataStopBuffer    = 1 // StopIterationAndBuffer, the Go SDK's ActionPause
	dataStopWatermark = 2 // StopIterationAndWatermark
	dataStopNoBuffer  = 3 // StopIterationNoBuffer
)

// dataAction is cpp-host's convertVmCallResultToFilterDataStatus.
func dataAction(r uint64) uint64 { return min(r, dataStopNoBuffer) }

// dir is one direction (request or response) of a stream.
//
// A headers callback that stops without Options.AllowOnHeadersStopIteration
// sets stopAll (Envoy's StopAllIterationAndWatermark): body chunks and
// trailers are then held without any callback until the plugin continues
// (continueAll).
//
// Body chunks follow Envoy's filter manager and Context::decodeData: the
// plugin sees the chunk alone, unless its previous body callback returned
// StopIterationAndBuffer, in which case the chunk is appended to the held
// body and the plugin sees (and may edit) all of it. After a callback
// that stops, the chunk joins the held body (Buffer, Watermark) or is
// dropped (NoBuffer: Envoy leaves the data to the filter); a continue
// releases the held body with the chunk.
type dir struct {
	response  bool
	hdr       [][2]string
	hdrState  hstate
	body      []byte // body held for this direction (Envoy's buffered data)
	chunk     []byte // the chunk of the running body callback when seen alone
	viewBody  bool   // the plugin's body buffer is body, not chunk
	bufActive bool   // a body buffer is visible to the plugin (proxy_get_buffer_bytes)
	buffering bool   // the last body callback returned StopIterationAndBuffer
	bodyHeld  bool   // the last body callback stopped (any Stop* result)
	stopAll   bool   // the headers callback stopped all iteration: no body or trailers callback until continued
	heldData  bool   // a body chunk (even an empty one) arrived while stopAll
	trl       [][2]string
	trlState  hstate
	end       bool  // end of stream received
	bodyBytes int64 // body bytes received
	done      bool  // end of stream released
}

// view is the body buffer the plugin sees.
func (d *dir) view() *[]byte {
	if d.viewBody {
		return &d.body
	}
	return &d.chunk
}

// holdChunk moves the chunk, when the plugin saw it alone, to the end of
// the held body.
func (d *dir) holdChunk() {
	switch {
	case d.viewBody || len(d.chunk) == 0:
	case len(d.body) == 0:
		d.body = d.chunk
	default:
		d.body = append(d.body, d.chunk...)
	}
	d.chunk = nil
}

// clearBody forgets every body byte of the direction.
func (d *dir) clearBody() {
	d.body, d.chunk = nil, nil
	d.viewBody, d.bufActive, d.buffering, d.bodyHeld, d.heldData = false, false, false, false, false
}

func (d *dir) held() bool {
	return d.hdrState == stHeld || d.bodyHeld || d.trlState == stHeld
}

// release hands out everything held.
func (d *dir) release() Step {
	st := Step{Action: Continue, Response: d.response}
	d.stopAll = false
	if d.hdrState == stHeld {
		st.Headers = cloneHeaders(d.hdr)
		d.hdrState = stReleased
	}
	// A chunk not yet settled (the phase ran without the plugin) goes too.
	d.holdChunk()
	if len(d.body) > 0 {
		st.Body = d.body
	}
	d.clearBody()
	if d.trlState == stHeld {
		st.Trailers = cloneHeaders(d.trl)
		d.trlState = stReleased
	}
	if d.end && !d.done && d.hdrState == stReleased {
		st.EndOfStream, d.done = true, true
	}
	return st
}

// Stream is one HTTP exchange on one worker: an HTTP context in the plugin.
// Feed the request phases in order, then the response phases, then Close.
type Stream struct {
	h    *Host
	w    *worker
	v    *vm
	pc   *pctx
	info StreamInfo

	start time.Time

	created bool // proxy_on_context_create ran
	bypass  bool // fail_open after a failure: the VM is not called
	ended   bool // local reply or reset: nothing more is forwarded
	closed  bool
	failed  bool // this stream met a failed VM (counted once)
	active  bool // one of this stream's callbacks is running
	activeD *dir // direction of the running callback

	req, resp dir

	pendingLocal *LocalResponse // proxy_send_local_response during a call
	pendingReset bool           // proxy_close_stream during a call
	cont         [2]bool        // proxy_continue_stream for the running direction
	inLocalReply bool
	inLog        bool // proxy_on_log is running: header maps are the access log's

	props   map[string][]byte // proxy_set_property
	pending []Step            // released outside the stream's own calls
	signal  chan struct{}
}

func (w *worker) newStream(info StreamInfo) *Stream {
	if info.Protocol == "" {
		info.Protocol = "HTTP/1.1"
	}
	if info.ConnectionID == 0 {
		info.ConnectionID = connectionIDs.Add(1)
	}
	s := &Stream{h: w.h, w: w, info: info, start: w.h.now(), signal: make(chan struct{}, 1)}
	s.resp.response = true
	w.mu.Lock()
	s.v = w.acquire()
	if s.v != nil && s.v.usable() {
		s.pc = s.v.allocContext(s)
	}
	w.mu.Unlock()
	return s
}

// Worker is the index of the stream's worker.
func (s *Stream) Worker() int { return s.w.idx }

// ContextID is the plugin's context id for the stream (0 when the VM had
// failed before the stream started).
func (s *Stream) ContextID() uint32 {
	if s.pc == nil {
		return 0
	}
	return s.pc.id
}

func (s *Stream) dirOf(response bool) *dir {
	if response {
		return &s.resp
	}
	return &s.req
}

// lock takes the worker and checks the stream can still be fed.
func (s *Stream) lock() error {
	s.w.mu.Lock()
	if s.h.closed.Load() {
		s.w.mu.Unlock()
		return ErrClosed
	}
	if s.closed || s.ended {
		s.w.mu.Unlock()
		return ErrStreamEnded
	}
	return nil
}

// vmOK reports whether callbacks run on this stream.
func (s *Stream) vmOK() bool { return !s.bypass && s.v != nil && s.pc != nil && s.v.usable() }

// callback runs one of this stream's callbacks on direction d.
func (s *Stream) callback(d *dir, fn api.Function, args ...uint64) (uint64, bool) {
	if fn == nil {
		return 0, s.v.usable() // a missing callback continues, as in Envoy
	}
	// A callback may run from an action deferred until the end of another
	// of this stream's callbacks (continueAll): that one is still running.
	wasActive, wasD := s.active, s.activeD
	s.active, s.activeD = true, d
	r, ok := s.v.call(fn, s.pc, args...)
	s.active, s.activeD = wasActive, wasD
	return r, ok
}

func (s *Stream) ensureCreated() bool {
	if s.created {
		return true
	}
	s.created = true
	if s.v.fn.onContextCreate == nil {
		return true
	}
	_, ok := s.v.call(s.v.fn.onContextCreate, s.pc, uint64(s.pc.id), rootContextID)
	return ok
}

// RequestHeaders feeds the request headers (proxy_on_request_headers).
// endOfStream says no body and no trailers follow.
func (s *Stream) RequestHeaders(head RequestHead, endOfStream bool) (Step, error) {
	if err := s.lock(); err != nil {
		return Step{}, err
	}
	defer s.w.mu.Unlock()
	d := &s.req
	if d.hdrState != stNone {
		return Step{}, errors.New("wasmhost: RequestHeaders called twice")
	}
	d.hdr = buildRequestHeaders(head)
	d.hdrState = stHeld
	d.end = endOfStream
	return s.finish(d, func() Step {
		if !s.ensureCreated() {
			return s.failStep(d)
		}
		r, ok := s.callback(d, s.v.fn.onRequestHeaders, uint64(s.pc.id), uint64(len(d.hdr)), b2u(endOfStream))
		return s.afterHeaders(d, r, ok)
	}), nil
}

// RequestBody feeds one request body chunk (proxy_on_request_body). After
// a body callback that returned StopIterationAndBuffer (the Go SDK's
// ActionPause) the chunk is appended to the buffered body and the plugin
// is told, and sees, the whole buffered size, as Envoy does; past
// Options.BufferLimit the request ends with 413. After
// StopIterationAndWatermark (held, not limited) or StopIterationNoBuffer
// (dropped) the plugin sees the chunk alone. While the request headers
// callback's stop holds all iteration (Options.AllowOnHeadersStopIteration
// false, the default) the chunk is held, not limited, and no callback runs:
// the plugin gets what was held when it continues.
func (s *Stream) RequestBody(chunk []byte, endOfStream bool) (Step, error) {
	return s.body(&s.req, chunk, endOfStream)
}

// RequestTrailers feeds the request trailers (proxy_on_request_trailers);
// they end the request. While the headers callback's stop holds all
// iteration they are held and go to the plugin when it continues.
func (s *Stream) RequestTrailers(trailers [][2]string) (Step, error) {
	return s.trailers(&s.req, trailers)
}

// ResponseHeaders feeds the upstream's response headers
// (proxy_on_response_headers). endOfStream says no body or trailers follow.
func (s *Stream) ResponseHeaders(status int, headers [][2]string, endOfStream bool) (Step, error) {
	if err := s.lock(); err != nil {
		return Step{}, err
	}
	defer s.w.mu.Unlock()
	d := &s.resp
	if d.hdrState != stNone {
		return Step{}, errors.New("wasmhost: ResponseHeaders called twice")
	}
	if status < 100 || status > 999 {
		return Step{}, fmt.Errorf("wasmhost: response status %d: want 100..999", status)
	}
	d.hdr = append([][2]string{{":status", strconv.Itoa(status)}}, normalizeHeaders(headers)...)
	d.hdrState = stHeld
	d.end = endOfStream
	return s.finish(d, func() Step {
		r, ok := s.callback(d, s.v.fn.onResponseHeaders, uint64(s.pc.id), uint64(len(d.hdr)), b2u(endOfStream))
		return s.afterHeaders(d, r, ok)
	}), nil
}

// ResponseBody feeds one response body chunk (proxy_on_response_body),
// buffered like RequestBody; past Options.BufferLimit the stream ends with
// 500 (or a reset once the response headers went out).
func (s *Stream) ResponseBody(chunk []byte, endOfStream bool) (Step, error) {
	return s.body(&s.resp, chunk, endOfStream)
}

// ResponseTrailers feeds the response trailers (proxy_on_response_trailers).
func (s *Stream) ResponseTrailers(trailers [][2]string) (Step, error) {
	return s.trailers(&s.resp, trailers)
}

func (s *Stream) body(d *dir, chunk []byte, endOfStream bool) (Step, error) {
	if err := s.lock(); err != nil {
		return Step{}, err
	}
	defer s.w.mu.Unlock()
	if err := s.checkOrder(d, "body"); err != nil {
		return Step{}, err
	}
	d.bodyBytes += int64(len(chunk))
	d.end = endOfStream
	if d.stopAll {
		// Envoy's handleDataIfStopAll: buffered in the filter manager, in
		// watermark mode (flow control, not 413), for the plugin to get
		// when it continues.
		d.body = append(d.body, chunk...)
		d.heldData = true
		return s.finish(d, func() Step { return Step{Action: Pause, Response: d.response} }), nil
	}
	if d.buffering {
		if len(d.body)+len(chunk) > s.h.opts.BufferLimit {
			return s.tooLarge(d), nil
		}
		d.body = append(d.body, chunk...)
		d.chunk, d.viewBody = nil, true
	} else {
		d.chunk, d.viewBody = append([]byte(nil), chunk...), false
	}
	d.bufActive = true
	return s.finish(d, func() Step { return s.bodyCallback(d, endOfStream) }), nil
}

// bodyCallback runs the body callback on the body buffer d.view() and
// settles the chunk by its result.
func (s *Stream) bodyCallback(d *dir, endOfStream bool) Step {
	fn := s.v.fn.onRequestBody
	if d.response {
		fn = s.v.fn.onResponseBody
	}
	r, ok := s.callback(d, fn, uint64(s.pc.id), uint64(len(*d.view())), b2u(endOfStream))
	act := uint64(dataContinue)
	if ok && !s.cont[b2i(d.response)] {
		act = dataAction(r)
	}
	if act == dataStopNoBuffer {
		d.chunk = nil
	}
	d.holdChunk()
	d.buffering = act == dataStopBuffer
	d.bodyHeld = act != dataContinue
	d.viewBody, d.bufActive = d.buffering, d.buffering
	return s.afterCallback(d, r, ok)
}

func (s *Stream) trailers(d *dir, trailers [][2]string) (Step, error) {
	if err := s.lock(); err != nil {
		return Step{}, err
	}
	defer s.w.mu.Unlock()
	if err := s.checkOrder(d, "trailers"); err != nil {
		return Step{}, err
	}
	d.trl = normalizeHeaders(trailers)
	d.trlState = stHeld
	d.end = true
	if d.stopAll {
		return s.finish(d, func() Step { return Step{Action: Pause, Response: d.response} }), nil
	}
	return s.finish(d, func() Step { return s.trailersCallback(d) }), nil
}

// trailersCallback runs the trailers callback on the held trailers.
func (s *Stream) trailersCallback(d *dir) Step {
	fn := s.v.fn.onRequestTrailers
	if d.response {
		fn = s.v.fn.onResponseTrailers
	}
	r, ok := s.callback(d, fn, uint64(s.pc.id), uint64(len(d.trl)))
	return s.afterCallback(d, r, ok)
}

func (s *Stream) checkOrder(d *dir, what string) error {
	name := "request"
	if d.response {
		name = "response"
	}
	switch {
	case d.hdrState == stNone:
		return fmt.Errorf("wasmhost: %s %s before %s headers", name, what, name)
	case d.end:
		return fmt.Errorf("wasmhost: %s %s after the end of the %s", name, what, name)
	}
	return nil
}

// finish runs the phase (unless the stream bypasses or meets a failed
// VM) and merges what was released asynchronously before it.
func (s *Stream) finish(d *dir, run func() Step) Step {
	before := s.takePending(d.response)
	if t, ok := before.terminal(); ok {
		return t
	}
	var st Step
	switch {
	case s.bypass:
		st = d.release()
	case !s.vmOK():
		st = s.failStep(d)
	default:
		st = run()
	}
	if st.Action == LocalReply || st.Action == Reset {
		return st
	}
	if before.n > 0 {
		st = merge(before.step, st)
	}
	after := s.takePending(d.response)
	if t, ok := after.terminal(); ok {
		return t
	}
	if after.n > 0 {
		st = merge(st, after.step)
	}
	return st
}

// pendingSet is what takePending found.
type pendingSet struct {
	step Step
	n    int // steps merged into step
	term *Step
}

func (p pendingSet) terminal() (Step, bool) {
	if p.term != nil {
		return *p.term, true
	}
	return Step{}, false
}

// takePending removes pending steps of one direction (and any terminal
// step), merged in order.
func (s *Stream) takePending(response bool) pendingSet {
	var out pendingSet
	out.step.Response = response
	kept := s.pending[:0]
	for _, p := range s.pending {
		switch {
		case p.Action == LocalReply || p.Action == Reset:
			pp := p
			out.term = &pp
		case p.Response == response:
			if out.n == 0 {
				out.step = p
			} else {
				out.step = merge(out.step, p)
			}
			out.n++
		default:
			kept = append(kept, p)
		}
	}
	s.pending = kept
	if out.term != nil {
		s.pending = s.pending[:0]
	}
	return out
}

// merge appends b's releases after a's; b's Action is the newer state.
func merge(a, b Step) Step {
	out := b
	if a.Headers != nil && b.Headers == nil {
		out.Headers = a.Headers
	}
	if len(a.Body) > 0 {
		out.Body = append(append([]byte(nil), a.Body...), b.Body...)
	}
	if a.Trailers != nil && b.Trailers == nil {
		out.Trailers = a.Trailers
	}
	out.EndOfStream = a.EndOfStream || b.EndOfStream
	return out
}

// afterCallback turns a callback's result into a Step, applying what the
// plugin asked during the call (local reply, reset, continue).
func (s *Stream) afterCallback(d *dir, r uint64, ok bool) Step {
	if !ok {
		return s.failStep(d)
	}
	if s.pendingReset {
		return s.doReset()
	}
	if lr := s.pendingLocal; lr != nil {
		s.pendingLocal = nil
		return s.sendLocal(lr)
	}
	idx := b2i(d.response)
	cont := uint32(r) == 0 || s.cont[idx]
	s.cont[idx] = false
	if cont {
		return d.release()
	}
	return Step{Action: Pause, Response: d.response}
}

// afterHeaders is afterCallback for a headers callback. A stop there is
// cpp-host's convertVmCallResultToFilterHeadersStatus: without
// Options.AllowOnHeadersStopIteration it becomes StopAllIterationAndWatermark
// (d.stopAll), with it a plain StopIteration.
func (s *Stream) afterHeaders(d *dir, r uint64, ok bool) Step {
	st := s.afterCallback(d, r, ok)
	// A continue that ran at the end of the callback (an action deferred
	// until no guest code runs) may already have released the headers.
	if st.Action == Pause && d.hdrState == stHeld && !s.h.opts.AllowOnHeadersStopIteration {
		d.stopAll = true
	}
	return st
}

// continueAll continues a direction whose headers callback stopped all
// iteration, as Envoy's ActiveStreamFilterBase::commonContinue does: the
// headers go on; if body data arrived meanwhile (even an empty chunk) the
// plugin gets all of it in one body callback (doData from the current
// filter), with end_of_stream when the direction ended without trailers;
// then trailers that arrived go to the trailers callback (doTrailers),
// whatever the body callback returned. What the callbacks return then
// applies as usual: a body callback that stops holds the body, and a
// StopIterationAndBuffer makes later chunks join it.
func (s *Stream) continueAll(d *dir) Step {
	d.stopAll = false
	if !d.heldData && d.trlState != stHeld {
		return d.release()
	}
	if !s.vmOK() {
		return s.failStep(d)
	}
	st := Step{Action: Continue, Response: d.response, Headers: cloneHeaders(d.hdr)}
	d.hdrState = stReleased
	trailers := d.trlState == stHeld
	if d.heldData {
		d.heldData = false
		if trailers {
			// Out of the body callback's release: they come after it.
			d.trlState, d.end = stNone, false
		}
		d.chunk, d.viewBody, d.bufActive = nil, true, true
		bs := s.bodyCallback(d, d.end)
		if trailers {
			d.trlState, d.end = stHeld, true
		}
		if bs.Action == LocalReply || bs.Action == Reset {
			return bs
		}
		st = merge(st, bs)
	}
	switch {
	case !trailers:
	case s.bypass: // the body callback failed the VM and the policy is fail_open
		st = merge(st, d.release())
	default:
		ts := s.trailersCallback(d)
		if ts.Action == LocalReply || ts.Action == Reset {
			return ts
		}
		st = merge(st, ts)
	}
	return st
}

// failStep applies the failure policy to a stream whose VM has failed.
func (s *Stream) failStep(d *dir) Step {
	if !s.failed {
		s.failed = true
		if s.h.opts.FailurePolicy == FailOpen {
			s.h.stats.failOpen.Add(1)
		} else {
			s.h.stats.failClosed.Add(1)
		}
	}
	if s.h.opts.FailurePolicy == FailOpen {
		s.bypass = true
		st := d.release()
		if other := s.dirOf(!d.response); other.held() {
			s.push(other.release())
		}
		return st
	}
	return s.directLocal(&LocalResponse{Status: 503, Details: DetailsWasmFailStream, GrpcStatus: 14})
}

// tooLarge ends a stream whose paused body outgrew the buffer limit.
func (s *Stream) tooLarge(d *dir) Step {
	if !d.response {
		return s.sendLocal(&LocalResponse{Status: 413, Body: []byte("Payload Too Large"), Details: DetailsRequestTooLarge, GrpcStatus: -1})
	}
	return s.directLocal(&LocalResponse{Status: 500, Body: []byte("Internal Server Error"), Details: DetailsResponseTooLarge, GrpcStatus: -1})
}

func (s *Stream) doReset() Step {
	s.pendingReset = false
	s.ended = true
	s.h.stats.resets.Add(1)
	s.req.clearBody()
	s.resp.clearBody()
	return Step{Action: Reset}
}

// sendLocal sends a local reply the way Envoy's filter manager does:
// through the plugin's response callbacks when no response has started,
// directly when upstream response headers are held, as a reset once
// response headers went downstream.
func (s *Stream) sendLocal(lr *LocalResponse) Step {
	if s.resp.hdrState != stNone || !s.vmOK() {
		return s.directLocal(lr)
	}
	hdr := localReplyHeaders(lr)
	d := &s.resp
	d.hdr, d.hdrState, d.end = hdr, stHeld, len(lr.Body) == 0
	s.inLocalReply = true
	_, ok := s.callback(d, s.v.fn.onResponseHeaders, uint64(s.pc.id), uint64(len(d.hdr)), b2u(d.end))
	if ok && len(lr.Body) > 0 {
		d.clearBody()
		d.body, d.viewBody, d.bufActive, d.end = append([]byte(nil), lr.Body...), true, true, true
		_, ok = s.callback(d, s.v.fn.onResponseBody, uint64(s.pc.id), uint64(len(d.body)), 1)
	}
	s.inLocalReply = false
	s.pendingLocal, s.pendingReset, s.cont = nil, false, [2]bool{}
	if !ok && s.h.opts.FailurePolicy != FailOpen {
		d.hdrState = stNone
		s.failed = true
		s.h.stats.failClosed.Add(1)
		return s.directLocal(&LocalResponse{Status: 503, Details: DetailsWasmFailStream, GrpcStatus: 14})
	}
	out := *lr
	out.Status, out.Headers = splitStatus(d.hdr, lr.Status)
	if d.bufActive || len(lr.Body) > 0 {
		out.Body = d.body
	}
	return s.endLocal(&out)
}

// directLocal sends a reply without the plugin (or resets).
func (s *Stream) directLocal(lr *LocalResponse) Step {
	if s.resp.hdrState == stReleased {
		return s.doReset()
	}
	out := *lr
	out.Status, out.Headers = splitStatus(localReplyHeaders(lr), lr.Status)
	return s.endLocal(&out)
}

func (s *Stream) endLocal(lr *LocalResponse) Step {
	s.ended = true
	s.req.clearBody()
	s.resp.clearBody()
	// The reply's headers are what the access log (proxy_on_log) reads.
	s.resp.hdr = append([][2]string{{":status", strconv.Itoa(lr.Status)}}, lr.Headers...)
	s.resp.hdrState = stReleased
	s.h.stats.localReplies.Add(1)
	return Step{Action: LocalReply, Response: true, Local: lr, EndOfStream: true}
}

// push records a step released outside the stream's own phase calls.
func (s *Stream) push(st Step) {
	s.pending = append(s.pending, st)
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

// resume is proxy_continue_stream from outside the direction's own call.
func (s *Stream) resume(response bool) {
	if s.ended || s.closed || s.bypass {
		return
	}
	d := s.dirOf(response)
	switch {
	case d.stopAll:
		s.push(s.continueAll(d))
	case d.held():
		s.push(d.release())
	}
}

// asyncLocal is proxy_send_local_response from another context's call.
func (s *Stream) asyncLocal() {
	lr := s.pendingLocal
	s.pendingLocal = nil
	if lr == nil || s.ended || s.closed {
		return
	}
	s.push(s.sendLocal(lr))
}

// asyncReset is proxy_close_stream from another context's call.
func (s *Stream) asyncReset() {
	if !s.pendingReset || s.ended || s.closed {
		s.pendingReset = false
		return
	}
	s.push(s.doReset())
}

// Wait blocks until the plugin releases held data of either direction
// outside the stream's own phase calls (proxy_continue_stream,
// proxy_send_local_response or proxy_close_stream from a tick, a queue
// callback or another stream), or until ctx ends.
func (s *Stream) Wait(ctx context.Context) (Step, error) {
	return s.waitFor(ctx, func(Step) bool { return true })
}

// waitFor pops the first pending step accepted by want.
func (s *Stream) waitFor(ctx context.Context, want func(Step) bool) (Step, error) {
	for {
		s.w.mu.Lock()
		for i, st := range s.pending {
			if want(st) {
				s.pending = append(s.pending[:i:i], s.pending[i+1:]...)
				s.w.mu.Unlock()
				return st, nil
			}
		}
		closed := s.closed
		s.w.mu.Unlock()
		if closed {
			return Step{}, ErrStreamEnded
		}
		select {
		case <-s.signal:
		case <-s.h.done:
			return Step{}, ErrClosed
		case <-ctx.Done():
			return Step{}, fmt.Errorf("%w: %w", ErrPaused, ctx.Err())
		}
	}
}

// Close ends the stream: proxy_on_done, proxy_on_log and proxy_on_delete
// run (once) if the plugin's context was created and the VM is healthy.
func (s *Stream) Close() {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	if s.pc == nil {
		return
	}
	v := s.v
	if s.created && v.usable() {
		id := uint64(s.pc.id)
		if v.fn.onDone != nil {
			v.call(v.fn.onDone, s.pc, id)
		}
		if v.fn.onLog != nil {
			s.inLog = true
			v.call(v.fn.onLog, s.pc, id)
			s.inLog = false
		}
		if v.fn.onDelete != nil {
			v.call(v.fn.onDelete, s.pc, id)
		}
	}
	delete(v.contexts, s.pc.id)
}

// Request is a whole request for ProcessRequest.
type Request struct {
	RequestHead
	// Body is fed chunk by chunk, in order.
	Body     [][]byte
	Trailers [][2]string
}

// Response is a whole upstream response for ProcessResponse.
type Response struct {
	Status   int
	Headers  [][2]string
	Body     [][]byte
	Trailers [][2]string
}

// Verdict is the outcome of a whole phase.
type Verdict struct {
	// Local is set when the stream ended with a local reply; nothing was
	// (or should be) forwarded.
	Local *LocalResponse
	// Reset is set when the stream must be aborted.
	Reset bool
	// Headers, Body and Trailers are what the plugin released, to forward
	// (request: to the upstream; response: to the client). Headers include
	// the pseudo-headers.
	Headers  [][2]string
	Body     []byte
	Trailers [][2]string
}

// Status is the response status (the local reply's or :status), 0 if none.
func (v Verdict) Status() int {
	if v.Local != nil {
		return v.Local.Status
	}
	s, _ := HeaderValue(v.Headers, ":status")
	n, _ := strconv.Atoi(s)
	return n
}

// ProcessRequest feeds a whole request and waits (until ctx ends) for the
// plugin to release all of it, or to end the stream.
func (s *Stream) ProcessRequest(ctx context.Context, req Request) (Verdict, error) {
	noBody := len(req.Body) == 0 && req.Trailers == nil
	var acc Verdict
	st, err := s.RequestHeaders(req.RequestHead, noBody)
	if done, err := acc.add(st, err); done || err != nil {
		return acc, err
	}
	for i, c := range req.Body {
		st, err = s.RequestBody(c, i == len(req.Body)-1 && req.Trailers == nil)
		if done, err := acc.add(st, err); done || err != nil {
			return acc, err
		}
	}
	if req.Trailers != nil {
		st, err = s.RequestTrailers(req.Trailers)
		if done, err := acc.add(st, err); done || err != nil {
			return acc, err
		}
	}
	return acc, s.drain(ctx, &acc, false)
}

// ProcessResponse feeds a whole upstream response and waits (until ctx
// ends) for the plugin to release it, or to replace it.
func (s *Stream) ProcessResponse(ctx context.Context, resp Response) (Verdict, error) {
	noBody := len(resp.Body) == 0 && resp.Trailers == nil
	var acc Verdict
	st, err := s.ResponseHeaders(resp.Status, resp.Headers, noBody)
	if done, err := acc.add(st, err); done || err != nil {
		return acc, err
	}
	for i, c := range resp.Body {
		st, err = s.ResponseBody(c, i == len(resp.Body)-1 && resp.Trailers == nil)
		if done, err := acc.add(st, err); done || err != nil {
			return acc, err
		}
	}
	if resp.Trailers != nil {
		st, err = s.ResponseTrailers(resp.Trailers)
		if done, err := acc.add(st, err); done || err != nil {
			return acc, err
		}
	}
	return acc, s.drain(ctx, &acc, true)
}

// add accumulates a step; done reports a terminal step.
func (v *Verdict) add(st Step, err error) (bool, error) {
	if err != nil {
		return true, err
	}
	switch st.Action {
	case LocalReply:
		v.Local = st.Local
		return true, nil
	case Reset:
		v.Reset = true
		return true, nil
	}
	if st.Headers != nil && v.Headers == nil {
		v.Headers = st.Headers
	}
	v.Body = append(v.Body, st.Body...)
	if st.Trailers != nil {
		v.Trailers = st.Trailers
	}
	return false, nil
}

// drain waits until a direction is fully released.
func (s *Stream) drain(ctx context.Context, acc *Verdict, response bool) error {
	for {
		s.w.mu.Lock()
		done := s.dirOf(response).done || s.ended
		s.w.mu.Unlock()
		if done {
			return nil
		}
		st, err := s.waitFor(ctx, func(st Step) bool {
			return st.Response == response || st.Action == LocalReply || st.Action == Reset
		})
		if err != nil {
			return err
		}
		if fin, err := acc.add(st, nil); fin || err != nil {
			return err
		}
	}
}

// Upstream answers a forwarded request for Exchange.
type Upstream func(ctx context.Context, forwarded Verdict) (Response, error)

// Exchange runs one whole exchange on a new stream: the request phase; the
// upstream, when the plugin let the request through; the response phase;
// then Close. It returns what reached the upstream (zero when nothing did)
// and what the client gets.
func (h *Host) Exchange(ctx context.Context, info StreamInfo, req Request, upstream Upstream) (forwarded, client Verdict, err error) {
	s, err := h.NewStream(info)
	if err != nil {
		return Verdict{}, Verdict{}, err
	}
	defer s.Close()
	fwd, err := s.ProcessRequest(ctx, req)
	if err != nil {
		return Verdict{}, Verdict{}, err
	}
	if fwd.Local != nil || fwd.Reset {
		return Verdict{}, fwd, nil
	}
	resp := Response{Status: 200}
	if upstream != nil {
		if resp, err = upstream(ctx, fwd); err != nil {
			return fwd, Verdict{}, err
		}
	}
	client, err = s.ProcessResponse(ctx, resp)
	return fwd, client, err
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
