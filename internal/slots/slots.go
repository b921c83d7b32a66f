// Package slots holds the hash-slot maths shared by placement and the proxy:
// Redis Cluster's 16384 CRC16 slots with {hash tags}.
package slots

// Count is the number of hash slots.
const Count = 16384

// Range is an inclusive range of slots.
type Range struct {
	Start int `json:"start"`
	End   int `json:"end"`
}

// Split divides the slots evenly into n contiguous ranges; the first
// Count%n ranges get one extra slot.
func Split(n int) []Range {
	if n < 1 {
		return nil
	}
	out := make([]Range, n)
	base, extra := Count/n, Count%n
	start := 0
	for i := range out {
		size := base
		if i < extra {
			size++
		}
		out[i] = Range{Start: start, End: start + size - 1}
		start += size
	}
	return out
}

// Of returns the slot of a key, honouring {hash tags} as Redis Cluster does.
func Of(key []byte) int {
	for i := 0; i < len(key); i++ {
		if key[i] == '{' {
			for j := i + 1; j < len(key); j++ {
				if key[j] == '}' {
					if j > i+1 {
						key = key[i+1 : j]
					}
					break
				}
			}
			break
		}
	}
	return int(crc16(key) & (Count - 1))
}

// crc16 is CRC16-CCITT (XMODEM), the variant Redis Cluster uses.
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc = crc<<8 ^ crcTable[byte(crc>>8)^c]
	}
	return crc
}

var crcTable = func() [256]uint16 {
	var t [256]uint16
	for i := range t {
		c := uint16(i) << 8
		for j := 0; j < 8; j++ {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()
