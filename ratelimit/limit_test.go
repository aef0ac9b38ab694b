package ratelimit

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// The step tables run over fixed instants t0…t9, d apart; at 10 tokens a
// second one token accrues per d.
const d = 100 * time.Millisecond

var (
	t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	t1 = t0.Add(1 * d)
	t2 = t0.Add(2 * d)
	t3 = t0.Add(3 * d)
	t4 = t0.Add(4 * d)
	t5 = t0.Add(5 * d)
	t6 = t0.Add(6 * d)
	t9 = t0.Add(9 * d)
)

// name prints an instant as "t3" or "t0+50ms".
func name(t time.Time) string {
	off := t.Sub(t0)
	if off >= 0 && off <= 9*d && off%d == 0 {
		return fmt.Sprintf("t%d", off/d)
	}
	if off >= 0 {
		return "t0+" + off.String()
	}
	return "t0" + off.String()
}

type allow struct {
	t  time.Time
	ok bool
}

// run feeds allows to one bucket of lim, starting unused.
func run(t *testing.T, lim Limit, allows []allow) {
	t.Helper()
	var s State
	for i, a := range allows {
		var dec Decision
		s, dec = lim.Allow(s, a.t)
		if dec.Allowed != a.ok {
			t.Errorf("step %d: Allow(%s) = %v, want %v", i, name(a.t), dec.Allowed, a.ok)
		}
	}
}

type decide struct {
	t    time.Time
	want Decision
}

// runDecisions is run comparing whole decisions.
func runDecisions(t *testing.T, lim Limit, steps []decide) {
	t.Helper()
	var s State
	for i, st := range steps {
		var dec Decision
		s, dec = lim.Allow(s, st.t)
		if dec != st.want {
			t.Errorf("step %d: Allow(%s) = %+v, want %+v", i, name(st.t), dec, st.want)
		}
	}
}

func TestAllowBurst1(t *testing.T) {
	run(t, Limit{Rate: 10, Burst: 1}, []allow{
		{t0, true}, // starts full
		{t0, false},
		{t0, false},
		{t1, true}, // one token a step
		{t1, false},
		{t2, true},
		{t2, false},
	})
}

func TestAllowBurst3(t *testing.T) {
	run(t, Limit{Rate: 10, Burst: 3}, []allow{
		{t0, true}, // starts full: burst requests at one instant pass
		{t0, true},
		{t0, true},
		{t0, false},
		{t1, true},
		{t1, false},
		{t3, true}, // two tokens accrued
		{t3, true},
		{t3, false},
		{t9, true}, // six accrued, capped at three
		{t9, true},
		{t9, true},
		{t9, false},
	})
}

func TestAllowPartialTokens(t *testing.T) {
	run(t, Limit{Rate: 10, Burst: 1}, []allow{
		{t0, true},
		{t0.Add(d / 2), false},                // half a token
		{t0.Add(d - time.Microsecond), false}, // a microsecond short
		{t1, true},                            // half a token kept from the denied request
		{t1.Add(d / 2), false},
		{t2, true},
	})
}

func TestAllowSlowRate(t *testing.T) {
	// 100 requests a minute: a token every 0.6 s.
	lim := PerMinute(100, 2)
	run(t, lim, []allow{
		{t0, true},
		{t0, true},
		{t0, false},
		{t5, false}, // 0.5 s: 0.83 token
		{t6, true},  // 0.6 s: one token
		{t6, false},
		{t6.Add(6 * d), true},
	})
}

func TestAllowDecisions(t *testing.T) {
	runDecisions(t, Limit{Rate: 10, Burst: 3}, []decide{
		{t0, Decision{Allowed: true, Remaining: 2}},
		{t0, Decision{Allowed: true, Remaining: 1}},
		{t0, Decision{Allowed: true, Remaining: 0}},
		{t0, Decision{RetryAfter: 100 * time.Millisecond}},
		{t0.Add(d / 2), Decision{RetryAfter: 50 * time.Millisecond}},
		{t1, Decision{Allowed: true, Remaining: 0}},
		{t3, Decision{Allowed: true, Remaining: 1}},
		{t4, Decision{Allowed: true, Remaining: 1}},
		{t9, Decision{Allowed: true, Remaining: 2}}, // capped at burst
		{t9, Decision{Allowed: true, Remaining: 1}},
		{t9, Decision{Allowed: true, Remaining: 0}},
		{t9, Decision{RetryAfter: 100 * time.Millisecond}},
	})
}

func TestAllowPerMinuteSeed(t *testing.T) {
	// The seed configuration: 100 a minute, bursts of 20. The 21st
	// request at one instant is denied and may retry in 0.6 s.
	lim := PerMinute(100, 20)
	var s State
	for i := range 20 {
		var dec Decision
		s, dec = lim.Allow(s, t0)
		if want := (Decision{Allowed: true, Remaining: 19 - i}); dec != want {
			t.Fatalf("request %d: Allow(t0) = %+v, want %+v", i+1, dec, want)
		}
	}
	_, dec := lim.Allow(s, t0)
	if dec.Allowed || dec.Remaining != 0 {
		t.Fatalf("request 21: Allow(t0) = %+v, want denied with Remaining 0", dec)
	}
	if want := 600 * time.Millisecond; dec.RetryAfter != want {
		t.Errorf("request 21: RetryAfter = %v, want %v", dec.RetryAfter, want)
	}
	if got := RetryAfterSeconds(dec.RetryAfter); got != 1 {
		t.Errorf("RetryAfterSeconds(%v) = %d, want 1", dec.RetryAfter, got)
	}
}

func TestAllowBackwardsClock(t *testing.T) {
	// Same schedule as x/time/rate's TestLimiterJumpBackwards.
	run(t, Limit{Rate: 10, Burst: 3}, []allow{
		{t1, true}, // start at t1
		{t0, true}, // back to t0: nothing refilled, two tokens left
		{t0, true},
		{t0, false},
		{t0, false},
		{t1, true}, // a token accrued since t0, the last update
		{t1, false},
		{t2, true},
		{t2, false},
	})
	// A denied request earlier than the last update refills nothing and
	// changes nothing.
	run(t, Limit{Rate: 10, Burst: 3}, []allow{
		{t5, true},
		{t5, true},
		{t5, true},
		{t2, false},
		{t0, false},
		{t5, false},
		{t6, true},
		{t6, false},
	})
	// Times before the Unix epoch are still ordered instants.
	early := time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC)
	lim := Limit{Rate: 1, Burst: 1}
	s, dec := lim.Allow(State{}, early)
	if !dec.Allowed || s.Last >= 0 {
		t.Fatalf("Allow(1969) = %+v, %+v; want allowed with negative Last", s, dec)
	}
	if _, dec := lim.Allow(s, early.Add(-time.Hour)); dec.Allowed {
		t.Errorf("Allow(an hour earlier) allowed, want denied")
	}
	if _, dec := lim.Allow(s, early.Add(time.Second)); !dec.Allowed {
		t.Errorf("Allow(a second later) denied, want allowed")
	}
}

func TestAllowDeniedKeepsState(t *testing.T) {
	lim := Limit{Rate: 10, Burst: 1}
	s, _ := lim.Allow(State{}, t0)
	for _, at := range []time.Time{t0, t0.Add(d / 2), t0.Add(-time.Hour)} {
		next, dec := lim.Allow(s, at)
		if dec.Allowed || next != s {
			t.Errorf("Allow(%s) = %+v, %+v; want denied and state %+v unchanged", name(at), next, dec, s)
		}
	}
}

func TestAllowIgnoresMonotonicReading(t *testing.T) {
	lim := Limit{Rate: 10, Burst: 2}
	base := time.Now() // carries a monotonic reading
	var withMono, wallOnly State
	for i, off := range []time.Duration{0, 0, 0, 50 * time.Millisecond, 150 * time.Millisecond, 150 * time.Millisecond, time.Second} {
		at := base.Add(off)
		var d1, d2 Decision
		withMono, d1 = lim.Allow(withMono, at)
		wallOnly, d2 = lim.Allow(wallOnly, at.Round(0))
		if d1 != d2 || withMono != wallOnly {
			t.Errorf("step %d: with monotonic reading %+v %+v, without %+v %+v", i, withMono, d1, wallOnly, d2)
		}
	}
}

func TestAllowOddStates(t *testing.T) {
	lim := Limit{Rate: 10, Burst: 3}
	tests := []struct {
		name string
		s    State
		want Decision
	}{
		{"unused", State{}, Decision{Allowed: true, Remaining: 2}},
		{"NaN tokens counts as unused", State{Tokens: math.NaN(), Last: t0.UnixNano()}, Decision{Allowed: true, Remaining: 2}},
		{"+Inf tokens counts as unused", State{Tokens: math.Inf(1), Last: t0.UnixNano()}, Decision{Allowed: true, Remaining: 2}},
		{"-Inf tokens counts as unused", State{Tokens: math.Inf(-1), Last: t0.UnixNano()}, Decision{Allowed: true, Remaining: 2}},
		{"more than burst is capped", State{Tokens: 1e9, Last: t0.UnixNano()}, Decision{Allowed: true, Remaining: 2}},
		{"deep deficit", State{Tokens: -9, Last: t0.UnixNano()}, Decision{RetryAfter: time.Second}},
		{"last in the future", State{Tokens: 0.5, Last: t1.UnixNano()}, Decision{RetryAfter: 50 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, got := lim.Allow(tt.s, t0)
			if got != tt.want {
				t.Errorf("Allow(%+v, t0) = %+v, want %+v", tt.s, got, tt.want)
			}
		})
	}
}

func TestTokensAt(t *testing.T) {
	lim := Limit{Rate: 10, Burst: 3}
	s, _ := lim.Allow(State{}, t0)
	s, _ = lim.Allow(s, t0)
	s, _ = lim.Allow(s, t0)
	tests := []struct {
		at   time.Time
		want float64
	}{
		{t0, 0},
		{t0.Add(-time.Second), 0},
		{t0.Add(d / 2), 0.5},
		{t1, 1},
		{t3, 3},
		{t9, 3},
	}
	for _, tt := range tests {
		if got := lim.TokensAt(s, tt.at); got != tt.want {
			t.Errorf("TokensAt(%s) = %v, want %v", name(tt.at), got, tt.want)
		}
	}
	if got := lim.TokensAt(State{}, t0); got != 3 {
		t.Errorf("TokensAt(unused, t0) = %v, want 3", got)
	}
	if got := (Limit{}).TokensAt(State{}, t0); got != 0 {
		t.Errorf("invalid Limit: TokensAt = %v, want 0", got)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		lim  Limit
		want string // "" for valid
	}{
		{Limit{Rate: 10, Burst: 1}, ""},
		{Limit{Rate: math.SmallestNonzeroFloat64, Burst: 1}, ""},
		{Limit{Rate: math.MaxFloat64, Burst: math.MaxInt}, ""},
		{PerMinute(100, 20), ""},
		{Limit{Rate: 0, Burst: 1}, "ratelimit: rate: 0 tokens per second, want a finite number > 0"},
		{Limit{Rate: -1, Burst: 1}, "ratelimit: rate: -1 tokens per second, want a finite number > 0"},
		{Limit{Rate: math.NaN(), Burst: 1}, "ratelimit: rate: NaN tokens per second, want a finite number > 0"},
		{Limit{Rate: math.Inf(1), Burst: 1}, "ratelimit: rate: +Inf tokens per second, want a finite number > 0"},
		{Limit{Rate: 1, Burst: 0}, "ratelimit: burst: 0, want >= 1"},
		{Limit{Rate: 1, Burst: -5}, "ratelimit: burst: -5, want >= 1"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%+v", tt.lim), func(t *testing.T) {
			err := tt.lim.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Validate() = %q, want %q", got, tt.want)
			}
			// An invalid Limit denies everything and changes nothing.
			s := State{Tokens: 1, Last: t0.UnixNano()}
			next, dec := tt.lim.Allow(s, t1)
			if tt.want != "" && (dec != Decision{RetryAfter: InfDuration} || next != s) {
				t.Errorf("invalid Limit: Allow = %+v, %+v; want %+v, %+v", next, dec, s, Decision{RetryAfter: InfDuration})
			}
			if tt.want == "" && !dec.Allowed {
				t.Errorf("valid Limit: Allow = %+v, want allowed", dec)
			}
		})
	}
}

func TestAllowExtremeRates(t *testing.T) {
	// A rate so low that one token takes longer than a Duration holds.
	lim := Limit{Rate: 1e-12, Burst: 1}
	s, dec := lim.Allow(State{}, t0)
	if !dec.Allowed {
		t.Fatalf("first request denied: %+v", dec)
	}
	if _, dec = lim.Allow(s, t9); dec.Allowed || dec.RetryAfter != InfDuration {
		t.Errorf("second request: %+v, want denied with RetryAfter InfDuration", dec)
	}
	if got := RetryAfterSeconds(dec.RetryAfter); got != 9223372037 {
		t.Errorf("RetryAfterSeconds(InfDuration) = %d, want 9223372037", got)
	}
	// A rate so high that x/time/rate lets a deficit's wait round to 0 ns:
	// at 1e10 tokens a second, 9 tokens can be missing.
	lim = Limit{Rate: 1e10, Burst: 1}
	s, _ = lim.Allow(State{}, t0)
	for i := range 9 {
		var dec Decision
		s, dec = lim.Allow(s, t0)
		if !dec.Allowed || dec.Remaining != 0 {
			t.Fatalf("request %d at t0: %+v, want allowed with Remaining 0", i+2, dec)
		}
	}
	if _, dec = lim.Allow(s, t0); dec.Allowed || dec.RetryAfter != time.Nanosecond {
		t.Errorf("request 11 at t0: %+v, want denied with RetryAfter 1ns", dec)
	}
}

func TestPerMinute(t *testing.T) {
	if got, want := PerMinute(100, 20), (Limit{Rate: 100.0 / 60, Burst: 20}); got != want {
		t.Errorf("PerMinute(100, 20) = %+v, want %+v", got, want)
	}
	if got := PerMinute(60, 1).Rate; got != 1 {
		t.Errorf("PerMinute(60, 1).Rate = %v, want 1", got)
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want int
	}{
		{math.MinInt64, 1},
		{-time.Second, 1},
		{0, 1},
		{time.Nanosecond, 1},
		{200 * time.Millisecond, 1},
		{time.Second, 1},
		{time.Second + time.Nanosecond, 2},
		{1200 * time.Millisecond, 2},
		{2 * time.Second, 2},
		{59*time.Second + 999*time.Millisecond, 60},
		{InfDuration, 9223372037},
	}
	for _, tt := range tests {
		if got := RetryAfterSeconds(tt.d); got != tt.want {
			t.Errorf("RetryAfterSeconds(%v) = %d, want %d", tt.d, got, tt.want)
		}
	}
}

func TestNameHelper(t *testing.T) {
	// The step tables' failure messages depend on it.
	for at, want := range map[time.Time]string{t0: "t0", t3: "t3", t9: "t9", t0.Add(d / 2): "t0+50ms", t0.Add(-d): "t0-100ms"} {
		if got := name(at); got != want || !strings.HasPrefix(got, "t") {
			t.Errorf("name(%v) = %q, want %q", at, got, want)
		}
	}
}
