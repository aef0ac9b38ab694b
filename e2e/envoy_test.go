package e2e

// Test 3 of the host issue: the repository's envoy.yaml in a real Envoy, with
// security.wasm and an echo upstream, driven with the scenarios of
// testdata/scenarios.json. It runs when ENVOY_BIN names an Envoy binary or
// `envoy` is on PATH (`make e2e` fetches one with func-e) and skips
// otherwise. Every address is on loopback and every wait is bounded.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	listenerURL = "http://127.0.0.1:10000" // envoy.yaml's listener
	adminURL    = "http://127.0.0.1:9901"  // envoy.yaml's admin
	upstreamAt  = "127.0.0.1:8080"         // envoy.yaml's upstream cluster

	// readyTimeout bounds Envoy's start, which includes V8 compiling a Go
	// module of a few MiB once per worker.
	readyTimeout = 90 * time.Second
	readyPoll    = 100 * time.Millisecond
	stopTimeout  = 15 * time.Second
	// envoyWorkers is Envoy's --concurrency: more than one worker VM, so the
	// rate limit is checked across VMs sharing one shared-data store.
	envoyWorkers = 2
	// maxEnvoyLog bounds the Envoy output kept for failure reports.
	maxEnvoyLog = 4 << 20
	// rateLimitSlack bounds the requests sent past burst+1 while waiting for
	// the 429, to absorb tokens refilled while the burst was sent.
	rateLimitSlack = 10
	// statsPrefix is how Envoy's /stats names a metric a wasm module defines
	// with proxy_define_metric (/stats/prometheus drops the prefix).
	statsPrefix = "wasmcustom."
)

// envoyBinOrSkip returns the Envoy binary to run, or skips the test.
func envoyBinOrSkip(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("ENVOY_BIN"); bin != "" {
		return bin
	}
	bin, err := exec.LookPath("envoy")
	if err != nil {
		t.Skip("no Envoy: set ENVOY_BIN or put envoy on PATH (make e2e fetches one with func-e)")
	}
	return bin
}

// capped keeps the first max bytes written to it.
type capped struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// portFree fails the test when addr is already taken, naming it.
func portFree(t *testing.T, addr, what string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("%s address %s is in use (%v): stop whatever listens there", what, addr, err)
	}
	_ = ln.Close()
}

// startEnvoy runs Envoy from the repository root with envoy.yaml, waits until
// /ready answers LIVE, and stops it when the test ends.
func startEnvoy(t *testing.T, bin string) {
	t.Helper()
	portFree(t, "127.0.0.1:10000", "Envoy listener")
	portFree(t, "127.0.0.1:9901", "Envoy admin")

	log := &capped{max: maxEnvoyLog}
	cmd := exec.Command(bin, "-c", "envoy.yaml",
		"--disable-hot-restart", // no shared memory with other Envoys on the machine
		"--concurrency", strconv.Itoa(envoyWorkers),
		"--log-level", "info")
	cmd.Dir = ".." // the repository root, where ./security.wasm resolves
	cmd.Stdout, cmd.Stderr = log, log
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		stopProcess(cmd)
		select {
		case <-exited:
		case <-time.After(stopTimeout):
			killProcess(cmd)
			<-exited
		}
		if t.Failed() {
			t.Logf("Envoy output (last 16 KiB):\n%s", tail(log.String(), 16<<10))
		}
	})

	deadline := time.Now().Add(readyTimeout)
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for {
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			t.Fatalf("Envoy exited before it was ready (%v):\n%s", err, tail(log.String(), 16<<10))
		default:
		}
		if resp, err := c.Get(adminURL + "/ready"); err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(b)) == "LIVE" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Envoy not ready after %v:\n%s", readyTimeout, tail(log.String(), 16<<10))
		}
		time.Sleep(readyPoll)
	}
}

// wasmStats reads the filter's counters from Envoy's admin /stats.
func wasmStats(t *testing.T) map[string]int64 {
	t.Helper()
	c := &http.Client{Timeout: requestTimeout}
	resp, err := c.Get(adminURL + "/stats?filter=" + strings.TrimSuffix(statsPrefix, "."))
	if err != nil {
		t.Fatalf("admin /stats: %v", err)
	}
	defer resp.Body.Close()
	stats, err := parseStats(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		t.Fatalf("admin /stats: %v", err)
	}
	return stats
}

// parseStats reads Envoy's plain-text /stats ("name: value" per line) and
// returns the integer values of the names starting with statsPrefix, without
// the prefix. Histograms and other non-integer lines are skipped.
func parseStats(r io.Reader) (map[string]int64, error) {
	out := map[string]int64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ": ")
		if !ok || !strings.HasPrefix(name, statsPrefix) {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
		if err != nil {
			continue
		}
		out[strings.TrimPrefix(name, statsPrefix)] = n
	}
	return out, sc.Err()
}

func TestParseStats(t *testing.T) {
	in := "cluster.upstream.upstream_rq_total: 7\n" +
		"wasmcustom.wasmguard_blocked_total: 3\n" +
		"wasmcustom.wasmguard_requests_total: 12\n" +
		"wasmcustom.some_histogram: P0(nan,0) P25(nan,0)\n" +
		"wasm.envoy.wasm.runtime.v8.active: 3\n"
	got, err := parseStats(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"wasmguard_blocked_total": 3, "wasmguard_requests_total": 12}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("parseStats = %v, want %v", got, want)
	}
}

func TestEnvoy(t *testing.T) {
	bin := envoyBinOrSkip(t)
	if _, err := os.Stat(securityWasm); err != nil {
		t.Fatalf("%s missing: run make build", securityWasm)
	}
	s, err := LoadScenarios(ScenariosFile)
	if err != nil {
		t.Fatal(err)
	}
	up := startUpstream(t, upstreamAt)
	startEnvoy(t, bin)

	sent := 0
	blocked := 0
	t.Run("requests", func(t *testing.T) {
		for _, r := range s.Requests {
			t.Run(r.Name, func(t *testing.T) {
				got, err := send(clientFrom(r.ClientIP), listenerURL, r)
				sent++
				if err != nil {
					t.Fatal(err)
				}
				if err := checkResponse(r, got); err != nil {
					t.Errorf("%s %s from %s:\n%v", r.Method, r.Path, r.ClientIP, err)
				}
				if r.Want.Rule != "" {
					blocked++
					if n := up.reached(r.Name); n != 0 {
						t.Errorf("%s %s must be blocked but reached the upstream %d time(s)", r.Method, r.Path, n)
					}
				}
			})
		}
	})

	t.Run(s.RateLimit.Name, func(t *testing.T) {
		rl := s.RateLimit
		req := Request{Name: rl.Name, ClientIP: rl.ClientIP, Method: rl.Method, Path: rl.Path}
		c := clientFrom(rl.ClientIP)
		start := time.Now()
		var limited *response
		passed := 0
		for i := 0; i < rl.Burst+1+rateLimitSlack && limited == nil; i++ {
			got, err := send(c, listenerURL, req)
			sent++
			if err != nil {
				t.Fatalf("request %d: %v", i+1, err)
			}
			switch got.Status {
			case http.StatusOK:
				passed++
			case http.StatusTooManyRequests:
				limited = &got
			default:
				t.Fatalf("request %d: status %d, want 200 or 429 (body %.300q)", i+1, got.Status, got.Body)
			}
		}
		elapsed := time.Since(start)
		// Tokens refilled while the requests were sent may let a few more
		// through; none may be limited before the burst is used up.
		refilled := int(elapsed.Seconds() * float64(rl.RequestsPerMinute) / 60)
		if limited == nil {
			t.Fatalf("%d requests from %s in %v: none got 429 (burst %d, %d refilled)", passed, rl.ClientIP, elapsed, rl.Burst, refilled)
		}
		if passed < rl.Burst || passed > rl.Burst+refilled {
			t.Errorf("request %d from %s got 429 after %v; want request %d (burst %d, %d token(s) refilled meanwhile)",
				passed+1, rl.ClientIP, elapsed, rl.Burst+1, rl.Burst, refilled)
		}
		if err := checkRateLimited(*limited); err != nil {
			t.Errorf("the 429:\n%v", err)
		}
		other := Request{Name: rl.Name + "-other-client", ClientIP: rl.OtherClientIP, Method: rl.Method, Path: rl.Path, Want: Want{Status: 200, Upstream: true}}
		got, err := send(clientFrom(rl.OtherClientIP), listenerURL, other)
		sent++
		if err != nil {
			t.Fatal(err)
		}
		if err := checkResponse(other, got); err != nil {
			t.Errorf("another client (%s) right after the 429:\n%v", rl.OtherClientIP, err)
		}
	})

	t.Run("stats", func(t *testing.T) {
		st := wasmStats(t)
		for _, n := range counterNames {
			if _, ok := st[n]; !ok {
				t.Errorf("/stats has no %s%s (wasm stats: %v)", statsPrefix, n, st)
			}
		}
		if got := st["wasmguard_requests_total"]; got < int64(sent) {
			t.Errorf("%swasmguard_requests_total = %d, want >= %d requests sent", statsPrefix, got, sent)
		}
		exact := map[string]int64{
			"wasmguard_blocked_total":        int64(blocked),
			"wasmguard_rate_limited_total":   1,
			"wasmguard_monitored_total":      0,
			"wasmguard_body_truncated_total": 0,
			"wasmguard_errors_total":         0,
		}
		for n, want := range exact {
			if got := st[n]; got != want {
				t.Errorf("%s%s = %d, want %d", statsPrefix, n, got, want)
			}
		}
	})
}
