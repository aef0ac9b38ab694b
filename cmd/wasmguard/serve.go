package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"runtime"
	"time"

	"github.com/wasmguard/wasmguard/internal/server"
	"github.com/wasmguard/wasmguard/internal/wasmhost"
)

// shutdownTimeout bounds the graceful shutdown: requests still running
// after it are cut off.
const shutdownTimeout = 10 * time.Second

type serveFlags struct {
	host          hostFlags
	listen, admin string
	config        string
	upstream      string
	workers       int
	failurePolicy string
	logLevel      string
}

var serveCommand = &command{
	name:     "serve",
	synopsis: "[flags]",
	summary:  "serve HTTP through the filter on 127.0.0.1:10000 (admin on 127.0.0.1:9901)",
	about: `
Serves HTTP on --listen and runs every request through the filter, as Envoy
would: the request headers and body (fed in chunks of 16 KiB as they
arrive), then either the filter's own reply (403 blocked, 429 rate limited)
or the upstream's response, which passes through the filter too. The
filter sees the TCP peer as the client (source.address), so every client
address has its own rate-limit bucket, shared by all --workers VMs as in
Envoy.

Without --upstream a built-in echo upstream answers 200 with a JSON
description of the request it got (method, uri, headers, body), so serve
works alone. The admin listener shows the filter's counters at /stats and
/ready. Logs go to stderr, one line each: the filter's own (a warning per
blocked or limited request), and an access line per request at info.
Ctrl-C (SIGINT) or SIGTERM stops it gracefully. A configuration the filter
refuses exits 1 with the filter's error line.

Examples:
  wasmguard serve
  wasmguard serve --config my-config.json --upstream http://127.0.0.1:8080 --workers 4
  wasmguard serve --listen 127.0.0.1:0 --admin ""      # any free port, no admin`,
	flags: func(fs *flag.FlagSet) any {
		f := &serveFlags{}
		f.host.registerStream(fs)
		fs.StringVar(&f.listen, "listen", "127.0.0.1:10000", "serve the proxy on `ADDR` (host:port; port 0 picks a free one)")
		fs.StringVar(&f.admin, "admin", "127.0.0.1:9901", "serve the admin page (/stats, /ready) on `ADDR`; \"\" for none")
		fs.StringVar(&f.config, "config", "", "read the filter's JSON configuration from `FILE`; without it, the design configuration (testdata/config/seed.json): block .exe/.dll/.scr/.bat paths and <script> tags, 100 requests a minute per client in bursts of up to 20")
		fs.StringVar(&f.upstream, "upstream", "", "forward allowed requests to `URL` (http://host:port, optionally with a path prefix); without it, the built-in echo upstream")
		fs.IntVar(&f.workers, "workers", runtime.NumCPU(), fmt.Sprintf("run `N` VMs, like Envoy's worker threads, 1 to %d (the default is the number of CPUs)", wasmhost.MaxWorkers))
		fs.StringVar(&f.failurePolicy, "failure-policy", "fail_closed", "what requests get once a VM has crashed (`POLICY`): fail_closed answers 503, fail_open lets them through unfiltered, reload answers 503 until a fresh VM starts 1s later")
		fs.StringVar(&f.logLevel, "log-level", "info", "log lines at `LEVEL` and above: trace, debug, info, warning, error or critical")
		return f
	},
	run: runServe,
}

func runServe(ctx context.Context, e *env, c *command, fs *flag.FlagSet, opts any, args []string) int {
	f := opts.(*serveFlags)
	if len(args) > 0 {
		return usageError(e, c, fs, "unexpected argument %q (serve takes flags only; the configuration goes in --config)", args[0])
	}
	if f.workers < 1 || f.workers > wasmhost.MaxWorkers {
		return usageError(e, c, fs, "--workers %d: want 1 to %d", f.workers, wasmhost.MaxWorkers)
	}
	policy, err := wasmhost.ParseFailurePolicy(f.failurePolicy)
	if err != nil {
		return usageError(e, c, fs, "--failure-policy %q: want fail_closed, fail_open or reload", f.failurePolicy)
	}
	level, err := wasmhost.ParseLogLevel(f.logLevel)
	if err != nil {
		return usageError(e, c, fs, "--log-level %q: want trace, debug, info, warning, error or critical", f.logLevel)
	}
	if _, err := wasmhost.ParseProfile(f.host.profile); err != nil {
		return usageError(e, c, fs, "--profile %q: want envoy-1.33 or envoy-1.39", f.host.profile)
	}
	var upstream = "the built-in echo upstream"
	hopts := server.Options{}
	if f.upstream != "" {
		rt, err := server.NewProxy(f.upstream)
		if err != nil {
			return usageError(e, c, fs, "--upstream: %v", err)
		}
		hopts.Upstream, upstream = rt, f.upstream
	}
	config, configName, err := readConfig(f.config)
	if err != nil {
		fmt.Fprintf(e.stderr, "wasmguard serve: %v\n", err)
		return exitFail
	}

	logs := &logSink{w: e.stderr, level: level, now: time.Now}
	host, err := newHost(ctx, hostSpec{flags: f.host, config: config, workers: f.workers,
		failurePolicy: policy, logLevel: level, logger: logs.record})
	if err != nil {
		printStartError(e.stderr, c.name, configName, err)
		return exitFail
	}
	defer host.Close(context.Background())

	hopts.Host = host
	hopts.PauseTimeout = e.pauseTimeout
	hopts.Log = func(level wasmhost.LogLevel, msg string) { logs.line(level, msg) }
	srv, err := server.Start(server.Config{Listen: f.listen, Admin: f.admin, Handler: hopts})
	if err != nil {
		fmt.Fprintf(e.stderr, "wasmguard serve: %v\n", err)
		return exitFail
	}
	printBanner(e, f, srv, host, policy, configName, upstream)
	if e.started != nil {
		e.started(srv)
	}

	code := exitOK
	select {
	case <-ctx.Done():
		logs.line(wasmhost.LogInfo, fmt.Sprintf("server: %v: shutting down (waiting up to %v for requests in flight)", context.Cause(ctx), shutdownTimeout))
	case err := <-srv.Err():
		logs.line(wasmhost.LogCritical, "server: "+err.Error())
		code = exitFail
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logs.line(wasmhost.LogWarn, "server: shutdown: "+err.Error())
	}
	if err := host.Close(sctx); err != nil {
		logs.line(wasmhost.LogWarn, "server: closing the host: "+err.Error())
	}
	logs.line(wasmhost.LogInfo, "server: stopped")
	return code
}

// printBanner tells a newcomer where things are and what to paste.
func printBanner(e *env, f *serveFlags, srv *server.Server, host *wasmhost.Host, policy wasmhost.FailurePolicy, configName, upstream string) {
	base := "http://" + curlAddr(srv.Addr())
	w := e.stdout
	allow := ""
	if f.host.allowOnHeadersStopIteration {
		allow = ", allow_on_headers_stop_iteration"
	}
	fmt.Fprintf(w, "wasmguard: %s on %d worker VM(s), Envoy profile %s%s, %s, configuration: %s\n",
		f.host.wasm, host.Workers(), host.Profile(), allow, policy, configName)
	fmt.Fprintf(w, "  proxy:  %s  ->  %s\n", base, upstream)
	if a := srv.AdminAddr(); a != "" {
		fmt.Fprintf(w, "  admin:  http://%s  (/stats, /ready)\n", curlAddr(a))
	}
	fmt.Fprintf(w, `
Try it from another terminal:
  curl -i %[1]s/index.html
      allowed: 200 from the upstream
  curl -i '%[1]s/download/evil.exe'
      blocked: 403, x-wasmguard-rule names the pattern
  for i in $(seq 25); do curl -s -o /dev/null -w '%%{http_code}\n' %[1]s/; done
      rate-limited: 200 until this client's burst is spent (20 requests with
      the design configuration, the two above included), then 429
`, base)
	if a := srv.AdminAddr(); a != "" {
		fmt.Fprintf(w, "  curl -s http://%s/stats\n      the filter's counters\n", curlAddr(a))
	}
	fmt.Fprintln(w, "\nLogs follow on stderr. Ctrl-C stops.")
}

// curlAddr turns a listening address into one a local client can reach:
// an unspecified host (0.0.0.0, ::) becomes loopback.
func curlAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		if ip != nil && ip.To4() == nil {
			host = "::1"
		} else if ip != nil {
			host = "127.0.0.1"
		}
	}
	return net.JoinHostPort(host, port)
}
