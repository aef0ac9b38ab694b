module github.com/wasmguard/wasmguard

go 1.24.0

require (
	github.com/proxy-wasm/proxy-wasm-go-sdk v0.0.0-20260105142703-44c7d5847745
	github.com/tetratelabs/wazero v1.11.0
	github.com/tidwall/gjson v1.20.4
	golang.org/x/time v0.14.0
)

require (
	github.com/tidwall/match v1.1.1 // indirect
	github.com/tidwall/pretty v1.3.0 // indirect
	golang.org/x/sys v0.38.0 // indirect
)
