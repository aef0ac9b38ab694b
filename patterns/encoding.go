package patterns

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"io"
	"strings"
)

// Inflate decodes a request body sent with a Content-Encoding of gzip,
// x-gzip or deflate (zlib-wrapped, or raw as some clients send it), so that
// a compressed payload is inspected as the application will see it. It
// returns at most limit bytes of output, so a compression bomb costs no more
// than limit; a stream cut short (a body truncated at max_body_bytes) yields
// what decoded before the cut. ok is false for identity, for encodings it
// does not know (br, zstd: only the raw bytes are inspected then) and for
// data that is not of the named encoding at all.
//
// Only a single coding is decoded; a list such as "gzip, gzip" is decoded
// once, as its last coding.
func Inflate(contentEncoding string, body []byte, limit int) (out []byte, ok bool) {
	enc := contentEncoding
	if i := strings.LastIndexByte(enc, ','); i >= 0 {
		enc = enc[i+1:]
	}
	enc = strings.ToLower(strings.TrimSpace(enc))
	var r io.Reader
	switch enc {
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, false
		}
		zr.Multistream(false)
		r = zr
	case "deflate":
		if zr, err := zlib.NewReader(bytes.NewReader(body)); err == nil {
			r = zr
		} else {
			r = flate.NewReader(bytes.NewReader(body))
		}
	default:
		return nil, false
	}
	out, err := io.ReadAll(io.LimitReader(r, int64(limit)))
	if len(out) == 0 && err != nil {
		return nil, false
	}
	return out, true
}
