package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmguard/wasmguard/internal/wasmhost"
)

func TestEchoBodyLimit(t *testing.T) {
	for _, n := range []int{0, 1, MaxEchoBody, MaxEchoBody + 1, 3 * MaxEchoBody} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			body := bytes.Repeat([]byte("z"), n)
			req := httptest.NewRequest("POST", "http://a.example/p%2Fq?x=1", bytes.NewReader(body))
			req.Header.Set("X-One", "1")
			resp, err := Echo{}.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			var e EchoReply
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || resp.Header.Get(EchoHeader) != "echo" || resp.ContentLength != int64(len(b)) {
				t.Errorf("status %d, %s %q, content-length %d for %d bytes", resp.StatusCode, EchoHeader, resp.Header.Get(EchoHeader), resp.ContentLength, len(b))
			}
			if e.BodyBytes != int64(n) || len(e.Body) != min(n, MaxEchoBody) || e.BodyTruncated != (n > MaxEchoBody) {
				t.Errorf("body_bytes %d, body %d bytes, truncated %v; want %d, %d, %v",
					e.BodyBytes, len(e.Body), e.BodyTruncated, n, min(n, MaxEchoBody), n > MaxEchoBody)
			}
			if e.Method != "POST" || e.URI != "/p%2Fq?x=1" || e.Authority != "a.example" || e.Headers["x-one"] != "1" {
				t.Errorf("echo %+v", e)
			}
		})
	}
}

func TestNewProxyRefuses(t *testing.T) {
	for _, u := range []string{"", "ftp://h", "http://", "http://h?x=1", "http://h#f", "http://u:p@h", "://x", "h:80"} {
		if _, err := NewProxy(u); err == nil {
			t.Errorf("NewProxy(%q) accepted", u)
		} else if !strings.Contains(err.Error(), "upstream") {
			t.Errorf("NewProxy(%q) = %v: the error does not name the upstream", u, err)
		}
	}
}

// seen is what a real upstream server received.
type seen struct {
	uri, host, body, ua string
}

// TestProxyForwards runs requests through the handler to a real HTTP
// upstream: raw target (with the upstream's path prefix), original Host,
// body, no user-agent invented; a target starting with "//" stays a path;
// a streamed response comes back intact through the response phase.
func TestProxyForwards(t *testing.T) {
	var mu sync.Mutex
	var last seen
	big := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320000 bytes
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		last = seen{r.RequestURI, r.Host, string(b), r.Header.Get("User-Agent")}
		mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/big") {
			// Streamed without a length, in several writes.
			for i := 0; i < len(big); i += 50000 {
				w.Write(big[i:min(i+50000, len(big))])
				w.(http.Flusher).Flush()
			}
			return
		}
		w.Header().Set("X-Upstream", "real")
		fmt.Fprint(w, "ok")
	}))
	defer up.Close()
	for _, prefix := range []string{"", "/prefix"} {
		rt, err := NewProxy(up.URL + prefix + "/")
		if err != nil {
			t.Fatal(err)
		}
		base := proxyServer(t, Options{Host: newSeedHost(t, 1, nil), Upstream: rt})
		for _, c := range []struct {
			target, body string
		}{
			{"/a%2Fb?q=%3Cb%3E&x", ""},
			{"//etc/passwd", ""},
			{"/post", "hello upstream"},
		} {
			t.Run(prefix+c.target, func(t *testing.T) {
				req, _ := http.NewRequest("POST", base+"/", strings.NewReader(c.body))
				path, query, _ := strings.Cut(c.target, "?")
				req.URL.Opaque, req.URL.RawQuery = path, query
				if strings.HasPrefix(path, "//") {
					req.URL.Opaque = "http://" + req.URL.Host + path
				}
				req.Host = "shop.example"
				req.Header["User-Agent"] = []string{""}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(b) != "ok" || resp.Header.Get("X-Upstream") != "real" {
					t.Fatalf("status %d body %q headers %v", resp.StatusCode, b, resp.Header)
				}
				mu.Lock()
				got := last
				mu.Unlock()
				want := seen{prefix + c.target, "shop.example", c.body, ""}
				if strings.HasPrefix(path, "//") {
					want.host = req.URL.Host // absolute-form: the URL's authority wins
				}
				if got != want {
					t.Errorf("upstream saw %+v, want %+v", got, want)
				}
			})
		}
		t.Run(prefix+"/big", func(t *testing.T) {
			got := send(t, nil, "GET", base+"/big", nil, nil)
			if got.status != 200 || !bytes.Equal(got.body, big) {
				t.Fatalf("status %d, %d bytes, want 200 and the %d bytes sent", got.status, len(got.body), len(big))
			}
			if got.header.Get("x-ratelimit-limit") != "20" {
				t.Error("the response did not pass the filter")
			}
		})
	}
}

func TestAdmin(t *testing.T) {
	host := newSeedHost(t, 1, nil)
	a := NewAdmin(host)
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Code, rec.Body.String()
	}
	code, body := get("/stats")
	if code != 200 || !strings.Contains(body, "wasmguard_requests_total: 0\n") || !strings.Contains(body, "wasmhost.vm.created: 1\n") {
		t.Errorf("/stats = %d %q", code, body)
	}
	code, body = get("/stats?filter=blocked")
	if code != 200 || body != "wasmguard_blocked_total: 0\n" {
		t.Errorf("/stats?filter=blocked = %d %q", code, body)
	}
	if code, body = get("/stats?filter=("); code != 400 || !strings.Contains(body, "filter") {
		t.Errorf("/stats?filter=( = %d %q, want 400 naming the filter", code, body)
	}
	if code, _ = get("/stats?filter=" + strings.Repeat("a", MaxStatsFilter)); code != 200 {
		t.Errorf("a filter of MaxStatsFilter bytes: %d, want 200", code)
	}
	if code, _ = get("/stats?filter=" + strings.Repeat("a", MaxStatsFilter+1)); code != 400 {
		t.Errorf("a filter of MaxStatsFilter+1 bytes: %d, want 400", code)
	}
	if code, body = get("/ready"); code != 200 || body != "LIVE\n" {
		t.Errorf("/ready = %d %q", code, body)
	}
	if code, _ = get("/nope"); code != 404 {
		t.Errorf("/nope = %d, want 404", code)
	}
	a.SetDraining()
	if code, body = get("/ready"); code != 503 || body != "DRAINING\n" {
		t.Errorf("/ready while draining = %d %q", code, body)
	}
}

func TestStartAndShutdown(t *testing.T) {
	host := newSeedHost(t, 1, nil)
	var mu sync.Mutex
	var lines []string
	s, err := Start(Config{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Handler: Options{Host: host,
		Log: func(l wasmhost.LogLevel, m string) { mu.Lock(); lines = append(lines, l.String()+" "+m); mu.Unlock() }}})
	if err != nil {
		t.Fatal(err)
	}
	if got := send(t, nil, "GET", "http://"+s.Addr()+"/download/x.exe", nil, nil); got.status != 403 {
		t.Errorf("proxy: %d, want 403", got.status)
	}
	if got := send(t, nil, "GET", "http://"+s.AdminAddr()+"/stats?filter=blocked", nil, nil); string(got.body) != "wasmguard_blocked_total: 1\n" {
		t.Errorf("admin /stats: %q", got.body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Get("http://" + s.Addr() + "/"); err == nil {
		t.Error("the proxy still answers after Shutdown")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lines) != 1 || !strings.HasPrefix(lines[0], `info access: 127.0.0.1:`) || !strings.Contains(lines[0], `"GET /download/x.exe" 403`) {
		t.Errorf("log lines %q, want one access line", lines)
	}

	// A taken address is an error naming it.
	s2, err := Start(Config{Listen: "127.0.0.1:0", Handler: Options{Host: host}})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Shutdown(context.Background())
	if s2.AdminAddr() != "" {
		t.Errorf("AdminAddr = %q without an admin listener", s2.AdminAddr())
	}
	if _, err := Start(Config{Listen: s2.Addr(), Handler: Options{Host: host}}); err == nil || !strings.Contains(err.Error(), s2.Addr()) {
		t.Errorf("Start on a taken address: %v", err)
	}
	if _, err := Start(Config{Listen: "127.0.0.1:0", Admin: s2.Addr(), Handler: Options{Host: host}}); err == nil || !strings.Contains(err.Error(), "admin") {
		t.Errorf("Start with a taken admin address: %v", err)
	}
}
