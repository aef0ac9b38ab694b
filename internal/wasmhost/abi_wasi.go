package wasmhost

import (
	"bytes"
	"crypto/rand"
	"fmt"
)

// MaxLogLineBytes bounds a line buffered from fd_write: a longer one is
// logged in pieces of this size.
const MaxLogLineBytes = 16 << 10

// MaxRandomGetBytes bounds one random_get: a larger request answers
// EINVAL, as Envoy does past PROXY_WASM_HOST_WASI_RANDOM_GET_MAX_SIZE_BYTES.
const MaxRandomGetBytes = 64 << 10

// WASI clock ids.
const (
	clockRealtime  = 0
	clockMonotonic = 1
)

// wasiFuncs returns the WASI functions of a profile, implemented after
// proxy-wasm-cpp-host src/exports.cc (the wasi_unstable_* functions).
func wasiFuncs(p Profile) []hostFunc {
	fns := []hostFunc{
		{"fd_write", "iiii:i", func(v *vm, s []uint64) {
			fd, iovs, n, nwritten := u32(s[0]), u32(s[1]), u32(s[2]), u32(s[3])
			var level LogLevel
			var src LogSource
			switch fd {
			case 1:
				level, src = LogInfo, FromStdout
			case 2:
				level, src = LogError, FromStderr
			default:
				s[0] = errnoBadf
				return
			}
			if uint64(iovs)+8*uint64(n) > uint64(v.mem.Size()) {
				s[0] = errnoFault
				return
			}
			written := 0
			for i := uint32(0); i < n; i++ {
				buf, _ := v.mem.ReadUint32Le(iovs + 8*i)
				size, _ := v.mem.ReadUint32Le(iovs + 8*i + 4)
				if size == 0 {
					continue
				}
				b, ok := v.view(buf, size)
				if !ok {
					s[0] = errnoFault
					return
				}
				v.writeOut(int(fd), level, src, b)
				written += len(b)
			}
			if !v.putU32(nwritten, uint32(written)) {
				s[0] = errnoFault
				return
			}
			s[0] = errnoSuccess
		}},
		{"fd_read", "iiii:i", func(v *vm, s []uint64) { s[0] = errnoNosys }},
		// Envoy logs fd_seek and fd_close (at trace) and reports success.
		{"fd_seek", "iIii:i", func(v *vm, s []uint64) { s[0] = errnoSuccess }},
		{"fd_close", "i:i", func(v *vm, s []uint64) { s[0] = errnoSuccess }},
		{"fd_fdstat_get", "ii:i", func(v *vm, s []uint64) {
			fd, out := u32(s[0]), u32(s[1])
			if fd != 1 && fd != 2 {
				s[0] = errnoBadf
				return
			}
			// 24 bytes, zero but fs_rights_base = FD_WRITE (64); like
			// Envoy, a failed write is not reported.
			var stat [24]byte
			stat[8] = 64
			v.mem.Write(out, stat[:])
			s[0] = errnoSuccess
		}},
		{"fd_fdstat_set_flags", "ii:i", func(v *vm, s []uint64) { s[0] = errnoNosys }},
		{"environ_get", "ii:i", func(v *vm, s []uint64) { s[0] = errnoSuccess }},
		{"environ_sizes_get", "ii:i", zeroPair},
		{"args_get", "ii:i", func(v *vm, s []uint64) { s[0] = errnoSuccess }},
		{"args_sizes_get", "ii:i", zeroPair},
		{"clock_time_get", "iIi:i", func(v *vm, s []uint64) {
			var t int64
			switch u32(s[0]) {
			case clockRealtime:
				t = v.h.now().UnixNano()
			case clockMonotonic:
				t = v.h.monotonicNanos()
			default:
				s[0] = errnoNotsup
				return
			}
			if !v.putU64(u32(s[2]), uint64(t)) {
				s[0] = errnoFault
				return
			}
			s[0] = errnoSuccess
		}},
		{"random_get", "ii:i", func(v *vm, s []uint64) {
			buf, n := u32(s[0]), u32(s[1])
			switch {
			case n > MaxRandomGetBytes:
				s[0] = errnoInval
				return
			case n == 0:
				s[0] = errnoSuccess
				return
			}
			b := make([]byte, n)
			_, _ = rand.Read(b)
			if !v.mem.Write(buf, b) {
				s[0] = errnoFault
				return
			}
			s[0] = errnoSuccess
		}},
		{"sched_yield", ":i", func(v *vm, s []uint64) { s[0] = errnoSuccess }},
		{"poll_oneoff", "iiii:i", func(v *vm, s []uint64) {
			if p == Envoy133 {
				s[0] = errnoNosys
				return
			}
			// Envoy ≥ 1.39: nothing is polled; report 0 events at once.
			if !v.putU32(u32(s[3]), 0) {
				s[0] = errnoFault
				return
			}
			s[0] = errnoSuccess
		}},
		{"proc_exit", "i", func(v *vm, s []uint64) {
			panic(&trapError{msg: fmt.Sprintf("proc_exit(%d)", u32(s[0]))})
		}},
		{"path_open", "iiiiiIIii:i", func(v *vm, s []uint64) { s[0] = errnoNoent }},
		{"fd_prestat_get", "ii:i", func(v *vm, s []uint64) { s[0] = errnoBadf }},
		{"fd_prestat_dir_name", "iii:i", func(v *vm, s []uint64) { s[0] = errnoNosys }},
	}
	if p == Envoy133 {
		return fns
	}
	nosys := func(v *vm, s []uint64) { s[0] = errnoNosys }
	for _, f := range []struct{ name, sig string }{
		{"clock_res_get", "ii:i"},
		{"fd_advise", "iIIi:i"},
		{"fd_allocate", "iII:i"},
		{"fd_datasync", "i:i"},
		{"fd_fdstat_set_rights", "iII:i"},
		{"fd_filestat_get", "ii:i"},
		{"fd_filestat_set_size", "iI:i"},
		{"fd_filestat_set_times", "iIIi:i"},
		{"fd_pread", "iiiIi:i"},
		{"fd_pwrite", "iiiIi:i"},
		{"fd_readdir", "iiiIi:i"},
		{"fd_renumber", "ii:i"},
		{"fd_sync", "i:i"},
		{"fd_tell", "ii:i"},
		{"path_create_directory", "iii:i"},
		{"path_filestat_get", "iiiii:i"},
		{"path_filestat_set_times", "iiiiIIi:i"},
		{"path_link", "iiiiiii:i"},
		{"path_readlink", "iiiiii:i"},
		{"path_remove_directory", "iii:i"},
		{"path_rename", "iiiiii:i"},
		{"path_symlink", "iiiii:i"},
		{"path_unlink_file", "iii:i"},
		{"proc_raise", "i:i"},
		{"sock_accept", "iii:i"},
		{"sock_recv", "iiiiii:i"},
		{"sock_send", "iiiii:i"},
		{"sock_shutdown", "ii:i"},
	} {
		fns = append(fns, hostFunc{f.name, f.sig, nosys})
	}
	return fns
}

// zeroPair writes 0 to both pointers (no arguments, no environment).
func zeroPair(v *vm, s []uint64) {
	if !v.putU32(u32(s[0]), 0) || !v.putU32(u32(s[1]), 0) {
		s[0] = errnoFault
		return
	}
	s[0] = errnoSuccess
}

// writeOut buffers stdout/stderr bytes and logs each complete line.
// Envoy logs each fd_write call as it comes (minus one trailing newline);
// the Go runtime writes a panic in many small pieces, so the host joins
// them into lines first.
func (v *vm) writeOut(fd int, level LogLevel, src LogSource, b []byte) {
	buf := append(v.outBuf[fd], b...)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		v.pluginLog(level, src, string(buf[:i]))
		buf = buf[i+1:]
	}
	for len(buf) >= MaxLogLineBytes {
		v.pluginLog(level, src, string(buf[:MaxLogLineBytes]))
		buf = buf[MaxLogLineBytes:]
	}
	v.outBuf[fd] = append(v.outBuf[fd][:0], buf...)
}

// flushOut logs unterminated stdout/stderr lines.
func (v *vm) flushOut() {
	for fd := 1; fd <= 2; fd++ {
		if len(v.outBuf[fd]) > 0 {
			level, src := LogInfo, FromStdout
			if fd == 2 {
				level, src = LogError, FromStderr
			}
			v.pluginLog(level, src, string(v.outBuf[fd]))
			v.outBuf[fd] = v.outBuf[fd][:0]
		}
	}
}
