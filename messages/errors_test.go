package messages_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jetqueue/jetqueue/messages"
)

func TestErrorIsAs(t *testing.T) {
	err := fmt.Errorf("get job: %w", messages.Errorf(messages.CodeNotFound, "no job with id %q", "abc"))

	if !errors.Is(err, &messages.Error{Code: messages.CodeNotFound}) {
		t.Error("errors.Is does not match the code")
	}
	if !errors.Is(err, &messages.Error{Code: messages.CodeNotFound, Message: `no job with id "abc"`}) {
		t.Error("errors.Is does not match code and message")
	}
	if errors.Is(err, &messages.Error{Code: messages.CodeNotFound, Message: "another message"}) {
		t.Error("errors.Is matches a different message")
	}
	if errors.Is(err, &messages.Error{Code: messages.CodeConflict}) {
		t.Error("errors.Is matches a different code")
	}
	if errors.Is(err, errors.New("not_found")) {
		t.Error("errors.Is matches a plain error")
	}

	var apiErr *messages.Error
	if !errors.As(err, &apiErr) {
		t.Fatal("errors.As finds no *messages.Error")
	}
	if apiErr.Code != messages.CodeNotFound || apiErr.Message != `no job with id "abc"` {
		t.Errorf("errors.As gives %+v", apiErr)
	}
	if got, want := apiErr.Error(), `not_found: no job with id "abc"`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestCodeOf(t *testing.T) {
	tests := map[string]struct {
		err  error
		want messages.ErrorCode
	}{
		"direct":  {messages.Errorf(messages.CodeConflict, "x"), messages.CodeConflict},
		"wrapped": {fmt.Errorf("a: %w", fmt.Errorf("b: %w", messages.Errorf(messages.CodeTooLarge, "x"))), messages.CodeTooLarge},
		"joined":  {errors.Join(errors.New("a"), messages.Errorf(messages.CodeUnavailable, "x")), messages.CodeUnavailable},
		"plain":   {errors.New("disk full"), messages.CodeInternal},
	}
	for name, tt := range tests {
		if got := messages.CodeOf(tt.err); got != tt.want {
			t.Errorf("%s: CodeOf = %q, want %q", name, got, tt.want)
		}
	}
}

func TestHTTPStatus(t *testing.T) {
	want := map[messages.ErrorCode]int{
		messages.CodeBadRequest:   400,
		messages.CodeInvalid:      400,
		messages.CodeNotFound:     404,
		messages.CodeConflict:     409,
		messages.CodeStaleCommand: 409,
		messages.CodeWorkerFull:   409,
		messages.CodeTooLarge:     413,
		messages.CodeUnavailable:  503,
		messages.CodeNotLeader:    503,
		messages.CodeUnsupported:  505,
		messages.CodeInternal:     500,
		"some_future_code":        500,
	}
	for code, status := range want {
		if got := code.HTTPStatus(); got != status {
			t.Errorf("%q.HTTPStatus() = %d, want %d", code, got, status)
		}
	}
}

func TestErrorWireValues(t *testing.T) {
	// Clients in other languages branch on these strings.
	want := map[messages.ErrorCode]string{
		messages.CodeBadRequest: "bad_request", messages.CodeInvalid: "invalid_argument",
		messages.CodeNotFound: "not_found", messages.CodeConflict: "conflict",
		messages.CodeTooLarge: "payload_too_large", messages.CodeUnavailable: "unavailable",
		messages.CodeUnsupported: "unsupported", messages.CodeInternal: "internal",
		messages.CodeNotLeader: "not_leader", messages.CodeWorkerFull: "worker_full",
		messages.CodeStaleCommand: "stale",
	}
	for code, s := range want {
		if string(code) != s {
			t.Errorf("code %q, want %q", code, s)
		}
	}
}
