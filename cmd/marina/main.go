// Command marina is Redis as a Service in one binary: `marina server` on
// every host, `marina up` for a local cluster, and the API client commands.
package main

import (
	"os"

	"github.com/marina-redis/marina/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
