package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmguard/wasmguard/internal/server"
)

const (
	// wasmPath is the filter built by `make build`.
	wasmPath = "../../security.wasm"
	// seedPath is the design configuration.
	seedPath = "../../testdata/config/seed.json"
	// serveStartTimeout bounds serve's start (compiling security.wasm
	// takes a few seconds on a slow machine).
	serveStartTimeout = 60 * time.Second
)

// needWasm skips the test when security.wasm is missing, or fails it
// under CI=true.
func needWasm(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(wasmPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v: CI must build it first (make build)", err)
		}
		t.Skipf("%s missing: run make build (%v)", wasmPath, err)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runCLI runs the command line in-process.
func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb syncBuffer
	code = runContext(context.Background(), args, &env{stdout: &out, stderr: &errb})
	return code, out.String(), errb.String()
}

// served is a `wasmguard serve` running in-process.
type served struct {
	srv            *server.Server
	stdout, stderr *syncBuffer
	stop           func() int // graceful shutdown; returns the exit code
}

// startServe runs `wasmguard serve` with the arguments after the
// loopback listeners on ephemeral ports, and stops it when the test
// ends (failing it unless the shutdown is clean).
func startServe(t *testing.T, args ...string) *served {
	t.Helper()
	return startServeEnv(t, env{}, args...)
}

// startServeEnv is startServe with the test hooks of base (its
// pauseTimeout); its output writers and started hook are replaced.
func startServeEnv(t *testing.T, base env, args ...string) *served {
	t.Helper()
	needWasm(t)
	s := &served{stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan *server.Server, 1)
	exited := make(chan int, 1)
	full := append([]string{"serve", "--wasm", wasmPath, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"}, args...)
	go func() {
		e := base
		e.stdout, e.stderr = s.stdout, s.stderr
		e.started = func(srv *server.Server) { started <- srv }
		exited <- runContext(ctx, full, &e)
	}()
	select {
	case s.srv = <-started:
	case code := <-exited:
		cancel()
		t.Fatalf("serve exited with %d before listening:\n%s", code, s.stderr)
	case <-time.After(serveStartTimeout):
		cancel()
		t.Fatalf("serve not listening after %v:\n%s", serveStartTimeout, s.stderr)
	}
	var once sync.Once
	code := -1
	s.stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-exited:
			case <-time.After(shutdownTimeout + 5*time.Second):
				t.Errorf("serve did not stop after %v", shutdownTimeout+5*time.Second)
			}
		})
		return code
	}
	t.Cleanup(func() {
		if c := s.stop(); c != exitOK {
			t.Errorf("serve exited with %d, want 0:\n%s", c, s.stderr)
		}
		if !strings.Contains(s.stderr.String(), "[info] server: stopped") {
			t.Errorf("serve did not log its stop:\n%s", s.stderr)
		}
	})
	return s
}

func TestDesignConfigIsSeed(t *testing.T) {
	raw, err := os.ReadFile(seedPath)
	if err != nil {
		t.Fatal(err)
	}
	var file, ours any
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(designConfig), &ours); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(file, ours) {
		t.Fatalf("designConfig %s differs from %s %s", designConfig, seedPath, raw)
	}
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		code int
		out  string // in stdout (exit 0) or stderr (exit 2)
	}{
		{nil, exitUsage, "no command given"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"help"}, exitOK, "Usage:\n  wasmguard serve [flags]"},
		{[]string{"--help"}, exitOK, "wasmguard help [COMMAND]"},
		{[]string{"help", "serve"}, exitOK, "--workers N"},
		{[]string{"help", "nope"}, exitUsage, `unknown command "nope"`},
		{[]string{"serve", "--help"}, exitOK, "Usage: wasmguard serve [flags]"},
		{[]string{"validate", "-h"}, exitOK, "Usage: wasmguard validate [flags] CONFIG"},
		{[]string{"check", "--help"}, exitOK, "--body-file FILE"},
		{[]string{"soak", "--help"}, exitOK, "--requests N"},
		{[]string{"serve", "--nope"}, exitUsage, "flag provided but not defined: -nope"},
		{[]string{"serve", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"serve", "--workers", "0"}, exitUsage, "--workers 0: want 1 to 256"},
		{[]string{"serve", "--workers", "257"}, exitUsage, "--workers 257: want 1 to 256"},
		{[]string{"serve", "--workers", "two"}, exitUsage, "invalid value"},
		{[]string{"serve", "--profile", "envoy-2"}, exitUsage, `--profile "envoy-2"`},
		{[]string{"serve", "--failure-policy", "maybe"}, exitUsage, `--failure-policy "maybe"`},
		{[]string{"serve", "--log-level", "loud"}, exitUsage, `--log-level "loud"`},
		{[]string{"serve", "--upstream", "ftp://x"}, exitUsage, "--upstream: upstream \"ftp://x\": scheme must be http or https"},
		{[]string{"validate"}, exitUsage, "missing CONFIG"},
		{[]string{"validate", "a.json", "b.json"}, exitUsage, `want exactly one CONFIG, got "a.json b.json"`},
		{[]string{"validate", "--profile", "x", "a.json"}, exitUsage, `--profile "x"`},
		{[]string{"check"}, exitUsage, "missing CONFIG and the request"},
		{[]string{"check", "c.json"}, exitUsage, `missing "--"`},
		{[]string{"check", "--", "GET", "/"}, exitUsage, "missing CONFIG before --"},
		{[]string{"check", "c.json", "--", "GET"}, exitUsage, "want METHOD URL"},
		{[]string{"check", "c.json", "--", "G T", "/"}, exitUsage, `method "G T"`},
		{[]string{"check", "c.json", "--", "GET", "example.com/x"}, exitUsage, `URL "example.com/x"`},
		{[]string{"check", "c.json", "--", "GET", "http://h:port/x"}, exitUsage, `URL "http://h:port/x": invalid port ":port" after host`},
		{[]string{"check", "--from", "10.0.0.1", "c.json", "--", "GET", "/"}, exitUsage, `--from "10.0.0.1": want IP:PORT`},
		{[]string{"check", "--from", "host:80", "c.json", "--", "GET", "/"}, exitUsage, `--from "host:80": want IP:PORT`},
		{[]string{"check", "c.json", "--", "GET", "/", "no-colon"}, exitUsage, `"no-colon": want a header`},
		{[]string{"check", "c.json", "--", "GET", "/", "--body"}, exitUsage, "--body needs a value"},
		{[]string{"check", "c.json", "--", "GET", "/", "--body", "a", "--body=b"}, exitUsage, "only one --body"},
		{[]string{"soak", "--requests", "0"}, exitUsage, "--requests 0: want 1 to"},
		{[]string{"soak", "--requests", "1000000001"}, exitUsage, "--requests 1000000001: want 1 to 1000000000"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(c.args...)
			where := stdout
			if c.code != exitOK {
				where = stderr
			}
			if code != c.code || !strings.Contains(where, c.out) {
				t.Fatalf("exit %d, want %d with %q in\nstdout:\n%s\nstderr:\n%s", code, c.code, c.out, stdout, stderr)
			}
			if c.code == exitUsage && !strings.Contains(stderr, "Usage:") {
				t.Errorf("a usage error without the usage:\n%s", stderr)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	needWasm(t)
	cases := []struct {
		config string
		code   int
		stdout string
		stderr string // a whole line of stderr
	}{
		{seedPath, exitOK, "OK\n", ""},
		{"../../testdata/config/full.json", exitOK, "OK\n", ""},
		{"testdata/bad-regex.json", exitFail, "", `wasmguard validate: testdata/bad-regex.json: wasmguard: configuration refused: block_patterns[1]: invalid regex "(": missing closing )`},
		{"testdata/typo.json", exitFail, "", `wasmguard validate: testdata/typo.json: wasmguard: configuration refused: rate_limit.burts: unknown key "burts" (did you mean "burst"?)`},
		{"testdata/not-json.json", exitFail, "", "wasmguard validate: testdata/not-json.json: wasmguard: configuration refused: configuration is not valid JSON"},
		{"testdata/missing.json", exitFail, "", "wasmguard validate: configuration: open testdata/missing.json: no such file or directory"},
	}
	for _, c := range cases {
		t.Run(c.config, func(t *testing.T) {
			code, stdout, stderr := runCLI("validate", "--wasm", wasmPath, c.config)
			if code != c.code || stdout != c.stdout {
				t.Fatalf("exit %d stdout %q, want %d %q (stderr %q)", code, stdout, c.code, c.stdout, stderr)
			}
			if c.stderr != "" && !strings.Contains("\n"+stderr, "\n"+c.stderr+"\n") {
				t.Errorf("stderr %q, want the line %q", stderr, c.stderr)
			}
			checkPrefix(t, stderr, "wasmguard validate: ")
		})
	}
	t.Run("flags after CONFIG", func(t *testing.T) {
		if code, stdout, stderr := runCLI("validate", seedPath, "--wasm", wasmPath); code != exitOK || stdout != "OK\n" {
			t.Fatalf("exit %d %q %q", code, stdout, stderr)
		}
	})
	t.Run("missing wasm", func(t *testing.T) {
		code, _, stderr := runCLI("validate", "--wasm", "testdata/nope.wasm", seedPath)
		if code != exitFail || !strings.Contains(stderr, "wasm module testdata/nope.wasm not found: build it with \"make build\"") {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
	})
}

func TestCheck(t *testing.T) {
	needWasm(t)
	cases := []struct {
		name  string
		words []string
		want  []string // each a line, or consecutive lines, of stdout
	}{
		{"blocked path", []string{"GET", "/download/evil.exe"}, []string{
			"status: 403 (blocked)\nrule: block_patterns[0]\nresponse headers:\n  content-type: application/json\n",
			"  x-wasmguard-rule: block_patterns[0]\n",
			"response body:\n  {\"error\":\"request blocked\",\"rule\":\"block_patterns[0]\",\"request_id\":",
			"filter log:\n  [warning] wasmguard: action=block mode=enforce rule=block_patterns[0] target=path method=\"GET\"",
		}},
		{"blocked header", []string{"GET", "http://shop.example/c?x=1", "x-comment: <script>alert(1)</script>"}, []string{
			"status: 403 (blocked)\nrule: block_patterns[1]\n",
		}},
		{"blocked body in chunks", []string{"POST", "/comments", "content-type: application/x-www-form-urlencoded",
			"--body", strings.Repeat("a=b&", 5000) + "c=%3Cscript%3Ealert(1)%3C%2Fscript%3E"}, []string{
			"status: 403 (blocked)\nrule: block_patterns[1]\n",
		}},
		{"allowed", []string{"POST", "http://shop.example/api", "content-type: application/json", "--body={\"a\":\"hi\"}"}, []string{
			"status: continue (the request goes on to the upstream)\nrule: none\nforwarded request headers:\n  :authority: shop.example\n  :path: /api\n  :method: POST\n",
			"  content-length: 10\n  x-forwarded-for: 127.0.0.1\n  x-forwarded-proto: http\n  x-request-id: ",
			"forwarded body: 10 bytes\n",
			"  x-ratelimit-limit: 20\n  x-ratelimit-remaining: 19\n",
			"filter log:\n  (none)\n",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"check", "--wasm", wasmPath, seedPath, "--"}, c.words...)
			code, stdout, stderr := runCLI(args...)
			if code != exitOK {
				t.Fatalf("exit %d:\n%s", code, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
		})
	}
	t.Run("hold_headers with --allow-on-headers-stop-iteration", func(t *testing.T) {
		cfg := filepath.Join(t.TempDir(), "hold.json")
		if err := os.WriteFile(cfg, []byte(`{"block_patterns": [".*<script.*>.*</script>.*"], "hold_headers": true}`), 0o600); err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := runCLI("check", "--wasm", wasmPath, "--allow-on-headers-stop-iteration", cfg, "--",
			"POST", "/comments", "content-type: application/x-www-form-urlencoded", "--body", "msg=<script>alert(1)</script>")
		if code != exitOK || !strings.Contains(stdout, "status: 403 (blocked)\nrule: block_patterns[0]\n") {
			t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
	})
	t.Run("refused config", func(t *testing.T) {
		code, _, stderr := runCLI("check", "--wasm", wasmPath, "testdata/bad-regex.json", "--", "GET", "/")
		if code != exitFail || !strings.Contains(stderr, "wasmguard check: testdata/bad-regex.json: wasmguard: configuration refused: block_patterns[1]") {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
		checkPrefix(t, stderr, "wasmguard check: ")
	})
}

func TestServeRefusedConfig(t *testing.T) {
	needWasm(t)
	code, _, stderr := runCLI("serve", "--wasm", wasmPath, "--listen", "127.0.0.1:0", "--admin", "", "--workers", "1",
		"--config", "testdata/bad-regex.json")
	want := "\nwasmguard serve: testdata/bad-regex.json: wasmguard: configuration refused: block_patterns[1]: invalid regex \"(\": missing closing )\n"
	if code != exitFail || !strings.HasSuffix(stderr, want) {
		t.Fatalf("exit %d, stderr:\n%s\nwant it to end with:%s", code, stderr, want)
	}
}

func TestSoakRefusedConfig(t *testing.T) {
	needWasm(t)
	code, _, stderr := runCLI("soak", "--wasm", wasmPath, "--requests", "1", "--config", "testdata/typo.json")
	want := "wasmguard soak: testdata/typo.json: wasmguard: configuration refused: rate_limit.burts: unknown key \"burts\" (did you mean \"burst\"?)\n"
	if code != exitFail || !strings.HasSuffix(stderr, want) {
		t.Fatalf("exit %d, stderr:\n%s\nwant it to end with:\n%s", code, stderr, want)
	}
}

// checkPrefix fails the test unless every line of out starts with prefix.
func checkPrefix(t *testing.T, out, prefix string) {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if l != "" && !strings.HasPrefix(l, prefix) {
			t.Errorf("stderr line %q does not start with %q", l, prefix)
		}
	}
}

func TestSoakReports(t *testing.T) {
	for n, want := range map[int][]int{
		1:         {1},
		10000:     {10000},
		10001:     {10000, 10001},
		150000:    {10000, 100000, 150000},
		1_000_000: {10000, 100000, 1_000_000},
	} {
		if got := soakReports(n); !reflect.DeepEqual(got, want) {
			t.Errorf("soakReports(%d) = %v, want %v", n, got, want)
		}
	}
}

func TestSoakShort(t *testing.T) {
	needWasm(t)
	code, stdout, stderr := runCLI("soak", "--wasm", wasmPath, "--requests", "2000")
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, w := range []string{"plugin-memory", "\n      2000 ", "wasmguard_requests_total: 2000\n", "wasmhost.vm.failed: 0\n"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("stdout lacks %q:\n%s", w, stdout)
		}
	}
	// The mix: every tenth request is an .exe download, every tenth
	// comes from the one client over its limit.
	for _, w := range []string{"200:", "403:", "429:"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("the tally lacks %s:\n%s", w, stdout)
		}
	}
}
