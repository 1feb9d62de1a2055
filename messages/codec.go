package messages

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"reflect"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// timestampExt is the msgpack extension type of timestamps.
const timestampExt = -1

func init() {
	// msgpack/v5 decodes timestamps in the local time zone. Wire times are
	// UTC, so every decoded time is too. The registration is global: it
	// applies to all msgpack decoding in the process.
	msgpack.RegisterExtDecoder(timestampExt, time.Time{}, decodeTimestamp)
}

// decodeTimestamp decodes the 32-, 64- and 96-bit forms of the msgpack
// timestamp extension into a UTC time.
func decodeTimestamp(d *msgpack.Decoder, v reflect.Value, extLen int) error {
	var b [12]byte
	if extLen != 4 && extLen != 8 && extLen != 12 {
		return fmt.Errorf("msgpack: invalid timestamp length %d: expected 4, 8 or 12 bytes", extLen)
	}
	if err := d.ReadFull(b[:extLen]); err != nil {
		return err
	}

	var tm time.Time
	switch extLen {
	case 4:
		tm = time.Unix(int64(binary.BigEndian.Uint32(b[:4])), 0)
	case 8:
		n := binary.BigEndian.Uint64(b[:8])
		tm = time.Unix(int64(n&(1<<34-1)), int64(n>>34))
	case 12:
		tm = time.Unix(int64(binary.BigEndian.Uint64(b[4:12])), int64(binary.BigEndian.Uint32(b[:4])))
	}
	v.Set(reflect.ValueOf(tm.UTC()))
	return nil
}

// Encode returns the msgpack encoding of v.
func Encode(v any) ([]byte, error) {
	return msgpack.Marshal(v)
}

// Decode decodes msgpack data into v, which must be a pointer. Unknown
// fields are ignored so newer senders can add fields. A failure returns an
// *Error with CodeBadRequest that names the target type.
func Decode(data []byte, v any) (err error) {
	// msgpack/v5 (v5.4.1) panics on some well-formed input, such as a nil
	// where a time.Time field expects a timestamp.
	defer func() {
		if r := recover(); r != nil {
			err = Errorf(CodeBadRequest, "invalid msgpack for %T: %v", v, r)
		}
	}()

	if len(data) == 0 {
		return Errorf(CodeBadRequest, "empty body: expected a msgpack %T", v)
	}
	if err := checkWellFormed(data); err != nil {
		return Errorf(CodeBadRequest, "invalid msgpack for %T: %v", v, err)
	}
	if err := msgpack.NewDecoder(bytes.NewReader(data)).Decode(v); err != nil {
		return Errorf(CodeBadRequest, "invalid msgpack for %T: %v", v, err)
	}
	return nil
}

// MaxNestingDepth is the deepest nesting of msgpack arrays and maps that
// Decode accepts, counting the message itself as 1.
const MaxNestingDepth = 1000

// checkWellFormed returns an error unless data is exactly one complete
// msgpack value that nests at most MaxNestingDepth deep. Decode runs it
// first for two reasons. msgpack/v5 (v5.4.1) allocates a typed slice of
// the length that an array header declares before it reads any element, so
// five bytes could ask for gigabytes; after this check a declared length
// never exceeds the bytes that follow. And the decoder recurses once per
// level, so unbounded nesting overflows the goroutine stack.
func checkWellFormed(data []byte) error {
	// pending[i] counts the values still to read at nesting level i.
	pending := []uint64{1}
	i := 0
	for len(pending) > 0 {
		top := len(pending) - 1
		if pending[top] == 0 {
			pending = pending[:top]
			continue
		}
		pending[top]--

		if i >= len(data) {
			return fmt.Errorf("message ends after %d bytes, inside a value", len(data))
		}
		c := data[i]
		i++

		skip, values, err := msgpackHeader(c, data[i:])
		if err != nil {
			return fmt.Errorf("at byte %d: %w", i-1, err)
		}
		if skip > uint64(len(data)-i) {
			return fmt.Errorf("at byte %d: value needs %d more bytes, but %d remain", i-1, skip, len(data)-i)
		}
		i += int(skip)

		if values == 0 {
			continue
		}
		if values > uint64(len(data)-i) {
			return fmt.Errorf("at byte %d: container declares %d values, but %d bytes remain", i-1, values, len(data)-i)
		}
		if len(pending) >= MaxNestingDepth {
			return fmt.Errorf("at byte %d: arrays and maps nest deeper than %d levels", i-1, MaxNestingDepth)
		}
		pending = append(pending, values)
	}

	if i != len(data) {
		return fmt.Errorf("trailing bytes after the message: %d", len(data)-i)
	}
	return nil
}

// msgpackHeader reads the header that starts with code c, followed by rest.
// It returns how many bytes follow the code before the next value (length
// fields and payload), and how many values a map or an array contains.
func msgpackHeader(c byte, rest []byte) (skip, values uint64, err error) {
	length := func(size int) (uint64, error) {
		if len(rest) < size {
			return 0, fmt.Errorf("length field of %d bytes is cut off", size)
		}
		var n uint64
		for _, b := range rest[:size] {
			n = n<<8 | uint64(b)
		}
		return n, nil
	}

	switch {
	case c <= 0x7f, c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
		return 0, 0, nil
	case c <= 0x8f:
		return 0, 2 * uint64(c&0x0f), nil
	case c <= 0x9f:
		return 0, uint64(c & 0x0f), nil
	case c <= 0xbf:
		return uint64(c & 0x1f), 0, nil
	}

	switch c {
	case 0xcc, 0xd0:
		return 1, 0, nil
	case 0xcd, 0xd1:
		return 2, 0, nil
	case 0xca, 0xce, 0xd2:
		return 4, 0, nil
	case 0xcb, 0xcf, 0xd3:
		return 8, 0, nil
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16: type byte and data
		return 1 + 1<<(c-0xd4), 0, nil
	case 0xc4, 0xd9: // bin 8, str 8
		n, err := length(1)
		return 1 + n, 0, err
	case 0xc5, 0xda: // bin 16, str 16
		n, err := length(2)
		return 2 + n, 0, err
	case 0xc6, 0xdb: // bin 32, str 32
		n, err := length(4)
		return 4 + n, 0, err
	case 0xc7: // ext 8: length, type byte, data
		n, err := length(1)
		return 2 + n, 0, err
	case 0xc8:
		n, err := length(2)
		return 3 + n, 0, err
	case 0xc9:
		n, err := length(4)
		return 5 + n, 0, err
	case 0xdc:
		n, err := length(2)
		return 2, n, err
	case 0xdd:
		n, err := length(4)
		return 4, n, err
	case 0xde:
		n, err := length(2)
		return 2, 2 * n, err
	case 0xdf:
		n, err := length(4)
		return 4, 2 * n, err
	}
	return 0, 0, fmt.Errorf("code %#x is not used by msgpack", c)
}

// MustEncode is Encode for values known to encode. It panics on error.
func MustEncode(v any) []byte {
	b, err := Encode(v)
	if err != nil {
		panic(fmt.Sprintf("messages: encode %T: %v", v, err))
	}
	return b
}
