package wasmhost

import (
	"context"
	"strings"
	"testing"
)

func TestSmokeBadTimer(t *testing.T) {
	ctx := context.Background()
	for _, p := range []Profile{Envoy133, Envoy139} {
		h, err := New(ctx, testPlugin, Options{Profile: p, PluginConfig: []byte("badtimer"),
			Logger: func(r LogRecord) {
				if r.Source == FromHost {
					t.Log(r.String()[:min(300, len(r.String()))])
				}
			}})
		if err != nil {
			t.Log(p, "New:", err)
			continue
		}
		big := []byte(strings.Repeat("x", 16<<20))
		for i := 0; i < 4; i++ {
			_, client, err := h.Exchange(ctx, StreamInfo{}, Request{RequestHead: RequestHead{Method: "POST", Headers: [][2]string{{"x-test", "pausebody"}}}, Body: [][]byte{big}}, nil)
			t.Logf("%s: err=%v status=%d", p, err, client.Status())
		}
		h.Close(ctx)
	}
}
