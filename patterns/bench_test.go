package patterns

import (
	"fmt"
	"strings"
	"testing"
)

// typicalPath is a 60-byte :path with a query, as a browser sends it.
const typicalPath = "/api/v1/products/12345/reviews?page=2&sort=recent&lang=en-US"

func BenchmarkCheckPath(b *testing.B) {
	if len(typicalPath) != 60 {
		b.Fatalf("typicalPath is %d bytes", len(typicalPath))
	}
	set := seedSet(b)
	for _, bc := range []struct{ name, path string }{
		{"typical", typicalPath},
		{"encoded", "/api/v1/pro%64ucts/12345/../reviews?page=%32&sort=re%63ent&q=a+b"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, ok := set.CheckPath(bc.path); ok {
					b.Fatal("matched")
				}
			}
		})
	}
}

func BenchmarkCheckHeaders(b *testing.B) {
	set := seedSet(b)
	headers := ordinaryHeaders // ten headers, three of them pseudo-headers
	if len(headers) != 10 {
		b.Fatalf("%d headers", len(headers))
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, ok := set.CheckHeaders(headers); ok {
			b.Fatal("matched")
		}
	}
}

// jsonBody returns a JSON document of about n bytes, with escapes.
func jsonBody(n int) []byte {
	var sb strings.Builder
	sb.WriteString(`{"user":{"name":"Zo\u00eb","email":"zoe@example.com"},"items":[`)
	for i := 0; sb.Len() < n-40; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"id":%d,"note":"line\nnext %d"}`, i, i)
	}
	sb.WriteString(`],"ok":true}`)
	return []byte(sb.String())
}

func BenchmarkCheckBody(b *testing.B) {
	set := seedSet(b)
	for _, bc := range []struct {
		name, ct string
		body     []byte
	}{
		{"json-1KiB", "application/json", jsonBody(1024)},
		{"json-64KiB", "application/json", jsonBody(64 << 10)},
		{"form-1KiB", "application/x-www-form-urlencoded", []byte(strings.Repeat("key=value+with%20space&", 44))},
		{"raw-64KiB", "application/octet-stream", []byte(strings.Repeat("0123456789abcdef", 4096))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if _, ok := set.CheckBody(bc.ct, bc.body); ok {
				b.Fatal("matched")
			}
			b.SetBytes(int64(len(bc.body)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				set.CheckBody(bc.ct, bc.body)
			}
		})
	}
}

func BenchmarkNormalizePath(b *testing.B) {
	for _, p := range []string{"/api/v1/products/12345/reviews", "/download/evil%252Eexe;x=1/../a//b/"} {
		b.Run(p, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				NormalizePath(p)
			}
		})
	}
}

// BenchmarkCheckBodyWorstCase measures bodies of 64 KiB built to make
// CheckBody do the most work per byte with the seed patterns: as many
// values as possible, each holding the literals both patterns' prefilters
// look for ("<", "cript>", ".", "exe"), so that the regexp runs on every one
// of them and on the whole body, without a match.
func BenchmarkCheckBodyWorstCase(b *testing.B) {
	set := seedSet(b)
	const size = 64 << 10
	fill := func(unit string) []byte { return []byte(strings.Repeat(unit, size/len(unit))) }
	mp := "--B\r\nContent-Disposition: form-data; name=\"<.cript>exe\"\r\n\r\n<.cript>exe\r\n"
	for _, bc := range []struct {
		name, ct string
		body     []byte
	}{
		{"json-strings", "application/json", append(append([]byte("["), fill(`"<.cript>exe",`)...), `""]`...)},
		{"json-escapes", "application/json", append(append([]byte("["), fill(`"\u003c.cript>exe",`)...), `""]`...)},
		{"form-params", "application/x-www-form-urlencoded", fill("<.cript>exe=%3C.cript>exe&")},
		{"multipart-parts", "multipart/form-data; boundary=B", append(fill(mp), "--B--"...)},
		{"raw-dense", "text/plain", fill("<.cript>exe ")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if _, ok := set.CheckBody(bc.ct, bc.body); ok {
				b.Fatal("matched")
			}
			b.SetBytes(int64(len(bc.body)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				set.CheckBody(bc.ct, bc.body)
			}
		})
	}
}
