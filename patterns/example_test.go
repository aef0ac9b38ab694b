package patterns_test

import (
	"fmt"

	"github.com/wasmguard/wasmguard/patterns"
)

func Example() {
	var rules []*patterns.Compiled
	for i, p := range []string{`.*\.(exe|dll|scr|bat)$`, `.*<script.*>.*</script>.*`} {
		c, err := patterns.CompileRule(patterns.Rule{
			ID:      fmt.Sprintf("block_patterns[%d]", i),
			Pattern: p,
			Targets: patterns.AllTargets,
		})
		if err != nil {
			fmt.Println(err)
			return
		}
		rules = append(rules, c)
	}
	set, err := patterns.NewSet(rules)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, path := range []string{
		"/download/evil%252Eexe;x=1",
		"/search?q=%3CScript%3Ealert(1)%3C%2Fscript%3E",
		"/setup.exe.txt",
	} {
		m, blocked := set.CheckPath(path)
		fmt.Println(path, blocked, m.RuleID, m.Target)
	}
	m, blocked := set.CheckBody("application/json", []byte(`{"a":"\u003cscript\u003ex\u003c/script\u003e"}`))
	fmt.Println("json body", blocked, m.RuleID, m.Target)
	// Output:
	// /download/evil%252Eexe;x=1 true block_patterns[0] path
	// /search?q=%3CScript%3Ealert(1)%3C%2Fscript%3E true block_patterns[1] query
	// /setup.exe.txt false  none
	// json body true block_patterns[1] body
}

func ExampleNormalizePath() {
	fmt.Println(patterns.NormalizePath(`/static/..%252F..%255Cdownload//evil%u002Eexe;jsessionid=1/`))
	// Output: /download/evil.exe
}

func ExampleCompileRule() {
	_, err := patterns.CompileRule(patterns.Rule{Pattern: "(", Targets: patterns.TargetPath})
	fmt.Println(err)
	// Output: invalid regex "(": missing closing )
}
