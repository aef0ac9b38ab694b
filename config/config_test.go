package config

import (
	"os"
	"strings"
	"testing"

	"github.com/wasmguard/wasmguard/patterns"
	"github.com/wasmguard/wasmguard/ratelimit"
)

// seed is the design documents' configuration, verbatim.
const seed = `{"block_patterns": [".*\\.(exe|dll|scr|bat)$", ".*<script.*>.*</script>.*"],
 "rate_limit": {"requests_per_minute": 100, "burst": 20}}`

func TestSeedConfiguration(t *testing.T) {
	c, err := Parse([]byte(seed))
	if err != nil {
		t.Fatalf("Parse(seed) = %v", err)
	}
	if c.Mode != Enforce || c.DenyStatus != 403 || c.MaxBodyBytes != 65536 || c.OnError != Deny {
		t.Errorf("defaults: mode=%v deny_status=%d max_body_bytes=%d on_error=%v", c.Mode, c.DenyStatus, c.MaxBodyBytes, c.OnError)
	}
	if c.Patterns.Len() != 2 || c.Patterns.Targets() != patterns.AllTargets {
		t.Errorf("patterns: len=%d targets=%v", c.Patterns.Len(), c.Patterns.Targets())
	}
	if !c.InspectsBody() {
		t.Error("InspectsBody() = false, want true")
	}
	rl := c.RateLimit
	if rl == nil {
		t.Fatal("RateLimit = nil")
	}
	if rl.RequestsPerMinute != 100 || rl.Burst != 20 || rl.Key != KeyClientIP || rl.XFFTrustedHops != 0 || rl.Slots != ratelimit.DefaultSlots {
		t.Errorf("rate_limit = %+v", *rl)
	}
	if want := ratelimit.PerMinute(100, 20); rl.Limit != want {
		t.Errorf("Limit = %+v, want %+v", rl.Limit, want)
	}
	if m, ok := c.Patterns.CheckPath("/download/evil.exe"); !ok || m.RuleID != "block_patterns[0]" {
		t.Errorf("CheckPath(/download/evil.exe) = %+v, %v; want block_patterns[0]", m, ok)
	}
}

// The example files shipped for users must stay valid.
func TestShippedExamples(t *testing.T) {
	for _, f := range []string{"../testdata/config/seed.json", "../testdata/config/full.json"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(data); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestFullConfiguration(t *testing.T) {
	c, err := Parse([]byte(`{
		"mode": "monitor",
		"targets": ["path", "query"],
		"max_body_bytes": 0,
		"hold_headers": true,
		"deny_status": 451,
		"on_error": "allow",
		"block_patterns": [
			"evil",
			{"id": "xss-1", "pattern": "<script", "targets": ["body", "headers"], "case_sensitive": true}
		],
		"rate_limit": {"requests_per_minute": 0.5, "key": "header:X-API-Key", "slots": 64}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != Monitor || c.DenyStatus != 451 || c.MaxBodyBytes != 0 || c.OnError != Allow || !c.HoldHeaders {
		t.Errorf("got mode=%v deny_status=%d max_body_bytes=%d on_error=%v", c.Mode, c.DenyStatus, c.MaxBodyBytes, c.OnError)
	}
	if c.InspectsBody() {
		t.Error("InspectsBody() = true with max_body_bytes 0")
	}
	if got := c.Patterns.Targets(); got != patterns.AllTargets {
		t.Errorf("Targets() = %v, want all (default path|query plus body|headers)", got)
	}
	// "evil" uses the default targets: path and query, not headers.
	if _, ok := c.Patterns.CheckHeaders([][2]string{{"x", "evil"}}); ok {
		t.Error(`"evil" matched a header, but its targets are path and query`)
	}
	if m, ok := c.Patterns.CheckHeaders([][2]string{{"x", "<script"}}); !ok || m.RuleID != "xss-1" {
		t.Errorf("CheckHeaders = %+v, %v; want xss-1", m, ok)
	}
	if _, ok := c.Patterns.CheckHeaders([][2]string{{"x", "<SCRIPT"}}); ok {
		t.Error("case_sensitive rule matched other case")
	}
	rl := c.RateLimit
	if rl.Burst != 1 || rl.Key != KeyHeader || rl.Header != "x-api-key" || rl.Slots != 64 {
		t.Errorf("rate_limit = %+v", *rl)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(`{"rate_limit": {"requests_per_minute": 30}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Patterns == nil || c.Patterns.Len() != 0 {
		t.Errorf("Patterns = %v, want an empty set", c.Patterns)
	}
	if c.RateLimit.Burst != 30 {
		t.Errorf("burst defaults to %d, want requests_per_minute (30)", c.RateLimit.Burst)
	}
	c, err = Parse([]byte(`{}`))
	if err != nil || c.RateLimit != nil {
		t.Errorf("Parse({}) = %+v, %v; want no rate limit, no error", c, err)
	}
}

func TestBadConfigurations(t *testing.T) {
	many := `{"block_patterns": [` + strings.Repeat(`"a",`, patterns.MaxPatterns) + `"a"]}`
	long := `{"block_patterns": ["` + strings.Repeat("a", patterns.MaxPatternLen+1) + `"]}`
	tests := []struct {
		name, config, want string
	}{
		{"empty", ``, "configuration is empty"},
		{"not json", `{"block_patterns": [}`, "configuration is not valid JSON"},
		{"not an object", `["a"]`, "configuration must be a JSON object, got an array"},
		{"unknown key", `{"block_pattern": []}`, `block_pattern: unknown key "block_pattern" (did you mean "block_patterns"?)`},
		{"unknown key far from any", `{"zzz": 1}`, `zzz: unknown key "zzz"`},
		{"duplicate key", `{"mode": "monitor", "mode": "enforce"}`, `mode: duplicate key "mode"`},
		{"invalid regex", `{"block_patterns": ["ok", "("]}`, `block_patterns[1]: invalid regex "(": missing closing )`},
		{"invalid regex in object", `{"block_patterns": [{"pattern": "a)"}]}`, `block_patterns[0].pattern: invalid regex "a)": unexpected )`},
		{"empty pattern", `{"block_patterns": [""]}`, `block_patterns[0]: empty pattern`},
		{"pattern too long", long, `block_patterns[0]: pattern is 4097 bytes, the limit is 4096`},
		{"repeat too large", `{"block_patterns": ["a{1001}"]}`, `block_patterns[0]: invalid regex "a{1001}": invalid repeat count`},
		{"nested repeat", `{"block_patterns": ["((a{100}){100}){100}"]}`, `block_patterns[0]: invalid regex "((a{100}){100}){100}": invalid repeat count`},
		{"too many patterns", many, `block_patterns: has 257 patterns, the limit is 256`},
		{"pattern wrong type", `{"block_patterns": [1]}`, `block_patterns[0]: must be a string or an object with a "pattern", got a number (1)`},
		{"patterns not array", `{"block_patterns": ".*"}`, `block_patterns: must be an array of patterns, got a string`},
		{"pattern object without pattern", `{"block_patterns": [{"id": "x"}]}`, `block_patterns[0]: missing required key "pattern"`},
		{"pattern object unknown key", `{"block_patterns": [{"pattern": "x", "target": ["path"]}]}`, `block_patterns[0].target: unknown key "target" (did you mean "targets"?)`},
		{"unknown target", `{"block_patterns": [{"pattern": "x", "targets": ["url"]}]}`, `block_patterns[0].targets[0]: unknown target "url"`},
		{"empty targets", `{"targets": []}`, `targets: must name at least one target`},
		{"bad id", `{"block_patterns": [{"id": "a b", "pattern": "x"}]}`, `block_patterns[0].id: "a b" has ' '`},
		{"duplicate id", `{"block_patterns": [{"id": "r", "pattern": "x"}, {"id": "r", "pattern": "y"}]}`, `block_patterns[1].id: duplicate id "r" (also block_patterns[0])`},
		{"explicit id takes a default id", `{"block_patterns": [{"id": "block_patterns[1]", "pattern": "x"}, "y"]}`, `block_patterns[1]: duplicate id "block_patterns[1]" (also block_patterns[0])`},
		{"hold_headers not bool", `{"hold_headers": 1}`, `hold_headers: must be true or false, got a number (1)`},
		{"case_sensitive not bool", `{"block_patterns": [{"pattern": "x", "case_sensitive": "yes"}]}`, `block_patterns[0].case_sensitive: must be true or false, got a string`},
		{"mode", `{"mode": "block"}`, `mode: must be one of "enforce", "monitor", got "block"`},
		{"on_error", `{"on_error": 1}`, `on_error: must be one of "deny", "allow", got 1`},
		{"deny_status low", `{"deny_status": 200}`, `deny_status: must be between 400 and 599, got 200`},
		{"deny_status fraction", `{"deny_status": 403.5}`, `deny_status: must be an integer, got 403.5`},
		{"max_body_bytes negative", `{"max_body_bytes": -1}`, `max_body_bytes: must be between 0 and 8388608, got -1`},
		{"max_body_bytes huge", `{"max_body_bytes": 99999999999999999999}`, `max_body_bytes: must be an integer, got 99999999999999999999`},
		{"rate_limit not object", `{"rate_limit": 100}`, `rate_limit: must be an object, got a number (100)`},
		{"rate_limit missing rpm", `{"rate_limit": {"burst": 20}}`, `rate_limit: missing required key "requests_per_minute"`},
		{"rpm zero", `{"rate_limit": {"requests_per_minute": 0}}`, `rate_limit.requests_per_minute: must be between 0.001 and 1e+09, got 0`},
		{"rpm below minimum", `{"rate_limit": {"requests_per_minute": 5e-324}}`, `rate_limit.requests_per_minute: must be between 0.001 and 1e+09, got 5e-324`},
		{"rpm above maximum", `{"rate_limit": {"requests_per_minute": 1000000001}}`, `rate_limit.requests_per_minute: must be between 0.001 and 1e+09, got 1000000001`},
		{"burst above maximum", `{"rate_limit": {"requests_per_minute": 1, "burst": 1000000001}}`, `rate_limit.burst: must be between 1 and 1000000000, got 1000000001`},
		{"slots above maximum", `{"rate_limit": {"requests_per_minute": 1, "slots": 1048577}}`, `rate_limit.slots: must be between 1 and 1048576, got 1048577`},
		{"max_body_bytes one past", `{"max_body_bytes": 8388609}`, `max_body_bytes: must be between 0 and 8388608, got 8388609`},
		{"id too long", `{"block_patterns": [{"id": "` + strings.Repeat("i", MaxRuleIDLen+1) + `", "pattern": "x"}]}`, `block_patterns[0].id: must be 1 to 64 characters, got 65`},
		{"header name too long", `{"rate_limit": {"requests_per_minute": 1, "key": "header:` + strings.Repeat("h", MaxHeaderNameLen+1) + `"}}`, `rate_limit.key: "header:hhhh`},
		{"target not a string", `{"targets": ["path", 1]}`, `targets[1]: must be a string, got a number (1)`},
		{"config too large", `{"block_patterns": ["` + strings.Repeat("a", MaxConfigBytes) + `"]}`, `configuration is 1048600 bytes, the limit is 1048576`},
		{"matches everything", `{"block_patterns": [".*"]}`, `block_patterns[0]: pattern ".*" matches the empty string, so it would match every request`},
		{"matches everything by alternation", `{"block_patterns": [{"pattern": "x|"}]}`, `block_patterns[0].pattern: pattern "x|" matches the empty string`},
		{"per-pattern program limit", `{"block_patterns": ["` + strings.Repeat("[a-z]{1000}", 21) + `"]}`, `block_patterns[0]: compiled program has 21002 instructions, the limit is 20000`},
		{"set program limit", `{"block_patterns": [` + strings.Repeat(`"[a-z]{1000}[a-z]{1000}[a-z]{1000}[a-z]{1000}[a-z]{1000}[a-z]{1000}[a-z]{1000}[a-z]{1000}[a-z]{1000}[a-z]{1000}x",`, 10) + `"y"]}`, `block_patterns: compiled programs total more than 100000 instructions at block_patterns[9]`},
		{"multi-line value", "{\"mode\": {\"a\":\n1}}", `mode: must be one of "enforce", "monitor", got an object`},
		{"multi-line key", "{\"a\\nb\": 1}", `"a\nb": unknown key "a\nb"`},
		{"long string value", `{"on_error": "` + strings.Repeat("z", 1000) + `"}`, `on_error: must be one of "deny", "allow", got "` + strings.Repeat("z", 64) + `..."`},
		{"rpm string", `{"rate_limit": {"requests_per_minute": "100"}}`, `rate_limit.requests_per_minute: must be a number, got a string`},
		{"burst zero", `{"rate_limit": {"requests_per_minute": 100, "burst": 0}}`, `rate_limit.burst: must be between 1 and 1000000000, got 0`},
		{"rate_limit typo", `{"rate_limit": {"requests_per_minute": 100, "brust": 20}}`, `rate_limit.brust: unknown key "brust" (did you mean "burst"?)`},
		{"rate key", `{"rate_limit": {"requests_per_minute": 1, "key": "ip"}}`, `rate_limit.key: unknown key "ip"`},
		{"rate key header empty", `{"rate_limit": {"requests_per_minute": 1, "key": "header:"}}`, `rate_limit.key: "header:": header name must be`},
		{"rate key pseudo header", `{"rate_limit": {"requests_per_minute": 1, "key": "header::path"}}`, `rate_limit.key: "header::path": header name must be`},
		{"xff hops range", `{"rate_limit": {"requests_per_minute": 1, "xff_trusted_hops": 17}}`, `rate_limit.xff_trusted_hops: must be between 0 and 16, got 17`},
		{"xff hops with global", `{"rate_limit": {"requests_per_minute": 1, "key": "global", "xff_trusted_hops": 1}}`, `rate_limit.xff_trusted_hops: only applies to key "client_ip"`},
		{"slots zero", `{"rate_limit": {"requests_per_minute": 1, "slots": 0}}`, `rate_limit.slots: must be between 1 and`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.config))
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", c)
			}
			if c != nil {
				t.Errorf("Parse returned a config with the error %v", err)
			}
			if _, ok := err.(*Error); !ok {
				t.Errorf("error is %T, want *config.Error", err)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error = %q\nwant prefix %q", err, tt.want)
			}
		})
	}
}

func TestErrorIsOneLine(t *testing.T) {
	_, err := Parse([]byte("{\"block_patterns\": [\"a\\nb(\"]}"))
	if err == nil {
		t.Fatal("accepted an invalid regex")
	}
	if strings.ContainsAny(err.Error(), "\n\r") {
		t.Errorf("error spans lines: %q", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(seed))
	f.Add([]byte(`{"mode":"monitor","block_patterns":[{"id":"a","pattern":"x","targets":["body"]}],"rate_limit":{"requests_per_minute":1,"key":"header:x"}}`))
	f.Add([]byte(`{"rate_limit":{"requests_per_minute":1e400}}`))
	f.Add([]byte(`{"block_patterns":["\xff"]}`))
	f.Add([]byte(`[[[[[[[[[[[[[[[[[[[[`))
	f.Add([]byte("{\"mode\": {\"a\":\n1}, \"x\ny\": 2}"))
	f.Add([]byte(`{"deny_status": 1e3, "rate_limit": {"requests_per_minute": 1, "key": "header:a\u000ab"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if (c == nil) == (err == nil) {
			t.Fatalf("Parse = %v, %v: want exactly one of config and error", c, err)
		}
		if err != nil && strings.ContainsAny(err.Error(), "\n\r") {
			t.Fatalf("multi-line error %q", err)
		}
	})
}

// Each limit accepts its edge value; the table above refuses one past it.
func TestLimitsAtTheEdge(t *testing.T) {
	padded := `{"mode": "enforce"}`
	padded += strings.Repeat(" ", MaxConfigBytes-len(padded))
	for _, cfg := range []string{
		padded,
		`{"max_body_bytes": 8388608}`,
		`{"rate_limit": {"requests_per_minute": 0.001, "burst": 1000000000, "slots": 1048576}}`,
		`{"rate_limit": {"requests_per_minute": 1000000000}}`,
		`{"block_patterns": [{"id": "` + strings.Repeat("i", MaxRuleIDLen) + `", "pattern": "x"}]}`,
		`{"rate_limit": {"requests_per_minute": 1, "key": "header:` + strings.Repeat("h", MaxHeaderNameLen) + `"}}`,
		`{"rate_limit": {"requests_per_minute": 1, "xff_trusted_hops": 16}}`,
		`{"block_patterns": ["` + strings.Repeat("[a-z]{1000}", 19) + "[a-z]{998}" + `"]}`,
	} {
		if _, err := Parse([]byte(cfg)); err != nil {
			t.Errorf("Parse(%.80q…) = %v, want it accepted", cfg, err)
		}
	}
}
