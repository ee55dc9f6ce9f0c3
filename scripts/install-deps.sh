#!/usr/bin/env bash
# Installs what building and testing Skiff needs on Debian, from Debian's packages:
# a C toolchain (SQLite is compiled in), protoc (etcd's gRPC API is generated at
# build time), and etcd (the HA datastore; the tests start their own members on
# loopback ports). Safe to run again: it installs only what is missing.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
command -v gcc >/dev/null || need+=(build-essential)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v curl >/dev/null || need+=(curl)
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v etcd >/dev/null || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install Rust from https://rustup.rs, then run this again" >&2
  exit 1
fi
echo "dependencies ready: $(protoc --version), etcd $(etcd --version | head -1 | awk '{print $3}')"
