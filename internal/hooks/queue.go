package hooks

import (
	"context"
	"sync"
)

// job is a document waiting for the exec hook.
type job struct {
	doc Document
}

// kindRank orders the kinds of the documents of one database that replace
// each other in the queue: the kind kept is the one of higher rank (see
// mergeKind). A consumer that acts on failovers must hear "failover" even
// when an endpoints change came right after the promotion.
var kindRank = map[string]int{
	KindSync:       1,
	KindEndpoints:  2,
	KindUpdate:     3,
	KindReplicas:   4,
	KindMove:       5,
	KindSwitchover: 6,
	KindFailover:   7,
	KindCreate:     8,
	KindDelete:     8, // delete and create: the latest wins (mergeKind)
}

// mergeKind is the kind of the document that replaces a queued, not yet
// started document of kind queued with one of kind newer; the replacement
// carries the newer document's topology. The rules:
//
//   - a delete wins over anything before it: the database is gone, the
//     document carries no topology;
//   - anything after a delete (the database exists again: it was
//     re-created) is a create;
//   - otherwise the kind of higher precedence stays: create > failover >
//     switchover > move > replicas > update > endpoints > sync. A consumer
//     that never saw the create learns of the database by the create,
//     whatever changed since; one that missed a failover hears "failover"
//     with the newest topology.
func mergeKind(queued, newer string) string {
	switch {
	case newer == KindDelete:
		return KindDelete
	case queued == KindDelete:
		return KindCreate
	case kindRank[queued] > kindRank[newer]:
		return queued
	}
	return newer
}

// Lanes of the queue: documents of the urgent lane are taken first.
const (
	laneUrgent = iota // create, delete, failover, switchover
	laneNormal        // move, replicas, update, endpoints, sync
	lanes
)

// laneOf says which lane a document of kind waits in: those that tell
// consumers where a master went, or that a database came or went, before a
// restart's thousands of sync documents or a node flap's endpoints ones.
func laneOf(kind string) int {
	switch kind {
	case KindCreate, KindDelete, KindFailover, KindSwitchover:
		return laneUrgent
	}
	return laneNormal
}

// entry is a database's place in a lane; it is stale once the database's
// pending document has another seq (taken, or moved to the urgent lane).
type entry struct {
	db  string
	seq uint64
}

type pendingJob struct {
	job
	seq uint64
}

// queue holds the latest document per database and hands each database to
// one worker at a time: urgent documents first, then the others, each lane
// in the order its databases became ready.
type queue struct {
	mu      sync.Mutex
	lanes   [lanes][]entry
	pending map[string]pendingJob // latest document not yet started
	running map[string]bool
	seq     uint64
	wake    chan struct{} // closed and replaced when work arrives
}

func newQueue() *queue {
	return &queue{pending: map[string]pendingJob{}, running: map[string]bool{}, wake: make(chan struct{})}
}

func (q *queue) signal() {
	close(q.wake)
	q.wake = make(chan struct{})
}

// enqueue gives db's pending document a place at the end of its lane.
// Called with mu held.
func (q *queue) enqueue(db string) {
	p := q.pending[db]
	q.seq++
	p.seq = q.seq
	q.pending[db] = p
	l := laneOf(p.doc.Kind)
	q.lanes[l] = append(q.lanes[l], entry{db: db, seq: p.seq})
	q.signal()
}

// put sets db's next document. One not yet started is replaced: the newer
// topology with the kind mergeKind keeps; it keeps its place unless its
// kind moved it to the urgent lane.
func (q *queue) put(db string, j job) {
	q.mu.Lock()
	defer q.mu.Unlock()
	old, had := q.pending[db]
	if had {
		j.doc.Kind = mergeKind(old.doc.Kind, j.doc.Kind)
	}
	q.pending[db] = pendingJob{job: j, seq: old.seq}
	switch {
	case q.running[db]:
		// done queues it.
	case !had || laneOf(old.doc.Kind) != laneOf(j.doc.Kind):
		q.enqueue(db)
	}
}

// take waits for a database's document; false once ctx ended.
func (q *queue) take(ctx context.Context) (string, job, bool) {
	for {
		q.mu.Lock()
		for l := range q.lanes {
			for len(q.lanes[l]) > 0 {
				e := q.lanes[l][0]
				q.lanes[l][0] = entry{}
				q.lanes[l] = q.lanes[l][1:]
				p, ok := q.pending[e.db]
				if !ok || p.seq != e.seq || q.running[e.db] {
					continue // stale
				}
				delete(q.pending, e.db)
				q.running[e.db] = true
				q.mu.Unlock()
				return e.db, p.job, true
			}
			q.lanes[l] = nil // let the drained array go
		}
		wake := q.wake
		q.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return "", job{}, false
		}
	}
}

// done ends db's run; a document that came in meanwhile is queued.
func (q *queue) done(db string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.running, db)
	if _, ok := q.pending[db]; ok {
		q.enqueue(db)
	}
}

// superseded says whether a newer document for db is waiting.
func (q *queue) superseded(db string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, ok := q.pending[db]
	return ok
}
