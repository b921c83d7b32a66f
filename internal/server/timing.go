package server

import "github.com/marina-redis/marina/internal/timing"

// timing is the node's timing as configured; zero fields hold
// internal/timing's defaults.
func (c *Config) timing() timing.Timing {
	return timing.Timing{Heartbeat: c.Heartbeat, ElectionTimeout: c.ElectionTimeout, NodeDownAfter: c.NodeDownAfter,
		DownAfter: c.DownAfter, Lease: c.Lease, MaxLinkDown: c.MaxLinkDown, HealAfter: c.HealAfter,
		FlapMax: c.FlapMax, FlapWindow: c.FlapWindow, FlapDelay: c.FlapDelay, FlapDelayMax: c.FlapDelayMax}.WithDefaults()
}

// fillTiming sets the zero timing fields to their defaults and refuses
// settings that cannot work (timing.Validate).
func (c *Config) fillTiming() error {
	t := c.timing()
	if err := t.Validate(); err != nil {
		return err
	}
	c.Heartbeat, c.ElectionTimeout, c.NodeDownAfter, c.DownAfter, c.Lease = t.Heartbeat, t.ElectionTimeout, t.NodeDownAfter, t.DownAfter, t.Lease
	c.MaxLinkDown, c.HealAfter = t.MaxLinkDown, t.HealAfter
	c.FlapMax, c.FlapWindow, c.FlapDelay, c.FlapDelayMax = t.FlapMax, t.FlapWindow, t.FlapDelay, t.FlapDelayMax
	return nil
}
