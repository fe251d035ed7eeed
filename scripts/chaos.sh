#!/usr/bin/env bash
# The full chaos run, too slow for CI: 200 simulated prospects go through the shipped dialogue while
# the real `leadbot` binary (the release build, as shipped) is killed with SIGKILL 25 times at random
# moments and restarted; then every answer must be stored once and nothing lost. Runs on SQLite, and
# on PostgreSQL when LEADBOT_TEST_POSTGRES is set. Prints the seed (replay with LEADBOT_CHAOS_SEED=...)
# and the duplicate count.
#
# Two rounds: prospects answering at once (the bot saturated, a crowd of sends in flight at every
# kill, each kill right after a call the fake answered), then answering 0.5-3 s after each question
# as people do, with kills at random times (LEADBOT_CHAOS_THINK_MS).
#
#   scripts/chaos.sh                 # the full run, both rounds
#   LEADBOT_CHAOS_KILLS=50 scripts/chaos.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
export LEADBOT_CHAOS_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/leadbot"
export LEADBOT_CHAOS_FULL=1
cargo test --locked --test it chaos:: -- --nocapture --test-threads=1 "$@"
LEADBOT_CHAOS_THINK_MS="${LEADBOT_CHAOS_THINK_MS:-500-3000}" \
  cargo test --locked --test it chaos:: -- --nocapture --test-threads=1 "$@"
