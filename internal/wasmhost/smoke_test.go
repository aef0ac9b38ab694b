package wasmhost

import (
	"context"
	"testing"
	"time"
)

func TestSmoke(t *testing.T) {
	ctx := context.Background()
	h, err := New(ctx, testPlugin, Options{Workers: 2, PluginConfig: []byte(t.Name()), VMConfig: []byte("vmcfg"),
		Logger: func(r LogRecord) { t.Log(r) }})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(ctx)
	for _, x := range []string{"", "props", "deny", "pausebody", "cas", "metrics", "gc"} {
		fwd, client, err := h.Exchange(ctx, StreamInfo{SourceAddress: "127.0.0.1:5555"}, Request{
			RequestHead: RequestHead{Method: "POST", Path: "/a?b=c", Authority: "example.com", Headers: [][2]string{{"X-Test", x}, {"User-Agent", "ua"}}},
			Body:        [][]byte{[]byte("hello "), []byte("world")},
		}, func(ctx context.Context, f Verdict) (Response, error) {
			return Response{Status: 200, Headers: [][2]string{{"content-type", "text/plain"}}, Body: [][]byte{[]byte("ok")}}, nil
		})
		t.Logf("%s: err=%v\nfwd=%+v\nclient=%+v local=%+v", x, err, fwd, client, client.Local)
	}
	t.Log(h.Stats(), h.SharedData(), h.MemorySizes())
	_ = time.Second
}
