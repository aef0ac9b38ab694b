package patterns

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// Decoding
//
// Every decoder here computes the fixed point of repeated decoding, "decode
// until nothing changes", in a single left-to-right pass. Output bytes go on
// a stack; after each byte the top of the stack is checked for an escape
// (%XX, or %uXXXX) that has just become complete, and a complete escape is
// replaced by what it encodes, which is checked again. So %25%32%65 becomes
// %2e and then "." in one pass, and %%34%31 becomes %41 and then "A".
//
// This is the same result as decoding in rounds until stable: the rewrite
// "escape → byte" never overlaps itself (an escape's tail is hex digits or
// 'u', never '%') and always shortens the text, so every order of rewriting
// ends in the same text. One pass costs time linear in the input, with no
// bound on the number of rounds it stands for, so there is no depth of
// encoding an attacker can use that the decoder gives up on, and the result
// is always a fixed point: decoding it again changes nothing. Each escape
// shrinks the output, so it is never longer than the input.
//
// %uXXXX (the non-standard IIS form) is decoded to the UTF-8 encoding of the
// code point, except for surrogate halves D800–DFFF, which encode no
// character and are left as they are.

// decodeMode selects what a decoder does besides percent-decoding.
type decodeMode uint8

const (
	// modePlus reads a '+' of the input as a space, as query strings and
	// form bodies do. A '+' produced by decoding %2B stays a '+'.
	modePlus decodeMode = 1 << iota
	// modePath drops NUL bytes and reads '\' as '/', both in the input and
	// in what decoding produces.
	modePath
)

// needsDecode reports whether decoding s in mode could change it. When it
// returns false the decoded value is s itself, so callers skip the copy.
func needsDecode[S ~string | ~[]byte](s S, mode decodeMode) bool {
	if indexByte(s, '%') >= 0 {
		return true
	}
	if mode&modePlus != 0 && indexByte(s, '+') >= 0 {
		return true
	}
	return mode&modePath != 0 && (indexByte(s, 0) >= 0 || indexByte(s, '\\') >= 0)
}

// indexByte is strings.IndexByte or bytes.IndexByte, whichever fits S.
func indexByte[S ~string | ~[]byte](v S, c byte) int {
	if b, ok := any(v).([]byte); ok {
		return bytes.IndexByte(b, c)
	}
	return strings.IndexByte(string(v), c)
}

// appendDecoded appends the fixed point of decoding s in mode to dst and
// reports whether it differs from s. It appends at most len(s) bytes.
func appendDecoded[S ~string | ~[]byte](dst []byte, s S, mode decodeMode) ([]byte, bool) {
	base := len(dst)
	changed := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+' && mode&modePlus != 0:
			c, changed = ' ', true
		case c == 0 && mode&modePath != 0:
			changed = true
			continue
		case c == '\\' && mode&modePath != 0:
			c, changed = '/', true
		}
		dst = append(dst, c)
		if ishex(c) { // only a hex digit can complete an escape
			var reduced bool
			dst, reduced = reduceTop(dst, base, mode)
			changed = changed || reduced
		}
	}
	return dst, changed
}

// reduceTop replaces complete escapes at the top of the stack dst[base:]
// until the top is not the end of an escape, and reports whether it
// replaced any. Everything below the top is already free of escapes.
func reduceTop(dst []byte, base int, mode decodeMode) ([]byte, bool) {
	reduced := false
	for {
		n := len(dst)
		var r rune
		wide := false // r is a code point from %uXXXX, not a byte from %XX
		switch {
		case n-base >= 3 && dst[n-3] == '%' && ishex(dst[n-2]) && ishex(dst[n-1]):
			r = rune(unhex(dst[n-2])<<4 | unhex(dst[n-1]))
			dst = dst[:n-3]
		case n-base >= 6 && dst[n-6] == '%' && dst[n-5]|0x20 == 'u' &&
			ishex(dst[n-4]) && ishex(dst[n-3]) && ishex(dst[n-2]) && ishex(dst[n-1]):
			r = rune(unhex(dst[n-4]))<<12 | rune(unhex(dst[n-3]))<<8 | rune(unhex(dst[n-2]))<<4 | rune(unhex(dst[n-1]))
			if r >= 0xD800 && r <= 0xDFFF {
				return dst, reduced // a surrogate half is not an escape
			}
			dst = dst[:n-6]
			wide = true
		default:
			return dst, reduced
		}
		reduced = true
		if mode&modePath != 0 {
			switch r {
			case 0:
				return dst, true // dropped; the stack is as it was before the '%'
			case '\\':
				r = '/'
			}
		}
		if r >= utf8.RuneSelf {
			// Bytes at or above 0x80 are never part of an escape.
			if wide {
				return utf8.AppendRune(dst, r), true
			}
			return append(dst, byte(r)), true
		}
		dst = append(dst, byte(r))
	}
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'f'
}

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return (c | 0x20) - 'a' + 10
}

// decodeString returns the decoded s, or s itself when decoding does not
// change it (no allocation).
func decodeString(s string, mode decodeMode) string {
	if !needsDecode(s, mode) {
		return s
	}
	var arr [256]byte
	b, changed := appendDecoded(arr[:0], s, mode)
	if !changed {
		return s
	}
	return string(b)
}

// DecodeValue returns v percent-decoded until stable, as header values are
// matched: %XX and %uXXXX escapes are decoded, a '+' stays a '+' and NUL
// bytes are kept. It returns v itself, without allocating, when v has
// nothing to decode.
func DecodeValue(v string) string { return decodeString(v, 0) }

// SplitPath splits Envoy's :path pseudo-header into the path and the query:
// the query starts after the first '?', and a fragment (from the first '#')
// is dropped. query is empty when there is none.
func SplitPath(rawPath string) (path, query string) {
	for i := 0; i < len(rawPath); i++ {
		switch rawPath[i] {
		case '#':
			return rawPath[:i], ""
		case '?':
			query = rawPath[i+1:]
			for j := 0; j < len(query); j++ {
				if query[j] == '#' {
					query = query[:j]
					break
				}
			}
			return rawPath[:i], query
		}
	}
	return rawPath, ""
}

// NormalizePath returns the normalized form of the URL path p (without the
// query: a '?' in p is an ordinary byte), which is what rules with
// TargetPath match:
//
//   - percent-decoding (%XX and %uXXXX) repeated until stable;
//   - NUL bytes removed;
//   - '\' read as '/';
//   - ";params" removed from every segment (/evil.exe;jsessionid=1 is
//     /evil.exe, /..;/ is /../);
//   - dot segments resolved ("." dropped, ".." removes the segment before
//     it and never climbs above the root);
//   - empty segments dropped, so repeated slashes are merged and a trailing
//     slash is removed;
//   - a leading '/' added when missing; the root is "/".
//
// Steps apply in this order, to the fully decoded text: ';', '.' and '/'
// that decoding produces are treated like literal ones. The result is
// idempotent (NormalizePath(NormalizePath(p)) == NormalizePath(p)), has no
// "//", '\', NUL, ';', "." or ".." segment and no escape left to decode, and
// is at most one byte longer than p. It runs in time linear in len(p) and
// returns p itself, without allocating, when p is already normal.
func NormalizePath(p string) string {
	if isNormalPath(p) {
		return p
	}
	var arr [256]byte
	return string(appendNormalPath(arr[:0], p))
}

// appendNormalPath appends NormalizePath(p) to dst[:0]'s backing array and
// returns it; dst must be empty.
func appendNormalPath(dst []byte, p string) []byte {
	// A leading '/' guarantees that every segment is preceded by a '/',
	// which cleanSegments relies on to work in place.
	dst = append(dst[:0], '/')
	dst, _ = appendDecoded(dst, p, modePath)
	return cleanSegments(dst)
}

// cleanSegments rewrites the decoded path b in place: it removes ;params,
// empty, "." and ".." segments (".." with the segment before it) and
// returns the result, "/" when nothing is left. b must start with '/'.
// The write position never passes the read position, because each kept
// segment is written after at least one '/' that was read before it.
func cleanSegments(b []byte) []byte {
	out := b[:0]
	i := 0
	for i < len(b) {
		if b[i] == '/' {
			i++
			continue
		}
		j := i
		end := -1 // end of the segment before any ';'
		for j < len(b) && b[j] != '/' {
			if b[j] == ';' && end < 0 {
				end = j
			}
			j++
		}
		if end < 0 {
			end = j
		}
		seg := b[i:end]
		i = j
		switch {
		case len(seg) == 0, len(seg) == 1 && seg[0] == '.':
		case len(seg) == 2 && seg[0] == '.' && seg[1] == '.':
			for k := len(out) - 1; k >= 0; k-- {
				if out[k] == '/' {
					out = out[:k]
					break
				}
			}
		default:
			out = append(out, '/')
			out = append(out, seg...)
		}
	}
	if len(out) == 0 {
		out = append(out, '/')
	}
	return out
}

// isNormalPath reports whether NormalizePath(p) == p without computing it.
func isNormalPath(p string) bool {
	if p == "/" {
		return true
	}
	if len(p) < 2 || p[0] != '/' || p[len(p)-1] == '/' {
		return false
	}
	segStart := 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) {
			switch p[i] {
			case '%', '\\', 0, ';':
				return false
			case '/':
			default:
				continue
			}
		}
		seg := p[segStart:i]
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
		segStart = i + 1
	}
	return true
}

// DecodeQuery decodes the query string q (without the '?') the way rules
// with TargetQuery see it. whole is q with '+' read as a space and
// percent-decoding repeated until stable. values holds, in order, the key
// and the value of each '&'-separated parameter (split at the first '='
// before decoding, so an encoded %26 or %3D does not split), decoded the
// same way; empty keys and values are left out. It is the allocating form
// of what Set.CheckPath does without allocating, for tests and logs.
func DecodeQuery(q string) (whole string, values []string) {
	var all []string
	m := matcher{collect: &all}
	matchParams(&m, q, TargetQuery)
	if len(all) == 0 {
		return "", nil
	}
	return all[0], all[1:]
}
