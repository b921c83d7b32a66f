package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/testutil"
)

// selfSigned returns a server certificate for ip and a pool trusting it.
func selfSigned(t *testing.T, ip string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "marina test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP(ip)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

func TestTLSEndpoint(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	onEngines(t, host, func(t *testing.T, e *endpoint) {
		if !e.tls {
			t.Skip("a TLS endpoint")
		}
		b0, b1 := backend(t, host), backend(t, host)
		d := e.listen(t, Route{Name: "tls", Addr: host + ":0", Password: testPW, Secret: proxySecret,
			Shards: []ShardRoute{{Index: 0, SlotStart: 0, SlotEnd: 8191, Master: b0}, {Index: 1, SlotStart: 8192, SlotEnd: 16383, Master: b1}}})
		ctx := context.Background()
		c := e.client(t, d)
		if err := c.MSet(ctx, "a", 1, "b", 2, "c", 3).Err(); err != nil {
			t.Fatal(err)
		}
		if v, err := c.MGet(ctx, "a", "b", "c").Result(); err != nil || len(v) != 3 || v[2] != "3" {
			t.Fatalf("MGET over TLS: %v %v", v, err)
		}
		// A client without TLS gets no answer.
		plain := redis.NewClient(&redis.Options{Addr: d.Addr(), Password: testPW, Protocol: 2, DisableIdentity: true,
			ReadTimeout: 500 * time.Millisecond, DialTimeout: 500 * time.Millisecond, MaxRetries: -1})
		defer plain.Close()
		if err := plain.Ping(ctx).Err(); err == nil {
			t.Fatal("a plain client was served by a TLS endpoint")
		}
	})
}

// A TLS endpoint has every feature of a plaintext one, on either engine:
// transactions with WATCH, blocking commands, pub/sub on a single-shard
// database, and durability replicated.
func TestTLSEndpointHasEveryFeature(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	onEngines(t, host, func(t *testing.T, e *endpoint) {
		if !e.tls {
			t.Skip("a TLS endpoint")
		}
		master := backend(t, host)
		replica := backend(t, host)
		rc := direct(replica)
		defer rc.Close()
		ctx := context.Background()
		mh, mp, _ := net.SplitHostPort(master)
		admin := redis.NewClient(&redis.Options{Addr: replica, Username: "marina", Password: testSecret, Protocol: 2, DisableIdentity: true})
		defer admin.Close()
		if err := admin.SlaveOf(ctx, mh, mp).Err(); err != nil {
			t.Fatal(err)
		}
		listen := func(replicated bool) *DB {
			return e.listen(t, Route{Name: "tls", Addr: host + ":0", Password: testPW, Secret: proxySecret, Replicated: replicated, WaitTimeout: 2 * time.Second,
				Shards: []ShardRoute{{Index: 0, SlotStart: 0, SlotEnd: 16383, Master: master, Replicas: []string{replica}}}})
		}
		clientOf := func(d *DB) *redis.Client {
			return redis.NewClient(e.options(&redis.Options{Addr: d.Addr(), Password: testPW, Protocol: 2, DisableIdentity: true, MaxRetries: -1}))
		}
		// Durability replicated: acknowledged once the replica has it.
		rep := clientOf(listen(true))
		defer rep.Close()
		testutil.WaitFor(t, 10*time.Second, "a replicated write over TLS", func() error { return rep.Set(ctx, "k", "v", 0).Err() })
		if v, err := rc.Get(ctx, "k").Result(); err != nil || v != "v" {
			t.Fatalf("replica after an acknowledged write: %q %v", v, err)
		}
		d := listen(false)
		newClient := func() *redis.Client { return clientOf(d) }
		c := newClient()
		defer c.Close()
		// WATCH/MULTI/EXEC.
		err := c.Watch(ctx, func(tx *redis.Tx) error {
			_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Incr(ctx, "counter")
				return nil
			})
			return err
		}, "counter")
		if err != nil {
			t.Fatalf("WATCH/MULTI over TLS: %v", err)
		}
		// Blocking: BLPOP answered by another client's push.
		got := make(chan []string, 1)
		go func() {
			b := newClient()
			defer b.Close()
			v, _ := b.BLPop(ctx, 5*time.Second, "queue").Result()
			got <- v
		}()
		// Pub/sub.
		sub := newClient()
		defer sub.Close()
		ps := sub.Subscribe(ctx, "news")
		defer ps.Close()
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 5*time.Second, "the BLPOP answered", func() error {
			if err := c.RPush(ctx, "queue", "job").Err(); err != nil {
				return err
			}
			select {
			case v := <-got:
				if len(v) != 2 || v[1] != "job" {
					t.Fatalf("BLPOP over TLS: %v", v)
				}
				return nil
			case <-time.After(100 * time.Millisecond):
				return fmt.Errorf("not yet")
			}
		})
		if err := c.Publish(ctx, "news", "hello").Err(); err != nil {
			t.Fatal(err)
		}
		m, err := ps.ReceiveMessage(ctx)
		if err != nil || m.Payload != "hello" {
			t.Fatalf("pub/sub over TLS: %v %v", m, err)
		}
	})
}
