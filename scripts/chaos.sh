#!/usr/bin/env bash
# The full chaos run, too slow for CI: 200 simulated prospects go through the shipped dialogue while
# the real `leadbot` binary is killed with SIGKILL 25 times at random moments and restarted; then
# every answer must be stored once and nothing lost. Runs on SQLite, and on PostgreSQL when
# LEADBOT_TEST_POSTGRES is set. Prints the seed (replay with LEADBOT_CHAOS_SEED=...) and the
# duplicate count.
#
# Two rounds: prospects answering at once (the bot saturated, a crowd of sends in flight at every
# kill), then answering after 0.5-3 s as people do (LEADBOT_CHAOS_THINK_MS).
#
#   scripts/chaos.sh                 # the full run, both rounds
#   LEADBOT_CHAOS_KILLS=50 scripts/chaos.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export LEADBOT_CHAOS_FULL=1
cargo test --locked --test it chaos:: -- --nocapture --test-threads=1 "$@"
LEADBOT_CHAOS_THINK_MS="${LEADBOT_CHAOS_THINK_MS:-500-3000}" \
  cargo test --locked --test it chaos:: -- --nocapture --test-threads=1 "$@"
