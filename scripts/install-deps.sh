#!/usr/bin/env bash
# Installs what building, testing and running Skiff needs on Debian, from Debian's
# packages:
#   - build: a C toolchain (SQLite is compiled in), protoc (etcd's and CRI's gRPC
#     APIs are generated at build time);
#   - tests: etcd (the HA datastore; the tests start their own members on loopback
#     ports);
#   - a node: containerd, runc and the CNI plugins (containers), busybox-static,
#     umoci and skopeo (`skiff images build` makes the pause and busybox images
#     from them, no registry needed), nftables, iproute2 and conntrack (pod networking and the
#     service proxy).
# Safe to run again: it installs only what is missing, and says nothing when
# nothing is.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# installed PACKAGE: whether dpkg has it installed.
installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

need=()
command -v gcc >/dev/null || need+=(build-essential)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v curl >/dev/null || need+=(curl)
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v etcd >/dev/null || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)
for pkg in containerd runc containernetworking-plugins busybox-static umoci skopeo nftables iproute2 conntrack; do
  installed "$pkg" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install Rust from https://rustup.rs, then run this again" >&2
  exit 1
fi
echo "dependencies ready: $(protoc --version), etcd $(etcd --version | head -1 | awk '{print $3}'), containerd $(containerd --version | awk '{print $3}')"
