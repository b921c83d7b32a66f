package agent

import "time"

// Instance states reported in Status.
const (
	StateStarting = "starting"
	StateLoading  = "loading"
	StateRunning  = "running"
	StateDown     = "down"
)

// Status is what the agent observes of one instance.
type Status struct {
	ID             string    `json:"id"`
	DB             string    `json:"db"`
	Shard          int       `json:"shard"`
	Port           int       `json:"port"`
	PID            int       `json:"pid,omitempty"`
	State          string    `json:"state"`
	Role           string    `json:"role,omitempty"` // as reported by redis-server
	WantRole       string    `json:"want_role"`
	LinkUp         bool      `json:"link_up"`
	SyncInProgress bool      `json:"sync_in_progress,omitempty"`
	Offset         int64     `json:"offset"`
	UsedMemory     int64     `json:"used_memory"`
	Clients        int       `json:"clients"`
	Restarts       int       `json:"restarts"`
	Error          string    `json:"error,omitempty"`
	Updated        time.Time `json:"updated"`
	// Healthy: the agent's last probe got an answer; FailingSince is when
	// the current run of failed probes began.
	Healthy      bool      `json:"healthy"`
	FailingSince time.Time `json:"failing_since,omitempty"`
	// Crashed: the process exited and the agent holds the restart (a master
	// waiting for the leader's decision, or a replica with no master yet).
	Crashed bool `json:"crashed,omitempty"`
	// Epoch of the shard as last applied by the fencer, and whether the
	// instance can take no writes in it (dead, or fenced: replicas are
	// fenced too): the leader's proof that a demoted master is out of the
	// way. Only the fencer (fence.go) and a dead process set them.
	Epoch  uint64 `json:"epoch"`
	Fenced bool   `json:"fenced"`
}

func (wk *worker) status() Status {
	wk.mu.Lock()
	defer wk.mu.Unlock()
	return wk.st
}

func (wk *worker) setStatus(f func(*Status)) {
	wk.mu.Lock()
	before := wk.st
	f(&wk.st)
	wk.st.Updated = time.Now()
	after := wk.st
	wk.mu.Unlock()
	switch {
	case before.Fenced != after.Fenced || before.Epoch != after.Epoch:
		// The leader may be waiting for this to promote: no coalescing.
		wk.a.signalUrgent()
	case before.State != after.State || before.Role != after.Role || before.LinkUp != after.LinkUp || before.PID != after.PID ||
		before.Healthy != after.Healthy || before.Crashed != after.Crashed || before.SyncInProgress != after.SyncInProgress:
		wk.a.signal()
	}
}
