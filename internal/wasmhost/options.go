package wasmhost

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
)

// Limits and defaults. Each is checked at its edge by the tests.
const (
	// MaxWorkers bounds Options.Workers.
	MaxWorkers = 256
	// DefaultBufferLimit is the default Options.BufferLimit: Envoy's
	// default per_connection_buffer_limit_bytes (1 MiB). A paused body that
	// grows past the limit ends the request with 413 (request) or 500
	// (response), as Envoy's filter manager does.
	DefaultBufferLimit = 1 << 20
	// MaxBufferLimit bounds Options.BufferLimit (the guest addresses 32 bits).
	MaxBufferLimit = 1 << 30
	// DefaultReloadBackoff is the default Options.ReloadBackoff, the wait
	// after a VM failure before FailReload starts a fresh VM.
	DefaultReloadBackoff = time.Second
	// MaxConfigBytes bounds Options.VMConfig and Options.PluginConfig.
	MaxConfigBytes = 16 << 20
)

// Profile selects which Envoy's WASI the host reproduces.
//
// During `_initialize` (and `main`) and during proxy_on_memory_allocate a
// plugin may call only some imports; any other call traps
// ("restricted_callback"), as in Envoy. Envoy133's lists are
// proxy-wasm-cpp-host's: for `_initialize` proxy_log, fd_write,
// args_sizes_get, args_get, environ_sizes_get, environ_get,
// fd_prestat_get, fd_prestat_dir_name, clock_time_get and random_get
// (src/wasm.cc WasmBase::startVm) plus fd_fdstat_get and
// fd_fdstat_set_flags (cpp-host #427, for the Go runtime's start); for
// proxy_on_memory_allocate proxy_log, fd_write and clock_time_get
// (include/proxy-wasm/wasm.h WasmBase::allocMemory).
type Profile int

const (
	// Envoy133 is Envoy 1.33–1.38 (the default): only fd_write, fd_read,
	// fd_seek, fd_close, fd_fdstat_get, fd_fdstat_set_flags, environ_get,
	// environ_sizes_get, args_get, args_sizes_get, clock_time_get,
	// random_get, sched_yield, poll_oneoff, proc_exit, path_open,
	// fd_prestat_get and fd_prestat_dir_name exist; poll_oneoff answers
	// ENOSYS (52).
	Envoy133 Profile = iota
	// Envoy139 is Envoy 1.39 and later (proxy-wasm-cpp-host #533): every
	// wasi_snapshot_preview1 function resolves (those Envoy 1.33 lacks
	// answer ENOSYS: there is no file system, no socket) and poll_oneoff
	// succeeds at once reporting 0 events. The restricted lists are
	// Envoy133's plus poll_oneoff and sched_yield, in both. Only part of
	// that is checked against #533: its discussion allows poll_oneoff
	// during proxy_on_memory_allocate (the Go runtime sleeps there while
	// collecting garbage); its merged `_initialize` list is longer than
	// ours (the diff grows it from 28 to 65 lines) and was not available
	// to compare, so a module calling another WASI function during
	// `_initialize` may be refused here though Envoy 1.39 accepts it.
	Envoy139
)

func (p Profile) String() string {
	switch p {
	case Envoy133:
		return "envoy-1.33"
	case Envoy139:
		return "envoy-1.39"
	}
	return fmt.Sprintf("Profile(%d)", int(p))
}

// ParseProfile accepts "envoy-1.33" (or "1.33") and "envoy-1.39" (or "1.39").
func ParseProfile(s string) (Profile, error) {
	switch strings.TrimPrefix(strings.ToLower(s), "envoy-") {
	case "1.33", "133":
		return Envoy133, nil
	case "1.39", "139":
		return Envoy139, nil
	}
	return 0, fmt.Errorf("wasmhost: profile %q: want envoy-1.33 or envoy-1.39", s)
}

// FailurePolicy says what requests get once a worker's VM has failed,
// after Envoy's VmConfig failure_policy.
type FailurePolicy int

const (
	// FailClosed (the default) answers 503 with response code details
	// "wasm_fail_stream".
	FailClosed FailurePolicy = iota
	// FailOpen lets requests pass the plugin untouched.
	FailOpen
	// FailReload answers like FailClosed until ReloadBackoff has passed
	// since the failure, then starts a fresh VM on that worker for the next
	// stream. A fresh VM that fails to start waits another backoff.
	FailReload
)

func (p FailurePolicy) String() string {
	switch p {
	case FailClosed:
		return "fail_closed"
	case FailOpen:
		return "fail_open"
	case FailReload:
		return "reload"
	}
	return fmt.Sprintf("FailurePolicy(%d)", int(p))
}

// ParseFailurePolicy accepts "fail_closed", "fail_open" and "reload".
func ParseFailurePolicy(s string) (FailurePolicy, error) {
	switch strings.ToLower(strings.ReplaceAll(s, "-", "_")) {
	case "fail_closed", "closed":
		return FailClosed, nil
	case "fail_open", "open":
		return FailOpen, nil
	case "reload", "fail_reload":
		return FailReload, nil
	}
	return 0, fmt.Errorf("wasmhost: failure policy %q: want fail_closed, fail_open or reload", s)
}

// LogLevel is a Proxy-Wasm log level (the values of the ABI's proxy_log).
type LogLevel uint32

// Log levels, numbered as in the ABI.
const (
	LogTrace LogLevel = iota
	LogDebug
	LogInfo
	LogWarn
	LogError
	LogCritical
)

func (l LogLevel) String() string {
	switch l {
	case LogTrace:
		return "trace"
	case LogDebug:
		return "debug"
	case LogInfo:
		return "info"
	case LogWarn:
		return "warning"
	case LogError:
		return "error"
	case LogCritical:
		return "critical"
	}
	return fmt.Sprintf("LogLevel(%d)", uint32(l))
}

// ParseLogLevel accepts the names String returns (and "warn").
func ParseLogLevel(s string) (LogLevel, error) {
	for l := LogTrace; l <= LogCritical; l++ {
		if strings.EqualFold(s, l.String()) {
			return l, nil
		}
	}
	if strings.EqualFold(s, "warn") {
		return LogWarn, nil
	}
	return 0, fmt.Errorf("wasmhost: log level %q: want trace, debug, info, warning, error or critical", s)
}

// LogSource tells where a LogRecord comes from.
type LogSource int

const (
	// FromPlugin is a proxy_log call.
	FromPlugin LogSource = iota
	// FromStdout is fd_write to fd 1 (Envoy logs it at info).
	FromStdout
	// FromStderr is fd_write to fd 2 (Envoy logs it at error).
	FromStderr
	// FromHost is the host itself: traps, reloads, refused configurations.
	FromHost
)

func (s LogSource) String() string {
	switch s {
	case FromPlugin:
		return "plugin"
	case FromStdout:
		return "stdout"
	case FromStderr:
		return "stderr"
	case FromHost:
		return "host"
	}
	return fmt.Sprintf("LogSource(%d)", int(s))
}

// LogRecord is one log line.
type LogRecord struct {
	Level  LogLevel
	Source LogSource
	// Worker is the worker index, or -1 when no worker is involved.
	Worker int
	// Message has no trailing newline (Envoy strips one from fd_write).
	Message string
}

// String formats the record as one line, like Envoy's
// "wasm log <plugin> <root_id> <vm_id>: message" without the prefix.
func (r LogRecord) String() string {
	return fmt.Sprintf("[%s] wasm %s worker=%d: %s", r.Level, r.Source, r.Worker, r.Message)
}

// Options configure a Host. The zero value is valid: one worker, the
// Envoy133 profile, fail_closed, the real clock and logs on stderr.
type Options struct {
	// Workers is the number of VM instances, 1..MaxWorkers; 0 means 1.
	Workers int
	// Profile chooses the Envoy WASI behaviour; the default is Envoy133.
	Profile Profile
	// FailurePolicy is what a failed VM's requests get; default FailClosed.
	FailurePolicy FailurePolicy
	// ReloadBackoff is FailReload's wait; 0 means DefaultReloadBackoff.
	ReloadBackoff time.Duration

	// PluginName, RootID and VMID are Envoy's plugin name, root_id and
	// vm_id: served as the properties plugin_name, plugin_root_id and
	// plugin_vm_id, and in every log record's context.
	PluginName, RootID, VMID string
	// VMConfig is returned by proxy_get_buffer_bytes(VmConfiguration);
	// PluginConfig by proxy_get_buffer_bytes(PluginConfiguration) during
	// proxy_on_configure only. Each at most MaxConfigBytes.
	VMConfig, PluginConfig []byte

	// Clock is read for clock_time_get (realtime, and monotonic as the
	// clamped elapsed time since New), proxy_get_current_time_nanoseconds,
	// request.time and FailReload's backoff. nil means time.Now.
	Clock func() time.Time

	// LogLevel is what proxy_get_log_level reports and the least level
	// passed on to Logger (Envoy drops lower levels). The zero value is
	// LogTrace: everything.
	LogLevel LogLevel
	// Logger receives each log line. nil writes LogRecord.String lines to
	// os.Stderr.
	Logger func(LogRecord)

	// BufferLimit bounds a paused body, 1..MaxBufferLimit; 0 means
	// DefaultBufferLimit.
	BufferLimit int

	// AllowOnHeadersStopIteration is Envoy's PluginConfig field of the
	// same name (Envoy 1.35 and later). False, as in Envoy, makes a
	// non-zero result of proxy_on_request_headers or
	// proxy_on_response_headers StopAllIterationAndWatermark
	// (proxy-wasm-cpp-host's convertVmCallResultToFilterHeadersStatus): the
	// direction's later body chunks and trailers are held by the host, not
	// limited by BufferLimit (Envoy applies flow control instead), and no
	// body or trailers callback runs until the plugin continues the stream
	// (proxy_continue_stream from a tick, a queue or another stream's
	// callback) or ends it (a local reply, a reset). When it continues, it
	// gets what arrived meanwhile as Envoy's filter manager passes it on:
	// all the body in one body callback, with end_of_stream when the
	// direction ended without trailers, then the trailers callback. A
	// plugin that never continues leaves the stream paused until the
	// caller gives up (ErrPaused). True makes the result a plain
	// StopIteration: body and trailers callbacks run while the headers are
	// held.
	AllowOnHeadersStopIteration bool

	// CompilationCache overrides the in-memory cache shared by every Host
	// of the process.
	CompilationCache wazero.CompilationCache
}

// sharedCache is the process-wide compilation cache: a module is compiled
// once however many Hosts load it.
var sharedCache = wazero.NewCompilationCache()

// normalize fills defaults and validates, naming the offending field.
func (o Options) normalize() (Options, error) {
	if o.Workers == 0 {
		o.Workers = 1
	}
	if o.Workers < 1 || o.Workers > MaxWorkers {
		return o, fmt.Errorf("wasmhost: Options.Workers = %d: want 1..%d", o.Workers, MaxWorkers)
	}
	if o.Profile != Envoy133 && o.Profile != Envoy139 {
		return o, fmt.Errorf("wasmhost: Options.Profile = %d: unknown profile", int(o.Profile))
	}
	if o.FailurePolicy < FailClosed || o.FailurePolicy > FailReload {
		return o, fmt.Errorf("wasmhost: Options.FailurePolicy = %d: unknown policy", int(o.FailurePolicy))
	}
	if o.ReloadBackoff == 0 {
		o.ReloadBackoff = DefaultReloadBackoff
	}
	if o.ReloadBackoff < 0 {
		return o, fmt.Errorf("wasmhost: Options.ReloadBackoff = %v: must not be negative", o.ReloadBackoff)
	}
	if len(o.VMConfig) > MaxConfigBytes {
		return o, fmt.Errorf("wasmhost: Options.VMConfig is %d bytes: at most %d", len(o.VMConfig), MaxConfigBytes)
	}
	if len(o.PluginConfig) > MaxConfigBytes {
		return o, fmt.Errorf("wasmhost: Options.PluginConfig is %d bytes: at most %d", len(o.PluginConfig), MaxConfigBytes)
	}
	if o.LogLevel > LogCritical {
		return o, fmt.Errorf("wasmhost: Options.LogLevel = %d: want 0..%d", uint32(o.LogLevel), uint32(LogCritical))
	}
	if o.BufferLimit == 0 {
		o.BufferLimit = DefaultBufferLimit
	}
	if o.BufferLimit < 1 || o.BufferLimit > MaxBufferLimit {
		return o, fmt.Errorf("wasmhost: Options.BufferLimit = %d: want 1..%d", o.BufferLimit, MaxBufferLimit)
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = func(r LogRecord) { fmt.Fprintln(os.Stderr, r.String()) }
	}
	if o.CompilationCache == nil {
		o.CompilationCache = sharedCache
	}
	o.VMConfig = append([]byte(nil), o.VMConfig...)
	o.PluginConfig = append([]byte(nil), o.PluginConfig...)
	return o, nil
}
