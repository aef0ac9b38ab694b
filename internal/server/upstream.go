package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

const (
	// MaxEchoBody is how many bytes of a request body Echo quotes back in
	// EchoReply.Body; it counts the whole body in EchoReply.BodyBytes.
	MaxEchoBody = 64 << 10
	// EchoHeader is the response header Echo sets (value "echo"), so a
	// client can tell the upstream answered and not the filter.
	EchoHeader = "x-wasmguard-upstream"
	// ProxyConnectTimeout bounds a connection to the NewProxy upstream
	// (Envoy's default cluster connect_timeout, 5 s).
	ProxyConnectTimeout = 5 * time.Second
	// ProxyMaxIdlePerHost is how many idle keep-alive connections
	// NewProxy keeps to its upstream.
	ProxyMaxIdlePerHost = 256
)

// EchoReply is the JSON body Echo answers with.
type EchoReply struct {
	Method string `json:"method"`
	// URI is the request target as it reached the upstream: path and
	// query, byte for byte.
	URI       string `json:"uri"`
	Authority string `json:"authority"`
	// Headers are the request headers, names lower-cased, repeated values
	// joined with ", ".
	Headers map[string]string `json:"headers"`
	// BodyBytes is the whole body's length; Body its first MaxEchoBody
	// bytes (as a string: invalid UTF-8 is replaced in the JSON).
	BodyBytes     int64  `json:"body_bytes"`
	Body          string `json:"body"`
	BodyTruncated bool   `json:"body_truncated,omitempty"`
}

// Echo is the built-in upstream: it answers every request with 200, the
// header EchoHeader: echo and an EchoReply in JSON. It reads the whole
// request body (keeping MaxEchoBody bytes) and never fails but when the
// body cannot be read.
type Echo struct{}

// RoundTrip answers req.
func (Echo) RoundTrip(req *http.Request) (*http.Response, error) {
	reply := EchoReply{
		Method:    req.Method,
		URI:       req.URL.RequestURI(),
		Authority: req.Host,
		Headers:   make(map[string]string, len(req.Header)),
	}
	keys := make([]string, 0, len(req.Header))
	for k := range req.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		reply.Headers[strings.ToLower(k)] = strings.Join(req.Header[k], ", ")
	}
	if req.Body != nil {
		var kept bytes.Buffer
		n, err := io.Copy(&kept, io.LimitReader(req.Body, MaxEchoBody))
		if err == nil {
			var rest int64
			rest, err = io.Copy(io.Discard, req.Body)
			n += rest
			reply.BodyTruncated = rest > 0
		}
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("echo: reading the request body: %w", err)
		}
		reply.BodyBytes = n
		reply.Body = kept.String()
	}
	body, err := json.Marshal(reply)
	if err != nil {
		return nil, fmt.Errorf("echo: %w", err)
	}
	body = append(body, '\n')
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set(EchoHeader, "echo")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	return &http.Response{
		Status:        "200 OK",
		StatusCode:    http.StatusOK,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}, nil
}

// proxy sends requests to one upstream base URL.
type proxy struct {
	base *url.URL
	rt   *http.Transport
}

// NewProxy returns a RoundTripper that sends each request to upstream
// (http or https, a host, optionally a path prefix; no query, fragment or
// user info) with its method, raw path and query (appended to the prefix),
// headers and body unchanged, and the original Host header, as Envoy's
// router does without host_rewrite. It uses no HTTP proxy from the
// environment and does not ask for compression.
func NewProxy(upstream string) (http.RoundTripper, error) {
	u, err := url.Parse(upstream)
	switch {
	case err != nil:
		return nil, fmt.Errorf("upstream %q: %w", upstream, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("upstream %q: scheme must be http or https", upstream)
	case u.Host == "":
		return nil, fmt.Errorf("upstream %q: no host", upstream)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return nil, fmt.Errorf("upstream %q: no query, fragment or user info allowed", upstream)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = strings.TrimSuffix(u.RawPath, "/")
	d := &net.Dialer{Timeout: ProxyConnectTimeout, KeepAlive: 30 * time.Second}
	return &proxy{base: u, rt: &http.Transport{
		Proxy:               nil,
		DialContext:         d.DialContext,
		DisableCompression:  true,
		MaxIdleConns:        ProxyMaxIdlePerHost,
		MaxIdleConnsPerHost: ProxyMaxIdlePerHost,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   false,
	}}, nil
}

var errNoRequest = errors.New("server: nil request")

// RoundTrip forwards req to the upstream.
func (p *proxy) RoundTrip(req *http.Request) (*http.Response, error) {
	if req == nil || req.URL == nil {
		return nil, errNoRequest
	}
	out := req.Clone(req.Context())
	out.Body = req.Body
	path := req.URL.Opaque
	if path == "" {
		path = req.URL.EscapedPath()
	}
	out.URL = targetURL(p.base.Scheme, p.base.Host, p.base.EscapedPath()+path, req.URL.RawQuery)
	out.RequestURI = ""
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // the transport adds none
	}
	return p.rt.RoundTrip(out)
}

// targetURL builds a request URL whose RequestURI is path?query byte for
// byte. Opaque keeps the path exactly as written; a path starting with "//"
// goes through Path and RawPath instead, because an Opaque starting with
// "//" would be sent as an absolute URI naming another host.
func targetURL(scheme, host, path, query string) *url.URL {
	u := &url.URL{Scheme: scheme, Host: host, RawQuery: query}
	if path == "" || path[0] != '/' {
		path = "/" + path
	}
	if !strings.HasPrefix(path, "//") {
		u.Opaque = path
		return u
	}
	if p, err := url.PathUnescape(path); err == nil {
		u.Path, u.RawPath = p, path
	} else {
		u.Path = path
	}
	return u
}
