package server

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/wasmguard/wasmguard/internal/wasmhost"
)

// Limits of the listeners Start opens.
const (
	// ReadHeaderTimeout bounds the time a client may take to send the
	// request headers.
	ReadHeaderTimeout = 10 * time.Second
	// IdleTimeout closes a keep-alive connection idle this long.
	IdleTimeout = 5 * time.Minute
	// MaxHeaderBytes bounds the request line and headers: Envoy's default
	// max_request_headers_kb is 60.
	MaxHeaderBytes = 60 << 10
)

// Config is what Start needs.
type Config struct {
	// Listen is the proxy's address, "host:port" ("127.0.0.1:0" picks a
	// free port).
	Listen string
	// Admin is the admin page's address; "" opens none.
	Admin string
	// Handler configures the proxy.
	Handler Options
}

// Server is a running proxy listener and its admin listener.
type Server struct {
	handler  *Handler
	admin    *Admin
	ln, adLn net.Listener
	srv, ad  *http.Server
	errc     chan error
	once     sync.Once
}

// Start checks cfg, opens the listeners and serves them in the
// background until Shutdown. A listener that fails later reports on Err.
func Start(cfg Config) (*Server, error) {
	h, err := NewHandler(cfg.Handler)
	if err != nil {
		return nil, err
	}
	s := &Server{handler: h, admin: NewAdmin(h.opts.Host), errc: make(chan error, 2)}
	if s.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	if cfg.Admin != "" {
		if s.adLn, err = net.Listen("tcp", cfg.Admin); err != nil {
			s.ln.Close()
			return nil, fmt.Errorf("admin %s: %w", cfg.Admin, err)
		}
	}
	errLog := log.New(lineWriter(h.opts.Log), "", 0)
	s.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          errLog,
	}
	go s.serve(s.srv, s.ln)
	if s.adLn != nil {
		s.ad = &http.Server{Handler: s.admin, ReadHeaderTimeout: ReadHeaderTimeout, ErrorLog: errLog}
		go s.serve(s.ad, s.adLn)
	}
	return s, nil
}

func (s *Server) serve(srv *http.Server, ln net.Listener) {
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.errc <- err
	}
}

// Addr is the proxy's listening address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// AdminAddr is the admin listener's address, "" when there is none.
func (s *Server) AdminAddr() string {
	if s.adLn == nil {
		return ""
	}
	return s.adLn.Addr().String()
}

// Err reports a listener that stopped serving by itself.
func (s *Server) Err() <-chan error { return s.errc }

// Shutdown marks the admin page DRAINING, stops accepting connections and
// waits (until ctx ends) for the requests in flight; then it closes what
// is left. It does not close the Host.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		s.admin.SetDraining()
		err = s.srv.Shutdown(ctx)
		if err != nil {
			s.srv.Close()
		}
		if s.ad != nil {
			if e := s.ad.Shutdown(ctx); e != nil {
				s.ad.Close()
			}
		}
	})
	return err
}

// lineWriter turns net/http's error log into one Log line per write.
type lineWriter func(wasmhost.LogLevel, string)

func (f lineWriter) Write(p []byte) (int, error) {
	msg := strings.TrimRight(string(p), "\n")
	f(wasmhost.LogWarn, "http: "+strings.ReplaceAll(msg, "\n", `\n`))
	return len(p), nil
}
