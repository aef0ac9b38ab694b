package wasmhost

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// Memory layout of bodyProbe.
const (
	probeSetStatus = 0    // proxy_set_buffer_bytes' status
	probeGetOut    = 8    // proxy_get_buffer_bytes' pointer and size
	probeAction    = 16   // what proxy_on_request_body returns
	probeSize      = 20   // the body size it was told
	probeCalls     = 24   // how many times it ran
	probeSetArgs   = 40   // start, length, data pointer, data size
	probeSetOn     = 56   // non-zero: call proxy_set_buffer_bytes
	probeData      = 1024 // the data proxy_set_buffer_bytes writes
)

// bodyProbe is a tiny module whose proxy_on_request_body records the size
// it is told, calls proxy_set_buffer_bytes with the arguments at
// probeSetArgs when probeSetOn is set, copies the body it then sees to
// mallocAddr and returns the action stored at probeAction. Its request
// headers callback continues.
func bodyProbe() []byte {
	tp := newTiny()
	set := tp.b.imp(modEnv, "proxy_set_buffer_bytes", "iiiii:i")
	get := tp.b.imp(modEnv, "proxy_get_buffer_bytes", "iiiii:i")
	load := func(off int) []byte { return append(i32c(0), i32load(off)...) }
	tp.reqHeaders = [][]byte{i32c(0)}
	tp.b.fn("proxy_on_request_body", "iii:i",
		i32c(0), localGet(1), i32store(probeSize),
		i32c(0), load(probeCalls), i32c(1), opI32Add, i32store(probeCalls),
		load(probeSetOn), opIf,
		i32c(0), i32c(bufRequestBody), load(probeSetArgs), load(probeSetArgs+4), load(probeSetArgs+8), load(probeSetArgs+12),
		call(set), i32store(probeSetStatus),
		opEnd,
		i32c(bufRequestBody), i32c(0), i32c(1<<20), i32c(probeGetOut), i32c(probeGetOut+4), call(get), opDrop,
		load(probeAction),
	)
	return tp.bytes()
}

func u32s(vals ...uint32) []byte {
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], v)
	}
	return b
}

func memU32(t *testing.T, h *Host, ptr uint32) uint32 {
	t.Helper()
	return binary.LittleEndian.Uint32(readMem(t, h, ptr, 4))
}

// proxy_set_buffer_bytes follows Envoy's Buffer::copyFrom (Envoy
// source/extensions/common/wasm/context.cc): start 0 drops `length` bytes
// and prepends, start ≥ size appends, anything else is BadArgument.
func TestSetBufferBytes(t *testing.T) {
	h, _ := newTestHost(t, bodyProbe(), Options{})
	const body = "abcdef"
	for _, c := range []struct {
		name          string
		start, length uint32
		data          string
		want          string
		status        status
	}{
		{"prepend (0, 0)", 0, 0, "XY", "XYabcdef", stOK},
		{"replace the first bytes (0, 2)", 0, 2, "XY", "XYcdef", stOK},
		{"replace all but the last byte (0, size-1)", 0, 5, "XY", "XYf", stOK},
		{"replace all (0, size)", 0, 6, "XY", "XY", stOK},
		{"replace all (0, MaxInt32), the SDK's Replace", 0, math.MaxInt32, "XY", "XY", stOK},
		{"drop the first bytes with no data (0, 2)", 0, 2, "", "cdef", stOK},
		{"append (size, 0)", 6, 0, "XY", "abcdefXY", stOK},
		{"append (MaxInt32, 0), the SDK's Append", math.MaxInt32, 0, "XY", "abcdefXY", stOK},
		{"append ignores the length (size, 3)", 6, 3, "XY", "abcdefXY", stOK},
		{"start inside the body (3, 0)", 3, 0, "XY", body, stBadArgument},
		{"start inside the body with a length (1, 2)", 1, 2, "XY", body, stBadArgument},
	} {
		t.Run(c.name, func(t *testing.T) {
			writeMem(t, h, probeSetStatus, u32s(0xffffffff))
			writeMem(t, h, probeAction, u32s(dataContinue))
			writeMem(t, h, probeSetArgs, u32s(c.start, c.length, probeData, uint32(len(c.data)), 1))
			if c.data != "" {
				writeMem(t, h, probeData, []byte(c.data))
			}
			s, err := h.NewStream(StreamInfo{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.RequestHeaders(RequestHead{}, false); err != nil {
				t.Fatal(err)
			}
			st, err := s.RequestBody([]byte(body), true)
			if err != nil {
				t.Fatal(err)
			}
			if got := status(memU32(t, h, probeSetStatus)); got != c.status {
				t.Errorf("proxy_set_buffer_bytes(%d, %d, %q) on %q = %d, want %d", c.start, c.length, c.data, body, got, c.status)
			}
			if string(st.Body) != c.want || st.Action != Continue || !st.EndOfStream {
				t.Errorf("released %+v (body %q), want the body %q with the end of stream", st, st.Body, c.want)
			}
		})
	}
}

// Only StopIterationAndBuffer makes later chunks join the body the plugin
// sees (Envoy Context::decodeData sets buffering_request_body_ for it
// alone); Watermark holds the chunk in the filter manager without showing
// it again, NoBuffer drops it (FilterManager commonHandleAfterDataCallback).
func TestBodyPauseActions(t *testing.T) {
	type chunk struct {
		data   string
		action uint32 // what the body callback returns
		seen   string // the body the callback sees
		want   Action
	}
	const limit = 4
	cases := []struct {
		name     string
		chunks   []chunk
		released string // body released over all steps
		status   int    // local reply status, 0 for none
	}{
		{"StopIterationAndBuffer: the next chunk joins the body the plugin sees",
			[]chunk{{"ab", dataStopBuffer, "ab", Pause}, {"cd", dataContinue, "abcd", Continue}}, "abcd", 0},
		{"StopIterationAndWatermark: held, the next chunk comes alone",
			[]chunk{{"ab", dataStopWatermark, "ab", Pause}, {"cd", dataContinue, "cd", Continue}}, "abcd", 0},
		{"StopIterationNoBuffer: dropped, the next chunk comes alone",
			[]chunk{{"ab", dataStopNoBuffer, "ab", Pause}, {"cd", dataContinue, "cd", Continue}}, "cd", 0},
		{"a result above NoBuffer is NoBuffer",
			[]chunk{{"ab", 7, "ab", Pause}, {"cd", dataContinue, "cd", Continue}}, "cd", 0},
		{"Watermark then Buffer: the plugin then sees all that is held",
			[]chunk{{"a", dataStopWatermark, "a", Pause}, {"b", dataStopBuffer, "b", Pause}, {"c", dataContinue, "abc", Continue}}, "abc", 0},
		{"Watermark is not held to BufferLimit",
			[]chunk{{"abc", dataStopWatermark, "abc", Pause}, {"def", dataStopWatermark, "def", Pause}, {"g", dataContinue, "g", Continue}}, "abcdefg", 0},
		{"Buffer is held to BufferLimit",
			[]chunk{{"abc", dataStopBuffer, "abc", Pause}, {"de", dataContinue, "", LocalReply}}, "", 413},
	}
	h, _ := newTestHost(t, bodyProbe(), Options{BufferLimit: limit})
	writeMem(t, h, probeSetOn, u32s(0))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := h.NewStream(StreamInfo{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.RequestHeaders(RequestHead{}, false); err != nil {
				t.Fatal(err)
			}
			var released []byte
			for i, ch := range c.chunks {
				writeMem(t, h, probeAction, u32s(ch.action))
				calls := memU32(t, h, probeCalls)
				st, err := s.RequestBody([]byte(ch.data), i == len(c.chunks)-1)
				if err != nil {
					t.Fatalf("chunk %d: %v", i, err)
				}
				if st.Action != ch.want {
					t.Fatalf("chunk %d (%q, result %d): %v, want %v", i, ch.data, ch.action, st.Action, ch.want)
				}
				released = append(released, st.Body...)
				if st.Action == LocalReply {
					if st.Local.Status != c.status {
						t.Errorf("local reply %d, want %d", st.Local.Status, c.status)
					}
					if got := memU32(t, h, probeCalls); got != calls {
						t.Errorf("the plugin was called for a chunk past BufferLimit")
					}
					continue
				}
				size := memU32(t, h, probeSize)
				var seen []byte
				if size > 0 {
					seen = readMem(t, h, mallocAddr, size)
				}
				if string(seen) != ch.seen {
					t.Errorf("chunk %d (%q): the plugin saw %q (size %d), want %q", i, ch.data, seen, size, ch.seen)
				}
			}
			if string(released) != c.released {
				t.Errorf("released %q, want %q", released, c.released)
			}
		})
	}
}

// A header map the plugin let go is gone, as in Envoy (decodeHeaders and
// encodeHeaders clear the pointer on Continue; getHeaderMapValue answers
// BadArgument, getHeaderMapPairs an empty list); during proxy_on_log Envoy
// reads the access log's request and response headers, and answers
// NotFound for a map it has not.
func TestHeaderMapsAfterContinue(t *testing.T) {
	const (
		badArg   = "error status returned by host: bad argument"
		notFound = "error status returned by host: not found"
		// Reading a map that is gone: GetHttpRequestHeaders turns the
		// empty list into NotFound itself.
		gone = "value= err=" + badArg + " pairs=0 err=" + notFound
		// 4 pseudo-headers, x-test, user-agent, x-request-id.
		present = "value=POST err=none pairs=7 err=none"
	)
	for _, c := range []struct {
		name      string
		xtest     string
		body      []string
		lateReads string // the x-late-reads response header
		logLine   string
	}{
		{"continued", "latereads", []string{"body"}, "body " + gone + "; response " + gone,
			"log phase: log " + present + "; request trailer err=" + notFound + "; status=200 err=none; response trailer err=" +
				notFound + "; set err=" + badArg},
		// The request headers never continued, so Envoy never cleared
		// its pointer: they stay readable and even writable.
		{"local reply while the request headers are held", "deny,latereads", nil, "response " + present,
			"log phase: log " + present + "; request trailer err=" + notFound + "; status=403 err=none; response trailer err=" +
				notFound + "; set err=none"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, sink := newTestHost(t, testPlugin, Options{})
			_, client := exchange(t, h, req(c.xtest, c.body...))
			hdrs := client.Headers
			if client.Local != nil {
				hdrs = client.Local.Headers
			}
			if got := header(t, hdrs, "x-late-reads"); got != c.lateReads {
				t.Errorf("x-late-reads:\n got %q\nwant %q", got, c.lateReads)
			}
			r, ok := sink.find("log phase:")
			if !ok {
				t.Fatalf("proxy_on_log logged nothing:\n%s", sink)
			}
			if r.Message != c.logLine {
				t.Errorf("proxy_on_log:\n got %q\nwant %q", r.Message, c.logLine)
			}
		})
	}
}

// Two workers read the same key (same cas), then both set it with the cas
// they read: the second set is CasMismatch, through the ABI of two VMs.
func TestSharedDataCASInterleaved(t *testing.T) {
	h, _ := newTestHost(t, testPlugin, Options{Workers: 2})
	run := func(worker int, word, hdr string) string {
		t.Helper()
		s, err := h.NewStreamOn(worker, StreamInfo{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		v, err := s.ProcessRequest(context.Background(), req(word))
		if err != nil {
			t.Fatalf("worker %d %s: %v", worker, word, err)
		}
		return header(t, v.Headers, hdr)
	}
	cas0 := run(0, "casget", "x-cas")
	cas1 := run(1, "casget", "x-cas")
	if cas0 != cas1 || strings.HasPrefix(cas0, "error") || cas0 == "0" {
		t.Fatalf("workers read cas %q and %q, want the same non-zero cas", cas0, cas1)
	}
	if got := run(0, "casset", "x-cas-set"); got != "ok" {
		t.Fatalf("first set with the cas read: %q, want ok", got)
	}
	if got := run(1, "casset", "x-cas-set"); got != "error status returned by host: cas mismatch" {
		t.Fatalf("second set with the same, now stale, cas: %q, want CasMismatch", got)
	}
	if again := run(1, "casget", "x-cas"); again == cas1 {
		t.Fatalf("cas unchanged (%s) after a successful set", again)
	}
	if got := run(1, "casset", "x-cas-set"); got != "ok" {
		t.Fatalf("set after reading again: %q, want ok", got)
	}
	if v := h.SharedData()["casx"]; string(v.Value) != "set" {
		t.Fatalf("casx = %q, want \"set\"", v.Value)
	}
}

// A headers callback that stops is, by default, Envoy's
// StopAllIterationAndWatermark (cpp-host convertVmCallResultToFilterHeadersStatus;
// proxy-wasm-cpp-host issue #143): what follows is held and no body or
// trailers callback runs until the plugin continues; then
// ActiveStreamFilterBase::commonContinue gives the plugin the held body in
// one callback (end_of_stream when no trailers came) and the trailers
// after it. The test plugin's "waittick" holds the headers; another
// stream's "resumereq" continues them through proxy_set_effective_context.
func TestHeadersStopAllIteration(t *testing.T) {
	type feed struct {
		body     string
		trailers bool // trailers instead of a body chunk
		end      bool
	}
	cases := []struct {
		name        string
		opts        Options
		feeds       []feed
		resumeFirst bool     // continue before anything is fed
		before      []string // callbacks run while the stream is fed
		after       []string // callbacks run by a continue after that
		body        string   // released body
		trailers    bool     // trailers released
	}{
		{name: "the body waits and comes in one callback",
			feeds: []feed{{body: "ab"}, {body: "cd", end: true}},
			after: []string{"request body size=4 end=true"}, body: "abcd"},
		{name: "the trailers come after the held body",
			feeds: []feed{{body: "ab"}, {trailers: true}},
			after: []string{"request body size=2 end=false", "request trailers n=1"}, body: "ab", trailers: true},
		{name: "an empty last chunk is still a body callback",
			feeds: []feed{{body: "", end: true}},
			after: []string{"request body size=0 end=true"}},
		{name: "trailers without a body",
			feeds: []feed{{trailers: true}},
			after: []string{"request trailers n=1"}, trailers: true},
		{name: "the held body is not held to BufferLimit (watermark)", opts: Options{BufferLimit: 4},
			feeds: []feed{{body: "abc"}, {body: "def", end: true}},
			after: []string{"request body size=6 end=true"}, body: "abcdef"},
		{name: "continued before the body: chunks come one by one", resumeFirst: true,
			feeds:  []feed{{body: "ab"}, {body: "cd", end: true}},
			before: []string{"request body size=2 end=false", "request body size=2 end=true"}, body: "abcd"},
		{name: "allow_on_headers_stop_iteration: callbacks run while the headers are held",
			opts:   Options{AllowOnHeadersStopIteration: true},
			feeds:  []feed{{body: "ab"}, {body: "cd"}, {trailers: true}},
			before: []string{"request body size=2 end=false", "request body size=2 end=false", "request trailers n=1"},
			body:   "abcd", trailers: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, sink := newTestHost(t, testPlugin, c.opts)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, _ := h.NewStream(StreamInfo{})
			defer s.Close()
			var got Verdict
			add := func(what string, st Step, err error) {
				t.Helper()
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if _, err := got.add(st, nil); err != nil || st.Action == LocalReply || st.Action == Reset {
					t.Fatalf("%s: %+v, want no local reply or reset", what, st)
				}
			}
			resume := func() {
				t.Helper()
				exchange(t, h, req("resumereq"))
				st, err := s.Wait(ctx)
				add("after the continue", st, err)
				if st.Headers == nil || st.Action != Continue {
					t.Fatalf("after the continue: %+v, want the headers released", st)
				}
			}
			st, err := s.RequestHeaders(req("waittick,bodylog").RequestHead, false)
			add("headers", st, err)
			if st.Action != Pause || st.Headers != nil {
				t.Fatalf("headers: %+v, want them held", st)
			}
			if c.resumeFirst {
				resume()
			}
			for i, f := range c.feeds {
				if f.trailers {
					st, err = s.RequestTrailers([][2]string{{"x-checksum", "1"}})
				} else {
					st, err = s.RequestBody([]byte(f.body), f.end)
				}
				add(fmt.Sprintf("feed %d", i), st, err)
			}
			if l := callbackLog(sink); !equalStrings(l, c.before) {
				t.Fatalf("callbacks while feeding %q, want %q", l, c.before)
			}
			if !c.resumeFirst && !c.opts.AllowOnHeadersStopIteration {
				if got.Headers != nil || len(got.Body) > 0 {
					t.Fatalf("released %+v before the continue, want nothing", got)
				}
				resume()
			}
			if l := callbackLog(sink)[len(c.before):]; !equalStrings(l, c.after) {
				t.Errorf("callbacks by the continue %q, want %q", l, c.after)
			}
			if string(got.Body) != c.body || (got.Trailers != nil) != c.trailers || got.Headers == nil {
				t.Errorf("released headers %v, body %q, trailers %v; want body %q, trailers %v",
					got.Headers != nil, got.Body, got.Trailers, c.body, c.trailers)
			}
			s.w.mu.Lock()
			done := s.req.done
			s.w.mu.Unlock()
			if !done {
				t.Error("the end of the request was not released")
			}
		})
	}

	t.Run("response headers", func(t *testing.T) {
		h, sink := newTestHost(t, testPlugin, Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, _ := h.NewStream(StreamInfo{})
		defer s.Close()
		if st, err := s.RequestHeaders(req("waitresp,bodylog").RequestHead, true); err != nil || st.Action != Continue {
			t.Fatalf("request: %+v, %v", st, err)
		}
		if st, err := s.ResponseHeaders(200, nil, false); err != nil || st.Action != Pause {
			t.Fatalf("response headers: %+v, %v; want them held", st, err)
		}
		if st, err := s.ResponseBody([]byte("xy"), true); err != nil || st.Action != Pause || len(st.Body) > 0 {
			t.Fatalf("response body: %+v, %v; want it held", st, err)
		}
		if l := callbackLog(sink); len(l) > 0 {
			t.Fatalf("callbacks %q ran while the response headers stopped all iteration", l)
		}
		exchange(t, h, req("resumeresp"))
		st, err := s.Wait(ctx)
		if err != nil || !st.Response || st.Action != Continue || header(t, st.Headers, ":status") != "200" ||
			string(st.Body) != "xy" || !st.EndOfStream {
			t.Fatalf("after the continue: %+v, %v; want the response released whole", st, err)
		}
		if l, want := callbackLog(sink), []string{"response body size=2 end=true"}; !equalStrings(l, want) {
			t.Errorf("callbacks %q, want %q", l, want)
		}
	})

	t.Run("the plugin judges the body it gets at the continue", func(t *testing.T) {
		h, _ := newTestHost(t, testPlugin, Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, _ := h.NewStream(StreamInfo{})
		defer s.Close()
		if _, err := s.RequestHeaders(req("waittick,holdbody").RequestHead, false); err != nil {
			t.Fatal(err)
		}
		for i, c := range []string{"an ev", "il body"} {
			if st, err := s.RequestBody([]byte(c), i == 1); err != nil || st.Action != Pause {
				t.Fatalf("chunk %d: %+v, %v; want it held", i, st, err)
			}
		}
		exchange(t, h, req("resumereq"))
		st, err := s.Wait(ctx)
		if err != nil || st.Action != LocalReply || st.Local.Status != 403 {
			t.Fatalf("after the continue: %+v, %v; want the plugin's 403", st, err)
		}
	})
}
