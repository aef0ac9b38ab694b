// Command security.wasm is the wasmguard Proxy-Wasm filter.
//
// Build it with standard Go (1.24 or newer) as a WASI reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o security.wasm .
//
// This file only wires: init registers the VM context; main stays empty
// because a reactor's main is never run.
package main

import "github.com/wasmguard/wasmguard/filter"

func init() { filter.Register() }

func main() {}
