package patterns

import (
	"bytes"
	"strings"
)

// This file reads multipart bodies and header parameters without the
// standard library's mime and mime/multipart packages: linking either pulls
// file-system calls (wasi path_filestat_get) into security.wasm, which
// Envoy 1.33 does not provide, so Envoy would refuse to load the module.
// What is here is only what inspection needs: it splits, it never writes
// temporary files, and it is lenient the way servers are.

// eachPart calls fn with the header block and the content of each part of
// a multipart body, in order, until fn returns true. A delimiter is
// "--"+boundary at the start of the body or of a line; a part runs to the
// line break before the next delimiter, or to the end of a body cut short.
// Text after a delimiter on its line (transport padding) is skipped; a
// close delimiter ("--"+boundary+"--") ends the walk. It returns the number
// of parts seen and whether fn stopped the walk. The work is linear in the
// body: each delimiter search starts where the last one ended.
func eachPart(body []byte, boundary string, fn func(header, content []byte) bool) (parts int, stopped bool) {
	if boundary == "" {
		return 0, false
	}
	delim := "--" + boundary
	var pos int
	switch {
	case bytes.HasPrefix(body, []byte(delim)):
		pos = len(delim)
	default:
		i := bytes.Index(body, []byte("\n"+delim))
		if i < 0 {
			return 0, false
		}
		pos = i + 1 + len(delim)
	}
	next := []byte("\n" + delim)
	for {
		if bytes.HasPrefix(body[pos:], []byte("--")) {
			return parts, false // close delimiter
		}
		nl := bytes.IndexByte(body[pos:], '\n')
		if nl < 0 {
			return parts, false // cut inside the delimiter line
		}
		start := pos + nl + 1
		end, following := len(body), -1
		if i := bytes.Index(body[start:], next); i >= 0 {
			end, following = start+i, start+i+len(next)
		} else if start < len(body) && bytes.HasPrefix(next[1:], body[start:]) {
			end = start // only the start of a delimiter is left
		}
		if end > start && body[end-1] == '\r' && following >= 0 {
			end--
		}
		parts++
		header, content := splitPart(body[start:end])
		if fn(header, content) {
			return parts, true
		}
		if following < 0 {
			return parts, false
		}
		pos = following
	}
}

// splitPart separates a part's header block from its content at the first
// empty line. A part cut inside its headers is all header.
func splitPart(p []byte) (header, content []byte) {
	if bytes.HasPrefix(p, []byte("\r\n")) {
		return nil, p[2:]
	}
	if bytes.HasPrefix(p, []byte("\n")) {
		return nil, p[1:]
	}
	for i := 0; i < len(p); i++ {
		if p[i] != '\n' {
			continue
		}
		switch {
		case bytes.HasPrefix(p[i+1:], []byte("\r\n")):
			return p[:i+1], p[i+3:]
		case bytes.HasPrefix(p[i+1:], []byte("\n")):
			return p[:i+1], p[i+2:]
		}
	}
	return p, nil
}

// partHeader returns the value of the first header called name
// (case-insensitive) in a part's header block, with folded continuation
// lines joined by a space.
func partHeader(header []byte, name string) string {
	var val []byte
	found := false
	for len(header) > 0 {
		line := header
		if i := bytes.IndexByte(header, '\n'); i >= 0 {
			line, header = header[:i], header[i+1:]
		} else {
			header = nil
		}
		line = bytes.TrimRight(line, "\r")
		if found {
			if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
				val = append(append(val, ' '), bytes.TrimSpace(line)...)
				continue
			}
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 || !strings.EqualFold(string(bytes.TrimSpace(line[:colon])), name) {
			continue
		}
		val = append(val, bytes.TrimSpace(line[colon+1:])...)
		found = true
	}
	return string(val)
}

// mediaParam returns the value of the first parameter called name
// (case-insensitive) of a header value such as
// `form-data; name="a"; filename="b.exe"`. Quoted values are unquoted
// (backslash escapes), a quote left open runs to the end, spaces around
// unquoted values are trimmed. The extended form (RFC 2231, `name*=
// charset'lang'%xx…`) is returned percent-decoded when the plain form is
// absent.
func mediaParam(v, name string) (string, bool) {
	i := strings.IndexByte(v, ';')
	if i < 0 {
		return "", false
	}
	v = v[i+1:]
	ext, hasExt := "", false
	for len(v) > 0 {
		v = strings.TrimLeft(v, " \t;")
		eq := strings.IndexAny(v, "=;")
		if eq < 0 {
			break
		}
		key := strings.TrimSpace(v[:eq])
		if v[eq] == ';' {
			v = v[eq:]
			continue
		}
		v = strings.TrimLeft(v[eq+1:], " \t")
		var val string
		if strings.HasPrefix(v, `"`) {
			val, v = unquote(v[1:])
		} else {
			j := strings.IndexByte(v, ';')
			if j < 0 {
				j = len(v)
			}
			val, v = strings.TrimSpace(v[:j]), v[j:]
		}
		switch {
		case strings.EqualFold(key, name):
			return val, true
		case !hasExt && len(key) == len(name)+1 && key[len(name)] == '*' && strings.EqualFold(key[:len(name)], name):
			ext, hasExt = decodeExtValue(val), true
		}
	}
	return ext, hasExt
}

// unquote reads a quoted string whose opening quote is already consumed,
// and returns it with the rest of s after the closing quote.
func unquote(s string) (val, rest string) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return b.String(), s[i+1:]
		case c == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), ""
}

// decodeExtValue decodes an RFC 2231 value charset'language'%xx…: the
// percent escapes are decoded once; the charset is not converted (a
// pattern sees the bytes).
func decodeExtValue(v string) string {
	if i := strings.IndexByte(v, '\''); i >= 0 {
		if j := strings.IndexByte(v[i+1:], '\''); j >= 0 {
			v = v[i+1+j+1:]
		}
	}
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		if v[i] == '%' && i+2 < len(v) && ishex(v[i+1]) && ishex(v[i+2]) {
			out = append(out, unhex(v[i+1])<<4|unhex(v[i+2]))
			i += 2
			continue
		}
		out = append(out, v[i])
	}
	return string(out)
}

// appendQuotedPrintable appends src decoded as quoted-printable (RFC 2045):
// =XX is a byte, "=" before a line break is a soft break and is dropped,
// anything else is kept as written.
func appendQuotedPrintable(dst, src []byte) []byte {
	for i := 0; i < len(src); i++ {
		c := src[i]
		if c != '=' {
			dst = append(dst, c)
			continue
		}
		switch {
		case i+2 < len(src) && ishex(src[i+1]) && ishex(src[i+2]):
			dst = append(dst, unhex(src[i+1])<<4|unhex(src[i+2]))
			i += 2
		case bytes.HasPrefix(src[i+1:], []byte("\r\n")):
			i += 2
		case bytes.HasPrefix(src[i+1:], []byte("\n")):
			i++
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
