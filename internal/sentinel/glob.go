package sentinel

// Match reports whether s matches the glob pattern as Redis's PSUBSCRIBE
// reads it: '*' any run (including '/', unlike path.Match), '?' one byte,
// [abc], [^abc], [a-z], and '\' quoting the next byte.
func Match(pattern, s string) bool {
	return match(pattern, s, 0)
}

// maxStars bounds backtracking on hostile patterns.
const maxStars = 16

func match(p, s string, stars int) bool {
	for len(p) > 0 {
		switch p[0] {
		case '*':
			for len(p) > 1 && p[1] == '*' {
				p = p[1:]
			}
			if len(p) == 1 {
				return true
			}
			if stars >= maxStars {
				return false
			}
			for i := 0; i <= len(s); i++ {
				if match(p[1:], s[i:], stars+1) {
					return true
				}
			}
			return false
		case '?':
			if len(s) == 0 {
				return false
			}
			p, s = p[1:], s[1:]
		case '[':
			if len(s) == 0 {
				return false
			}
			rest, ok := matchClass(p[1:], s[0])
			if !ok {
				return false
			}
			p, s = rest, s[1:]
		case '\\':
			if len(p) >= 2 {
				p = p[1:]
			}
			fallthrough
		default:
			if len(s) == 0 || p[0] != s[0] {
				return false
			}
			p, s = p[1:], s[1:]
		}
	}
	return len(s) == 0
}

// matchClass matches c against a [...] class (p starts after '[') and
// returns the pattern after the closing ']'.
func matchClass(p string, c byte) (string, bool) {
	neg := len(p) > 0 && p[0] == '^'
	if neg {
		p = p[1:]
	}
	hit := false
	for len(p) > 0 && p[0] != ']' {
		switch {
		case p[0] == '\\' && len(p) >= 2:
			hit = hit || p[1] == c
			p = p[2:]
		case len(p) >= 3 && p[1] == '-' && p[2] != ']':
			lo, hi := p[0], p[2]
			if lo > hi {
				lo, hi = hi, lo
			}
			hit = hit || (c >= lo && c <= hi)
			p = p[3:]
		default:
			hit = hit || p[0] == c
			p = p[1:]
		}
	}
	if len(p) > 0 {
		p = p[1:] // the ']'
	}
	return p, hit != neg
}
