package testutil

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// Sniffer records the TCP payloads that cross the loopback interface
// between given addresses on given ports, as an eavesdropper on the
// network would see them (a raw AF_PACKET socket: needs root).
type Sniffer struct {
	fd    int
	hosts map[string]bool
	ports map[uint16]bool
	mu    sync.Mutex
	flows map[string]*bytes.Buffer // "src>dst" -> payload bytes, in order
	bytes map[uint16]int           // payload bytes per watched port
	done  chan struct{}
}

// Sniff starts recording TCP to or from hosts (IPv4) on ports; it stops
// when the test ends.
func Sniff(t *testing.T, hosts []string, ports ...int) *Sniffer {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("sniffing the loopback interface needs root")
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	proto := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, proto)
	if err != nil {
		t.Fatalf("raw socket: %v", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: lo.Index}); err != nil {
		unix.Close(fd)
		t.Fatalf("bind to lo: %v", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 64<<20)
	// A read timeout lets the reader see that the test ended.
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000})
	s := &Sniffer{fd: fd, hosts: map[string]bool{}, ports: map[uint16]bool{}, flows: map[string]*bytes.Buffer{},
		bytes: map[uint16]int{}, done: make(chan struct{})}
	for _, h := range hosts {
		s.hosts[h] = true
	}
	for _, p := range ports {
		s.ports[uint16(p)] = true
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		s.run()
	}()
	t.Cleanup(func() {
		close(s.done)
		<-stopped
		unix.Close(fd)
	})
	return s
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (s *Sniffer) run() {
	buf := make([]byte, 1<<16)
	for {
		select {
		case <-s.done:
			return
		default:
		}
		n, from, err := unix.Recvfrom(s.fd, buf, 0)
		if err != nil {
			continue // timeout or interrupted: look at done again
		}
		// Every loopback frame is seen twice, going out and coming in.
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		s.frame(buf[:n])
	}
}

// frame keeps the TCP payload of an Ethernet/IPv4 frame of interest.
func (s *Sniffer) frame(f []byte) {
	if len(f) < 14+20 || binary.BigEndian.Uint16(f[12:14]) != 0x0800 {
		return
	}
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[9] != 6 || len(ip) < ihl+20 {
		return
	}
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	if total < len(ip) {
		ip = ip[:total]
	}
	src, dst := net.IP(ip[12:16]).String(), net.IP(ip[16:20]).String()
	// One side: a connection's source on loopback is 127.0.0.1 unless bound.
	if !s.hosts[src] && !s.hosts[dst] {
		return
	}
	tcp := ip[ihl:]
	sp, dp := binary.BigEndian.Uint16(tcp[0:2]), binary.BigEndian.Uint16(tcp[2:4])
	off := int(tcp[12]>>4) * 4
	if off > len(tcp) {
		return
	}
	payload := tcp[off:]
	if len(payload) == 0 || (!s.ports[sp] && !s.ports[dp]) {
		return
	}
	key := fmt.Sprintf("%s:%d>%s:%d", src, sp, dst, dp)
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.flows[key]
	if b == nil {
		b = &bytes.Buffer{}
		s.flows[key] = b
	}
	b.Write(payload)
	if s.ports[sp] {
		s.bytes[sp] += len(payload)
	} else {
		s.bytes[dp] += len(payload)
	}
}

// Bytes is how much payload was seen to or from port.
func (s *Sniffer) Bytes(port int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes[uint16(port)]
}

// Find returns the flow ("src>dst") in which secret was seen in clear.
func (s *Sniffer) Find(secret []byte) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, b := range s.flows {
		if bytes.Contains(b.Bytes(), secret) {
			return k, true
		}
	}
	return "", false
}
