package faulttest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/marina-redis/marina/internal/testutil"
)

func TestMain(m *testing.M) {
	if testutil.WriterChild() {
		return // this process was a writer inside a test's network namespace
	}
	dir, err := os.MkdirTemp("", "marina-fault-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	marinaBin = filepath.Join(dir, "marina")
	if out, err := exec.Command("go", "build", "-o", marinaBin, "../../cmd/marina").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
