package api

import (
	"encoding/json"
	"testing"
)

func TestParseSize(t *testing.T) {
	cases := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"64MiB", 64 << 20, false},
		{"64mb", 64 << 20, false},
		{"1gb", 1 << 30, false},
		{"1GiB", 1 << 30, false},
		{"1.5GiB", 3 << 29, false},
		{"64MB", 64_000_000, false},
		{"100000", 100000, false},
		{"", 0, true},
		{"lots", 0, true},
		{"-5mb", 0, true},
	}
	for _, c := range cases {
		got, err := ParseSize(c.in)
		if (err != nil) != c.wantErr || (!c.wantErr && got != c.want) {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, err %v", c.in, got, err, c.want, c.wantErr)
		}
	}
	var r CreateDBRequest
	if err := json.Unmarshal([]byte(`{"name":"a","memory":"32MiB"}`), &r); err != nil || r.Memory != 32<<20 {
		t.Fatalf("unmarshal string size: %v %d", err, r.Memory)
	}
	if err := json.Unmarshal([]byte(`{"name":"a","memory":1048576}`), &r); err != nil || r.Memory != 1<<20 {
		t.Fatalf("unmarshal number size: %v %d", err, r.Memory)
	}
	if err := json.Unmarshal([]byte(`{"memory":true}`), &r); err == nil {
		t.Fatal("bool memory accepted")
	}
}
