#!/bin/sh
# Kernel benchmark: ../shared/bench/kernel_bench.py for the cellbox kernel and
# for ipykernel (kernelspec python3) in the same run, then a table of ratios.
#
#   sh bench/kernel/run.sh [OUTDIR] [ROUNDS]
#
# Uses the built ./cellbox through a temporary kernelspec (no install needed).
# Each round runs both kernels back to back; the table takes the median over
# rounds of each metric, and the ratio of those medians.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=${BENCH:-$ROOT/../shared/bench}
OUT=${1:-$ROOT/bench/out/kernel}
ROUNDS=${2:-2}
CASES=${CASES:-startup,exec_pass,exec_expr,complete,stream,memory}
ARGS=${KB_ARGS:---n 2000 --starts 10 --reps 3}
mkdir -p "$OUT"
JP=$(mktemp -d)
trap 'rm -rf "$JP"' EXIT
"$ROOT/cellbox" kernelspec install --prefix "$JP" >/dev/null
export JUPYTER_PATH="$JP/share/jupyter"
rm -f "$OUT/kernel.jsonl"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    for k in python3 cellbox; do
        echo "== round $r: $k"
        /usr/bin/python3 "$BENCH/kernel_bench.py" --kernel "$k" --cases "$CASES" $ARGS \
            --jsonl "$OUT/kernel.jsonl" > "$OUT/$k-r$r.txt" 2> "$OUT/$k-r$r.log" || echo "   exit $? (see $OUT/$k-r$r.log)"
    done
    r=$((r + 1))
done
/usr/bin/python3 "$ROOT/bench/ratios.py" "$OUT/kernel.jsonl" python3 cellbox | tee "$OUT/table.md"
