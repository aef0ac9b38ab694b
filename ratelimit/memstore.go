package ratelimit

import "sync"

// MemStore is an in-memory [Store] with the semantics of Envoy's proxy-wasm
// shared data, for tests and for hosts that run the filter outside Envoy:
// one counter numbers every Set (1, 2, …, skipping 0 when it wraps); Set
// with a non-zero cas fails with ErrCASMismatch when the key is present
// with another cas; Set with cas 0, and Set of an absent key, always
// succeed; keys are never deleted. Get returns a copy of the value.
//
// The zero value is an empty store. A MemStore is safe for concurrent use.
type MemStore struct {
	mu   sync.Mutex
	data map[string]memEntry
	cas  uint32 // the cas of the latest Set
}

type memEntry struct {
	value []byte
	cas   uint32
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{} }

// Get returns a copy of the value under key and its cas, or ErrNotFound.
func (s *MemStore) Get(key string) ([]byte, uint32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.data[key]
	if !ok {
		return nil, 0, ErrNotFound
	}
	v := make([]byte, len(e.value))
	copy(v, e.value)
	return v, e.cas, nil
}

// Set stores a copy of value under key, unless cas is not 0 and key is
// present with a different cas: then it returns ErrCASMismatch.
func (s *MemStore) Set(key string, value []byte, cas uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.data[key]
	if ok && cas != 0 && cas != e.cas {
		return ErrCASMismatch
	}
	if s.data == nil {
		s.data = make(map[string]memEntry)
	}
	s.cas++
	if s.cas == 0 { // 0 is not a valid cas
		s.cas++
	}
	// Get hands out copies, so the old backing array can be reused.
	e.value = append(e.value[:0], value...)
	e.cas = s.cas
	s.data[key] = e
	return nil
}

// Len returns the number of keys in the store.
func (s *MemStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.data)
}
