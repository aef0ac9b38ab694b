package patterns

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"testing"
)

// progInsts counts the instructions of expr's program independently of
// CompileRule, the way package regexp builds it.
func progInsts(t testing.TB, expr string) int {
	t.Helper()
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		t.Fatal(err)
	}
	return len(prog.Inst)
}

// patternWithInsts returns a pattern whose program, with the (?is) flags,
// has exactly n instructions (n >= 3): a literal "a" repeated n-2 times,
// written as a{1000} groups, plus the program's fail and match.
func patternWithInsts(t testing.TB, n int) string {
	t.Helper()
	k := n - 2
	p := strings.Repeat("a{1000}", k/1000)
	if k%1000 > 0 {
		p += fmt.Sprintf("a{%d}", k%1000)
	}
	if got := progInsts(t, "(?is)"+p); got != n {
		t.Fatalf("pattern for %d instructions has %d", n, got)
	}
	return p
}

func TestCompileRuleErrors(t *testing.T) {
	tooBig := patternWithInsts(t, MaxProgInsts+1)
	tests := []struct {
		name string
		rule Rule
		want string
	}{
		{"empty", Rule{Pattern: ""}, "empty pattern"},
		{"too long", Rule{Pattern: strings.Repeat("a", MaxPatternLen+1)}, "pattern is 4097 bytes, the limit is 4096"},
		{"far too long", Rule{Pattern: strings.Repeat("a", 5000)}, "pattern is 5000 bytes, the limit is 4096"},
		{"open paren", Rule{Pattern: "("}, `invalid regex "(": missing closing )`},
		{"close paren", Rule{Pattern: "a)"}, `invalid regex "a)": unexpected )`},
		{"open bracket", Rule{Pattern: "[a"}, `invalid regex "[a": missing closing ]`},
		{"bare star", Rule{Pattern: "*"}, `invalid regex "*": missing argument to repetition operator`},
		{"nested repeat", Rule{Pattern: "a**"}, `invalid regex "a**": invalid nested repetition operator`},
		{"trailing backslash", Rule{Pattern: `a\`}, `invalid regex "a\\": trailing backslash at end of expression`},
		{"bad escape", Rule{Pattern: `\8`}, `invalid regex "\\8": invalid escape sequence`},
		{"backreference", Rule{Pattern: `(a)\1`}, `invalid regex "(a)\\1": invalid escape sequence`},
		{"lookahead", Rule{Pattern: `(?=a)`}, `invalid regex "(?=a)": invalid or unsupported Perl syntax`},
		{"bad range", Rule{Pattern: `[z-a]`}, `invalid regex "[z-a]": invalid character class range`},
		{"invalid UTF-8", Rule{Pattern: "a\xff"}, `invalid regex "a\xff": invalid UTF-8`},
		{"repeat over 1000", Rule{Pattern: "a{1001}"}, `invalid regex "a{1001}": invalid repeat count`},
		{"nested repeats", Rule{Pattern: "(a{1000}){1000}"}, `invalid regex "(a{1000}){1000}": invalid repeat count`},
		{"too deep", Rule{Pattern: strings.Repeat("(", 1001) + strings.Repeat(")", 1001)}, `invalid regex "` + strings.Repeat("(", 1001) + strings.Repeat(")", 1001) + `": expression nests too deeply`},
		{"program too big", Rule{Pattern: tooBig}, fmt.Sprintf("compiled program has %d instructions, the limit is %d", MaxProgInsts+1, MaxProgInsts)},
		{"program far too big", Rule{Pattern: strings.Repeat(`\pL{1000}`, 100)}, "compiled program has 100002 instructions, the limit is 20000"},
		{"no targets", Rule{Pattern: "a"}, "no targets"},
		{"unknown targets", Rule{Pattern: "a", Targets: TargetPath | 0x30}, "unknown targets 0x30"},
		{"pattern before targets", Rule{Pattern: "("}, `invalid regex "(": missing closing )`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.rule.Targets == 0 && tt.name != "no targets" && tt.name != "pattern before targets" {
				tt.rule.Targets = AllTargets
			}
			c, err := CompileRule(tt.rule)
			if err == nil {
				t.Fatalf("CompileRule(%.40q) = %v, want error %q", tt.rule.Pattern, c, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("CompileRule(%.40q) error = %.200q, want %.200q", tt.rule.Pattern, err, tt.want)
			}
		})
	}
}

// TestCompileRuleLimitEdges compiles rules exactly at each limit.
func TestCompileRuleLimitEdges(t *testing.T) {
	tests := []struct {
		name    string
		pattern string
	}{
		{"MaxPatternLen bytes", strings.Repeat("a", MaxPatternLen)},
		{"MaxProgInsts instructions", patternWithInsts(t, MaxProgInsts)},
		{"repeat of 1000", "a{1000}"},
		{"nesting of 999", strings.Repeat("(", 999) + "a" + strings.Repeat(")", 999)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := CompileRule(Rule{ID: "r", Pattern: tt.pattern, Targets: AllTargets})
			if err != nil {
				t.Fatalf("CompileRule: %v", err)
			}
			if want := progInsts(t, "(?is)"+tt.pattern); c.Insts() != want {
				t.Errorf("Insts() = %d, want %d", c.Insts(), want)
			}
		})
	}
}

func TestNewSetLimits(t *testing.T) {
	small, err := CompileRule(Rule{ID: "s", Pattern: "a", Targets: AllTargets})
	if err != nil {
		t.Fatal(err)
	}
	big, err := CompileRule(Rule{ID: "b", Pattern: patternWithInsts(t, MaxProgInsts), Targets: AllTargets})
	if err != nil {
		t.Fatal(err)
	}
	repeat := func(c *Compiled, n int) []*Compiled {
		cs := make([]*Compiled, n)
		for i := range cs {
			cs[i] = c
		}
		return cs
	}
	fillTo := func(total int) []*Compiled {
		cs := repeat(big, total/MaxProgInsts)
		if rest := total % MaxProgInsts; rest > 0 {
			c, err := CompileRule(Rule{ID: "rest", Pattern: patternWithInsts(t, rest), Targets: AllTargets})
			if err != nil {
				t.Fatal(err)
			}
			cs = append(cs, c)
		}
		return cs
	}
	tests := []struct {
		name  string
		rules []*Compiled
		want  string // "" for success
	}{
		{"none", nil, ""},
		{"MaxPatterns rules", repeat(small, MaxPatterns), ""},
		{"MaxPatterns+1 rules", repeat(small, MaxPatterns+1), "257 patterns, the limit is 256"},
		{"MaxSetInsts instructions", fillTo(MaxSetInsts), ""},
		{"MaxSetInsts+1 instructions", fillTo(MaxSetInsts + 3), fmt.Sprintf("compiled programs total %d instructions, the limit is %d", MaxSetInsts+3, MaxSetInsts)},
		{"nil rule", []*Compiled{small, nil}, "rule 1 is nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSet(tt.rules)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("NewSet: %v", err)
			case tt.want == "" && s.Len() != len(tt.rules):
				t.Fatalf("Len() = %d, want %d", s.Len(), len(tt.rules))
			case tt.want != "" && err == nil:
				t.Fatalf("NewSet succeeded, want error %q", tt.want)
			case tt.want != "" && err.Error() != tt.want:
				t.Fatalf("NewSet error = %q, want %q", err, tt.want)
			}
		})
	}
}

func TestExprAndRule(t *testing.T) {
	r := Rule{ID: "x", Pattern: "a.b", Targets: TargetPath}
	if got := Expr(r); got != "(?is)a.b" {
		t.Errorf("Expr = %q", got)
	}
	r.CaseSensitive = true
	if got := Expr(r); got != "(?s)a.b" {
		t.Errorf("Expr case sensitive = %q", got)
	}
	c, err := CompileRule(r)
	if err != nil {
		t.Fatal(err)
	}
	if c.Rule() != r || c.ID() != "x" || c.Targets() != TargetPath {
		t.Errorf("Compiled reports %+v, %q, %v; want %+v", c.Rule(), c.ID(), c.Targets(), r)
	}
}

// TestStripDotStar checks which patterns lose a leading or trailing ".*"
// and that doing so does not change what they match.
func TestStripDotStar(t *testing.T) {
	tests := []struct {
		pattern  string
		stripped bool
	}{
		{`.*\.(exe|dll|scr|bat)$`, true},
		{`.*<script.*>.*</script>.*`, true},
		{`.*`, true},
		{`.*.*`, true},
		{`.*?x`, true},
		{`(?-s:.*)x`, true},
		{`x.*`, true},
		{`x`, false},
		{`^.*x`, false},
		{`a|.*b`, false},
		{`(.*)x`, false},
		{`.+x`, false},
		{`[^\n]*x`, false},
	}
	inputs := []string{"", "x", "ax", "xa", "b", "a\nx", "evil.exe", "a.exe\n", "<script>\n</script>", "<SCRIPT>", "\n"}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			tree, err := syntax.Parse("(?is)"+tt.pattern, syntax.Perl)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := stripDotStar(tree); ok != tt.stripped {
				t.Errorf("stripDotStar(%q) = %v, want %v", tt.pattern, ok, tt.stripped)
			}
			c, err := CompileRule(Rule{Pattern: tt.pattern, Targets: AllTargets})
			if err != nil {
				t.Fatal(err)
			}
			plain := regexp.MustCompile("(?is)" + tt.pattern)
			for _, in := range inputs {
				if got, want := c.re.MatchString(in), plain.MatchString(in); got != want {
					t.Errorf("%q on %q: compiled %q gives %v, plain regexp %v", tt.pattern, in, c.re, got, want)
				}
			}
		})
	}
}

func TestMatchesEmpty(t *testing.T) {
	for p, want := range map[string]bool{
		`.*`: true, `x|`: true, `^$`: true, `(a)?`: true, `.*x.*`: false,
		`.*\.(exe|dll|scr|bat)$`: false, `.*<script.*>.*</script>.*`: false,
	} {
		c, err := CompileRule(Rule{ID: "r", Pattern: p, Targets: AllTargets})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.MatchesEmpty(); got != want {
			t.Errorf("MatchesEmpty(%q) = %v, want %v", p, got, want)
		}
	}
}
