package patterns

import (
	"regexp"
	"regexp/syntax"
	"strings"
	"testing"
)

func TestPrefilterLiterals(t *testing.T) {
	tests := []struct {
		pattern string
		want    string // prefilter.String(); "" for none
	}{
		{`.*\.(exe|dll|scr|bat)$`, "(?i)e[x]e|(?i)d[l]l|(?i)[c]r|(?i)[b]at"},
		{`.*<script.*>.*</script>.*`, "(?i)cript[>]"},
		{`(?-i)abc`, "a[b]c"},
		{`abc`, "(?i)a[b]c"},
		{`(?i)k`, ""},                // k folds to U+212A KELVIN SIGN
		{`(?i)sss`, ""},              // s folds to U+017F LATIN SMALL LETTER LONG S
		{`(?-i)ſ`, "[\xc5]\xbf"},     // exact, any rune
		{`(?-i)a\x{FFFD}bc`, "[b]c"}, // U+FFFD also matches an invalid byte
		{`(?i)é`, ""},
		{`a|b`, ""}, // the parser makes it a class, [a-b]
		{`ab|cd`, "(?i)a[b]|(?i)[c]d"},
		{`a|b*`, ""},
		{`(abc)+`, "(?i)a[b]c"},
		{`(abc)*`, ""},
		{`(abc)?`, ""},
		{`(abc){2,5}`, "(?i)a[b]c"},
		{`(abc){0,5}`, ""},
		{`[ab]x`, "(?i)[x]"},
		{`^$`, ""},
		{`.`, ""},
		{`a{1000}`, "(?i)[a]"},
		{`x(a|bb|ccc)y`, "(?i)[x]"}, // equal length: fewer literals win
		{`(?:` + strings.Repeat(`a|`, 16) + `b)`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			tree, err := syntax.Parse("(?is)"+tt.pattern, syntax.Perl)
			if err != nil {
				t.Fatal(err)
			}
			if got := newPrefilter(tree).String(); got != tt.want {
				t.Errorf("prefilter(%q) = %q, want %q", tt.pattern, got, tt.want)
			}
		})
	}
}

// TestPrefilterNeverRejectsAMatch runs values the plain regexp matches,
// many of them case-folding tricks, through each rule's prefilter.
func TestPrefilterNeverRejectsAMatch(t *testing.T) {
	tests := []struct {
		pattern string
		values  []string
	}{
		{`.*<script.*>.*</script>.*`, []string{"<script>x</script>", "<SCRIPT>x</SCRIPT>", "<ſcript>x</ſcript>", "<ſCRIPT>\n</ScRiPt>"}},
		{`.*\.(exe|dll|scr|bat)$`, []string{"a.EXE", "a.ſcr", "a.Bat", "a.dLL"}},
		{`kelvin`, []string{"\u212aelvin", "KELVIN"}},
		{`(?-i)a\x{FFFD}bc`, []string{"a\xffbc", "a\ufffdbc"}},
		{`x(a|bb|ccc)y`, []string{"xay", "XCCCY"}},
		{`µ`, []string{"Μ", "μ"}},
	}
	for _, tt := range tests {
		c, err := CompileRule(Rule{Pattern: tt.pattern, Targets: AllTargets})
		if err != nil {
			t.Fatal(err)
		}
		plain := regexp.MustCompile("(?is)" + tt.pattern)
		for _, v := range tt.values {
			if !plain.MatchString(v) {
				t.Fatalf("test value %q does not match %q", v, tt.pattern)
			}
			if !c.filter.allowsString(v) || !c.filter.allowsBytes([]byte(v)) {
				t.Errorf("prefilter %v of %q rejects %q, which matches", c.filter, tt.pattern, v)
			}
		}
	}
}

func TestPrefilterRejects(t *testing.T) {
	c, err := CompileRule(Rule{Pattern: `.*\.(exe|dll|scr|bat)$`, Targets: AllTargets})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"example.com", "Mozilla/5.0 (X11; Linux x86_64)", "e", "ex", "xe", ""} {
		if c.filter.allowsString(v) {
			t.Errorf("prefilter %v allows %q", c.filter, v)
		}
	}
	for _, v := range []string{"exe", "EXE", "a.Dll", "cr", "BAT!"} {
		if !c.filter.allowsString(v) {
			t.Errorf("prefilter %v rejects %q", c.filter, v)
		}
	}
}
