package server

import (
	"fmt"
	"net/http"
	"regexp"
	"sync/atomic"

	"github.com/wasmguard/wasmguard/internal/wasmhost"
)

// MaxStatsFilter bounds the length of /stats?filter=REGEX.
const MaxStatsFilter = 1024

// Admin is an Envoy-like admin page for a Host:
//
//	/        an index of the pages
//	/stats   the plugin's counters and the host's own, one "name: value"
//	         line each (Host.WriteStats); ?filter=REGEX keeps the names
//	         the regular expression matches, as Envoy's does
//	/ready   200 "LIVE" while serving, 503 "DRAINING" once SetDraining
//	         was called (Envoy's /ready answers the same words)
//
// It is safe for concurrent use.
type Admin struct {
	host     *wasmhost.Host
	draining atomic.Bool
	mux      *http.ServeMux
}

// NewAdmin returns the admin page of h.
func NewAdmin(h *wasmhost.Host) *Admin {
	a := &Admin{host: h, mux: http.NewServeMux()}
	a.mux.HandleFunc("/stats", a.stats)
	a.mux.HandleFunc("/ready", a.ready)
	a.mux.HandleFunc("/", a.index)
	return a
}

// SetDraining makes /ready answer 503 DRAINING (during shutdown).
func (a *Admin) SetDraining() { a.draining.Store(true) }

// ServeHTTP serves the admin pages.
func (a *Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

func (a *Admin) index(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, "wasmguard admin\n"+
		"  /stats               counters, one \"name: value\" per line (?filter=REGEX)\n"+
		"  /ready               LIVE while serving, DRAINING during shutdown\n")
}

func (a *Admin) stats(w http.ResponseWriter, r *http.Request) {
	filter := r.URL.Query().Get("filter")
	var re *regexp.Regexp
	if filter != "" {
		if len(filter) > MaxStatsFilter {
			http.Error(w, fmt.Sprintf("filter: %d bytes, at most %d", len(filter), MaxStatsFilter), http.StatusBadRequest)
			return
		}
		var err error
		if re, err = regexp.Compile(filter); err != nil {
			http.Error(w, "filter: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if re == nil {
		_ = a.host.WriteStats(w)
		return
	}
	for _, s := range a.host.Stats() {
		if re.MatchString(s.Name) {
			fmt.Fprintf(w, "%s: %d\n", s.Name, s.Value)
		}
	}
}

func (a *Admin) ready(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if a.draining.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "DRAINING")
		return
	}
	fmt.Fprintln(w, "LIVE")
}
