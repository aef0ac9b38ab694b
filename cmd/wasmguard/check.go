package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wasmguard/wasmguard/internal/server"
	"github.com/wasmguard/wasmguard/internal/wasmhost"
)

const (
	// maxCheckBody bounds check's --body-file (the filter inspects at most
	// 8 MiB, and the host buffers at most 1 MiB of a paused body).
	maxCheckBody = 64 << 20
	// checkTimeout bounds one check request: a filter that pauses a request
	// and never resumes it fails the check instead of hanging.
	checkTimeout = 10 * time.Second
	// defaultFrom is check's default client address (source.address).
	defaultFrom = "127.0.0.1:50000"
	// defaultAuthority is :authority for a URL given as a bare path.
	defaultAuthority = "localhost"
)

var validateCommand = &command{
	name:     "validate",
	synopsis: "[flags] CONFIG",
	summary:  "load CONFIG into the filter and print OK, or the filter's error line",
	about: `
Starts the filter (one VM) with the JSON configuration in the file CONFIG
("-" reads standard input), exactly as Envoy would at plugin start, and
prints OK. When the filter refuses the configuration it prints the filter's
error line, which names the JSON path and the problem, after the command and
the file, and exits 1:

  $ wasmguard validate bad.json
  wasmguard validate: bad.json: wasmguard: configuration refused: block_patterns[1]: invalid regex "(": missing closing )

Examples:
  wasmguard validate testdata/config/seed.json
  echo '{"mode": "monitor"}' | wasmguard validate -`,
	flags: func(fs *flag.FlagSet) any {
		f := &hostFlags{}
		f.register(fs)
		return f
	},
	run: runValidate,
}

func runValidate(ctx context.Context, e *env, c *command, fs *flag.FlagSet, opts any, args []string) int {
	f := opts.(*hostFlags)
	if len(args) != 1 || args[0] == "--" {
		if len(args) == 0 {
			return usageError(e, c, fs, "missing CONFIG, the configuration file to validate")
		}
		return usageError(e, c, fs, "want exactly one CONFIG, got %q", strings.Join(args, " "))
	}
	if _, err := wasmhost.ParseProfile(f.profile); err != nil {
		return usageError(e, c, fs, "--profile %q: want envoy-1.33 or envoy-1.39", f.profile)
	}
	config, configName, err := readConfig(args[0])
	if err != nil {
		fmt.Fprintf(e.stderr, "wasmguard validate: %v\n", err)
		return exitFail
	}
	host, err := newHost(ctx, hostSpec{flags: *f, config: config, workers: 1, logLevel: wasmhost.LogInfo})
	if err != nil {
		printStartError(e.stderr, c.name, configName, err)
		return exitFail
	}
	host.Close(context.Background())
	fmt.Fprintln(e.stdout, "OK")
	return exitOK
}

type checkFlags struct {
	host hostFlags
	from string
}

var checkCommand = &command{
	name:     "check",
	synopsis: "[flags] CONFIG -- METHOD URL [NAME:VALUE ...] [--body STRING | --body-file FILE]",
	summary:  "run one request through the filter with CONFIG and print the verdict",
	about: `
Starts the filter with the configuration file CONFIG and runs one request
through it, then prints the verdict:

  status   the status of the filter's reply (403 blocked, 429 rate
           limited, ...), or "continue" when the request would go on to
           the upstream
  rule     the pattern that blocked it (the x-wasmguard-rule header)
  the reply's headers and body, or the request as forwarded and the
  headers the filter adds to a 200 from the upstream; then the filter's
  log lines for the request.

After "--" comes the request: METHOD, then URL, either a path with its query
("/search?q=x", sent to the host its "host" header names, else "localhost")
or an absolute http:// or https:// URL; the target is passed as written.
Each further word of the form "NAME: VALUE" (quote it) is a request header.
--body STRING or --body-file FILE ("-": standard input) gives a body, fed to
the filter in 16 KiB chunks like serve does, with a content-length unless
"transfer-encoding: chunked" is given. The filter sees the request head serve
would give it for the same request from --from: x-forwarded-for with the
client's address appended, x-forwarded-proto, no hop-by-hop headers or
headers the connection header names, a fresh x-request-id. The exit status
is 0 whatever the verdict; 1 when the filter refuses CONFIG.

Examples:
  wasmguard check testdata/config/seed.json -- GET /download/evil.exe
  wasmguard check my.json -- GET '/search?q=%3Cscript%3E' 'user-agent: curl/8'
  wasmguard check my.json -- POST /comments 'content-type: application/json' --body '{"c":"hi"}'`,
	flags: func(fs *flag.FlagSet) any {
		f := &checkFlags{}
		f.host.registerStream(fs)
		fs.StringVar(&f.from, "from", defaultFrom, "the client's `ADDR` (ip:port), the filter's source.address and rate-limit key")
		return f
	},
	run: runCheck,
}

// checkRequest is the request after "--", as a client would send it.
type checkRequest struct {
	method string
	// target is the request target as written, from "/"; authority is
	// the URL's host, or the host header's for a bare path ("" for none).
	target, authority, scheme string
	// header holds the headers keyed as net/http's server keys them, host
	// and transfer-encoding taken out, content-length kept.
	header http.Header
	body   []byte
	// length is the declared body length (content-length), -1 for a
	// chunked body.
	length int64
}

// parseCheckRequest parses METHOD URL [NAME:VALUE ...] [--body S |
// --body-file F], naming the word at fault. Framing headers are checked
// as a server would: one host, one content-length that matches the body,
// transfer-encoding chunked only, and not both (Envoy answers 400 to a
// request with both), a connection header Envoy accepts.
func parseCheckRequest(words []string) (checkRequest, error) {
	var req checkRequest
	if len(words) < 2 {
		return req, fmt.Errorf("after --, want METHOD URL, got %q", strings.Join(words, " "))
	}
	req.method = words[0]
	if req.method == "" || !server.ValidToken(req.method) {
		return req, fmt.Errorf("method %q is not an HTTP method", req.method)
	}
	var err error
	req.authority, req.target, req.scheme, err = splitURL(words[1])
	if err != nil {
		return req, err
	}
	req.header = http.Header{}
	bodySet := false
	setBody := func(flagName, v string, file bool) error {
		if bodySet {
			return fmt.Errorf("%s: only one --body or --body-file", flagName)
		}
		bodySet = true
		if !file {
			req.body = []byte(v)
			return nil
		}
		b, err := readLimited(v, maxCheckBody, "--body-file")
		req.body = b
		return err
	}
	for i := 2; i < len(words); i++ {
		w := words[i]
		name, val, hasVal := strings.Cut(w, "=")
		switch name {
		case "--body", "-body", "--body-file", "-body-file":
			if !hasVal {
				if i+1 >= len(words) {
					return req, fmt.Errorf("%s needs a value", name)
				}
				i++
				val = words[i]
			}
			if err := setBody(name, val, strings.HasSuffix(name, "-file")); err != nil {
				return req, err
			}
			continue
		}
		k, v, ok := strings.Cut(w, ":")
		k = strings.TrimSpace(k)
		if !ok || !server.ValidToken(k) {
			return req, fmt.Errorf("%q: want a header \"NAME: VALUE\", --body STRING or --body-file FILE", w)
		}
		req.header.Add(k, strings.TrimSpace(v))
	}
	err = req.framing()
	return req, err
}

// framing moves host and transfer-encoding out of the headers into
// authority and length, checks content-length, and declares the body's
// length when neither is given, as net/http's server and a client do.
func (req *checkRequest) framing() error {
	if err := server.ConnectionError(req.header); err != nil {
		return fmt.Errorf("%v: serve and Envoy answer 400", err)
	}
	hosts := req.header.Values("Host")
	req.header.Del("Host")
	switch {
	case len(hosts) > 1:
		return fmt.Errorf("host given %d times: a server answers 400", len(hosts))
	case req.authority != "":
		// An absolute URL's host wins over the host header.
	case len(hosts) == 1:
		req.authority = hosts[0]
	default:
		req.authority = defaultAuthority
	}
	te := req.header.Values("Transfer-Encoding")
	req.header.Del("Transfer-Encoding")
	cl := req.header.Values("Content-Length")
	switch {
	case len(te) > 1 || (len(te) == 1 && !strings.EqualFold(te[0], "chunked")):
		return fmt.Errorf("transfer-encoding %q: want chunked, the only coding serve and Envoy accept", strings.Join(te, ", "))
	case len(te) == 1 && len(cl) > 0:
		return errors.New("both transfer-encoding and content-length: Envoy answers 400 (serve drops the content-length)")
	case len(te) == 1:
		req.length = -1
	case len(cl) > 1:
		return fmt.Errorf("content-length given %d times", len(cl))
	case len(cl) == 1:
		n, err := strconv.ParseUint(cl[0], 10, 63) // digits only, as servers want
		if err != nil {
			return fmt.Errorf("content-length %q: want a number of bytes", cl[0])
		}
		if n != uint64(len(req.body)) {
			return fmt.Errorf("content-length %q: the body has %d bytes", cl[0], len(req.body))
		}
		req.length = int64(n)
	case len(req.body) > 0:
		// As a client sending the body would.
		req.length = int64(len(req.body))
		req.header.Set("Content-Length", strconv.Itoa(len(req.body)))
	}
	return nil
}

// checkHead is the request head the filter gets: what serve's handler
// (server.RequestHead) builds for the same request from the client
// address from.
func checkHead(req checkRequest, from string) wasmhost.RequestHead {
	path, query, _ := strings.Cut(req.target, "?")
	r := &http.Request{
		Method:        req.method,
		URL:           &url.URL{Opaque: path, RawQuery: query},
		RequestURI:    req.target,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        req.header,
		Host:          req.authority,
		ContentLength: req.length,
		RemoteAddr:    from,
	}
	if req.length < 0 {
		r.TransferEncoding = []string{"chunked"}
	}
	if req.scheme == "https" {
		r.TLS = &tls.ConnectionState{} // as a TLS listener would hand it over
	}
	return server.RequestHead(r)
}

// splitURL accepts "/path?query" or "http(s)://host/path?query" and
// returns the authority ("" for a bare path), the request target as
// written (only "#fragment" removed) and the scheme. Only the authority is
// parsed: a target need not be a valid URL path, as with a bare path.
func splitURL(s string) (authority, target, scheme string, err error) {
	s, _, _ = strings.Cut(s, "#")
	if strings.HasPrefix(s, "/") {
		return "", s, "http", nil
	}
	scheme, rest, ok := strings.Cut(s, "://")
	scheme = strings.ToLower(scheme)
	if !ok || (scheme != "http" && scheme != "https") {
		return "", "", "", fmt.Errorf("URL %q: want a path starting with / or an http:// or https:// URL", s)
	}
	hostport, target := rest, "/"
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		hostport, target = rest[:i], rest[i:]
		if target[0] == '?' {
			target = "/" + target
		}
	}
	u, err := url.Parse(scheme + "://" + hostport)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", "", "", fmt.Errorf("URL %q: %v", s, err)
	}
	if u.Host == "" {
		return "", "", "", fmt.Errorf("URL %q: no host", s)
	}
	return u.Host, target, scheme, nil
}

func runCheck(ctx context.Context, e *env, c *command, fs *flag.FlagSet, opts any, args []string) int {
	f := opts.(*checkFlags)
	dash := -1
	for i, a := range args {
		if a == "--" {
			dash = i
			break
		}
	}
	switch {
	case dash < 0 && len(args) == 0:
		return usageError(e, c, fs, "missing CONFIG and the request (CONFIG -- METHOD URL)")
	case dash < 0:
		return usageError(e, c, fs, "missing \"--\" and the request after CONFIG (CONFIG -- METHOD URL)")
	case dash == 0:
		return usageError(e, c, fs, "missing CONFIG before --")
	case dash > 1:
		return usageError(e, c, fs, "want one CONFIG before --, got %q", strings.Join(args[:dash], " "))
	}
	if _, err := wasmhost.ParseProfile(f.host.profile); err != nil {
		return usageError(e, c, fs, "--profile %q: want envoy-1.33 or envoy-1.39", f.host.profile)
	}
	if ip, _, err := net.SplitHostPort(f.from); err != nil || net.ParseIP(ip) == nil {
		return usageError(e, c, fs, "--from %q: want IP:PORT", f.from)
	}
	req, err := parseCheckRequest(args[dash+1:])
	if err != nil {
		return usageError(e, c, fs, "%v", err)
	}
	config, configName, err := readConfig(args[0])
	if err != nil {
		fmt.Fprintf(e.stderr, "wasmguard check: %v\n", err)
		return exitFail
	}
	var mu sync.Mutex
	var logs []wasmhost.LogRecord
	host, err := newHost(ctx, hostSpec{flags: f.host, config: config, workers: 1, logLevel: wasmhost.LogInfo,
		logger: func(r wasmhost.LogRecord) {
			mu.Lock()
			logs = append(logs, r)
			mu.Unlock()
		}})
	if err != nil {
		printStartError(e.stderr, c.name, configName, err)
		return exitFail
	}
	defer host.Close(context.Background())
	mu.Lock()
	logs = nil // the start lines are not the request's
	mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	s, err := host.NewStream(wasmhost.StreamInfo{SourceAddress: f.from})
	if err != nil {
		fmt.Fprintf(e.stderr, "wasmguard check: %v\n", err)
		return exitFail
	}
	hreq := wasmhost.Request{RequestHead: checkHead(req, f.from), Body: chunks(req.body, server.DefaultChunkSize)}
	fwd, err := s.ProcessRequest(ctx, hreq)
	var client wasmhost.Verdict
	if err == nil && fwd.Local == nil && !fwd.Reset {
		client, err = s.ProcessResponse(ctx, wasmhost.Response{Status: 200,
			Headers: [][2]string{{"content-type", "text/plain"}, {"content-length", "2"}},
			Body:    [][]byte{[]byte("ok")}})
	}
	s.Close()
	if err != nil {
		fmt.Fprintf(e.stderr, "wasmguard check: %v\n", err)
		return exitFail
	}
	w := e.stdout
	switch {
	case fwd.Reset:
		fmt.Fprintln(w, "status: reset (the filter aborted the stream)")
		fmt.Fprintln(w, "rule: none")
	case fwd.Local != nil:
		printLocal(w, fwd.Local)
	default:
		fmt.Fprintln(w, "status: continue (the request goes on to the upstream)")
		fmt.Fprintln(w, "rule: none")
		fmt.Fprintln(w, "forwarded request headers:")
		printHeaders(w, fwd.Headers)
		fmt.Fprintf(w, "forwarded body: %d bytes\n", len(fwd.Body))
		if client.Local != nil {
			fmt.Fprintln(w, "but the filter replaced the upstream's 200:")
			printLocal(w, client.Local)
		} else {
			fmt.Fprintln(w, "response headers the client gets with a 200 from the upstream:")
			printHeaders(w, client.Headers)
		}
	}
	fmt.Fprintln(w, "filter log:")
	mu.Lock()
	defer mu.Unlock()
	if len(logs) == 0 {
		fmt.Fprintln(w, "  (none)")
	}
	for _, r := range logs {
		fmt.Fprintf(w, "  [%s] %s\n", r.Level, r.Message)
	}
	return exitOK
}

// printLocal prints a local reply: status, rule, headers, body.
func printLocal(w io.Writer, lr *wasmhost.LocalResponse) {
	rule, blocked := wasmhost.HeaderValue(lr.Headers, "x-wasmguard-rule")
	what := "a reply from the filter"
	switch {
	case blocked:
		what = "blocked"
	case lr.Status == 429:
		what = "rate limited"
	case lr.Details == wasmhost.DetailsWasmFailStream:
		what = "the filter's VM failed"
	}
	fmt.Fprintf(w, "status: %d (%s)\n", lr.Status, what)
	if !blocked {
		rule = "none"
	}
	fmt.Fprintf(w, "rule: %s\n", rule)
	fmt.Fprintln(w, "response headers:")
	printHeaders(w, lr.Headers)
	fmt.Fprintln(w, "response body:")
	fmt.Fprintf(w, "  %s\n", strings.TrimRight(string(lr.Body), "\n"))
}

func printHeaders(w io.Writer, h [][2]string) {
	if len(h) == 0 {
		fmt.Fprintln(w, "  (none)")
	}
	for _, kv := range h {
		fmt.Fprintf(w, "  %s: %s\n", kv[0], kv[1])
	}
}

// chunks splits b into pieces of at most size bytes (nil for no body).
func chunks(b []byte, size int) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := min(size, len(b))
		out = append(out, b[:n:n])
		b = b[n:]
	}
	return out
}
