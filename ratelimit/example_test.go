package ratelimit_test

import (
	"fmt"
	"time"

	"github.com/wasmguard/wasmguard/ratelimit"
)

func ExampleLimit_Allow() {
	lim := ratelimit.PerMinute(60, 2) // a token a second, bursts of 2
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	var s ratelimit.State // unused: full
	for _, at := range []time.Duration{0, 0, 0, 400 * time.Millisecond, time.Second, 5 * time.Second} {
		var d ratelimit.Decision
		s, d = lim.Allow(s, t0.Add(at))
		fmt.Printf("%v: allowed=%v remaining=%d retry-after=%v\n", at, d.Allowed, d.Remaining, d.RetryAfter)
	}
	// Output:
	// 0s: allowed=true remaining=1 retry-after=0s
	// 0s: allowed=true remaining=0 retry-after=0s
	// 0s: allowed=false remaining=0 retry-after=1s
	// 400ms: allowed=false remaining=0 retry-after=600ms
	// 1s: allowed=true remaining=0 retry-after=0s
	// 5s: allowed=true remaining=1 retry-after=0s
}

func ExampleLimiter() {
	store := ratelimit.NewMemStore() // in Envoy: proxy-wasm shared data
	l, err := ratelimit.NewLimiter(ratelimit.PerMinute(100, 20), ratelimit.DefaultSlots, "wasmguard.rl.v1.", store)
	if err != nil {
		panic(err)
	}
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := 1; i <= 21; i++ {
		res, err := l.Allow("203.0.113.7", now)
		if err != nil {
			panic(err)
		}
		if i >= 20 {
			fmt.Printf("request %d: allowed=%v remaining=%d retry-after=%ds\n",
				i, res.Allowed, res.Remaining, ratelimit.RetryAfterSeconds(res.RetryAfter))
		}
	}
	res, _ := l.Allow("198.51.100.1", now)
	fmt.Printf("another client: allowed=%v remaining=%d\n", res.Allowed, res.Remaining)
	fmt.Println("store keys:", store.Len())
	// Output:
	// request 20: allowed=true remaining=0 retry-after=1s
	// request 21: allowed=false remaining=0 retry-after=1s
	// another client: allowed=true remaining=19
	// store keys: 2
}
