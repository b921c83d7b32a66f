#!/usr/bin/env bash
# Installs what Marina needs on a fresh Debian/Ubuntu machine when missing:
# redis-server (and redis-cli) from the distribution's packages.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
# ip (network namespaces) for the partition tests; redis-sentinel for the failover benchmark.
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v redis-sentinel >/dev/null 2>&1 || need+=(redis-sentinel)
# nutcracker (twemproxy) for the proxy benchmark.
command -v nutcracker >/dev/null 2>&1 || need+=(nutcracker)
# chromium (headless) for the console's browser tests; haproxy to check the
# configuration the HAProxy hook writes.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing ${need[*]} with apt-get" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  # Debian's package starts a system redis on 6379; Marina runs its own.
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now redis-server redis-sentinel haproxy >/dev/null 2>&1 || true; fi
fi
command -v go >/dev/null 2>&1 || { echo "Go is required: https://go.dev/doc/install (or /usr/local/go/bin in PATH)" >&2; exit 1; }
