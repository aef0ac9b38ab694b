package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wasmguard/wasmguard/internal/server"
	"github.com/wasmguard/wasmguard/internal/wasmhost"
)

// TestCheckHeadIsServes checks that check builds, from its words, the
// request head serve builds from the same request on the wire: serve's
// handler gives the plugin server.RequestHead of the request net/http
// parsed, which a test server here captures.
func TestCheckHeadIsServes(t *testing.T) {
	heads := make(chan wasmhost.RequestHead, 1)
	capture := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		heads <- server.RequestHead(r)
	})
	plain := httptest.NewServer(capture)
	defer plain.Close()
	secure := httptest.NewTLSServer(capture)
	defer secure.Close()

	cases := []struct {
		name  string
		tls   bool
		raw   string   // what a client sends serve
		words []string // the same request for check
	}{
		{name: "forwarded headers, Connection, repeated names, request id",
			raw: "GET /search?q=%3Cscript%3E HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8\r\n" +
				"X-Forwarded-For: 203.0.113.1, 198.51.100.2\r\nX-Forwarded-Proto: https\r\n" +
				"Connection: close, X-Secret\r\nX-Secret: s\r\nAccept: a\r\naccept: b\r\nX-Request-Id: mine\r\n\r\n",
			words: []string{"GET", "/search?q=%3Cscript%3E", "user-agent: curl/8",
				"x-forwarded-for: 203.0.113.1, 198.51.100.2", "X-Forwarded-Proto: https",
				"connection: close, X-Secret", "x-secret: s", "Accept: a", "accept: b", "x-request-id: mine"}},
		{name: "absolute URL wins over host, body with its length",
			raw: "POST http://shop.example/api?x=1 HTTP/1.1\r\nHost: other.example\r\n" +
				"Content-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}",
			words: []string{"POST", "http://shop.example/api?x=1", "host: other.example",
				"content-type: application/json", "--body", `{"a":1}`}},
		{name: "host header with a path",
			raw:   "GET /x HTTP/1.1\r\nHost: shop.example:8080\r\n\r\n",
			words: []string{"GET", "/x", "Host: shop.example:8080"}},
		{name: "chunked body",
			raw:   "PUT /up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			words: []string{"PUT", "/up", "transfer-encoding: chunked", "--body", "hello"}},
		{name: "declared empty body",
			raw:   "POST /f HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
			words: []string{"POST", "/f", "content-length: 0"}},
		{name: "declared length",
			raw:   "POST /f HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc",
			words: []string{"POST", "/f", "Content-Length: 3", "--body=abc"}},
		{name: "https", tls: true,
			raw:   "GET / HTTP/1.1\r\nHost: secure.example\r\nX-Forwarded-Proto: http\r\n\r\n",
			words: []string{"GET", "https://secure.example/", "x-forwarded-proto: http"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var conn net.Conn
			var err error
			if c.tls {
				roots := x509.NewCertPool()
				roots.AddCert(secure.Certificate())
				conn, err = tls.Dial("tcp", secure.Listener.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "example.com"})
			} else {
				conn, err = net.Dial("tcp", plain.Listener.Addr().String())
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(conn, c.raw); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("the test server answered %d to %q", resp.StatusCode, c.raw)
			}
			served := <-heads

			req, err := parseCheckRequest(c.words)
			if err != nil {
				t.Fatal(err)
			}
			checked := checkHead(req, conn.LocalAddr().String())
			if !reflect.DeepEqual(checked, served) {
				t.Errorf("check's head\n  %+v\nserve's head\n  %+v", checked, served)
			}
		})
	}
}

func TestSplitURL(t *testing.T) {
	for _, c := range []struct{ in, authority, target, scheme string }{
		{"/a?b#frag", "", "/a?b", "http"},
		{"/%zz", "", "/%zz", "http"},
		{"http://h:8080", "h:8080", "/", "http"},
		{"https://h?q=1", "h", "/?q=1", "https"},
		{"http://h/x%2Ey/z?q", "h", "/x%2Ey/z?q", "http"},
		// The target is taken as written, as for a bare path.
		{"http://x/%zz", "x", "/%zz", "http"},
		{"HTTP://User:pw@Shop.example/p", "Shop.example", "/p", "http"},
	} {
		a, tg, s, err := splitURL(c.in)
		if err != nil || a != c.authority || tg != c.target || s != c.scheme {
			t.Errorf("splitURL(%q) = %q %q %q %v, want %q %q %q", c.in, a, tg, s, err, c.authority, c.target, c.scheme)
		}
	}
}

// TestCheckRequestErrors: each error names the word at fault and why.
func TestCheckRequestErrors(t *testing.T) {
	for _, c := range []struct {
		words []string
		want  string
	}{
		{[]string{"GET", "http://h:port/x"}, `URL "http://h:port/x": invalid port ":port" after host`},
		{[]string{"GET", "http://a b/"}, `URL "http://a b/": invalid character " " in host name`},
		{[]string{"GET", "http:///x"}, `URL "http:///x": no host`},
		{[]string{"GET", "ftp://h/x"}, `URL "ftp://h/x": want a path starting with / or an http:// or https:// URL`},
		{[]string{"GET", "shop.example/x"}, `URL "shop.example/x": want a path starting with / or an http:// or https:// URL`},
		{[]string{"GET", "/", "host: a", "host: b"}, `host given 2 times`},
		{[]string{"POST", "/", "content-length: 4", "--body", "abc"}, `content-length "4": the body has 3 bytes`},
		{[]string{"POST", "/", "content-length: x"}, `content-length "x": want a number of bytes`},
		{[]string{"POST", "/", "content-length: +3", "--body", "abc"}, `content-length "+3": want a number of bytes`},
		{[]string{"POST", "/", "content-length: -1"}, `content-length "-1": want a number of bytes`},
		{[]string{"POST", "/", "content-length: 1", "content-length: 2"}, `content-length given 2 times`},
		{[]string{"POST", "/", "transfer-encoding: gzip"}, `transfer-encoding "gzip": want chunked`},
		{[]string{"GET", "/", "connection: close, x-forwarded-for"}, `connection header names "x-forwarded-for": serve and Envoy answer 400`},
		{[]string{"POST", "/", "transfer-encoding: chunked", "content-length: 3", "--body", "abc"},
			"both transfer-encoding and content-length"},
	} {
		t.Run(strings.Join(c.words, " "), func(t *testing.T) {
			_, err := parseCheckRequest(c.words)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("parseCheckRequest = %v, want an error with %q", err, c.want)
			}
		})
	}
}
