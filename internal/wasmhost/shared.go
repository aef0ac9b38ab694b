package wasmhost

import (
	"sync"
)

// sharedData is Envoy's SharedData (proxy-wasm-cpp-host src/shared_data.cc):
// per vm_id maps of key → (value, cas). CAS values come from one counter
// that starts at 1 and skips 0; a set with cas 0 is unconditional, a set
// with a non-zero cas that differs from the key's current one fails with
// CasMismatch, a set of a missing key always succeeds. Keys are never
// deleted (the ABI has no delete).
type sharedData struct {
	mu  sync.Mutex
	cas uint32
	vms map[string]map[string]*sharedEntry
}

type sharedEntry struct {
	value []byte
	cas   uint32
}

func (d *sharedData) init() {
	d.cas = 1
	d.vms = map[string]map[string]*sharedEntry{}
}

// nextCAS returns the next CAS value, never 0. The caller holds d.mu.
func (d *sharedData) nextCAS() uint32 {
	c := d.cas
	d.cas++
	if d.cas == 0 {
		d.cas++
	}
	return c
}

// get returns a copy of the value and its cas.
func (d *sharedData) get(vmID, key string) ([]byte, uint32, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.vms[vmID][key]
	if !ok {
		return nil, 0, false
	}
	return append([]byte(nil), e.value...), e.cas, true
}

// set stores value; it reports false on a CAS mismatch.
func (d *sharedData) set(vmID, key string, value []byte, cas uint32) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.vms[vmID]
	if m == nil {
		m = map[string]*sharedEntry{}
		d.vms[vmID] = m
	}
	if e, ok := m[key]; ok {
		if cas != 0 && cas != e.cas {
			return false
		}
		e.value = append(e.value[:0:0], value...)
		e.cas = d.nextCAS()
		return true
	}
	m[key] = &sharedEntry{value: append([]byte(nil), value...), cas: d.nextCAS()}
	return true
}

func (d *sharedData) snapshot(vmID string) map[string]SharedValue {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]SharedValue, len(d.vms[vmID]))
	for k, e := range d.vms[vmID] {
		out[k] = SharedValue{Value: append([]byte(nil), e.value...), CAS: e.cas}
	}
	return out
}

// queues are Envoy's shared queues: tokens are allocated per (vm_id, name)
// from a counter starting at 1; proxy_on_queue_ready is delivered to the
// root context of the VM that registered the queue last, after the
// enqueuing call returns (Envoy posts it to that worker's dispatcher).
type queues struct {
	h      *Host
	mu     sync.Mutex
	next   uint32
	tokens map[[2]string]uint32
	qs     map[uint32]*queue
}

type queue struct {
	items [][]byte
	owner *vm
}

func (q *queues) init(h *Host) {
	q.h = h
	q.next = 1
	q.tokens = map[[2]string]uint32{}
	q.qs = map[uint32]*queue{}
}

func (q *queues) register(vmID, name string, owner *vm) uint32 {
	q.mu.Lock()
	defer q.mu.Unlock()
	key := [2]string{vmID, name}
	t, ok := q.tokens[key]
	if !ok {
		t = q.next
		q.next++
		if q.next == 0 {
			q.next = 1
		}
		q.tokens[key] = t
	}
	if q.qs[t] == nil {
		q.qs[t] = &queue{}
	}
	q.qs[t].owner = owner
	return t
}

func (q *queues) resolve(vmID, name string) (uint32, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	t, ok := q.tokens[[2]string{vmID, name}]
	return t, ok
}

func (q *queues) dequeue(token uint32) ([]byte, status) {
	q.mu.Lock()
	defer q.mu.Unlock()
	qu := q.qs[token]
	if qu == nil {
		return nil, stNotFound
	}
	if len(qu.items) == 0 {
		return nil, stEmpty
	}
	item := qu.items[0]
	qu.items = qu.items[1:]
	return item, stOK
}

// enqueue appends and returns the VM to notify.
func (q *queues) enqueue(token uint32, data []byte) (*vm, status) {
	q.mu.Lock()
	defer q.mu.Unlock()
	qu := q.qs[token]
	if qu == nil {
		return nil, stNotFound
	}
	qu.items = append(qu.items, append([]byte(nil), data...))
	return qu.owner, stOK
}

// forget drops a closed VM as owner.
func (q *queues) forget(v *vm) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, qu := range q.qs {
		if qu.owner == v {
			qu.owner = nil
		}
	}
}

// notify delivers proxy_on_queue_ready(root, token) to owner: right after
// the current guest call when owner runs on the calling worker, otherwise
// on the owner's worker from a goroutine.
func (q *queues) notify(from, owner *vm, token uint32) {
	if owner == nil {
		return
	}
	deliver := func() {
		if owner.usable() && owner.w.vm == owner && owner.fn.onQueueReady != nil {
			owner.call(owner.fn.onQueueReady, &owner.root, rootContextID, uint64(token))
		}
	}
	if owner.w == from.w {
		from.afterCall = append(from.afterCall, deliver)
		return
	}
	h := q.h
	if h.closed.Load() {
		return
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		owner.w.mu.Lock()
		defer owner.w.mu.Unlock()
		if !h.closed.Load() {
			deliver()
		}
	}()
}
