package filter

import "github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"

// Counter names, as passed to proxy_define_metric. Envoy files metrics that
// a Wasm plugin defines in its "wasmcustom" stats namespace: in /stats the
// first one reads "wasmcustom.wasmguard_requests_total", in
// /stats/prometheus plain "wasmguard_requests_total" (a custom namespace
// gets neither the prefix nor Envoy's usual "envoy_"). Every worker VM
// defines the same names and Envoy gives them one shared stat, so a counter
// is per sidecar, not per worker. Monitored counts decisions, not requests:
// a request that would have been both limited and blocked counts twice.
const (
	MetricRequests       = "wasmguard_requests_total"                  // requests seen
	MetricBlocked        = "wasmguard_blocked_total"                   // answered deny_status by a pattern
	MetricRateLimited    = "wasmguard_rate_limited_total"              // answered 429
	MetricMonitored      = "wasmguard_monitored_total"                 // monitor mode: would have blocked or limited
	MetricBodyTruncated  = "wasmguard_body_truncated_total"            // body longer than max_body_bytes: only the prefix was inspected
	MetricErrors         = "wasmguard_errors_total"                    // internal errors (handled by on_error)
	MetricCASExhausted   = "wasmguard_ratelimit_cas_exhausted_total"   // limiter gave up on a contended slot (request denied)
	MetricSlotCollisions = "wasmguard_ratelimit_slot_collisions_total" // a key found its slot last used by another key
	MetricCorruptBuckets = "wasmguard_ratelimit_corrupt_total"         // a stored bucket could not be decoded and was reset
)

// counter is the small interface the filter needs from a counter; the SDK's
// MetricCounter satisfies it, and so does a no-op for tests of pure parts.
type counter interface{ Increment(uint64) }

// metrics holds the counter handles, defined once at plugin start so the
// request path only increments.
type metrics struct {
	requests, blocked, rateLimited, monitored, bodyTruncated, errors,
	casExhausted, slotCollisions, corrupt counter
}

func defineMetrics() *metrics {
	d := func(name string) counter { return safeCounter(proxywasm.DefineCounterMetric(name)) }
	return &metrics{
		requests:       d(MetricRequests),
		blocked:        d(MetricBlocked),
		rateLimited:    d(MetricRateLimited),
		monitored:      d(MetricMonitored),
		bodyTruncated:  d(MetricBodyTruncated),
		errors:         d(MetricErrors),
		casExhausted:   d(MetricCASExhausted),
		slotCollisions: d(MetricSlotCollisions),
		corrupt:        d(MetricCorruptBuckets),
	}
}

// safeCounter increments a host counter without ever panicking: the SDK
// panics when the host refuses an increment, and a lost count must not
// become a lost request.
type safeCounter proxywasm.MetricCounter

func (c safeCounter) Increment(n uint64) {
	defer func() { _ = recover() }()
	proxywasm.MetricCounter(c).Increment(n)
}
