// Package messages defines jetqueue's wire format: the job record, the
// request and reply bodies of the jq.api.* endpoints, lifecycle events, log
// lines, the internal worker protocol, subject names and input validation.
//
// Every message is msgpack (github.com/vmihailenco/msgpack/v5) with the
// snake_case field names given in the struct tags, so any language with a
// msgpack library can speak the protocol. Job records also marshal to JSON
// with the same names, which is what the command line prints with --json.
//
// The package imports no other jetqueue package, so clients, workers and the
// coordinator share it without depending on each other.
package messages

// ProtocolVersion is the version of the wire format described by this
// package. Requests carry it in their "v" field; a coordinator rejects a
// request whose version is newer than its own and accepts older ones, and
// zero means "unspecified" and is treated as version 1.
const ProtocolVersion = 1
