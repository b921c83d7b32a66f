package doctor

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Files read under the root, relative to it.
const (
	FileOvercommit = "proc/sys/vm/overcommit_memory"
	FileTHP        = "sys/kernel/mm/transparent_hugepage/enabled"
	FileLimits     = "proc/self/limits"
	FileNrOpen     = "proc/sys/fs/nr_open"
	FileFileMax    = "proc/sys/fs/file-max"
	FileSomaxconn  = "proc/sys/net/core/somaxconn"
)

// Read gathers the facts of the host whose filesystem is at root ("/" on
// a real host). The open-files limits come from proc/self/limits: those of
// the process that reads them, which the redis-servers it starts inherit.
// redisServer is the binary's name or path, run with --version.
func Read(ctx context.Context, root, redisServer string) Facts {
	f := Facts{
		Overcommit: readRaw(root, FileOvercommit),
		THP:        readRaw(root, FileTHP),
		Limits:     readRaw(root, FileLimits),
		NrOpen:     readRaw(root, FileNrOpen),
		FileMax:    readRaw(root, FileFileMax),
		Somaxconn:  readRaw(root, FileSomaxconn),
	}
	if redisServer == "" {
		redisServer = "redis-server"
	}
	path, err := exec.LookPath(redisServer)
	if err != nil {
		f.Redis = Raw{Err: err}
		return f
	}
	f.RedisPath = path
	// A wedged binary must not hang a health endpoint.
	vctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(vctx, path, "--version").Output()
	f.Redis = Raw{Text: string(out), Err: err}
	return f
}

func readRaw(root, rel string) Raw {
	b, err := os.ReadFile(filepath.Join(root, rel))
	if errors.Is(err, fs.ErrNotExist) {
		return Raw{Missing: true}
	}
	return Raw{Text: string(b), Err: err}
}

// Run reads the host at root and evaluates it.
func Run(ctx context.Context, root, redisServer string, n Needs) Report {
	return Report{Checks: Evaluate(Read(ctx, root, redisServer), n)}
}
