package wasmhost

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// logSink collects log records for assertions.
type logSink struct {
	mu   sync.Mutex
	recs []LogRecord
}

func (l *logSink) log(r LogRecord) {
	l.mu.Lock()
	l.recs = append(l.recs, r)
	l.mu.Unlock()
}

func (l *logSink) records() []LogRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]LogRecord(nil), l.recs...)
}

// find returns the first record whose message contains s.
func (l *logSink) find(s string) (LogRecord, bool) {
	for _, r := range l.records() {
		if strings.Contains(r.Message, s) {
			return r, true
		}
	}
	return LogRecord{}, false
}

func (l *logSink) String() string {
	var b strings.Builder
	for _, r := range l.records() {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// callExport calls an export of worker 0's VM as a root-context callback,
// the way the host calls callbacks. ok is false when the call trapped.
func callExport(t *testing.T, h *Host, export string, args ...uint64) (uint64, bool) {
	t.Helper()
	w := h.workers[0]
	w.mu.Lock()
	defer w.mu.Unlock()
	fn := w.vm.mod.ExportedFunction(export)
	if fn == nil {
		t.Fatalf("no export %s", export)
	}
	return w.vm.call(fn, &w.vm.root, args...)
}

func readMem(t *testing.T, h *Host, ptr, size uint32) []byte {
	t.Helper()
	w := h.workers[0]
	w.mu.Lock()
	defer w.mu.Unlock()
	b, ok := w.vm.read(ptr, size)
	if !ok {
		t.Fatalf("read %d bytes at %d: out of range", size, ptr)
	}
	return b
}

func writeMem(t *testing.T, h *Host, ptr uint32, data []byte) {
	t.Helper()
	w := h.workers[0]
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.vm.mem.Write(ptr, data) {
		t.Fatalf("write %d bytes at %d: out of range", len(data), ptr)
	}
}

func newTestHost(t *testing.T, wasm []byte, opts Options) (*Host, *logSink) {
	t.Helper()
	sink := &logSink{}
	if opts.Logger == nil {
		opts.Logger = sink.log
	}
	h, err := New(context.Background(), wasm, opts)
	if err != nil {
		t.Fatalf("New: %v\nlogs:\n%s", err, sink)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h, sink
}

// wasiProbe is a tiny proxy module that re-exports WASI functions as
// "t_NAME" so a test can call them as a guest would.
func wasiProbe(p Profile, extra ...wasmImport) []byte {
	t := newTiny()
	probes := []wasmImport{
		{modWASI, "poll_oneoff", "iiii:i"},
		{modWASI, "fd_fdstat_get", "ii:i"},
		{modWASI, "fd_fdstat_set_flags", "ii:i"},
		{modWASI, "clock_time_get", "iIi:i"},
		{modWASI, "random_get", "ii:i"},
		{modWASI, "fd_write", "iiii:i"},
		{modWASI, "fd_read", "iiii:i"},
		{modWASI, "fd_seek", "iIii:i"},
		{modWASI, "fd_close", "i:i"},
		{modWASI, "sched_yield", ":i"},
		{modWASI, "proc_exit", "i"},
		{modWASI, "path_open", "iiiiiIIii:i"},
		{modWASI, "fd_prestat_get", "ii:i"},
		{modWASI, "fd_prestat_dir_name", "iii:i"},
		{modWASI, "args_sizes_get", "ii:i"},
		{modWASI, "environ_sizes_get", "ii:i"},
		{modWASI, "args_get", "ii:i"},
		{modWASI, "environ_get", "ii:i"},
	}
	probes = append(probes, extra...)
	for _, im := range probes {
		idx := t.b.imp(im.mod, im.name, im.sig)
		params, _, _ := strings.Cut(im.sig, ":")
		var code [][]byte
		for i := range params {
			code = append(code, localGet(i))
		}
		code = append(code, call(idx))
		t.b.fn("t_"+im.name, im.sig, code...)
	}
	return t.bytes()
}

func TestWASIBehaviour(t *testing.T) {
	clock := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	set := func(c time.Time) { mu.Lock(); clock = c; mu.Unlock() }

	for _, p := range []Profile{Envoy133, Envoy139} {
		t.Run(p.String(), func(t *testing.T) {
			set(time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC))
			h, sink := newTestHost(t, wasiProbe(p), Options{Profile: p, Clock: now})
			const out = 1024
			u64 := func(ptr uint32) uint64 { return binary.LittleEndian.Uint64(readMem(t, h, ptr, 8)) }
			u32at := func(ptr uint32) uint32 { return binary.LittleEndian.Uint32(readMem(t, h, ptr, 4)) }
			errno := func(export string, args ...uint64) uint64 {
				t.Helper()
				r, ok := callExport(t, h, export, args...)
				if !ok {
					t.Fatalf("%s trapped", export)
				}
				return r
			}
			expect := func(what string, got, want uint64) {
				t.Helper()
				if got != want {
					t.Errorf("%s = %d, want %d", what, got, want)
				}
			}

			// poll_oneoff: ENOSYS on 1.33; 0 events at once on 1.39.
			writeMem(t, h, out, []byte{7, 7, 7, 7})
			if p == Envoy133 {
				expect("poll_oneoff", errno("t_poll_oneoff", 0, 0, 1, out), errnoNosys)
				expect("nevents untouched", uint64(u32at(out)), 0x07070707)
			} else {
				expect("poll_oneoff", errno("t_poll_oneoff", 0, 512, 1, out), errnoSuccess)
				expect("nevents", uint64(u32at(out)), 0)
			}

			// fd_fdstat_get: EBADF except stdout and stderr, whose rights
			// are FD_WRITE.
			for fd, want := range map[uint64]uint64{0: errnoBadf, 1: errnoSuccess, 2: errnoSuccess, 3: errnoBadf, 42: errnoBadf} {
				writeMem(t, h, out, bytes.Repeat([]byte{0xff}, 24))
				expect("fd_fdstat_get fd", errno("t_fd_fdstat_get", fd, out), want)
				if want == errnoSuccess {
					stat := readMem(t, h, out, 24)
					wantStat := make([]byte, 24)
					wantStat[8] = 64
					if !bytes.Equal(stat, wantStat) {
						t.Errorf("fd_fdstat_get(%d) wrote %v, want %v", fd, stat, wantStat)
					}
				}
			}
			expect("fd_fdstat_set_flags", errno("t_fd_fdstat_set_flags", 1, 4), errnoNosys)

			// clock_time_get: realtime from the clock, monotonic never
			// backwards, other clocks ENOTSUP.
			expect("clock_time_get(realtime)", errno("t_clock_time_get", clockRealtime, 0, out), errnoSuccess)
			expect("realtime", u64(out), uint64(now().UnixNano()))
			expect("clock_time_get(monotonic)", errno("t_clock_time_get", clockMonotonic, 0, out), errnoSuccess)
			m1 := u64(out)
			set(now().Add(time.Second))
			errno("t_clock_time_get", clockMonotonic, 0, out)
			m2 := u64(out)
			expect("monotonic advance", m2-m1, uint64(time.Second))
			set(now().Add(-time.Hour)) // the injected clock goes backwards
			errno("t_clock_time_get", clockMonotonic, 0, out)
			expect("monotonic after a backwards clock", u64(out), m2)
			expect("clock_time_get(process cputime)", errno("t_clock_time_get", 2, 0, out), errnoNotsup)
			expect("clock_time_get(bad pointer)", errno("t_clock_time_get", clockRealtime, 0, 2*65536-4), errnoFault)

			// random_get, up to MaxRandomGetBytes.
			writeMem(t, h, out, make([]byte, 32))
			expect("random_get", errno("t_random_get", out, 32), errnoSuccess)
			if bytes.Equal(readMem(t, h, out, 32), make([]byte, 32)) {
				t.Error("random_get left 32 zero bytes")
			}
			expect("random_get(MaxRandomGetBytes)", errno("t_random_get", 0, MaxRandomGetBytes), errnoSuccess)
			expect("random_get(MaxRandomGetBytes+1)", errno("t_random_get", 0, MaxRandomGetBytes+1), errnoInval)
			expect("random_get(past memory)", errno("t_random_get", 2*65536-8, 16), errnoFault)

			// fd_write: stdout at info, stderr at error, lines joined.
			iov := func(at, buf, n uint32) {
				b := make([]byte, 8)
				binary.LittleEndian.PutUint32(b, buf)
				binary.LittleEndian.PutUint32(b[4:], n)
				writeMem(t, h, at, b)
			}
			writeMem(t, h, 2048, []byte("hello, "))
			writeMem(t, h, 2100, []byte("world\npartial"))
			iov(3000, 2048, 7)
			iov(3008, 2100, 13)
			expect("fd_write(1)", errno("t_fd_write", 1, 3000, 2, out), errnoSuccess)
			expect("nwritten", uint64(u32at(out)), 20)
			if r, ok := sink.find("hello, world"); !ok || r.Level != LogInfo || r.Source != FromStdout || r.Message != "hello, world" {
				t.Errorf("stdout line: got %+v (found %v), want info/stdout \"hello, world\"", r, ok)
			}
			if _, ok := sink.find("partial"); ok {
				t.Error("an unterminated line was logged before its newline")
			}
			expect("fd_write(2)", errno("t_fd_write", 2, 3008, 1, out), errnoSuccess)
			if r, ok := sink.find("partial"); ok {
				t.Errorf("stderr got stdout's pending line: %+v", r)
			}
			expect("fd_write(3)", errno("t_fd_write", 3, 3000, 1, out), errnoBadf)
			expect("fd_write(iovecs past memory)", errno("t_fd_write", 1, 2*65536-8, 2, out), errnoFault)

			// The rest of Envoy's surface.
			for _, c := range []struct {
				export string
				args   []uint64
				want   uint64
			}{
				{"t_fd_read", []uint64{0, 0, 0, out}, errnoNosys},
				{"t_fd_seek", []uint64{1, 0, 0, out}, errnoSuccess},
				{"t_fd_close", []uint64{1}, errnoSuccess},
				{"t_sched_yield", nil, errnoSuccess},
				{"t_path_open", []uint64{3, 0, 0, 0, 0, 0, 0, 0, out}, errnoNoent},
				{"t_fd_prestat_get", []uint64{3, out}, errnoBadf},
				{"t_fd_prestat_dir_name", []uint64{3, out, 8}, errnoNosys},
				{"t_args_sizes_get", []uint64{out, out + 4}, errnoSuccess},
				{"t_environ_sizes_get", []uint64{out, out + 4}, errnoSuccess},
				{"t_args_get", []uint64{out, out + 4}, errnoSuccess},
				{"t_environ_get", []uint64{out, out + 4}, errnoSuccess},
				{"t_args_sizes_get", []uint64{2*65536 - 2, out}, errnoFault},
			} {
				expect(c.export, errno(c.export, c.args...), c.want)
			}

			// proc_exit traps and fails the VM.
			if _, ok := callExport(t, h, "t_proc_exit", 3); ok {
				t.Fatal("proc_exit returned")
			}
			st := h.VMStates()[0]
			if !st.Failed || !strings.Contains(st.FailReason, "proc_exit(3)") {
				t.Errorf("after proc_exit: %+v, want a failed VM naming proc_exit(3)", st)
			}
		})
	}
}

// Envoy 1.39's extra wasip1 functions resolve and answer ENOSYS.
func TestWASIEnvoy139Extras(t *testing.T) {
	wasm := wasiProbe(Envoy139, wasmImport{modWASI, "path_filestat_get", "iiiii:i"}, wasmImport{modWASI, "sock_accept", "iii:i"})
	h, _ := newTestHost(t, wasm, Options{Profile: Envoy139})
	for _, fn := range []string{"t_path_filestat_get", "t_sock_accept"} {
		var args []uint64
		if fn == "t_path_filestat_get" {
			args = []uint64{3, 0, 0, 0, 1024}
		} else {
			args = []uint64{3, 0, 1024}
		}
		if r, ok := callExport(t, h, fn, args...); !ok || r != errnoNosys {
			t.Errorf("%s = %d (ok %v), want ENOSYS (52)", fn, r, ok)
		}
	}
}

func TestImportAllowList(t *testing.T) {
	module := func(imports ...wasmImport) *tinyProxy {
		tp := newTiny()
		for _, im := range imports {
			tp.b.imp(im.mod, im.name, im.sig)
		}
		return tp
	}
	withABI := func(tp *tinyProxy, abi string) *tinyProxy { tp.abi = abi; return tp }
	cases := []struct {
		name    string
		wasm    []byte
		profile Profile
		wantErr string // "" means it loads
	}{
		{"Envoy's WASI loads", wasiProbe(Envoy133), Envoy133, ""},
		{"path_filestat_get refused on 1.33", module(wasmImport{modWASI, "path_filestat_get", "iiiii:i"}).bytes(), Envoy133,
			"wasi_snapshot_preview1.path_filestat_get, which Envoy does not provide"},
		{"path_filestat_get loads on 1.39", module(wasmImport{modWASI, "path_filestat_get", "iiiii:i"}).bytes(), Envoy139, ""},
		{"sock_accept refused on 1.33", module(wasmImport{modWASI, "sock_accept", "iii:i"}).bytes(), Envoy133,
			"wasi_snapshot_preview1.sock_accept"},
		{"unknown env function", module(wasmImport{modEnv, "proxy_frobnicate", "i:i"}).bytes(), Envoy139,
			"env.proxy_frobnicate, which Envoy does not provide"},
		{"unknown module", module(wasmImport{"foo", "bar", ":"}).bytes(), Envoy139, "foo.bar"},
		{"wrong signature", module(wasmImport{modEnv, "proxy_log", "ii:i"}).bytes(), Envoy133,
			"import env.proxy_log has signature (i32,i32)->(i32), the host's is (i32,i32,i32)->(i32)"},
		{"wasi_unstable fd_write loads", module(wasmImport{modWASIUnstable, "fd_write", "iiii:i"}).bytes(), Envoy133, ""},
		{"wasi_unstable keeps Envoy's list on 1.39", module(wasmImport{modWASIUnstable, "path_filestat_get", "iiiii:i"}).bytes(), Envoy139,
			"wasi_unstable.path_filestat_get"},
		{"proxy_get_log_level needs ABI 0.2.1", module(wasmImport{modEnv, "proxy_get_log_level", "i:i"}).bytes(), Envoy133,
			"ABI 0.2.1 modules only"},
		{"proxy_get_log_level with ABI 0.2.1", withABI(module(wasmImport{modEnv, "proxy_get_log_level", "i:i"}), "proxy_abi_version_0_2_1").bytes(), Envoy133, ""},
		{"ABI 0.1.0", withABI(module(), "proxy_abi_version_0_1_0").bytes(), Envoy133, "ABI 0.1.0 is not supported"},
		{"no ABI export", withABI(module(), "not_an_abi").bytes(), Envoy133, "no proxy_abi_version_0_2_0"},
	}
	noMemory := newTiny()
	noMemory.b.noMem = true
	cases = append(cases, struct {
		name    string
		wasm    []byte
		profile Profile
		wantErr string
	}{"no memory export", noMemory.bytes(), Envoy133, "no memory named \"memory\""})
	badSig := newWasm()
	badSig.fn("proxy_abi_version_0_2_0", ":").fn("proxy_on_memory_allocate", "i:i", i32c(0)).fn("proxy_on_vm_start", "i:i", i32c(1))
	noMalloc := newWasm()
	noMalloc.fn("proxy_abi_version_0_2_0", ":")
	cases = append(cases, []struct {
		name    string
		wasm    []byte
		profile Profile
		wantErr string
	}{
		{"callback with a wrong signature", badSig.bytes(), Envoy133, "export proxy_on_vm_start has signature (i32)->(i32), want (i32,i32)->(i32)"},
		{"no allocator", noMalloc.bytes(), Envoy133, "neither proxy_on_memory_allocate nor malloc"},
	}...)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, err := New(context.Background(), c.wasm, Options{Profile: c.profile, Logger: func(LogRecord) {}})
			if h != nil {
				defer h.Close(context.Background())
			}
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("New: %v, want it to load", err)
			case c.wantErr != "" && err == nil:
				t.Fatalf("New loaded the module, want an error containing %q", c.wantErr)
			case c.wantErr != "" && !strings.Contains(err.Error(), c.wantErr):
				t.Fatalf("New: %v, want an error containing %q", err, c.wantErr)
			}
		})
	}
}

func TestRestrictedCallbacks(t *testing.T) {
	type imp = wasmImport
	randomGet := imp{modWASI, "random_get", "ii:i"}
	pollOneoff := imp{modWASI, "poll_oneoff", "iiii:i"}
	schedYield := imp{modWASI, "sched_yield", ":i"}
	fdWrite := imp{modWASI, "fd_write", "iiii:i"}
	setTick := imp{modEnv, "proxy_set_tick_period_milliseconds", "i:i"}
	setFlags := imp{modWASI, "fd_fdstat_set_flags", "ii:i"}
	getBuffer := imp{modEnv, "proxy_get_buffer_bytes", "iiiii:i"}
	// callDrop calls an import with zero arguments and drops its result.
	callDrop := func(idx int, sig string) [][]byte {
		params, _, _ := strings.Cut(sig, ":")
		var code [][]byte
		for range params {
			code = append(code, i32c(0))
		}
		return append(code, call(idx), opDrop)
	}
	cases := []struct {
		name     string
		profile  Profile
		during   string // "_initialize" or "proxy_on_memory_allocate"
		imp      wasmImport
		wantTrap bool
	}{
		{"proxy_set_tick_period_milliseconds during _initialize", Envoy133, "_initialize", setTick, true},
		{"random_get during _initialize", Envoy133, "_initialize", randomGet, false},
		{"fd_fdstat_set_flags during _initialize", Envoy133, "_initialize", setFlags, false},
		{"poll_oneoff during _initialize (1.33)", Envoy133, "_initialize", pollOneoff, true},
		{"poll_oneoff during _initialize (1.39)", Envoy139, "_initialize", pollOneoff, false},
		{"random_get during allocate", Envoy133, "proxy_on_memory_allocate", randomGet, true},
		{"fd_write during allocate", Envoy133, "proxy_on_memory_allocate", fdWrite, false},
		{"poll_oneoff during allocate (1.33)", Envoy133, "proxy_on_memory_allocate", pollOneoff, true},
		{"poll_oneoff during allocate (1.39)", Envoy139, "proxy_on_memory_allocate", pollOneoff, false},
		{"sched_yield during allocate (1.33)", Envoy133, "proxy_on_memory_allocate", schedYield, true},
		{"sched_yield during allocate (1.39)", Envoy139, "proxy_on_memory_allocate", schedYield, false},
		{"tick during allocate", Envoy139, "proxy_on_memory_allocate", setTick, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tp := newTiny()
			idx := tp.b.imp(c.imp.mod, c.imp.name, c.imp.sig)
			phase := c.during
			if c.during == "_initialize" {
				tp.initCode = callDrop(idx, c.imp.sig)
			} else {
				// proxy_on_vm_start reads the VM configuration, so the
				// host allocates guest memory for it.
				gb := tp.b.imp(getBuffer.mod, getBuffer.name, getBuffer.sig)
				tp.allocPre = callDrop(idx, c.imp.sig)
				tp.vmStart = [][]byte{i32c(bufVMConfig), i32c(0), i32c(100), i32c(0), i32c(4), call(gb), opDrop}
				phase = "proxy_on_vm_start"
			}
			h, err := New(context.Background(), tp.bytes(), Options{Profile: c.profile, VMConfig: []byte("cfg"), Logger: func(LogRecord) {}})
			if h != nil {
				defer h.Close(context.Background())
			}
			if !c.wantTrap {
				if err != nil {
					t.Fatalf("New: %v, want the call allowed", err)
				}
				return
			}
			var se *StartError
			if !errors.As(err, &se) {
				t.Fatalf("New: %v, want a *StartError", err)
			}
			want := "restricted_callback: " + c.imp.mod + "." + c.imp.name + " may not be called during " + c.during
			if se.Phase != phase || !strings.Contains(se.Reason, want) {
				t.Fatalf("StartError{Phase: %q, Reason: %q}, want phase %q and a reason containing %q", se.Phase, se.Reason, phase, want)
			}
		})
	}
}

// A VM config read in proxy_on_vm_start lands at the allocator's address:
// the buffer ABI end to end on the tiny module.
func TestBufferBytesCopiesThroughAllocator(t *testing.T) {
	tp := newTiny()
	gb := tp.b.imp(modEnv, "proxy_get_buffer_bytes", "iiiii:i")
	tp.vmStart = [][]byte{i32c(0), i32c(bufVMConfig), i32c(1), i32c(3), i32c(8), i32c(12), call(gb), i32store(0)}
	h, _ := newTestHost(t, tp.bytes(), Options{VMConfig: []byte("abcdef")})
	status := binary.LittleEndian.Uint32(readMem(t, h, 0, 4))
	ptr := binary.LittleEndian.Uint32(readMem(t, h, 8, 4))
	size := binary.LittleEndian.Uint32(readMem(t, h, 12, 4))
	if status != 0 || ptr != mallocAddr || size != 3 {
		t.Fatalf("proxy_get_buffer_bytes(VmConfiguration, 1, 3) = status %d ptr %d size %d, want 0 %d 3", status, ptr, size, mallocAddr)
	}
	if got := readMem(t, h, mallocAddr, 3); string(got) != "bcd" {
		t.Fatalf("copied %q, want \"bcd\"", got)
	}
}

// Lines from fd_write are joined up to MaxLogLineBytes; a longer run is
// logged in pieces, and an unterminated tail is logged when the VM closes.
func TestLogLineLimit(t *testing.T) {
	h, sink := newTestHost(t, wasiProbe(Envoy133), Options{})
	write := func(fd uint64, data []byte) {
		t.Helper()
		writeMem(t, h, 8192, data)
		iov := make([]byte, 8)
		binary.LittleEndian.PutUint32(iov, 8192)
		binary.LittleEndian.PutUint32(iov[4:], uint32(len(data)))
		writeMem(t, h, 4000, iov)
		if r, ok := callExport(t, h, "t_fd_write", fd, 4000, 1, 4010); !ok || r != errnoSuccess {
			t.Fatalf("fd_write = %d (ok %v)", r, ok)
		}
	}
	count := func(src LogSource) int {
		n := 0
		for _, r := range sink.records() {
			if r.Source == src {
				n++
			}
		}
		return n
	}
	write(2, bytes.Repeat([]byte("e"), MaxLogLineBytes-1))
	if n := count(FromStderr); n != 0 {
		t.Fatalf("%d stderr records for MaxLogLineBytes-1 unterminated bytes, want 0", n)
	}
	write(2, []byte("e"))
	recs := sink.records()
	if n := count(FromStderr); n != 1 || len(recs[len(recs)-1].Message) != MaxLogLineBytes {
		t.Fatalf("%d stderr records after MaxLogLineBytes bytes, want 1 of exactly MaxLogLineBytes", n)
	}
	write(1, []byte("tail without newline"))
	if _, ok := sink.find("tail without newline"); ok {
		t.Fatal("unterminated stdout logged early")
	}
	h.Close(context.Background())
	if r, ok := sink.find("tail without newline"); !ok || r.Source != FromStdout {
		t.Fatalf("unterminated stdout not flushed at Close: %+v", r)
	}
}

// proxy_close_stream(Request) resets the stream; proxy_continue_stream
// rejects stream types beyond Upstream.
func TestCloseStreamResets(t *testing.T) {
	tp := newTiny()
	closeStream := tp.b.imp(modEnv, "proxy_close_stream", "i:i")
	continueStream := tp.b.imp(modEnv, "proxy_continue_stream", "i:i")
	tp.reqHeaders = [][]byte{
		i32c(0), i32c(4), call(continueStream), i32store(0), // memory[0] = continue_stream(4)
		i32c(0), call(closeStream), opDrop,
		i32c(0), // ActionContinue, overridden by the reset
	}
	h, _ := newTestHost(t, tp.bytes(), Options{})
	s, err := h.NewStream(StreamInfo{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.RequestHeaders(RequestHead{}, true)
	if err != nil || st.Action != Reset {
		t.Fatalf("RequestHeaders: %+v, %v; want a reset", st, err)
	}
	if got := binary.LittleEndian.Uint32(readMem(t, h, 0, 4)); got != uint32(stBadArgument) {
		t.Errorf("proxy_continue_stream(4) = %d, want BadArgument (2)", got)
	}
	if v, _ := h.Stat("wasmhost.streams.resets"); v != 1 {
		t.Errorf("resets = %d, want 1", v)
	}
}
