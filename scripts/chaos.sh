#!/usr/bin/env bash
# The full chaos run, too slow for CI: 200 simulated prospects go through the shipped dialogue while
# the real `leadbot` binary is killed with SIGKILL 25 times at random moments and restarted; then
# every answer must be stored once and nothing lost. Runs on SQLite, and on PostgreSQL when
# LEADBOT_TEST_POSTGRES is set. Prints the seed (replay with LEADBOT_CHAOS_SEED=...) and the
# duplicate count.
#
#   scripts/chaos.sh                 # the full run
#   LEADBOT_CHAOS_KILLS=50 scripts/chaos.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export LEADBOT_CHAOS_FULL=1
cargo test --locked --test it chaos:: -- --nocapture --test-threads=1 "$@"
