package wasmhost

import (
	"context"
	"fmt"
)

// A whole exchange the plugin refuses: the local reply is what the client
// gets, and nothing reaches the upstream.
func ExampleHost_Exchange() {
	ctx := context.Background()
	h, err := New(ctx, testPlugin, Options{Workers: 2, Logger: func(LogRecord) {}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Close(ctx)
	upstream := func(context.Context, Verdict) (Response, error) {
		return Response{Status: 200, Body: [][]byte{[]byte("from upstream")}}, nil
	}
	for _, xtest := range []string{"", "deny"} {
		forwarded, client, err := h.Exchange(ctx, StreamInfo{SourceAddress: "127.0.0.1:50000"},
			Request{RequestHead: RequestHead{Method: "GET", Path: "/", Authority: "example.com",
				Headers: [][2]string{{"x-test", xtest}}}}, upstream)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("x-test=%q forwarded=%v status=%d body=%q\n", xtest, forwarded.Headers != nil, client.Status(), clientBody(client))
	}
	// Output:
	// x-test="" forwarded=true status=200 body="from upstream"
	// x-test="deny" forwarded=false status=403 body="denied"
}

func clientBody(v Verdict) string {
	if v.Local != nil {
		return string(v.Local.Body)
	}
	return string(v.Body)
}

// Driving a stream callback by callback, as an HTTP server streaming a
// request body does: the plugin lets the headers go and holds the body
// until its end.
func ExampleStream() {
	ctx := context.Background()
	h, err := New(ctx, testPlugin, Options{Logger: func(LogRecord) {}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Close(ctx)
	s, _ := h.NewStream(StreamInfo{SourceAddress: "127.0.0.1:50000"})
	defer s.Close()
	st, _ := s.RequestHeaders(RequestHead{Method: "POST", Path: "/upload",
		Headers: [][2]string{{"x-test", "holdbody"}}}, false)
	path, _ := HeaderValue(st.Headers, ":path")
	fmt.Println("headers:", st.Action, path)
	st, _ = s.RequestBody([]byte("part one, "), false)
	fmt.Println("chunk 1:", st.Action, len(st.Body))
	st, _ = s.RequestBody([]byte("part two"), true)
	fmt.Printf("chunk 2: %s %q end=%v\n", st.Action, st.Body, st.EndOfStream)
	// Output:
	// headers: continue /upload
	// chunk 1: pause 0
	// chunk 2: continue "part one, part two" end=true
}
