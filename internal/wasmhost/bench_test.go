package wasmhost

import (
	"context"
	"testing"
)

// BenchmarkExchange is one whole exchange through one worker running the
// test plugin: request headers and a two-chunk body let through, a 200
// response with a body, then done/log/delete.
func BenchmarkExchange(b *testing.B) {
	h, err := New(context.Background(), testPlugin, Options{Logger: func(LogRecord) {}})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close(context.Background())
	r := req("", "hello ", "world")
	info := StreamInfo{SourceAddress: "127.0.0.1:50000"}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := h.Exchange(ctx, info, r, upstreamOK); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPausedBody lets the headers go and holds a three-chunk body
// until the end, then reads the whole body in the plugin
// (proxy_get_buffer_bytes).
func BenchmarkPausedBody(b *testing.B) {
	h, err := New(context.Background(), testPlugin, Options{Logger: func(LogRecord) {}})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close(context.Background())
	r := req("holdbody", "first chunk ", "second chunk ", "third chunk")
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s, _ := h.NewStream(StreamInfo{})
		if _, err := s.ProcessRequest(ctx, r); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}
