package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

// trapError is a trap raised by the host itself (restricted callback,
// proc_exit, bad memory from a callback it cannot survive).
type trapError struct{ msg string }

func (e *trapError) Error() string { return e.msg }

// vmKey is the context key under which host calls find their VM.
type vmKey struct{}

// rootContextID is the id of the root (plugin) context; Envoy allocates
// it first, stream contexts follow.
const rootContextID = 1

// exports are the module's callbacks; nil when the module lacks one.
type exports struct {
	initialize, start, main                               api.Function
	malloc                                                api.Function
	onContextCreate, onVMStart, onConfigure               api.Function
	onTick, onQueueReady                                  api.Function
	onRequestHeaders, onRequestBody, onRequestTrailers    api.Function
	onResponseHeaders, onResponseBody, onResponseTrailers api.Function
	onDone, onLog, onDelete                               api.Function
}

// pctx is a Proxy-Wasm context: the root context or a stream's.
type pctx struct {
	id uint32
	s  *Stream // nil for the root context
}

// worker is one of the Host's VM slots. Its mutex serialises every call
// into its VM, like an Envoy worker thread.
type worker struct {
	h       *Host
	idx     int
	mu      sync.Mutex
	vm      *vm // current VM; may be failed
	gen     int
	retryAt time.Time // FailReload: earliest fresh VM
}

// vm is one instance of the module. All fields are guarded by w.mu.
type vm struct {
	h   *Host
	w   *worker
	gen int
	mod api.Module
	mem api.Memory
	ctx context.Context
	fn  exports

	stack  [16]uint64 // arguments and result of top-level calls
	mstack [1]uint64  // proxy_on_memory_allocate's
	depth  int        // nesting of calls into the guest

	failed  bool
	failMsg string
	closed  bool

	restriction *restriction
	cur         *pctx // context of the running callback
	effective   *pctx // proxy_set_effective_context, reset per call
	inConfigure bool  // plugin configuration is readable
	root        pctx
	contexts    map[uint32]*pctx
	nextID      uint32
	afterCall   []func()

	rootPendingDone bool
	metricIDs       map[uint32]*metric
	nextMetricID    [3]uint32

	tickPeriod time.Duration
	tickStop   chan struct{}

	outBuf [3][]byte // unterminated stdout (1) and stderr (2) output

	// startLogs collects warning-and-above plugin lines while starting.
	startLogs []string
	starting  bool
}

// newVM instantiates the module and runs Envoy's start sequence.
// The caller holds w.mu.
func (w *worker) newVM(ctx context.Context) (*vm, error) {
	h := w.h
	w.gen++
	v := &vm{
		h: h, w: w, gen: w.gen,
		root:         pctx{id: rootContextID},
		contexts:     map[uint32]*pctx{},
		nextID:       rootContextID + 1,
		metricIDs:    map[uint32]*metric{},
		nextMetricID: [3]uint32{0, 1, 2},
	}
	v.contexts[rootContextID] = &v.root
	v.ctx = context.WithValue(context.Background(), vmKey{}, v)
	cfg := wazero.NewModuleConfig().
		WithName(fmt.Sprintf("worker-%d-vm-%d", w.idx, w.gen)).
		WithStartFunctions()
	mod, err := h.rt.InstantiateModule(ctx, h.compiled, cfg)
	if err != nil {
		return nil, fmt.Errorf("wasmhost: worker %d: instantiate: %w", w.idx, err)
	}
	v.mod = mod
	v.mem = mod.ExportedMemory("memory")
	get := mod.ExportedFunction
	v.fn = exports{
		initialize: get("_initialize"), start: get("_start"), main: get("main"),
		malloc:          get("proxy_on_memory_allocate"),
		onContextCreate: get("proxy_on_context_create"),
		onVMStart:       get("proxy_on_vm_start"), onConfigure: get("proxy_on_configure"),
		onTick: get("proxy_on_tick"), onQueueReady: get("proxy_on_queue_ready"),
		onRequestHeaders: get("proxy_on_request_headers"), onRequestBody: get("proxy_on_request_body"),
		onRequestTrailers: get("proxy_on_request_trailers"), onResponseHeaders: get("proxy_on_response_headers"),
		onResponseBody: get("proxy_on_response_body"), onResponseTrailers: get("proxy_on_response_trailers"),
		onDone: get("proxy_on_done"), onLog: get("proxy_on_log"), onDelete: get("proxy_on_delete"),
	}
	if v.fn.malloc == nil {
		v.fn.malloc = get("malloc")
	}
	if err := v.startSequence(); err != nil {
		v.close()
		return nil, err
	}
	h.stats.vmCreated.Add(1)
	return v, nil
}

// startSequence is Envoy's: _initialize (or _start) with restricted
// callbacks, then root context create, proxy_on_vm_start and
// proxy_on_configure.
func (v *vm) startSequence() error {
	v.starting = true
	defer func() { v.flushOut(); v.starting = false }()
	phase := "_initialize"
	v.restriction = v.h.restrictInit
	switch {
	case v.fn.initialize != nil:
		v.call(v.fn.initialize, &v.root)
		if v.fn.main != nil && !v.failed {
			phase = "main"
			v.call(v.fn.main, &v.root, 0, 0)
		}
	case v.fn.start != nil:
		phase = "_start"
		v.call(v.fn.start, &v.root)
	}
	v.restriction = nil
	if v.failed {
		return v.startError(phase, "trapped: "+v.failMsg)
	}
	if v.fn.onContextCreate != nil {
		if _, ok := v.call(v.fn.onContextCreate, &v.root, rootContextID, 0); !ok {
			return v.startError("proxy_on_context_create", "trapped: "+v.failMsg)
		}
	}
	if v.fn.onVMStart != nil {
		r, ok := v.call(v.fn.onVMStart, &v.root, rootContextID, uint64(len(v.h.opts.VMConfig)))
		if !ok {
			return v.startError("proxy_on_vm_start", "trapped: "+v.failMsg)
		}
		if uint32(r) == 0 {
			return v.startError("proxy_on_vm_start", "returned false")
		}
	}
	if v.fn.onConfigure != nil {
		v.inConfigure = true
		r, ok := v.call(v.fn.onConfigure, &v.root, rootContextID, uint64(len(v.h.opts.PluginConfig)))
		v.inConfigure = false
		if !ok {
			return v.startError("proxy_on_configure", "trapped: "+v.failMsg)
		}
		if uint32(r) == 0 {
			return v.startError("proxy_on_configure", "returned false: the plugin refused its configuration")
		}
	}
	v.startLogs = nil
	return nil
}

// StartError reports that a VM could not start: a trap or a callback that
// returned false. Logs holds the plugin's warning, error and critical lines
// (proxy_log and stderr) written while starting, in order.
type StartError struct {
	Worker int
	// Phase is the callback: _initialize, main, _start,
	// proxy_on_context_create, proxy_on_vm_start or proxy_on_configure.
	Phase  string
	Reason string
	Logs   []string
}

func (e *StartError) Error() string {
	msg := fmt.Sprintf("wasmhost: worker %d: %s %s", e.Worker, e.Phase, e.Reason)
	if len(e.Logs) > 0 {
		msg += ": " + strings.Join(e.Logs, "; ")
	}
	return msg
}

func (v *vm) startError(phase, reason string) error {
	v.flushOut()
	return &StartError{Worker: v.w.idx, Phase: phase, Reason: reason, Logs: v.startLogs}
}

// call runs an export for context c. It returns the first result and
// whether the VM is still healthy; a trap fails the VM.
func (v *vm) call(fn api.Function, c *pctx, args ...uint64) (uint64, bool) {
	if v.failed || v.closed {
		return 0, false
	}
	savedCur, savedEff := v.cur, v.effective
	v.cur, v.effective = c, nil
	v.depth++
	copy(v.stack[:], args)
	err := fn.CallWithStack(v.ctx, v.stack[:])
	res := v.stack[0]
	v.depth--
	v.cur, v.effective = savedCur, savedEff
	if err != nil {
		v.fail(err)
		return 0, false
	}
	if v.depth == 0 {
		v.runAfterCall()
	}
	return res, !v.failed
}

// runAfterCall runs actions deferred until no guest code is on the stack,
// like Envoy's addAfterVmCallAction.
func (v *vm) runAfterCall() {
	for len(v.afterCall) > 0 && !v.failed {
		f := v.afterCall[0]
		v.afterCall = v.afterCall[1:]
		f()
	}
	v.afterCall = nil
}

// fail marks the VM failed and logs why.
func (v *vm) fail(err error) {
	if v.failed {
		return
	}
	msg := err.Error()
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		msg = fmt.Sprintf("proc_exit(%d)", exit.ExitCode())
	}
	v.flushOut()
	v.failed = true
	v.failMsg = msg
	v.stopTick()
	v.h.stats.vmFailed.Add(1)
	if v.w.vm == v {
		v.w.retryAt = v.h.now().Add(v.h.opts.ReloadBackoff)
	}
	v.h.log(LogRecord{Level: LogCritical, Source: FromHost, Worker: v.w.idx,
		Message: fmt.Sprintf("VM failed (%s): %s", v.h.opts.FailurePolicy, msg)})
}

// malloc calls proxy_on_memory_allocate under its restriction. A trap
// inside unwinds the whole host call: the VM is failed either way.
func (v *vm) malloc(size uint32) uint32 {
	saved := v.restriction
	v.restriction = v.h.restrictAlloc
	v.depth++
	v.mstack[0] = uint64(size)
	err := v.fn.malloc.CallWithStack(v.ctx, v.mstack[:])
	v.depth--
	v.restriction = saved
	if err != nil {
		panic(err)
	}
	return uint32(v.mstack[0])
}

// current is the context host calls act on.
func (v *vm) current() *pctx {
	if v.effective != nil {
		return v.effective
	}
	if v.cur == nil {
		return &v.root
	}
	return v.cur
}

// usable reports whether callbacks may run on the VM.
func (v *vm) usable() bool { return !v.failed && !v.closed }

// allocContext returns a fresh context id, never 0 and never in use.
func (v *vm) allocContext(s *Stream) *pctx {
	for {
		id := v.nextID
		v.nextID++
		if id == 0 {
			continue
		}
		if _, used := v.contexts[id]; used {
			continue
		}
		c := &pctx{id: id, s: s}
		v.contexts[id] = c
		return c
	}
}

// close releases the instance. The caller holds w.mu.
func (v *vm) close() {
	if v.closed {
		return
	}
	v.closed = true
	v.flushOut()
	v.stopTick()
	v.h.queues.forget(v)
	if v.mod != nil {
		_ = v.mod.Close(context.Background())
	}
}

// shutdown runs the root context's done/delete, then closes.
func (v *vm) shutdown() {
	if v.usable() && v.fn.onDone != nil {
		r, ok := v.call(v.fn.onDone, &v.root, rootContextID)
		if ok && uint32(r) != 0 && v.fn.onDelete != nil {
			v.call(v.fn.onDelete, &v.root, rootContextID)
		} else if ok {
			v.rootPendingDone = true
		}
	}
	v.close()
}

// setTick (re)starts the proxy_on_tick timer. Ticks use the real clock.
func (v *vm) setTick(period time.Duration) {
	v.stopTick()
	v.tickPeriod = period
	if period <= 0 {
		return
	}
	stop := make(chan struct{})
	v.tickStop = stop
	h, w := v.h, v.w
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-h.done:
				return
			case <-t.C:
				w.mu.Lock()
				if w.vm == v && v.usable() && v.fn.onTick != nil && v.tickStop == stop {
					v.call(v.fn.onTick, &v.root, rootContextID)
				}
				w.mu.Unlock()
			}
		}
	}()
}

func (v *vm) stopTick() {
	if v.tickStop != nil {
		close(v.tickStop)
		v.tickStop = nil
	}
	v.tickPeriod = 0
}

// acquire returns the worker's VM for a new stream, starting a fresh one
// under FailReload once the backoff has passed. The caller holds w.mu.
func (w *worker) acquire() *vm {
	h := w.h
	if w.vm != nil && !w.vm.failed {
		return w.vm
	}
	if h.opts.FailurePolicy != FailReload || h.now().Before(w.retryAt) {
		return w.vm
	}
	old := w.vm
	v, err := w.newVM(context.Background())
	if err != nil {
		w.retryAt = h.now().Add(h.opts.ReloadBackoff)
		h.log(LogRecord{Level: LogError, Source: FromHost, Worker: w.idx,
			Message: fmt.Sprintf("reload failed, next attempt after %v: %v", h.opts.ReloadBackoff, err)})
		return old
	}
	if old != nil {
		old.close()
	}
	w.vm = v
	h.stats.vmReloaded.Add(1)
	h.log(LogRecord{Level: LogInfo, Source: FromHost, Worker: w.idx, Message: fmt.Sprintf("started a fresh VM (generation %d)", v.gen)})
	return v
}
