package messages

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

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
	return json.Marshal(keepFloats(v))
}

// UnmarshalJSON stores the JSON value as msgpack.
func (p *Payload) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return err
	}
	v, err := fromJSON(v)
	if err != nil {
		return err
	}
	enc, err := NewPayload(v)
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
	dec.SetMapDecoder(decodeJSONMap)
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

// decodeJSONMap decodes a msgpack map into a map[string]any, printing keys
// that are not strings. DecodeUntypedMap would panic on a key that is an
// array or a map, which are not comparable in Go.
func decodeJSONMap(d *msgpack.Decoder) (any, error) {
	n, err := d.DecodeMapLen()
	if err != nil || n < 0 {
		return nil, err
	}

	// The length comes from the input: cap the allocation it causes.
	m := make(map[string]any, min(n, 1024))
	for range n {
		k, err := d.DecodeInterface()
		if err != nil {
			return nil, err
		}
		v, err := d.DecodeInterface()
		if err != nil {
			return nil, err
		}
		key, ok := k.(string)
		if !ok {
			key = fmt.Sprint(jsonSafe(k))
		}
		m[key] = v
	}
	return m, nil
}

// jsonSafe converts binary strings in v to strings, which JSON can carry.
func jsonSafe(v any) any {
	switch t := v.(type) {
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

// keepFloats replaces the floats in v with JSON numbers that keep a
// fraction or an exponent, so 2.0 reaches a JSON reader as a float and not
// as the integer 2. NaN and infinities stay, and json.Marshal rejects them.
func keepFloats(v any) any {
	var f any
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = keepFloats(e)
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = keepFloats(e)
		}
		return t
	case float64:
		f = t
	case float32:
		f = t
	default:
		return v
	}

	b, err := json.Marshal(f)
	if err != nil {
		return v
	}
	if !bytes.ContainsAny(b, ".eE") {
		b = append(b, ".0"...)
	}
	return json.Number(b)
}

// fromJSON turns json.Number values into int64 or uint64 where they are
// integers, so "3" arrives at a plugin as an integer and not as a float, and
// into float64 otherwise. A number beyond the float64 range is an error.
func fromJSON(v any) (any, error) {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i, nil
		}
		if u, err := strconv.ParseUint(string(t), 10, 64); err == nil {
			return u, nil
		}
		f, err := t.Float64()
		if err != nil {
			return nil, fmt.Errorf("number %s is out of the float64 range", t)
		}
		return f, nil
	case map[string]any:
		for k, e := range t {
			c, err := fromJSON(e)
			if err != nil {
				return nil, err
			}
			t[k] = c
		}
		return t, nil
	case []any:
		for i, e := range t {
			c, err := fromJSON(e)
			if err != nil {
				return nil, err
			}
			t[i] = c
		}
		return t, nil
	}
	return v, nil
}
