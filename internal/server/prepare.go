package server

import (
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"

	"github.com/marina-redis/marina/internal/doctor"
	"github.com/marina-redis/marina/internal/state"
)

// Prepare does the I/O a configuration needs once Validate has accepted it,
// before a node starts: it reads the host's RAM when Memory is 0, finds the
// redis-server binary and checks its version, loads the endpoints' TLS key
// pair, checks the hooks' shell and HAProxy directory, and creates the data
// directory. Errors say what to fix.
func (c *Config) Prepare() error {
	if c.Memory == 0 {
		c.Memory = DefaultMemory()
		if c.Memory < state.MinMemory {
			return fmt.Errorf("--memory %d: must be at least 1MiB", c.Memory)
		}
	}
	if c.ProxyTLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.ProxyTLSCert, c.ProxyTLSKey)
		if err != nil {
			return fmt.Errorf("--proxy-tls-cert/--proxy-tls-key: %v", err)
		}
		c.proxyTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if c.APITLSCert != "" {
		op, err := operatorCert(c.APITLSCert, c.APITLSKey)
		if err != nil {
			return err
		}
		c.apiCert = op
	}
	if c.RedisServer == "" {
		c.RedisServer = "redis-server"
	}
	path, err := exec.LookPath(c.RedisServer)
	if err != nil {
		return fmt.Errorf("--redis-server %q not found: install redis-server (apt-get install redis-server) or pass its path", c.RedisServer)
	}
	c.RedisServer = path
	if err := checkRedisVersion(path); err != nil {
		return err
	}
	if err := c.hooks().Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return fmt.Errorf("--data %s: %w", c.DataDir, err)
	}
	return nil
}

// checkRedisVersion refuses redis-server older than 7.0: the rendered
// config (appenddirname, ACL users) and multi-key CONFIG GET need it.
func checkRedisVersion(path string) error {
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		return fmt.Errorf("%s --version: %v", path, err)
	}
	_, major, minor, err := doctor.ParseRedisVersion(string(out))
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	if major < doctor.MinRedisMajor || (major == doctor.MinRedisMajor && minor < doctor.MinRedisMinor) {
		return fmt.Errorf("%s is redis %d.%d: Marina needs redis-server %d.%d or later", path, major, minor, doctor.MinRedisMajor, doctor.MinRedisMinor)
	}
	return nil
}
