#!/usr/bin/env bash
# Prepares the dashboard's real-browser test (tests/test_dashboard_browser.py); idempotent, quick
# when everything is there. Debian's chromium is the browser (Playwright never downloads one), and
# playwright-core comes from npm at the version pinned in package-lock.json.
#   tests/browser/ci-prepare.sh        (root installs chromium with apt-get when it is missing)
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
  else
    echo "ci-prepare: chromium is missing (apt-get install chromium)" >&2
    exit 1
  fi
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "ci-prepare: node/npm are missing (apt-get install nodejs npm)" >&2
  exit 1
fi
stamp="node_modules/.facecast-$(sha1sum package-lock.json | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi
echo "ci-prepare: browser test ready ($(chromium --version 2>/dev/null | head -1), playwright-core $(node -p 'require("playwright-core/package.json").version'))"
