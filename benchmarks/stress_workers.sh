#!/usr/bin/env bash
# Find how many stress workers this machine sustains for part 2A (issue 5).
# Usage: benchmarks/stress_workers.sh [RUNS] [N...]   e.g.  benchmarks/stress_workers.sh 300 2 4 8 12
# For each worker count N it runs `raftlab stress -k 2A --runs RUNS --workers N` and prints
# wall time, runs/min and failures (from each run's summary.txt). The highest N with
# 0 failures is the one to document; results depend on other load on the machine.
set -u
runs=${1:-300}; shift || true
counts=${*:-2 4 8}
for n in $counts; do
    out=$(mktemp -d -t stress2a-p$n-XXXX)
    raftlab stress -k 2A --runs "$runs" --workers "$n" --seed 1 --no-live -o "$out" > "$out/stdout.txt" 2>&1
    rc=$?
    echo "workers=$n exit=$rc  $(grep -E '^[0-9]+ of [0-9]+ failed' "$out/summary.txt" | cut -d: -f1)  $(grep -E '^wall time' "$out/summary.txt")"
done
