package wasmhost

import (
	"time"
)

// Memory helpers. Guest pointers and sizes are 32-bit.

// view returns guest memory without copying; use it before the next call
// into the guest (which may grow memory).
func (v *vm) view(ptr, size uint32) ([]byte, bool) {
	return v.mem.Read(ptr, size)
}

// read copies guest memory.
func (v *vm) read(ptr, size uint32) ([]byte, bool) {
	b, ok := v.mem.Read(ptr, size)
	if !ok {
		return nil, false
	}
	return append([]byte(nil), b...), true
}

func (v *vm) putU32(ptr, val uint32) bool { return v.mem.WriteUint32Le(ptr, val) }
func (v *vm) putU64(ptr uint32, val uint64) bool {
	return v.mem.WriteUint64Le(ptr, val)
}

// copyOut is Envoy's copyToPointerSize: it allocates len(data) bytes in the
// guest with proxy_on_memory_allocate, copies data there and writes the
// pointer and size; empty data writes a null pointer and 0.
func (v *vm) copyOut(data []byte, ptrPtr, sizePtr uint32) status {
	var ptr uint32
	if len(data) > 0 {
		if uint64(len(data)) > uint64(^uint32(0)) {
			return stInvalidMemoryAccess
		}
		ptr = v.malloc(uint32(len(data)))
		if ptr == 0 || !v.mem.Write(ptr, data) {
			return stInvalidMemoryAccess
		}
	}
	if !v.putU32(ptrPtr, ptr) || !v.putU32(sizePtr, uint32(len(data))) {
		return stInvalidMemoryAccess
	}
	return stOK
}

func u32(x uint64) uint32 { return uint32(x) }

// Header map and buffer types of the ABI.
const (
	mapRequestHeaders   = 0
	mapRequestTrailers  = 1
	mapResponseHeaders  = 2
	mapResponseTrailers = 3
	mapMax              = 7 // HttpCallResponseTrailers

	bufRequestBody   = 0
	bufResponseBody  = 1
	bufHTTPCallBody  = 4
	bufVMConfig      = 6
	bufPluginConfig  = 7
	bufMax           = 8 // CallData
	streamRequest    = 0
	streamResponse   = 1
	streamMax        = 3 // Upstream
	maxLogLevel      = 5 // critical
	metricTypeMaxArg = 2
)

// headerMap is Envoy's getMap: the map the plugin may change. ok only
// while the plugin holds the map (Envoy clears its pointer once the map
// continues); the root context and the gRPC and HTTP-call maps have none.
func (v *vm) headerMap(c *pctx, typ uint32) (m *[][2]string, ok bool) {
	d, trailers := c.mapDir(typ)
	if d == nil {
		return nil, false
	}
	if trailers {
		return &d.trl, d.trlState == stHeld
	}
	return &d.hdr, d.hdrState == stHeld
}

// readMap is Envoy's getConstMap with getHeaderMapValue's statuses: a map
// the plugin holds reads OK; any other map is BadArgument, except during
// proxy_on_log, where Envoy serves the access log's request headers,
// response headers and response trailers and answers NotFound for a map it
// does not have (request trailers always).
func (v *vm) readMap(c *pctx, typ uint32) ([][2]string, status) {
	d, trailers := c.mapDir(typ)
	if c.s != nil && c.s.inLog {
		switch {
		case d == nil, trailers && !d.response:
			return nil, stNotFound
		case trailers && d.trlState != stNone:
			return d.trl, stOK
		case !trailers && d.hdrState != stNone:
			return d.hdr, stOK
		}
		return nil, stNotFound
	}
	m, ok := v.headerMap(c, typ)
	if !ok {
		return nil, stBadArgument
	}
	return *m, stOK
}

// mapDir is the stream direction a map type belongs to (nil for the root
// context and for map types a stream has none of) and whether the map is
// its trailers.
func (c *pctx) mapDir(typ uint32) (d *dir, trailers bool) {
	if c.s == nil {
		return nil, false
	}
	switch typ {
	case mapRequestHeaders:
		return &c.s.req, false
	case mapRequestTrailers:
		return &c.s.req, true
	case mapResponseHeaders:
		return &c.s.resp, false
	case mapResponseTrailers:
		return &c.s.resp, true
	}
	return nil, false
}

// buffer finds a buffer. exists is false where Envoy's getBuffer returns
// null (HTTP call response body; plugin configuration outside
// proxy_on_configure); a body outside its callbacks exists but is empty.
// body is the stream's body buffer the plugin sees, which
// proxy_set_buffer_bytes may change; nil for the other buffers.
func (v *vm) buffer(c *pctx, typ uint32) (data []byte, body *[]byte, exists bool) {
	switch typ {
	case bufRequestBody, bufResponseBody:
		if c.s == nil {
			return nil, nil, true
		}
		d := c.s.dirOf(typ == bufResponseBody)
		if !d.bufActive {
			return nil, nil, true
		}
		b := d.view()
		return *b, b, true
	case bufHTTPCallBody:
		return nil, nil, false
	case bufVMConfig:
		return v.h.opts.VMConfig, nil, true
	case bufPluginConfig:
		if !v.inConfigure {
			return nil, nil, false
		}
		return v.h.opts.PluginConfig, nil, true
	}
	return nil, nil, true
}

// setBody is Envoy's Buffer::copyFrom on a body: start 0 drops the first
// length bytes (all of them when length ≥ the size) and prepends data;
// start ≥ the size appends; any other start is BadArgument.
func setBody(body *[]byte, start, length uint64, data []byte) status {
	size := uint64(len(*body))
	switch {
	case start == 0:
		rest := (*body)[min(length, size):]
		*body = append(data, rest...)
	case start >= size:
		*body = append(*body, data...)
	default:
		return stBadArgument
	}
	return stOK
}

func envFuncs() []hostFunc {
	return []hostFunc{
		{"proxy_log", "iii:i", func(v *vm, s []uint64) {
			level := u32(s[0])
			if level > maxLogLevel {
				s[0] = stBadArgument
				return
			}
			msg, ok := v.read(u32(s[1]), u32(s[2]))
			if !ok {
				s[0] = stInvalidMemoryAccess
				return
			}
			v.pluginLog(LogLevel(level), FromPlugin, string(msg))
			s[0] = stOK
		}},
		{"proxy_get_log_level", "i:i", func(v *vm, s []uint64) {
			s[0] = okOr(v.putU32(u32(s[0]), uint32(v.h.opts.LogLevel)))
		}},
		{"proxy_get_status", "iii:i", func(v *vm, s []uint64) {
			if !v.putU32(u32(s[0]), 0) {
				s[0] = stInvalidMemoryAccess
				return
			}
			s[0] = v.copyOut(nil, u32(s[1]), u32(s[2]))
		}},
		{"proxy_set_property", "iiii:i", func(v *vm, s []uint64) {
			path, ok1 := v.read(u32(s[0]), u32(s[1]))
			val, ok2 := v.read(u32(s[2]), u32(s[3]))
			if !ok1 || !ok2 {
				s[0] = stInvalidMemoryAccess
				return
			}
			st := v.current().s
			if st == nil {
				s[0] = stNotFound
				return
			}
			if st.props == nil {
				st.props = map[string][]byte{}
			}
			st.props[string(path)] = val
			s[0] = stOK
		}},
		{"proxy_get_property", "iiii:i", func(v *vm, s []uint64) {
			path, ok := v.read(u32(s[0]), u32(s[1]))
			if !ok {
				s[0] = stInvalidMemoryAccess
				return
			}
			val, st := v.property(v.current(), path)
			if st != stOK {
				s[0] = st
				return
			}
			s[0] = v.copyOut(val, u32(s[2]), u32(s[3]))
		}},
		{"proxy_send_local_response", "iiiiiiii:i", func(v *vm, s []uint64) {
			code, grpc := u32(s[0]), int32(u32(s[7]))
			details, ok1 := v.read(u32(s[1]), u32(s[2]))
			body, ok2 := v.read(u32(s[3]), u32(s[4]))
			hdrs, ok3 := v.view(u32(s[5]), u32(s[6]))
			if !ok1 || !ok2 || !ok3 {
				s[0] = stInvalidMemoryAccess
				return
			}
			pairs, _ := parsePairs(hdrs)
			st := v.current().s
			s[0] = stOK
			if st == nil || st.ended || st.closed || st.inLocalReply || st.pendingLocal != nil {
				return
			}
			st.pendingLocal = &LocalResponse{Status: int(code), Headers: pairs, Body: body,
				Details: string(details), GrpcStatus: grpc}
			if !st.active {
				v.afterCall = append(v.afterCall, st.asyncLocal)
			}
		}},
		{"proxy_get_shared_data", "iiiii:i", func(v *vm, s []uint64) {
			key, ok := v.read(u32(s[0]), u32(s[1]))
			if !ok {
				s[0] = stInvalidMemoryAccess
				return
			}
			val, cas, found := v.h.shared.get(v.h.opts.VMID, string(key))
			if !found {
				s[0] = stNotFound
				return
			}
			if st := v.copyOut(val, u32(s[2]), u32(s[3])); st != stOK {
				s[0] = st
				return
			}
			s[0] = okOr(v.putU32(u32(s[4]), cas))
		}},
		{"proxy_set_shared_data", "iiiii:i", func(v *vm, s []uint64) {
			key, ok1 := v.read(u32(s[0]), u32(s[1]))
			val, ok2 := v.view(u32(s[2]), u32(s[3]))
			if !ok1 || !ok2 {
				s[0] = stInvalidMemoryAccess
				return
			}
			if !v.h.shared.set(v.h.opts.VMID, string(key), val, u32(s[4])) {
				s[0] = stCasMismatch
				return
			}
			s[0] = stOK
		}},
		{"proxy_register_shared_queue", "iii:i", func(v *vm, s []uint64) {
			name, ok := v.read(u32(s[0]), u32(s[1]))
			if !ok {
				s[0] = stInvalidMemoryAccess
				return
			}
			t := v.h.queues.register(v.h.opts.VMID, string(name), v)
			s[0] = okOr(v.putU32(u32(s[2]), t))
		}},
		{"proxy_resolve_shared_queue", "iiiii:i", func(v *vm, s []uint64) {
			vmID, ok1 := v.read(u32(s[0]), u32(s[1]))
			name, ok2 := v.read(u32(s[2]), u32(s[3]))
			if !ok1 || !ok2 {
				s[0] = stInvalidMemoryAccess
				return
			}
			id := string(vmID)
			if id == "" {
				id = v.h.opts.VMID
			}
			t, found := v.h.queues.resolve(id, string(name))
			if !found {
				s[0] = stNotFound
				return
			}
			s[0] = okOr(v.putU32(u32(s[4]), t))
		}},
		{"proxy_dequeue_shared_queue", "iii:i", func(v *vm, s []uint64) {
			data, st := v.h.queues.dequeue(u32(s[0]))
			if st != stOK {
				s[0] = st
				return
			}
			s[0] = v.copyOut(data, u32(s[1]), u32(s[2]))
		}},
		{"proxy_enqueue_shared_queue", "iii:i", func(v *vm, s []uint64) {
			data, ok := v.view(u32(s[1]), u32(s[2]))
			if !ok {
				s[0] = stInvalidMemoryAccess
				return
			}
			owner, st := v.h.queues.enqueue(u32(s[0]), data)
			if st == stOK {
				v.h.queues.notify(v, owner, u32(s[0]))
			}
			s[0] = st
		}},
		{"proxy_get_header_map_value", "iiiii:i", func(v *vm, s []uint64) {
			if u32(s[0]) > mapMax {
				s[0] = stBadArgument
				return
			}
			key, ok := v.read(u32(s[1]), u32(s[2]))
			if !ok {
				s[0] = stInvalidMemoryAccess
				return
			}
			m, st := v.readMap(v.current(), u32(s[0]))
			if st != stOK {
				s[0] = st
				return
			}
			val, found := headerGet(m, lower(string(key)))
			if !found {
				s[0] = stNotFound
				return
			}
			s[0] = v.copyOut([]byte(val), u32(s[3]), u32(s[4]))
		}},
		{"proxy_add_header_map_value", "iiiii:i", headerEdit(func(m *[][2]string, k, val string) {
			*m = append(*m, [2]string{k, val})
		})},
		{"proxy_replace_header_map_value", "iiiii:i", headerEdit(func(m *[][2]string, k, val string) {
			*m = headerReplace(*m, k, val)
		})},
		{"proxy_remove_header_map_value", "iii:i", func(v *vm, s []uint64) {
			if u32(s[0]) > mapMax {
				s[0] = stBadArgument
				return
			}
			key, ok := v.read(u32(s[1]), u32(s[2]))
			if !ok {
				s[0] = stInvalidMemoryAccess
				return
			}
			m, writable := v.headerMap(v.current(), u32(s[0]))
			if !writable {
				s[0] = stBadArgument
				return
			}
			*m = headerRemove(*m, lower(string(key)))
			s[0] = stOK
		}},
		{"proxy_get_header_map_pairs", "iii:i", func(v *vm, s []uint64) {
			if u32(s[0]) > mapMax {
				s[0] = stBadArgument
				return
			}
			// Envoy serialises whatever getConstMap finds: no map is an
			// empty list.
			m, _ := v.readMap(v.current(), u32(s[0]))
			var data []byte
			if len(m) > 0 {
				data = serializePairs(m)
			}
			s[0] = v.copyOut(data, u32(s[1]), u32(s[2]))
		}},
		{"proxy_set_header_map_pairs", "iii:i", func(v *vm, s []uint64) {
			if u32(s[0]) > mapMax {
				s[0] = stBadArgument
				return
			}
			raw, ok := v.view(u32(s[1]), u32(s[2]))
			if !ok {
				s[0] = stInvalidMemoryAccess
				return
			}
			m, writable := v.headerMap(v.current(), u32(s[0]))
			if !writable {
				s[0] = stBadArgument
				return
			}
			pairs, _ := parsePairs(raw)
			out := (*m)[:0]
			for _, kv := range pairs {
				out = append(out, [2]string{lower(kv[0]), kv[1]})
			}
			*m = out
			s[0] = stOK
		}},
		{"proxy_get_header_map_size", "ii:i", func(v *vm, s []uint64) {
			if u32(s[0]) > mapMax {
				s[0] = stBadArgument
				return
			}
			m, writable := v.headerMap(v.current(), u32(s[0]))
			if !writable {
				s[0] = stBadArgument
				return
			}
			s[0] = okOr(v.putU32(u32(s[1]), uint32(headerBytes(*m))))
		}},
		{"proxy_get_buffer_status", "iii:i", func(v *vm, s []uint64) {
			if u32(s[0]) > bufMax {
				s[0] = stBadArgument
				return
			}
			data, _, exists := v.buffer(v.current(), u32(s[0]))
			if !exists {
				s[0] = stNotFound
				return
			}
			s[0] = okOr(v.putU32(u32(s[1]), uint32(len(data))) && v.putU32(u32(s[2]), 0))
		}},
		{"proxy_get_buffer_bytes", "iiiii:i", func(v *vm, s []uint64) {
			if u32(s[0]) > bufMax {
				s[0] = stBadArgument
				return
			}
			data, _, exists := v.buffer(v.current(), u32(s[0]))
			if !exists {
				s[0] = stNotFound
				return
			}
			start, length := uint64(u32(s[1])), uint64(u32(s[2]))
			size := uint64(len(data))
			switch {
			case start > size:
				length = 0
			case start+length > size:
				length = size - start
			}
			s[0] = stOK
			if length > 0 {
				s[0] = v.copyOut(append([]byte(nil), data[start:start+length]...), u32(s[3]), u32(s[4]))
			}
		}},
		{"proxy_set_buffer_bytes", "iiiii:i", func(v *vm, s []uint64) {
			if u32(s[0]) > bufMax {
				s[0] = stBadArgument
				return
			}
			_, body, exists := v.buffer(v.current(), u32(s[0]))
			if !exists {
				s[0] = stNotFound
				return
			}
			in, ok := v.read(u32(s[3]), u32(s[4]))
			if !ok {
				s[0] = stInvalidMemoryAccess
				return
			}
			if body == nil {
				s[0] = stBadArgument
				return
			}
			s[0] = setBody(body, uint64(u32(s[1])), uint64(u32(s[2])), in)
		}},
		{"proxy_http_call", "iiiiiiiiii:i", func(v *vm, s []uint64) {
			// Envoy writes the token first to check the pointer, then finds
			// no cluster of that name: this host has no clusters.
			if !v.putU32(u32(s[9]), 0) {
				s[0] = stInvalidMemoryAccess
				return
			}
			s[0] = stBadArgument
		}},
		{"proxy_grpc_call", "iiiiiiiiiiii:i", func(v *vm, s []uint64) { s[0] = stBadArgument }},
		{"proxy_grpc_stream", "iiiiiiiii:i", func(v *vm, s []uint64) { s[0] = stBadArgument }},
		{"proxy_grpc_cancel", "i:i", func(v *vm, s []uint64) { s[0] = stNotFound }},
		{"proxy_grpc_close", "i:i", func(v *vm, s []uint64) { s[0] = stNotFound }},
		{"proxy_grpc_send", "iiii:i", func(v *vm, s []uint64) { s[0] = stNotFound }},
		{"proxy_set_tick_period_milliseconds", "i:i", func(v *vm, s []uint64) {
			v.setTick(time.Duration(u32(s[0])) * time.Millisecond)
			s[0] = stOK
		}},
		{"proxy_get_current_time_nanoseconds", "i:i", func(v *vm, s []uint64) {
			s[0] = okOr(v.putU64(u32(s[0]), uint64(v.h.now().UnixNano())))
		}},
		{"proxy_define_metric", "iiii:i", func(v *vm, s []uint64) {
			name, ok := v.read(u32(s[1]), u32(s[2]))
			if !ok {
				s[0] = stInvalidMemoryAccess
				return
			}
			id, st := v.defineMetric(u32(s[0]), string(name))
			if st != stOK {
				s[0] = st
				return
			}
			s[0] = okOr(v.putU32(u32(s[3]), id))
		}},
		{"proxy_increment_metric", "iI:i", func(v *vm, s []uint64) {
			s[0] = v.incrementMetric(u32(s[0]), int64(s[1]))
		}},
		{"proxy_record_metric", "iI:i", func(v *vm, s []uint64) {
			s[0] = v.recordMetric(u32(s[0]), s[1])
		}},
		{"proxy_get_metric", "ii:i", func(v *vm, s []uint64) {
			val, st := v.getMetric(u32(s[0]))
			if st != stOK {
				s[0] = st
				return
			}
			s[0] = okOr(v.putU64(u32(s[1]), val))
		}},
		{"proxy_set_effective_context", "i:i", func(v *vm, s []uint64) {
			c := v.contexts[u32(s[0])]
			if c == nil {
				s[0] = stBadArgument
				return
			}
			v.effective = c
			s[0] = stOK
		}},
		{"proxy_done", ":i", func(v *vm, s []uint64) {
			if !v.rootPendingDone {
				s[0] = stNotFound
				return
			}
			v.rootPendingDone = false
			s[0] = stOK
		}},
		{"proxy_call_foreign_function", "iiiiii:i", func(v *vm, s []uint64) {
			// No foreign functions are registered.
			s[0] = stNotFound
		}},
		{"proxy_continue_stream", "i:i", func(v *vm, s []uint64) {
			typ := u32(s[0])
			if typ > streamMax {
				s[0] = stBadArgument
				return
			}
			st := v.current().s
			if typ > streamResponse {
				s[0] = stBadArgument
				if st == nil {
					s[0] = stOK
				}
				return
			}
			s[0] = stOK
			if st == nil || st.ended || st.closed {
				return
			}
			response := typ == streamResponse
			if st.active && st.activeD == st.dirOf(response) {
				st.cont[b2i(response)] = true
				return
			}
			v.afterCall = append(v.afterCall, func() { st.resume(response) })
		}},
		{"proxy_close_stream", "i:i", func(v *vm, s []uint64) {
			typ := u32(s[0])
			if typ > streamMax {
				s[0] = stBadArgument
				return
			}
			s[0] = stOK
			st := v.current().s
			// Downstream/Upstream close a network filter's connection; an
			// HTTP context has none, so Envoy does nothing for it.
			if typ > streamResponse || st == nil || st.ended || st.closed || st.pendingReset {
				return
			}
			st.pendingReset = true
			if !st.active {
				v.afterCall = append(v.afterCall, st.asyncReset)
			}
		}},
	}
}

// headerEdit is add/replace: the map must be writable.
func headerEdit(edit func(m *[][2]string, key, value string)) func(v *vm, s []uint64) {
	return func(v *vm, s []uint64) {
		if u32(s[0]) > mapMax {
			s[0] = stBadArgument
			return
		}
		key, ok1 := v.read(u32(s[1]), u32(s[2]))
		val, ok2 := v.read(u32(s[3]), u32(s[4]))
		if !ok1 || !ok2 {
			s[0] = stInvalidMemoryAccess
			return
		}
		m, writable := v.headerMap(v.current(), u32(s[0]))
		if !writable {
			s[0] = stBadArgument
			return
		}
		edit(m, lower(string(key)), string(val))
		s[0] = stOK
	}
}

func okOr(ok bool) status {
	if ok {
		return stOK
	}
	return stInvalidMemoryAccess
}

// pluginLog forwards a plugin line (proxy_log or stdout/stderr), keeping
// warnings and worse for a StartError while the VM starts.
func (v *vm) pluginLog(level LogLevel, src LogSource, msg string) {
	if v.starting && level >= LogWarn {
		v.startLogs = append(v.startLogs, msg)
	}
	v.h.log(LogRecord{Level: level, Source: src, Worker: v.w.idx, Message: msg})
}
