#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (default 60 s each) and stops at the first crash.
# A crash is saved under fuzz/artifacts/<target>/; replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>
# and turn it into a unit test next to the code it broke.
#
#   scripts/fuzz.sh          # 60 s per target
#   scripts/fuzz.sh 600      # 10 min per target
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); libFuzzer needs nightly compiler features, which
# RUSTC_BOOTSTRAP=1 enables on the stable toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
    exit 1
fi
export RUSTC_BOOTSTRAP=1
targets=$(cd fuzz && cargo fuzz list)
# Seed corpora: the shipped dialogues and the check fixtures, and fuzz/seeds/<target>/ (updates as
# Telegram sends them, button data, conditions).
mkdir -p fuzz/corpus/dialogue_compile
cp dialogues/*.yaml tests/fixtures/check/*.yaml fuzz/corpus/dialogue_compile/ 2>/dev/null || true
for seeds in fuzz/seeds/*/; do
    target=$(basename "$seeds")
    mkdir -p "fuzz/corpus/$target"
    cp "$seeds"* "fuzz/corpus/$target/"
done
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for target in $targets; do
    echo "== $target (${seconds}s)"
    if ! (cd fuzz && cargo fuzz run "$target" -O -- -max_total_time="$seconds" -max_len=8192 \
        -rss_limit_mb=2048 -print_final_stats=1) >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "crash found in $target: see fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E "^(Done|stat::number_of_executed_units)" "$log" || true
done
echo "fuzzing found nothing in ${seconds}s per target"
