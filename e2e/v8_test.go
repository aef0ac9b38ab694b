package e2e

// Test 5 of the host issue: security.wasm in V8, the engine Envoy uses, through
// Node.js and the Envoy-like import object in v8/host.mjs. The host itself is
// tested first against two small plugins built from internal/ with the same
// SDK, so a failure of TestV8SecurityWasm points at the filter, not the host.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	hostScript   = "v8/host.mjs"
	securityWasm = "../security.wasm"

	// nodeTimeout bounds one run of host.mjs (loading a Go module of a few
	// MiB and running two requests takes well under a second).
	nodeTimeout = 60 * time.Second
	// buildTimeout bounds building one fixture plugin.
	buildTimeout = 3 * time.Minute
)

// counterNames are the counters security.wasm defines at plugin start.
var counterNames = []string{
	"wasmguard_requests_total",
	"wasmguard_blocked_total",
	"wasmguard_rate_limited_total",
	"wasmguard_monitored_total",
	"wasmguard_body_truncated_total",
	"wasmguard_errors_total",
}

// v8Result is host.mjs's JSON output.
type v8Result struct {
	OK            bool   `json:"ok"`
	ABIVersion    string `json:"abi_version"`
	Imports       []string
	Configuration string
	Plugin        struct {
		VMStart   *bool `json:"vm_start"`
		Configure *bool `json:"configure"`
	}
	Requests []struct {
		Name          string `json:"name"`
		Path          string `json:"path"`
		Verdict       string `json:"verdict"`
		LocalResponse *struct {
			Status  int         `json:"status"`
			Headers [][2]string `json:"headers"`
			Body    string      `json:"body"`
		} `json:"local_response"`
	}
	Metrics        map[string]int64
	PropertiesRead []string `json:"properties_read"`
	Calls          map[string]int
	Logs           []struct{ Level, Message string }
	Deviations     []string
}

// nodeOrSkip returns the node binary, or skips the test.
func nodeOrSkip(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not on PATH: the V8 checks need Node.js")
	}
	return node
}

// runHost runs host.mjs on a module and returns its parsed output and exit
// code. Output that is not host.mjs's JSON fails the test.
func runHost(t *testing.T, node, wasm string, extra ...string) (v8Result, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), nodeTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, node, append([]string{hostScript, wasm}, extra...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		code = exitErr.ExitCode()
	case err != nil:
		t.Fatalf("node %s %s: %v\nstderr: %s", hostScript, wasm, err, stderr.String())
	}
	var res v8Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("node %s %s (exit %d): output is not JSON: %v\nstdout: %.2000s\nstderr: %.2000s", hostScript, wasm, code, err, stdout.String(), stderr.String())
	}
	return res, code
}

// buildFixture builds one of the plugins under internal/ for wasip1.
func buildFixture(t *testing.T, pkg string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not on PATH: cannot build %s", pkg)
	}
	out := filepath.Join(t.TempDir(), filepath.Base(pkg)+".wasm")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-buildmode=c-shared", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared %s: %v\n%s", pkg, err, b)
	}
	return out
}

// checkContract asserts what security.wasm must do in V8 with the seed
// configuration; the fixture plugin implements the same contract.
func checkContract(t *testing.T, res v8Result, code int) {
	t.Helper()
	if code != 0 || !res.OK {
		t.Fatalf("host.mjs exit %d, ok=%v, deviations: %q\nlogs: %+v", code, res.OK, res.Deviations, res.Logs)
	}
	if !sameJSON(t, res.Configuration, DesignConfiguration) {
		t.Errorf("host.mjs configured the plugin with %s, want the design configuration", res.Configuration)
	}
	if !strings.HasPrefix(res.ABIVersion, "proxy_abi_version_0_2_") {
		t.Errorf("abi_version = %q, want proxy_abi_version_0_2_*", res.ABIVersion)
	}
	if res.Plugin.VMStart == nil || !*res.Plugin.VMStart || res.Plugin.Configure == nil || !*res.Plugin.Configure {
		t.Fatalf("plugin start: vm_start=%v configure=%v, want both true", res.Plugin.VMStart, res.Plugin.Configure)
	}
	if len(res.Requests) != 2 {
		t.Fatalf("%d requests ran, want 2", len(res.Requests))
	}

	blocked := res.Requests[0]
	if blocked.Path != "/download/evil.exe" || blocked.Verdict != "local_response" || blocked.LocalResponse == nil {
		t.Fatalf("GET %s: verdict %q, want a local response", blocked.Path, blocked.Verdict)
	}
	lr := blocked.LocalResponse
	if lr.Status != 403 {
		t.Errorf("GET %s: status %d, want 403", blocked.Path, lr.Status)
	}
	hdr := func(name string) string {
		for _, h := range lr.Headers {
			if strings.EqualFold(h[0], name) {
				return h[1]
			}
		}
		return ""
	}
	if got := hdr("content-type"); got != "application/json" {
		t.Errorf("GET %s: content-type %q, want application/json", blocked.Path, got)
	}
	if got := hdr("x-wasmguard-rule"); got != "block_patterns[0]" {
		t.Errorf("GET %s: x-wasmguard-rule %q, want block_patterns[0]", blocked.Path, got)
	}
	var body struct{ Error, Rule string }
	if err := json.Unmarshal([]byte(lr.Body), &body); err != nil {
		t.Errorf("GET %s: body is not JSON: %v: %s", blocked.Path, err, lr.Body)
	} else if body.Error != "request blocked" || body.Rule != "block_patterns[0]" {
		t.Errorf("GET %s: body %s, want error \"request blocked\" and rule \"block_patterns[0]\"", blocked.Path, lr.Body)
	}

	allowed := res.Requests[1]
	if allowed.Path != "/index.html" || allowed.Verdict != "continue" || allowed.LocalResponse != nil {
		t.Errorf("GET %s: verdict %q (local response %+v), want continue", allowed.Path, allowed.Verdict, allowed.LocalResponse)
	}

	for _, n := range counterNames {
		if _, ok := res.Metrics[n]; !ok {
			t.Errorf("counter %s not defined (metrics: %v)", n, res.Metrics)
		}
	}
	wantCounts := map[string]int64{"wasmguard_requests_total": 2, "wasmguard_blocked_total": 1, "wasmguard_rate_limited_total": 0, "wasmguard_errors_total": 0}
	for n, want := range wantCounts {
		if got := res.Metrics[n]; got != want {
			t.Errorf("counter %s = %d, want %d", n, got, want)
		}
	}
	if !slices.Contains(res.PropertiesRead, "source.address") {
		t.Errorf("the plugin never read source.address (read: %v); the rate-limit key comes from it", res.PropertiesRead)
	}
}

func TestV8HostWithFixturePlugin(t *testing.T) {
	node := nodeOrSkip(t)
	res, code := runHost(t, node, buildFixture(t, "./internal/v8fixture"))
	checkContract(t, res, code)
	if got := res.Calls["env.proxy_set_shared_data"]; got != 2 {
		t.Errorf("proxy_set_shared_data called %d times, want 2 (one CAS write per request)", got)
	}
}

func TestV8HostReportsRefusedConfiguration(t *testing.T) {
	node := nodeOrSkip(t)
	cfg := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(cfg, []byte("not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, code := runHost(t, node, buildFixture(t, "./internal/v8fixture"), "--config", cfg)
	if code != 1 || res.OK || res.Plugin.Configure == nil || *res.Plugin.Configure {
		t.Fatalf("host.mjs exit %d ok=%v configure=%v for a configuration the plugin refuses; want exit 1, configure false", code, res.OK, res.Plugin.Configure)
	}
	if len(res.Requests) != 0 {
		t.Errorf("%d requests ran after the plugin was refused, want 0", len(res.Requests))
	}
	if !slices.ContainsFunc(res.Logs, func(l struct{ Level, Message string }) bool {
		return l.Level == "error" && strings.Contains(l.Message, "not a JSON object")
	}) {
		t.Errorf("the plugin's error line is not in the logs: %+v", res.Logs)
	}
}

func TestV8HostTrapsRestrictedCallDuringInitialize(t *testing.T) {
	node := nodeOrSkip(t)
	res, code := runHost(t, node, buildFixture(t, "./internal/v8restricted"))
	if code != 1 || res.OK {
		t.Fatalf("host.mjs exit %d ok=%v for a module that reads a property in _initialize; want exit 1", code, res.OK)
	}
	want := "restricted_callback: env.proxy_get_property called during _initialize"
	if !slices.ContainsFunc(res.Deviations, func(d string) bool { return strings.Contains(d, want) }) {
		t.Errorf("deviations %q do not mention %q", res.Deviations, want)
	}
}

// importingModule is a minimal wasm module that imports one function,
// env.proxy_not_in_envoy () -> (), and nothing else.
func importingModule() []byte {
	name := "proxy_not_in_envoy"
	imp := []byte{0x01, 0x03, 'e', 'n', 'v', byte(len(name))}
	imp = append(imp, name...)
	imp = append(imp, 0x00, 0x00) // function, type 0
	mod := []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}
	mod = append(mod, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00) // type section: () -> ()
	mod = append(mod, 0x02, byte(len(imp)))
	return append(mod, imp...)
}

func TestV8HostRefusesUnknownImport(t *testing.T) {
	node := nodeOrSkip(t)
	wasm := filepath.Join(t.TempDir(), "unknown-import.wasm")
	if err := os.WriteFile(wasm, importingModule(), 0o644); err != nil {
		t.Fatal(err)
	}
	res, code := runHost(t, node, wasm)
	if code != 2 {
		t.Fatalf("host.mjs exit %d for a module importing env.proxy_not_in_envoy; want 2 (refused at link time)", code)
	}
	if !slices.ContainsFunc(res.Deviations, func(d string) bool { return strings.Contains(d, "missing import: env.proxy_not_in_envoy") }) {
		t.Errorf("deviations %q do not name the import", res.Deviations)
	}
}

func TestV8SecurityWasm(t *testing.T) {
	node := nodeOrSkip(t)
	if _, err := os.Stat(securityWasm); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s missing: run make build (in CI the V8 check must run)", securityWasm)
		}
		t.Skipf("%s missing: run make build first (in CI, with CI=true, this fails)", securityWasm)
	}
	res, code := runHost(t, node, securityWasm)
	checkContract(t, res, code)
	t.Logf("security.wasm imports %d functions; host calls: %v", len(res.Imports), res.Calls)
}
