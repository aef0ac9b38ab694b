package ratelimit

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// BenchmarkLimitAllow is the bucket arithmetic alone, on a schedule that
// mixes allowed and denied requests.
func BenchmarkLimitAllow(b *testing.B) {
	b.ReportAllocs()
	lim := PerMinute(6000, 20)
	var s State
	at := t0
	allowed := 0
	for b.Loop() {
		at = at.Add(3 * time.Millisecond)
		var dec Decision
		if s, dec = lim.Allow(s, at); dec.Allowed {
			allowed++
		}
	}
	if allowed == 0 {
		b.Fatal("nothing allowed")
	}
}

// BenchmarkXTimeRateAllowN is the oracle on the same schedule, for scale.
func BenchmarkXTimeRateAllowN(b *testing.B) {
	b.ReportAllocs()
	lim := rate.NewLimiter(100, 20)
	at := t0
	for b.Loop() {
		at = at.Add(3 * time.Millisecond)
		lim.AllowN(at, 1)
	}
}

// BenchmarkLimiterAllow goes through a MemStore: one read and, when
// allowed, one write. MemStore's Get copies the value (one allocation), as
// the proxy-wasm host does.
func BenchmarkLimiterAllow(b *testing.B) {
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "10.1." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256)
	}
	cases := []struct {
		name string
		lim  Limit
		keys []string
	}{
		{"allowed/1key", Limit{Rate: 1e9, Burst: 10}, keys[:1]},
		{"allowed/1024keys", Limit{Rate: 1e9, Burst: 10}, keys},
		{"denied/1key", Limit{Rate: 1e-9, Burst: 1}, keys[:1]},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			l := newLimiter(b, c.lim, DefaultSlots, NewMemStore())
			for _, k := range c.keys { // create the slots
				l.Allow(k, t0)
			}
			b.ReportAllocs()
			at := t0
			i := 0
			for b.Loop() {
				at = at.Add(time.Microsecond)
				if _, err := l.Allow(c.keys[i%len(c.keys)], at); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkLimiterAllowParallel has every CPU on one hot key, whose
// requests are all allowed: the most contention there can be.
func BenchmarkLimiterAllowParallel(b *testing.B) {
	l := newLimiter(b, Limit{Rate: 1e9, Burst: 10}, DefaultSlots, NewMemStore())
	var clock atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Allow("hot", t0.Add(time.Duration(clock.Add(1000))))
		}
	})
}

func BenchmarkSlotKey(b *testing.B) {
	l := newLimiter(b, Limit{Rate: 1, Burst: 1}, DefaultSlots, NewMemStore())
	b.ReportAllocs()
	for b.Loop() {
		_ = l.SlotKey(l.Slot("203.0.113.7"))
	}
}
