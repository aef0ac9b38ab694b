package ratelimit

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"sync"
	"time"
)

// Errors a [Store] returns. An adapter maps its host's errors to these (for
// proxy-wasm: types.ErrorStatusNotFound and types.ErrorStatusCasMismatch);
// they may be wrapped.
var (
	// ErrCASMismatch: Set was given a non-zero cas, and the key has been
	// written since the Get that returned it.
	ErrCASMismatch = errors.New("ratelimit: cas mismatch")
	// ErrNotFound: Get found no value under the key.
	ErrNotFound = errors.New("ratelimit: not found")
)

// Store is a key-value store with compare-and-swap, shared by every process
// that enforces one limit. Its semantics are those of proxy-wasm shared data
// in Envoy (filter/ adapts proxywasm.GetSharedData and SetSharedData):
//
//   - Get returns the value stored under key and its cas, a version number
//     that is never 0 for a present key and changes on every Set; or
//     ErrNotFound.
//   - Set stores value under key. When cas is not 0 and the key is present
//     with a different cas, it fails with ErrCASMismatch and changes nothing.
//     When cas is 0 it is unconditional. Envoy also inserts an absent key
//     whatever the cas; a store that instead refuses a non-zero cas (or,
//     like the proxytest emulator, a cas of 0 for a present key) with
//     ErrCASMismatch also works with Limiter.
//   - Keys are never deleted.
//
// A Limiter neither modifies nor keeps the slice Get returns. It reuses the
// value passed to Set after Set returns, so Set must copy it if it keeps it
// (Envoy and MemStore do).
type Store interface {
	Get(key string) (value []byte, cas uint32, err error)
	Set(key string, value []byte, cas uint32) error
}

const (
	// DefaultSlots is the slot count a caller should use when not told
	// otherwise. A slot holds one bucket; only slots in use take memory in
	// the store (in Envoy about 100 bytes each: key, RecordSize-byte value
	// and hash-map node), so the default costs at most about 2 MB. Among n
	// active keys about n²/(2·slots) pairs share a slot: about 3 pairs for
	// 300 keys, 30 for 1000.
	DefaultSlots = 16384
	// MaxSlots is the largest slot count NewLimiter accepts: at about 100
	// bytes a slot, 1<<20 slots can hold about 100 MB of shared data that
	// is never freed, more than a sidecar should.
	MaxSlots = 1 << 20
	// MaxCASRetries is how many times Allow retries after a CAS mismatch;
	// it makes at most 1+MaxCASRetries reads and writes. A mismatch means
	// another worker wrote the slot since our read, that is, allowed a
	// request for a key of this slot; only allowed requests write. Eight
	// mismatches in a row mean at least eight requests for this slot were
	// allowed during one Allow call (a few microseconds): more than one per
	// worker for the usual 2 to 8 workers, so the slot is saturated and its
	// tokens are being spent as fast as they are written. The request is
	// then denied (Result.Exhausted): denying can never exceed the limit,
	// while allowing would let a flood that causes contention through
	// unchecked. The cost is a possible early 429 for a key under extreme
	// contention, which the caller counts. A bound also keeps the latency
	// of one call bounded.
	MaxCASRetries = 8
)

// Limiter is a token-bucket limiter per key, with each key's bucket kept in
// one of a fixed number of slots of a shared [Store], so that several
// processes (Envoy's worker VMs) enforce one limit together. See the package
// documentation for what happens when two keys share a slot.
//
// Each call reads the key's slot, applies [Limit.Allow], and, if the request
// is allowed, writes the new state back with compare-and-swap, retrying at
// most [MaxCASRetries] times. A denied request writes nothing.
//
// A never-written slot is inserted with cas 0, an unconditional write,
// because proxy-wasm has no insert-if-absent: if two processes insert the
// same new slot at once, the last write wins and the requests the other
// one allowed in the meantime are forgotten. That happens at most once per
// slot and racing process, for the life of the store (keys are never
// deleted, so a slot is absent only before its first write); each time the
// slot's bucket is at worst refilled to Burst-1, so at most Burst extra
// requests pass per racing process. The window is one Get and the Set that
// follows it, with no other work in between, so in practice a race loses
// a request or two, if any. A store that refuses cas 0 for a present key
// (the proxytest emulator does) closes the window: the insert fails and
// Allow retries.
//
// A slot whose record cannot be decoded is treated as a new, full bucket,
// overwritten with compare-and-swap, and reported in Result.Corrupt.
//
// A Limiter is immutable after NewLimiter and safe for concurrent use when
// its Store is.
type Limiter struct {
	limit  Limit
	slots  uint64
	prefix string
	store  Store
}

// NewLimiter returns a Limiter for limit that keeps its buckets in slots
// slots of store, under the keys keyPrefix+"0" to keyPrefix+"<slots-1>"
// (see [Limiter.SlotKey]). Every process sharing the limit must use the
// same limit, slots and keyPrefix; the key prefix should name the record
// layout's version, so that a new layout never reads an old one. It
// returns an error naming the problem when limit is invalid, slots is
// outside [1, MaxSlots] or store is nil.
func NewLimiter(limit Limit, slots int, keyPrefix string, store Store) (*Limiter, error) {
	if err := limit.Validate(); err != nil {
		return nil, err
	}
	if slots < 1 || slots > MaxSlots {
		return nil, fmt.Errorf("ratelimit: slots: %d, want 1 to %d", slots, MaxSlots)
	}
	if store == nil {
		return nil, errors.New("ratelimit: store: nil")
	}
	return &Limiter{limit: limit, slots: uint64(slots), prefix: keyPrefix, store: store}, nil
}

// Limit returns the limit l enforces.
func (l *Limiter) Limit() Limit { return l.limit }

// Result is the outcome of [Limiter.Allow]. The flags describe the read and
// write attempt that decided.
type Result struct {
	Decision
	// Slot is the key's slot, in [0, slots).
	Slot int
	// Collision reports that the slot's record was last written for a
	// different key, whose bucket this key now shares. A key whose 64-bit
	// hash equals the previous owner's is not reported (the hash is not
	// cryptographic: whoever controls keys can make such pairs).
	Collision bool
	// Retries is the number of CAS mismatches retried, at most MaxCASRetries.
	Retries int
	// Exhausted reports that every retry lost: the request was denied, with
	// Remaining 0 and RetryAfter the time one token takes (at least 1ns).
	Exhausted bool
	// Corrupt reports that the slot held a record that could not be decoded,
	// treated as a new, full bucket.
	Corrupt bool
}

// Allow decides one request for key at now, updating key's bucket in the
// store. The decision is that of [Limit.Allow] on the slot's stored state,
// so Remaining is computed from the state written (or, when denied, read).
//
// It returns an error only when the Store fails with something other than
// ErrNotFound or ErrCASMismatch; the Result then holds the Slot and a zero
// Decision, and the caller chooses what to do (the filter follows on_error).
func (l *Limiter) Allow(key string, now time.Time) (Result, error) {
	h := hashKey(key)
	res := Result{Slot: l.slotOf(h)}
	skey := l.SlotKey(res.Slot)
	for {
		value, cas, err := l.store.Get(skey)
		var rec Record
		res.Collision, res.Corrupt = false, false
		switch {
		case err == nil:
			var ok bool
			if rec, ok = decodeRecord(value); ok {
				res.Collision = rec.Owner != h
			} else {
				rec, res.Corrupt = Record{}, true
			}
		case errors.Is(err, ErrNotFound):
			cas = 0
		default:
			return res, fmt.Errorf("ratelimit: get %q: %w", skey, err)
		}

		next, d := l.limit.Allow(rec.State, now)
		res.Decision = d
		if !d.Allowed {
			return res, nil
		}
		buf := recordBufs.Get().(*[RecordSize]byte)
		err = l.store.Set(skey, Record{State: next, Owner: h}.appendBinary(buf[:0]), cas)
		recordBufs.Put(buf)
		switch {
		case err == nil:
			return res, nil
		case !errors.Is(err, ErrCASMismatch):
			res.Decision = Decision{}
			return res, fmt.Errorf("ratelimit: set %q: %w", skey, err)
		case res.Retries == MaxCASRetries:
			res.Exhausted = true
			res.Decision = Decision{RetryAfter: max(l.limit.durationFromTokens(1), time.Nanosecond)}
			return res, nil
		}
		res.Retries++
	}
}

// recordBufs holds buffers for encoded records: Store.Set does not keep the
// value it is given.
var recordBufs = sync.Pool{New: func() any { return new([RecordSize]byte) }}

// Slot returns key's slot, in [0, slots): the high bits of the product of
// the key's hash and the slot count. The hash is 64-bit FNV-1a followed by
// MurmurHash3's 64-bit finalizer, which makes every bit of the result
// depend on every bit of the key (FNV-1a alone barely changes its high bits
// for a different last byte, nor its low bits for a different high bit in
// any byte, so "10.0.0.1" and "10.0.0.2" would share a slot). The function
// has no seed: it is the same in every process and every build.
func (l *Limiter) Slot(key string) int { return l.slotOf(hashKey(key)) }

func (l *Limiter) slotOf(h uint64) int {
	hi, _ := bits.Mul64(h, l.slots)
	return int(hi)
}

// SlotKey returns the store key of slot: the key prefix followed by the
// slot number in decimal, such as "wasmguard.rl.v1.42".
func (l *Limiter) SlotKey(slot int) string {
	var buf [64]byte
	b := append(buf[:0], l.prefix...)
	b = strconv.AppendInt(b, int64(slot), 10)
	return string(b)
}

// hashKey is the key hash that picks the slot and identifies the owner:
// mix64(fnv1a(key)). mix64 is a bijection, so two keys have the same hash
// exactly when their FNV-1a hashes are equal.
func hashKey(key string) uint64 { return mix64(fnv1a(key)) }

// fnv1a is 64-bit FNV-1a.
func fnv1a(key string) uint64 {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= prime64
	}
	return h
}

// mix64 is MurmurHash3's fmix64 finalizer.
func mix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
