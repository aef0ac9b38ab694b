// Command v8restricted is a deliberately broken Proxy-Wasm plugin: its init
// function, which runs inside _initialize, reads a property. Envoy
// (proxy-wasm-cpp-host's restricted_callback) only lets a module call a few
// WASI functions and proxy_log while it initializes and traps on anything
// else, so this module fails to start in Envoy. The V8 test checks that
// e2e/v8/host.mjs refuses it the same way.
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func init() {
	proxywasm.LogInfo("v8restricted: reading a property during _initialize")
	_, _ = proxywasm.GetProperty([]string{"plugin_name"})
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &types.DefaultPluginContext{} })
}

func main() {}
