// Command v8fixture is a deliberately small Proxy-Wasm plugin, built with the
// same SDK as security.wasm, that the V8 host (e2e/v8/host.mjs) is tested
// against. It is NOT the product filter: it implements just enough of the
// wasmguard response contract for one rule so that host.mjs can be checked
// without security.wasm:
//
//   - plugin start reads the plugin configuration and fails unless it is a
//     JSON object (so the host's proxy_get_buffer_bytes is exercised);
//   - the six wasmguard_* counters are defined at plugin start;
//   - every request reads :path and the source.address property and bumps a
//     per-client request count in shared data with compare-and-swap;
//   - a path ending in ".exe" gets a local 403 with content-type
//     application/json, x-wasmguard-rule: block_patterns[0] and the body
//     {"error":"request blocked","rule":"block_patterns[0]"};
//   - anything else continues.
//
// Build (the V8 test does this itself into a temporary directory):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o v8fixture.wasm ./internal/v8fixture
package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// casRetries bounds the compare-and-swap loop on the per-client counter.
const casRetries = 8

// counterNames are the metric names security.wasm defines; the fixture
// defines the same ones so the host's metric table can be checked.
var counterNames = []string{
	"wasmguard_requests_total",
	"wasmguard_blocked_total",
	"wasmguard_rate_limited_total",
	"wasmguard_monitored_total",
	"wasmguard_body_truncated_total",
	"wasmguard_errors_total",
}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

func main() {}

type plugin struct {
	types.DefaultPluginContext
	counters map[string]proxywasm.MetricCounter
}

func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	raw, err := proxywasm.GetPluginConfiguration()
	if err != nil || size == 0 {
		proxywasm.LogErrorf("v8fixture: plugin configuration missing (size %d): %v", size, err)
		return types.OnPluginStartStatusFailed
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		proxywasm.LogErrorf("v8fixture: plugin configuration is not a JSON object: %v", err)
		return types.OnPluginStartStatusFailed
	}
	p.counters = make(map[string]proxywasm.MetricCounter, len(counterNames))
	for _, n := range counterNames {
		p.counters[n] = proxywasm.DefineCounterMetric(n)
	}
	proxywasm.LogInfof("v8fixture: started with %d configuration keys", len(cfg))
	return types.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &request{p: p} }

type request struct {
	types.DefaultHttpContext
	p *plugin
}

func (r *request) OnHttpRequestHeaders(int, bool) types.Action {
	r.p.counters["wasmguard_requests_total"].Increment(1)
	path, err := proxywasm.GetHttpRequestHeader(":path")
	if err != nil {
		r.p.counters["wasmguard_errors_total"].Increment(1)
		proxywasm.LogErrorf("v8fixture: :path: %v", err)
		return types.ActionContinue
	}
	addr, err := proxywasm.GetProperty([]string{"source", "address"})
	if err != nil {
		r.p.counters["wasmguard_errors_total"].Increment(1)
		proxywasm.LogErrorf("v8fixture: source.address: %v", err)
		return types.ActionContinue
	}
	n, err := bump("v8fixture/" + string(addr))
	if err != nil {
		r.p.counters["wasmguard_errors_total"].Increment(1)
		proxywasm.LogErrorf("v8fixture: shared data: %v", err)
	}
	if strings.HasSuffix(strings.SplitN(path, "?", 2)[0], ".exe") {
		r.p.counters["wasmguard_blocked_total"].Increment(1)
		proxywasm.LogInfof("v8fixture: blocked %s from %s (request %d)", path, addr, n)
		body := []byte(`{"error":"request blocked","rule":"block_patterns[0]"}`)
		hdrs := [][2]string{{"content-type", "application/json"}, {"x-wasmguard-rule", "block_patterns[0]"}}
		if err := proxywasm.SendHttpResponse(403, hdrs, body, -1); err != nil {
			proxywasm.LogErrorf("v8fixture: send local response: %v", err)
		}
		return types.ActionPause
	}
	proxywasm.LogInfof("v8fixture: allowed %s from %s (request %d)", path, addr, n)
	return types.ActionContinue
}

// bump increments the little-endian uint64 stored under key with
// compare-and-swap and returns the new value.
func bump(key string) (uint64, error) {
	for i := 0; i < casRetries; i++ {
		old, cas, err := proxywasm.GetSharedData(key)
		var n uint64
		switch {
		case errors.Is(err, types.ErrorStatusNotFound):
			cas = 0
		case err != nil:
			return 0, err
		case len(old) == 8:
			n = binary.LittleEndian.Uint64(old)
		}
		buf := make([]byte, 8)
		binary.LittleEndian.PutUint64(buf, n+1)
		err = proxywasm.SetSharedData(key, buf, cas)
		if err == nil {
			return n + 1, nil
		}
		if !errors.Is(err, types.ErrorStatusCasMismatch) {
			return 0, err
		}
	}
	return 0, errors.New("compare-and-swap retries exhausted")
}
