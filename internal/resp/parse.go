package resp

import (
	"bytes"
	"errors"
)

// ErrIncomplete means the buffer does not hold a whole command or reply yet.
var ErrIncomplete = errors.New("resp: incomplete")

// ParseCommand parses one command from the start of b, for event loops
// that read into their own buffers. It returns the arguments (aliasing b),
// the bytes consumed, ErrIncomplete when more input is needed, or a
// *ProtocolError. Empty inline lines and *0 arrays are consumed with no
// arguments.
func ParseCommand(b []byte, maxSize int, args [][]byte) ([][]byte, int, error) {
	return ParseCommandAs(b, maxSize, false, args)
}

// ParseCommandAs is ParseCommand with Redis's limits for an
// unauthenticated client when unauth is set.
func ParseCommandAs(b []byte, maxSize int, unauth bool, args [][]byte) ([][]byte, int, error) {
	if len(b) == 0 {
		return nil, 0, ErrIncomplete
	}
	if maxSize == 0 {
		maxSize = MaxBulk
	}
	args = args[:0]
	if b[0] != '*' {
		nl := bytes.IndexByte(b, '\n')
		limit := min(MaxInline, maxSize)
		if nl > limit || (nl < 0 && len(b) > limit) {
			return nil, 0, perr("too big inline request")
		}
		if nl < 0 {
			return nil, 0, ErrIncomplete
		}
		line := b[:nl]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		r := Reader{}
		parsed, err := r.splitInline(line)
		if err != nil {
			return nil, 0, err
		}
		return append(args, parsed...), nl + 1, nil
	}
	nl := bytes.Index(b, crlfBytes)
	if nl < 0 {
		if len(b) > 64 {
			return nil, 0, perr("invalid multibulk length")
		}
		return nil, 0, ErrIncomplete
	}
	n, err := parseInt(b[1:nl])
	if err != nil {
		return nil, 0, err
	}
	pos := nl + 2
	if n <= 0 {
		return args, pos, nil
	}
	if err := checkCount(n, unauth); err != nil {
		return nil, 0, err
	}
	total := 0
	for i := int64(0); i < n; i++ {
		if pos >= len(b) {
			return nil, 0, ErrIncomplete
		}
		if b[pos] != '$' {
			return nil, 0, perr("expected '$', got '%c'", b[pos])
		}
		e := bytes.Index(b[pos:], crlfBytes)
		if e < 0 {
			if len(b)-pos > 64 {
				return nil, 0, perr("invalid bulk length")
			}
			return nil, 0, ErrIncomplete
		}
		sz, err := parseInt(b[pos+1 : pos+e])
		if err != nil {
			return nil, 0, err
		}
		if err := checkBulk(sz, total, maxSize, unauth); err != nil {
			return nil, 0, err
		}
		total += int(sz)
		start := pos + e + 2
		end := start + int(sz)
		if end+2 > len(b) {
			return nil, 0, ErrIncomplete
		}
		if b[end] != '\r' || b[end+1] != '\n' {
			return nil, 0, perr("expected CRLF after bulk")
		}
		args = append(args, b[start:end:end])
		pos = end + 2
	}
	return args, pos, nil
}

var crlfBytes = []byte("\r\n")

// CommandScanner finds where one command ends in input that arrives in
// pieces, resuming where it stopped: a request of n bytes read in k pieces
// costs O(n), not O(n*k) as parsing it again from the start each time
// would. It checks what ParseCommandAs checks, as the bytes arrive. The
// buffer passed to Scan must start at the command and only grow.
type CommandScanner struct {
	pos   int   // bytes checked
	left  int64 // bulk arguments still expected; -1: header not read yet
	total int   // argument bytes so far
}

// Active says whether a command is part-way through the scanner.
func (s *CommandScanner) Active() bool { return s.pos > 0 }

// Reset prepares for the next command.
func (s *CommandScanner) Reset() { *s = CommandScanner{} }

// Scan returns the length of the complete command at the start of b, or
// ErrIncomplete, or a *ProtocolError.
func (s *CommandScanner) Scan(b []byte, maxSize int, unauth bool) (int, error) {
	if len(b) == 0 {
		return 0, ErrIncomplete
	}
	if maxSize == 0 {
		maxSize = MaxBulk
	}
	if b[0] != '*' {
		limit := min(MaxInline, maxSize)
		nl := bytes.IndexByte(b[s.pos:], '\n')
		if nl < 0 {
			if len(b) > limit {
				return 0, perr("too big inline request")
			}
			s.pos = len(b)
			return 0, ErrIncomplete
		}
		if s.pos+nl > limit {
			return 0, perr("too big inline request")
		}
		return s.pos + nl + 1, nil
	}
	if s.pos == 0 {
		nl := bytes.Index(b, crlfBytes)
		if nl < 0 {
			if len(b) > 64 {
				return 0, perr("invalid multibulk length")
			}
			return 0, ErrIncomplete
		}
		n, err := parseInt(b[1:nl])
		if err != nil {
			return 0, err
		}
		if n <= 0 {
			return nl + 2, nil
		}
		if err := checkCount(n, unauth); err != nil {
			return 0, err
		}
		s.pos, s.left = nl+2, n
	}
	for s.left > 0 {
		// A bulk's header is read again while its data is incomplete:
		// a few bytes, not the request.
		pos := s.pos
		if pos >= len(b) {
			return 0, ErrIncomplete
		}
		if b[pos] != '$' {
			return 0, perr("expected '$', got '%c'", b[pos])
		}
		e := bytes.Index(b[pos:min(len(b), pos+66)], crlfBytes)
		if e < 0 {
			if len(b)-pos > 64 {
				return 0, perr("invalid bulk length")
			}
			return 0, ErrIncomplete
		}
		sz, err := parseInt(b[pos+1 : pos+e])
		if err != nil {
			return 0, err
		}
		if err := checkBulk(sz, s.total, maxSize, unauth); err != nil {
			return 0, err
		}
		end := pos + e + 2 + int(sz)
		if end+2 > len(b) {
			return 0, ErrIncomplete
		}
		if b[end] != '\r' || b[end+1] != '\n' {
			return 0, perr("expected CRLF after bulk")
		}
		s.pos, s.total, s.left = end+2, s.total+int(sz), s.left-1
	}
	return s.pos, nil
}

// splitInline splits an inline command line (copied: quotes are unescaped
// in place).
func (r *Reader) splitInline(line []byte) ([][]byte, error) {
	r.buf = append(r.buf[:0], line...)
	s := r.buf
	var out [][]byte
	for i := 0; i < len(s); {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if i >= len(s) {
			break
		}
		if q := s[i]; q == '"' || q == '\'' {
			j := i + 1
			o := j
			for j < len(s) && s[j] != q {
				if q == '"' && s[j] == '\\' && j+1 < len(s) {
					j++
				}
				s[o] = s[j]
				o++
				j++
			}
			if j >= len(s) {
				return nil, perr("unbalanced quotes in request")
			}
			out = append(out, s[i+1:o])
			i = j + 1
			continue
		}
		j := i
		for j < len(s) && s[j] != ' ' && s[j] != '\t' {
			j++
		}
		out = append(out, s[i:j])
		i = j
	}
	return out, nil
}
