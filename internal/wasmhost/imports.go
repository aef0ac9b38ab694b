package wasmhost

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// status is Proxy-Wasm's WasmResult, the value host calls return.
type status = uint64

// WasmResult values (proxy-wasm-cpp-host include/proxy-wasm/wasm_api_impl.h
// and the SDK's internal Status).
const (
	stOK                  status = 0
	stNotFound            status = 1
	stBadArgument         status = 2
	stInvalidMemoryAccess status = 6
	stEmpty               status = 7
	stCasMismatch         status = 8
	stInternalFailure     status = 10
	stUnimplemented       status = 12
)

// WASI errno values.
const (
	errnoSuccess = 0
	errnoBadf    = 8
	errnoFault   = 21
	errnoInval   = 28
	errnoNoent   = 44
	errnoNosys   = 52
	errnoNotsup  = 58
)

// Module names a guest imports from.
const (
	modEnv          = "env"
	modWASI         = "wasi_snapshot_preview1"
	modWASIUnstable = "wasi_unstable"
)

// hostFunc is one import the host can provide.
type hostFunc struct {
	name string
	// sig is the signature, params ":" results, i = i32, I = i64.
	sig string
	fn  func(v *vm, stack []uint64)
}

func (f hostFunc) types() (params, results []api.ValueType) {
	p, r, _ := strings.Cut(f.sig, ":")
	conv := func(s string) []api.ValueType {
		out := make([]api.ValueType, 0, len(s))
		for _, c := range s {
			if c == 'I' {
				out = append(out, api.ValueTypeI64)
			} else {
				out = append(out, api.ValueTypeI32)
			}
		}
		return out
	}
	return conv(p), conv(r)
}

func sigString(params, results []api.ValueType) string {
	name := func(ts []api.ValueType) string {
		parts := make([]string, len(ts))
		for i, t := range ts {
			parts[i] = api.ValueTypeName(t)
		}
		return strings.Join(parts, ",")
	}
	return "(" + name(params) + ")->(" + name(results) + ")"
}

// restriction is a set of "module.name" imports allowed while the host is
// in a restricted callback; nil means unrestricted.
type restriction struct {
	during  string
	allowed map[string]bool
}

func newRestriction(during string, names ...string) *restriction {
	r := &restriction{during: during, allowed: map[string]bool{}}
	for _, n := range names {
		r.allowed[n] = true
		if mod, fn, ok := strings.Cut(n, "."); ok && mod == modWASI {
			r.allowed[modWASIUnstable+"."+fn] = true
		}
	}
	return r
}

// restrictions returns Envoy's restricted-callback allow lists for a
// profile (see Profile for their sources and for what of Envoy139's is
// checked): a call outside them traps. Envoy ≥ 1.39 (proxy-wasm-cpp-host
// #533) also allows poll_oneoff and sched_yield there, because the Go
// runtime sleeps and yields while collecting garbage.
func restrictions(p Profile) (initialize, allocate *restriction) {
	init := []string{"env.proxy_log",
		modWASI + ".fd_write",
		modWASI + ".args_sizes_get", modWASI + ".args_get",
		modWASI + ".environ_sizes_get", modWASI + ".environ_get",
		modWASI + ".fd_prestat_get", modWASI + ".fd_prestat_dir_name",
		modWASI + ".clock_time_get", modWASI + ".random_get",
		modWASI + ".fd_fdstat_get", modWASI + ".fd_fdstat_set_flags"}
	alloc := []string{"env.proxy_log", modWASI + ".fd_write", modWASI + ".clock_time_get"}
	if p == Envoy139 {
		more := []string{modWASI + ".poll_oneoff", modWASI + ".sched_yield"}
		init = append(init, more...)
		alloc = append(alloc, more...)
	}
	return newRestriction("_initialize", init...), newRestriction("proxy_on_memory_allocate", alloc...)
}

// envoy133WASI lists the WASI functions Envoy 1.33–1.38 registers
// (proxy-wasm-cpp-host src/wasm.cc, WasmBase::registerCallbacks).
var envoy133WASI = map[string]bool{
	"fd_write": true, "fd_read": true, "fd_seek": true, "fd_close": true,
	"fd_fdstat_get": true, "fd_fdstat_set_flags": true,
	"environ_get": true, "environ_sizes_get": true,
	"args_get": true, "args_sizes_get": true,
	"clock_time_get": true, "random_get": true, "sched_yield": true,
	"poll_oneoff": true, "proc_exit": true, "path_open": true,
	"fd_prestat_get": true, "fd_prestat_dir_name": true,
}

// abi021Only lists env functions Envoy registers for ABI 0.2.1 modules only.
var abi021Only = map[string]bool{"proxy_get_log_level": true}

// hostModules builds the host modules of a profile into the runtime.
func hostModules(ctx context.Context, r wazero.Runtime, p Profile) error {
	build := func(name string, fns []hostFunc) error {
		b := r.NewHostModuleBuilder(name)
		for _, f := range fns {
			params, results := f.types()
			b.NewFunctionBuilder().
				WithGoModuleFunction(bind(name+"."+f.name, f.fn), params, results).
				Export(f.name)
		}
		_, err := b.Instantiate(ctx)
		return err
	}
	if err := build(modEnv, envFuncs()); err != nil {
		return err
	}
	wasi := wasiFuncs(p)
	if err := build(modWASI, wasi); err != nil {
		return err
	}
	var unstable []hostFunc
	for _, f := range wasi {
		if envoy133WASI[f.name] {
			unstable = append(unstable, f)
		}
	}
	return build(modWASIUnstable, unstable)
}

// bind wraps a host function: it finds the calling VM and enforces the
// restricted-callback rule before running fn.
func bind(qualified string, fn func(v *vm, stack []uint64)) api.GoModuleFunc {
	return func(ctx context.Context, _ api.Module, stack []uint64) {
		v, _ := ctx.Value(vmKey{}).(*vm)
		if v == nil {
			panic(fmt.Errorf("wasmhost: %s called outside a host call", qualified))
		}
		if r := v.restriction; r != nil && !r.allowed[qualified] {
			panic(&trapError{msg: fmt.Sprintf("restricted_callback: %s may not be called during %s", qualified, r.during)})
		}
		fn(v, stack)
	}
}

// provided returns the functions a profile provides, by module.
func provided(p Profile) map[string]map[string]hostFunc {
	out := map[string]map[string]hostFunc{modEnv: {}, modWASI: {}, modWASIUnstable: {}}
	for _, f := range envFuncs() {
		out[modEnv][f.name] = f
	}
	for _, f := range wasiFuncs(p) {
		out[modWASI][f.name] = f
		if envoy133WASI[f.name] {
			out[modWASIUnstable][f.name] = f
		}
	}
	return out
}

// abiVersion is the Proxy-Wasm ABI a module declares by export.
type abiVersion string

const (
	abi020 abiVersion = "0.2.0"
	abi021 abiVersion = "0.2.1"
)

// callbackSigs are the exports the host calls, with the signatures Envoy
// requires; a present export with another signature refuses the module.
var callbackSigs = map[string]string{
	"_initialize":                "",
	"_start":                     "",
	"main":                       "ii:i",
	"proxy_on_memory_allocate":   "i:i",
	"malloc":                     "i:i",
	"proxy_on_context_create":    "ii",
	"proxy_on_vm_start":          "ii:i",
	"proxy_on_configure":         "ii:i",
	"proxy_on_tick":              "i",
	"proxy_on_queue_ready":       "ii",
	"proxy_on_request_headers":   "iii:i",
	"proxy_on_request_body":      "iii:i",
	"proxy_on_request_trailers":  "ii:i",
	"proxy_on_response_headers":  "iii:i",
	"proxy_on_response_body":     "iii:i",
	"proxy_on_response_trailers": "ii:i",
	"proxy_on_done":              "i:i",
	"proxy_on_log":               "i",
	"proxy_on_delete":            "i",
}

// validateModule checks imports against the profile and exports against the
// ABI, as Envoy's loader does; errors name the offending import or export.
func validateModule(c wazero.CompiledModule, p Profile) (abiVersion, error) {
	exports := c.ExportedFunctions()
	var abi abiVersion
	switch {
	case exports["proxy_abi_version_0_2_1"] != nil:
		abi = abi021
	case exports["proxy_abi_version_0_2_0"] != nil:
		abi = abi020
	case exports["proxy_abi_version_0_1_0"] != nil:
		return "", fmt.Errorf("wasmhost: module exports proxy_abi_version_0_1_0: ABI 0.1.0 is not supported, want 0.2.0 or 0.2.1")
	default:
		return "", fmt.Errorf("wasmhost: module exports no proxy_abi_version_0_2_0 or proxy_abi_version_0_2_1 function: not a Proxy-Wasm 0.2.x module")
	}
	if _, ok := c.ExportedMemories()["memory"]; !ok {
		return "", fmt.Errorf("wasmhost: module exports no memory named \"memory\"")
	}
	if exports["proxy_on_memory_allocate"] == nil && exports["malloc"] == nil {
		return "", fmt.Errorf("wasmhost: module exports neither proxy_on_memory_allocate nor malloc: the host cannot return data to it")
	}
	names := make([]string, 0, len(callbackSigs))
	for n := range callbackSigs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		d := exports[n]
		if d == nil {
			continue
		}
		want := hostFunc{sig: callbackSigs[n]}
		wp, wr := want.types()
		if got, w := sigString(d.ParamTypes(), d.ResultTypes()), sigString(wp, wr); got != w {
			return "", fmt.Errorf("wasmhost: export %s has signature %s, want %s", n, got, w)
		}
	}
	if len(c.ImportedMemories()) > 0 {
		m, n, _ := c.ImportedMemories()[0].Import()
		return "", fmt.Errorf("wasmhost: module imports memory %s.%s: Envoy provides no memory import", m, n)
	}
	avail := provided(p)
	for _, d := range c.ImportedFunctions() {
		m, n, _ := d.Import()
		f, ok := avail[m][n]
		if !ok {
			return "", fmt.Errorf("wasmhost: module imports %s.%s, which Envoy does not provide (profile %s)", m, n, p)
		}
		if m == modEnv && abi == abi020 && abi021Only[n] {
			return "", fmt.Errorf("wasmhost: module imports %s.%s, which Envoy provides to ABI 0.2.1 modules only (this one declares 0.2.0)", m, n)
		}
		fp, fr := f.types()
		if got, want := sigString(d.ParamTypes(), d.ResultTypes()), sigString(fp, fr); got != want {
			return "", fmt.Errorf("wasmhost: import %s.%s has signature %s, the host's is %s", m, n, got, want)
		}
	}
	return abi, nil
}
