package patterns

import (
	"math/bits"
	"strconv"
	"strings"
)

// Target is a set of request parts a rule is matched against. The zero
// Target names no part and is invalid in a Rule.
type Target uint8

// The request parts. See the package documentation and the Check methods
// of Set for which values of each part are matched.
const (
	TargetPath    Target = 1 << iota // the normalized URL path
	TargetQuery                      // the decoded query string and its keys and values
	TargetHeaders                    // request header values, raw and percent-decoded
	TargetBody                       // the body, raw and as form, JSON or multipart values

	// AllTargets is every request part.
	AllTargets = TargetPath | TargetQuery | TargetHeaders | TargetBody
)

// numTargets is the number of single-part targets.
const numTargets = 4

var targetNames = [numTargets]string{"path", "query", "headers", "body"}

// ParseTarget returns the single Target named s: "path", "query",
// "headers" or "body". Names are case sensitive; ok is false for any other s.
func ParseTarget(s string) (t Target, ok bool) {
	for i, name := range targetNames {
		if s == name {
			return Target(1) << i, true
		}
	}
	return 0, false
}

// String returns the name of t, the names of its parts joined by "|" (such
// as "path|query") when t has several, "none" for the zero Target, and a hex
// number for bits that name no part.
func (t Target) String() string {
	if t == 0 {
		return "none"
	}
	if t&(t-1) == 0 && t&AllTargets != 0 {
		return targetNames[t.index()]
	}
	var b strings.Builder
	for i, name := range targetNames {
		if t&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte('|')
			}
			b.WriteString(name)
		}
	}
	if rest := t &^ AllTargets; rest != 0 {
		if b.Len() > 0 {
			b.WriteByte('|')
		}
		b.WriteString("0x")
		b.WriteString(strconv.FormatUint(uint64(rest), 16))
	}
	return b.String()
}

// index returns the position of the lowest part of t, for t != 0.
func (t Target) index() int { return bits.TrailingZeros8(uint8(t)) }
