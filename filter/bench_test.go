package filter

import (
	"io"
	"log"
	"os"
	"strconv"
	"testing"
	"time"
)

// typicalRequest has ten headers and a 60-byte path, no body.
var typicalRequest = request{
	path: "/api/v1/customers/4711/orders/2026-11?page=3&sort=desc&lg=en",
	headers: [][2]string{
		{"user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"},
		{"accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
		{"accept-language", "en-US,en;q=0.5"},
		{"accept-encoding", "gzip, deflate, br"},
		{"cookie", "session=5f2b7c9d0e1a4b3c8d7e6f5a4b3c2d1e; theme=dark"},
		{"x-request-id", "7c1e0b52-3a9f-4c1d-9e8b-2f6a5d4c3b2a"},
		{"x-forwarded-proto", "https"},
		{"referer", "https://shop.example.com/customers/4711"},
		{"cache-control", "no-cache"},
	},
}

// BenchmarkSeedTypicalRequest is the seed configuration on a typical
// allowed request (ten headers with :authority, a 60-byte path, no body),
// the filter built natively and as security.wasm in wazero. The numbers
// include proxytest's host side (header copies, context bookkeeping).
// Requests rotate over 4096 clients so no bucket runs dry in the wasm half,
// whose clock proxytest fakes; the native half's clock advances 1 s a
// request.
func BenchmarkSeedTypicalRequest(b *testing.B) {
	if len(typicalRequest.path) != 60 {
		b.Fatalf("path is %d bytes, want 60", len(typicalRequest.path))
	}
	// proxytest logs every plugin log line through the log package; keep
	// them out of the benchmark's output.
	log.SetOutput(io.Discard)
	defer log.SetOutput(os.Stderr)
	for _, r := range runners {
		b.Run(r.name, func(b *testing.B) {
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			i := 0
			now = func() time.Time { return t0.Add(time.Duration(i) * time.Second) }
			defer func() { now = time.Now }()
			h := mustStart(b, r.vm(b), seed)
			sources := make([]string, 4096)
			for j := range sources {
				sources[j] = "10.0." + strconv.Itoa(j/256) + "." + strconv.Itoa(j%256) + ":5000"
			}
			req := typicalRequest
			b.ReportAllocs()
			b.ResetTimer()
			for i = 0; i < b.N; i++ {
				req.source = sources[i%len(sources)]
				if res := h.do(req); res.local != nil {
					b.Fatalf("request %d: status %d, want it to pass", i, res.status())
				}
			}
		})
	}
}
