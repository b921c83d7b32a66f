//go:build !linux

package proxy

import "errors"

// Elsewhere than Linux only the goroutine engine exists (engine_conn.go);
// these stand in for the event loop's types that shared code names.

const loopSupported = false

type loops []*loop

type loop struct{}

func startLoops(*DB, Route) (loops, error) { return nil, errors.New("event loop needs Linux") }
func (loops) addr() string                 { return "" }
func (loops) name() string                 { return "loop" }
func (loops) wake()                        {}
func (loops) close()                       {}

// client is the event loop's client; requests name it as their owner.
type client struct{ closed bool }
