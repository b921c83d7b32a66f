package resp

import "bytes"

// Next splits the first complete reply off b.
func Next(b []byte) (reply, rest []byte, err error) {
	end, err := skip(b, 0, 0)
	if err != nil {
		return nil, b, err
	}
	return b[:end], b[end:], nil
}

func skip(b []byte, i, depth int) (int, error) {
	if depth > maxNesting {
		return 0, ErrNesting
	}
	if i >= len(b) {
		return 0, ErrIncomplete
	}
	j := bytes.Index(b[i:], []byte("\r\n"))
	if j < 0 {
		return 0, ErrIncomplete
	}
	if j < 1 {
		return 0, perr("empty reply line")
	}
	head, body := b[i], b[i+1:i+j]
	next := i + j + 2
	switch head {
	case '+', '-', ':', '_', ',', '#', '(':
		return next, nil
	case '$', '!', '=':
		n, err := parseInt(body)
		if err != nil {
			return 0, err
		}
		if n < 0 {
			return next, nil
		}
		if n > MaxBulk {
			return 0, perr("bulk too long")
		}
		if next+int(n)+2 > len(b) {
			return 0, ErrIncomplete
		}
		return next + int(n) + 2, nil
	case '*', '%', '~', '>', '|':
		n, err := parseInt(body)
		if err != nil {
			return 0, err
		}
		if head == '%' || head == '|' {
			n *= 2
		}
		for k := int64(0); k < n; k++ {
			if next, err = skip(b, next, depth+1); err != nil {
				return 0, err
			}
		}
		return next, nil
	}
	return 0, perr("unknown reply type '%c'", head)
}

// Elements returns the raw elements of an array reply.
func Elements(raw []byte) ([][]byte, error) {
	if len(raw) == 0 || (raw[0] != '*' && raw[0] != '~' && raw[0] != '>') {
		return nil, perr("not an array")
	}
	j := bytes.Index(raw, []byte("\r\n"))
	if j < 1 {
		return nil, perr("incomplete array")
	}
	n, err := parseInt(raw[1:j])
	if err != nil {
		return nil, err
	}
	rest := raw[j+2:]
	out := make([][]byte, 0, max(n, 0))
	for k := int64(0); k < n; k++ {
		var e []byte
		if e, rest, err = Next(rest); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// Int returns the value of an integer reply.
func Int(raw []byte) (int64, bool) {
	if len(raw) < 4 || raw[0] != ':' {
		return 0, false
	}
	n, err := parseInt(raw[1 : len(raw)-2])
	return n, err == nil
}

// IsError says whether a reply is an error.
func IsError(raw []byte) bool { return len(raw) > 0 && (raw[0] == '-' || raw[0] == '!') }

// BulkBytes returns the payload of a bulk string reply.
func BulkBytes(raw []byte) ([]byte, bool) {
	if len(raw) < 4 || raw[0] != '$' {
		return nil, false
	}
	j := bytes.Index(raw, []byte("\r\n"))
	n, err := parseInt(raw[1:j])
	if err != nil || n < 0 || j+2+int(n) > len(raw) {
		return nil, false
	}
	return raw[j+2 : j+2+int(n)], true
}
