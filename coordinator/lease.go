package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// leaseKey is the key of the leader lease in the leader bucket.
const leaseKey = "leader"

// lease is the coordinator leader lease: one key in a JetStream key-value
// bucket whose TTL expires it unless the leader renews it. Creating the key
// only succeeds when it does not exist, and renewing only when its revision
// is still the one this coordinator wrote, so at most one coordinator holds
// the lease at a time.
type lease struct {
	kv       jetstream.KeyValue
	holder   []byte
	revision uint64
	// renewed is when the lease was last written by this coordinator.
	renewed time.Time
}

// leaseRecord is the value of the lease key, for operators reading the bucket.
type leaseRecord struct {
	Coordinator string    `json:"coordinator"`
	Since       time.Time `json:"since"`
}

func openLease(ctx context.Context, js jetstream.JetStream, cfg Config, bucket string) (*lease, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "jetqueue coordinator leader lease",
		TTL:         cfg.LeaderLease,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("create key-value bucket %s: %w", bucket, err)
	}
	holder, _ := json.Marshal(leaseRecord{Coordinator: cfg.Name, Since: time.Now().UTC()})
	return &lease{kv: kv, holder: holder}, nil
}

// acquire takes the lease if nobody holds it. It returns false, and no
// error, when another coordinator holds it.
func (l *lease) acquire(ctx context.Context) (bool, error) {
	rev, err := l.kv.Create(ctx, leaseKey, l.holder)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	l.revision = rev
	l.renewed = time.Now()
	return true, nil
}

// errLeaseLost means another coordinator holds the lease now.
var errLeaseLost = errors.New("the leader lease belongs to another coordinator")

// renew extends the lease. It returns errLeaseLost when the lease changed
// hands, and other errors when the write did not get through.
func (l *lease) renew(ctx context.Context) error {
	rev, err := l.kv.Update(ctx, leaseKey, l.holder, l.revision)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound) {
		return errLeaseLost
	}
	if err != nil {
		return err
	}
	l.revision = rev
	l.renewed = time.Now()
	return nil
}

// release gives the lease up so a standby takes over without waiting for
// the TTL. It deletes the key only if this coordinator still holds it.
func (l *lease) release(ctx context.Context) error {
	return l.kv.Delete(ctx, leaseKey, jetstream.LastRevision(l.revision))
}

// holderName returns the coordinator named in the lease, or "".
func (l *lease) holderName(ctx context.Context) string {
	entry, err := l.kv.Get(ctx, leaseKey)
	if err != nil {
		return ""
	}
	var rec leaseRecord
	if json.Unmarshal(entry.Value(), &rec) != nil {
		return ""
	}
	return rec.Coordinator
}
