#!/usr/bin/env bash
# The test command: sets up everything the tests need on a fresh machine, then runs the
# type check, lint, format check and the whole vitest suite. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-system-deps.sh
bash scripts/install-node-deps.sh
# The ICMP socket addon must build here: its tests (probes/icmp/socket.test.ts) need it.
FAULTLINE_NATIVE=required npm run --silent build
npm run --silent typecheck
npx --no-install eslint .
npx --no-install prettier --check . >/dev/null || { npx --no-install prettier --list-different .; echo "prettier: the files above need 'npm run format'" >&2; exit 1; }
npx --no-install vitest run "$@"
