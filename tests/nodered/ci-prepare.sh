#!/usr/bin/env bash
# Prepares the Node-RED test (tests/test_nodered.py); idempotent, quick when everything is there.
# Node-RED comes from npm at the version pinned in package-lock.json (4.1: Node-RED 5 needs Node 22).
#   tests/nodered/ci-prepare.sh
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v npm >/dev/null 2>&1; then
  echo "ci-prepare: node/npm are missing (apt-get install nodejs npm)" >&2
  exit 1
fi
stamp="node_modules/.facecast-$(sha1sum package-lock.json | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  npm ci --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi
echo "ci-prepare: Node-RED test ready (node $(node --version), node-red $(node -p 'require("node-red/package.json").version'))"
