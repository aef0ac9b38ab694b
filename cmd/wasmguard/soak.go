package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/wasmguard/wasmguard/internal/wasmhost"
)

const (
	// maxSoakRequests bounds --requests.
	maxSoakRequests = 1_000_000_000
	// soakFirstReport is the first report; the next ones are at each
	// power of ten after it (100k, 1M, ...) and at the end.
	soakFirstReport = 10_000
	// soakClients is how many client addresses the ordinary requests come
	// from (more than the design configuration's 16384 rate-limit slots,
	// so the limiter's whole slot table fills up).
	soakClients = 1 << 16
	// soakCheckEvery is how often the soak loop looks for Ctrl-C.
	soakCheckEvery = 1000
)

type soakFlags struct {
	host     hostFlags
	config   string
	requests int
}

var soakCommand = &command{
	name:     "soak",
	synopsis: "[flags]",
	summary:  "send a million requests through one VM; print its memory and the process's at 10k, 100k and 1M",
	about: `
Runs --requests requests, one after the other, through one VM of the
filter, without HTTP, and prints the VM's linear memory (which a wasm
module can grow but never shrink) and this process's memory (Go heap in
use after a GC, memory obtained from the OS, and the resident set) at 10k,
100k and 1M requests: both should reach a plateau. The mix: GETs with ten
headers from 65536 client addresses (70%), JSON POSTs (5%), .exe
downloads (10%), <script> in the query (5%), and one client far over its
rate limit (10%). The tally of statuses follows each report. It exits 1 if
a request got anything but 200, 403 or 429 (a crashed VM answers 503).
"make soak" runs it; a million requests take about two minutes.

Example:
  wasmguard soak --requests 1000000`,
	flags: func(fs *flag.FlagSet) any {
		f := &soakFlags{}
		f.host.registerStream(fs)
		fs.StringVar(&f.config, "config", "", "read the filter's JSON configuration from `FILE`; without it, the design configuration (testdata/config/seed.json)")
		fs.IntVar(&f.requests, "requests", 1_000_000, fmt.Sprintf("send `N` requests (1 to %d)", maxSoakRequests))
		return f
	},
	run: runSoak,
}

// soakMix builds the i-th request of the soak.
type soakMix struct {
	clients []string
	headers [][2]string
	post    [][2]string
	body    [][]byte
}

func newSoakMix() *soakMix {
	m := &soakMix{clients: make([]string, soakClients)}
	for i := range m.clients {
		m.clients[i] = "10." + strconv.Itoa(i>>8&0xff) + "." + strconv.Itoa(i&0xff) + ".7:" + strconv.Itoa(20000+i%40000)
	}
	m.headers = [][2]string{
		{"user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"},
		{"accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
		{"accept-language", "en-US,en;q=0.5"},
		{"accept-encoding", "gzip, deflate, br"},
		{"cookie", "session=5f2b7c9d0e1a4b3c8d7e6f5a4b3c2d1e; theme=dark"},
		{"x-forwarded-proto", "https"},
		{"referer", "https://shop.example.com/customers/4711"},
		{"cache-control", "no-cache"},
		{"x-forwarded-for", "192.0.2.10"},
	}
	m.post = append(append([][2]string(nil), m.headers...), [2]string{"content-type", "application/json"})
	m.body = [][]byte{[]byte(`{"author":"bob","comment":"hello, this is a perfectly ordinary comment","rating":5}`)}
	return m
}

// request returns the i-th request and its client address.
func (m *soakMix) request(i int) (wasmhost.Request, string) {
	client := m.clients[(i*7919)%len(m.clients)]
	r := wasmhost.Request{RequestHead: wasmhost.RequestHead{Method: "GET", Authority: "shop.example.com", Headers: m.headers}}
	switch {
	case i%10 == 0:
		r.Path = "/download/setup-" + strconv.Itoa(i%1000) + ".exe"
	case i%10 == 5:
		client = "198.51.100.7:4242"
		r.Path = "/index.html"
	case i%20 == 3:
		r.Method, r.Path, r.Headers, r.Body = "POST", "/api/v1/comments", m.post, m.body
	case i%20 == 13:
		r.Path = "/search?q=%3Cscript%3Ealert(" + strconv.Itoa(i%1000) + ")%3C%2Fscript%3E"
	default:
		r.Path = "/api/v1/customers/" + strconv.Itoa(i%100000) + "/orders?page=3&sort=desc&lang=en"
	}
	return r, client
}

// soakMemory is one report's memory figures.
type soakMemory struct {
	plugin                  uint64 // linear memory of the VM
	heapAlloc, heapSys, sys uint64 // runtime.MemStats after a GC
	rss                     int64  // resident set, -1 when unknown
}

func readSoakMemory(h *wasmhost.Host) soakMemory {
	var m soakMemory
	for _, n := range h.MemorySizes() {
		m.plugin += n
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.heapAlloc, m.heapSys, m.sys = ms.HeapAlloc, ms.HeapSys, ms.Sys
	m.rss = residentBytes()
	return m
}

// residentBytes reads the resident set size from /proc/self/statm (Linux);
// -1 elsewhere.
func residentBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return -1
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return -1
	}
	return pages * int64(os.Getpagesize())
}

func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// soakReports lists the request counts to report at: 10k and each power
// of ten after it up to n, and n.
func soakReports(n int) []int {
	var out []int
	for r := soakFirstReport; r < n; r *= 10 {
		out = append(out, r)
	}
	return append(out, n)
}

func runSoak(ctx context.Context, e *env, c *command, fs *flag.FlagSet, opts any, args []string) int {
	f := opts.(*soakFlags)
	if len(args) > 0 {
		return usageError(e, c, fs, "unexpected argument %q (soak takes flags only)", args[0])
	}
	if f.requests < 1 || f.requests > maxSoakRequests {
		return usageError(e, c, fs, "--requests %d: want 1 to %d", f.requests, maxSoakRequests)
	}
	if _, err := wasmhost.ParseProfile(f.host.profile); err != nil {
		return usageError(e, c, fs, "--profile %q: want envoy-1.33 or envoy-1.39", f.host.profile)
	}
	config, configName, err := readConfig(f.config)
	if err != nil {
		fmt.Fprintf(e.stderr, "wasmguard soak: %v\n", err)
		return exitFail
	}
	logs := &logSink{w: e.stderr, level: wasmhost.LogError, now: time.Now}
	host, err := newHost(ctx, hostSpec{flags: f.host, config: config, workers: 1,
		logLevel: wasmhost.LogError, logger: logs.record})
	if err != nil {
		printStartError(e.stderr, c.name, configName, err)
		return exitFail
	}
	defer host.Close(context.Background())
	return soak(ctx, e.stdout, host, f, configName)
}

func soak(ctx context.Context, w io.Writer, host *wasmhost.Host, f *soakFlags, configName string) int {
	mix := newSoakMix()
	upstream := func(context.Context, wasmhost.Verdict) (wasmhost.Response, error) {
		return wasmhost.Response{Status: 200, Headers: [][2]string{{"content-type", "text/plain"}, {"content-length", "2"}},
			Body: [][]byte{[]byte("ok")}}, nil
	}
	fmt.Fprintf(w, "wasmguard soak: %d requests through 1 VM of %s (profile %s), configuration: %s\n",
		f.requests, f.host.wasm, host.Profile(), configName)
	before := readSoakMemory(host)
	fmt.Fprintf(w, "%10s %9s %8s  %-14s %-11s %-11s %-11s %-11s %s\n",
		"requests", "elapsed", "req/s", "plugin-memory", "heap-inuse", "heap-sys", "go-sys", "rss", "statuses")
	printRow := func(n int, elapsed time.Duration, m soakMemory, tally map[int]int) {
		rss := "n/a"
		if m.rss >= 0 {
			rss = mib(uint64(m.rss))
		}
		rate := "-"
		if elapsed > 0 {
			rate = strconv.Itoa(int(float64(n) / elapsed.Seconds()))
		}
		fmt.Fprintf(w, "%10d %9s %8s  %-14s %-11s %-11s %-11s %-11s %s\n", n, elapsed.Round(100*time.Millisecond),
			rate, mib(m.plugin), mib(m.heapAlloc), mib(m.heapSys), mib(m.sys), rss, formatTally(tally))
	}
	printRow(0, 0, before, nil)

	tally := map[int]int{}
	reports := soakReports(f.requests)
	start := time.Now()
	var paused time.Duration // time spent measuring, not serving
	code := exitOK
	for i := 0; i < f.requests; i++ {
		if i%soakCheckEvery == 0 && ctx.Err() != nil {
			fmt.Fprintf(w, "interrupted after %d requests\n", i)
			return exitFail
		}
		req, client := mix.request(i)
		_, v, err := host.Exchange(ctx, wasmhost.StreamInfo{SourceAddress: client}, req, upstream)
		if err != nil {
			fmt.Fprintf(w, "request %d (%s %s): %v\n", i+1, req.Method, req.Path, err)
			return exitFail
		}
		status := v.Status()
		if v.Reset {
			status = -1
		}
		tally[status]++
		if n := i + 1; n == reports[0] {
			t := time.Now()
			elapsed := t.Sub(start) - paused
			m := readSoakMemory(host)
			paused += time.Since(t)
			printRow(n, elapsed, m, tally)
			reports = reports[1:]
		}
	}
	for s := range tally {
		if s != 200 && s != 403 && s != 429 {
			fmt.Fprintf(w, "FAIL: %d request(s) got status %d (-1: reset); a 503 means the VM failed: %v\n", tally[s], s, host.VMStates())
			code = exitFail
		}
	}
	fmt.Fprintln(w, "filter counters:")
	for _, s := range host.Stats() {
		if strings.HasPrefix(s.Name, "wasmguard_") || strings.HasPrefix(s.Name, "wasmhost.vm.") {
			fmt.Fprintf(w, "  %s: %d\n", s.Name, s.Value)
		}
	}
	return code
}

// formatTally prints status counts in ascending status order.
func formatTally(t map[int]int) string {
	if len(t) == 0 {
		return "-"
	}
	var parts []string
	for _, s := range []int{200, 403, 429} {
		if t[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d:%d", s, t[s]))
		}
	}
	var other []int
	for s := range t {
		if s != 200 && s != 403 && s != 429 {
			other = append(other, s)
		}
	}
	sort.Ints(other)
	for _, s := range other {
		parts = append(parts, fmt.Sprintf("%d:%d", s, t[s]))
	}
	return strings.Join(parts, " ")
}
