// Package e2e holds wasmguard's tests that need more than the Go toolchain:
// envoy.yaml and deploy/istio/envoyfilter.yaml checked against Envoy's own API
// (go-control-plane), security.wasm run in Envoy, and security.wasm run in
// V8 through Node.js. It is a module of its own so that its test-only
// dependencies never raise the main module's go directive.
//
// The request scenarios live in testdata/scenarios.json so that other tests
// (the in-process HTTP tests of the main module) can read the same file;
// this file only defines its schema and checks it.
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
)

// DesignConfiguration is the design documents' plugin configuration, byte for
// byte as it appears in envoy.yaml, deploy/istio/envoyfilter.yaml and
// v8/host.mjs. Tests compare configurations semantically (as JSON values),
// so whitespace differences in those files would not fail them.
const DesignConfiguration = `{"block_patterns": [".*\\.(exe|dll|scr|bat)$", ".*<script.*>.*</script>.*"], "rate_limit": {"requests_per_minute": 100, "burst": 20}}`

// ScenariosFile is the path of the scenario file relative to this directory.
const ScenariosFile = "testdata/scenarios.json"

// maxScenariosBytes bounds the scenario file LoadScenarios reads.
const maxScenariosBytes = 1 << 20

// Scenarios is the content of testdata/scenarios.json.
type Scenarios struct {
	Comment   []string          `json:"comment"`
	Requests  []Request         `json:"requests"`
	RateLimit RateLimitScenario `json:"rate_limit"`
}

// Request is one request and the response it must get with the design
// configuration.
type Request struct {
	Name     string            `json:"name"`
	ClientIP string            `json:"client_ip"` // a 127.0.0.0/8 address the client binds, unique per request
	Method   string            `json:"method"`
	Path     string            `json:"path"` // the raw request target: path and query exactly as sent
	Headers  map[string]string `json:"headers,omitempty"`
	Body     string            `json:"body,omitempty"`
	Want     Want              `json:"want"`
}

// Want is the expected response. For a blocked request (Rule set) the
// response is the filter's local reply: Status, content-type
// application/json, x-wasmguard-rule: Rule and a JSON body with
// "error":"request blocked" and "rule": Rule. With Upstream set the request
// must have reached the upstream with its method, raw path and body intact.
type Want struct {
	Status   int    `json:"status"`
	Rule     string `json:"rule,omitempty"`
	Upstream bool   `json:"upstream,omitempty"`
}

// RateLimitScenario sends Burst+1 quick requests from ClientIP: the first
// Burst pass and the next one gets 429 with retry-after (whole seconds, at
// least 1), x-ratelimit-limit, x-ratelimit-remaining and a JSON body with
// "error":"rate limited"; a request from OtherClientIP right after passes.
type RateLimitScenario struct {
	Name              string `json:"name"`
	ClientIP          string `json:"client_ip"`
	OtherClientIP     string `json:"other_client_ip"`
	Method            string `json:"method"`
	Path              string `json:"path"`
	RequestsPerMinute int    `json:"requests_per_minute"`
	Burst             int    `json:"burst"`
}

// LoadScenarios reads and checks a scenario file. Unknown keys are errors, so
// a typo in the file cannot silently drop an expectation.
func LoadScenarios(path string) (Scenarios, error) {
	var s Scenarios
	raw, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	if len(raw) > maxScenariosBytes {
		return s, fmt.Errorf("%s: %d bytes, more than the %d allowed", path, len(raw), maxScenariosBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return s, fmt.Errorf("%s: %w", path, err)
	}
	if err := s.Check(); err != nil {
		return s, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Check reports the first problem in the scenarios: a missing name, method or
// path, a duplicate name, a client IP outside 127.0.0.0/8 or used twice, a
// status outside 100-599, a blocked expectation without a rule, or a rate
// limit without a positive rate and burst.
func (s Scenarios) Check() error {
	if len(s.Requests) == 0 {
		return fmt.Errorf("requests: empty")
	}
	names := map[string]bool{}
	ips := map[string]string{}
	useIP := func(field, ip, owner string) error {
		a, err := netip.ParseAddr(ip)
		if err != nil || !a.Is4() || !netip.MustParsePrefix("127.0.0.0/8").Contains(a) {
			return fmt.Errorf("%s: %q is not an IPv4 loopback address", field, ip)
		}
		if prev, ok := ips[ip]; ok {
			return fmt.Errorf("%s: %s already used by %s", field, ip, prev)
		}
		ips[ip] = owner
		return nil
	}
	for i, r := range s.Requests {
		f := fmt.Sprintf("requests[%d]", i)
		switch {
		case r.Name == "":
			return fmt.Errorf("%s.name: empty", f)
		case names[r.Name]:
			return fmt.Errorf("%s.name: duplicate %q", f, r.Name)
		case r.Method == "":
			return fmt.Errorf("%s.method: empty", f)
		case len(r.Path) == 0 || r.Path[0] != '/':
			return fmt.Errorf("%s.path: %q does not start with /", f, r.Path)
		case r.Want.Status < 100 || r.Want.Status > 599:
			return fmt.Errorf("%s.want.status: %d is not an HTTP status", f, r.Want.Status)
		case r.Want.Status >= 400 && r.Want.Rule == "":
			return fmt.Errorf("%s.want.rule: empty for a blocked request", f)
		case r.Want.Upstream && r.Want.Rule != "":
			return fmt.Errorf("%s.want: upstream and rule both set", f)
		}
		names[r.Name] = true
		if err := useIP(f+".client_ip", r.ClientIP, r.Name); err != nil {
			return err
		}
	}
	rl := s.RateLimit
	switch {
	case rl.Name == "" || rl.Method == "" || len(rl.Path) == 0 || rl.Path[0] != '/':
		return fmt.Errorf("rate_limit: name, method and a path starting with / are required")
	case rl.RequestsPerMinute <= 0:
		return fmt.Errorf("rate_limit.requests_per_minute: %d, want > 0", rl.RequestsPerMinute)
	case rl.Burst < 1:
		return fmt.Errorf("rate_limit.burst: %d, want >= 1", rl.Burst)
	}
	if err := useIP("rate_limit.client_ip", rl.ClientIP, rl.Name); err != nil {
		return err
	}
	return useIP("rate_limit.other_client_ip", rl.OtherClientIP, rl.Name)
}
