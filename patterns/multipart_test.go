package patterns

import (
	"bytes"
	"io"
	"math/rand"
	"mime"
	"mime/multipart"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
)

func TestMediaParam(t *testing.T) {
	tests := []struct {
		v, name, want string
		ok            bool
	}{
		{`form-data; name="a"; filename="b.exe"`, "filename", "b.exe", true},
		{`form-data; name="a"; filename="b.exe"`, "NAME", "a", true},
		{`form-data; name=a ; filename = b.exe`, "filename", "b.exe", true},
		{`form-data; name="a \"q\" b"`, "name", `a "q" b`, true},
		{`form-data; name="open`, "name", "open", true},
		{`form-data; filename*=UTF-8''%3Cscript%3E.exe`, "filename", "<script>.exe", true},
		{`form-data; filename*=UTF-8''x.txt; filename="y.exe"`, "filename", "y.exe", true},
		{`form-data; name="a"; name="b"`, "name", "a", true},
		{`form-data;; ;x; name="a"`, "name", "a", true},
		{`form-data`, "name", "", false},
		{`form-data; filename="x"`, "name", "", false},
		{``, "name", "", false},
	}
	for _, tt := range tests {
		got, ok := mediaParam(tt.v, tt.name)
		if got != tt.want || ok != tt.ok {
			t.Errorf("mediaParam(%q, %q) = %q, %v; want %q, %v", tt.v, tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestPartHeader(t *testing.T) {
	h := []byte("Content-Type: text/plain\r\ncontent-disposition: form-data;\r\n name=\"a\"\r\nX: y\r\n")
	if got := partHeader(h, "Content-Disposition"); got != `form-data; name="a"` {
		t.Errorf("folded header = %q", got)
	}
	if got := partHeader(h, "Missing"); got != "" {
		t.Errorf("missing header = %q", got)
	}
}

func TestQuotedPrintablePart(t *testing.T) {
	body := "--B\r\nContent-Disposition: form-data; name=\"c\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=3Cscript=3E=\r\nalert(1)=3C/script=3E\r\n--B--\r\n"
	s := compileSeed(t)
	if m, ok := s.CheckBody("multipart/form-data; boundary=B", []byte(body)); !ok || m.RuleID != "block_patterns[1]" {
		t.Errorf("quoted-printable <script> part: %+v, %v; want block_patterns[1]", m, ok)
	}
	if got := string(appendQuotedPrintable(nil, []byte("a=3D=\nb=ZZ="))); got != "a=b=ZZ=" {
		t.Errorf("appendQuotedPrintable = %q", got)
	}
}

func compileSeed(t *testing.T) *Set {
	t.Helper()
	var rules []*Compiled
	for i, p := range []string{`.*\.(exe|dll|scr|bat)$`, `.*<script.*>.*</script>.*`} {
		c, err := CompileRule(Rule{ID: "block_patterns[" + strconv.Itoa(i) + "]", Pattern: p, Targets: AllTargets})
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, c)
	}
	s, err := NewSet(rules)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The standard library's multipart reader is the oracle: on bodies it
// writes, eachPart finds the same parts with the same headers and content.
func TestEachPartAgainstMimeMultipart(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	alphabet := "ab\r\n-=\"<>%;: "
	randText := func(n int) string {
		b := make([]byte, rng.Intn(n))
		for i := range b {
			b[i] = alphabet[rng.Intn(len(alphabet))]
		}
		return string(b)
	}
	for iter := 0; iter < 500; iter++ {
		var buf bytes.Buffer
		w := multipart.NewWriter(&buf)
		type part struct{ name, filename, content string }
		var want []part
		for n := rng.Intn(5); n > 0; n-- {
			p := part{name: "f" + strconv.Itoa(rng.Intn(100)), content: randText(40)}
			h := textproto.MIMEHeader{}
			cd := `form-data; name="` + p.name + `"`
			if rng.Intn(2) == 0 {
				p.filename = "x" + strconv.Itoa(rng.Intn(9)) + ".exe"
				cd += `; filename="` + p.filename + `"`
			}
			h.Set("Content-Disposition", cd)
			pw, err := w.CreatePart(h)
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(pw, p.content)
			want = append(want, p)
		}
		w.Close()
		body := buf.Bytes()

		// The oracle agrees with what we wrote...
		mr := multipart.NewReader(bytes.NewReader(body), w.Boundary())
		for i := 0; ; i++ {
			p, err := mr.NextPart()
			if err == io.EOF {
				if i != len(want) {
					t.Fatalf("oracle found %d parts, wrote %d", i, len(want))
				}
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			c, _ := io.ReadAll(p)
			if string(c) != want[i].content {
				t.Fatalf("oracle part %d = %q, wrote %q", i, c, want[i].content)
			}
		}
		// ...and so does eachPart.
		var got []part
		eachPart(body, boundaryParam(w.FormDataContentType()), func(h, c []byte) bool {
			cd := partHeader(h, "Content-Disposition")
			_, params, err := mime.ParseMediaType(cd)
			if err != nil {
				t.Fatalf("part header %q: %v", cd, err)
			}
			name, _ := mediaParam(cd, "name")
			filename, _ := mediaParam(cd, "filename")
			if name != params["name"] || filename != params["filename"] {
				t.Fatalf("mediaParam(%q) = %q, %q; mime says %q, %q", cd, name, filename, params["name"], params["filename"])
			}
			got = append(got, part{name, filename, string(c)})
			return false
		})
		if len(got) != len(want) {
			t.Fatalf("body %q: eachPart found %d parts, want %d", body, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("body %q: part %d = %+v, want %+v", body, i, got[i], want[i])
			}
		}
	}
}

func TestEachPartEdges(t *testing.T) {
	tests := []struct {
		name, body string
		want       []string
	}{
		{"preamble", "junk\r\n--B\r\n\r\nv\r\n--B--", []string{"v"}},
		{"padding after delimiter", "--B  \r\n\r\nv\r\n--B--", []string{"v"}},
		{"bare LF", "--B\nX: y\n\nv\n--B--", []string{"v"}},
		{"cut in delimiter", "--B\r\n\r\nv\r\n--", []string{"v\r\n--"}},
		{"cut in headers", "--B\r\nContent-Disposition: form", []string{""}},
		{"no delimiter", "just text", nil},
		{"delimiter not at line start", "x--B\r\n\r\nv", nil},
		{"empty parts", "--B\r\n\r\n\r\n--B\r\n\r\n\r\n--B--", []string{"", ""}},
	}
	for _, tt := range tests {
		var got []string
		eachPart([]byte(tt.body), "B", func(_, c []byte) bool {
			got = append(got, string(c))
			return false
		})
		if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
			t.Errorf("%s: parts %q, want %q", tt.name, got, tt.want)
		}
	}
}
