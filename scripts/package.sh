#!/usr/bin/env bash
# Builds the .deb (cargo-deb) and .rpm (cargo-generate-rpm) of cronsun into
# target/debian/ and target/generate-rpm/: release binaries, the unit,
# sysusers/tmpfiles entries, /etc/cronsun/cronsun.toml, man pages and
# completions. Installs the two cargo tools (pinned, --locked) if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

tool() { # tool <cargo subcommand> <crate> <version>
  if ! cargo "$1" --version >/dev/null 2>&1; then
    cargo install --locked "$2" --version "$3"
  fi
}
tool deb cargo-deb 3.8.0
tool generate-rpm cargo-generate-rpm 0.21.1

cargo build --release -p cronsund -p cronsun
target=${CARGO_TARGET_DIR:-target}
docs="$target/package-docs"
rm -rf "$docs"
"$target/release/cronsun" generate-docs "$docs"
"$target/release/cronsund" manpage "$docs"

cargo deb --no-build -p cronsund
cargo generate-rpm -p daemon
ls -1 "$target"/debian/*.deb "$target"/generate-rpm/*.rpm
