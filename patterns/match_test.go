package patterns

import (
	"regexp"
	"strings"
	"testing"
)

// ordinaryHeaders go along with every header case; none may match.
var ordinaryHeaders = [][2]string{
	{":method", "GET"},
	{":path", "/download/evil.exe"},
	{":authority", "example.com"},
	{"host", "example.com"},
	{"user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"},
	{"accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
	{"accept-language", "en-US,en;q=0.5"},
	{"accept-encoding", "gzip, deflate, br"},
	{"cookie", "session=abc123; theme=dark"},
	{"x-request-id", "5f3c1e8a-2b7d-4c1a-9f0e-123456789abc"},
}

func TestMatchCorpus(t *testing.T) {
	for _, name := range matchCorpora(t, "match_*.txt") {
		t.Run(name, func(t *testing.T) {
			runMatchCorpus(t, name)
		})
	}
}

func runMatchCorpus(t *testing.T, name string) {
	cf := readCorpus(t, name)
	var rules []*Compiled
	var set *Set
	for _, c := range cf.cases {
		f := c.fields
		if f[0] == "rule" {
			if set != nil {
				t.Fatalf("%s: rule after the first case", c.pos)
			}
			if len(f) != 5 {
				t.Fatalf("%s: want rule <id> <targets> <ci|cs> <pattern>", c.pos)
			}
			r := Rule{ID: f[1], Pattern: f[4], CaseSensitive: f[3] == "cs", Targets: parseTargets(t, c.pos, f[2])}
			if f[3] != "cs" && f[3] != "ci" {
				t.Fatalf("%s: want ci or cs, got %q", c.pos, f[3])
			}
			comp, err := CompileRule(r)
			if err != nil {
				t.Fatalf("%s: %v", c.pos, err)
			}
			rules = append(rules, comp)
			continue
		}
		if set == nil {
			var err error
			if set, err = NewSet(rules); err != nil {
				t.Fatalf("%s: %v", c.pos, err)
			}
			checkOrdinaryHeaders(t, cf.path, set)
		}
		var wantID string
		switch f[0] {
		case "block":
			if len(f) < 3 {
				t.Fatalf("%s: want block <id> <where> <input...>", c.pos)
			}
			wantID, f = f[1], f[2:]
		case "pass":
			f = f[1:]
		default:
			t.Fatalf("%s: unknown line kind %q", c.pos, f[0])
		}
		where, args := f[0], f[1:]
		var (
			m    Match
			ok   bool
			want Target
		)
		switch {
		case (where == "path" || where == "query") && len(args) == 1:
			want = TargetPath
			if where == "query" {
				want = TargetQuery
			}
			m, ok = set.CheckPath(args[0])
		case where == "header" && len(args) == 2:
			want = TargetHeaders
			hs := append(append([][2]string(nil), ordinaryHeaders...), [2]string{args[0], args[1]})
			m, ok = set.CheckHeaders(hs)
		case where == "body" && len(args) == 2:
			want = TargetBody
			m, ok = set.CheckBody(args[0], []byte(args[1]))
		default:
			t.Fatalf("%s: bad case: where %q with %d inputs", c.pos, where, len(args))
		}
		switch {
		case wantID == "" && ok:
			t.Errorf("%s: %s %q matched rule %s in %s, want pass", c.pos, where, args, m.RuleID, m.Target)
		case wantID != "" && !ok:
			t.Errorf("%s: %s %q passed, want block by %s", c.pos, where, args, wantID)
		case wantID != "" && (m.RuleID != wantID || m.Target != want):
			t.Errorf("%s: %s %q matched rule %s in %s, want %s in %s", c.pos, where, args, m.RuleID, m.Target, wantID, want)
		}
	}
}

func parseTargets(t *testing.T, pos, s string) Target {
	if s == "all" {
		return AllTargets
	}
	var tg Target
	for _, name := range strings.Split(s, "|") {
		one, ok := ParseTarget(name)
		if !ok {
			t.Fatalf("%s: unknown target %q", pos, name)
		}
		tg |= one
	}
	return tg
}

func checkOrdinaryHeaders(t *testing.T, pos string, set *Set) {
	if m, ok := set.CheckHeaders(ordinaryHeaders); ok {
		t.Fatalf("%s: ordinary headers match %s in %s", pos, m.RuleID, m.Target)
	}
}

func mustSet(t testing.TB, rules ...Rule) *Set {
	t.Helper()
	var cs []*Compiled
	for _, r := range rules {
		c, err := CompileRule(r)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	s, err := NewSet(cs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func seedSet(t testing.TB) *Set {
	return mustSet(t,
		Rule{ID: "block_patterns[0]", Pattern: `.*\.(exe|dll|scr|bat)$`, Targets: AllTargets},
		Rule{ID: "block_patterns[1]", Pattern: `.*<script.*>.*</script>.*`, Targets: AllTargets},
	)
}

func TestEmptySetMatchesNothing(t *testing.T) {
	empty, err := NewSet(nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*Set{"nil": nil, "empty": empty, "zero": {}} {
		t.Run(name, func(t *testing.T) {
			if s.Len() != 0 || s.Targets() != 0 || len(s.Rules()) != 0 {
				t.Errorf("Len, Targets, Rules = %d, %v, %d; want 0, none, 0", s.Len(), s.Targets(), len(s.Rules()))
			}
			if _, ok := s.CheckPath("/evil.exe?q=<script>x</script>"); ok {
				t.Error("CheckPath matched")
			}
			if _, ok := s.CheckHeaders([][2]string{{"a", "<script>x</script>"}}); ok {
				t.Error("CheckHeaders matched")
			}
			if _, ok := s.CheckBody("text/plain", []byte("<script>x</script>")); ok {
				t.Error("CheckBody matched")
			}
		})
	}
}

func TestSetTargets(t *testing.T) {
	s := mustSet(t,
		Rule{ID: "a", Pattern: "a", Targets: TargetPath},
		Rule{ID: "b", Pattern: "b", Targets: TargetBody | TargetQuery},
	)
	if got, want := s.Targets(), TargetPath|TargetQuery|TargetBody; got != want {
		t.Errorf("Targets() = %v, want %v", got, want)
	}
	if s.Len() != 2 {
		t.Errorf("Len() = %d, want 2", s.Len())
	}
	if _, ok := s.CheckHeaders([][2]string{{"x", "a b"}}); ok {
		t.Error("CheckHeaders matched a set without header rules")
	}
}

// TestFirstRuleWins checks that the result is the first matching rule in
// configuration order, not the first value that matches some rule.
func TestFirstRuleWins(t *testing.T) {
	s := mustSet(t,
		Rule{ID: "query-rule", Pattern: "needle", Targets: TargetQuery},
		Rule{ID: "path-rule", Pattern: "needle", Targets: TargetPath},
		Rule{ID: "both", Pattern: "x", Targets: TargetPath | TargetQuery},
	)
	tests := []struct {
		raw    string
		id     string
		target Target
	}{
		{"/needle?q=needle", "query-rule", TargetQuery},
		{"/needle", "path-rule", TargetPath},
		{"/x?q=x", "both", TargetPath},
		{"/a?q=x", "both", TargetQuery},
		{"/x?q=needle", "query-rule", TargetQuery},
	}
	for _, tt := range tests {
		m, ok := s.CheckPath(tt.raw)
		if !ok || m.RuleID != tt.id || m.Target != tt.target {
			t.Errorf("CheckPath(%q) = %+v, %v; want %s in %v", tt.raw, m, ok, tt.id, tt.target)
		}
	}
	hs := mustSet(t,
		Rule{ID: "late", Pattern: "^b$", Targets: TargetHeaders},
		Rule{ID: "early", Pattern: "^a$", Targets: TargetHeaders},
	)
	if m, ok := hs.CheckHeaders([][2]string{{"x", "a"}, {"y", "b"}}); !ok || m.RuleID != "late" {
		t.Errorf("CheckHeaders = %+v, %v; want rule late", m, ok)
	}
}

// oracleValues returns the values a rule with target t sees for input:
// a raw :path for path and query, a header value, or "content-type\x00body".
func oracleValues(t Target, input string) []string {
	switch t {
	case TargetPath:
		p, _ := SplitPath(input)
		if cut, ok := NulTruncatedPath(p); ok {
			return []string{NormalizePath(p), cut}
		}
		return []string{NormalizePath(p)}
	case TargetQuery:
		_, q := SplitPath(input)
		whole, values := DecodeQuery(q)
		return append([]string{whole}, values...)
	case TargetHeaders:
		return []string{input, DecodeValue(input)}
	case TargetBody:
		ct, body, _ := strings.Cut(input, "\x00")
		return BodyValues(ct, []byte(body))
	}
	return nil
}

// FuzzMatchOracle checks a Set of two rules against plain regexp: for one
// target at a time, the Set must report the first rule whose
// regexp.MustCompile("(?is)"+pattern) (or "(?s)" when case sensitive)
// matches a value of that target, and no rule when none does.
func FuzzMatchOracle(f *testing.F) {
	f.Add(`.*\.(exe|dll|scr|bat)$`, `.*<script.*>.*</script>.*`, false, uint8(0), "/download/evil%252Eexe;x=1/")
	f.Add(`.*\.(exe|dll|scr|bat)$`, `.*<script.*>.*</script>.*`, false, uint8(1), "/s?q=%3Cscript%3E%0A%3C/script%3E&f=a.exe")
	f.Add(`.*<script.*>.*</script>.*`, `x`, true, uint8(2), "%3Cscript%3Ex%3C/script%3E")
	f.Add(`.*`, `^$`, false, uint8(3), "application/json\x00{\"a\":\"\\u003cscript\\u003e\"}")
	f.Add(`(?-s:.*)a.*`, `.*?b`, false, uint8(3), "multipart/form-data; boundary=b\x00--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--b--")
	f.Add(`^.*x`, `a|.*b`, true, uint8(1), "/?x=b&A=1")
	f.Add(`.*`, `.*.*`, false, uint8(0), "")
	f.Add(`(?U).*x.*`, `(?m).*$`, false, uint8(2), "a\nx\n")
	f.Add(`(?i)ſ`, `K`, false, uint8(1), "/?q=S&k=\u212a")
	f.Add(`(?-s:.*)\n.*`, `\A.*\z`, true, uint8(3), "text/plain\x00a\nb")
	f.Add(`.*\.(exe|dll|scr|bat)$`, `x`, false, uint8(0), "/download/evil.exe%2500.jpg")
	f.Fuzz(func(t *testing.T, p1, p2 string, caseSensitive bool, which uint8, input string) {
		if len(p1) > 200 || len(p2) > 200 || len(input) > 2000 {
			return
		}
		target := Target(1) << (which % numTargets)
		var comps []*Compiled
		var oracles []*regexp.Regexp
		for i, p := range []string{p1, p2} {
			r := Rule{ID: string(rune('a' + i)), Pattern: p, Targets: target, CaseSensitive: caseSensitive}
			c, err := CompileRule(r)
			if err != nil {
				return
			}
			comps = append(comps, c)
			oracles = append(oracles, regexp.MustCompile(Expr(r)))
		}
		set, err := NewSet(comps)
		if err != nil {
			return
		}
		wantID := ""
		values := oracleValues(target, input)
	rules:
		for i, re := range oracles {
			for _, v := range values {
				if v != "" && re.MatchString(v) {
					wantID = comps[i].ID()
					break rules
				}
			}
		}
		var m Match
		var ok bool
		switch target {
		case TargetPath, TargetQuery:
			m, ok = set.CheckPath(input)
		case TargetHeaders:
			m, ok = set.CheckHeaders([][2]string{{"x-fuzz", input}})
		case TargetBody:
			ct, body, _ := strings.Cut(input, "\x00")
			m, ok = set.CheckBody(ct, []byte(body))
		}
		if ok != (wantID != "") || ok && (m.RuleID != wantID || m.Target != target) {
			t.Fatalf("patterns %q, %q (case sensitive %v) on %v %q (values %q): Set gives %+v, %v; plain regexp gives rule %q",
				p1, p2, caseSensitive, target, input, values, m, ok, wantID)
		}
	})
}

// TestConcurrentChecks shares one Set between goroutines; run with -race.
func TestConcurrentChecks(t *testing.T) {
	s := seedSet(t)
	done := make(chan bool)
	for g := 0; g < 4; g++ {
		go func() {
			ok := true
			for i := 0; i < 200; i++ {
				_, a := s.CheckPath("/download/evil%252Eexe?q=%3Cscript%3E")
				_, b := s.CheckHeaders([][2]string{{"x", "%3Cscript%3Ex%3C/script%3E"}})
				_, c := s.CheckBody("application/json", []byte(`{"a":"\u003cscript\u003ex\u003c/script\u003e"}`))
				ok = ok && a && b && c
			}
			done <- ok
		}()
	}
	for g := 0; g < 4; g++ {
		if !<-done {
			t.Error("a concurrent check missed a match")
		}
	}
}
