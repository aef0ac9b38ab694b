package patterns

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
)

// Limits on what a configuration can ask for. Each is enforced by
// CompileRule or NewSet and tested at its edge.
const (
	// MaxPatterns is the number of rules a Set may hold.
	MaxPatterns = 256

	// MaxPatternLen is the length in bytes of a pattern's source.
	MaxPatternLen = 4096

	// MaxProgInsts is the size of one pattern's compiled program, in
	// regexp/syntax instructions, counted after the (?s) and (?i) flags
	// are applied. A compiled instruction keeps about 47 bytes alive
	// (measured on Go 1.26, amd64), so a pattern at the limit holds
	// about 1 MB; large word lists in the style of the OWASP Core Rule
	// Set stay below it.
	MaxProgInsts = 20000

	// MaxSetInsts is the total size of the compiled programs of a Set.
	// It keeps a configuration at about 5 MB of compiled patterns per VM
	// (Envoy runs one VM per worker thread), where MaxPatterns patterns
	// of MaxProgInsts each would take a quarter of a gigabyte.
	MaxSetInsts = 100000
)

// Rule is one block pattern as configured.
type Rule struct {
	// ID names the rule in a Match; CompileRule does not check it.
	ID string
	// Pattern is a Go regular expression (RE2 syntax).
	Pattern string
	// Targets are the request parts the pattern is matched against. The
	// zero Target is invalid.
	Targets Target
	// CaseSensitive turns off the (?i) flag.
	CaseSensitive bool
}

// Compiled is a validated, compiled Rule, ready for NewSet. It is immutable
// and safe for concurrent use.
type Compiled struct {
	rule  Rule
	insts int
	// re is the expression that is matched: the pattern with its flags,
	// possibly with a leading or trailing unbounded ".*" removed, which
	// never changes whether it matches (see stripDotStar).
	re *regexp.Regexp
	// prefix is a literal every match of re starts with (re.LiteralPrefix),
	// so a value without it cannot match and is not handed to re.
	prefix      string
	prefixBytes []byte
	// filter holds literals a matching value must contain (see prefilter).
	filter *prefilter
}

// Rule returns the rule c was compiled from.
func (c *Compiled) Rule() Rule { return c.rule }

// ID returns the rule's ID.
func (c *Compiled) ID() string { return c.rule.ID }

// Targets returns the rule's targets.
func (c *Compiled) Targets() Target { return c.rule.Targets }

// MatchesEmpty reports whether the pattern matches the empty string, and so
// every value (".*", "x|"). Removing an unbounded ".*" does not change
// this, so the compiled expression answers for the rule's own.
func (c *Compiled) MatchesEmpty() bool { return c.re.MatchString("") }

// Insts returns the size of the rule's compiled program in instructions,
// as counted against MaxProgInsts and MaxSetInsts.
func (c *Compiled) Insts() int { return c.insts }

// Expr returns the expression a rule's pattern is compiled from: "(?is)" or,
// for a case-sensitive rule, "(?s)", followed by the pattern. A rule matches
// a value exactly when regexp.MustCompile(Expr(r)).MatchString(value).
func Expr(r Rule) string {
	if r.CaseSensitive {
		return "(?s)" + r.Pattern
	}
	return "(?is)" + r.Pattern
}

// CompileRule validates r and compiles it. The checks run in this order and
// the first failure is returned; the error text names the problem but not
// the rule's position, which the caller adds:
//
//	empty pattern
//	pattern is 5000 bytes, the limit is 4096
//	invalid regex "(": missing closing )
//	compiled program has 20005 instructions, the limit is 20000
//	no targets
//	unknown targets 0x30
//
// An invalid regex reports Go's regexp/syntax message after the quoted
// pattern; it covers Go's own limits, such as a repeat count above 1000
// ("invalid repeat count") or an expression too large or too deeply nested.
func CompileRule(r Rule) (*Compiled, error) {
	switch {
	case r.Pattern == "":
		return nil, errors.New("empty pattern")
	case len(r.Pattern) > MaxPatternLen:
		return nil, fmt.Errorf("pattern is %d bytes, the limit is %d", len(r.Pattern), MaxPatternLen)
	}
	expr := Expr(r)
	tree, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil, regexError(r.Pattern, err)
	}
	prog, err := syntax.Compile(tree.Simplify())
	if err != nil {
		return nil, regexError(r.Pattern, err)
	}
	if n := len(prog.Inst); n > MaxProgInsts {
		return nil, fmt.Errorf("compiled program has %d instructions, the limit is %d", n, MaxProgInsts)
	}
	switch {
	case r.Targets == 0:
		return nil, errors.New("no targets")
	case r.Targets&^AllTargets != 0:
		return nil, fmt.Errorf("unknown targets %#x", uint8(r.Targets&^AllTargets))
	}
	re, err := regexp.Compile(expr)
	if err != nil { // cannot happen: syntax.Parse accepted expr
		return nil, regexError(r.Pattern, err)
	}
	filter := newPrefilter(tree)
	if stripped, ok := stripDotStar(tree); ok {
		if fast, err := regexp.Compile(stripped.String()); err == nil {
			re = fast
		}
	}
	prefix, _ := re.LiteralPrefix()
	return &Compiled{rule: r, insts: len(prog.Inst), re: re, prefix: prefix, prefixBytes: []byte(prefix), filter: filter}, nil
}

func regexError(pattern string, err error) error {
	var se *syntax.Error
	if errors.As(err, &se) {
		return fmt.Errorf("invalid regex %q: %s", pattern, se.Code)
	}
	return fmt.Errorf("invalid regex %q: %v", pattern, err)
}

// stripDotStar removes unbounded ".*" (any character, any number of times,
// greedy or not) from the start and the end of a top-level concatenation.
// Whether an unanchored search matches does not change: ".*X" matches a
// text exactly when X matches in it (take ".*" empty), and so does "X.*".
// What changes is speed: without the leading ".*" Go's regexp can skip to
// the pattern's literal prefix (the "<" of "<script", the "." of "\.exe")
// instead of trying the pattern at every position; on the seed patterns this
// is 30 to 2000 times faster. The tree is modified in place; ok is false when
// there is nothing to strip.
func stripDotStar(re *syntax.Regexp) (_ *syntax.Regexp, ok bool) {
	if isDotStar(re) {
		return &syntax.Regexp{Op: syntax.OpEmptyMatch}, true
	}
	if re.Op != syntax.OpConcat {
		return re, false
	}
	subs := re.Sub
	for len(subs) > 0 && isDotStar(subs[0]) {
		subs = subs[1:]
	}
	for len(subs) > 0 && isDotStar(subs[len(subs)-1]) {
		subs = subs[:len(subs)-1]
	}
	switch {
	case len(subs) == len(re.Sub):
		return re, false
	case len(subs) == 0:
		return &syntax.Regexp{Op: syntax.OpEmptyMatch}, true
	case len(subs) == 1:
		return subs[0], true
	}
	re.Sub = subs
	return re, true
}

func isDotStar(re *syntax.Regexp) bool {
	if re.Op != syntax.OpStar || len(re.Sub) != 1 {
		return false
	}
	op := re.Sub[0].Op
	return op == syntax.OpAnyChar || op == syntax.OpAnyCharNotNL
}
