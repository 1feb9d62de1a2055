package messages

import (
	"bytes"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Encode returns the msgpack encoding of v.
func Encode(v any) ([]byte, error) {
	return msgpack.Marshal(v)
}

// Decode decodes msgpack data into v, which must be a pointer. Unknown
// fields are ignored so newer senders can add fields. A failure returns an
// *Error with CodeBadRequest that names the target type.
func Decode(data []byte, v any) error {
	if len(data) == 0 {
		return Errorf(CodeBadRequest, "empty body: expected a msgpack %T", v)
	}
	dec := msgpack.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return Errorf(CodeBadRequest, "invalid msgpack for %T: %v", v, err)
	}
	if _, err := dec.PeekCode(); err == nil {
		return Errorf(CodeBadRequest, "invalid msgpack for %T: trailing bytes after the message", v)
	}
	return nil
}

// MustEncode is Encode for values known to encode. It panics on error.
func MustEncode(v any) []byte {
	b, err := Encode(v)
	if err != nil {
		panic(fmt.Sprintf("messages: encode %T: %v", v, err))
	}
	return b
}
