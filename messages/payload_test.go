package messages_test

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/jetqueue/jetqueue/messages"
)

// rawPayloads are msgpack values written byte by byte, several in forms that
// Go's encoder would not choose, so a payload that is decoded and encoded
// again on its way through shows up as changed bytes.
var rawPayloads = map[string][]byte{
	"fixarray":          {0x92, 0x01, 0xa1, 'x'},
	"array16":           {0xdc, 0x00, 0x01, 0xc3},
	"fixmap":            {0x81, 0xa1, 'k', 0xa1, 'v'},
	"map16 int keys":    {0xde, 0x00, 0x02, 0x01, 0xa1, 'a', 0x02, 0xa1, 'b'},
	"nested":            {0x81, 0xa1, 'm', 0x81, 0xa1, 'n', 0x91, 0xc0},
	"int64 of 1":        {0xd3, 0, 0, 0, 0, 0, 0, 0, 1},
	"uint8":             {0xcc, 0xff},
	"float32":           {0xca, 0x3f, 0xc0, 0x00, 0x00},
	"float64":           {0xcb, 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18},
	"str8":              {0xd9, 0x03, 'a', 'b', 'c'},
	"bin8":              {0xc4, 0x02, 0x00, 0xff},
	"true":              {0xc3},
	"ext 5":             {0xd4, 0x05, 0x01},
	"timestamp":         {0xd6, 0xff, 0x65, 0x53, 0xf1, 0x00},
	"negative fixint":   {0xe0},
	"empty array":       {0x90},
	"empty map":         {0x80},
	"array of payloads": {0x93, 0xc0, 0x90, 0x80},
}

func TestPayloadPassesThroughUnchanged(t *testing.T) {
	for name, raw := range rawPayloads {
		in := messages.SubmitRequest{PluginName: "p", Args: raw, Kwargs: raw}
		data := messages.MustEncode(in)
		if !bytes.Contains(data, append([]byte("\xa4args"), raw...)) {
			t.Errorf("%s: encoded request does not carry args verbatim: % x", name, data)
		}

		var out messages.SubmitRequest
		if err := messages.Decode(data, &out); err != nil {
			t.Fatalf("%s: Decode: %v", name, err)
		}
		if !bytes.Equal(out.Args, raw) || !bytes.Equal(out.Kwargs, raw) {
			t.Errorf("%s: payload % x came back as args % x, kwargs % x", name, raw, out.Args, out.Kwargs)
		}
	}
}

func TestPayloadNilAndEmpty(t *testing.T) {
	tests := map[string]messages.Payload{
		"nil":         nil,
		"empty":       {},
		"msgpack nil": {0xc0},
		"NewPayload":  must(messages.NewPayload(nil)),
		"MustPayload": messages.MustPayload(nil),
		"nil interface": func() messages.Payload {
			var v any
			return messages.MustPayload(v)
		}(),
	}
	for name, p := range tests {
		data := messages.MustEncode(messages.Job{Result: p})
		if !bytes.Contains(data, []byte("\xa6result\xc0")) {
			t.Errorf("%s: result is not encoded as msgpack nil: % x", name, data)
		}

		var out messages.Job
		if err := messages.Decode(data, &out); err != nil {
			t.Fatalf("%s: Decode: %v", name, err)
		}
		if out.Result != nil {
			t.Errorf("%s: result came back as % x, want nil", name, out.Result)
		}
		if k := p.Kind(); k != "nil" {
			t.Errorf("%s: Kind() = %q, want nil", name, k)
		}

		j, err := json.Marshal(p)
		if err != nil || string(j) != "null" {
			t.Errorf("%s: JSON is %s (error %v), want null", name, j, err)
		}
	}
}

func TestPayloadKind(t *testing.T) {
	want := map[string]string{
		"fixarray": "array", "array16": "array", "empty array": "array", "array of payloads": "array",
		"fixmap": "map", "map16 int keys": "map", "nested": "map", "empty map": "map",
		"int64 of 1": "other", "uint8": "other", "float32": "other", "float64": "other",
		"str8": "other", "bin8": "other", "true": "other", "ext 5": "other", "timestamp": "other",
		"negative fixint": "other",
	}
	for name, kind := range want {
		if got := messages.Payload(rawPayloads[name]).Kind(); got != kind {
			t.Errorf("%s: Kind() = %q, want %q", name, got, kind)
		}
	}

	large := map[string]messages.Payload{
		"array": messages.MustPayload(make([]int, 70000)),
		"map": messages.MustPayload(func() map[int]int {
			m := make(map[int]int, 70000)
			for i := range 70000 {
				m[i] = i
			}
			return m
		}()),
	}
	for kind, p := range large {
		if p[0] != 0xdd && p[0] != 0xdf {
			t.Fatalf("%s of 70000 elements starts with %#x, not the 32-bit header", kind, p[0])
		}
		if got := p.Kind(); got != kind {
			t.Errorf("32-bit %s: Kind() = %q", kind, got)
		}
	}
}

func TestPayloadMarshalJSON(t *testing.T) {
	tests := map[string]struct {
		payload messages.Payload
		want    string
	}{
		"array":           {rawPayloads["fixarray"], `[1,"x"]`},
		"map":             {rawPayloads["fixmap"], `{"k":"v"}`},
		"nested":          {rawPayloads["nested"], `{"m":{"n":[null]}}`},
		"int keys":        {rawPayloads["map16 int keys"], `{"1":"a","2":"b"}`},
		"bool keys":       {must(msgpack.Marshal(map[bool]int{true: 1})), `{"true":1}`},
		"nested int keys": {must(msgpack.Marshal([]any{map[int]string{7: "x"}})), `[{"7":"x"}]`},
		"int64":           {rawPayloads["int64 of 1"], `1`},
		"negative":        {rawPayloads["negative fixint"], `-32`},
		"max uint64":      {messages.MustPayload(uint64(math.MaxUint64)), `18446744073709551615`},
		"min int64":       {messages.MustPayload(int64(math.MinInt64)), `-9223372036854775808`},
		"float64":         {rawPayloads["float64"], `3.141592653589793`},
		"float32":         {rawPayloads["float32"], `1.5`},
		"string":          {rawPayloads["str8"], `"abc"`},
		"binary":          {messages.MustPayload([]byte("bytes")), `"bytes"`},
		"bool":            {rawPayloads["true"], `true`},
		"timestamp":       {messages.MustPayload(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)), `"2024-01-02T03:04:05Z"`},
		"empty array":     {rawPayloads["empty array"], `[]`},
		"empty map":       {rawPayloads["empty map"], `{}`},
	}
	for name, tt := range tests {
		got, err := tt.payload.MarshalJSON()
		if err != nil {
			t.Errorf("%s: MarshalJSON: %v", name, err)
			continue
		}
		if name == "timestamp" {
			// The time zone of the decoded time is the local one.
			var tm time.Time
			if err := json.Unmarshal(got, &tm); err != nil || !tm.Equal(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)) {
				t.Errorf("timestamp: JSON %s is not the time (error %v)", got, err)
			}
			continue
		}
		if string(got) != tt.want {
			t.Errorf("%s: JSON %s, want %s", name, got, tt.want)
		}
	}
}

func TestPayloadMarshalJSONErrors(t *testing.T) {
	tests := map[string]messages.Payload{
		"truncated":   {0x92, 0x01},
		"unknown ext": rawPayloads["ext 5"],
		"NaN":         messages.MustPayload(math.NaN()),
		"infinity":    messages.MustPayload(math.Inf(1)),
	}
	for name, p := range tests {
		if j, err := p.MarshalJSON(); err == nil {
			t.Errorf("%s: MarshalJSON gave %s and no error", name, j)
		}
	}
}

// A map key that is an array or a map must be printed like other keys that
// are not strings. DecodeUntypedMap panics on such keys with "hash of
// unhashable type", because Go map keys must be comparable.
func TestPayloadMarshalJSONCompositeKeys(t *testing.T) {
	tests := map[string]messages.Payload{
		"array key": {0x81, 0x91, 0x01, 0x02},
		"map key":   {0x81, 0x81, 0x01, 0x01, 0x02},
	}
	for name, p := range tests {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("MarshalJSON of % x panicked: %v", []byte(p), r)
				}
			}()

			j, err := p.MarshalJSON()
			if err != nil {
				t.Fatalf("MarshalJSON of % x: %v", []byte(p), err)
			}
			var m map[string]int
			if err := json.Unmarshal(j, &m); err != nil || len(m) != 1 {
				t.Errorf("JSON %s is not an object with one printed key (error %v)", j, err)
			}
		})
	}
}

func TestPayloadUnmarshalJSON(t *testing.T) {
	var p messages.Payload
	in := `{"n": 3, "neg": -4, "f": 2.5, "exp": 1e3, "s": "x", "b": false, "z": null,
		"list": [1, 2.5, "three", [4]], "nested": {"deep": {"n": 9007199254740993}}}`
	if err := p.UnmarshalJSON([]byte(in)); err != nil {
		t.Fatalf("UnmarshalJSON: %v", err)
	}
	if k := p.Kind(); k != "map" {
		t.Errorf("Kind() = %q, want map", k)
	}

	v, err := p.Value()
	if err != nil {
		t.Fatalf("Value: %v", err)
	}
	m := v.(map[string]any)
	want := map[string]any{
		"n": int64(3), "neg": int64(-4), "f": 2.5, "exp": float64(1000), "s": "x", "b": false, "z": nil,
		"list":   []any{int64(1), 2.5, "three", []any{int64(4)}},
		"nested": map[string]any{"deep": map[string]any{"n": int64(9007199254740993)}},
	}
	for k, w := range want {
		if !reflect.DeepEqual(m[k], w) {
			t.Errorf("%s: %#v (%T), want %#v (%T)", k, m[k], m[k], w, w)
		}
	}
}

func TestPayloadUnmarshalJSONNull(t *testing.T) {
	p := messages.Payload{0x01}
	if err := p.UnmarshalJSON([]byte("null")); err != nil {
		t.Fatalf("UnmarshalJSON(null): %v", err)
	}
	if p != nil {
		t.Errorf("null gave payload % x, want nil", []byte(p))
	}
}

func TestPayloadUnmarshalJSONInvalid(t *testing.T) {
	for _, in := range []string{"", "{", `{"a":}`, "tru", "[1,]"} {
		var p messages.Payload
		if err := p.UnmarshalJSON([]byte(in)); err == nil {
			t.Errorf("UnmarshalJSON(%q) gave % x and no error", in, []byte(p))
		}
	}
}

// A number beyond float64 must be rejected: stored as +Inf, it could not be
// written back to JSON.
func TestPayloadUnmarshalJSONOverflow(t *testing.T) {
	var p messages.Payload
	err := p.UnmarshalJSON([]byte(`{"x": 1e400}`))
	if err == nil {
		j, jerr := p.MarshalJSON()
		t.Fatalf("UnmarshalJSON(1e400) accepted the number; MarshalJSON then gives %s, %v", j, jerr)
	}
	if !strings.Contains(err.Error(), "1e400") {
		t.Errorf("error %q does not name the number", err)
	}
}

func TestPayloadJSONRoundTrip(t *testing.T) {
	inputs := []string{
		`null`, `true`, `0`, `-1`, `9223372036854775807`, `-9223372036854775808`, `0.5`, `-2.75`,
		`1e-7`, `"text"`, `"ünïcödé \u0000 \n"`, `[]`, `{}`, `[1,[2,[3,{"a":[]}]]]`,
		`{"a":{"b":{"c":1.25}},"list":[1,"2",3.5,null,false]}`,
	}
	for _, in := range inputs {
		var p messages.Payload
		if err := json.Unmarshal([]byte(in), &p); err != nil {
			t.Errorf("%s: Unmarshal: %v", in, err)
			continue
		}

		out, err := json.Marshal(p)
		if err != nil {
			t.Errorf("%s: Marshal: %v", in, err)
			continue
		}
		if !jsonEqual(t, in, string(out)) {
			t.Errorf("JSON %s came back as %s", in, out)
		}
	}
}

// A float must come back from JSON as a float, also when its value is
// integral: encoding/json writes 2.0 as 2, which reads back as an integer.
func TestPayloadJSONKeepsFloats(t *testing.T) {
	for _, f := range []float64{2, -0.5, 0, 1e21} {
		j, err := messages.MustPayload(f).MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON(%v): %v", f, err)
		}

		var p messages.Payload
		if err := p.UnmarshalJSON(j); err != nil {
			t.Fatalf("UnmarshalJSON(%s): %v", j, err)
		}
		v, err := p.Value()
		if err != nil {
			t.Fatalf("Value: %v", err)
		}
		if got, ok := v.(float64); !ok || got != f {
			t.Errorf("float64 %v went to JSON as %s and came back as %#v (%T)", f, j, v, v)
		}
	}
}

// Integers above MaxInt64 must come back from JSON as uint64, not as a
// float64 that loses their low digits.
func TestPayloadJSONKeepsLargeUnsigned(t *testing.T) {
	const n = uint64(math.MaxUint64)
	j, err := messages.MustPayload(n).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}

	var p messages.Payload
	if err := p.UnmarshalJSON(j); err != nil {
		t.Fatalf("UnmarshalJSON(%s): %v", j, err)
	}
	v, err := p.Value()
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := v.(uint64); !ok || got != n {
		t.Errorf("%d went to JSON as %s and came back as %#v (%T)", n, j, v, v)
	}
}

func TestJobJSON(t *testing.T) {
	job := fullJob()
	job.Result = nil

	data, err := json.Marshal(job)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	for _, part := range []string{
		`"args":["audio.wav",3]`, `"kwargs":{"beam":5,"language":"en"}`, `"result":null`,
		`"status":"completed"`, `"created_at":"2025-03-14T15:09:26.535897932Z"`, `"cancel_phase":"sigterm"`,
	} {
		if !strings.Contains(string(data), part) {
			t.Errorf("job JSON lacks %s:\n%s", part, data)
		}
	}

	var back messages.Job
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if back.ID != job.ID || back.Seq != job.Seq || !back.CreatedAt.Equal(job.CreatedAt) || back.Result != nil {
		t.Errorf("job JSON round trip changed fields: %+v", back)
	}
	for name, pair := range map[string][2]messages.Payload{"args": {job.Args, back.Args}, "kwargs": {job.Kwargs, back.Kwargs}} {
		want, _ := json.Marshal(pair[0])
		got, _ := json.Marshal(pair[1])
		if string(got) != string(want) {
			t.Errorf("%s: JSON round trip gives %s, want %s", name, got, want)
		}
	}
}

func TestNewPayload(t *testing.T) {
	p, err := messages.NewPayload(map[string]any{"a": []int{1, 2}})
	if err != nil {
		t.Fatalf("NewPayload: %v", err)
	}
	if p.Kind() != "map" {
		t.Errorf("Kind() = %q, want map", p.Kind())
	}

	if _, err := messages.NewPayload(make(chan int)); err == nil || !strings.Contains(err.Error(), "encode payload") {
		t.Errorf("NewPayload(chan) error = %v, want an encode error", err)
	}

	defer func() {
		if recover() == nil {
			t.Error("MustPayload(chan) did not panic")
		}
	}()
	messages.MustPayload(make(chan int))
}

func TestPayloadValue(t *testing.T) {
	if v, err := messages.Payload(nil).Value(); v != nil || err != nil {
		t.Errorf("Value of an empty payload = %v, %v; want nil, nil", v, err)
	}

	_, err := messages.Payload{0xc1}.Value()
	if err == nil || !strings.Contains(err.Error(), "decode payload") {
		t.Errorf("Value of 0xc1 error = %v, want a decode error", err)
	}
}

// jsonEqual reports whether two JSON texts hold the same value, with numbers
// compared by their text.
func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()

	decode := func(s string) any {
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("invalid JSON %s: %v", s, err)
		}
		return v
	}
	return reflect.DeepEqual(decode(a), decode(b))
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
