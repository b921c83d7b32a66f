package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/marina-redis/marina/internal/pki"
)

// handshakeTimeout bounds a peer's TLS handshake: a stranger that connects
// and says nothing holds a socket for this long, no more.
const handshakeTimeout = 5 * time.Second

// tlsStream is Raft's stream layer over mutual TLS. Both sides present a
// node certificate of the cluster CA; a dialer checks that the server is
// the node the Raft configuration has at that address, and a listener
// accepts only members (any node of the CA while it has no configuration
// yet: a node that is joining).
type tlsStream struct {
	ln       net.Listener
	id       *pki.Identity
	raft     atomic.Pointer[raft.Raft]
	accepted chan net.Conn
	done     chan struct{}
	once     sync.Once
	log      func(msg string, args ...any)
}

func newTLSStream(bind string, id *pki.Identity, log func(string, ...any)) (*tlsStream, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	s := &tlsStream{ln: ln, id: id, accepted: make(chan net.Conn), done: make(chan struct{}), log: log}
	go s.acceptLoop()
	return s, nil
}

// members is the latest Raft configuration: id by address, and whether
// there is one at all.
func (s *tlsStream) members() (map[string]string, bool) {
	r := s.raft.Load()
	if r == nil {
		return nil, false
	}
	cfg := r.GetConfiguration() // non-blocking: reads the latest copy
	if cfg.Error() != nil {
		return nil, false
	}
	out := map[string]string{}
	for _, sv := range cfg.Configuration().Servers {
		out[string(sv.Address)] = string(sv.ID)
	}
	return out, len(out) > 0
}

// admit is the listener's check of a verified peer node.
func (s *tlsStream) admit(node string) error {
	m, known := s.members()
	if !known {
		return nil // joining: the leader that adds us is not known yet
	}
	for _, id := range m {
		if id == node {
			return nil
		}
	}
	return fmt.Errorf("node %s is not a member of this cluster", node)
}

// acceptLoop hands over connections whose handshake succeeded; each
// handshake runs on its own, so a silent stranger stalls no one.
func (s *tlsStream) acceptLoop() {
	cfg := s.id.ServerTLS(true, s.admit)
	for {
		raw, err := s.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.close()
			return
		}
		go func() {
			c := tls.Server(raw, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
			err := c.HandshakeContext(ctx)
			cancel()
			if err != nil {
				s.log("raft: refused a connection", "from", raw.RemoteAddr().String(), "err", err)
				raw.Close()
				return
			}
			select {
			case s.accepted <- c:
			case <-s.done:
				c.Close()
			}
		}()
	}
}

func (s *tlsStream) Accept() (net.Conn, error) {
	select {
	case c := <-s.accepted:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

func (s *tlsStream) close() { s.once.Do(func() { close(s.done) }) }

func (s *tlsStream) Close() error {
	s.close()
	return s.ln.Close()
}

func (s *tlsStream) Addr() net.Addr { return s.ln.Addr() }

// Dial connects to the member at address and checks it is that member.
func (s *tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	m, _ := s.members()
	node, ok := m[string(address)]
	if !ok {
		return nil, fmt.Errorf("raft: %s is no member's address", address)
	}
	d := &net.Dialer{Timeout: timeout}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	raw, err := d.DialContext(ctx, "tcp", string(address))
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, s.id.ClientTLS(node))
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("raft: TLS with %s (%s): %w", node, address, err)
	}
	return c, nil
}
