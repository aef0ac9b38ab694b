// Package config parses and validates wasmguard's plugin configuration.
//
// The configuration is a JSON object (the Proxy-Wasm plugin configuration).
// Parse is a pure function: it reads the bytes once, at plugin start, and
// returns either a ready-to-use *Config (patterns compiled, limits checked)
// or an *Error that names the JSON path of the offending value and the
// problem, for example
//
//	block_patterns[1]: invalid regex "(": missing closing )
//
// Every key is optional. Unknown keys, duplicate keys, wrong types, values
// out of range and invalid patterns are refused: a typo must never pass
// silently, because a security filter that silently ignores half of its
// configuration is worse than one that refuses to start.
//
// Parse never panics, whatever the input (a fuzz test holds it to that).
package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/wasmguard/wasmguard/patterns"
	"github.com/wasmguard/wasmguard/ratelimit"
)

// Limits on the configuration itself. Each is enforced by Parse and tested
// at its edge.
const (
	// MaxConfigBytes bounds the size of the whole configuration document.
	MaxConfigBytes = 1 << 20
	// MaxBodyBytesLimit is the largest accepted max_body_bytes. The body
	// is buffered by Envoy and copied into the VM's linear memory, so this
	// bounds the memory one request can make a VM hold.
	MaxBodyBytesLimit = 8 << 20
	// DefaultMaxBodyBytes is max_body_bytes when the key is absent.
	DefaultMaxBodyBytes = 64 << 10
	// DefaultDenyStatus is deny_status when the key is absent.
	DefaultDenyStatus = 403
	// MaxRuleIDLen bounds a rule id; ids go into a response header and
	// log lines, so they are short and printable.
	MaxRuleIDLen = 64
	// MinRequestsPerMinute and MaxRequestsPerMinute bound
	// rate_limit.requests_per_minute. At the minimum, one token takes
	// 1000 minutes (about 17 hours) to refill.
	MinRequestsPerMinute = 0.001
	MaxRequestsPerMinute = 1e9
	// MaxBurst bounds rate_limit.burst.
	MaxBurst = 1e9
	// MaxXFFTrustedHops bounds rate_limit.xff_trusted_hops.
	MaxXFFTrustedHops = 16
	// MaxHeaderNameLen bounds the header name in rate_limit.key.
	MaxHeaderNameLen = 128
)

// Mode says whether the filter acts on its decisions.
type Mode uint8

const (
	// Enforce blocks and rate-limits.
	Enforce Mode = iota
	// Monitor only logs and counts what it would have done.
	Monitor
)

func (m Mode) String() string {
	if m == Monitor {
		return "monitor"
	}
	return "enforce"
}

// OnError says what happens to a request when the filter fails internally.
type OnError uint8

const (
	// Deny answers 500 (fail closed).
	Deny OnError = iota
	// Allow lets the request through (fail open).
	Allow
)

func (o OnError) String() string {
	if o == Allow {
		return "allow"
	}
	return "deny"
}

// KeyKind says what a rate-limit bucket is keyed by.
type KeyKind uint8

const (
	// KeyClientIP keys by the client address (source.address, or the
	// x-forwarded-for entry chosen by XFFTrustedHops).
	KeyClientIP KeyKind = iota
	// KeyGlobal puts every request in one bucket.
	KeyGlobal
	// KeyHeader keys by the value of one request header.
	KeyHeader
)

// Config is a validated configuration. Nothing modifies it after Parse
// returns, so one Config may serve many requests at once.
type Config struct {
	Mode         Mode
	Patterns     *patterns.Set // never nil; may be empty
	MaxBodyBytes int           // 0 turns body inspection off
	HoldHeaders  bool          // hold the request headers too while the body is inspected
	DenyStatus   int
	OnError      OnError
	RateLimit    *RateLimit // nil when rate limiting is off
}

// RateLimit is the validated "rate_limit" object.
type RateLimit struct {
	RequestsPerMinute float64
	Burst             int
	Limit             ratelimit.Limit
	Key               KeyKind
	Header            string // lower-case header name, for KeyHeader
	XFFTrustedHops    int
	Slots             int
}

// InspectsBody reports whether any pattern looks at the body and body
// inspection is on.
func (c *Config) InspectsBody() bool {
	return c.MaxBodyBytes > 0 && c.Patterns.Targets()&patterns.TargetBody != 0
}

// Error is a configuration error: Path is the JSON path of the offending
// value ("" for the document itself), Msg the problem.
type Error struct {
	Path string
	Msg  string
}

func (e *Error) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

func errorf(path, format string, args ...any) *Error {
	return &Error{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Parse validates data and returns the configuration it describes.
// The error, when not nil, is an *Error.
func Parse(data []byte) (cfg *Config, err error) {
	if len(data) > MaxConfigBytes {
		return nil, errorf("", "configuration is %d bytes, the limit is %d", len(data), MaxConfigBytes)
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, errorf("", `configuration is empty: expected a JSON object such as {"block_patterns": [...]}`)
	}
	if !gjson.ValidBytes(data) {
		return nil, errorf("", "configuration is not valid JSON")
	}
	root := gjson.ParseBytes(data)
	if !root.IsObject() {
		return nil, errorf("", "configuration must be a JSON object, got %s", kind(root))
	}
	c := &Config{MaxBodyBytes: DefaultMaxBodyBytes, DenyStatus: DefaultDenyStatus}
	fields, err := objectFields(root, "", topKeys)
	if err != nil {
		return nil, err
	}

	if v, ok := fields["mode"]; ok {
		s, err := enumString(v, "mode", "enforce", "monitor")
		if err != nil {
			return nil, err
		}
		if s == "monitor" {
			c.Mode = Monitor
		}
	}
	defaultTargets := patterns.AllTargets
	if v, ok := fields["targets"]; ok {
		if defaultTargets, err = parseTargets(v, "targets"); err != nil {
			return nil, err
		}
	}
	if v, ok := fields["max_body_bytes"]; ok {
		if c.MaxBodyBytes, err = intIn(v, "max_body_bytes", 0, MaxBodyBytesLimit); err != nil {
			return nil, err
		}
	}
	if v, ok := fields["hold_headers"]; ok {
		if !v.IsBool() {
			return nil, errorf("hold_headers", "must be true or false, got %s", kind(v))
		}
		c.HoldHeaders = v.Bool()
	}
	if v, ok := fields["deny_status"]; ok {
		if c.DenyStatus, err = intIn(v, "deny_status", 400, 599); err != nil {
			return nil, err
		}
	}
	if v, ok := fields["on_error"]; ok {
		s, err := enumString(v, "on_error", "deny", "allow")
		if err != nil {
			return nil, err
		}
		if s == "allow" {
			c.OnError = Allow
		}
	}
	var rules []*patterns.Compiled
	if v, ok := fields["block_patterns"]; ok {
		if rules, err = parsePatterns(v, defaultTargets); err != nil {
			return nil, err
		}
	}
	if c.Patterns, err = patterns.NewSet(rules); err != nil {
		return nil, errorf("block_patterns", "%v", err)
	}
	if v, ok := fields["rate_limit"]; ok {
		if c.RateLimit, err = parseRateLimit(v); err != nil {
			return nil, err
		}
	}
	return c, nil
}

var (
	topKeys     = []string{"mode", "block_patterns", "targets", "max_body_bytes", "hold_headers", "deny_status", "on_error", "rate_limit"}
	patternKeys = []string{"id", "pattern", "targets", "case_sensitive"}
	rateKeys    = []string{"requests_per_minute", "burst", "key", "xff_trusted_hops", "slots"}
)

// objectFields returns the members of obj by key, refusing unknown and
// duplicate keys. Duplicates are refused because JSON parsers disagree on
// which one wins, and a reviewer must see what the filter sees.
func objectFields(obj gjson.Result, path string, allowed []string) (map[string]gjson.Result, error) {
	fields := make(map[string]gjson.Result, len(allowed))
	var err error
	obj.ForEach(func(k, v gjson.Result) bool {
		key := k.String()
		p := join(path, key)
		if !contains(allowed, key) {
			msg := "unknown key " + strconv.QuoteToASCII(truncate(key, maxShown))
			if s := suggest(key, allowed); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			err = &Error{Path: p, Msg: msg}
			return false
		}
		if _, dup := fields[key]; dup {
			err = errorf(p, "duplicate key %s", strconv.QuoteToASCII(truncate(key, maxShown)))
			return false
		}
		fields[key] = v
		return true
	})
	return fields, err
}

func parsePatterns(v gjson.Result, defaultTargets patterns.Target) ([]*patterns.Compiled, error) {
	if !v.IsArray() {
		return nil, errorf("block_patterns", "must be an array of patterns, got %s", kind(v))
	}
	items := v.Array()
	if len(items) > patterns.MaxPatterns {
		return nil, errorf("block_patterns", "has %d patterns, the limit is %d", len(items), patterns.MaxPatterns)
	}
	rules := make([]*patterns.Compiled, 0, len(items))
	ids := make(map[string]int, len(items))
	insts := 0
	for i, item := range items {
		path := "block_patterns[" + strconv.Itoa(i) + "]"
		r := patterns.Rule{ID: path, Targets: defaultTargets}
		patternPath := path
		switch {
		case item.Type == gjson.String:
			r.Pattern = item.Str
		case item.IsObject():
			f, err := objectFields(item, path, patternKeys)
			if err != nil {
				return nil, err
			}
			if id, ok := f["id"]; ok {
				if r.ID, err = ruleID(id, path+".id"); err != nil {
					return nil, err
				}
			}
			p, ok := f["pattern"]
			if !ok {
				return nil, errorf(path, `missing required key "pattern"`)
			}
			if p.Type != gjson.String {
				return nil, errorf(path+".pattern", "must be a string, got %s", kind(p))
			}
			r.Pattern, patternPath = p.Str, path+".pattern"
			if t, ok := f["targets"]; ok {
				if r.Targets, err = parseTargets(t, path+".targets"); err != nil {
					return nil, err
				}
			}
			if cs, ok := f["case_sensitive"]; ok {
				if !cs.IsBool() {
					return nil, errorf(path+".case_sensitive", "must be true or false, got %s", kind(cs))
				}
				r.CaseSensitive = cs.Bool()
			}
		default:
			return nil, errorf(path, "must be a string or an object with a \"pattern\", got %s", kind(item))
		}
		if j, dup := ids[r.ID]; dup {
			idPath := path + ".id"
			if item.Type == gjson.String {
				idPath = path // its id is the default one, taken by an explicit id before it
			}
			return nil, errorf(idPath, "duplicate id %q (also block_patterns[%d])", r.ID, j)
		}
		ids[r.ID] = i
		c, err := patterns.CompileRule(r)
		if err != nil {
			return nil, errorf(patternPath, "%v", err)
		}
		// A pattern that matches the empty string matches every value
		// (".*", "x|"): it would block every request.
		if c.MatchesEmpty() {
			return nil, errorf(patternPath, "pattern %s matches the empty string, so it would match every request", strconv.QuoteToASCII(truncate(r.Pattern, maxShown)))
		}
		// Stop at the first rule past the set's budget rather than
		// compiling the rest for NewSet to refuse.
		if insts += c.Insts(); insts > patterns.MaxSetInsts {
			return nil, errorf("block_patterns", "compiled programs total more than %d instructions at block_patterns[%d]", patterns.MaxSetInsts, i)
		}
		rules = append(rules, c)
	}
	return rules, nil
}

// ruleID accepts ids made of letters, digits and "._:-[]", so that an id
// can go into a response header and a log line unescaped.
func ruleID(v gjson.Result, path string) (string, error) {
	if v.Type != gjson.String {
		return "", errorf(path, "must be a string, got %s", kind(v))
	}
	id := v.Str
	if id == "" || len(id) > MaxRuleIDLen {
		return "", errorf(path, "must be 1 to %d characters, got %d", MaxRuleIDLen, len(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._:-[]", c) >= 0) {
			return "", errorf(path, "%q has %q: only letters, digits and ._:-[] are allowed", id, c)
		}
	}
	return id, nil
}

func parseTargets(v gjson.Result, path string) (patterns.Target, error) {
	if !v.IsArray() {
		return 0, errorf(path, `must be an array of "path", "query", "headers", "body", got %s`, kind(v))
	}
	var t patterns.Target
	for i, item := range v.Array() {
		p := path + "[" + strconv.Itoa(i) + "]"
		if item.Type != gjson.String {
			return 0, errorf(p, "must be a string, got %s", kind(item))
		}
		one, ok := patterns.ParseTarget(item.Str)
		if !ok {
			return 0, errorf(p, `unknown target %q: use "path", "query", "headers" or "body"`, item.Str)
		}
		t |= one
	}
	if t == 0 {
		return 0, errorf(path, "must name at least one target")
	}
	return t, nil
}

func parseRateLimit(v gjson.Result) (*RateLimit, error) {
	if !v.IsObject() {
		return nil, errorf("rate_limit", "must be an object, got %s", kind(v))
	}
	f, err := objectFields(v, "rate_limit", rateKeys)
	if err != nil {
		return nil, err
	}
	rl := &RateLimit{Slots: ratelimit.DefaultSlots}
	rpm, ok := f["requests_per_minute"]
	if !ok {
		return nil, errorf("rate_limit", `missing required key "requests_per_minute"`)
	}
	if rpm.Type != gjson.Number {
		return nil, errorf("rate_limit.requests_per_minute", "must be a number, got %s", kind(rpm))
	}
	if !(rpm.Num >= MinRequestsPerMinute && rpm.Num <= MaxRequestsPerMinute) {
		return nil, errorf("rate_limit.requests_per_minute", "must be between %g and %g, got %s", MinRequestsPerMinute, float64(MaxRequestsPerMinute), shown(rpm))
	}
	rl.RequestsPerMinute = rpm.Num
	rl.Burst = int(math.Max(1, math.Ceil(rpm.Num)))
	if b, ok := f["burst"]; ok {
		if rl.Burst, err = intIn(b, "rate_limit.burst", 1, MaxBurst); err != nil {
			return nil, err
		}
	}
	if k, ok := f["key"]; ok {
		if k.Type != gjson.String {
			return nil, errorf("rate_limit.key", "must be a string, got %s", kind(k))
		}
		switch s := k.Str; {
		case s == "client_ip":
			rl.Key = KeyClientIP
		case s == "global":
			rl.Key = KeyGlobal
		case strings.HasPrefix(s, "header:"):
			name := strings.ToLower(strings.TrimPrefix(s, "header:"))
			if !validHeaderName(name) {
				return nil, errorf("rate_limit.key", "%q: header name must be 1 to %d token characters and not a pseudo-header", s, MaxHeaderNameLen)
			}
			rl.Key, rl.Header = KeyHeader, name
		default:
			return nil, errorf("rate_limit.key", `unknown key %q: use "client_ip", "global" or "header:<name>"`, s)
		}
	}
	if h, ok := f["xff_trusted_hops"]; ok {
		if rl.XFFTrustedHops, err = intIn(h, "rate_limit.xff_trusted_hops", 0, MaxXFFTrustedHops); err != nil {
			return nil, err
		}
		if rl.Key != KeyClientIP && rl.XFFTrustedHops > 0 {
			return nil, errorf("rate_limit.xff_trusted_hops", `only applies to key "client_ip"`)
		}
	}
	if s, ok := f["slots"]; ok {
		if rl.Slots, err = intIn(s, "rate_limit.slots", 1, ratelimit.MaxSlots); err != nil {
			return nil, err
		}
	}
	rl.Limit = ratelimit.PerMinute(rl.RequestsPerMinute, rl.Burst)
	if err := rl.Limit.Validate(); err != nil { // unreachable with the bounds above; kept as a guard
		return nil, errorf("rate_limit", "%v", err)
	}
	return rl, nil
}

// validHeaderName accepts an RFC 9110 token of bounded length.
func validHeaderName(s string) bool {
	if s == "" || len(s) > MaxHeaderNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func enumString(v gjson.Result, path string, allowed ...string) (string, error) {
	if v.Type != gjson.String || !contains(allowed, v.Str) {
		return "", errorf(path, "must be one of %s, got %s", quoteList(allowed), shown(v))
	}
	return v.Str, nil
}

// intIn accepts a JSON integer in [lo, hi]. Fractions and exponents are
// refused rather than rounded, so the configured value is the one used.
func intIn(v gjson.Result, path string, lo, hi int) (int, error) {
	if v.Type != gjson.Number {
		return 0, errorf(path, "must be an integer, got %s", kind(v))
	}
	n, err := strconv.ParseInt(v.Raw, 10, 64)
	if err != nil {
		return 0, errorf(path, "must be an integer, got %s", shown(v))
	}
	if n < int64(lo) || n > int64(hi) {
		return 0, errorf(path, "must be between %d and %d, got %d", lo, hi, n)
	}
	return int(n), nil
}

func kind(v gjson.Result) string {
	switch {
	case v.IsObject():
		return "an object"
	case v.IsArray():
		return "an array"
	case v.Type == gjson.String:
		return "a string"
	case v.Type == gjson.Number:
		return "a number (" + truncate(v.Raw, maxShown) + ")"
	case v.Type == gjson.True || v.Type == gjson.False:
		return "a boolean"
	case v.Type == gjson.Null:
		return "null"
	}
	return "nothing"
}

// join appends key to a JSON path. A key that is not a plain name is
// quoted, so a path never spans lines or hides a separator.
func join(path, key string) string {
	if !plainKey(key) {
		key = strconv.QuoteToASCII(truncate(key, maxShown))
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func plainKey(k string) bool {
	if k == "" || len(k) > maxShown {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// maxShown bounds how much of a configuration value or key an error
// message repeats.
const maxShown = 64

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// shown renders a value for an error message on one line: strings quoted,
// numbers as written, anything else by its kind; at most maxShown bytes.
func shown(v gjson.Result) string {
	switch v.Type {
	case gjson.String:
		return strconv.QuoteToASCII(truncate(v.Str, maxShown))
	case gjson.Number:
		return truncate(v.Raw, maxShown)
	}
	return kind(v)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func quoteList(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// suggest returns the allowed key closest to key when it is a likely typo
// (edit distance at most 2), or "".
func suggest(key string, allowed []string) string {
	best, bestD := "", 3
	for _, a := range allowed {
		if d := editDistance(key, a); d < bestD {
			best, bestD = a, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
