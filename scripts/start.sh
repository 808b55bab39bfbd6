#!/usr/bin/env bash
# The run command: sets up a fresh machine (Debian packages, npm dependencies, build) and
# runs faultline. With no arguments it runs the main job on embedded defaults; any
# arguments are passed to the faultline CLI instead (e.g. `npm start -- probe tcp db:5432`).
set -euo pipefail
cd "$(dirname "$0")/.."
# The main job needs only what the agent probes with; `faultline demo` builds a lab with
# real servers (PostgreSQL, namespaces, nftables): everything the tests use.
if [[ "${1:-}" == demo ]]; then bash scripts/install-system-deps.sh test; else bash scripts/install-system-deps.sh run; fi
bash scripts/install-node-deps.sh
npm run --silent build
if [[ $# -gt 0 ]]; then
  exec node dist/cli/main.js "$@"
fi
# The main job on embedded defaults: a collector (store in ./faultline-data, a generated
# agent token and viewer token printed once, an inventory of this host) and a local agent
# reporting to it. `node dist/cli/main.js status` from here reads ./faultline-data/viewer-token.
exec node dist/cli/main.js collector --local-agent
