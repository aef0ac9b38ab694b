package main

import (
	"context"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
)

// envoyWASI is the WASI that Envoy 1.33 provides to a Wasm module
// (proxy-wasm-cpp-host's exports before its full-wasip1 change, #533).
// Anything else in the import list makes Envoy refuse the module at load,
// and newer Go toolchains can pull in more: this test is the guard.
var envoyWASI = map[string]bool{
	"fd_write": true, "fd_read": true, "fd_seek": true, "fd_close": true,
	"fd_fdstat_get": true, "fd_fdstat_set_flags": true,
	"environ_get": true, "environ_sizes_get": true,
	"args_get": true, "args_sizes_get": true,
	"clock_time_get": true, "random_get": true, "sched_yield": true,
	"poll_oneoff": true, "proc_exit": true, "path_open": true,
	"fd_prestat_get": true, "fd_prestat_dir_name": true,
}

// envoyProxyABI is the env module that Envoy exports to a module of ABI
// 0.2.x: proxy-wasm-cpp-host's FOR_ALL_HOST_FUNCTIONS plus the
// ABI-specific ones (include/proxy-wasm/exports.h), each prefixed proxy_.
var envoyProxyABI = map[string]bool{}

func init() {
	for _, f := range strings.Fields(`
		log get_status set_property get_property send_local_response
		get_shared_data set_shared_data register_shared_queue resolve_shared_queue
		dequeue_shared_queue enqueue_shared_queue get_header_map_value
		add_header_map_value replace_header_map_value remove_header_map_value
		get_header_map_pairs set_header_map_pairs get_header_map_size
		get_buffer_status get_buffer_bytes set_buffer_bytes
		http_call grpc_call grpc_stream grpc_close grpc_cancel grpc_send
		set_tick_period_milliseconds get_current_time_nanoseconds define_metric
		increment_metric record_metric get_metric set_effective_context done
		call_foreign_function
		get_configuration continue_request continue_response clear_route_cache
		continue_stream close_stream get_log_level
	`) {
		envoyProxyABI["proxy_"+f] = true
	}
}

// TestModuleImportsAndExports checks security.wasm against what Envoy
// 1.33 provides and expects. A missing module fails in CI.
func TestModuleImportsAndExports(t *testing.T) {
	bin, err := os.ReadFile("security.wasm")
	if err != nil {
		if os.IsNotExist(err) && os.Getenv("CI") == "" {
			t.Skip("security.wasm not built (run make build)")
		}
		t.Fatal(err)
	}
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	m, err := r.CompileModule(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, f := range m.ImportedFunctions() {
		mod, name, _ := f.Import()
		seen = append(seen, mod+"."+name)
		switch mod {
		case "wasi_snapshot_preview1":
			if !envoyWASI[name] {
				t.Errorf("imports %s.%s, which Envoy 1.33 does not provide", mod, name)
			}
		case "env":
			if !envoyProxyABI[name] {
				t.Errorf("imports %s.%s, which is not in Proxy-Wasm ABI 0.2.x", mod, name)
			}
		default:
			t.Errorf("imports from module %q: Envoy provides only wasi_snapshot_preview1 and env", mod)
		}
	}
	if len(m.ImportedMemories()) != 0 {
		t.Error("imports a memory: Envoy provides functions only")
	}
	sort.Strings(seen)
	t.Logf("imports: %s", strings.Join(seen, " "))

	exports := m.ExportedFunctions()
	for _, name := range []string{"_initialize", "proxy_on_memory_allocate", "proxy_on_vm_start", "proxy_on_configure",
		"proxy_on_context_create", "proxy_on_request_headers", "proxy_on_request_body", "proxy_on_done", "proxy_on_delete"} {
		if _, ok := exports[name]; !ok {
			t.Errorf("does not export %s", name)
		}
	}
	abi := 0
	for name := range exports {
		if strings.HasPrefix(name, "proxy_abi_version_0_2_") {
			abi++
		}
	}
	if abi != 1 {
		t.Errorf("exports %d proxy_abi_version_0_2_* functions, want exactly 1", abi)
	}
	if _, ok := exports["_start"]; ok {
		t.Error("exports _start: built as a command, not a reactor (-buildmode=c-shared)")
	}
}
