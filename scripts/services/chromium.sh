#!/usr/bin/env bash
# Debian Chromium + playwright-core for the browser tests (tests/browser).
# Idempotent: installs only what is missing.
#   scripts/services/chromium.sh install
set -euo pipefail
cd "$(dirname "$0")/../.."

chromium_install() {
  # fonts-wqy-zenhei: CJK glyphs, so the Chinese pages' screenshots are readable.
  local need=()
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  [ -e /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || need+=(fonts-wqy-zenhei)
  if [ ${#need[@]} -gt 0 ]; then
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  fi
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
  fi
  # playwright-core only: it never downloads a browser; the tests use /usr/bin/chromium.
  local stamp=tests/browser/node_modules/.cronsun-lock
  if ! cmp -s tests/browser/package-lock.json "$stamp" 2>/dev/null; then
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
    cp tests/browser/package-lock.json "$stamp"
  fi
}

case "${1:-install}" in
  install) chromium_install ;;
  *) echo "usage: $0 install" >&2; exit 2 ;;
esac
