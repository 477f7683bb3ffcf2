#!/usr/bin/env bash
# etcd for cronsun's cluster tests and benchmarks, and protoc for building the
# etcd-client crate. Run:
#   scripts/services/etcd.sh install   # apt-get install once (idempotent)
#   scripts/services/etcd.sh path      # prints the etcd binary's path
# The tests' harness (tests/src/etcd.rs) starts etcd itself on free loopback
# ports with its own data dir and stops it by pid; CRONSUN_ETCD names another
# binary (e.g. a newer etcd built with `go install`).
set -euo pipefail
# shellcheck source=scripts/services/apt.sh
. "$(dirname "$0")/apt.sh"

etcd_install() {
  local missing=()
  command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
  command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
  command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
  [ -e /usr/include/google/protobuf/empty.proto ] || missing+=(libprotobuf-dev)
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "etcd.sh: missing ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}" >&2
    return 1
  fi
  echo "etcd.sh: installing ${missing[*]}" >&2
  apt_install "${missing[@]}"
  # The Debian package starts a system etcd on :2379 where systemd runs; the
  # tests never use it (they start their own), so leave it stopped.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now etcd >/dev/null 2>&1 || true
  fi
}

case "${1:-install}" in
  install) etcd_install ;;
  path) command -v "${CRONSUN_ETCD:-etcd}" ;;
  *) echo "usage: $0 install|path" >&2; exit 2 ;;
esac
