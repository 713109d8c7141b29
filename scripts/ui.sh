#!/usr/bin/env bash
# Front-end tasks with the packages from package-lock.json (no CDN, nothing
# fetched at run time):  scripts/ui.sh build | test | check
set -euo pipefail
cd "$(dirname "$0")/../ui"
# Install only when the lock file changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
case "${1:-build}" in
  build) npx vite build --logLevel warn ;;
  test) npx vitest run ;;
  check) npx svelte-check --tsconfig ./tsconfig.json --fail-on-warnings ;;
  *) echo "usage: scripts/ui.sh build|test|check" >&2; exit 2 ;;
esac
