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
	if n > MaxArgs {
		return nil, 0, perr("too many arguments")
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
		total += int(sz)
		if sz < 0 || sz > int64(maxSize) || total > maxSize {
			return nil, 0, perr("invalid bulk length")
		}
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
