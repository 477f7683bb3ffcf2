#!/usr/bin/env bash
# Builds cronsun and starts cronsund standalone in the foreground with
# conf/dev.toml: state in ./.state, API on http://127.0.0.1:7079.
# Ctrl-C stops it (it drains running runs first).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --bins
mkdir -p .state
# As root, cronsund runs its API and scheduler as the unprivileged user
# `cronsun` (the packages create it); create it here too if it is missing.
if [ "$(id -u)" = 0 ] && ! id cronsun >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /usr/sbin/nologin cronsun
fi
./target/release/cronsund validate --config conf/dev.toml >/dev/null
./target/release/cronsund --config conf/dev.toml &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid' INT TERM
for _ in $(seq 1 100); do
  if curl -fsS http://127.0.0.1:7079/healthz >/dev/null 2>&1; then break; fi
  if ! kill -0 $pid 2>/dev/null; then wait $pid; exit $?; fi
  sleep 0.1
done
cat <<MSG

cronsund is running (pid $pid): state in $PWD/.state
Web UI: http://127.0.0.1:7079/ui/ — user admin, password in
  $PWD/.state/initial-admin-password
Use the CLI with the generated admin token:

  export CRONSUN_URL=http://127.0.0.1:7079
  export CRONSUN_TOKEN_FILE=$PWD/.state/admin.token
  export PATH=$PWD/target/release:\$PATH
  cronsun job apply -f conf/example-jobs.toml
  cronsun job ls
  cronsun run ls
  cronsun cron next "0 2 * * *" --tz Europe/Berlin -n 5

Ctrl-C stops cronsund.
MSG
wait $pid
