//go:build !linux

package proxy

import "errors"

const loopSupported = false

func loopsPerDB(Route) int { return 1 }

type loop struct {
	addr string
	done chan struct{}
}

func newLoop(*DB, string) (*loop, error) { return nil, errors.New("event loop needs Linux") }
func (l *loop) run()                     {}
func (l *loop) enqueue(string, *request) {}

type lbackend struct{}

type loopTLS struct{}

func (l *loop) wake()     {}
func (l *loop) shutdown() {}
