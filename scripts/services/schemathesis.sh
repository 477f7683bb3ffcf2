#!/usr/bin/env bash
# Schemathesis (API fuzzing from the OpenAPI document) for tests/tests/api_fuzz.rs,
# in its own virtualenv under ${CRONSUN_CACHE:-~/.cache/cronsun}. Run:
#   scripts/services/schemathesis.sh install   # once; cached, idempotent
#   scripts/services/schemathesis.sh path      # prints the `st` binary's path
set -euo pipefail

ST_VERSION=4.32.5
ST_VENV="${CRONSUN_CACHE:-$HOME/.cache/cronsun}/schemathesis-$ST_VERSION"

case "${1:-}" in
  install)
    if [ -x "$ST_VENV/bin/st" ]; then exit 0; fi
    echo "schemathesis.sh: installing schemathesis $ST_VERSION into $ST_VENV" >&2
    python3 -m venv "$ST_VENV"
    "$ST_VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$ST_VERSION"
    ;;
  path) echo "$ST_VENV/bin/st" ;;
  *) echo "usage: $0 install|path" >&2; exit 2 ;;
esac
