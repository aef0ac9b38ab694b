// Package ratelimit is a token-bucket rate limiter whose state can live in a
// store shared by several processes, such as Envoy's proxy-wasm shared data,
// which every worker thread's VM of one plugin sees.
//
// The package is pure Go: it never reads the clock (time is an argument) and
// never imports the proxy-wasm SDK. It has three layers, one file each:
//
//   - limit.go: the bucket arithmetic. [Limit.Allow] maps a stored [State]
//     and an instant to a [Decision] and the next State. Its decisions are
//     those of golang.org/x/time/rate's Limiter.AllowN(t, 1) for the same rate
//     and burst, for every schedule of instants, including one where time goes
//     backwards; a differential test and a fuzz target check this.
//   - record.go: [Record], a State plus the hash of the key that last wrote
//     it, encoded as a fixed-size little-endian record of [RecordSize] bytes.
//   - limiter.go: [Limiter], which keeps one bucket per key in a bounded
//     number of slots of a compare-and-swap [Store]. [MemStore] (memstore.go)
//     is an in-memory Store with Envoy's semantics for tests and hosts.
//
// # Bucket
//
// A bucket holds at most Burst tokens and gains Rate tokens per second. It
// starts full. A request takes one token when at least one is available
// (exactly: when x/time/rate would let it happen without waiting); otherwise
// it is denied and costs nothing: a denied request does not change the
// bucket. An instant earlier than the bucket's last update refills nothing
// (as in x/time/rate, the earlier instant then becomes the bucket's last
// update when the request is allowed).
//
// # Slots
//
// Shared data can never be deleted, so a Limiter keeps its buckets in a fixed
// number of slots and memory is bounded by the slot count, whatever the
// number of keys. A key's slot is a fixed function of the key (64-bit
// FNV-1a with a finalizer, see [Limiter.Slot]); it has no random seed,
// because every VM must compute the same slot. Anyone who
// controls the key (for example when the key is a request header) can
// therefore choose keys that land in a given slot.
//
// Two live keys that land in one slot share one bucket. This is the
// conservative choice: the configured limit is never exceeded for either key,
// but a noisy key can spend the tokens of its quiet neighbour, so the quiet
// key may be limited early. Each record remembers the hash of the key that
// last wrote it; when a request's key differs, [Result].Collision is set so
// the caller can count it, and an allowed request records its own key as the
// new owner. With [DefaultSlots], 300 active keys give about 3 pairs that
// share a slot, 1000 give about 30; raise slots when there are many more.
//
// # Concurrency
//
// A Limiter reads a slot, decides, and writes the new state back with
// compare-and-swap; when another writer got there first it retries, at most
// [MaxCASRetries] times. If every retry loses, the request is denied and
// [Result].Exhausted is set (see [MaxCASRetries] for why). A denied request
// writes nothing, so a flood of denied requests causes no contention. A
// slot's very first write cannot be a compare-and-swap; see [Limiter] for
// the bounded race that leaves.
//
// Workers read the clock independently, so a request may carry an instant
// slightly earlier than the slot's last update. As in x/time/rate it
// refills nothing, but if it is allowed the bucket's last update moves back
// to it, and the interval between the two instants refills a second time
// later: a skew of s between workers can add Rate × s tokens (for
// microseconds of skew, a negligible fraction of one token).
package ratelimit
