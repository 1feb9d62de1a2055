// Package test holds jetqueue's integration tests: each starts a real
// embedded nats-server with JetStream on a random loopback port, a
// coordinator and workers, and drives them through the Go client.
package test
