package messages

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Payload is a msgpack-encoded value carried through jetqueue without being
// decoded: job args, kwargs and results. The coordinator stores and forwards
// the bytes as they came, so it never pays to decode user data.
//
// In JSON, a Payload appears as the value it encodes, and a nil Payload as null.
type Payload []byte

// EncodeMsgpack writes the payload's bytes unchanged, or msgpack nil when empty.
func (p Payload) EncodeMsgpack(enc *msgpack.Encoder) error {
	if len(p) == 0 {
		return enc.EncodeNil()
	}
	return msgpack.RawMessage(p).EncodeMsgpack(enc)
}

// DecodeMsgpack reads one msgpack value into p without interpreting it.
// A msgpack nil becomes an empty Payload.
func (p *Payload) DecodeMsgpack(dec *msgpack.Decoder) error {
	raw, err := dec.DecodeRaw()
	if err != nil {
		return err
	}
	if len(raw) == 1 && raw[0] == 0xc0 {
		*p = nil
		return nil
	}
	*p = Payload(raw)
	return nil
}

// MarshalJSON decodes the msgpack value and encodes it as JSON.
func (p Payload) MarshalJSON() ([]byte, error) {
	v, err := p.Value()
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// UnmarshalJSON stores the JSON value as msgpack.
func (p *Payload) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return err
	}
	enc, err := NewPayload(fromJSON(v))
	if err != nil {
		return err
	}
	*p = enc
	return nil
}

// Value decodes the payload into Go values: maps become map[string]any (keys
// that are not strings are printed), arrays []any, and binary strings string.
// An empty payload decodes to nil.
func (p Payload) Value() (any, error) {
	if len(p) == 0 {
		return nil, nil
	}
	dec := msgpack.NewDecoder(bytes.NewReader(p))
	dec.SetMapDecoder(func(d *msgpack.Decoder) (any, error) {
		return d.DecodeUntypedMap()
	})
	v, err := dec.DecodeInterface()
	if err != nil {
		return nil, fmt.Errorf("decode payload: %w", err)
	}
	return jsonSafe(v), nil
}

// NewPayload encodes v as msgpack. A nil v gives an empty Payload.
func NewPayload(v any) (Payload, error) {
	if v == nil {
		return nil, nil
	}
	b, err := msgpack.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode payload: %w", err)
	}
	return Payload(b), nil
}

// MustPayload is NewPayload for values known to encode, such as literals in
// tests and examples. It panics on error.
func MustPayload(v any) Payload {
	p, err := NewPayload(v)
	if err != nil {
		panic(err)
	}
	return p
}

// Kind returns the msgpack kind of the payload's top-level value: "nil",
// "map", "array" or "other".
func (p Payload) Kind() string {
	if len(p) == 0 {
		return "nil"
	}
	c := p[0]
	switch {
	case c == 0xc0:
		return "nil"
	case c >= 0x80 && c <= 0x8f, c == 0xde, c == 0xdf:
		return "map"
	case c >= 0x90 && c <= 0x9f, c == 0xdc, c == 0xdd:
		return "array"
	}
	return "other"
}

// jsonSafe converts maps with non-string keys, which msgpack allows and JSON
// does not, into maps keyed by the keys' printed form.
func jsonSafe(v any) any {
	switch t := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[fmt.Sprint(k)] = jsonSafe(e)
		}
		return m
	case map[string]any:
		for k, e := range t {
			t[k] = jsonSafe(e)
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = jsonSafe(e)
		}
		return t
	case []byte:
		return string(t)
	}
	return v
}

// fromJSON turns json.Number values into int64 where they are integers, so
// "3" arrives at a plugin as an integer and not as a float.
func fromJSON(v any) any {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		return f
	case map[string]any:
		for k, e := range t {
			t[k] = fromJSON(e)
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = fromJSON(e)
		}
		return t
	}
	return v
}
