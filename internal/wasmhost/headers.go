package wasmhost

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"
)

// HeaderValue returns the first value of name (case-insensitive) in h.
func HeaderValue(h [][2]string, name string) (string, bool) {
	for _, kv := range h {
		if strings.EqualFold(kv[0], name) {
			return kv[1], true
		}
	}
	return "", false
}

// lower lower-cases ASCII, allocating only when needed.
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

func cloneHeaders(h [][2]string) [][2]string {
	if h == nil {
		return nil
	}
	return append(make([][2]string, 0, len(h)), h...)
}

// normalizeHeaders lower-cases names and drops pseudo-headers.
func normalizeHeaders(in [][2]string) [][2]string {
	out := make([][2]string, 0, len(in))
	for _, kv := range in {
		k := lower(kv[0])
		if strings.HasPrefix(k, ":") {
			continue
		}
		out = append(out, [2]string{k, kv[1]})
	}
	return out
}

// buildRequestHeaders makes the request header map Envoy's HTTP
// connection manager hands to filters: pseudo-headers first, names
// lower-cased, "host" folded into :authority, x-request-id ensured.
func buildRequestHeaders(head RequestHead) [][2]string {
	out := make([][2]string, 4, len(head.Headers)+5)
	authority := head.Authority
	hasID := false
	for _, kv := range head.Headers {
		k := lower(kv[0])
		switch {
		case strings.HasPrefix(k, ":"):
			continue
		case k == "host":
			if authority == "" {
				authority = kv[1]
			}
			continue
		case k == "x-request-id":
			hasID = true
		}
		out = append(out, [2]string{k, kv[1]})
	}
	method, path, scheme := head.Method, head.Path, head.Scheme
	if method == "" {
		method = "GET"
	}
	if path == "" {
		path = "/"
	}
	if scheme == "" {
		scheme = "http"
	}
	out[0] = [2]string{":authority", authority}
	out[1] = [2]string{":path", path}
	out[2] = [2]string{":method", method}
	out[3] = [2]string{":scheme", scheme}
	if !hasID {
		out = append(out, [2]string{"x-request-id", newRequestID()})
	}
	return out
}

// newRequestID returns a random (version 4) UUID, as Envoy generates.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

// localReplyHeaders builds a local reply's headers as Envoy's
// Http::Utility::prepareLocalReply does: :status, the plugin's headers,
// then content-length and, for a body, content-type text/plain unless the
// plugin set one.
func localReplyHeaders(lr *LocalResponse) [][2]string {
	out := make([][2]string, 0, len(lr.Headers)+3)
	out = append(out, [2]string{":status", strconv.Itoa(lr.Status)})
	for _, kv := range lr.Headers {
		k := lower(kv[0])
		if k == "content-length" || strings.HasPrefix(k, ":") {
			continue
		}
		out = append(out, [2]string{k, kv[1]})
	}
	out = append(out, [2]string{"content-length", strconv.Itoa(len(lr.Body))})
	if len(lr.Body) > 0 {
		if _, ok := HeaderValue(out, "content-type"); !ok {
			out = append(out, [2]string{"content-type", "text/plain"})
		}
	}
	return out
}

// splitStatus separates :status from a response header map.
func splitStatus(h [][2]string, fallback int) (int, [][2]string) {
	status := fallback
	out := make([][2]string, 0, len(h))
	for _, kv := range h {
		if kv[0] == ":status" {
			if n, err := strconv.Atoi(kv[1]); err == nil {
				status = n
			}
			continue
		}
		out = append(out, kv)
	}
	return status, out
}

// Header map edits with Envoy's HeaderMap semantics.

func headerGet(h [][2]string, key string) (string, bool) {
	for _, kv := range h {
		if kv[0] == key {
			return kv[1], true
		}
	}
	return "", false
}

// headerReplace sets key to a single value: the first occurrence keeps its
// place, later ones go; a missing key is appended.
func headerReplace(h [][2]string, key, value string) [][2]string {
	found := false
	out := h[:0]
	for _, kv := range h {
		if kv[0] == key {
			if found {
				continue
			}
			found = true
			kv[1] = value
		}
		out = append(out, kv)
	}
	if !found {
		out = append(out, [2]string{key, value})
	}
	return out
}

func headerRemove(h [][2]string, key string) [][2]string {
	out := h[:0]
	for _, kv := range h {
		if kv[0] != key {
			out = append(out, kv)
		}
	}
	return out
}

// headerBytes is Envoy's HeaderMap::byteSize: the sum of name and value
// lengths.
func headerBytes(h [][2]string) int {
	n := 0
	for _, kv := range h {
		n += len(kv[0]) + len(kv[1])
	}
	return n
}

// serializePairs encodes pairs as the ABI does: a little-endian count, the
// (key size, value size) pairs, then each key and value NUL-terminated.
func serializePairs(pairs [][2]string) []byte {
	size := 4
	for _, kv := range pairs {
		size += 8 + len(kv[0]) + len(kv[1]) + 2
	}
	out := make([]byte, size)
	binary.LittleEndian.PutUint32(out, uint32(len(pairs)))
	p := 4
	for _, kv := range pairs {
		binary.LittleEndian.PutUint32(out[p:], uint32(len(kv[0])))
		binary.LittleEndian.PutUint32(out[p+4:], uint32(len(kv[1])))
		p += 8
	}
	for _, kv := range pairs {
		p += copy(out[p:], kv[0]) + 1
		p += copy(out[p:], kv[1]) + 1
	}
	return out
}

// parsePairs decodes serializePairs' format. Like Envoy's toPairs, a
// buffer too short for its count yields no pairs; unlike it, sizes running
// past the end do too (Envoy would read beyond the buffer).
func parsePairs(b []byte) ([][2]string, bool) {
	if len(b) < 4 {
		return nil, len(b) == 0
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n > (len(b)-4)/8 {
		return nil, false
	}
	out := make([][2]string, n)
	sizes := b[4:]
	data := 4 + 8*n
	for i := 0; i < n; i++ {
		ks := int(binary.LittleEndian.Uint32(sizes[8*i:]))
		vs := int(binary.LittleEndian.Uint32(sizes[8*i+4:]))
		if ks > len(b)-data || ks+1+vs > len(b)-data {
			return nil, false
		}
		out[i][0] = string(b[data : data+ks])
		data += ks + 1
		out[i][1] = string(b[data : data+vs])
		data += vs + 1
	}
	return out, true
}
