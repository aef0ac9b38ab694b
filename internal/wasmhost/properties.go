package wasmhost

import (
	"encoding/binary"
	"net"
	"strconv"
	"strings"
)

// Properties follow Envoy's attributes
// (source/extensions/common/wasm/context.cc, Context::getProperty and
// findValue): the path is NUL-separated; strings are raw bytes; integers
// and timestamps are 8-byte little-endian int64; booleans one byte; maps
// (request.headers, response.headers, and a whole map like "source")
// serialized as header pairs. A set_property value is found again by its
// top-level name only, as Envoy's "wasm."-prefixed filter state is.

func propInt(n int64) []byte {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(n))
	return b[:]
}

func propBool(b bool) []byte {
	if b {
		return []byte{1}
	}
	return []byte{0}
}

// property resolves path for context c.
func (v *vm) property(c *pctx, path []byte) ([]byte, status) {
	parts := strings.Split(string(path), "\x00")
	if len(parts) == 0 || parts[0] == "" {
		return nil, stNotFound
	}
	top, rest := parts[0], parts[1:]
	leaf := func(val []byte) ([]byte, status) {
		if len(rest) > 0 {
			return nil, stNotFound
		}
		return val, stOK
	}
	switch top {
	case "plugin_name":
		return leaf([]byte(v.h.opts.PluginName))
	case "plugin_root_id":
		return leaf([]byte(v.h.opts.RootID))
	case "plugin_vm_id":
		return leaf([]byte(v.h.opts.VMID))
	}
	s := c.s
	if s == nil {
		return nil, stNotFound
	}
	var m propMap
	switch top {
	case "source":
		m = peerMap(s.info.SourceAddress)
	case "destination":
		m = peerMap(s.info.DestinationAddress)
	case "request":
		m = s.requestMap()
	case "response":
		if s.resp.hdrState == stNone {
			return nil, stNotFound
		}
		m = s.responseMap()
	case "connection":
		m = propMap{pe("id", propInt(int64(s.info.ConnectionID))), pe("mtls", propBool(false))}
	case "connection_id":
		return leaf(propInt(int64(s.info.ConnectionID)))
	default:
		val, ok := s.props[top]
		if !ok {
			return nil, stNotFound
		}
		return leaf(append([]byte(nil), val...))
	}
	return m.lookup(rest)
}

// propEntry is a property map member; isMap marks a serialized header map
// (request.headers), whose members can be looked up by name.
type propEntry struct {
	key   string
	val   []byte
	isMap bool
}

type propMap []propEntry

func pe(k string, v []byte) propEntry   { return propEntry{key: k, val: v} }
func pmap(k string, v []byte) propEntry { return propEntry{key: k, val: v, isMap: true} }

func (m propMap) lookup(rest []string) ([]byte, status) {
	if len(rest) == 0 {
		pairs := make([][2]string, len(m))
		for i, e := range m {
			pairs[i] = [2]string{e.key, string(e.val)}
		}
		return serializePairs(pairs), stOK
	}
	for _, e := range m {
		if e.key != rest[0] {
			continue
		}
		switch {
		case len(rest) == 1:
			return e.val, stOK
		case e.isMap && len(rest) == 2:
			if val, ok := headerMapLookup(e.val, lower(rest[1])); ok {
				return val, stOK
			}
		}
		return nil, stNotFound
	}
	return nil, stNotFound
}

func peerMap(addr string) propMap {
	if addr == "" {
		return nil
	}
	m := propMap{pe("address", []byte(addr))}
	if _, port, err := net.SplitHostPort(addr); err == nil {
		if n, err := strconv.Atoi(port); err == nil {
			m = append(m, pe("port", propInt(int64(n))))
		}
	}
	return m
}

// joinedHeaders folds repeated names into one comma-joined value, as a
// CEL header lookup does.
func joinedHeaders(h [][2]string) [][2]string {
	out := make([][2]string, 0, len(h))
	idx := map[string]int{}
	for _, kv := range h {
		if i, ok := idx[kv[0]]; ok {
			out[i][1] += "," + kv[1]
			continue
		}
		idx[kv[0]] = len(out)
		out = append(out, kv)
	}
	return out
}

func (s *Stream) requestMap() propMap {
	h := s.req.hdr
	get := func(k string) string { v, _ := headerGet(h, k); return v }
	path := get(":path")
	urlPath, query, _ := strings.Cut(path, "?")
	m := propMap{
		pe("path", []byte(path)),
		pe("url_path", []byte(urlPath)),
		pe("host", []byte(get(":authority"))),
		pe("scheme", []byte(get(":scheme"))),
		pe("method", []byte(get(":method"))),
		pmap("headers", serializePairs(joinedHeaders(h))),
		pe("protocol", []byte(s.info.Protocol)),
		pe("query", []byte(query)),
		pe("time", propInt(s.start.UnixNano())),
		pe("duration", propInt(int64(s.h.now().Sub(s.start)))),
		pe("size", propInt(s.req.bodyBytes)),
	}
	if n, err := strconv.ParseInt(get("content-length"), 10, 64); err == nil {
		m[len(m)-1].val = propInt(n)
	}
	for _, kv := range [][2]string{{"referer", "referer"}, {"useragent", "user-agent"}, {"id", "x-request-id"}} {
		if v, ok := headerGet(h, kv[1]); ok {
			m = append(m, pe(kv[0], []byte(v)))
		}
	}
	return m
}

func (s *Stream) responseMap() propMap {
	h := s.resp.hdr
	code, _ := headerGet(h, ":status")
	n, _ := strconv.Atoi(code)
	details := "via_upstream"
	if s.inLocalReply {
		details = ""
	}
	return propMap{
		pe("code", propInt(int64(n))),
		pe("code_details", []byte(details)),
		pmap("headers", serializePairs(joinedHeaders(h))),
		pmap("trailers", serializePairs(joinedHeaders(s.resp.trl))),
		pe("size", propInt(s.resp.bodyBytes)),
	}
}

// headerMapLookup serves request.headers.NAME: the map's member by name.
func headerMapLookup(serialized []byte, name string) ([]byte, bool) {
	pairs, ok := parsePairs(serialized)
	if !ok {
		return nil, false
	}
	for _, kv := range pairs {
		if kv[0] == name {
			return []byte(kv[1]), true
		}
	}
	return nil, false
}
