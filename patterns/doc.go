// Package patterns decides whether an HTTP request matches a block pattern.
//
// It is pure Go: it imports no proxy-wasm SDK, reads no clock and keeps no
// state between calls, so the same code runs natively in tests and inside
// security.wasm. Every input is an argument.
//
// The pipeline has one layer per file, like regexp/syntax:
//
//   - normalize.go decodes what a request carries (path, query, header
//     values) into the form an attacker cannot hide behind: percent-decoding
//     repeated until stable, %uXXXX, NUL bytes, backslashes, dot segments,
//     ;params, repeated and trailing slashes.
//   - compile.go validates and compiles one Rule into a Compiled pattern,
//     enforcing the limits below; prefilter.go derives from the pattern
//     the literals a matching value must contain, so most values are
//     rejected without running the regexp.
//   - match.go holds the Set, which checks the decoded values of a request
//     against its rules in configuration order.
//   - body.go extracts the values of a body: form fields, JSON strings,
//     multipart parts.
//
// # Matching
//
// Patterns are Go regular expressions (RE2 syntax). The regexp engine runs
// in time linear in the size of the input, for every pattern and input: no
// input makes a match backtrack exponentially. A pattern is compiled with
// the (?s) flag, so "." also matches a newline, and, unless the rule is case
// sensitive, with (?i). A rule matches a request when its pattern matches any
// value of any of its targets; a Set reports the first such rule in
// configuration order. Empty values are never matched.
//
// # Limits
//
// MaxPatterns, MaxPatternLen, MaxProgInsts and MaxSetInsts bound what a
// configuration can ask for; Go's parser itself refuses repeat counts above
// 1000 (a{1001}) and nesting deeper than 1000. Linear time is not cheap
// time: matching costs roughly 13 ns natively per byte of input per
// instruction that stays alive during the scan (a pattern such as .{1000}x
// keeps a thousand alive; typical patterns keep a handful), so the limits
// also bound the worst case per request. Decoding is linear in its input
// and never produces more bytes than it reads.
//
// A Set is immutable after NewSet and safe for concurrent use.
package patterns
