package resp

import "bytes"

// Scanner finds the end of one reply arriving in pieces, resuming where it
// stopped: a reply of n bytes read in k pieces costs O(n), not O(n*k).
// The buffer passed to Scan must start at the reply and only grow.
type Scanner struct {
	pos   int
	stack []int64 // elements still expected at each open aggregate level
	depth int
}

// Reset prepares for the next reply.
func (s *Scanner) Reset() {
	s.pos, s.stack = 0, s.stack[:0]
}

// Scan returns the length of the complete reply at the start of b, or
// ErrIncomplete, or a *ProtocolError.
func (s *Scanner) Scan(b []byte) (int, error) {
	for {
		if s.pos >= len(b) {
			return 0, ErrIncomplete
		}
		j := bytes.Index(b[s.pos:], crlfBytes)
		if j < 0 {
			return 0, ErrIncomplete
		}
		if j < 1 {
			return 0, perr("empty reply line")
		}
		head, body := b[s.pos], b[s.pos+1:s.pos+j]
		next := s.pos + j + 2
		switch head {
		case '+', '-', ':', '_', ',', '#', '(':
			s.pos = next
		case '$', '!', '=':
			n, err := parseInt(body)
			if err != nil {
				return 0, err
			}
			if n > MaxBulk {
				return 0, perr("bulk too long")
			}
			if n >= 0 {
				if next+int(n)+2 > len(b) {
					return 0, ErrIncomplete // the header is parsed again next time: cheap
				}
				next += int(n) + 2
			}
			s.pos = next
		case '*', '%', '~', '>', '|':
			n, err := parseInt(body)
			if err != nil {
				return 0, err
			}
			if head == '%' || head == '|' {
				n *= 2
			}
			s.pos = next
			if n > 0 {
				if len(s.stack) >= maxNesting {
					return 0, ErrNesting
				}
				s.stack = append(s.stack, n)
				continue // its elements come next
			}
		default:
			return 0, perr("unknown reply type '%c'", head)
		}
		// One element is complete: close the aggregates it completes.
		for {
			if len(s.stack) == 0 {
				return s.pos, nil
			}
			top := len(s.stack) - 1
			s.stack[top]--
			if s.stack[top] > 0 {
				break
			}
			s.stack = s.stack[:top]
		}
	}
}
