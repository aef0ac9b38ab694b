package patterns

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// update rewrites the expected column of golden corpora from what the code
// does now: go test ./patterns/ -run Corpus -update. Review the diff.
var update = flag.Bool("update", false, "rewrite golden corpora in testdata/patterns with the current results")

// corpusDir holds the line-oriented corpora; see testdata/patterns/README.
const corpusDir = "../testdata/patterns"

// corpusLine is one non-blank, non-comment line of a corpus file.
type corpusLine struct {
	pos    string   // file:line, for failure messages
	index  int      // index into the file's lines
	fields []string // fields, with quoted ones unquoted
}

// corpusFile is a corpus file read whole, so that -update can rewrite it.
type corpusFile struct {
	path  string
	lines []string
	cases []corpusLine
}

// readCorpus reads a corpus file. A line is blank, a comment starting with
// '#', or fields separated by spaces; a field that starts with '"' is a Go
// quoted string, any other runs to the next space.
func readCorpus(t testing.TB, name string) *corpusFile {
	t.Helper()
	path := filepath.Join(corpusDir, name)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cf := &corpusFile{path: path}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		cf.lines = append(cf.lines, line)
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		pos := fmt.Sprintf("%s:%d", path, len(cf.lines))
		fields, err := splitFields(trimmed)
		if err != nil {
			t.Fatalf("%s: %v", pos, err)
		}
		cf.cases = append(cf.cases, corpusLine{pos: pos, index: len(cf.lines) - 1, fields: fields})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(cf.cases) == 0 {
		t.Fatalf("%s: no cases", path)
	}
	return cf
}

// matchCorpora returns the names of the corpus files matching glob.
func matchCorpora(t testing.TB, glob string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(corpusDir, glob))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no corpus %s in %s (%v)", glob, corpusDir, err)
	}
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = filepath.Base(p)
	}
	return names
}

func splitFields(s string) ([]string, error) {
	var fields []string
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return fields, nil
		}
		if s[0] == '"' {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return nil, fmt.Errorf("bad quoted field %.20q…: %v", s, err)
			}
			v, _ := strconv.Unquote(q)
			fields = append(fields, v)
			s = s[len(q):]
			if s != "" && s[0] != ' ' && s[0] != '\t' {
				return nil, fmt.Errorf("no space after quoted field %s", q)
			}
			continue
		}
		end := strings.IndexAny(s, " \t")
		if end < 0 {
			end = len(s)
		}
		fields = append(fields, s[:end])
		s = s[end:]
	}
}

// formatField writes s so that splitFields reads it back.
func formatField(s string) string {
	if s == "" || s[0] == '"' || s[0] == '#' || !isPlainASCII(s) {
		return strconv.Quote(s)
	}
	return s
}

func isPlainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// rewrite replaces the case lines of cf with the given fields and writes
// the file; comments and blank lines stay.
func (cf *corpusFile) rewrite(t testing.TB, fields map[int][]string) {
	t.Helper()
	for i, fs := range fields {
		out := make([]string, len(fs))
		for j, f := range fs {
			out[j] = formatField(f)
		}
		cf.lines[i] = strings.Join(out, " ")
	}
	if err := os.WriteFile(cf.path, []byte(strings.Join(cf.lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("rewrote %s", cf.path)
}

func TestSplitFields(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  bool
	}{
		{in: `a b  c`, want: []string{"a", "b", "c"}},
		{in: `block "a b" c`, want: []string{"block", "a b", "c"}},
		{in: `"\n\x00" "" x`, want: []string{"\n\x00", "", "x"}},
		{in: `"unterminated`, err: true},
		{in: `"a"b`, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := splitFields(tt.in)
			if (err != nil) != tt.err {
				t.Fatalf("splitFields(%q) error = %v, want error %v", tt.in, err, tt.err)
			}
			if !tt.err && strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("splitFields(%q) = %q, want %q", tt.in, got, tt.want)
			}
			for _, f := range got {
				back, err := splitFields(formatField(f))
				if err != nil || len(back) != 1 || back[0] != f {
					t.Errorf("formatField(%q) = %s does not read back", f, formatField(f))
				}
			}
		})
	}
}
