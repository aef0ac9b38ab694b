package patterns

import (
	"math/bits"
	"regexp/syntax"
	"strings"
	"unicode"
	"unicode/utf8"
)

// A prefilter is a cheap necessary condition for a match: every text the
// pattern matches contains at least one of its literals. A value without
// any of them is rejected without running the regexp, which in Go costs
// hundreds of nanoseconds per call even on short values (ten times more in
// wasm). The seed pattern \.(exe|dll|scr|bat)$ gets the literals exe, dll,
// cr and bat, so an ordinary User-Agent with dots in it is rejected by four
// substring searches.
//
// It must never reject a value the regexp matches, since that would let a
// request through. It is therefore built only from literals the syntax tree
// requires, and case-insensitive literals only from characters whose case
// folding stays within ASCII: under (?i), Go's regexp matches 's' to U+017F
// (ſ) and 'k' to U+212A (Kelvin sign), so "<script" keeps only "<" and
// "cript" as literals. FuzzMatchOracle checks the Set, prefilter included,
// against plain regexp.
//
// It is applied in one pass over the value: a table maps each byte to the
// literals that byte can anchor (the rarest byte of each literal, in both
// cases for a case-insensitive one), and only there is a literal compared.
// That is one table load per byte whatever the number of literals, which
// matters in wasm, where there is no vectorized IndexByte.
type prefilter struct {
	lits   []literal
	anchor [256]uint16 // bit i: the byte can be lits[i].s[lits[i].at]
}

// literal is a byte string a match must contain. With fold set, s is lower
// case and matches ASCII-case-insensitively. at is the index of the byte
// the one-pass search anchors on.
type literal struct {
	s    string
	fold bool
	at   int
}

// maxPrefilterLits bounds the number of alternative literals (the bits of
// prefilter.anchor); a pattern with more alternatives gets no prefilter.
const maxPrefilterLits = 16

// newPrefilter returns the prefilter of a parsed pattern, nil when it
// requires no literal.
func newPrefilter(re *syntax.Regexp) *prefilter {
	lits, ok := required(re)
	if !ok {
		return nil
	}
	p := &prefilter{lits: lits}
	for i := range p.lits {
		l := &p.lits[i]
		for j := 1; j < len(l.s); j++ {
			if rarity(l.s[j]) > rarity(l.s[l.at]) {
				l.at = j
			}
		}
		c := l.s[l.at]
		p.anchor[c] |= 1 << i
		if l.fold && 'a' <= c && c <= 'z' {
			p.anchor[c-('a'-'A')] |= 1 << i
		}
	}
	return p
}

// rarity ranks how unlikely a byte is in request text, to pick the byte a
// literal is searched by; it affects speed only. Letters follow English
// letter frequency; URL and header punctuation is common; other bytes rare.
func rarity(c byte) int {
	const letters = "etaoinshrdlcumwfgypbvkjxqz" // most to least frequent
	c = lowerASCII(c)
	if i := strings.IndexByte(letters, c); i >= 0 {
		return 10 + i
	}
	switch {
	case c == ' ' || c == '.' || c == '/' || c == '-' || c == '_' || c == '=' || c == '&' || c == ',' || c == ';' || c == ':':
		return 0
	case '0' <= c && c <= '9':
		return 5
	}
	return 40
}

type literals []literal

// required returns literals at least one of which every match of re
// contains, and ok false when it finds no such set.
func required(re *syntax.Regexp) (p literals, ok bool) {
	switch re.Op {
	case syntax.OpLiteral:
		if l, ok := longestRun(re); ok {
			return literals{l}, true
		}
	case syntax.OpCapture, syntax.OpPlus:
		return required(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return required(re.Sub[0])
		}
	case syntax.OpConcat:
		// Every part of a concatenation matches, so any part's literals
		// will do; take the most selective.
		for _, sub := range re.Sub {
			if q, found := required(sub); found && (!ok || q.better(p)) {
				p, ok = q, true
			}
		}
		return p, ok
	case syntax.OpAlternate:
		// One branch matches, so each branch must bring literals.
		for _, sub := range re.Sub {
			q, found := required(sub)
			if !found || len(p)+len(q) > maxPrefilterLits {
				return nil, false
			}
			p = append(p, q...)
		}
		return p, true
	}
	return nil, false
}

// better reports whether p is more selective than q: a longer shortest
// literal, then fewer literals.
func (p literals) better(q literals) bool {
	if a, b := p.minLen(), q.minLen(); a != b {
		return a > b
	}
	return len(p) < len(q)
}

func (p literals) minLen() int {
	n := -1
	for _, l := range p {
		if n < 0 || len(l.s) < n {
			n = len(l.s)
		}
	}
	return n
}

// longestRun returns the longest run of a literal node's runes that can be
// searched for as bytes: for a case-insensitive literal, ASCII characters
// whose whole case-folding orbit is ASCII; otherwise any rune but U+FFFD,
// which the regexp also matches to an invalid byte.
func longestRun(re *syntax.Regexp) (best literal, ok bool) {
	fold := re.Flags&syntax.FoldCase != 0
	var run []byte
	flush := func() {
		if len(run) > len(best.s) {
			best = literal{s: string(run), fold: fold}
		}
		run = run[:0]
	}
	for _, r := range re.Rune {
		switch {
		case fold && asciiFold(r):
			run = append(run, lowerASCII(byte(r)))
		case !fold && r != utf8.RuneError && utf8.ValidRune(r):
			run = utf8.AppendRune(run, r)
		default:
			flush()
		}
	}
	flush()
	return best, best.s != ""
}

// asciiFold reports whether r and every rune it case-folds to are ASCII.
func asciiFold(r rune) bool {
	if r < 0 || r >= utf8.RuneSelf {
		return false
	}
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// allowsString reports whether v contains one of p's literals; a nil
// prefilter allows everything.
func (p *prefilter) allowsString(v string) bool {
	return p == nil || allows(p, v)
}

// allowsBytes is allowsString for a byte slice.
func (p *prefilter) allowsBytes(v []byte) bool {
	return p == nil || allows(p, v)
}

func allows[S ~string | ~[]byte](p *prefilter, v S) bool {
	for i := 0; i < len(v); i++ {
		for m := p.anchor[v[i]]; m != 0; m &= m - 1 {
			l := &p.lits[bits.TrailingZeros16(m)]
			start := i - l.at
			if start >= 0 && start+len(l.s) <= len(v) && matchAt(l, v, start) {
				return true
			}
		}
	}
	return false
}

// matchAt reports whether l occurs in v at start.
func matchAt[S ~string | ~[]byte](l *literal, v S, start int) bool {
	w := v[start : start+len(l.s)]
	if !l.fold {
		return string(w) == l.s
	}
	for j := 0; j < len(w); j++ {
		if lowerASCII(w[j]) != l.s[j] {
			return false
		}
	}
	return true
}

// String lists the literals, with (?i) marking case-insensitive ones and
// the anchor byte in brackets, for tests and debugging.
func (p *prefilter) String() string {
	if p == nil {
		return ""
	}
	parts := make([]string, len(p.lits))
	for i, l := range p.lits {
		parts[i] = l.s[:l.at] + "[" + l.s[l.at:l.at+1] + "]" + l.s[l.at+1:]
		if l.fold {
			parts[i] = "(?i)" + parts[i]
		}
	}
	return strings.Join(parts, "|")
}
