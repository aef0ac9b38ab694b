package patterns

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"io"
	"strings"
	"testing"
)

func compress(t *testing.T, enc string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	switch enc {
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "zlib":
		w = zlib.NewWriter(&buf)
	case "raw":
		w, _ = flate.NewWriter(&buf, flate.BestSpeed)
	}
	w.Write(data)
	w.Close()
	return buf.Bytes()
}

func TestInflate(t *testing.T) {
	payload := []byte("msg=<script>alert(1)</script>")
	tests := []struct {
		name, encoding string
		body           []byte
		limit          int
		want           string
		ok             bool
	}{
		{"gzip", "gzip", compress(t, "gzip", payload), 1 << 10, string(payload), true},
		{"x-gzip upper case", " X-GZIP ", compress(t, "gzip", payload), 1 << 10, string(payload), true},
		{"deflate zlib", "deflate", compress(t, "zlib", payload), 1 << 10, string(payload), true},
		{"deflate raw", "deflate", compress(t, "raw", payload), 1 << 10, string(payload), true},
		{"last of a list", "identity, gzip", compress(t, "gzip", payload), 1 << 10, string(payload), true},
		{"limit", "gzip", compress(t, "gzip", payload), 8, "msg=<scr", true},
		{"cut short", "gzip", compress(t, "gzip", []byte(strings.Repeat("ab", 5000)))[:40], 1 << 20, "", true},
		{"identity", "identity", payload, 1 << 10, "", false},
		{"brotli unknown", "br", payload, 1 << 10, "", false},
		{"not gzip at all", "gzip", payload, 1 << 10, "", false},
		{"empty", "gzip", nil, 1 << 10, "", false},
	}
	for _, tt := range tests {
		out, ok := Inflate(tt.encoding, tt.body, tt.limit)
		if ok != tt.ok {
			t.Errorf("%s: ok = %v, want %v", tt.name, ok, tt.ok)
			continue
		}
		if tt.name == "cut short" {
			if len(out) == 0 || !strings.HasPrefix(strings.Repeat("ab", 5000), string(out)) {
				t.Errorf("%s: got %d bytes %.20q, want a prefix of the input", tt.name, len(out), out)
			}
			continue
		}
		if string(out) != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, out, tt.want)
		}
	}
}

// A compression bomb costs no more than the limit.
func TestInflateBomb(t *testing.T) {
	bomb := compress(t, "gzip", make([]byte, 64<<20))
	out, ok := Inflate("gzip", bomb, 1<<16)
	if !ok || len(out) != 1<<16 {
		t.Errorf("bomb: ok=%v len=%d, want 65536 bytes", ok, len(out))
	}
}
