package wasmhost

import (
	"sync"
	"sync/atomic"
)

// MaxMetrics bounds the distinct (type, name) metrics a Host holds; a
// proxy_define_metric beyond it fails with InternalFailure. (Envoy has no
// such bound; a plugin defining metrics from request data would grow its
// stats store without limit.)
const MaxMetrics = 10000

// Metric types of proxy_define_metric.
const (
	metricCounter   = 0
	metricGauge     = 1
	metricHistogram = 2
)

// metric is one stat, shared by name by every worker, as an Envoy stat is
// shared by every worker's VM.
type metric struct {
	name  string
	typ   uint32
	value atomic.Int64 // counter and gauge
	count atomic.Int64 // histogram samples
	sum   atomic.Int64 // histogram sum
}

type metricStore struct {
	mu    sync.Mutex
	byKey map[metricKey]*metric
}

type metricKey struct {
	typ  uint32
	name string
}

func (m *metricStore) init() { m.byKey = map[metricKey]*metric{} }

func (m *metricStore) define(typ uint32, name string) (*metric, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := metricKey{typ, name}
	if x, ok := m.byKey[k]; ok {
		return x, true
	}
	if len(m.byKey) >= MaxMetrics {
		return nil, false
	}
	x := &metric{name: name, typ: typ}
	m.byKey[k] = x
	return x, true
}

func (m *metricStore) stats() []Stat {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Stat, 0, len(m.byKey))
	for _, x := range m.byKey {
		if x.typ == metricHistogram {
			out = append(out, Stat{Name: x.name + ".count", Value: x.count.Load()},
				Stat{Name: x.name + ".sum", Value: x.sum.Load()})
			continue
		}
		out = append(out, Stat{Name: x.name, Value: x.value.Load()})
	}
	return out
}

// defineMetric gives a VM an id for a metric, as Envoy's Wasm does: the
// type in the low two bits, a per-type counter stepping by 4 above it.
// Defining the same name twice yields a new id for the same stat.
func (v *vm) defineMetric(typ uint32, name string) (uint32, status) {
	if typ > metricHistogram {
		return 0, stBadArgument
	}
	x, ok := v.h.metrics.define(typ, name)
	if !ok {
		return 0, stInternalFailure
	}
	v.nextMetricID[typ] += 4
	id := v.nextMetricID[typ]
	v.metricIDs[id] = x
	return id, stOK
}

// incrementMetric: counters take only positive offsets, gauges any.
func (v *vm) incrementMetric(id uint32, offset int64) status {
	switch id & 3 {
	case metricCounter, metricGauge:
		x := v.metricIDs[id]
		if x == nil {
			return stNotFound
		}
		if x.typ == metricCounter && offset <= 0 {
			return stBadArgument
		}
		x.value.Add(offset)
		return stOK
	}
	return stBadArgument
}

// recordMetric: a counter adds, a gauge is set, a histogram records.
func (v *vm) recordMetric(id uint32, value uint64) status {
	x := v.metricIDs[id]
	if x == nil || x.typ != id&3 {
		return stNotFound
	}
	switch x.typ {
	case metricCounter:
		x.value.Add(int64(value))
	case metricGauge:
		x.value.Store(int64(value))
	default:
		x.count.Add(1)
		x.sum.Add(int64(value))
	}
	return stOK
}

// getMetric reads a counter or gauge; histograms cannot be read.
func (v *vm) getMetric(id uint32) (uint64, status) {
	switch id & 3 {
	case metricCounter, metricGauge:
		x := v.metricIDs[id]
		if x == nil {
			return 0, stNotFound
		}
		return uint64(x.value.Load()), stOK
	}
	return 0, stBadArgument
}
