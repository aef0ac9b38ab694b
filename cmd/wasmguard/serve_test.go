package main

// The HTTP end-to-end tests of issue 3 (test 2): `wasmguard serve` started
// in-process on loopback, driven by a real net/http client with the
// scenarios the Envoy tests run (e2e/testdata/scenarios.json).

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmguard/wasmguard/internal/server"
)

const (
	// scenariosPath is the scenario file shared with the Envoy tests; its
	// schema is e2e/scenarios.go (another module, so parsed again here).
	scenariosPath = "../../e2e/testdata/scenarios.json"
	// requestTimeout bounds one request.
	requestTimeout = 10 * time.Second
	// maxResponseBody bounds the response bytes a test reads.
	maxResponseBody = 1 << 20
	// rateLimitSlack bounds the requests sent past burst+1 while waiting
	// for the 429 (tokens refill while the burst is sent).
	rateLimitSlack = 10

	// The concurrency test: hammerClients goroutines of one client
	// address for hammerFor or hammerMax requests, whichever comes first.
	hammerWorkers = 4
	hammerClients = 8
	hammerFor     = 1500 * time.Millisecond
	hammerMax     = 20000
)

// scenarios mirrors e2e.Scenarios (e2e/scenarios.go).
type scenarios struct {
	Comment  []string `json:"comment"`
	Requests []struct {
		Name     string            `json:"name"`
		ClientIP string            `json:"client_ip"`
		Method   string            `json:"method"`
		Path     string            `json:"path"`
		Headers  map[string]string `json:"headers"`
		Body     string            `json:"body"`
		Want     struct {
			Status   int    `json:"status"`
			Rule     string `json:"rule"`
			Upstream bool   `json:"upstream"`
		} `json:"want"`
	} `json:"requests"`
	RateLimit struct {
		Name              string `json:"name"`
		ClientIP          string `json:"client_ip"`
		OtherClientIP     string `json:"other_client_ip"`
		Method            string `json:"method"`
		Path              string `json:"path"`
		RequestsPerMinute int    `json:"requests_per_minute"`
		Burst             int    `json:"burst"`
	} `json:"rate_limit"`
}

func loadScenarios(t *testing.T) scenarios {
	t.Helper()
	raw, err := os.ReadFile(scenariosPath)
	if err != nil {
		t.Fatal(err)
	}
	var s scenarios
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("%s: %v", scenariosPath, err)
	}
	if len(s.Requests) == 0 || s.RateLimit.Burst < 1 || s.RateLimit.RequestsPerMinute < 1 {
		t.Fatalf("%s: no requests or no rate limit", scenariosPath)
	}
	return s
}

// clientAt returns a client whose connections come from ip, so the filter
// sees ip as source.address (Linux routes all of 127.0.0.0/8 to lo).
// keepAlive reuses connections.
func clientAt(ip string, keepAlive bool) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: requestTimeout}
	return &http.Client{
		Timeout: requestTimeout,
		Transport: &http.Transport{Proxy: nil, DialContext: d.DialContext, DisableKeepAlives: !keepAlive,
			MaxIdleConnsPerHost: hammerClients, DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// sendRaw sends method and the raw target (path and query byte for byte).
func sendRaw(c *http.Client, base, method, target string, header map[string]string, body string) (response, error) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+target, r)
	if err != nil {
		return response{}, err
	}
	req.URL.Opaque, req.URL.RawQuery, _ = strings.Cut(target, "?")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	return response{resp.StatusCode, resp.Header, b}, err
}

// stats reads the admin /stats page.
func stats(t *testing.T, admin string) map[string]int64 {
	t.Helper()
	resp, err := clientAt("127.0.0.1", false).Get("http://" + admin + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), ": ")
		n, err := strconv.ParseInt(v, 10, 64)
		if !ok || err != nil {
			t.Fatalf("/stats line %q is not \"name: value\"", sc.Text())
		}
		out[name] = n
	}
	return out
}

// checkLimited checks a 429 of the filter.
func checkLimited(t *testing.T, got response, burst int) {
	t.Helper()
	if n, err := strconv.Atoi(got.header.Get("retry-after")); err != nil || n < 1 {
		t.Errorf("retry-after %q, want whole seconds >= 1", got.header.Get("retry-after"))
	}
	if got.header.Get("x-ratelimit-limit") != strconv.Itoa(burst) {
		t.Errorf("x-ratelimit-limit %q, want %d", got.header.Get("x-ratelimit-limit"), burst)
	}
	if n, err := strconv.Atoi(got.header.Get("x-ratelimit-remaining")); err != nil || n < 0 {
		t.Errorf("x-ratelimit-remaining %q, want an integer >= 0", got.header.Get("x-ratelimit-remaining"))
	}
	var b struct{ Error string }
	if err := json.Unmarshal(got.body, &b); err != nil || b.Error != "rate limited" || !strings.HasPrefix(got.header.Get("content-type"), "application/json") {
		t.Errorf("429 body %.300q (%s), want JSON with error \"rate limited\"", got.body, got.header.Get("content-type"))
	}
}

// TestServeScenarios runs every scenario of e2e/testdata/scenarios.json
// against serve with the default configuration and two workers.
func TestServeScenarios(t *testing.T) {
	s := startServe(t, "--workers", "2")
	base := "http://" + s.srv.Addr()
	sc := loadScenarios(t)

	banner := s.stdout.String()
	for _, w := range []string{
		"curl -i " + base + "/index.html\n",
		"curl -i '" + base + "/download/evil.exe'\n",
		"for i in $(seq 25); do curl -s -o /dev/null -w '%{http_code}\\n' " + base + "/; done\n",
	} {
		if !strings.Contains(banner, w) {
			t.Errorf("the banner lacks %q:\n%s", w, banner)
		}
	}

	sent, blocked := 0, 0
	t.Run("requests", func(t *testing.T) {
		for _, r := range sc.Requests {
			t.Run(r.Name, func(t *testing.T) {
				got, err := sendRaw(clientAt(r.ClientIP, false), base, r.Method, r.Path, r.Headers, r.Body)
				sent++
				if err != nil {
					t.Fatal(err)
				}
				if got.status != r.Want.Status {
					t.Fatalf("%s %s from %s: status %d, want %d (body %.300q)", r.Method, r.Path, r.ClientIP, got.status, r.Want.Status, got.body)
				}
				fromEcho := got.header.Get(server.EchoHeader) == "echo"
				if r.Want.Rule != "" {
					blocked++
					if rule := got.header.Get("x-wasmguard-rule"); rule != r.Want.Rule {
						t.Errorf("x-wasmguard-rule %q, want %q", rule, r.Want.Rule)
					}
					var b struct{ Error, Rule string }
					if err := json.Unmarshal(got.body, &b); err != nil || b.Error != "request blocked" || b.Rule != r.Want.Rule ||
						!strings.HasPrefix(got.header.Get("content-type"), "application/json") {
						t.Errorf("body %.300q (%s), want JSON error \"request blocked\", rule %q", got.body, got.header.Get("content-type"), r.Want.Rule)
					}
					if fromEcho {
						t.Error("a blocked request reached the upstream")
					}
				}
				if r.Want.Upstream {
					var e server.EchoReply
					if !fromEcho {
						t.Fatal("the response did not come from the upstream")
					}
					if err := json.Unmarshal(got.body, &e); err != nil {
						t.Fatal(err)
					}
					if e.Method != r.Method || e.URI != r.Path || e.Body != r.Body || e.BodyBytes != int64(len(r.Body)) {
						t.Errorf("upstream saw %s %s body %q, want %s %s body %q", e.Method, e.URI, e.Body, r.Method, r.Path, r.Body)
					}
				}
			})
		}
	})

	rl := sc.RateLimit
	t.Run(rl.Name, func(t *testing.T) {
		c := clientAt(rl.ClientIP, true)
		start := time.Now()
		passed := 0
		var limited *response
		for i := 0; i < rl.Burst+1+rateLimitSlack && limited == nil; i++ {
			got, err := sendRaw(c, base, rl.Method, rl.Path, nil, "")
			sent++
			if err != nil {
				t.Fatalf("request %d: %v", i+1, err)
			}
			switch got.status {
			case http.StatusOK:
				passed++
			case http.StatusTooManyRequests:
				limited = &got
			default:
				t.Fatalf("request %d: status %d, want 200 or 429", i+1, got.status)
			}
		}
		refilled := int(time.Since(start).Seconds() * float64(rl.RequestsPerMinute) / 60)
		if limited == nil {
			t.Fatalf("%d requests passed, none got 429 (burst %d)", passed, rl.Burst)
		}
		if passed < rl.Burst || passed > rl.Burst+refilled {
			t.Errorf("request %d got 429, want request %d (burst %d, %d refilled meanwhile)", passed+1, rl.Burst+1, rl.Burst, refilled)
		}
		checkLimited(t, *limited, rl.Burst)
		got, err := sendRaw(clientAt(rl.OtherClientIP, false), base, rl.Method, rl.Path, nil, "")
		sent++
		if err != nil {
			t.Fatal(err)
		}
		if got.status != http.StatusOK || got.header.Get(server.EchoHeader) != "echo" {
			t.Errorf("another client right after the 429: status %d, want 200 from the upstream", got.status)
		}
	})

	t.Run("stats", func(t *testing.T) {
		st := stats(t, s.srv.AdminAddr())
		want := map[string]int64{
			"wasmguard_requests_total":       int64(sent),
			"wasmguard_blocked_total":        int64(blocked),
			"wasmguard_rate_limited_total":   1,
			"wasmguard_monitored_total":      0,
			"wasmguard_body_truncated_total": 0,
			"wasmguard_errors_total":         0,
			"wasmhost.vm.created":            2,
			"wasmhost.vm.failed":             0,
		}
		for n, v := range want {
			if got, ok := st[n]; !ok || got != v {
				t.Errorf("/stats %s = %d (present %v), want %d", n, got, ok, v)
			}
		}
		resp, err := clientAt("127.0.0.1", false).Get("http://" + s.srv.AdminAddr() + "/ready")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "LIVE\n" {
			t.Errorf("/ready = %d %q", resp.StatusCode, b)
		}
	})

	t.Run("logs", func(t *testing.T) {
		if code := s.stop(); code != exitOK {
			t.Fatalf("exit %d", code)
		}
		logs := s.stderr.String()
		line := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[(info|warning)\] \S`)
		var access, blockedLines int
		for _, l := range strings.Split(strings.TrimSuffix(logs, "\n"), "\n") {
			if !line.MatchString(l) {
				t.Errorf("log line %q is not \"TIME [level] message\"", l)
			}
			if strings.Contains(l, "] access: ") {
				access++
			}
			if strings.Contains(l, "wasmguard: action=block ") {
				blockedLines++
			}
		}
		if access != sent || blockedLines != blocked {
			t.Errorf("%d access and %d block lines, want %d and %d:\n%s", access, blockedLines, sent, blocked, logs)
		}
	})
}

// TestServeRateLimitAcrossWorkers hammers four workers from one client
// address: the requests allowed in total stay within burst + rate x
// elapsed, because the bucket lives in shared data, not in a worker.
func TestServeRateLimitAcrossWorkers(t *testing.T) {
	s := startServe(t, "--workers", strconv.Itoa(hammerWorkers), "--log-level", "info")
	base := "http://" + s.srv.Addr()
	sc := loadScenarios(t)
	rate, burst := float64(sc.RateLimit.RequestsPerMinute)/60, sc.RateLimit.Burst
	const ip = "127.0.0.77"
	c := clientAt(ip, true)

	start := time.Now()
	// One request first creates the client's slot, so no worker can race
	// another to create it (the one write that cannot be a CAS).
	if got, err := sendRaw(c, base, "GET", "/warm", nil, ""); err != nil || got.status != 200 {
		t.Fatalf("warm-up: %v %d", err, got.status)
	}
	var allowed, limited, total atomic.Int64
	allowed.Add(1)
	var wg sync.WaitGroup
	errs := make(chan error, hammerClients)
	deadline := start.Add(hammerFor)
	for g := 0; g < hammerClients; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && total.Add(1) <= hammerMax {
				got, err := sendRaw(c, base, "GET", "/hammer", nil, "")
				if err != nil {
					errs <- err
					return
				}
				switch got.status {
				case http.StatusOK:
					allowed.Add(1)
				case http.StatusTooManyRequests:
					limited.Add(1)
				default:
					errs <- fmt.Errorf("status %d", got.status)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	limit := burst + int(math.Floor(rate*elapsed.Seconds()))
	t.Logf("%d workers, %d clients, %v: %d allowed, %d limited; bound %d", hammerWorkers, hammerClients, elapsed.Round(time.Millisecond), allowed.Load(), limited.Load(), limit)
	if int(allowed.Load()) > limit {
		t.Errorf("%d requests allowed in %v, more than burst %d + %.2f/s x %v = %d", allowed.Load(), elapsed, burst, rate, elapsed, limit)
	}
	if int(allowed.Load()) < burst || limited.Load() == 0 {
		t.Errorf("%d allowed and %d limited: want at least the burst (%d) allowed and some limited", allowed.Load(), limited.Load(), burst)
	}
	if st := stats(t, s.srv.AdminAddr()); st["wasmguard_rate_limited_total"] != limited.Load() {
		t.Errorf("the filter counted %d rate-limited, the client saw %d", st["wasmguard_rate_limited_total"], limited.Load())
	}
	// Every worker served some of them.
	s.stop()
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile(`access: 127\.0\.0\.77:\d+ "GET /hammer" \d+ \d+B \S+ (worker=\d+)`).FindAllStringSubmatch(s.stderr.String(), -1) {
		seen[m[1]] = true
	}
	if len(seen) != hammerWorkers {
		t.Errorf("requests ran on %d worker(s) %v, want all %d", len(seen), seen, hammerWorkers)
	}
}

// TestServeHeadersStopIteration runs form posts through `serve` with the
// seed configuration, which lets the headers go and holds the body, and
// with hold_headers, which holds the headers too: that works with
// --allow-on-headers-stop-iteration (Envoy's allow_on_headers_stop_iteration,
// Envoy 1.35 and later); without it, as in Envoy by default, the filter gets
// no body callback while it holds the headers, so a request with a body
// gets no verdict and ends when the pause timeout does (408).
func TestServeHeadersStopIteration(t *testing.T) {
	const pauseTimeout = 300 * time.Millisecond
	seed, err := os.ReadFile(seedPath)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(seed, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["hold_headers"] = true
	hold, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	holdPath := filepath.Join(t.TempDir(), "hold-headers.json")
	if err := os.WriteFile(holdPath, hold, 0o600); err != nil {
		t.Fatal(err)
	}
	const (
		evil   = "msg=<script>alert(1)</script>"
		benign = "msg=hello+world&n=1"
	)
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	for _, c := range []struct {
		name         string
		args         []string
		evil, benign int
	}{
		{"seed", nil, 403, 200},
		{"hold_headers with --allow-on-headers-stop-iteration", []string{"--config", holdPath, "--allow-on-headers-stop-iteration"}, 403, 200},
		{"hold_headers without it", []string{"--config", holdPath}, http.StatusRequestTimeout, http.StatusRequestTimeout},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := startServeEnv(t, env{pauseTimeout: pauseTimeout}, append([]string{"--workers", "1"}, c.args...)...)
			base := "http://" + s.srv.Addr()
			if banner, allow := s.stdout.String(), len(c.args) > 2; strings.Contains(banner, ", allow_on_headers_stop_iteration,") != allow {
				t.Errorf("the banner names allow_on_headers_stop_iteration: %v, want %v:\n%s", !allow, allow, banner)
			}
			cl := clientAt("127.0.0.1", false)
			got, err := sendRaw(cl, base, "POST", "/comment", form, evil)
			if err != nil {
				t.Fatal(err)
			}
			if got.status != c.evil {
				t.Fatalf("POST %q: %d, want %d (%.300q)", evil, got.status, c.evil, got.body)
			}
			if c.evil == 403 && got.header.Get("x-wasmguard-rule") != "block_patterns[1]" {
				t.Errorf("POST %q: x-wasmguard-rule %q, want block_patterns[1]", evil, got.header.Get("x-wasmguard-rule"))
			}
			got, err = sendRaw(cl, base, "POST", "/comment", form, benign)
			if err != nil {
				t.Fatal(err)
			}
			if got.status != c.benign {
				t.Fatalf("POST %q: %d, want %d (%.300q)", benign, got.status, c.benign, got.body)
			}
			if c.benign == 200 {
				var echo server.EchoReply
				if err := json.Unmarshal(got.body, &echo); err != nil || echo.Body != benign || echo.Headers["content-type"] != form["Content-Type"] {
					t.Errorf("the echo upstream got %+v (%v), want the body %q intact", echo, err, benign)
				}
			}
			if c.evil == http.StatusRequestTimeout && !strings.Contains(s.stderr.String(), "request paused past the pause timeout") {
				t.Errorf("no access line says the request was paused past the pause timeout:\n%s", s.stderr)
			}
		})
	}
}
