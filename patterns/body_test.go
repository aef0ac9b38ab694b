package patterns

import (
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

func TestBodyValues(t *testing.T) {
	const mpHead = "--B\r\nContent-Disposition: form-data; "
	tests := []struct {
		name, ct, body string
		want           []string
	}{
		{"empty", "text/plain", "", nil},
		{"raw only", "text/plain", "a=%41", []string{"a=%41"}},
		{"no content type", "", "a=%41", []string{"a=%41"}},
		{"octet stream", "application/octet-stream", "q=%3C", []string{"q=%3C"}},
		{"form", "application/x-www-form-urlencoded", "a=%41&b=c+d",
			[]string{"a=%41&b=c+d", "a=A&b=c d", "a", "A", "b", "c d"}},
		{"form with params and case", "Application/X-Www-Form-Urlencoded ; charset=utf-8", "a=1",
			[]string{"a=1", "a=1", "a", "1"}},
		{"json", "application/json", `{"k":"v","n":1,"a":["x",{"y":"%41"}],"t":true,"z":null}`,
			[]string{`{"k":"v","n":1,"a":["x",{"y":"%41"}],"t":true,"z":null}`, "k", "v", "n", "a", "x", "y", "%41", "A", "t", "z"}},
		{"json escapes", "application/json", `{"\u003c":"\ud83d\ude00\n\/"}`,
			[]string{`{"\u003c":"\ud83d\ude00\n\/"}`, "{\"<\":\"😀\n/\"}", "<", "😀\n/"}},
		{"json lone surrogate", "application/json", `["\ud800x"]`,
			[]string{`["\ud800x"]`, "[\"\uFFFDx\"]", "\uFFFDx"}},
		{"json top-level string", "application/json", `"\u003cb\u003e"`,
			[]string{`"\u003cb\u003e"`, `"<b>"`, "<b>"}},
		{"json suffix type", "application/problem+json", `{"a":"b"}`, []string{`{"a":"b"}`, "a", "b"}},
		{"text/json", "text/json", `["b"]`, []string{`["b"]`, "b"}},
		{"json sniffed", "text/plain", ` {"a":"b"}`, []string{` {"a":"b"}`, "a", "b"}},
		{"json sniffed without type", "", `["b"]`, []string{`["b"]`, "b"}},
		{"json invalid", "application/json", `{"a":"\u003c" "b"`,
			[]string{`{"a":"\u003c" "b"`, `{"a":"<" "b"`, "a", "<", "b"}},
		{"json truncated in a string", "application/json", `{"a":"x","b":"\u003cscr`,
			[]string{`{"a":"x","b":"\u003cscr`, `{"a":"x","b":"<scr`, "a", "x", "b", "<scr"}},
		{"json truncated in an escape", "application/json", `["a\u00`,
			[]string{`["a\u00`, `["a\u00`, `a\u00`}},
		{"json invalid escape kept", "application/json", `["\x41"`,
			[]string{`["\x41"`, `["\x41"`, `\x41`}},
		{"json deeply nested", "application/json", strings.Repeat("[", 10000) + `"\u0041"` + strings.Repeat("]", 10000),
			[]string{strings.Repeat("[", 10000) + `"\u0041"` + strings.Repeat("]", 10000),
				strings.Repeat("[", 10000) + `"A"` + strings.Repeat("]", 10000), "A"}},
		{"multipart", "multipart/form-data; boundary=B",
			mpHead + "name=\"a%41\"\r\n\r\nv%41\r\n" + mpHead + "name=\"f\"; filename=\"x%2Eexe\"\r\n\r\nc%41\r\n--B--\r\n",
			[]string{mpHead + "name=\"a%41\"\r\n\r\nv%41\r\n" + mpHead + "name=\"f\"; filename=\"x%2Eexe\"\r\n\r\nc%41\r\n--B--\r\n",
				"a%41", "aA", "v%41", "vA", "f", "x%2Eexe", "x.exe", "c%41"}},
		{"multipart filename keeps its directory", "multipart/form-data; boundary=B",
			mpHead + "name=\"f\"; filename=\"../../evil.exe\"\r\n\r\n\r\n--B--",
			[]string{mpHead + "name=\"f\"; filename=\"../../evil.exe\"\r\n\r\n\r\n--B--", "f", "../../evil.exe"}},
		{"multipart bad disposition", "multipart/form-data; boundary=B",
			"--B\r\nContent-Disposition: ;;\r\n\r\nv\r\n--B--",
			[]string{"--B\r\nContent-Disposition: ;;\r\n\r\nv\r\n--B--", ";;", "v"}},
		{"multipart truncated", "multipart/form-data; boundary=B",
			mpHead + "name=\"a\"\r\n\r\nfirst\r\n" + mpHead + "name=\"b\"\r\n\r\nsecond is cut",
			[]string{mpHead + "name=\"a\"\r\n\r\nfirst\r\n" + mpHead + "name=\"b\"\r\n\r\nsecond is cut", "a", "first", "b", "second is cut"}},
		{"multipart boundary guessed", "multipart/form-data", "\r\n--G\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n--G--",
			[]string{"\r\n--G\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n--G--", "a", "v"}},
		{"multipart duplicate boundary param", "multipart/form-data; boundary=B; boundary=C",
			mpHead + "name=\"a\"\r\n\r\nv\r\n--B--",
			[]string{mpHead + "name=\"a\"\r\n\r\nv\r\n--B--", "a", "v"}},
		{"multipart garbage", "multipart/form-data; boundary=B", "not multipart at all",
			[]string{"not multipart at all"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := BodyValues(tt.ct, []byte(tt.body))
			if strings.Join(got, "\x00|") != strings.Join(tt.want, "\x00|") {
				t.Errorf("BodyValues(%q, %q)\n got %q\nwant %q", tt.ct, tt.body, got, tt.want)
			}
		})
	}
}

func TestBoundaryParam(t *testing.T) {
	tests := []struct{ ct, want string }{
		{"multipart/form-data; boundary=abc", "abc"},
		{`multipart/form-data; boundary="a b"`, "a b"},
		{"multipart/form-data; BOUNDARY=abc", "abc"},
		{"multipart/form-data; boundary=abc; boundary=def", "abc"},
		{`multipart/form-data; boundary="abc`, "abc"},
		{"multipart/form-data; x=1 ; boundary= abc ;y", "abc"},
		{"multipart/form-data", ""},
	}
	for _, tt := range tests {
		if got := boundaryParam(tt.ct); got != tt.want {
			t.Errorf("boundaryParam(%q) = %q, want %q", tt.ct, got, tt.want)
		}
	}
}

func TestSniffBoundary(t *testing.T) {
	edge := strings.Repeat("b", MaxBoundaryLen)
	tests := []struct{ body, want string }{
		{"--" + edge + "\r\nx", edge},
		{"--" + edge + "b\r\nx", ""},
		{"\r\n\r\n--abc \r\n", "abc"},
		{"--abc", "abc"},
		{"--\r\n", ""},
		{"-abc\r\n", ""},
		{"preamble\r\n--abc\r\n", ""},
	}
	for _, tt := range tests {
		if got := sniffBoundary([]byte(tt.body)); got != tt.want {
			t.Errorf("sniffBoundary(%.30q) = %.30q, want %.30q", tt.body, got, tt.want)
		}
	}
}

// maxOracleDepth bounds the recursion of the gjson walk used as an oracle.
const maxOracleDepth = 100

// jsonWalkValues returns the strings a recursive gjson walk finds in a
// valid document, each followed by its percent-decoded form when that
// differs: what the flat scan must find. ok is false for a document nested
// deeper than maxOracleDepth.
func jsonWalkValues(doc string) (values []string, ok bool) {
	add := func(s string) {
		if s != "" {
			values = append(values, s)
			if d := DecodeValue(s); d != s {
				values = append(values, d)
			}
		}
	}
	var walk func(r gjson.Result, depth int) bool
	walk = func(r gjson.Result, depth int) bool {
		if depth > maxOracleDepth {
			return false
		}
		ok := true
		r.ForEach(func(k, v gjson.Result) bool {
			if k.Type == gjson.String {
				add(k.Str)
			}
			switch v.Type {
			case gjson.String:
				add(v.Str)
			case gjson.JSON:
				ok = walk(v, depth+1)
			}
			return ok
		})
		return ok
	}
	ok = walk(gjson.Parse(doc), 1)
	return values, ok
}

func jsonScanValues(doc string) []string {
	var all []string
	m := matcher{collect: &all}
	scanJSONStrings(&m, doc)
	return all
}

// checkJSONAgree fails unless, on a valid document, the flat scan finds the
// same strings as the gjson walk.
func checkJSONAgree(t *testing.T, doc string) {
	t.Helper()
	if !gjson.Valid(doc) {
		return
	}
	walk, ok := jsonWalkValues(doc)
	if !ok {
		return
	}
	if scan := jsonScanValues(doc); strings.Join(walk, "\x00|") != strings.Join(scan, "\x00|") {
		t.Errorf("JSON %q: gjson walk finds %q, flat scan %q", doc, walk, scan)
	}
}

func TestJSONScanAgreesWithWalk(t *testing.T) {
	docs := []string{
		`{"a":"b"}`, `["\u003c","\"",{"\\":"\/"}]`, `"\ud83d\ude00"`, `"\ud800\u0041"`, `"\udc00"`,
		`{"a":{"b":{"c":["d",1,true,null,{"e":"\t"}]}}}`, `[]`, `{}`, `1`, `{"":""}`,
		`{"a" : "x" , "b" : [ "y" ] }`, `"\ud83d\u0041"`, `{"%41":"%2541"}`, `["\u0025\u0034\u0031"]`,
		string(jsonBody(4096)),
	}
	for _, doc := range docs {
		if !gjson.Valid(doc) {
			t.Fatalf("test document %q is not valid JSON", doc)
		}
		if _, ok := jsonWalkValues(doc); !ok {
			t.Fatalf("test document %q is too deep", doc)
		}
		checkJSONAgree(t, doc)
	}
}

// FuzzCheckBody checks that CheckBody never panics on any content type and
// body, that it agrees with plain regexp over BodyValues, that the raw body
// is always the first value, and that the flat JSON scan agrees with the
// gjson walk on valid documents.
func FuzzCheckBody(f *testing.F) {
	f.Add("application/json", []byte(`{"a":"\u003cscript\u003ex\u003c/script\u003e"}`))
	f.Add("application/json", []byte(`{"a":["\ud83d\ude00",{"b":"%3C"}]`))
	f.Add("application/x-www-form-urlencoded", []byte("q=%3Cscript%3E&x=a.exe"))
	f.Add("multipart/form-data; boundary=B", []byte("--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.exe\"\r\n\r\nx\r\n--B--\r\n"))
	f.Add("multipart/mixed", []byte("--X\r\n\r\n--X--"))
	f.Add("multipart/form-data; boundary=\"", []byte("--\r\n"))
	f.Add("text/plain", []byte("[\"\\u00"))
	f.Add("", []byte{0xff, '{', '"'})
	set := seedSet(f)
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		m, ok := set.CheckBody(ct, body)
		values := BodyValues(ct, body)
		if len(body) > 0 && (len(values) == 0 || values[0] != string(body)) {
			t.Fatalf("BodyValues(%q, %q) does not start with the raw body: %q", ct, body, values)
		}
		wantID := ""
	rules:
		for _, c := range set.rules {
			for _, v := range values {
				if c.re.MatchString(v) {
					wantID = c.ID()
					break rules
				}
			}
		}
		if ok != (wantID != "") || ok && m.RuleID != wantID {
			t.Fatalf("CheckBody(%q, %q) = %+v, %v; matching BodyValues gives %q", ct, body, m, ok, wantID)
		}
		checkJSONAgree(t, string(body))
	})
}
