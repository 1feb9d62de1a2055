package messages

import "fmt"

// Status is the lifecycle state of a job. The five values are those of the
// cjm-plugin-system JobQueue.
type Status string

// Job statuses. A job moves pending -> running -> completed, failed or
// cancelled; a running job whose worker is lost goes back to pending.
const (
	StatusPending   Status = "pending"
	StatusRunning   Status = "running"
	StatusCompleted Status = "completed"
	StatusFailed    Status = "failed"
	StatusCancelled Status = "cancelled"
)

// Final reports whether s is a terminal status: completed, failed or cancelled.
func (s Status) Final() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCancelled
}

// Valid reports whether s is one of the five statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusPending, StatusRunning, StatusCompleted, StatusFailed, StatusCancelled:
		return true
	}
	return false
}

// ParseStatus returns the Status named by s, or an error naming s.
func ParseStatus(s string) (Status, error) {
	st := Status(s)
	if !st.Valid() {
		return "", fmt.Errorf("invalid status %q: expected pending, running, completed, failed or cancelled", s)
	}
	return st, nil
}

// CancelPhase records how far the cancellation of a running job has gone.
type CancelPhase string

// Cancel phases, in the order they are reached. The empty phase means no
// cancel was requested.
const (
	CancelNone        CancelPhase = ""
	CancelRequested   CancelPhase = "requested"   // the coordinator asked the worker to cancel
	CancelCooperative CancelPhase = "cooperative" // the plugin was sent a cancel message
	CancelTerminate   CancelPhase = "sigterm"     // SIGTERM went to the plugin's process group
	CancelKill        CancelPhase = "sigkill"     // SIGKILL went to the plugin's process group
)
