package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/wasmguard/wasmguard/internal/wasmhost"
)

const (
	// securityWasmPath is the filter built by `make build`.
	securityWasmPath = "../../security.wasm"
	// seedConfigPath is the design configuration.
	seedConfigPath = "../../testdata/config/seed.json"
	// testPluginDir is the wasmhost test plugin, whose per-request words
	// (header x-test) make it pause, rewrite, reply or trap on demand.
	testPluginDir = "../wasmhost/testdata/testplugin"
)

var (
	wasmOnce     sync.Once
	securityWasm []byte
	securityErr  error

	// testPlugin is testPluginDir built for wasip1 by TestMain.
	testPlugin []byte
)

// securityWasmOrSkip returns security.wasm. When it is missing, the test
// fails under CI=true and is skipped elsewhere, with the reason.
func securityWasmOrSkip(tb testing.TB) []byte {
	tb.Helper()
	wasmOnce.Do(func() { securityWasm, securityErr = os.ReadFile(securityWasmPath) })
	if securityErr != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%v: CI must build it first (make build)", securityErr)
		}
		tb.Skipf("%s missing: run make build (%v)", securityWasmPath, securityErr)
	}
	return securityWasm
}

func seedConfig(tb testing.TB) []byte {
	tb.Helper()
	b, err := os.ReadFile(seedConfigPath)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// discard is a host logger for tests.
func discard(wasmhost.LogRecord) {}

// newSeedHost starts security.wasm with the seed configuration (or
// config, when given) on the default (Envoy 1.33) profile.
func newSeedHost(tb testing.TB, workers int, config []byte) *wasmhost.Host {
	tb.Helper()
	wasm := securityWasmOrSkip(tb)
	if config == nil {
		config = seedConfig(tb)
	}
	h, err := wasmhost.New(context.Background(), wasm, wasmhost.Options{
		Workers: workers, PluginConfig: config, PluginName: "wasmguard", RootID: "wasmguard", VMID: "wasmguard",
		LogLevel: wasmhost.LogInfo, Logger: discard,
	})
	if err != nil {
		tb.Fatalf("starting security.wasm: %v", err)
	}
	tb.Cleanup(func() { h.Close(context.Background()) })
	return h
}

// newPluginHost starts the test plugin.
func newPluginHost(tb testing.TB, opts wasmhost.Options) *wasmhost.Host {
	tb.Helper()
	if opts.Logger == nil {
		opts.Logger = discard
	}
	h, err := wasmhost.New(context.Background(), testPlugin, opts)
	if err != nil {
		tb.Fatalf("starting the test plugin: %v", err)
	}
	tb.Cleanup(func() { h.Close(context.Background()) })
	return h
}

// proxyServer serves a Handler on loopback and returns its base URL.
func proxyServer(tb testing.TB, opts Options) string {
	tb.Helper()
	h, err := NewHandler(opts)
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(h)
	tb.Cleanup(srv.Close)
	return srv.URL
}

// client is an HTTP client without proxies or redirects.
var client = &http.Client{
	Transport: &http.Transport{Proxy: nil, DisableCompression: true},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "server-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testPlugin, err = buildTestPlugin(dir)
	os.RemoveAll(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "building the test plugin:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// buildTestPlugin builds testPluginDir with the Go toolchain running the
// tests: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared.
func buildTestPlugin(dir string) ([]byte, error) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			return nil, fmt.Errorf("no go command: %w", err)
		}
	}
	out := filepath.Join(dir, "testplugin.wasm")
	cmd := exec.Command(goBin, "build", "-buildmode=c-shared", "-o", out, testPluginDir)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s: %v\n%s", cmd, err, msg)
	}
	return os.ReadFile(out)
}
