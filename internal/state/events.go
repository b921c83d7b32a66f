package state

import (
	"sync"
	"sync/atomic"
	"time"
)

// MaxEvents is how many events the log keeps.
const MaxEvents = 2000

// Event is something the cluster did: failover, switchover, heal, fence...
type Event struct {
	ID       uint64    `json:"id"`
	Time     time.Time `json:"time"`
	Type     string    `json:"type"`
	DB       string    `json:"db,omitempty"`
	Shard    int       `json:"shard"`
	Node     string    `json:"node,omitempty"`
	Instance string    `json:"instance,omitempty"`
	Epoch    uint64    `json:"epoch,omitempty"`
	Reason   string    `json:"reason"`
}

// EventLog is the bounded log of events, replicated through the same Raft
// log as the desired state but kept apart from it: an event wakes only the
// readers of events, never the reconcilers of the desired state.
//
// Readers get the published slice itself: appends write past every
// published length and trimming copies, so no published element is ever
// written again.
type EventLog struct {
	mu      sync.Mutex // one writer at a time (the FSM)
	cur     atomic.Pointer[eventsView]
	changed signal
}

type eventsView struct {
	list []Event
	last uint64 // id of the newest event ever added
}

func newEventLog() *EventLog {
	l := &EventLog{changed: newSignal()}
	l.cur.Store(&eventsView{})
	return l
}

// All returns the events held, oldest first. The slice is shared: read it,
// never modify it.
func (l *EventLog) All() []Event { return l.cur.Load().list }

// Last is the id of the newest event (0 when none ever was).
func (l *EventLog) Last() uint64 { return l.cur.Load().last }

// Since returns the events newer than id, of one database when db is set.
func (l *EventLog) Since(id uint64, db string) []Event {
	all := l.All()
	// Ids grow one by one: skip straight to the first newer one when the
	// log is contiguous, which it is unless it was restored from a gap.
	start := 0
	if n := len(all); n > 0 && id >= all[0].ID {
		start = min(int(id-all[0].ID)+1, n)
		for start > 0 && all[start-1].ID > id {
			start--
		}
	}
	var out []Event
	for _, e := range all[start:] {
		if e.ID > id && (db == "" || e.DB == db) {
			out = append(out, e)
		}
	}
	return out
}

// Changed returns a channel closed when the next event is added.
func (l *EventLog) Changed() <-chan struct{} { return l.changed.wait() }

// add numbers and appends events, then wakes the readers; it returns the
// id of the newest event.
func (l *EventLog) add(evs []Event) uint64 {
	if len(evs) == 0 {
		return l.Last()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := l.cur.Load()
	list, last := cur.list, cur.last
	if len(list)+len(evs) > cap(list) {
		// Out of room: a new backing array with the newest events and
		// space for as many again, so copies are rare.
		keep := min(len(list), max(MaxEvents-len(evs), 0))
		next := make([]Event, keep, 2*MaxEvents+len(evs))
		copy(next, list[len(list)-keep:])
		list = next
	}
	for _, e := range evs {
		last++
		e.ID = last
		list = append(list, e)
	}
	if len(list) > MaxEvents {
		list = list[len(list)-MaxEvents:]
	}
	l.cur.Store(&eventsView{list: list, last: last})
	l.changed.fire()
	return last
}

// reset replaces the log (restore from a snapshot).
func (l *EventLog) reset(list []Event, last uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(list) > MaxEvents {
		list = list[len(list)-MaxEvents:]
	}
	list = append(make([]Event, 0, 2*MaxEvents), list...)
	if n := len(list); n > 0 && list[n-1].ID > last {
		last = list[n-1].ID
	}
	l.cur.Store(&eventsView{list: list, last: last})
	l.changed.fire()
}

// signal is a broadcast: wait returns a channel that fire closes.
type signal struct {
	ch *atomic.Pointer[chan struct{}]
}

func newSignal() signal {
	s := signal{ch: &atomic.Pointer[chan struct{}]{}}
	ch := make(chan struct{})
	s.ch.Store(&ch)
	return s
}

func (s signal) wait() <-chan struct{} { return *s.ch.Load() }

func (s signal) fire() {
	ch := make(chan struct{})
	close(*s.ch.Swap(&ch))
}
