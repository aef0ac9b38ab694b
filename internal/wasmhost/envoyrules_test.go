package wasmhost

import (
	"context"
	"encoding/binary"
	"math"
	"strings"
	"testing"
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
