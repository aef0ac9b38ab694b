// Package wasmhost runs a Proxy-Wasm plugin (ABI 0.2.x) the way Envoy does,
// on wazero, so that a filter built with standard Go can be exercised on real
// HTTP traffic without Envoy and so that tests catch what would break inside
// Envoy.
//
// # Model
//
// A [Host] compiles the module once (wazero compiler engine, compilation
// cached and shared by every Host of the process) and starts
// [Options.Workers] VM instances of it, like Envoy's one VM per worker
// thread. Each VM goes through Envoy's start sequence: `_initialize` (with
// restricted callbacks), proxy_on_context_create(root, 0),
// proxy_on_vm_start(root, len(vm_config)) and proxy_on_configure(root,
// len(plugin_config)). A plugin that refuses its configuration makes [New]
// fail with a [*StartError] carrying the plugin's warning and error lines.
//
// Each HTTP exchange is a [Stream] bound to one worker (round robin). A
// worker runs one callback at a time; callbacks of different streams on the
// same worker interleave, as on an Envoy worker thread. Shared data (with
// Envoy's CAS rules), shared queues and metrics are shared by all workers of
// a Host.
//
// The request and response phases can be driven callback by callback
// ([Stream.RequestHeaders], [Stream.RequestBody], …, each returning a
// [Step]) or in one call ([Stream.ProcessRequest],
// [Stream.ProcessResponse], [Host.Exchange]).
//
// # Stopping at the headers
//
// As in Envoy, a headers callback that returns non-zero (the Go SDK's
// ActionPause, StopIteration) stops all iteration of that direction by
// default (StopAllIterationAndWatermark): the body and trailers that
// follow are held by the host and reach no plugin callback until the
// plugin continues the stream, from a tick, a queue or another stream's
// callback; then the plugin gets the held body in one body callback and
// the trailers after it. A plugin that pauses at the headers and waits
// for its body callback therefore waits forever, in Envoy as here.
// [Options.AllowOnHeadersStopIteration] (Envoy's
// allow_on_headers_stop_iteration, Envoy 1.35 and later) makes the result
// a plain StopIteration instead: body and trailers callbacks run while the
// headers are held.
//
// # Envoy's WASI
//
// The host implements WASI itself instead of instantiating wazero's
// wasi_snapshot_preview1, so only the functions Envoy provides exist and they
// behave as Envoy's do (see [Profile]). A module importing anything else is
// refused by [New] with an error naming the import.
//
// # Failures
//
// A trap (a Go panic, `unreachable`, proc_exit, a restricted callback, an
// out-of-bounds access) marks that worker's VM failed and is logged. What
// happens to requests on a failed VM is the [FailurePolicy].
//
// # Concurrency
//
// Host and Stream methods are safe for concurrent use; a single Stream is
// meant to be driven by one goroutine at a time (its phases are ordered).
//
// # Limits
//
// A callback is never interrupted, as in Envoy: a plugin that loops
// forever holds its worker, and every stream of that worker and Close wait
// for it.
package wasmhost
