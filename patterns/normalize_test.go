package patterns

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNormalizeCorpus(t *testing.T) {
	cf := readCorpus(t, "normalize.txt")
	updates := map[int][]string{}
	for _, c := range cf.cases {
		if len(c.fields) != 2 {
			t.Fatalf("%s: want <input> <expected>, got %d fields", c.pos, len(c.fields))
		}
		in, want := c.fields[0], c.fields[1]
		got := NormalizePath(in)
		if *update {
			updates[c.index] = []string{in, got}
			continue
		}
		if got != want {
			t.Errorf("%s: NormalizePath(%q) = %q, want %q", c.pos, in, got, want)
		}
		checkNormalPath(t, c.pos, in, got)
	}
	if *update {
		cf.rewrite(t, updates)
	}
}

func TestDecodeCorpus(t *testing.T) {
	cf := readCorpus(t, "decode.txt")
	updates := map[int][]string{}
	for _, c := range cf.cases {
		if len(c.fields) < 2 {
			t.Fatalf("%s: want <kind> <input> ...", c.pos)
		}
		kind, in := c.fields[0], c.fields[1]
		var got []string
		switch kind {
		case "query":
			whole, values := DecodeQuery(in)
			got = append([]string{whole}, values...)
		case "value":
			got = []string{DecodeValue(in)}
		default:
			t.Fatalf("%s: unknown kind %q", c.pos, kind)
		}
		if *update {
			updates[c.index] = append([]string{kind, in}, got...)
			continue
		}
		if want := c.fields[2:]; strings.Join(got, "\x00|") != strings.Join(want, "\x00|") {
			t.Errorf("%s: %s %q decodes to %q, want %q", c.pos, kind, in, got, want)
		}
	}
	if *update {
		cf.rewrite(t, updates)
	}
}

// checkNormalPath fails unless out has the properties NormalizePath
// promises for the input in.
func checkNormalPath(t *testing.T, pos, in, out string) {
	t.Helper()
	switch {
	case out == "" || out[0] != '/':
		t.Errorf("%s: NormalizePath(%q) = %q does not start with /", pos, in, out)
	case out != "/" && strings.HasSuffix(out, "/"):
		t.Errorf("%s: NormalizePath(%q) = %q ends with /", pos, in, out)
	case strings.Contains(out, "//"):
		t.Errorf("%s: NormalizePath(%q) = %q has //", pos, in, out)
	case strings.ContainsAny(out, "\\;\x00"):
		t.Errorf("%s: NormalizePath(%q) = %q has \\, ; or NUL", pos, in, out)
	case len(out) > len(in)+1:
		t.Errorf("%s: NormalizePath(%q) = %q is longer than the input and a slash", pos, in, out)
	}
	for _, seg := range strings.Split(out, "/")[1:] {
		if seg == "." || seg == ".." {
			t.Errorf("%s: NormalizePath(%q) = %q has a dot segment", pos, in, out)
		}
	}
	if again := NormalizePath(out); again != out {
		t.Errorf("%s: not idempotent: NormalizePath(%q) = %q, NormalizePath(that) = %q", pos, in, out, again)
	}
	if slow := string(appendNormalPath(nil, in)); slow != out {
		t.Errorf("%s: fast path NormalizePath(%q) = %q, full path gives %q", pos, in, out, slow)
	}
	if naive := naiveNormalize(in); naive != out {
		t.Errorf("%s: NormalizePath(%q) = %q, the round-based oracle gives %q", pos, in, out, naive)
	}
}

// naiveDecode is the definition the one-pass decoder must agree with:
// decode escapes left to right in rounds, each round reading only the
// previous round's output, until a round changes nothing.
func naiveDecode(s string, mode decodeMode) string {
	first := true
	for {
		var b []byte
		for i := 0; i < len(s); i++ {
			c := s[i]
			switch {
			case c == '+' && mode&modePlus != 0 && first:
				b = append(b, ' ')
			case c == '%' && i+2 < len(s) && ishex(s[i+1]) && ishex(s[i+2]):
				b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
				i += 2
			case c == '%' && i+5 < len(s) && s[i+1]|0x20 == 'u' && ishex(s[i+2]) && ishex(s[i+3]) && ishex(s[i+4]) && ishex(s[i+5]):
				r := rune(unhex(s[i+2]))<<12 | rune(unhex(s[i+3]))<<8 | rune(unhex(s[i+4]))<<4 | rune(unhex(s[i+5]))
				if r >= 0xD800 && r <= 0xDFFF {
					b = append(b, c)
					continue
				}
				b = utf8.AppendRune(b, r)
				i += 5
			default:
				b = append(b, c)
			}
		}
		if mode&modePath != 0 {
			b = bytes.ReplaceAll(b, []byte{0}, nil)
			b = bytes.ReplaceAll(b, []byte{'\\'}, []byte{'/'})
		}
		first = false
		if string(b) == s {
			return s
		}
		s = string(b)
	}
}

// naiveNormalize is NormalizePath written the obvious way, on top of
// naiveDecode.
func naiveNormalize(p string) string {
	var out []string
	for _, seg := range strings.Split(naiveDecode(p, modePath), "/") {
		seg, _, _ = strings.Cut(seg, ";")
		switch seg {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, seg)
		}
	}
	return "/" + strings.Join(out, "/")
}

func TestDecodeAgreesWithRounds(t *testing.T) {
	inputs := []string{
		"", "%", "%%", "%2", "%25", "%2525", "%252525", "%%34%31", "%%%34%31%31",
		"%25%34%31", "%u", "%u00", "%u0041", "%U0041", "%u%30%30%34%31", "%uD83D%uDE00",
		"%u0025%u0034%u0031", "a+b%2B", "%2B+", "%5C%5c\\", "%00%", "%%0041", "%C3%A9",
		"%%u0032%u0035", "%2%35", "%u002", "%u00%34%31", "%e2%82",
	}
	for _, s := range inputs {
		for _, mode := range []decodeMode{0, modePlus, modePath} {
			got, _ := appendDecoded(nil, s, mode)
			if want := naiveDecode(s, mode); string(got) != want {
				t.Errorf("decode(%q, mode %d) = %q, rounds give %q", s, mode, got, want)
			}
		}
	}
}

func TestNoAllocWhenNormal(t *testing.T) {
	for _, p := range []string{"/", "/download/file.txt", "/a/b/c"} {
		if n := testing.AllocsPerRun(100, func() { NormalizePath(p) }); n != 0 {
			t.Errorf("NormalizePath(%q) allocates %v times, want 0", p, n)
		}
	}
	for _, v := range []string{"Mozilla/5.0", "100%", "%zz"} {
		if n := testing.AllocsPerRun(100, func() { DecodeValue(v) }); n != 0 {
			t.Errorf("DecodeValue(%q) allocates %v times, want 0", v, n)
		}
	}
}

func TestSplitPath(t *testing.T) {
	tests := []struct{ raw, path, query string }{
		{"/a", "/a", ""},
		{"/a?b=1", "/a", "b=1"},
		{"/a?b=1?c", "/a", "b=1?c"},
		{"/a?b#c", "/a", "b"},
		{"/a#b?c", "/a", ""},
		{"/a?", "/a", ""},
		{"", "", ""},
		{"?q", "", "q"},
	}
	for _, tt := range tests {
		path, query := SplitPath(tt.raw)
		if path != tt.path || query != tt.query {
			t.Errorf("SplitPath(%q) = %q, %q, want %q, %q", tt.raw, path, query, tt.path, tt.query)
		}
	}
}

func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{
		"/download/evil.exe", "/download/evil%252Eexe;x=1/", "/a/../b", "\\a\\..\\b",
		"/%u002e%u002e/x", "/%%32%45", "/a%00b", "//", "", "..;/", "/%2e%2E/%5c",
		// Regression: %XX at or above %80 is a byte, not a code point.
		"/%e2%82%ac", "/%C3%A9%u00e9",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		out := NormalizePath(p)
		checkNormalPath(t, "fuzz", p, out)
		if isNormalPath(p) && out != p {
			t.Errorf("isNormalPath(%q) but NormalizePath gives %q", p, out)
		}
	})
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{"%%34%31", "%u0025%u0034%u0031", "a+b%2B", "%2%35", "%00%", "%C3%A9", "%%%34%31%31"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, mode := range []decodeMode{0, modePlus, modePath} {
			got, changed := appendDecoded(nil, s, mode)
			if want := naiveDecode(s, mode); string(got) != want {
				t.Fatalf("decode(%q, mode %d) = %q, rounds give %q", s, mode, got, want)
			}
			if !needsDecode(s, mode) && string(got) != s {
				t.Fatalf("needsDecode(%q, mode %d) = false, but it decodes to %q", s, mode, got)
			}
			if changed != (string(got) != s) {
				t.Fatalf("decode(%q, mode %d) changed = %v, output %q", s, mode, changed, got)
			}
			if len(got) > len(s) {
				t.Fatalf("decode(%q, mode %d) = %q grew", s, mode, got)
			}
			if again, _ := appendDecoded(nil, got, mode&^modePlus); !bytes.Equal(again, got) {
				t.Fatalf("decode(%q, mode %d) = %q is not a fixed point: %q", s, mode, got, again)
			}
		}
	})
}
