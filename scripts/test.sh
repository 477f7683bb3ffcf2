#!/usr/bin/env bash
# Runs every check and test of cronsun: formatting, lints, unit, property
# and end-to-end tests (real binaries, real processes, real signals).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/services/ferretdb.sh install
./scripts/services/chromium.sh install
./scripts/services/schemathesis.sh install
./scripts/services/etcd.sh install
./scripts/services/netns.sh install
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
status=0
cargo test --workspace --no-fail-fast -- --nocapture >target/test.log 2>&1 || status=$?
grep -E "^(test result|running|test .* FAILED|failures:)|panicked" target/test.log || true
if [ "$status" != 0 ]; then
  echo "tests failed (exit $status); full log in target/test.log" >&2
  exit "$status"
fi
# Packages and their install smoke test (root with dpkg only: it installs and purges the .deb on this host).
if [ "$(id -u)" = 0 ] && command -v dpkg >/dev/null && [ -z "${CRONSUN_SKIP_PACKAGE_TESTS:-}" ]; then ./scripts/package.sh && CRONSUN_PACKAGE_TESTS=1 cargo test -p cronsun-tests --test package_install -- --nocapture --test-threads=1; fi
