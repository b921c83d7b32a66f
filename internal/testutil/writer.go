package testutil

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Ack is one write the database acknowledged.
type Ack struct {
	Key  string
	Addr string
	At   time.Time
}

// Writer writes unique keys to whatever the current master is and records
// every acknowledged write; Check then says which were lost.
type Writer struct {
	// Discover returns the current master's address and the password.
	Discover func(ctx context.Context) (addr, password string, err error)
	// CAFile, when set, makes the writer speak TLS, trusting that CA;
	// CheckCAFile, for Check's reads from a redis-server when the writer
	// itself goes through a plaintext endpoint (default: CAFile).
	CAFile, CheckCAFile string
	Prefix              string
	Timeout             time.Duration // per write, default 200ms

	mu    sync.Mutex
	acks  []Ack
	fails int
}

// Run writes until ctx ends.
func (w *Writer) Run(ctx context.Context) {
	if w.Timeout == 0 {
		w.Timeout = 200 * time.Millisecond
	}
	var c *redis.Client
	var addr string
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for seq := 0; ctx.Err() == nil; seq++ {
		if c == nil {
			a, pw, err := w.Discover(ctx)
			if err != nil || a == "" {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			addr = a
			c = redis.NewClient(&redis.Options{Addr: a, Password: pw, Protocol: 2, DisableIdentity: true, MaxRetries: -1, PoolSize: 1,
				DialTimeout: w.Timeout, ReadTimeout: w.Timeout, WriteTimeout: w.Timeout, TLSConfig: TLSWith(w.CAFile, a)})
		}
		key := fmt.Sprintf("%s%d", w.Prefix, seq)
		wctx, cancel := context.WithTimeout(ctx, w.Timeout)
		err := c.Set(wctx, key, seq, 0).Err()
		cancel()
		if err == nil {
			w.mu.Lock()
			w.acks = append(w.acks, Ack{Key: key, Addr: addr, At: time.Now()})
			w.mu.Unlock()
			continue
		}
		w.mu.Lock()
		w.fails++
		w.mu.Unlock()
		// Wrong or dead master: find the current one again.
		c.Close()
		c = nil
		time.Sleep(10 * time.Millisecond)
	}
}

// Acks returns the acknowledged writes so far.
func (w *Writer) Acks() []Ack {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Ack(nil), w.acks...)
}

// Result is what a checker found after a fault.
type Result struct {
	Acked int
	Lost  []Ack
	// Gap is the longest time between two acknowledged writes: the write
	// unavailability window.
	Gap time.Duration
}

// Check reads every acknowledged key from the master at addr.
func (w *Writer) Check(ctx context.Context, addr, password string) (Result, error) {
	acks := w.Acks()
	res := Result{Acked: len(acks)}
	for i := 1; i < len(acks); i++ {
		if g := acks[i].At.Sub(acks[i-1].At); g > res.Gap {
			res.Gap = g
		}
	}
	ca := w.CheckCAFile
	if ca == "" {
		ca = w.CAFile
	}
	lost, err := Lost(ctx, acks, addr, password, ca)
	res.Lost = lost
	if err != nil {
		return res, err
	}
	return res, nil
}
