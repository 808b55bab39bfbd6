#!/usr/bin/env bash
# Installs the npm dependencies from the lockfile unless they are already in place.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=node_modules/.faultline-lock-hash
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
echo "$want" >"$stamp"
