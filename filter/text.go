package filter

import (
	"strconv"
	"unicode/utf8"
)

// Bounds on request-supplied text that goes into log lines and response
// bodies.
const (
	maxLogPath      = 256 // bytes of the path in a log line
	maxLogRequestID = 128 // bytes of x-request-id in a log line or body
	maxLogKey       = 64  // bytes of the client key in a log line
)

// logValue quotes s for a log line after cutting it to max bytes: control
// characters, quotes and invalid UTF-8 come out escaped, so a request cannot
// forge a second log line or end a field early. A cut value ends in "...".
func logValue(dst []byte, s string, max int) []byte {
	cut := false
	if len(s) > max {
		s, cut = s[:max], true
	}
	dst = strconv.AppendQuoteToASCII(dst, s)
	if cut {
		dst = append(dst[:len(dst)-1], `..."`...)
	}
	return dst
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters are escaped, invalid UTF-8 becomes U+FFFD, and "<",
// ">" and "&" are escaped so a body echoed into HTML stays inert.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20 || c == '<' || c == '>' || c == '&' || c == 0x7f:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

func truncate(s string, max int) string {
	if len(s) > max {
		return s[:max]
	}
	return s
}
