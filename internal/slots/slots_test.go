package slots

import "testing"

func TestSplit(t *testing.T) {
	cases := []struct {
		n    int
		want []Range
	}{
		{1, []Range{{0, 16383}}},
		{2, []Range{{0, 8191}, {8192, 16383}}},
		{3, []Range{{0, 5461}, {5462, 10922}, {10923, 16383}}},
		{0, nil},
	}
	for _, c := range cases {
		got := Split(c.n)
		if len(got) != len(c.want) {
			t.Fatalf("Split(%d) = %v, want %v", c.n, got, c.want)
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Fatalf("Split(%d)[%d] = %v, want %v", c.n, i, got[i], c.want[i])
			}
		}
	}
	// Every n up to 256 covers all slots exactly once, contiguously.
	for n := 1; n <= 256; n++ {
		next := 0
		for _, r := range Split(n) {
			if r.Start != next || r.End < r.Start {
				t.Fatalf("Split(%d): gap or empty range at %v", n, r)
			}
			next = r.End + 1
		}
		if next != Count {
			t.Fatalf("Split(%d) ends at %d", n, next)
		}
	}
}

func TestOf(t *testing.T) {
	// Values from Redis Cluster (CLUSTER KEYSLOT).
	cases := []struct {
		key  string
		slot int
	}{
		{"foo", 12182},
		{"bar", 5061},
		{"123456789", 12739},
		{"{user1000}.following", 3443},
		{"{user1000}.followers", 3443},
		{"foo{}{bar}", 8363},    // empty tag: whole key hashed
		{"foo{{bar}}zap", 4015}, // tag is "{bar"
		{"", 0},
	}
	for _, c := range cases {
		if got := Of([]byte(c.key)); got != c.slot {
			t.Errorf("Of(%q) = %d, want %d", c.key, got, c.slot)
		}
	}
}
