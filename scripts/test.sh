#!/usr/bin/env bash
# The test command: unit tests, golden transcripts, property tests and the integration suite.
# PostgreSQL tests run when LEADBOT_TEST_POSTGRES points at a server (each test creates and
# drops its own database); without it they are reported as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked "$@"
