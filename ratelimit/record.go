package ratelimit

import (
	"encoding/binary"
	"fmt"
	"math"
)

// RecordSize is the length in bytes of an encoded [Record].
const RecordSize = 24

// Record is what a [Limiter] stores in a slot: a bucket's State and the hash
// of the key that last wrote it.
//
// Its encoding is RecordSize bytes, little-endian:
//
//	bytes  0..8   Tokens, IEEE 754 bits (math.Float64bits)
//	bytes  8..16  Last, int64 two's complement
//	bytes 16..24  Owner, uint64
//
// The layout is fixed: records written by one build are read by every other
// VM sharing the store, and outlive a plugin reload. A change of layout must
// change the record size or the key prefix.
type Record struct {
	State
	// Owner is the 64-bit hash of the key whose request last wrote the
	// record (see [Limiter.Slot]).
	Owner uint64
}

// AppendBinary appends r's encoding to b (encoding.BinaryAppender). It fails
// only when Tokens is NaN or infinite, which would not decode.
func (r Record) AppendBinary(b []byte) ([]byte, error) {
	if math.IsNaN(r.Tokens) || math.IsInf(r.Tokens, 0) {
		return b, fmt.Errorf("ratelimit: record: tokens: %v, want a finite number", r.Tokens)
	}
	return r.appendBinary(b), nil
}

func (r Record) appendBinary(b []byte) []byte {
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(r.Tokens))
	b = binary.LittleEndian.AppendUint64(b, uint64(r.Last))
	return binary.LittleEndian.AppendUint64(b, r.Owner)
}

// MarshalBinary returns r's encoding (encoding.BinaryMarshaler); see
// [Record.AppendBinary].
func (r Record) MarshalBinary() ([]byte, error) {
	return r.AppendBinary(make([]byte, 0, RecordSize))
}

// UnmarshalBinary decodes a record (encoding.BinaryUnmarshaler). It returns
// an error, leaving r unchanged, when data is not exactly RecordSize bytes
// or its Tokens is NaN or infinite.
func (r *Record) UnmarshalBinary(data []byte) error {
	if len(data) != RecordSize {
		return fmt.Errorf("ratelimit: record: %d bytes, want %d", len(data), RecordSize)
	}
	dec, ok := decodeRecord(data)
	if !ok {
		return fmt.Errorf("ratelimit: record: tokens: %v, want a finite number", dec.Tokens)
	}
	*r = dec
	return nil
}

// decodeRecord decodes data without allocating; ok is false when data is
// not a valid record.
func decodeRecord(data []byte) (r Record, ok bool) {
	if len(data) != RecordSize {
		return Record{}, false
	}
	r.Tokens = math.Float64frombits(binary.LittleEndian.Uint64(data[0:8]))
	r.Last = int64(binary.LittleEndian.Uint64(data[8:16]))
	r.Owner = binary.LittleEndian.Uint64(data[16:24])
	return r, !math.IsNaN(r.Tokens) && !math.IsInf(r.Tokens, 0)
}
