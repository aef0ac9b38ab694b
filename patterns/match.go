package patterns

import (
	"bytes"
	"fmt"
	"strings"
)

// Set is a list of compiled rules in configuration order. The zero Set and
// a nil *Set hold no rules and match nothing. A Set is immutable and safe
// for concurrent use.
type Set struct {
	rules   []*Compiled
	targets Target
	// byTarget lists, for each single target, the indexes of the rules
	// that have it, in ascending order.
	byTarget [numTargets][]int
}

// Match names the rule that matched and the request part it matched in.
type Match struct {
	RuleID string
	Target Target // a single target
}

// NewSet returns a Set of rules, in the order given, which is the order in
// which they are tried. It fails when there are more than MaxPatterns
// rules, when their programs total more than MaxSetInsts instructions, or
// when a rule is nil.
func NewSet(rules []*Compiled) (*Set, error) {
	if len(rules) > MaxPatterns {
		return nil, fmt.Errorf("%d patterns, the limit is %d", len(rules), MaxPatterns)
	}
	s := &Set{rules: make([]*Compiled, len(rules))}
	total := 0
	for i, c := range rules {
		if c == nil {
			return nil, fmt.Errorf("rule %d is nil", i)
		}
		total += c.insts
		s.rules[i] = c
		s.targets |= c.rule.Targets
		for t := 0; t < numTargets; t++ {
			if c.rule.Targets&(1<<t) != 0 {
				s.byTarget[t] = append(s.byTarget[t], i)
			}
		}
	}
	if total > MaxSetInsts {
		return nil, fmt.Errorf("compiled programs total %d instructions, the limit is %d", total, MaxSetInsts)
	}
	return s, nil
}

// Len returns the number of rules in s.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.rules)
}

// Targets returns the union of the targets of the rules in s, 0 for an
// empty Set. A caller can skip collecting a part no rule looks at.
func (s *Set) Targets() Target {
	if s == nil {
		return 0
	}
	return s.targets
}

// Rules returns the rules of s in order. The slice is a copy.
func (s *Set) Rules() []*Compiled {
	if s == nil {
		return nil
	}
	return append([]*Compiled(nil), s.rules...)
}

// CheckPath checks Envoy's :path pseudo-header, which may carry a query and
// a fragment (dropped; see SplitPath). Rules with TargetPath are matched
// against NormalizePath of the path and, when the decoded path holds a NUL
// byte, also against the normalized part before it (NulTruncatedPath): a
// server written in C reads "/evil.exe%00.jpg" as "/evil.exe". Rules with
// TargetQuery are matched against the
// values DecodeQuery returns for the query: the whole decoded query, then
// each key and value. It returns the first rule in configuration order that
// matches any of them; Match.Target is the part where that rule matched
// first (the path before the query). ok is false when no rule matches.
//
// CheckPath does not allocate when the path is already normal and no query
// value needs decoding; otherwise it allocates one scratch buffer.
func (s *Set) CheckPath(rawPath string) (m Match, ok bool) {
	if s == nil || s.targets&(TargetPath|TargetQuery) == 0 {
		return Match{}, false
	}
	mt := s.newMatcher(TargetPath | TargetQuery)
	path, query := SplitPath(rawPath)
	if s.targets&TargetPath != 0 {
		if isNormalPath(path) {
			mt.str(path, TargetPath)
		} else {
			mt.buf = appendNormalPath(scratch(mt.buf, len(path)+1), path)
			if !mt.bytes(mt.buf, TargetPath) {
				if cut, ok := NulTruncatedPath(path); ok {
					mt.str(cut, TargetPath)
				}
			}
		}
	}
	if !mt.done() && s.targets&TargetQuery != 0 {
		matchParams(&mt, query, TargetQuery)
	}
	return mt.result()
}

// CheckHeaders checks request header values, as (name, value) pairs, for
// rules with TargetHeaders. Pseudo-headers (a name starting with ':') are
// skipped. Each value is matched raw and, when that differs, after
// DecodeValue. It returns the first rule in configuration order that
// matches any of them; ok is false when none does.
//
// CheckHeaders does not allocate when no value needs decoding; otherwise
// it allocates one scratch buffer.
func (s *Set) CheckHeaders(headers [][2]string) (m Match, ok bool) {
	if s == nil || s.targets&TargetHeaders == 0 {
		return Match{}, false
	}
	mt := s.newMatcher(TargetHeaders)
	for _, h := range headers {
		if len(h[0]) > 0 && h[0][0] == ':' {
			continue
		}
		if mt.str(h[1], TargetHeaders) || mt.decoded(h[1], 0, TargetHeaders) {
			break
		}
	}
	return mt.result()
}

// CheckBody checks a request body, or the part of it the caller collected,
// for rules with TargetBody. contentType is the request's content-type
// header value (matched case-insensitively, parameters allowed). The values
// matched are those BodyValues returns: the raw bytes always, and the form
// fields, JSON strings or multipart parts the content type announces. It
// returns the first rule in configuration order that matches any of them;
// ok is false when none does. Broken or truncated bodies are inspected as
// far as they can be parsed; CheckBody never panics.
func (s *Set) CheckBody(contentType string, body []byte) (m Match, ok bool) {
	if s == nil || s.targets&TargetBody == 0 || len(body) == 0 {
		return Match{}, false
	}
	mt := s.newMatcher(TargetBody)
	matchBody(&mt, contentType, body)
	return mt.result()
}

// matcher is the state of one Check: it is fed the values of a request one
// at a time and remembers the lowest-numbered rule that matched any of
// them, so the result is the first rule in configuration order whatever the
// order of the values. A value is only tried against rules numbered below
// the best so far, and the matcher is done when no such rule is left.
//
// With collect set, the matcher matches nothing and appends each value to
// *collect instead; the exported helpers use it to show exactly which
// values a Check would try.
type matcher struct {
	set   *Set
	best  int    // index of the best matching rule, len(set.rules) if none
	floor int    // lowest index of a rule with a target being checked
	where Target // where best matched
	// buf and buf2 are scratch space for decoded values, allocated when
	// first needed (regexp keeps a reference to what it matches, so they
	// cannot live on the stack) and reused for every later value.
	buf     []byte
	buf2    []byte // for a second level of decoding, while buf is in use
	collect *[]string
}

// scratch returns b emptied, with room for n bytes.
func scratch(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, 0, max(n, 256))
	}
	return b[:0]
}

func (s *Set) newMatcher(targets Target) matcher {
	m := matcher{set: s, best: len(s.rules), floor: len(s.rules)}
	for t := 0; t < numTargets; t++ {
		if targets&(1<<t) != 0 && len(s.byTarget[t]) > 0 && s.byTarget[t][0] < m.floor {
			m.floor = s.byTarget[t][0]
		}
	}
	return m
}

// done reports whether no value can improve the result.
func (m *matcher) done() bool { return m.collect == nil && m.best <= m.floor }

func (m *matcher) result() (Match, bool) {
	if m.best >= len(m.set.rules) {
		return Match{}, false
	}
	return Match{RuleID: m.set.rules[m.best].rule.ID, Target: m.where}, true
}

// str tries the value v, found in target t, and reports whether the
// matcher is done.
func (m *matcher) str(v string, t Target) bool {
	if len(v) == 0 {
		return m.done()
	}
	if m.collect != nil {
		*m.collect = append(*m.collect, v)
		return false
	}
	for _, i := range m.set.byTarget[t.index()] {
		if i >= m.best {
			break
		}
		c := m.set.rules[i]
		if c.prefix != "" && !strings.Contains(v, c.prefix) || !c.filter.allowsString(v) {
			continue
		}
		if c.re.MatchString(v) {
			m.best, m.where = i, t
			break
		}
	}
	return m.done()
}

// bytes is str for a value held in a byte slice, which it does not keep.
func (m *matcher) bytes(v []byte, t Target) bool {
	if len(v) == 0 {
		return m.done()
	}
	if m.collect != nil {
		*m.collect = append(*m.collect, string(v))
		return false
	}
	for _, i := range m.set.byTarget[t.index()] {
		if i >= m.best {
			break
		}
		c := m.set.rules[i]
		if c.prefix != "" && !bytes.Contains(v, c.prefixBytes) || !c.filter.allowsBytes(v) {
			continue
		}
		if c.re.Match(v) {
			m.best, m.where = i, t
			break
		}
	}
	return m.done()
}

// decoded tries v decoded in mode, if that differs from v, which the
// caller has tried already. It uses buf2, so the caller may hold buf.
func decodedValue[S ~string | ~[]byte](m *matcher, v S, mode decodeMode, t Target) bool {
	if !needsDecode(v, mode) {
		return m.done()
	}
	var changed bool
	m.buf2, changed = appendDecoded(scratch(m.buf2, len(v)), v, mode)
	if !changed {
		return m.done()
	}
	return m.bytes(m.buf2, t)
}

func (m *matcher) decoded(v string, mode decodeMode, t Target) bool {
	return decodedValue(m, v, mode, t)
}

// raw tries a value that needs no decoding, without copying it.
func raw[S ~string | ~[]byte](m *matcher, v S, t Target) bool {
	if b, ok := any(v).([]byte); ok {
		return m.bytes(b, t)
	}
	return m.str(string(v), t) // S is a string type: no copy
}

// decodedOrRaw tries v decoded in mode, copying it only when decoding
// changes it.
func decodedOrRaw[S ~string | ~[]byte](m *matcher, v S, mode decodeMode, t Target) bool {
	if !needsDecode(v, mode) {
		return raw(m, v, t)
	}
	m.buf, _ = appendDecoded(scratch(m.buf, len(v)), v, mode)
	return m.bytes(m.buf, t)
}

// matchParams tries a query string or form body q (without '?'): the whole
// of it decoded with '+' as a space, then each parameter's key and value,
// split at '&' and the first '=' before decoding.
func matchParams[S ~string | ~[]byte](m *matcher, q S, t Target) bool {
	if len(q) == 0 {
		return m.done()
	}
	if decodedOrRaw(m, q, modePlus, t) {
		return true
	}
	for len(q) > 0 {
		param := q
		q = q[len(q):]
		for i := 0; i < len(param); i++ {
			if param[i] == '&' {
				param, q = param[:i], param[i+1:]
				break
			}
		}
		key, val := param, param[len(param):]
		for i := 0; i < len(param); i++ {
			if param[i] == '=' {
				key, val = param[:i], param[i+1:]
				break
			}
		}
		if decodedOrRaw(m, key, modePlus, t) || decodedOrRaw(m, val, modePlus, t) {
			return true
		}
	}
	return m.done()
}

// NulTruncatedPath returns the normalized part of the URL path p before the
// first NUL byte of its decoded form, and whether p holds one at all. It
// allocates only when p has something to decode.
func NulTruncatedPath(p string) (string, bool) {
	if strings.IndexByte(p, '%') < 0 && strings.IndexByte(p, 0) < 0 {
		return "", false
	}
	dec := DecodeValue(p)
	i := strings.IndexByte(dec, 0)
	if i < 0 {
		return "", false
	}
	return NormalizePath(dec[:i]), true
}
