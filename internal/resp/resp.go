// Package resp reads and writes the Redis protocol (RESP2, and RESP3
// replies as raw bytes) for the proxy's hot path: commands are parsed into
// argument slices that alias a reusable buffer, replies are read as raw
// bytes to pass through untouched, or parsed when they must be merged.
package resp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
)

// Limits against hostile input.
const (
	MaxArgs    = 1 << 20
	MaxBulk    = 512 << 20 // Redis's proto-max-bulk-len default
	MaxInline  = 64 << 10
	maxNesting = 64
)

// ProtocolError is malformed input: the connection cannot be trusted to be
// in sync any more and is closed after replying.
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return "Protocol error: " + e.Msg }

func perr(format string, args ...any) error { return &ProtocolError{Msg: fmt.Sprintf(format, args...)} }

// Reader reads from a buffered connection.
type Reader struct {
	br      *bufio.Reader
	args    [][]byte
	buf     []byte
	MaxSize int // bound on one command's bytes (0: MaxBulk)
	// Unauth applies Redis's limits for a client that has not logged in.
	Unauth bool
}

// NewReader wraps r.
func NewReader(r io.Reader, size int) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, size)}
}

// Buffered says how many bytes wait in the buffer (more pipelined commands).
func (r *Reader) Buffered() int { return r.br.Buffered() }

func (r *Reader) line() ([]byte, error) {
	line, err := r.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, perr("line too long")
	}
	if err != nil {
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, perr("expected CRLF")
	}
	return line[:len(line)-2], nil
}

func parseInt(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 20 {
		return 0, perr("invalid length %q", b)
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, perr("invalid length %q", b)
	}
	return n, nil
}

// ReadCommand reads one command: a RESP array of bulk strings or an inline
// command. The returned slices are valid until the next call.
func (r *Reader) ReadCommand() ([][]byte, error) {
	max := r.MaxSize
	if max == 0 {
		max = MaxBulk
	}
	for {
		b, err := r.br.Peek(1)
		if err != nil {
			return nil, err
		}
		if b[0] != '*' {
			args, err := r.readInline()
			if err != nil || len(args) > 0 {
				return args, err
			}
			continue // empty line: skipped, as Redis does
		}
		line, err := r.line()
		if err != nil {
			return nil, err
		}
		n, err := parseInt(line[1:])
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			continue // *0 and *-1 are ignored, as Redis does
		}
		if err := checkCount(n, r.Unauth); err != nil {
			return nil, err
		}
		// Read every bulk into one buffer, then slice it: one allocation
		// amortised across commands.
		r.buf = r.buf[:0]
		// The header's count is the client's word, not yet backed by
		// bytes: grow with what arrives instead of trusting it.
		offs := make([]int, 0, min(n, 64)+1)
		offs = append(offs, 0)
		for i := int64(0); i < n; i++ {
			hdr, err := r.line()
			if err != nil {
				return nil, err
			}
			if len(hdr) == 0 || hdr[0] != '$' {
				return nil, perr("expected '$', got '%c'", first(hdr))
			}
			sz, err := parseInt(hdr[1:])
			if err != nil {
				return nil, err
			}
			if err := checkBulk(sz, len(r.buf), max, r.Unauth); err != nil {
				return nil, err
			}
			// Grown as the bytes arrive, never on the header's word alone.
			for left := int(sz) + 2; left > 0; {
				chunk := min(left, 1<<20)
				start := len(r.buf)
				r.buf = slices.Grow(r.buf, chunk)[:start+chunk]
				if _, err := io.ReadFull(r.br, r.buf[start:]); err != nil {
					return nil, err
				}
				left -= chunk
			}
			if r.buf[len(r.buf)-2] != '\r' || r.buf[len(r.buf)-1] != '\n' {
				return nil, perr("expected CRLF after bulk")
			}
			r.buf = r.buf[:len(r.buf)-2]
			offs = append(offs, len(r.buf))
		}
		r.args = r.args[:0]
		for i := 0; i < len(offs)-1; i++ {
			r.args = append(r.args, r.buf[offs[i]:offs[i+1]:offs[i+1]])
		}
		return r.args, nil
	}
}

// Redis's limits for a client that has not authenticated (networking.c):
// a stranger's request is small until it proves the password.
const (
	UnauthArgs = 10
	UnauthBulk = 16 << 10
)

func checkCount(n int64, unauth bool) error {
	switch {
	case unauth && n > UnauthArgs:
		return perr("unauthenticated multibulk length")
	case n > MaxArgs:
		return perr("too many arguments")
	}
	return nil
}

func checkBulk(sz int64, sofar, max int, unauth bool) error {
	switch {
	case unauth && sz > UnauthBulk:
		return perr("unauthenticated bulk length")
	case sz < 0 || sz > int64(max) || sofar+int(sz) > max:
		return perr("invalid bulk length")
	}
	return nil
}

func first(b []byte) byte {
	if len(b) == 0 {
		return ' '
	}
	return b[0]
}

// readInline reads a telnet-style command line, split on spaces (with
// Redis's quoting rules for "..." and '...').
func (r *Reader) readInline() ([][]byte, error) {
	line, err := r.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull || len(line) > MaxInline {
		return nil, perr("too big inline request")
	}
	if err != nil {
		return nil, err
	}
	line = line[:len(line)-1]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	parsed, err := r.splitInline(line)
	if err != nil {
		return nil, err
	}
	r.args = append(r.args[:0], parsed...)
	return r.args, nil
}

// ErrNesting is a reply nested too deep to be real.
var ErrNesting = errors.New("resp: reply nested too deeply")

// ReadReply appends one complete reply (RESP2 or RESP3), raw, to dst.
func (r *Reader) ReadReply(dst []byte) ([]byte, error) {
	return r.readReply(dst, 0)
}

func (r *Reader) readReply(dst []byte, depth int) ([]byte, error) {
	if depth > maxNesting {
		return dst, ErrNesting
	}
	line, err := r.br.ReadSlice('\n')
	if err != nil {
		if err == bufio.ErrBufferFull {
			return dst, perr("reply line too long")
		}
		return dst, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return dst, perr("bad reply line")
	}
	dst = append(dst, line...)
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+', '-', ':', '_', ',', '#', '(':
		return dst, nil
	case '$', '!', '=':
		n, err := parseInt(body)
		if err != nil {
			return dst, err
		}
		if n < 0 {
			return dst, nil
		}
		if n > MaxBulk {
			return dst, perr("bulk too long")
		}
		start := len(dst)
		dst = append(dst, make([]byte, n+2)...)
		_, err = io.ReadFull(r.br, dst[start:])
		return dst, err
	case '*', '%', '~', '>', '|':
		n, err := parseInt(body)
		if err != nil {
			return dst, err
		}
		if n < 0 {
			return dst, nil
		}
		if line[0] == '%' || line[0] == '|' {
			n *= 2
		}
		for i := int64(0); i < n; i++ {
			if dst, err = r.readReply(dst, depth+1); err != nil {
				return dst, err
			}
		}
		return dst, nil
	}
	return dst, perr("unknown reply type '%c'", line[0])
}

// AppendCommand appends args as a RESP array of bulk strings.
func AppendCommand(dst []byte, args ...[]byte) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(len(args)), 10)
	dst = append(dst, '\r', '\n')
	for _, a := range args {
		dst = AppendBulk(dst, a)
	}
	return dst
}

// AppendBulk appends a bulk string.
func AppendBulk(dst, b []byte) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(b)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

// AppendError appends an error reply; msg must not contain CR or LF.
func AppendError(dst []byte, msg string) []byte {
	dst = append(dst, '-')
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c != '\r' && c != '\n' {
			dst = append(dst, c)
		}
	}
	return append(dst, '\r', '\n')
}

// AppendInt appends an integer reply.
func AppendInt(dst []byte, n int64) []byte {
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, '\r', '\n')
}

// AppendArrayHeader appends "*n".
func AppendArrayHeader(dst []byte, n int) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '\r', '\n')
}

// AppendSimple appends a simple string reply.
func AppendSimple(dst []byte, s string) []byte {
	dst = append(dst, '+')
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

// Null bulk reply.
var Null = []byte("$-1\r\n")

// OK reply.
var OK = []byte("+OK\r\n")
