package ratelimit

import (
	"bytes"
	"encoding"
	"math"
	"testing"
)

var (
	_ encoding.BinaryMarshaler   = Record{}
	_ encoding.BinaryAppender    = Record{}
	_ encoding.BinaryUnmarshaler = (*Record)(nil)
)

func TestRecordGolden(t *testing.T) {
	// The layout is shared by every VM and outlives a reload: it must not
	// change.
	r := Record{State: State{Tokens: 1.5, Last: -2}, Owner: 0x0102030405060708}
	want := []byte{
		0, 0, 0, 0, 0, 0, 0xf8, 0x3f, // 1.5
		0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // -2
		8, 7, 6, 5, 4, 3, 2, 1,
	}
	got, err := r.MarshalBinary()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("MarshalBinary() = %x, %v; want %x", got, err, want)
	}
	if len(got) != RecordSize {
		t.Errorf("len = %d, want RecordSize %d", len(got), RecordSize)
	}
	var back Record
	if err := back.UnmarshalBinary(got); err != nil || back != r {
		t.Errorf("UnmarshalBinary(%x) = %+v, %v; want %+v", got, back, err, r)
	}
	appended, err := r.AppendBinary([]byte("prefix"))
	if err != nil || string(appended[:6]) != "prefix" || !bytes.Equal(appended[6:], want) {
		t.Errorf("AppendBinary(prefix) = %x, %v", appended, err)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range []Record{
		{},
		{State: State{Tokens: -0.25, Last: math.MaxInt64}, Owner: math.MaxUint64},
		{State: State{Tokens: math.MaxFloat64, Last: math.MinInt64}, Owner: 1},
		{State: State{Tokens: math.SmallestNonzeroFloat64, Last: 1}},
	} {
		b, err := r.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary(%+v): %v", r, err)
		}
		var back Record
		if err := back.UnmarshalBinary(b); err != nil || back != r {
			t.Errorf("round trip of %+v = %+v, %v", r, back, err)
		}
	}
}

func TestRecordErrors(t *testing.T) {
	valid, _ := Record{State: State{Tokens: 1, Last: 1}, Owner: 1}.MarshalBinary()
	withTokens := func(bits uint64) []byte {
		b := bytes.Clone(valid)
		for i := range 8 {
			b[i] = byte(bits >> (8 * i))
		}
		return b
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"nil", nil, "ratelimit: record: 0 bytes, want 24"},
		{"one short", valid[:RecordSize-1], "ratelimit: record: 23 bytes, want 24"},
		{"one long", append(bytes.Clone(valid), 0), "ratelimit: record: 25 bytes, want 24"},
		{"NaN tokens", withTokens(math.Float64bits(math.NaN())), "ratelimit: record: tokens: NaN, want a finite number"},
		{"+Inf tokens", withTokens(math.Float64bits(math.Inf(1))), "ratelimit: record: tokens: +Inf, want a finite number"},
		{"-Inf tokens", withTokens(math.Float64bits(math.Inf(-1))), "ratelimit: record: tokens: -Inf, want a finite number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Record{Owner: 42}
			err := r.UnmarshalBinary(tt.data)
			if err == nil || err.Error() != tt.want {
				t.Errorf("UnmarshalBinary(%x) = %v, want %q", tt.data, err, tt.want)
			}
			if r != (Record{Owner: 42}) {
				t.Errorf("UnmarshalBinary changed the record on error: %+v", r)
			}
		})
	}
	if _, err := (Record{State: State{Tokens: math.NaN()}}).MarshalBinary(); err == nil {
		t.Errorf("MarshalBinary(NaN tokens) succeeded, want an error")
	}
}
