package resp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestReadCommand(t *testing.T) {
	cases := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", []string{"GET", "k"}, ""},
		{"*1\r\n$0\r\n\r\n", []string{""}, ""},
		{"PING\r\n", []string{"PING"}, ""},
		{"set k \"a b\\\"c\"\r\n", []string{"set", "k", "a b\"c"}, ""},
		{"set k 'x y'\n", []string{"set", "k", "x y"}, ""},
		{"\r\n*0\r\nPING\r\n", []string{"PING"}, ""},
		{"*1\r\n$3\r\nGETX\r\n", nil, "expected CRLF after bulk"},
		{"*1\r\n:3\r\n", nil, "expected '$'"},
		{"*x\r\n", nil, "invalid length"},
		{"*1\r\n$-5\r\n", nil, "invalid bulk length"},
		{"set k \"open\r\n", nil, "unbalanced quotes"},
	}
	for _, c := range cases {
		r := NewReader(strings.NewReader(c.in), 4096)
		got, err := r.ReadCommand()
		if c.wantErr != "" {
			var pe *ProtocolError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%q: err %v, want %q", c.in, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		var s []string
		for _, a := range got {
			s = append(s, string(a))
		}
		if strings.Join(s, "|") != strings.Join(c.want, "|") {
			t.Errorf("%q: got %q, want %q", c.in, s, c.want)
		}
	}
}

func TestPipelineAndLimit(t *testing.T) {
	var in []byte
	for i := 0; i < 1000; i++ {
		in = AppendCommand(in, []byte("SET"), []byte("key"), bytes.Repeat([]byte("v"), i%50))
	}
	r := NewReader(bytes.NewReader(in), 1024)
	for i := 0; i < 1000; i++ {
		args, err := r.ReadCommand()
		if err != nil || len(args) != 3 || len(args[2]) != i%50 {
			t.Fatalf("command %d: %v %q", i, err, args)
		}
	}
	r = NewReader(bytes.NewReader(AppendCommand(nil, []byte("SET"), []byte("k"), bytes.Repeat([]byte("x"), 100))), 1024)
	r.MaxSize = 50
	if _, err := r.ReadCommand(); err == nil || !strings.Contains(err.Error(), "invalid bulk length") {
		t.Fatalf("oversized request: %v", err)
	}
}

func TestReadReplyAndElements(t *testing.T) {
	replies := []string{
		"+OK\r\n", "-ERR x\r\n", ":42\r\n", "$3\r\nabc\r\n", "$-1\r\n", "*-1\r\n",
		"*3\r\n$1\r\na\r\n$-1\r\n:1\r\n", "*2\r\n*1\r\n+x\r\n$0\r\n\r\n",
		"%1\r\n+k\r\n:1\r\n", "_\r\n", ",3.14\r\n", "#t\r\n", "~1\r\n+a\r\n", ">2\r\n+message\r\n$1\r\nx\r\n",
	}
	all := strings.Join(replies, "")
	r := NewReader(strings.NewReader(all), 64)
	for _, want := range replies {
		got, err := r.ReadReply(nil)
		if err != nil || string(got) != want {
			t.Fatalf("ReadReply = %q %v, want %q", got, err, want)
		}
	}
	rest := []byte(all)
	for _, want := range replies {
		var got []byte
		var err error
		got, rest, err = Next(rest)
		if err != nil || string(got) != want {
			t.Fatalf("Next = %q %v, want %q", got, err, want)
		}
	}
	els, err := Elements([]byte("*3\r\n$1\r\na\r\n$-1\r\n:1\r\n"))
	if err != nil || len(els) != 3 || string(els[1]) != "$-1\r\n" {
		t.Fatalf("Elements %q %v", els, err)
	}
	if n, ok := Int([]byte(":-7\r\n")); !ok || n != -7 {
		t.Fatalf("Int %d %v", n, ok)
	}
	if b, ok := BulkBytes([]byte("$3\r\nabc\r\n")); !ok || string(b) != "abc" {
		t.Fatalf("BulkBytes %q", b)
	}
}

// FuzzReadCommand: no input may panic, hang or yield an argument that
// does not round-trip.
func FuzzReadCommand(f *testing.F) {
	f.Add([]byte("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"))
	f.Add([]byte("PING\r\n"))
	f.Add([]byte("set a \"b c\"\r\n"))
	f.Add([]byte("*1\r\n$-1\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in), 256)
		r.MaxSize = 1 << 16
		for i := 0; i < 100; i++ {
			args, err := r.ReadCommand()
			if err != nil {
				return
			}
			enc := AppendCommand(nil, args...)
			back, err := NewReader(bytes.NewReader(enc), 256).ReadCommand()
			if err != nil || len(back) != len(args) {
				t.Fatalf("round trip of %q: %v", args, err)
			}
			for j := range args {
				if !bytes.Equal(back[j], args[j]) {
					t.Fatalf("round trip changed %q to %q", args[j], back[j])
				}
			}
		}
	})
}

// FuzzReply: ReadReply and Next agree on every input.
func FuzzReply(f *testing.F) {
	f.Add([]byte("*2\r\n$1\r\na\r\n:1\r\n"))
	f.Add([]byte("%1\r\n+k\r\n*0\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := NewReader(bytes.NewReader(in), 256).ReadReply(nil)
		if err != nil {
			return
		}
		n, _, err2 := Next(in)
		if err2 != nil || !bytes.Equal(n, got) {
			t.Fatalf("ReadReply %q, Next %q %v", got, n, err2)
		}
	})
}

// FuzzParseCommand: the buffer parser agrees with the stream reader on every
// input, whole or cut anywhere.
func FuzzParseCommand(f *testing.F) {
	f.Add([]byte("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), 5)
	f.Add([]byte("PING\r\nset a \"b c\"\r\n"), 3)
	f.Fuzz(func(t *testing.T, in []byte, cut int) {
		want, werr := NewReader(bytes.NewReader(in), 1<<16).ReadCommand()
		got, n, err := ParseCommand(in, 1<<16, nil)
		if err == nil && len(got) == 0 && n > 0 {
			return // an empty line or *0: the reader skips to the next command
		}
		if werr == nil {
			if err != nil || len(got) != len(want) {
				t.Fatalf("%q: ParseCommand %q %v, reader %q", in, got, err, want)
			}
			for i := range got {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("%q: arg %d %q vs %q", in, i, got[i], want[i])
				}
			}
			if cut > 0 && cut < n {
				if _, _, err := ParseCommand(in[:cut], 1<<16, nil); err != ErrIncomplete {
					t.Fatalf("%q cut at %d: %v, want incomplete", in, cut, err)
				}
			}
		}
	})
}

// FuzzScanner: fed any input in pieces, the scanner finds the same reply
// end as Next on the whole input.
func FuzzScanner(f *testing.F) {
	f.Add([]byte("*3\r\n$1\r\na\r\n*1\r\n:1\r\n%1\r\n+k\r\n$0\r\n\r\n"), 3)
	f.Add([]byte("$5\r\nhello\r\n"), 2)
	f.Fuzz(func(t *testing.T, in []byte, step int) {
		if step <= 0 || step > 64 {
			step = 7
		}
		want, _, werr := Next(in)
		var s Scanner
		for end := step; ; end += step {
			if end > len(in) {
				end = len(in)
			}
			n, err := s.Scan(in[:end])
			if err == ErrIncomplete {
				if end == len(in) {
					if werr == nil {
						t.Fatalf("%q: scanner incomplete, Next found %d bytes", in, len(want))
					}
					return
				}
				continue
			}
			if err != nil {
				if werr == nil {
					t.Fatalf("%q: scanner %v, Next found %d bytes", in, err, len(want))
				}
				return
			}
			if werr != nil || n != len(want) {
				t.Fatalf("%q: scanner %d, Next %d %v", in, n, len(want), werr)
			}
			return
		}
	})
}

// A header that announces a million arguments and sends none costs no
// more than a short command (the attack: `*1000000` headers before AUTH,
// each allocating for the count it claims).
func TestHugeCountAllocatesByWhatArrives(t *testing.T) {
	in := "*1000000\r\n$1\r\na\r\n"
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < 10; i++ {
		if _, err := NewReader(strings.NewReader(in), 4096).ReadCommand(); err == nil {
			t.Fatal("a truncated command parsed")
		}
	}
	runtime.ReadMemStats(&after)
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 1<<20 {
		t.Fatalf("10 truncated headers allocated %d bytes", grown)
	}
}

// FuzzCommandScanner: fed a command in two pieces, the resumable scanner
// agrees with ParseCommandAs on the whole input: the same end, incomplete,
// or a protocol error, with and without the unauthenticated limits.
func FuzzCommandScanner(f *testing.F) {
	f.Add([]byte("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), 5, false)
	f.Add([]byte("*11\r\n$1\r\na\r\n"), 3, true)
	f.Add([]byte("*1\r\n$20000\r\n"), 3, true)
	f.Add([]byte("PING\r\nset a \"b c\"\r\n"), 3, false)
	f.Fuzz(func(t *testing.T, in []byte, cut int, unauth bool) {
		var s CommandScanner
		if cut > 0 && cut < len(in) {
			if _, err := s.Scan(in[:cut], 1<<16, unauth); err != ErrIncomplete {
				return // decided on the first piece already
			}
		}
		n, err := s.Scan(in, 1<<16, unauth)
		_, wn, werr := ParseCommandAs(in, 1<<16, unauth, nil)
		var pe *ProtocolError
		switch {
		case err == ErrIncomplete:
			if werr != ErrIncomplete {
				t.Fatalf("%q: scanner incomplete, parser %d %v", in, wn, werr)
			}
		case err != nil:
			if !errors.As(werr, &pe) {
				t.Fatalf("%q: scanner %v, parser %d %v", in, err, wn, werr)
			}
		default:
			_, pn, perr := ParseCommandAs(in[:n], 1<<16, unauth, nil)
			if perr != werr && !(errors.As(perr, &pe) && errors.As(werr, &pe)) || (perr == nil && (pn != n || wn != n)) {
				t.Fatalf("%q: scanner end %d, parser on it %d %v, on all %d %v", in, n, pn, perr, wn, werr)
			}
		}
	})
}

// The scanner's cost is linear: a 1M-argument request arriving in 4 KiB
// pieces is checked in about as many steps as it has bytes.
func TestCommandScannerIsLinear(t *testing.T) {
	var b bytes.Buffer
	const args = 1 << 20
	fmt.Fprintf(&b, "*%d\r\n", args)
	for i := 0; i < args; i++ {
		b.WriteString("$1\r\nx\r\n")
	}
	in := b.Bytes()
	var s CommandScanner
	start := time.Now()
	for end := 4096; ; end += 4096 {
		n, err := s.Scan(in[:min(end, len(in))], 0, false)
		if err == nil {
			if n != len(in) {
				t.Fatalf("end %d of %d", n, len(in))
			}
			break
		}
		if err != ErrIncomplete {
			t.Fatal(err)
		}
	}
	// Quadratic would be ~1000x the single pass; allow a wide margin.
	one := time.Now()
	var s2 CommandScanner
	if _, err := s2.Scan(in, 0, false); err != nil {
		t.Fatal(err)
	}
	single := time.Since(one)
	if pieces := one.Sub(start); pieces > 20*single+50*time.Millisecond {
		t.Fatalf("in pieces %v, at once %v: not linear", pieces, single)
	}
}

func TestUnauthenticatedLimits(t *testing.T) {
	for _, c := range []struct {
		in, err string
	}{
		{"*11\r\n", "Protocol error: unauthenticated multibulk length"},
		{"*2\r\n$16385\r\n", "Protocol error: unauthenticated bulk length"},
		{"*3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$5\r\nhello\r\n", ""},
	} {
		_, _, err := ParseCommandAs([]byte(c.in), 0, true, nil)
		var s CommandScanner
		_, serr := s.Scan([]byte(c.in), 0, true)
		_, rerr := (&Reader{br: bufio.NewReader(strings.NewReader(c.in)), Unauth: true}).ReadCommand()
		for what, e := range map[string]error{"parse": err, "scan": serr, "reader": rerr} {
			got := ""
			if e != nil && e != ErrIncomplete && e != io.EOF && e != io.ErrUnexpectedEOF {
				got = e.Error()
			}
			if got != c.err {
				t.Errorf("%s %q: %v, want %q", what, c.in, e, c.err)
			}
		}
	}
}
