#!/usr/bin/env bash
# Benchmarks leadbot (SQLite and PostgreSQL) against its peers on one fake Bot API and rewrites
# BENCHMARKS.md at the repository root.
#
#   bench/run.sh            full run (30 s per phase; about 10 minutes)
#   bench/run.sh --quick    smoke run (a few seconds per phase)
#   bench/run.sh --soak     1,000,000 steps through one leadbot process; RSS at start and end
#
# Other arguments go to the harness (bench/harness): --duration SECS, --prospects N, --offered RATE,
# --seed-leads N, --only leadbot-sqlite,teloxide-echo,... , --pg URL.
# Environment: CARGO_TARGET_DIR (leadbot's build), BENCH_TARGET_DIR (harness and Rust peers),
# BENCH_VENV (the aiogram virtualenv), BENCH_PG (admin URL of PostgreSQL; a fresh database is created
# and dropped per run).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
main_target="${CARGO_TARGET_DIR:-$repo/target}"
extra_target="${BENCH_TARGET_DIR:-$repo/bench/target}"
venv="${BENCH_VENV:-$repo/bench/.venv}"
pg="${BENCH_PG:-postgres://postgres@127.0.0.1:5432/postgres}"

command="bench/run.sh"
for a in "$@"; do command+=" $a"; done

echo "building leadbot (the dist profile: release with whole-program optimisation)..." >&2
CARGO_TARGET_DIR="$main_target" cargo build --profile dist --locked --quiet
echo "building the harness and the Rust peers (release)..." >&2
for pkg in bench/harness bench/peers/echo bench/peers/dialogue; do
  CARGO_TARGET_DIR="$extra_target" cargo build --release --locked --quiet --manifest-path "$pkg/Cargo.toml"
done

aiogram_args=()
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import aiogram' 2>/dev/null; then
  echo "setting up the aiogram peer's virtualenv in $venv..." >&2
  if python3 -m venv "$venv" && "$venv/bin/pip" install --quiet -r bench/peers/aiogram/requirements.txt; then
    :
  else
    echo "warning: the aiogram peer could not be installed; it is reported as not measured" >&2
  fi
fi
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import aiogram' 2>/dev/null; then
  aiogram_args=(--aiogram-python "$venv/bin/python" --aiogram-script "$repo/bench/peers/aiogram/bot.py")
fi

ulimit -n 65536 2>/dev/null || true
exec "$extra_target/release/leadbot-bench" \
  --repo "$repo" \
  --leadbot "$main_target/dist/leadbot" \
  --echo "$extra_target/release/peer-echo" \
  --dialogue "$extra_target/release/peer-dialogue" \
  "${aiogram_args[@]}" \
  --pg "$pg" \
  --out "$repo/BENCHMARKS.md" \
  --command "$command" \
  "$@"
