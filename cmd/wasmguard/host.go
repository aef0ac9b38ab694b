package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/wasmguard/wasmguard/internal/server"
	"github.com/wasmguard/wasmguard/internal/wasmhost"
)

const (
	// defaultWasm is where every command looks for the module.
	defaultWasm = "security.wasm"
	// maxWasmBytes bounds the module file read (security.wasm is ~5 MiB).
	maxWasmBytes = 256 << 20
	// pluginName is Envoy's plugin name, root_id and vm_id in envoy.yaml.
	pluginName = "wasmguard"
	// designConfig is the design documents' configuration, the default of
	// serve and soak; testdata/config/seed.json holds the same (a test
	// checks they agree).
	designConfig = `{"block_patterns": [".*\\.(exe|dll|scr|bat)$", ".*<script.*>.*</script>.*"],
 "rate_limit": {"requests_per_minute": 100, "burst": 20}}
`
	// designConfigName names designConfig in messages.
	designConfigName = "the design configuration (testdata/config/seed.json)"
)

// hostFlags are the flags every command has, and those of the commands
// that run requests (registerStream).
type hostFlags struct {
	wasm    string
	profile string
	// allowOnHeadersStopIteration is wasmhost's
	// Options.AllowOnHeadersStopIteration.
	allowOnHeadersStopIteration bool
}

func (h *hostFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&h.wasm, "wasm", defaultWasm, "load the filter module from `PATH` (make build writes ./security.wasm)")
	fs.StringVar(&h.profile, "profile", wasmhost.Envoy133.String(),
		"reproduce the WASI of Envoy `VERSION`: envoy-1.33 (Envoy 1.33 to 1.38) or envoy-1.39 (1.39 and later)")
}

// registerStream adds the flags of the commands that run requests
// (serve, check, soak) to register's.
func (h *hostFlags) registerStream(fs *flag.FlagSet) {
	h.register(fs)
	fs.BoolVar(&h.allowOnHeadersStopIteration, "allow-on-headers-stop-iteration", false, fmt.Sprintf(
		"run the filter as Envoy does with the plugin's allow_on_headers_stop_iteration: true (a PluginConfig field, Envoy 1.35 and later): "+
			"a filter that holds the request headers still gets the body. Without it, as in Envoy by default, the body reaches the filter "+
			"only once it lets the headers go, so with hold_headers in the configuration a request with a body gets no verdict "+
			"(serve answers 408 when its pause timeout of %v ends; check fails after %v)", server.DefaultPauseTimeout, checkTimeout))
}

// readLimited reads a file ("-" is standard input) of at most max bytes,
// naming the file and the limit when it is larger.
func readLimited(path string, max int64, what string) ([]byte, error) {
	var r io.Reader
	if path == "-" {
		r = os.Stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s %s: larger than %d bytes", what, path, max)
	}
	return b, nil
}

// readWasm reads the module, with a hint when it is missing.
func readWasm(path string) ([]byte, error) {
	b, err := readLimited(path, maxWasmBytes, "wasm module")
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("wasm module %s not found: build it with \"make build\" in the repository root, or pass --wasm PATH", path)
	}
	if err == nil && len(b) == 0 {
		return nil, fmt.Errorf("wasm module %s is empty", path)
	}
	return b, err
}

// readConfig reads a plugin configuration file; "" is designConfig.
func readConfig(path string) ([]byte, string, error) {
	if path == "" {
		return []byte(designConfig), designConfigName, nil
	}
	b, err := readLimited(path, wasmhost.MaxConfigBytes, "configuration")
	return b, path, err
}

// hostSpec is what newHost needs beyond the flags.
type hostSpec struct {
	flags         hostFlags
	config        []byte
	workers       int
	failurePolicy wasmhost.FailurePolicy
	logLevel      wasmhost.LogLevel
	logger        func(wasmhost.LogRecord)
}

// newHost loads the module and starts its VMs with the configuration.
func newHost(ctx context.Context, spec hostSpec) (*wasmhost.Host, error) {
	profile, err := wasmhost.ParseProfile(spec.flags.profile)
	if err != nil {
		return nil, fmt.Errorf("--profile: %q: want envoy-1.33 or envoy-1.39", spec.flags.profile)
	}
	wasm, err := readWasm(spec.flags.wasm)
	if err != nil {
		return nil, err
	}
	logger := spec.logger
	if logger == nil {
		logger = func(wasmhost.LogRecord) {}
	}
	return wasmhost.New(ctx, wasm, wasmhost.Options{
		Workers:       spec.workers,
		Profile:       profile,
		FailurePolicy: spec.failurePolicy,
		PluginName:    pluginName,
		RootID:        pluginName,
		VMID:          pluginName,
		PluginConfig:  spec.config,
		LogLevel:      spec.logLevel,
		Logger:        logger,

		AllowOnHeadersStopIteration: spec.flags.allowOnHeadersStopIteration,
	})
}

// refusal returns the plugin's own error lines when err is a refused
// start, else err's text; ok reports a refusal.
func refusal(err error) (lines []string, ok bool) {
	var se *wasmhost.StartError
	if !errors.As(err, &se) {
		return []string{err.Error()}, false
	}
	if len(se.Logs) == 0 {
		return []string{se.Error()}, true
	}
	return se.Logs, true
}

// printStartError prints why newHost failed on w, every line starting
// with "wasmguard CMD: ". A configuration the filter refused is named,
// followed by each of the filter's own lines, unchanged:
//
//	wasmguard validate: bad.json: wasmguard: configuration refused: block_patterns[1]: ...
func printStartError(w io.Writer, cmd, configName string, err error) {
	prefix := "wasmguard " + cmd + ": "
	lines, refused := refusal(err)
	if refused {
		prefix += configName + ": "
	}
	for _, l := range lines {
		fmt.Fprintln(w, prefix+l)
	}
}

// logSink writes log lines to w, one line each, with a timestamp, from
// any goroutine.
type logSink struct {
	mu    sync.Mutex
	w     io.Writer
	level wasmhost.LogLevel
	now   func() time.Time
}

func (l *logSink) line(level wasmhost.LogLevel, msg string) {
	if level < l.level {
		return
	}
	msg = strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(msg)
	ts := l.now().UTC().Format("2006-01-02T15:04:05.000Z")
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "%s [%s] %s\n", ts, level, msg)
}

// record writes a host log record: "[level] wasm SOURCE worker=N: msg".
func (l *logSink) record(r wasmhost.LogRecord) {
	l.line(r.Level, fmt.Sprintf("wasm %s worker=%d: %s", r.Source, r.Worker, r.Message))
}
