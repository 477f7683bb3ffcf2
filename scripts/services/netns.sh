#!/usr/bin/env bash
# Network namespaces for cronsun's multi-host test (tests/tests/cluster_netns.rs):
# `ip` (iproute2) makes namespaces, veth pairs and a bridge; `nsenter`
# (util-linux) runs each daemon inside its namespace. Run:
#   scripts/services/netns.sh install   # apt-get install once (idempotent)
# The test makes and removes everything itself (tests/src/netns.rs); it needs
# root and skips, saying why, where namespaces cannot be made.
set -euo pipefail
# shellcheck source=scripts/services/apt.sh
. "$(dirname "$0")/apt.sh"

netns_install() {
  local missing=()
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  command -v nsenter >/dev/null 2>&1 || missing+=(util-linux)
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "netns.sh: missing ${missing[*]} (the namespace test will skip); as root: apt-get install -y ${missing[*]}" >&2
    return 0
  fi
  echo "netns.sh: installing ${missing[*]}" >&2
  apt_install "${missing[@]}"
}

case "${1:-install}" in
  install) netns_install ;;
  *) echo "usage: $0 install" >&2; exit 2 ;;
esac
