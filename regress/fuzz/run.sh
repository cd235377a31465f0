#!/bin/sh
# Run each libFuzzer harness for a while from its seed corpus; one TAP
# line per harness with the number of executions, then "N passed, N
# failed".  Build them first: make fuzz.
#
#   regress/fuzz/run.sh [SECONDS [HARNESS...]]     default 60 s, all
#
# Environment: OBJ (build directory, has regress/fuzz/fuzz_*), SRC
# (sources, has the corpora).  Work, the grown corpus and any crash
# artifacts go to $OBJ/regress/work/fuzz/HARNESS/.
set -u
: "${SRC:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${OBJ:=$SRC}"
secs=${1:-60}
[ $# -gt 0 ] && shift
harnesses=$*
if [ -z "$harnesses" ]; then
	for c in "$SRC"/regress/fuzz/corpus/*/; do
		harnesses="$harnesses $(basename "$c")"
	done
fi

passed=0
failed=0
for h in $harnesses; do
	bin="$OBJ/regress/fuzz/fuzz_$h"
	work="$OBJ/regress/work/fuzz/$h"
	if [ ! -x "$bin" ]; then
		echo "not ok - fuzz $h: no harness at $bin (make fuzz)"
		failed=$((failed + 1))
		continue
	fi
	rm -rf "$work"
	mkdir -p "$work/corpus" "$work/artifacts"
	cp "$SRC/regress/fuzz/corpus/$h/"* "$work/corpus/"
	dict=""
	[ -f "$SRC/regress/fuzz/$h.dict" ] && dict="-dict=$SRC/regress/fuzz/$h.dict"
	( cd "$work" && exec "$bin" -max_total_time="$secs" -timeout=10 \
	    -rss_limit_mb=2048 -print_final_stats=1 $dict \
	    -artifact_prefix="$work/artifacts/" "$work/corpus" ) \
	    >"$work/log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' \
	    "$work/log" | tail -1)
	cov=$(sed -n 's/^#[0-9]*.*DONE *cov: \([0-9]*\).*/\1/p' "$work/log" |
	    tail -1)
	found=$(ls -A "$work/artifacts")
	done_line=$(grep -c '^Done [0-9]* runs' "$work/log")
	if [ "$rc" -eq 0 ] && [ "$done_line" -gt 0 ] && [ -z "$found" ]; then
		echo "ok - fuzz $h: $runs executions in $secs s, coverage ${cov:-?}, corpus $(ls "$work/corpus" | wc -l) inputs"
		passed=$((passed + 1))
	else
		grep -v '^#[0-9]' "$work/log" | tail -60 | sed 's/^/#   /'
		echo "not ok - fuzz $h: exit status $rc after ${runs:-?} executions; artifacts: ${found:-none} (in $work/artifacts)"
		failed=$((failed + 1))
	fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
