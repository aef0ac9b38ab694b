package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
)

// ErrClosed is returned by methods of a closed Host and its Streams.
var ErrClosed = errors.New("wasmhost: host is closed")

// Host runs one plugin on Options.Workers VMs. Create it with New, start
// one Stream per HTTP exchange (or call Exchange), read Stats for an
// Envoy-like /stats page, and Close it when done. Its methods are safe for
// concurrent use.
type Host struct {
	opts     Options
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	abi      abiVersion

	restrictInit, restrictAlloc *restriction
	workers                     []*worker
	next                        atomic.Uint64 // round-robin cursor

	shared  sharedData
	queues  queues
	metrics metricStore
	stats   hostStats

	startMono time.Time // Clock reading at New
	monoMu    sync.Mutex
	lastMono  int64

	closeOnce sync.Once
	closed    atomic.Bool
	done      chan struct{}
	wg        sync.WaitGroup // tick and queue goroutines
}

type hostStats struct {
	vmCreated, vmFailed, vmReloaded atomic.Uint64
	failClosed, failOpen            atomic.Uint64
	localReplies, resets            atomic.Uint64
}

// New compiles wasm (or takes it from the compilation cache), checks its
// imports against opts.Profile and its exports against ABI 0.2.x, and
// starts every worker's VM. If a VM refuses to start, New returns a
// *StartError carrying the plugin's log lines. ctx bounds compilation and
// instantiation only.
//
// Nothing interrupts a callback: like Envoy, which has no watchdog for
// Wasm code, the host waits for every call into the guest to return (the
// runtime is not built WithCloseOnContextDone). A plugin stuck in a loop,
// during New or in any later callback, holds its worker for good: New does
// not return, and the worker's streams and Close block.
func New(ctx context.Context, wasm []byte, opts Options) (*Host, error) {
	opts, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	if len(wasm) == 0 {
		return nil, errors.New("wasmhost: wasm module is empty")
	}
	h := &Host{opts: opts, done: make(chan struct{})}
	h.startMono = opts.Clock()
	h.restrictInit, h.restrictAlloc = restrictions(opts.Profile)
	h.metrics.init()
	h.shared.init()
	h.queues.init(h)
	cfg := wazero.NewRuntimeConfigCompiler().WithCompilationCache(opts.CompilationCache)
	h.rt = wazero.NewRuntimeWithConfig(ctx, cfg)
	fail := func(err error) (*Host, error) {
		_ = h.rt.Close(context.Background())
		return nil, err
	}
	h.compiled, err = h.rt.CompileModule(ctx, wasm)
	if err != nil {
		return fail(fmt.Errorf("wasmhost: compile: %w", err))
	}
	if h.abi, err = validateModule(h.compiled, opts.Profile); err != nil {
		return fail(err)
	}
	if err := hostModules(ctx, h.rt, opts.Profile); err != nil {
		return fail(fmt.Errorf("wasmhost: host modules: %w", err))
	}
	h.workers = make([]*worker, opts.Workers)
	for i := range h.workers {
		w := &worker{h: h, idx: i}
		w.mu.Lock()
		v, err := w.newVM(ctx)
		w.vm = v
		w.mu.Unlock()
		h.workers[i] = w
		if err != nil {
			h.workers = h.workers[:i]
			_ = h.Close(context.Background())
			return nil, err
		}
	}
	return h, nil
}

// Close runs each root context's proxy_on_done (and proxy_on_delete when
// it returns true), stops timers and releases the VMs. Streams still open
// get ErrClosed. Close is idempotent.
//
// Close waits for each worker's running callback to return, and ctx does
// not cut that wait short (ctx bounds only the release of the runtime):
// a callback stuck in a loop makes Close block for good (see New).
func (h *Host) Close(ctx context.Context) error {
	var err error
	h.closeOnce.Do(func() {
		h.closed.Store(true)
		close(h.done)
		for _, w := range h.workers {
			w.mu.Lock()
			if w.vm != nil {
				w.vm.shutdown()
			}
			w.mu.Unlock()
		}
		h.wg.Wait()
		err = h.rt.Close(ctx)
	})
	return err
}

// Workers is the number of workers.
func (h *Host) Workers() int { return len(h.workers) }

// Profile is the WASI profile the host reproduces.
func (h *Host) Profile() Profile { return h.opts.Profile }

// now reads the configured clock.
func (h *Host) now() time.Time { return h.opts.Clock() }

// monotonicNanos is clock_time_get(monotonic): the Clock reading at New in
// Unix nanoseconds plus the elapsed time since, clamped so it never goes
// backwards, even when an injected clock does.
func (h *Host) monotonicNanos() int64 {
	now := h.opts.Clock()
	t := h.startMono.UnixNano() + int64(now.Sub(h.startMono))
	h.monoMu.Lock()
	defer h.monoMu.Unlock()
	if t < h.lastMono {
		t = h.lastMono
	}
	h.lastMono = t
	return t
}

// log passes a record on unless it is below Options.LogLevel.
func (h *Host) log(r LogRecord) {
	if r.Level < h.opts.LogLevel {
		return
	}
	h.opts.Logger(r)
}

// MemorySizes returns each worker's linear memory size in bytes (0 for a
// worker without a live VM).
func (h *Host) MemorySizes() []uint64 {
	out := make([]uint64, len(h.workers))
	for i, w := range h.workers {
		w.mu.Lock()
		if w.vm != nil && !w.vm.closed && w.vm.mem != nil {
			out[i] = uint64(w.vm.mem.Size())
		}
		w.mu.Unlock()
	}
	return out
}

// VMState describes one worker's VM.
type VMState struct {
	Worker     int
	Generation int // 1 for the first VM, +1 per reload
	Failed     bool
	FailReason string
}

// VMStates reports each worker's VM.
func (h *Host) VMStates() []VMState {
	out := make([]VMState, len(h.workers))
	for i, w := range h.workers {
		w.mu.Lock()
		out[i] = VMState{Worker: i}
		if v := w.vm; v != nil {
			out[i].Generation = v.gen
			out[i].Failed = v.failed
			out[i].FailReason = v.failMsg
		}
		w.mu.Unlock()
	}
	return out
}

// SharedValue is one shared-data entry.
type SharedValue struct {
	Value []byte
	CAS   uint32
}

// SharedData returns a copy of the shared data of Options.VMID.
func (h *Host) SharedData() map[string]SharedValue {
	return h.shared.snapshot(h.opts.VMID)
}

// Stat is one line of Stats.
type Stat struct {
	Name  string
	Value int64
}

// Stats lists the plugin's counters and gauges (as defined, value as
// Envoy reports it), histograms as NAME.count and NAME.sum, and the host's
// own counters under "wasmhost.", sorted by name.
func (h *Host) Stats() []Stat {
	out := h.metrics.stats()
	add := func(name string, v uint64) { out = append(out, Stat{Name: "wasmhost." + name, Value: int64(v)}) }
	add("vm.created", h.stats.vmCreated.Load())
	add("vm.failed", h.stats.vmFailed.Load())
	add("vm.reloaded", h.stats.vmReloaded.Load())
	add("streams.fail_closed", h.stats.failClosed.Load())
	add("streams.fail_open", h.stats.failOpen.Load())
	add("streams.local_replies", h.stats.localReplies.Load())
	add("streams.resets", h.stats.resets.Load())
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Stat returns one statistic by name.
func (h *Host) Stat(name string) (int64, bool) {
	for _, s := range h.Stats() {
		if s.Name == name {
			return s.Value, true
		}
	}
	return 0, false
}

// WriteStats writes Stats as "name: value" lines, like Envoy's /stats.
func (h *Host) WriteStats(w io.Writer) error {
	for _, s := range h.Stats() {
		if _, err := fmt.Fprintf(w, "%s: %d\n", s.Name, s.Value); err != nil {
			return err
		}
	}
	return nil
}

// NewStream starts an HTTP stream on the next worker (round robin). Under
// FailReload a failed worker whose backoff has passed gets a fresh VM here.
// The plugin's HTTP context is created at RequestHeaders, as in Envoy.
// Close the stream when the exchange is over.
func (h *Host) NewStream(info StreamInfo) (*Stream, error) {
	if h.closed.Load() {
		return nil, ErrClosed
	}
	w := h.workers[int((h.next.Add(1)-1)%uint64(len(h.workers)))]
	return w.newStream(info), nil
}

// NewStreamOn is NewStream on a chosen worker, for tests and benchmarks.
func (h *Host) NewStreamOn(worker int, info StreamInfo) (*Stream, error) {
	if h.closed.Load() {
		return nil, ErrClosed
	}
	if worker < 0 || worker >= len(h.workers) {
		return nil, fmt.Errorf("wasmhost: worker %d: want 0..%d", worker, len(h.workers)-1)
	}
	return h.workers[worker].newStream(info), nil
}
