#!/usr/bin/env bash
# Install what bench/bench_gateway.py drives besides Python: nginx (the proxy it is compared
# against, and the static upstream), wrk (the load generator) and taskset (pinning). Does nothing
# when they are present, so `make bench` stays quick on a machine that has them.
set -euo pipefail

missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  sudo=(sudo)
fi
echo "ensure-tools: installing ${missing[*]}" >&2
"${sudo[@]}" apt-get -o DPkg::Lock::Timeout=300 update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y "${missing[@]}"
