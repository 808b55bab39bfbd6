#!/usr/bin/env bash
# Installs the Debian packages Faultline needs, idempotently: `run` (what `npm start` uses)
# only what the agent probes with; `test` (the default) also the real servers, Prometheus,
# Alertmanager, blackbox_exporter and Chromium the tests and benchmarks start.
# Skips apt entirely when everything is already there, so a warm machine pays nothing.
set -euo pipefail

mode="${1:-test}"
packages=(iputils-ping fping)
case "$mode" in
  run) ;;
  test)
    packages+=(
      iproute2 nftables dnsmasq-base
      postgresql redis-server mariadb-server
      openssl tcpdump procps ethtool prometheus prometheus-alertmanager systemd
      prometheus-blackbox-exporter nats-server
      chromium
    )
    ;;
  *)
    echo "faultline: install-system-deps.sh: expected run or test (actual: $mode)" >&2
    exit 2
    ;;
esac

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "faultline: these Debian packages are needed and missing: ${missing[*]}" >&2
  echo "faultline: run this script as root (or install them with apt-get) and try again" >&2
  exit 1
fi
echo "faultline: installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Daemons from these packages must not start on install: tests start their own instances.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
fi
trap '[[ $created_policy == 1 ]] && rm -f "$policy"' EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
