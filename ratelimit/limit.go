package ratelimit

import (
	"fmt"
	"math"
	"time"
)

// InfDuration is the RetryAfter of a request that no amount of waiting will
// allow: the Limit is invalid, or the wait for one token does not fit in a
// time.Duration (a rate below about one token in 292 years).
const InfDuration = time.Duration(math.MaxInt64)

// Limit configures a token bucket: it refills at Rate tokens per second and
// holds at most Burst tokens. A valid Limit has a finite Rate > 0 and
// Burst >= 1; see [Limit.Validate]. Burst is also the most requests allowed
// at one instant.
//
// A Limit is a value with no state of its own: the bucket's state is a
// [State], passed to and returned by [Limit.Allow], so that it can be stored
// anywhere. Limit is safe for concurrent use.
type Limit struct {
	Rate  float64 // tokens per second
	Burst int     // bucket size
}

// PerMinute returns the Limit of requestsPerMinute requests a minute with
// bursts of burst: Rate is requestsPerMinute/60 tokens per second. It does
// not validate; see [Limit.Validate].
func PerMinute(requestsPerMinute float64, burst int) Limit {
	return Limit{Rate: requestsPerMinute / 60, Burst: burst}
}

// Validate reports why l is not a valid Limit, naming the field, or nil.
func (l Limit) Validate() error {
	if !(l.Rate > 0) || math.IsInf(l.Rate, 1) {
		return fmt.Errorf("ratelimit: rate: %v tokens per second, want a finite number > 0", l.Rate)
	}
	if l.Burst < 1 {
		return fmt.Errorf("ratelimit: burst: %d, want >= 1", l.Burst)
	}
	return nil
}

func (l Limit) valid() bool {
	return l.Rate > 0 && !math.IsInf(l.Rate, 1) && l.Burst >= 1
}

// State is one bucket's stored state. Its zero value is a bucket that was
// never used, which is full.
//
// Tokens may be slightly negative: like x/time/rate, Allow lets a request
// through when the wait for its token rounds down to zero nanoseconds.
type State struct {
	// Tokens is the number of tokens in the bucket at Last.
	Tokens float64
	// Last is the instant of the last allowed request in Unix nanoseconds
	// (time.Time.UnixNano); 0 means never. An allowed request at exactly
	// 1970-01-01T00:00:00Z therefore leaves the bucket looking unused.
	Last int64
}

// Decision is the outcome of one request.
type Decision struct {
	// Allowed reports whether the request may proceed.
	Allowed bool
	// Remaining is the number of whole tokens left after this request
	// (rounded down, at least 0, at most Burst): how many more requests the
	// same instant would allow.
	Remaining int
	// RetryAfter is 0 when the request is allowed. When it is denied, it is
	// the time until one token is available, > 0: the wait x/time/rate's
	// ReserveN reports, plus one nanosecond in the rare case where its
	// rounding falls short, so that the same request passes after
	// RetryAfter if no other request takes a token first. (It may pass a
	// nanosecond earlier too: x/time/rate lets a request through when less
	// than a nanosecond's worth of a token is missing.) It is InfDuration
	// when no token will ever be available.
	RetryAfter time.Duration
}

// Allow decides one request at now in the bucket whose state is s, and
// returns the next state with the decision. A denied request costs nothing:
// the returned State is s. The arithmetic is golang.org/x/time/rate's: the
// decision equals that of
//
//	rate.NewLimiter(rate.Limit(l.Rate), l.Burst).AllowN(t, 1)
//
// after the same earlier calls, for any sequence of instants, including
// instants earlier than the last one: those refill nothing.
//
// Only now's wall clock counts (its monotonic reading is ignored), as Unix
// nanoseconds, so now must lie between the years 1678 and 2262. A State
// whose Tokens is NaN or infinite (Allow never makes one) counts as unused.
// With an invalid Limit every request is denied with RetryAfter InfDuration.
func (l Limit) Allow(s State, now time.Time) (State, Decision) {
	if !l.valid() {
		return s, Decision{RetryAfter: InfDuration}
	}
	t := now.UnixNano()
	tokens, wait := l.take(s, t)
	if wait > 0 {
		return s, Decision{Remaining: remaining(tokens, l.Burst), RetryAfter: l.retryAfter(s, t, wait)}
	}
	left := tokens - 1
	return State{Tokens: left, Last: t}, Decision{Allowed: true, Remaining: remaining(left, l.Burst)}
}

// take is x/time/rate's reserveN for one token with no wait allowed: it
// returns the tokens at t and the wait for one token, truncated to the
// nanosecond. The request passes when the wait is 0, which happens a
// fraction of a nanosecond before a whole token has accrued.
func (l Limit) take(s State, t int64) (tokens float64, wait time.Duration) {
	tokens = l.advance(s, t)
	if left := tokens - 1; left < 0 {
		wait = l.durationFromTokens(-left)
	}
	return tokens, wait
}

// retryAfter checks take's wait for a request denied at t: the quotient
// that take truncates is inexact and can lose a nanosecond, after which the
// request would still be denied; then it adds that nanosecond. When t is
// before the bucket's last update, the bucket refills from t, as
// x/time/rate's reservations assume.
func (l Limit) retryAfter(s State, t int64, wait time.Duration) time.Duration {
	if wait == InfDuration || t > math.MaxInt64-int64(wait)-1 {
		return wait
	}
	if t < s.Last {
		s.Last = t
	}
	if _, w := l.take(s, t+int64(wait)); w > 0 {
		return wait + 1
	}
	return wait
}

// TokensAt returns the tokens the bucket whose state is s holds at now,
// without taking any, like x/time/rate's Limiter.TokensAt. It returns 0 for
// an invalid Limit.
func (l Limit) TokensAt(s State, now time.Time) float64 {
	if !l.valid() {
		return 0
	}
	return l.advance(s, now.UnixNano())
}

// advance is x/time/rate's advance: the tokens at t, given that the bucket
// held s.Tokens at s.Last. A never-used bucket holds Burst: x/time/rate starts
// with Burst tokens at the zero time.Time, and the saturated elapsed time
// from then fills the bucket.
func (l Limit) advance(s State, t int64) float64 {
	burst := float64(l.Burst)
	if s.Last == 0 || math.IsNaN(s.Tokens) || math.IsInf(s.Tokens, 0) {
		return burst
	}
	last := s.Last
	if t < last { // the clock went backwards: nothing to refill
		last = t
	}
	elapsed := time.Duration(t - last)
	if elapsed < 0 { // t - last overflowed; time.Time.Sub saturates
		elapsed = math.MaxInt64
	}
	tokens := s.Tokens + elapsed.Seconds()*l.Rate
	if tokens > burst {
		tokens = burst
	}
	return tokens
}

// durationFromTokens is x/time/rate's: how long accumulating tokens takes,
// truncated to the nanosecond. A product of exactly 2^63 also counts as
// InfDuration (x/time/rate converts it, with an implementation-defined
// result).
func (l Limit) durationFromTokens(tokens float64) time.Duration {
	d := (tokens / l.Rate) * float64(time.Second)
	if d >= float64(math.MaxInt64) {
		return InfDuration
	}
	return time.Duration(d)
}

// remaining is the whole tokens in tokens, clamped to [0, burst].
func remaining(tokens float64, burst int) int {
	if !(tokens >= 1) {
		return 0
	}
	if tokens >= float64(burst) {
		return burst
	}
	return int(tokens)
}

// RetryAfterSeconds returns d in whole seconds, rounded up, and at least 1:
// the value of a retry-after header (RFC 9110 section 10.2.3), which cannot
// say "less than a second". A zero or negative d gives 1.
func RetryAfterSeconds(d time.Duration) int {
	if d <= time.Second {
		return 1
	}
	s := d / time.Second
	if d%time.Second != 0 {
		s++
	}
	return int(s)
}
