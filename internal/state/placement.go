package state

import "maps"

// placement indexes what the databases take on each node (ports, memory)
// and the proxy ports in use, so that checking a database's placement
// costs what that database touches, not a walk over every database. It is
// derived from DBs, never encoded, and copied on write like the state.
type placement struct {
	nodes map[string]*nodeUse
	// proxy: proxy port -> database, in buckets of 256 ports so that a
	// change copies one bucket, not every port.
	proxy map[int]map[int]string
}

// nodeUse is what the databases take on one node.
type nodeUse struct {
	alloc int64
	ports map[int]string // port -> database
}

func buildPlacement(dbs map[string]*Database) *placement {
	p := &placement{nodes: map[string]*nodeUse{}, proxy: map[int]map[int]string{}}
	for _, db := range dbs {
		p.add(db, nil)
	}
	return p
}

// add records db's instances and proxy port; w, when set, copies what it
// writes first (a txn's copy on write).
func (p *placement) add(db *Database, w *placementWriter) {
	for _, sh := range db.Shards {
		for _, in := range sh.Instances {
			u := p.node(in.Node, w)
			u.alloc += db.Memory
			u.ports[in.Port] = db.Name
		}
	}
	if db.ProxyPort != 0 {
		p.proxyBucket(db.ProxyPort, w)[db.ProxyPort] = db.Name
	}
}

// remove forgets db's instances and proxy port.
func (p *placement) remove(db *Database, w *placementWriter) {
	for _, sh := range db.Shards {
		for _, in := range sh.Instances {
			u := p.node(in.Node, w)
			u.alloc -= db.Memory
			if u.ports[in.Port] == db.Name {
				delete(u.ports, in.Port)
			}
		}
	}
	if db.ProxyPort != 0 {
		if b := p.proxyBucket(db.ProxyPort, w); b[db.ProxyPort] == db.Name {
			delete(b, db.ProxyPort)
		}
	}
}

func (p *placement) node(id string, w *placementWriter) *nodeUse {
	u, ok := p.nodes[id]
	if w == nil {
		if !ok {
			u = &nodeUse{ports: map[int]string{}}
			p.nodes[id] = u
		}
		return u
	}
	if w.nodes[id] {
		return u
	}
	if !w.outer {
		p.nodes, w.outer = maps.Clone(p.nodes), true
	}
	c := &nodeUse{ports: map[int]string{}}
	if ok {
		c.alloc, c.ports = u.alloc, maps.Clone(u.ports)
	}
	p.nodes[id] = c
	w.nodes[id] = true
	return c
}

func (p *placement) proxyBucket(port int, w *placementWriter) map[int]string {
	k := port >> 8
	b, ok := p.proxy[k]
	if w == nil {
		if !ok {
			b = map[int]string{}
			p.proxy[k] = b
		}
		return b
	}
	if w.buckets[k] {
		return b
	}
	if !w.proxyOuter {
		p.proxy, w.proxyOuter = maps.Clone(p.proxy), true
	}
	b = maps.Clone(b)
	if b == nil {
		b = map[int]string{}
	}
	p.proxy[k] = b
	w.buckets[k] = true
	return b
}

// proxyOwner is the database using a proxy port, "" when none.
func (p *placement) proxyOwner(port int) string { return p.proxy[port>>8][port] }

// placementWriter remembers what one txn already copied.
type placementWriter struct {
	outer, proxyOuter bool
	nodes             map[string]bool
	buckets           map[int]bool
}
