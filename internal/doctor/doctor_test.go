package doctor

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const limits4096 = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 4096                 files
Max locked memory         8388608              8388608              bytes
`

func limitsText(soft, hard string) string {
	return "Limit                     Soft Limit           Hard Limit           Units\n" +
		"Max open files            " + soft + "                 " + hard + "                 files\n"
}

// good is a host where everything passes.
func good() Facts {
	return Facts{
		Overcommit: Raw{Text: "1\n"},
		THP:        Raw{Text: "always madvise [never]\n"},
		Limits:     Raw{Text: limitsText("1048576", "1048576")},
		NrOpen:     Raw{Text: "1048576\n"},
		FileMax:    Raw{Text: "9223372036854775807\n"},
		Somaxconn:  Raw{Text: "4096\n"},
		Redis:      Raw{Text: "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=ae4d7c971a948f0\n"},
		RedisPath:  "/usr/bin/redis-server",
	}
}

func TestEvaluate(t *testing.T) {
	denied := errors.New("open /proc/sys/vm/overcommit_memory: permission denied")
	cases := []struct {
		name  string
		mod   func(*Facts)
		needs Needs
		check string
		// status of that check, and substrings of its value / want / fix
		status, value, want, fix string
		notFix                   string // not in the fix
	}{
		{name: "overcommit ok", check: NameOvercommit, status: OK, value: "1"},
		{name: "overcommit 0", mod: func(f *Facts) { f.Overcommit.Text = "0\n" }, check: NameOvercommit, status: Warn, value: "0",
			want: "1", fix: "sysctl -w vm.overcommit_memory=1 && echo 'vm.overcommit_memory = 1' >> /etc/sysctl.d/"},
		{name: "overcommit 2", mod: func(f *Facts) { f.Overcommit.Text = "2" }, check: NameOvercommit, status: Warn, value: "2"},
		{name: "overcommit unreadable", mod: func(f *Facts) { f.Overcommit = Raw{Err: denied} }, check: NameOvercommit, status: Warn,
			value: "unreadable: open /proc/sys/vm/overcommit_memory: permission denied"},
		{name: "overcommit missing", mod: func(f *Facts) { f.Overcommit = Raw{Missing: true} }, check: NameOvercommit, status: Warn,
			value: "does not exist"},

		{name: "thp never", check: NameTHP, status: OK, value: "never"},
		{name: "thp madvise", mod: func(f *Facts) { f.THP.Text = "always [madvise] never" }, check: NameTHP, status: OK, value: "madvise"},
		{name: "thp always", mod: func(f *Facts) { f.THP.Text = "[always] madvise never\n" }, check: NameTHP, status: Warn, value: "always",
			want: "never or madvise", fix: "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled"},
		{name: "thp without brackets", mod: func(f *Facts) { f.THP.Text = "never" }, check: NameTHP, status: OK, value: "never"},
		{name: "thp not in kernel", mod: func(f *Facts) { f.THP = Raw{Missing: true} }, check: NameTHP, status: OK, value: "not available"},

		{name: "nofile high", check: NameNoFile, status: OK, value: "soft 1048576, hard 1048576", want: "hard >= 10032"},
		{name: "nofile unlimited", mod: func(f *Facts) { f.Limits.Text = limitsText("unlimited", "unlimited") }, check: NameNoFile, status: OK,
			value: "soft unlimited, hard unlimited"},
		{name: "nofile low hard", mod: func(f *Facts) { f.Limits.Text = limits4096 }, check: NameNoFile, status: Warn,
			value: "soft 1024, hard 4096", want: "hard >= 10032 (redis-server: maxclients 10000 + 32)", fix: "LimitNOFILE=10032"},
		{name: "nofile low soft only", mod: func(f *Facts) { f.Limits.Text = limitsText("1024", "524288") }, check: NameNoFile, status: OK,
			value: "soft 1024, hard 524288"},
		{name: "nofile exactly redis", mod: func(f *Facts) { f.Limits.Text = limitsText("10032", "10032") }, check: NameNoFile, status: OK},
		{name: "nofile proxy endpoints", mod: func(f *Facts) { f.Limits.Text = limitsText("20000", "20000") },
			needs: Needs{Instances: 4, ProxyEndpoints: 3, ProxyMaxClients: 10000}, check: NameNoFile, status: Warn,
			want: "hard >= 31024 (redis-server: maxclients 10000 + 32; proxy: 3 endpoints x 10000 clients + 1024)", fix: "LimitNOFILE=31024"},
		{name: "nofile proxy small limit", mod: func(f *Facts) { f.Limits.Text = limitsText("20000", "20000") },
			needs: Needs{ProxyEndpoints: 3, ProxyMaxClients: 100}, check: NameNoFile, status: OK, want: "hard >= 10032"},
		{name: "nofile proxy default clients", needs: Needs{ProxyEndpoints: 1}, check: NameNoFile, status: OK, want: "hard >= 11024"},
		// 1,000 endpoints: 10,001,024 files, which no LimitNOFILE can give
		// while fs.nr_open is the default.
		{name: "nofile need above nr_open", mod: func(f *Facts) { f.Limits.Text = limits4096 },
			needs: Needs{ProxyEndpoints: 1000, ProxyMaxClients: 10000}, check: NameNoFile, status: Warn,
			want: "hard >= 10001024 (redis-server: maxclients 10000 + 32; proxy: 1000 endpoints x 10000 clients + 1024), more than fs.nr_open 1048576",
			fix: "LimitNOFILE=1048576 in marina's systemd unit (or 'nofile 1048576' in /etc/security/limits.conf), then restart marina server. " +
				"fs.nr_open (1048576) is the most open files the kernel lets a process have (a higher LimitNOFILE stops the unit from starting), less than the 10001024 needed: " +
				"lower --proxy-max-clients to 1047 or less (1000 endpoints x 1047 + 1024 fits), or raise fs.nr_open first " +
				"(sysctl -w fs.nr_open=10001024 && echo 'fs.nr_open = 10001024' >> /etc/sysctl.d/60-marina.conf), then set LimitNOFILE=10001024"},
		{name: "nofile at nr_open, need above", needs: Needs{ProxyEndpoints: 1000}, check: NameNoFile, status: Warn,
			value: "hard 1048576", want: "more than fs.nr_open 1048576", fix: "fs.nr_open (1048576) is the most", notFix: "LimitNOFILE=1048576"},
		{name: "nofile nr_open raised", mod: func(f *Facts) { f.Limits.Text = limits4096; f.NrOpen.Text = "20000000\n" },
			needs: Needs{ProxyEndpoints: 1000}, check: NameNoFile, status: Warn, want: "hard >= 10001024 (", fix: "LimitNOFILE=10001024", notFix: "nr_open"},
		{name: "nofile nr_open raised, limit set", mod: func(f *Facts) {
			f.Limits.Text, f.NrOpen.Text = limitsText("10001024", "10001024"), "20000000\n"
		}, needs: Needs{ProxyEndpoints: 1000}, check: NameNoFile, status: OK},
		{name: "nofile nr_open unreadable", mod: func(f *Facts) { f.Limits.Text = limits4096; f.NrOpen = Raw{Missing: true} },
			needs: Needs{ProxyEndpoints: 1000}, check: NameNoFile, status: Warn,
			want: "more than fs.nr_open (unreadable: the kernel's default) 1048576", fix: "LimitNOFILE=1048576 in"},
		{name: "nofile nr_open garbage", mod: func(f *Facts) { f.Limits.Text = limits4096; f.NrOpen.Text = "x" },
			needs: Needs{ProxyEndpoints: 1000}, check: NameNoFile, status: Warn, fix: "LimitNOFILE=1048576 in"},
		{name: "nofile nr_open unreadable, need below", mod: func(f *Facts) { f.Limits.Text = limits4096; f.NrOpen = Raw{Err: errors.New("denied")} },
			check: NameNoFile, status: Warn, want: "hard >= 10032 (redis-server: maxclients 10000 + 32)", fix: "LimitNOFILE=10032", notFix: "nr_open"},
		{name: "nofile small nr_open", mod: func(f *Facts) { f.Limits.Text, f.NrOpen.Text = limitsText("20000", "20000"), "20000" },
			needs: Needs{ProxyEndpoints: 3}, check: NameNoFile, status: Warn, want: "hard >= 31024", fix: "lower --proxy-max-clients to 6325 or less", notFix: "LimitNOFILE=20000"},
		{name: "nofile limits unreadable, need above nr_open", mod: func(f *Facts) { f.Limits = Raw{Missing: true} },
			needs: Needs{ProxyEndpoints: 1000}, check: NameNoFile, status: Warn, value: "unreadable", fix: "LimitNOFILE=1048576 in"},
		{name: "nofile no line", mod: func(f *Facts) { f.Limits.Text = "Limit Soft Hard\n" }, check: NameNoFile, status: Warn,
			value: `unreadable: no "Max open files" line`},
		{name: "nofile garbage", mod: func(f *Facts) { f.Limits.Text = limitsText("lots", "more") }, check: NameNoFile, status: Warn,
			value: "unreadable"},

		{name: "file-max ok", needs: Needs{Instances: 100}, check: NameFileMax, status: OK, want: ">= 1003200 (redis-servers: 100 x 10032)"},
		{name: "file-max low", mod: func(f *Facts) { f.FileMax.Text = "100000\n" }, needs: Needs{Instances: 10, ProxyEndpoints: 2},
			check: NameFileMax, status: Warn, value: "100000", want: ">= 121344 (redis-servers: 10 x 10032; proxy: 21024)", fix: "sysctl -w fs.file-max=121344"},

		{name: "somaxconn ok", check: NameSomaxconn, status: OK, value: "4096"},
		{name: "somaxconn exactly 511", mod: func(f *Facts) { f.Somaxconn.Text = "511" }, check: NameSomaxconn, status: OK},
		{name: "somaxconn 128", mod: func(f *Facts) { f.Somaxconn.Text = "128\n" }, check: NameSomaxconn, status: Warn, value: "128",
			want: ">= 511", fix: "sysctl -w net.core.somaxconn=1024"},
		{name: "somaxconn garbage", mod: func(f *Facts) { f.Somaxconn.Text = "x" }, check: NameSomaxconn, status: Warn, value: "x"},

		{name: "redis 7.0", check: NameRedis, status: OK, value: "7.0.15 (/usr/bin/redis-server)", want: ">= 7.0"},
		{name: "redis 7.2", mod: func(f *Facts) { f.Redis.Text = "Redis server v=7.2.4 sha=0" }, check: NameRedis, status: OK, value: "7.2.4"},
		{name: "redis 8", mod: func(f *Facts) { f.Redis.Text = "Redis server v=8.0.0 sha=0" }, check: NameRedis, status: OK, value: "8.0.0"},
		{name: "redis 6.2", mod: func(f *Facts) { f.Redis.Text = "Redis server v=6.2.6 sha=00000000:0 malloc=jemalloc-5.1.0" },
			check: NameRedis, status: Warn, value: "6.2.6 (/usr/bin/redis-server)", fix: "apt-get install redis-server"},
		{name: "redis not found", mod: func(f *Facts) {
			f.RedisPath, f.Redis = "", Raw{Err: errors.New(`exec: "redis-server": executable file not found in $PATH`)}
		}, check: NameRedis, status: Warn, value: "not found: exec: \"redis-server\""},
		{name: "redis fails", mod: func(f *Facts) { f.Redis = Raw{Err: errors.New("exit status 1")} }, check: NameRedis, status: Warn,
			value: "/usr/bin/redis-server --version failed: exit status 1"},
		{name: "redis odd output", mod: func(f *Facts) { f.Redis.Text = "KeyDB 6\n" }, check: NameRedis, status: Warn,
			value: "unexpected --version output \"KeyDB 6\""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := good()
			if c.mod != nil {
				c.mod(&f)
			}
			checks := Evaluate(f, c.needs)
			if len(checks) != 6 {
				t.Fatalf("%d checks", len(checks))
			}
			var got *Check
			for i := range checks {
				if checks[i].Name == c.check {
					got = &checks[i]
				} else if checks[i].Status != OK {
					t.Errorf("unrelated check %s: %+v", checks[i].Name, checks[i])
				}
			}
			if got == nil {
				t.Fatalf("no check %s in %+v", c.check, checks)
			}
			if got.Status != c.status || !strings.Contains(got.Value, c.value) || !strings.Contains(got.Want, c.want) || !strings.Contains(got.Fix, c.fix) ||
				(c.notFix != "" && strings.Contains(got.Fix, c.notFix)) {
				t.Errorf("got %+v\nwant status %s value ~%q want ~%q fix ~%q, not %q", *got, c.status, c.value, c.want, c.fix, c.notFix)
			}
			if got.Status == OK && got.Fix != "" {
				t.Errorf("passing check carries a fix: %+v", *got)
			}
			if got.Status == Warn && (got.Fix == "" || got.Want == "") {
				t.Errorf("warning without fix or want: %+v", *got)
			}
			if strings.Contains(got.Value, "\n") {
				t.Errorf("value spans lines: %q", got.Value)
			}
		})
	}
}

// Whatever the needs, the fix never suggests a LimitNOFILE above fs.nr_open
// without raising fs.nr_open first: systemd would fail to start the unit.
func TestNoFileCappedAtNrOpen(t *testing.T) {
	limitRe := regexp.MustCompile(`LimitNOFILE=(\d+)`)
	for _, nr := range []int64{20000, 65536, 1048576, 4194304} {
		for _, endpoints := range []int{0, 1, 3, 50, 104, 105, 1000, 100000} {
			for _, maxc := range []int{0, 100, 10000, 50000} {
				f := good()
				f.Limits.Text = limits4096
				f.NrOpen.Text = strconv.FormatInt(nr, 10)
				n := Needs{ProxyEndpoints: endpoints, ProxyMaxClients: maxc}
				c := Evaluate(f, n)[2]
				if c.Name != NameNoFile || c.Status != Warn {
					t.Fatalf("%+v: %+v", n, c)
				}
				for _, m := range limitRe.FindAllStringSubmatchIndex(c.Fix, -1) {
					v, _ := strconv.ParseInt(c.Fix[m[2]:m[3]], 10, 64)
					if v > nr && !strings.Contains(c.Fix[:m[0]], "raise fs.nr_open first") {
						t.Errorf("nr_open %d, %+v: LimitNOFILE=%d suggested without raising fs.nr_open: %s", nr, n, v, c.Fix)
					}
				}
				if strings.HasSuffix(c.Fix, ": ") || strings.Contains(c.Fix, " to 0 or less") {
					t.Errorf("nr_open %d, %+v: fix %q", nr, n, c.Fix)
				}
				need := n.processFDs()
				if (need > nr) != strings.Contains(c.Want, "more than fs.nr_open") {
					t.Errorf("nr_open %d, %+v: want %q", nr, n, c.Want)
				}
			}
		}
	}
}

func TestReportOK(t *testing.T) {
	r := Report{Checks: Evaluate(good(), Needs{})}
	if !r.OK() {
		t.Fatalf("good host not OK: %+v", r)
	}
	f := good()
	f.Overcommit.Text = "0"
	if (Report{Checks: Evaluate(f, Needs{})}).OK() {
		t.Fatal("overcommit 0 reported OK")
	}
}

func TestParseRedisVersion(t *testing.T) {
	for _, c := range []struct {
		in           string
		ver          string
		major, minor int
		bad          bool
	}{
		{"Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=ae4d7c971a948f0\n", "7.0.15", 7, 0, false},
		{"Redis server v=6.0.16 sha=00000000:0", "6.0.16", 6, 0, false},
		{"Redis server v=7.2.4\n", "7.2.4", 7, 2, false},
		{"Redis server v=unstable sha=1", "", 0, 0, true},
		{"", "", 0, 0, true},
	} {
		ver, major, minor, err := ParseRedisVersion(c.in)
		if (err != nil) != c.bad || ver != c.ver || major != c.major || minor != c.minor {
			t.Errorf("%q: %q %d %d %v", c.in, ver, major, minor, err)
		}
	}
}

func writeFile(t *testing.T, root, rel, text string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The readers against a fake root: each file read where expected, a
// missing THP file taken as "not available", the real redis-server's
// version read.
func TestReadRoot(t *testing.T) {
	redis, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server not installed: apt-get install redis-server")
	}
	root := t.TempDir()
	writeFile(t, root, FileOvercommit, "0\n")
	writeFile(t, root, FileLimits, limits4096)
	writeFile(t, root, FileFileMax, "9223372036854775807\n")
	writeFile(t, root, FileSomaxconn, "128\n")
	writeFile(t, root, FileNrOpen, "65536\n")
	f := Read(context.Background(), root, redis)
	if f.Overcommit.Text != "0\n" || f.Somaxconn.Text != "128\n" || !strings.Contains(f.Limits.Text, "Max open files") || !f.THP.Missing ||
		f.NrOpen.Text != "65536\n" {
		t.Fatalf("facts: %+v", f)
	}
	if f.RedisPath != redis || f.Redis.Err != nil || !strings.Contains(f.Redis.Text, "v=") {
		t.Fatalf("redis: %q %+v", f.RedisPath, f.Redis)
	}
	rep := Run(context.Background(), root, redis, Needs{Instances: 2})
	status := map[string]string{}
	for _, c := range rep.Checks {
		status[c.Name] = c.Status
	}
	want := map[string]string{NameOvercommit: Warn, NameTHP: OK, NameNoFile: Warn, NameFileMax: OK, NameSomaxconn: Warn, NameRedis: OK}
	for k, v := range want {
		if status[k] != v {
			t.Errorf("%s: %s, want %s (%+v)", k, status[k], v, rep.Checks)
		}
	}
	if rep.OK() {
		t.Fatal("report OK with warnings")
	}
	// fs.nr_open read under the root caps the target.
	if c := Run(context.Background(), root, redis, Needs{ProxyEndpoints: 10}).Checks[2]; !strings.Contains(c.Want, "more than fs.nr_open 65536") ||
		!strings.HasPrefix(c.Fix, "LimitNOFILE=65536 in") {
		t.Fatalf("open files under the root: %+v", c)
	}

	// THP present; a file that cannot be read (a directory) is a warning
	// naming the error, not a crash.
	writeFile(t, root, FileTHP, "[always] madvise never\n")
	if err := os.Remove(filepath.Join(root, FileOvercommit)); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, FileOvercommit), 0o755); err != nil {
		t.Fatal(err)
	}
	f = Read(context.Background(), root, "/nonexistent/redis-server")
	if f.THP.Text != "[always] madvise never\n" || f.Overcommit.Err == nil || f.RedisPath != "" || f.Redis.Err == nil {
		t.Fatalf("facts: %+v", f)
	}
	checks := Evaluate(f, Needs{})
	if checks[0].Status != Warn || !strings.HasPrefix(checks[0].Value, "unreadable: ") || checks[1].Value != "always" || checks[5].Value == "" {
		t.Fatalf("checks: %+v", checks)
	}
}

// On this machine: every check has a value and the real files exist.
func TestReadHost(t *testing.T) {
	rep := Run(context.Background(), "/", "redis-server", Needs{})
	for _, c := range rep.Checks {
		if c.Value == "" || strings.HasPrefix(c.Value, "unreadable") || c.Want == "" {
			t.Errorf("check %+v", c)
		}
	}
}
