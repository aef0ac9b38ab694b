package patterns

import (
	"bytes"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxBoundaryLen is the length of a multipart boundary that CheckBody
// guesses from the first line of a body whose content type names none or a
// wrong one. RFC 2046 allows 70; longer first lines are not guessed from.
const MaxBoundaryLen = 200

// bodyKind is the structure a content type announces.
type bodyKind uint8

const (
	bodyRaw bodyKind = iota
	bodyForm
	bodyJSON
	bodyMultipart
)

// bodyKindOf reads the media type of a content-type header value,
// case-insensitively and ignoring parameters:
// application/x-www-form-urlencoded is a form; application/json, text/json
// and any type with the +json suffix are JSON; multipart/* is multipart.
func bodyKindOf(contentType string) bodyKind {
	t := contentType
	if i := strings.IndexByte(t, ';'); i >= 0 {
		t = t[:i]
	}
	t = strings.TrimSpace(t)
	switch {
	case strings.EqualFold(t, "application/x-www-form-urlencoded"):
		return bodyForm
	case strings.EqualFold(t, "application/json"), strings.EqualFold(t, "text/json"),
		len(t) > len("+json") && strings.EqualFold(t[len(t)-len("+json"):], "+json"):
		return bodyJSON
	case len(t) > len("multipart/") && strings.EqualFold(t[:len("multipart/")], "multipart/"):
		return bodyMultipart
	}
	return bodyRaw
}

// BodyValues returns, in the order CheckBody tries them, the values of a
// body that rules with TargetBody are matched against (empty ones left
// out). It is the allocating form of what CheckBody does, for tests and
// logs:
//
//   - the raw body, always;
//   - application/x-www-form-urlencoded: the values DecodeQuery returns
//     for the body (the whole, then each key and value, '+' as a space,
//     percent-decoded until stable);
//   - JSON: the whole body with its escapes decoded (when it has any),
//     then every string, key or value, JSON-unescaped (\u003c is '<') as
//     gjson unescapes it, and after that percent-decoded if that changes
//     it. The strings are found by one flat scan for string tokens from the
//     start, which needs no recursion and no valid document: on a valid one
//     it finds exactly the keys and string values a gjson walk finds (a test
//     and a fuzz target check this), and a body cut at max_body_bytes or
//     broken on purpose is still unescaped as far as it goes;
//   - multipart/*: for each part, the name and filename of its
//     Content-Disposition (or the raw header when it does not parse),
//     each also percent-decoded, and its content (quoted-printable
//     decoded when the part says so), also percent-decoded when the part is
//     not a file. The boundary comes from the content type, or from the body's
//     first line when that finds no part. A part cut short is inspected as
//     far as it goes;
//   - any other or no content type: if the first non-blank byte is '{' or
//     '[', the body is also treated as JSON, because some frameworks parse
//     JSON whatever the content type says.
func BodyValues(contentType string, body []byte) []string {
	var all []string
	m := matcher{collect: &all}
	matchBody(&m, contentType, body)
	return all
}

func matchBody(m *matcher, contentType string, body []byte) bool {
	if m.bytes(body, TargetBody) {
		return true
	}
	switch bodyKindOf(contentType) {
	case bodyForm:
		return matchParams(m, body, TargetBody)
	case bodyJSON:
		return matchJSON(m, body)
	case bodyMultipart:
		return matchMultipart(m, contentType, body)
	}
	if looksLikeJSON(body) {
		return matchJSON(m, body)
	}
	return m.done()
}

// looksLikeJSON reports whether the first non-blank byte of b opens a JSON
// array or object.
func looksLikeJSON(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{', '[':
			return true
		}
		return false
	}
	return false
}

func matchJSON(m *matcher, body []byte) bool {
	if bytes.IndexByte(body, '\\') >= 0 {
		// The whole body unescaped, like the whole query decoded: it sees
		// a payload split across strings ({"a":"\u003cscript\u003e",
		// "b":"\u003c/script\u003e"}), as an application that joins them
		// would. Unescaping never makes a text longer.
		m.buf = appendJSONUnescaped(scratch(m.buf, len(body)), body)
		if m.bytes(m.buf, TargetBody) {
			return true
		}
	}
	return scanJSONStrings(m, body)
}

// scanJSONStrings tries every string token of s, JSON-unescaped and then
// percent-decoded, scanning from the start without parsing structure: in a
// valid document the tokens are exactly the keys and string values; in a
// truncated one, the last string runs to the end.
func scanJSONStrings[S ~string | ~[]byte](m *matcher, s S) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '"' {
			continue
		}
		j := i + 1
		escaped := false
		for j < len(s) && s[j] != '"' {
			if s[j] == '\\' {
				escaped = true
				j++
			}
			j++
		}
		j = min(j, len(s))
		tok := s[i+1 : j]
		i = j
		if !escaped {
			if raw(m, tok, TargetBody) || decodedValue(m, tok, 0, TargetBody) {
				return true
			}
			continue
		}
		m.buf = appendJSONUnescaped(scratch(m.buf, len(tok)), tok)
		if m.bytes(m.buf, TargetBody) || decodedValue(m, m.buf, 0, TargetBody) {
			return true
		}
	}
	return m.done()
}

// appendJSONUnescaped appends the JSON string body s (between the quotes)
// to dst with its escapes decoded as gjson decodes them: \uXXXX is UTF-8,
// a surrogate pair is one character and a lone surrogate is U+FFFD. An
// escape that is not valid JSON is kept as written.
func appendJSONUnescaped[S ~string | ~[]byte](dst []byte, s S) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			dst = append(dst, c)
			continue
		}
		i++
		switch e := s[i]; e {
		case '"', '\\', '/':
			dst = append(dst, e)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(s, i+1)
			if !ok {
				dst = append(dst, '\\', 'u')
				continue
			}
			i += 4
			if r >= 0xD800 && r < 0xDC00 && i+2 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
				if r2, ok := hex4(s, i+3); ok && r2 >= 0xDC00 && r2 < 0xE000 {
					r = utf16.DecodeRune(r, r2)
					i += 6
				}
			}
			dst = utf8.AppendRune(dst, r) // a lone surrogate becomes U+FFFD
		default:
			dst = append(dst, '\\', e)
		}
	}
	return dst
}

// hex4 reads four hex digits at s[i:].
func hex4[S ~string | ~[]byte](s S, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range [4]byte{s[i], s[i+1], s[i+2], s[i+3]} {
		if !ishex(c) {
			return 0, false
		}
		r = r<<4 | rune(unhex(c))
	}
	return r, true
}

func matchMultipart(m *matcher, contentType string, body []byte) bool {
	boundary := boundaryParam(contentType)
	parts, done := matchParts(m, body, boundary)
	if done || parts > 0 {
		return done
	}
	if guess := sniffBoundary(body); guess != "" && guess != boundary {
		_, done = matchParts(m, body, guess)
	}
	return done
}

// matchParts tries the parts of a multipart body and returns how many it
// found (see eachPart for what a part is).
func matchParts(m *matcher, body []byte, boundary string) (parts int, done bool) {
	parts, done = eachPart(body, boundary, func(header, content []byte) bool {
		cd := partHeader(header, "Content-Disposition")
		name, hasName := mediaParam(cd, "name")
		filename, hasFile := mediaParam(cd, "filename")
		if !hasName && !hasFile {
			if m.str(cd, TargetBody) {
				return true
			}
		} else if m.str(name, TargetBody) || m.decoded(name, 0, TargetBody) ||
			m.str(filename, TargetBody) || m.decoded(filename, 0, TargetBody) {
			return true
		}
		if strings.EqualFold(partHeader(header, "Content-Transfer-Encoding"), "quoted-printable") {
			m.buf = appendQuotedPrintable(m.buf[:0], content)
			content = m.buf
		}
		if m.bytes(content, TargetBody) {
			return true
		}
		return !hasFile && decodedValue(m, content, 0, TargetBody)
	})
	return parts, done || m.done()
}

// boundaryParam returns the boundary parameter of a multipart content
// type: the first one (mediaParam), or, when the value does not parse as
// parameters, the first "boundary=" it finds, as lenient servers do.
func boundaryParam(contentType string) string {
	if b, ok := mediaParam(contentType, "boundary"); ok {
		return b
	}
	const key = "boundary="
	for i := 0; i+len(key) <= len(contentType); i++ {
		if !strings.EqualFold(contentType[i:i+len(key)], key) {
			continue
		}
		v := contentType[i+len(key):]
		if strings.HasPrefix(v, `"`) {
			if j := strings.IndexByte(v[1:], '"'); j >= 0 {
				return v[1 : 1+j]
			}
			return v[1:]
		}
		if j := strings.IndexByte(v, ';'); j >= 0 {
			v = v[:j]
		}
		return strings.TrimSpace(v)
	}
	return ""
}

// sniffBoundary returns the boundary a multipart body opens with: its first
// non-blank line without the leading "--", if that line starts with "--"
// and the boundary is at most MaxBoundaryLen bytes.
func sniffBoundary(body []byte) string {
	body = bytes.TrimLeft(body, "\r\n")
	if !bytes.HasPrefix(body, []byte("--")) {
		return ""
	}
	line := body[2:]
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t\r")
	if len(line) == 0 || len(line) > MaxBoundaryLen {
		return ""
	}
	return string(line)
}
