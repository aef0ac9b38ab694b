package server

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmguard/wasmguard/internal/wasmhost"
	"github.com/wasmguard/wasmguard/ratelimit"
)

const (
	// benchSources is how many client addresses the host benchmark
	// rotates over, so no bucket runs dry (at 100/min with bursts of 20,
	// each address may take 20 requests at once).
	benchSources = 8192
	// benchClients is the load generator's concurrent keep-alive clients.
	benchClients = 16
	// benchConfig is the seed configuration with a rate limit no request
	// reaches: the limiter still runs for every request (shared data, CAS),
	// but the load generator, one address, measures allowed requests.
	benchConfig = `{"block_patterns": [".*\\.(exe|dll|scr|bat)$", ".*<script.*>.*</script>.*"],
 "rate_limit": {"requests_per_minute": 1000000000, "burst": 1000000000}}`
)

// typicalPath is 60 bytes; typicalHeaders are ten with :authority, as in
// filter's BenchmarkSeedTypicalRequest.
const typicalPath = "/api/v1/customers/4711/orders/2026-11?page=3&sort=desc&lg=en"

var typicalHeaders = [][2]string{
	{"user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"},
	{"accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
	{"accept-language", "en-US,en;q=0.5"},
	{"accept-encoding", "gzip, deflate, br"},
	{"cookie", "session=5f2b7c9d0e1a4b3c8d7e6f5a4b3c2d1e; theme=dark"},
	{"x-request-id", "7c1e0b52-3a9f-4c1d-9e8b-2f6a5d4c3b2a"},
	{"x-forwarded-proto", "https"},
	{"referer", "https://shop.example.com/customers/4711"},
	{"cache-control", "no-cache"},
}

// benchAddresses returns n client addresses 10.<net>.x.y whose rate-limit
// keys ("ip:10.<net>.x.y", the filter's client_ip key) land in distinct
// slots of a limiter with ratelimit.DefaultSlots (the seed configuration's
// slot count): no two of them share a bucket.
func benchAddresses(tb testing.TB, net, n int) []string {
	lim, err := ratelimit.NewLimiter(ratelimit.PerMinute(100, 20), ratelimit.DefaultSlots, "", ratelimit.NewMemStore())
	if err != nil {
		tb.Fatal(err)
	}
	used := map[int]bool{}
	out := make([]string, 0, n)
	for i := 0; len(out) < n && i < 1<<16; i++ {
		ip := "10." + strconv.Itoa(net) + "." + strconv.Itoa(i>>8) + "." + strconv.Itoa(i&0xff)
		if slot := lim.Slot("ip:" + ip); !used[slot] {
			used[slot] = true
			out = append(out, ip+":5000")
		}
	}
	if len(out) < n {
		tb.Fatalf("only %d addresses in distinct slots", len(out))
	}
	return out
}

// BenchmarkHostSeed is the seed configuration on a typical allowed
// request (ten headers with :authority, a 60-byte path, no body) through
// a one-worker host running security.wasm: "request" is the request
// phase (stream, headers, done/log/delete), "exchange" adds a 200
// response through the response phase. Each run starts a fresh host and
// rotates over benchSources client addresses with buckets of their own,
// so no bucket runs dry below 20 x benchSources requests a run (the
// default -benchtime stays far below); a 429 fails the benchmark.
func BenchmarkHostSeed(b *testing.B) {
	if len(typicalPath) != 60 {
		b.Fatalf("path is %d bytes, want 60", len(typicalPath))
	}
	sources := benchAddresses(b, 1, benchSources)
	req := wasmhost.Request{RequestHead: wasmhost.RequestHead{Method: "GET", Path: typicalPath,
		Authority: "shop.example.com", Headers: typicalHeaders}}
	ctx := context.Background()
	b.Run("request", func(b *testing.B) {
		host := newSeedHost(b, 1, nil)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			s, err := host.NewStream(wasmhost.StreamInfo{SourceAddress: sources[i%len(sources)]})
			if err != nil {
				b.Fatal(err)
			}
			v, err := s.ProcessRequest(ctx, req)
			if err != nil || v.Local != nil {
				b.Fatalf("request %d: %v %+v", i, err, v.Local)
			}
			s.Close()
		}
	})
	resp := wasmhost.Response{Status: 200, Headers: [][2]string{{"content-type", "text/plain"}, {"content-length", "2"}},
		Body: [][]byte{[]byte("ok")}}
	upstream := func(context.Context, wasmhost.Verdict) (wasmhost.Response, error) { return resp, nil }
	b.Run("exchange", func(b *testing.B) {
		host := newSeedHost(b, 1, nil)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			_, v, err := host.Exchange(ctx, wasmhost.StreamInfo{SourceAddress: sources[i%len(sources)]}, req, upstream)
			if err != nil || v.Status() != 200 {
				b.Fatalf("request %d: %v status %d", i, err, v.Status())
			}
		}
	})
}

// BenchmarkServe is the throughput of the whole proxy (Start with the
// echo upstream, benchConfig) under a loopback load generator:
// benchClients keep-alive clients send b.N typical requests in all.
// ns/op is wall time per request over all clients; req/s is the same as a
// rate. The allocations include the client side (same process).
func BenchmarkServe(b *testing.B) {
	for _, workers := range []int{1, 2} {
		b.Run("workers="+strconv.Itoa(workers), func(b *testing.B) {
			host := newSeedHost(b, workers, []byte(benchConfig))
			srv, err := Start(Config{Listen: "127.0.0.1:0", Handler: Options{Host: host}})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Shutdown(context.Background())
			url := "http://" + srv.Addr() + typicalPath
			tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: benchClients, DisableCompression: true}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			header := http.Header{}
			for _, kv := range typicalHeaders {
				if kv[0] != "accept-encoding" { // the transport would not decode it
					header.Add(kv[0], kv[1])
				}
			}
			header.Set("Host", "shop.example.com")
			var next atomic.Int64
			var failed atomic.Value
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for g := 0; g < benchClients; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						req, _ := http.NewRequest("GET", url, nil)
						req.Header = header.Clone()
						resp, err := c.Do(req)
						if err != nil {
							failed.Store(err.Error())
							return
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							failed.Store("status " + strconv.Itoa(resp.StatusCode))
							return
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if f := failed.Load(); f != nil {
				b.Fatal(f)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
		})
	}
}
