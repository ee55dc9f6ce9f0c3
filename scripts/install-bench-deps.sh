#!/usr/bin/env bash
# Installs the load generator and the reference proxies that `skiff bench net`
# compares against, from Debian's packages:
#   - wrk: the HTTP load generator (without it the benchmark falls back to a
#     smaller built-in one, and says so);
#   - nginx-light (nginx where there is no light flavour): the backends' static
#     server, and the reference Ingress-style reverse proxy;
#   - haproxy: the second reference reverse proxy.
# The benchmark starts each of them itself, with its own configuration files in a
# temporary directory; the Debian services are stopped and disabled here so that
# nothing listens on port 80 behind the benchmark's back.
# Only the benchmarks need these; building and testing Skiff do not (see
# install-deps.sh). Safe to run again: it installs only what is missing.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# installed PACKAGE: whether dpkg has it installed.
installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v haproxy >/dev/null || installed haproxy || need+=(haproxy)
if ! command -v nginx >/dev/null && ! [ -x /usr/sbin/nginx ]; then
  need+=(nginx-light)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  # Debian's packages start their services on install unless told otherwise
  # (policy-rc.d exit 101 = "action forbidden"); the benchmark starts its own.
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee "$policy" >/dev/null
    "${sudo_cmd[@]}" chmod +x "$policy"
    made_policy=1
  fi
  status=0
  if ! "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
    # Newer Debian releases fold nginx-light into nginx.
    if [[ " ${need[*]} " == *" nginx-light "* ]]; then
      need=("${need[@]/nginx-light/nginx}")
      "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || status=$?
    else
      status=1
    fi
  fi
  [ "$made_policy" -eq 0 ] || "${sudo_cmd[@]}" rm -f "$policy"
  [ "$status" -eq 0 ] || exit "$status"
fi
# Where systemd runs, keep the packaged services off (the benchmark never uses them).
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  for unit in nginx haproxy; do
    "${sudo_cmd[@]}" systemctl disable --now "$unit" >/dev/null 2>&1 || true
  done
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
echo "benchmark tools ready: $(wrk --version 2>&1 | head -1 | awk '{print $1, $2}'), $("$nginx_bin" -v 2>&1 | sed 's/.*: //'), $(haproxy -v | head -1 | awk '{print $1, $3}')"
