#!/usr/bin/env bash
# Run each fuzz target for a bounded time (default 60 s each), from a copy of its seed corpus,
# and fail on the first crash, printing its input. Used by .ci/run; see fuzzing/README.md.
#   bash fuzzing/ci.sh [SECONDS] [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
python="${2:-python}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

failed=()
for target in request_head frames handshake; do
    mkdir -p "$work/$target" "$work/artifacts-$target"
    cp fuzzing/corpus/"$target"/* "$work/$target/"
    echo "== fuzz_$target for ${seconds}s"
    if ! "$python" "fuzzing/fuzz_$target.py" "$work/$target" \
        -max_total_time="$seconds" -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$work/artifacts-$target/" >"$work/$target.log" 2>&1; then
        tail -n 40 "$work/$target.log"
        for crash in "$work/artifacts-$target"/*; do
            [ -f "$crash" ] && echo "input: $(base64 -w0 "$crash")"
        done
        failed+=("$target")
    else
        grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)' \
            "$work/$target.log" || true
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzzing found crashes in: ${failed[*]}"
    exit 1
fi
echo "fuzzing: no crash in ${seconds}s per target"
