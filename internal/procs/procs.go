// Package procs has the few questions Marina asks the kernel about
// processes: is one alive, and which redis-servers run from a directory.
package procs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Alive reports whether pid exists and is not a zombie.
func Alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// KillInstances kills every redis-server running from an instance dir
// under dir (its pidfile's process, running in that very dir): the last
// resort of `marina up` and of tests, so nothing they started outlives them.
func KillInstances(dir string) {
	_ = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || info.Name() != "redis.pid" {
			return nil
		}
		b, _ := os.ReadFile(path)
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			return nil
		}
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		cwd, cerr := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		if err == nil && cerr == nil && strings.Contains(string(cmd), "redis-server") && cwd == filepath.Dir(path) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		return nil
	})
	// A server started an instant before its agent was killed may not have
	// written its pidfile yet: any redis-server whose working directory is
	// under dir (even deleted since) goes too.
	abs, err := filepath.Abs(dir)
	if err != nil {
		return
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 1 {
			continue
		}
		cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		if err != nil {
			continue
		}
		cwd = strings.TrimSuffix(cwd, " (deleted)")
		if cwd != abs && !strings.HasPrefix(cwd, abs+string(filepath.Separator)) {
			continue
		}
		if cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(cmd), "redis-server") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
