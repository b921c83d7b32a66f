// Command provision measures how fast Marina provisions databases on a
// 3-node `marina up`: the time from `db create` until every instance serves
// and every replica is in sync (1x1 and 3x1), and the time to create 100
// databases. It prints figures; it asserts nothing.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/client"
)

func main() {
	bin := flag.String("marina", "bin/marina", "marina binary")
	trials := flag.Int("trials", 10, "trials per shape")
	many := flag.Int("many", 100, "databases in the bulk-create run")
	flag.Parse()
	if err := run(*bin, *trials, *many); err != nil {
		fmt.Fprintln(os.Stderr, "bench/provision:", err)
		os.Exit(1)
	}
}

func freeBase() int {
	for p := 20000; p < 60000; p += 1000 {
		ok := true
		for i := 1; i <= 3 && ok; i++ {
			for _, q := range []int{p, p + 1} {
				ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:%d", i, q))
				if err != nil {
					ok = false
					break
				}
				ln.Close()
			}
		}
		if ok {
			return p
		}
	}
	return 27070
}

func run(bin string, trials, many int) error {
	dir, err := os.MkdirTemp("", "marina-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command(bin, "up", "--nodes", "3", "--dir", filepath.Join(dir, "up"), "--base-port", fmt.Sprint(freeBase()), "--memory", "8GiB")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		_ = cmd.Wait()
	}()
	env := map[string]string{}
	sc := bufio.NewScanner(out)
	for len(env) < 2 && sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	if env["MARINA_TOKEN"] == "" {
		return fmt.Errorf("marina up did not print MARINA_ADDR/MARINA_TOKEN")
	}
	go func() {
		for sc.Scan() {
		}
	}()
	c := client.New(env["MARINA_ADDR"], env["MARINA_TOKEN"], client.CAFile(env["MARINA_CACERT"]))
	ctx := context.Background()

	fmt.Printf("marina provisioning benchmark: 3-node marina up, %d trials per shape\n", trials)
	for _, shape := range []struct{ shards, replicas int }{{1, 1}, {3, 1}} {
		var ds []time.Duration
		for i := 0; i < trials; i++ {
			name := fmt.Sprintf("b%dx%d-%d", shape.shards, shape.replicas, i)
			start := time.Now()
			db, err := c.CreateDB(ctx, api.CreateDBRequest{Name: name, Memory: 32 << 20, Shards: shape.shards, Replicas: shape.replicas})
			if err != nil {
				return err
			}
			if err := waitServing(ctx, db, 30*time.Second); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			ds = append(ds, time.Since(start))
			if err := c.DeleteDB(ctx, name); err != nil {
				return err
			}
		}
		fmt.Printf("create %dx%d until serving and in sync: %s  (target < 2s)\n", shape.shards, shape.replicas, summary(ds))
	}

	start := time.Now()
	var dbs []*api.DB
	for i := 0; i < many; i++ {
		db, err := c.CreateDB(ctx, api.CreateDBRequest{Name: fmt.Sprintf("many-%03d", i), Memory: 16 << 20, Replicas: 1})
		if err != nil {
			return err
		}
		dbs = append(dbs, db)
	}
	apiDone := time.Since(start)
	var wg sync.WaitGroup
	errs := make(chan error, len(dbs))
	for _, db := range dbs {
		wg.Add(1)
		go func(db *api.DB) {
			defer wg.Done()
			errs <- waitServing(ctx, db, 60*time.Second)
		}(db)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	fmt.Printf("create %d databases (1x1, sequential API calls): API %v (%v per db); all %d instances serving and in sync after %v\n",
		many, apiDone.Round(time.Millisecond), (apiDone / time.Duration(many)).Round(100*time.Microsecond), many*2, time.Since(start).Round(time.Millisecond))
	return nil
}

func summary(ds []time.Duration) string {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	pct := func(p float64) time.Duration { return ds[int(p*float64(len(ds)-1)+0.5)].Round(time.Millisecond) }
	return fmt.Sprintf("n=%d min=%v p50=%v p90=%v max=%v", len(ds), ds[0].Round(time.Millisecond), pct(0.5), pct(0.9), ds[len(ds)-1].Round(time.Millisecond))
}

// waitServing polls every instance directly: masters answer PING as
// masters, replicas report an up link with no sync in progress.
func waitServing(ctx context.Context, db *api.DB, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, sh := range db.Shards {
		for _, in := range append([]api.Instance{sh.Master}, sh.Replicas...) {
			r := redis.NewClient(&redis.Options{Addr: in.Addr, Password: db.Password, Protocol: 2, DisableIdentity: true,
				DialTimeout: 200 * time.Millisecond, ReadTimeout: time.Second, MaxRetries: -1, PoolSize: 1})
			for {
				info, err := r.Info(ctx, "replication").Result()
				if err == nil && ready(info, in.Role) {
					break
				}
				if time.Now().After(deadline) {
					r.Close()
					return fmt.Errorf("%s %s not ready after %v (%v)", in.Role, in.Addr, timeout, err)
				}
				time.Sleep(2 * time.Millisecond)
			}
			r.Close()
		}
	}
	return nil
}

func ready(info, role string) bool {
	if role == "master" {
		return strings.Contains(info, "role:master")
	}
	return strings.Contains(info, "role:slave") && strings.Contains(info, "master_link_status:up") && strings.Contains(info, "master_sync_in_progress:0")
}
