package state

import (
	"context"
	"time"
)

// Source is the local desired state: the FSM, or a test's stand-in.
type Source interface {
	State() *State
	Changed() <-chan struct{}
}

// Watch calls fn with the current state, then again after every change
// until ctx ends; changes made while fn runs are folded into one call.
// With every > 0 it also calls fn that often without a change (retries,
// observations that are not in the state).
func Watch(ctx context.Context, src Source, every time.Duration, fn func(*State)) {
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for {
		changed := src.Changed() // before reading: a change in between wakes us
		fn(src.State())
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick:
		}
	}
}
