package ratelimit

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// compare runs one schedule through Limit.Allow and through the oracle,
// x/time/rate's Limiter.AllowN(t, 1), and returns the first difference, or
// "". Besides the decision it compares the tokens left (TokensAt, exactly),
// Remaining (the oracle's tokens, rounded down) and, for a denied request,
// that RetryAfter is long enough and at most a nanosecond longer than
// needed: at t+RetryAfter the request would pass, two nanoseconds earlier
// it would not.
// It adds to c, when not nil, what it saw.
func compare(lim Limit, times []time.Time, c *counts) string {
	oracle := rate.NewLimiter(rate.Limit(lim.Rate), lim.Burst)
	var s State
	for i, at := range times {
		prev := s
		var dec Decision
		s, dec = lim.Allow(s, at)
		ok := oracle.AllowN(at, 1)
		step := func(format string, args ...any) string {
			return fmt.Sprintf("%+v, step %d of %d (%v after step 0): ", lim, i, len(times), at.Sub(times[0])) +
				fmt.Sprintf(format, args...)
		}
		if dec.Allowed != ok {
			return step("Allow = %v, x/time/rate AllowN = %v", dec.Allowed, ok)
		}
		if c != nil {
			c.requests++
			if !dec.Allowed {
				c.denied++
				if _, w := lim.take(prev, at.UnixNano()); w != dec.RetryAfter {
					c.corrected++
				}
			}
		}
		want := oracle.TokensAt(at)
		if got := lim.TokensAt(s, at); got != want {
			return step("TokensAt after = %v, x/time/rate %v", got, want)
		}
		if want := remaining(math.Floor(want), lim.Burst); dec.Remaining != want {
			return step("Remaining = %d, want %d from x/time/rate's tokens", dec.Remaining, want)
		}
		if dec.Allowed {
			if dec.RetryAfter != 0 {
				return step("allowed with RetryAfter %v", dec.RetryAfter)
			}
			continue
		}
		if s != prev {
			return step("denied request changed the state from %+v to %+v", prev, s)
		}
		if dec.RetryAfter <= 0 {
			return step("denied with RetryAfter %v", dec.RetryAfter)
		}
		if dec.RetryAfter != InfDuration {
			// After a backwards step the bucket refills from at.
			base := State{Tokens: s.Tokens, Last: min(s.Last, at.UnixNano())}
			if _, later := lim.Allow(base, at.Add(dec.RetryAfter)); !later.Allowed {
				return step("denied again after RetryAfter %v", dec.RetryAfter)
			}
			if _, early := lim.Allow(base, at.Add(dec.RetryAfter-2)); early.Allowed && dec.RetryAfter > 2 {
				return step("allowed 2ns before RetryAfter %v", dec.RetryAfter)
			}
		}
	}
	return ""
}

// randomLimit returns a rate between about one token an hour and ten
// billion a second, often a whole number of requests a minute, and a burst
// of 1 to 50. Above a billion a second, x/time/rate lets requests through
// with a deficit of up to rate/1e9 tokens (their wait rounds down to 0 ns).
func randomLimit(rng *rand.Rand) Limit {
	burst := 1 + rng.IntN(50)
	switch rng.IntN(8) {
	case 0, 1:
		return PerMinute(100, burst)
	case 2, 3:
		return PerMinute(float64(1+rng.IntN(10000)), burst)
	case 4:
		return Limit{Rate: math.Pow(10, 4+6*rng.Float64()), Burst: burst}
	default:
		return Limit{Rate: math.Pow(10, -3.5+7.5*rng.Float64()), Burst: burst}
	}
}

// randomSchedule returns n instants from a start with a random nanosecond
// part. Of the gaps, 40% are zero, 4% one nanosecond, 10% one to three
// token periods rounded to the nanosecond (where rounding errors show),
// 44% between a hundredth of a period and two periods, and 2% long enough
// to refill a tenth of the bucket to all of it three times over. When
// backwards is set, a tenth of the gaps go back in time.
func randomSchedule(rng *rand.Rand, lim Limit, n int, backwards bool) []time.Time {
	period := 1 / lim.Rate // seconds per token
	at := t0.Add(time.Duration(rng.Int64N(int64(time.Hour))))
	times := make([]time.Time, n)
	for i := range times {
		var secs float64
		switch r := rng.IntN(50); {
		case r < 20:
		case r < 22:
			secs = 1e-9
		case r < 27: // whole periods, rounded to the nanosecond
			secs = math.Round(period*1e9) * float64(1+rng.IntN(3)) / 1e9
		case r < 49:
			secs = period * math.Pow(10, -2+2.3*rng.Float64())
		default:
			secs = period * float64(lim.Burst) * math.Pow(10, -1+1.5*rng.Float64())
		}
		gap := time.Duration(min(secs*1e9, float64(24*time.Hour)))
		if backwards && rng.IntN(10) == 0 {
			gap = -gap
		}
		at = at.Add(gap)
		times[i] = at
	}
	return times
}

// counts is what compare saw: requests, denied requests, and denials whose
// RetryAfter needed the extra nanosecond.
type counts struct{ requests, denied, corrected int }

func TestAgainstXTimeRate(t *testing.T) {
	tests := []struct {
		name      string
		schedules int
		backwards bool
	}{
		{"monotonic", 10000, false},
		{"backwards", 2000, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(20250301, uint64(len(tt.name))))
			var c counts
			for range tt.schedules {
				lim := randomLimit(rng)
				times := randomSchedule(rng, lim, 10+rng.IntN(60)+2*lim.Burst, tt.backwards)
				if diff := compare(lim, times, &c); diff != "" {
					t.Fatal(diff)
				}
			}
			// The schedules must exercise both outcomes substantially, and
			// the nanosecond that RetryAfter adds to x/time/rate's wait.
			if c.denied < c.requests/7 || c.denied > c.requests*6/7 || c.corrected == 0 {
				t.Errorf("%+v: the schedules do not exercise the limiter", c)
			}
			t.Logf("%d schedules, %+v, no difference", tt.schedules, c)
		})
	}
}

func TestAgainstXTimeRateMonotonicReading(t *testing.T) {
	// x/time/rate subtracts monotonic readings when both instants have one;
	// Limit.Allow uses the wall clock. Instants made by Add from one
	// time.Now() agree on both clocks.
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Now()
	for range 200 {
		lim := randomLimit(rng)
		times := randomSchedule(rng, lim, 50, false)
		for i := range times {
			times[i] = base.Add(times[i].Sub(t0))
		}
		if diff := compare(lim, times, nil); diff != "" {
			t.Fatal(diff)
		}
	}
}

// FuzzAgainstXTimeRate compares Limit.Allow with x/time/rate on a schedule
// read from the fuzzer's bytes: each 3-byte group is one request's gap from
// the previous one; its first byte picks the unit (ns, µs, ms, s) and the
// sign, the other two the amount.
func FuzzAgainstXTimeRate(f *testing.F) {
	f.Add(uint32(100), uint32(60), uint8(20), []byte{})
	f.Add(uint32(10), uint32(1), uint8(3), []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 100, 0, 2, 50, 0, 6, 100, 0, 2, 0, 1})
	f.Add(uint32(1), uint32(3600), uint8(1), []byte{3, 1, 0, 7, 1, 0, 3, 0, 16, 1, 255, 255})
	f.Add(uint32(1000000), uint32(1), uint8(50), []byte{0, 1, 0, 4, 1, 0, 1, 7, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, num, den uint32, burst uint8, gaps []byte) {
		lim := Limit{
			Rate:  float64(num%1000000+1) / float64(den%1000000+1),
			Burst: int(burst%64) + 1,
		}
		units := [4]time.Duration{time.Nanosecond, time.Microsecond, time.Millisecond, time.Second}
		times := []time.Time{t0}
		for len(gaps) >= 3 && len(times) < 1000 {
			gap := units[gaps[0]&3] * time.Duration(binary.LittleEndian.Uint16(gaps[1:3]))
			if gaps[0]&4 != 0 {
				gap = -gap
			}
			times = append(times, times[len(times)-1].Add(gap))
			gaps = gaps[3:]
		}
		if diff := compare(lim, times, nil); diff != "" {
			t.Fatal(diff)
		}
	})
}
