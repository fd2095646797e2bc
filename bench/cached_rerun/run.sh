#!/usr/bin/env bash
# Issue #13's cached rerun, side by side: a first `python run.py --data DATA` on a fresh ZenML
# store, then the identical rerun (served from the cache), for an older revision and for this
# checkout, interleaved round by round. Prints each round's seconds, ratio and load average,
# then the medians. The goal: the rerun in under half the first run's time.
#
#   bench/cached_rerun/run.sh                          # 4 rounds, HEAD~1 against the work tree
#   bench/cached_rerun/run.sh 6 74aea06 ../shared/data/ml-100k
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
rounds=${1:-4}
before_rev=${2:-HEAD~1}
data=$(realpath "${3:-$root/../shared/data/ml-100k}")
python=$root/.venv/bin/python
work=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$work/before" >/dev/null 2>&1; rm -rf "$work"' EXIT
git -C "$root" worktree add -q --detach "$work/before" "$before_rev"
export ZENML_ANALYTICS_OPT_IN=false BENTOML_DO_NOT_TRACK=true
echo "machine: $(nproc) cores, $(uname -m); before = $before_rev, after = the work tree; data $data"
for round in $(seq "$rounds"); do
    for side in before after; do
        if [ "$side" = before ]; then dir=$work/before; else dir=$root; fi
        state=$work/state-$side
        rm -rf "$state"
        export ZENML_CONFIG_PATH=$state/zenml BENTOML_HOME=$state/bentoml \
            WALSREC_STATE_DIR=$state/walsrec WALSREC_CACHE_DIR=$state/cache
        load=$(cut -d' ' -f1-3 /proc/loadavg)
        t0=$(date +%s.%N)
        (cd "$dir" && "$python" run.py --data "$data" >"$work/$side-first.log" 2>&1)
        t1=$(date +%s.%N)
        (cd "$dir" && "$python" run.py --data "$data" >"$work/$side-second.log" 2>&1)
        t2=$(date +%s.%N)
        grep -q "From the cache" "$work/$side-second.log" || echo "warning: $side rerun not cached"
        echo "$round $side $t0 $t1 $t2 $load"
    done
done | tee "$work/rounds.txt" | awk '
    /^warning/ { print; next }
    { first = $4 - $3; cached = $5 - $4
      printf "round %s %-6s first %6.2f s  cached %5.2f s  ratio %.3f  load %s %s %s\n",
             $1, $2, first, cached, cached / first, $6, $7, $8 }'
"$python" - "$work/rounds.txt" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]) if not line.startswith("warning")]
for side in ("before", "after"):
    mine = [r for r in rows if r[1] == side]
    first = [float(r[3]) - float(r[2]) for r in mine]
    cached = [float(r[4]) - float(r[3]) for r in mine]
    ratios = [c / f for c, f in zip(cached, first)]
    print(f"median {side:6}: first {statistics.median(first):.2f} s, cached "
          f"{statistics.median(cached):.2f} s, ratio {statistics.median(ratios):.3f}")
PY
