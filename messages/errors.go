package messages

import (
	"errors"
	"fmt"
)

// ErrorCode is a stable, machine-readable error class. Clients branch on the
// code; the message is for people.
type ErrorCode string

// Error codes returned by the API.
const (
	CodeBadRequest   ErrorCode = "bad_request"       // the body is not a valid msgpack request
	CodeInvalid      ErrorCode = "invalid_argument"  // a field has a value that is not allowed
	CodeNotFound     ErrorCode = "not_found"         // no job with that id
	CodeConflict     ErrorCode = "conflict"          // the job's status does not allow the operation
	CodeTooLarge     ErrorCode = "payload_too_large" // args, kwargs or the request exceed a limit
	CodeUnavailable  ErrorCode = "unavailable"       // the coordinator cannot serve now; retry
	CodeUnsupported  ErrorCode = "unsupported"       // the request's protocol version is newer than the coordinator's
	CodeInternal     ErrorCode = "internal"          // a bug or a storage failure
	CodeNotLeader    ErrorCode = "not_leader"        // this coordinator no longer holds the leader lease; retry
	CodeWorkerFull   ErrorCode = "worker_full"       // a worker has no free slot for a dispatched job
	CodeStaleCommand ErrorCode = "stale"             // a worker report or command refers to an old attempt
)

// HTTPStatus maps a code to the status number sent in the micro
// Nats-Service-Error-Code header.
func (c ErrorCode) HTTPStatus() int {
	switch c {
	case CodeBadRequest, CodeInvalid:
		return 400
	case CodeNotFound:
		return 404
	case CodeConflict, CodeStaleCommand, CodeWorkerFull:
		return 409
	case CodeTooLarge:
		return 413
	case CodeUnsupported:
		return 505
	case CodeUnavailable, CodeNotLeader:
		return 503
	}
	return 500
}

// Error is an API error: the body of an error reply and the error type that
// the Go client returns.
type Error struct {
	Code    ErrorCode `msgpack:"code" json:"code"`
	Message string    `msgpack:"message" json:"message"`
}

// Error returns the message prefixed by the code.
func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Is matches another *Error with the same code, so errors.Is(err,
// &Error{Code: CodeNotFound}) tests the class.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Message == "" || t.Message == e.Message)
}

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of the first *Error in err's chain, or
// CodeInternal when there is none.
func CodeOf(err error) ErrorCode {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}
