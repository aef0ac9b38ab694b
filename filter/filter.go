// Package filter is wasmguard's Proxy-Wasm HTTP filter: the only package
// that talks to the SDK. It reads the plugin configuration once at plugin
// start (package config), then on every request
//
//  1. rate-limits the client (package ratelimit, buckets in proxy-wasm
//     shared data so the limit holds across all of Envoy's worker VMs),
//  2. matches the block patterns against the path and query, the headers
//     and, when a pattern targets it, up to max_body_bytes of the body
//     (package patterns),
//
// and either lets the request through or answers it locally. Every answer
// goes through one function (httpContext.act) that counts, logs and
// responds.
//
// Inside the VM there are no goroutines, timers or sleeps: Envoy answers
// poll_oneoff with ENOSYS and the Go runtime would die at its next GC. Time
// is read with time.Now() only, here, and passed down.
package filter

import (
	"fmt"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/wasmguard/wasmguard/config"
	"github.com/wasmguard/wasmguard/ratelimit"
)

// now is the filter's clock. Tests of the native build replace it; nothing
// below this package reads the clock.
var now = time.Now

// Register installs wasmguard's VM context. main.go calls it from init(),
// as the SDK requires for a Go (wasip1 reactor) build.
func Register() { proxywasm.SetVMContext(&vmContext{}) }

type vmContext struct{ types.DefaultVMContext }

func (*vmContext) NewPluginContext(uint32) types.PluginContext { return &pluginContext{} }

// pluginContext holds one plugin's validated configuration. It is replaced
// only by a configuration that parsed: a refused one leaves nothing half
// applied.
type pluginContext struct {
	types.DefaultPluginContext
	cfg     *config.Config
	limiter *ratelimit.Limiter
	m       *metrics
}

// OnPluginStart parses the plugin configuration. A bad configuration fails
// plugin start with one log line naming the JSON path and the problem.
func (p *pluginContext) OnPluginStart(int) (status types.OnPluginStartStatus) {
	defer func() {
		if r := recover(); r != nil {
			proxywasm.LogCriticalf("wasmguard: configuration refused: internal error: %v", r)
			status = types.OnPluginStartStatusFailed
		}
	}()
	data, err := proxywasm.GetPluginConfiguration()
	if err != nil && err != types.ErrorStatusNotFound {
		proxywasm.LogCriticalf("wasmguard: configuration refused: reading plugin configuration: %v", err)
		return types.OnPluginStartStatusFailed
	}
	cfg, err := config.Parse(data)
	if err != nil {
		proxywasm.LogCriticalf("wasmguard: configuration refused: %v", err)
		return types.OnPluginStartStatusFailed
	}
	var lim *ratelimit.Limiter
	if rl := cfg.RateLimit; rl != nil {
		lim, err = ratelimit.NewLimiter(rl.Limit, rl.Slots, slotPrefix(), sharedData{})
		if err != nil {
			proxywasm.LogCriticalf("wasmguard: configuration refused: rate_limit: %v", err)
			return types.OnPluginStartStatusFailed
		}
	}
	p.cfg, p.limiter, p.m = cfg, lim, defineMetrics()
	proxywasm.LogInfof("wasmguard: started: mode=%v patterns=%d rate_limit=%s max_body_bytes=%d",
		cfg.Mode, cfg.Patterns.Len(), describeRateLimit(cfg.RateLimit), cfg.MaxBodyBytes)
	return types.OnPluginStartStatusOK
}

func describeRateLimit(rl *config.RateLimit) string {
	if rl == nil {
		return "off"
	}
	return fmt.Sprintf("%g/min,burst=%d,slots=%d", rl.RequestsPerMinute, rl.Burst, rl.Slots)
}

// slotPrefix names this plugin's rate-limit slots in shared data. Shared
// data is per vm_id, so the plugin's root_id goes in the name: wasmguard
// plugins with different root_ids in one VM keep separate buckets (plugins
// sharing a vm_id and a root_id share them, whatever their limits). Shared data outlives
// plugin reloads, so the name carries the record layout's version ("v1"):
// a new layout takes new keys instead of misreading old records.
func slotPrefix() string {
	root, err := proxywasm.GetProperty([]string{"plugin_root_id"})
	if err != nil || len(root) > 64 {
		root = nil
	}
	return "wasmguard.rl.v1." + string(root) + "."
}

func (p *pluginContext) NewHttpContext(contextID uint32) types.HttpContext {
	return &httpContext{p: p}
}

// sharedData adapts proxy-wasm shared data to ratelimit.Store.
type sharedData struct{}

func (sharedData) Get(key string) ([]byte, uint32, error) {
	v, cas, err := proxywasm.GetSharedData(key)
	if err == types.ErrorStatusNotFound {
		return nil, 0, ratelimit.ErrNotFound
	}
	return v, cas, err
}

func (sharedData) Set(key string, value []byte, cas uint32) error {
	err := proxywasm.SetSharedData(key, value, cas)
	if err == types.ErrorStatusCasMismatch {
		return ratelimit.ErrCASMismatch
	}
	return err
}
