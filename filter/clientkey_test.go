package filter

import (
	"strings"
	"testing"
)

func TestClientIP(t *testing.T) {
	long := strings.Repeat("x", 300)
	tests := []struct {
		name, source, xff string
		hops              int
		want              string
	}{
		{"downstream", "10.0.0.1:5555", "6.6.6.6", 0, "ip:10.0.0.1"},
		{"one trusted hop", "10.0.0.9:1", "203.0.113.7", 1, "ip:203.0.113.7"},
		{"one hop, spoofed left part", "10.0.0.9:1", "6.6.6.6, 203.0.113.7", 1, "ip:203.0.113.7"},
		{"one hop, Envoy appended the peer", "10.0.0.9:1", "203.0.113.7, 10.0.0.9", 1, "ip:203.0.113.7"},
		{"two hops", "10.0.0.9:1", "198.51.100.1, 203.0.113.7, 10.1.1.1", 2, "ip:203.0.113.7"},
		{"fewer entries than hops", "10.0.0.9:1", "203.0.113.7", 2, "ip:10.0.0.9"},
		{"no header", "10.0.0.9:1", "", 1, "ip:10.0.0.9"},
		{"empty entry", "10.0.0.9:1", "203.0.113.7, ", 1, "ip:10.0.0.9"},
		{"sixteen hops", "10.0.0.9:1", "1.1.1.1" + strings.Repeat(", 2.2.2.2", 15), 16, "ip:1.1.1.1"},
		{"IPv6 by /64", "[2001:db8:1:2:3:4:5:6]:443", "", 0, "ip6:2001:db8:1:2::/64"},
		{"IPv6 neighbour, same /64", "[2001:db8:1:2:ffff::1]:443", "", 0, "ip6:2001:db8:1:2::/64"},
		{"IPv4-mapped IPv6", "[::ffff:192.0.2.1]:80", "", 0, "ip:192.0.2.1"},
		{"bare IP", "192.0.2.1", "", 0, "ip:192.0.2.1"},
		{"IPv6 zone dropped", "[fe80::1%eth0]:80", "", 0, "ip6:fe80::/64"},
		{"unparsable", "unix:/tmp/s", "", 0, "raw:unix:/tmp/s"},
		{"unparsable, cut", long, "", 0, "raw:" + long[:maxKeyLen]},
	}
	for _, tt := range tests {
		if got := clientIP(tt.source, tt.xff, tt.hops); got != tt.want {
			t.Errorf("%s: clientIP(%q, %q, %d) = %q, want %q", tt.name, tt.source, tt.xff, tt.hops, got, tt.want)
		}
	}
}

func TestLogValue(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"/a", 10, `"/a"`},
		{"a\nb\r\"c\"", 10, `"a\nb\r\"c\""`},
		{"\xff\x00é", 10, `"\xff\x00\u00e9"`},
		{"0123456789", 10, `"0123456789"`},
		{"0123456789X", 10, `"0123456789..."`},
	}
	for _, tt := range tests {
		if got := string(logValue(nil, tt.in, tt.max)); got != tt.want {
			t.Errorf("logValue(%q, %d) = %s, want %s", tt.in, tt.max, got, tt.want)
		}
	}
}

func TestAppendJSONString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", `"plain"`},
		{`q"b\`, `"q\"b\\"`},
		{"<script>&", `"\u003cscript\u003e\u0026"`},
		{"\n\x00\x7f", `"\u000a\u0000\u007f"`},
		{"é\xff", `"é\ufffd"`},
	}
	for _, tt := range tests {
		if got := string(appendJSONString(nil, tt.in)); got != tt.want {
			t.Errorf("appendJSONString(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
