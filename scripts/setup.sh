#!/usr/bin/env bash
# Installs what building and testing cronsun needs on a fresh Debian machine
# of this kind (idempotent; quiet when everything is present).
set -euo pipefail

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
command -v pip >/dev/null 2>&1 || command -v pip3 >/dev/null 2>&1 || need_apt+=(python3-pip)
# Package checks: `systemd-analyze verify` of the unit, `rpm -qlp` of the .rpm.
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v rpm >/dev/null 2>&1 || need_apt+=(rpm)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust with rustup (https://rustup.rs) and re-run" >&2
  exit 1
fi
if command -v rustup >/dev/null 2>&1; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
fi
