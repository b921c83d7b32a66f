package faulttest

import "github.com/redis/go-redis/v9"

func rcl(addr, pw string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, Password: pw, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
}
