#!/usr/bin/env bash
# FerretDB 1.24.2 (MongoDB wire protocol over SQLite) for cronsun's tests and
# benchmarks. Sourced or run:
#   scripts/services/ferretdb.sh install      # go install once, cached
#   scripts/services/ferretdb.sh path         # prints the binary's path
#   scripts/services/ferretdb.sh start DIR    # starts on a free loopback port;
#                                             # prints "PID PORT"; data in DIR
#   scripts/services/ferretdb.sh stop PID
# The binary is cached in ${CRONSUN_CACHE:-~/.cache/cronsun}/bin, so reruns
# are instant; the tests find it there (or via CRONSUN_FERRETDB).
set -euo pipefail

FERRETDB_VERSION=v1.24.2
FERRETDB_BIN_DIR="${CRONSUN_CACHE:-$HOME/.cache/cronsun}/bin"
FERRETDB_BIN="$FERRETDB_BIN_DIR/ferretdb"

ferretdb_install() {
  if [ -x "$FERRETDB_BIN" ]; then
    local have
    have=$("$FERRETDB_BIN" --version 2>/dev/null || true)
    case "$have" in *"version: $FERRETDB_VERSION"*) return 0 ;; esac
  fi
  if ! command -v go >/dev/null 2>&1; then
    echo "ferretdb.sh: go is not installed; install Go >= 1.22 to build FerretDB $FERRETDB_VERSION" >&2
    return 1
  fi
  mkdir -p "$FERRETDB_BIN_DIR"
  echo "ferretdb.sh: building FerretDB $FERRETDB_VERSION (takes a few minutes once)" >&2
  # A plain `go install ...@v1.24.2` builds a binary that panics at start
  # (build/version/version.txt is empty in the module zip, FerretDB issue
  # 4001), so build the same module source with that file written.
  local src tmp
  src=$(cd /tmp && go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  tmp=$(mktemp -d)
  cp -r "$src/." "$tmp/"
  chmod -R u+w "$tmp"
  echo "$FERRETDB_VERSION" >"$tmp/build/version/version.txt"
  (cd "$tmp" && go build -trimpath -o "$FERRETDB_BIN.tmp" ./cmd/ferretdb)
  rm -rf "$tmp"
  mv "$FERRETDB_BIN.tmp" "$FERRETDB_BIN"
  python3 -c 'import pymongo' 2>/dev/null || pip install -q pymongo
}

ferretdb_start() {
  local dir=$1 port
  ferretdb_install
  mkdir -p "$dir"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$FERRETDB_BIN" --handler=sqlite --sqlite-url="file:$dir/" --listen-addr="127.0.0.1:$port" \
    --telemetry=disable --log-level=warn --debug-addr="127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')" >"$dir/ferretdb.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$pid $port"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$dir/ferretdb.log" >&2; return 1; }
    sleep 0.1
  done
  kill "$pid"; echo "ferretdb.sh: FerretDB did not listen on 127.0.0.1:$port within 10 s" >&2; return 1
}

ferretdb_stop() { kill "$1" 2>/dev/null || true; }

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-install}" in
    install) ferretdb_install ;;
    path) ferretdb_install && echo "$FERRETDB_BIN" ;;
    start) ferretdb_start "${2:?usage: ferretdb.sh start DIR}" ;;
    stop) ferretdb_stop "${2:?usage: ferretdb.sh stop PID}" ;;
    *) echo "usage: $0 install|path|start DIR|stop PID" >&2; exit 2 ;;
  esac
fi
