package proxy

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/resp"
)

// openTunnel gives c a backend connection of its own, logged in as the
// proxy's restricted user (the client proved the database password already,
// and gets data commands only, as through the shared connections), and
// relays the pinning command and everything after it raw from now on. The
// connect is non-blocking like the shared ones: AUTH goes first in the
// pipeline and its answer is taken off the relayed stream.
func (l *loop) openTunnel(c *client) {
	t := l.d.topo.Load()
	master := t.route.Shards[0].Master
	fail := func(err error) {
		c.pin = nil
		c.answer(resp.AppendError(nil, "ERR backend unavailable: "+err.Error()))
		c.closeAfter = true
		l.markC(c)
	}
	if f, ok := l.dialFailed[master]; ok && time.Since(f.at) < time.Second {
		fail(f.err)
		return
	}
	fd, err := l.connect(master)
	if err != nil {
		fail(err)
		return
	}
	b := &lbackend{addr: master, fd: fd, polling: unix.EPOLLIN | unix.EPOLLOUT, tunnelOf: c, connecting: true, dialed: l.now,
		tunnelLogin: true}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: b.polling, Fd: int32(fd)}); err != nil {
		unix.Close(fd)
		fail(err)
		return
	}
	l.byFD[fd] = b
	l.tunnels[b] = true
	c.tunnel = b
	b.out = resp.AppendCommand(b.out, []byte("AUTH"), []byte(redisconf.ProxyUser), []byte(t.route.Secret))
	b.out = append(append(b.out, c.pin...), c.in[c.inOff:]...)
	c.pin, c.in, c.inOff = nil, nil, 0
	l.markB(b)
}

// tunnelLoggedIn takes the AUTH answer off the front of a new tunnel's
// input; false while it is incomplete or when the backend refused (the
// client then gets the error and is closed).
func (l *loop) tunnelLoggedIn(b *lbackend) bool {
	end, err := b.scan.Scan(b.in)
	if err == resp.ErrIncomplete {
		return false
	}
	b.scan.Reset()
	c := b.tunnelOf
	if err != nil || resp.IsError(b.in[:end]) {
		msg := "unreadable answer to AUTH"
		if err == nil {
			msg = "refused AUTH: " + trimCRLF(b.in[:end])
		}
		l.failBackend(b, fmt.Errorf("backend %s %s", b.addr, msg))
		return false
	}
	b.tunnelLogin = false
	c.out = append(c.out, b.in[end:]...)
	b.in = nil
	l.markC(c)
	return true
}
