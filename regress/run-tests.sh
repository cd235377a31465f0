#!/bin/sh
# Run every test (or those named on the command line) and end with one line
# "N passed, N failed".  Each test prints TAP-style lines:
#   ok - description
#   not ok - description
#   ok - description # SKIP why
# A test that exits non-zero without printing "not ok" counts one failure.
#
# Environment: OBJ (build directory), SRC (source directory); SFTP_SERVER
# and SCP may point at other binaries (e.g. the stock ones, to watch the
# atomicity tests fail).
set -u
: "${SRC:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${OBJ:=$SRC}"
export SRC OBJ
: "${SFTP_SERVER:=$OBJ/sftp-server}"
: "${SCP:=$OBJ/scp}"
export SFTP_SERVER SCP

# A sanitizer build writes reports to files (programs started by sshd
# have no terminal); any report is a failure of the test that caused it.
SANDIR="$OBJ/regress/work/sanitizer"
if grep -q 'fsanitize' "$OBJ/Makefile" 2>/dev/null; then
	mkdir -p "$SANDIR"
	chmod 1777 "$SANDIR"
	ASAN_OPTIONS="log_path=$SANDIR/asan:detect_leaks=1:verify_asan_link_order=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
	UBSAN_OPTIONS="log_path=$SANDIR/ubsan:print_stacktrace=1:halt_on_error=1"
	export ASAN_OPTIONS UBSAN_OPTIONS
fi

passed=0
failed=0
skipped=0
failures=""
results="$OBJ/regress/work/results"
mkdir -p "$OBJ/regress/work"

list_tests() {
	for t in "$OBJ"/regress/unittests/test_*; do
		case "$t" in *.c|*.o|*.h) continue ;; esac
		[ -x "$t" ] && echo "$t"
	done
	for t in "$SRC"/regress/t-*.sh; do
		[ -f "$t" ] && echo "$t"
	done
}

if [ $# -gt 0 ]; then
	tests=""
	for n in "$@"; do
		for t in $(list_tests); do
			case "$(basename "$t")" in "$n"|"$n".sh|*"$n"*) tests="$tests $t" ;; esac
		done
	done
else
	tests=$(list_tests)
fi

for t in $tests; do
	name=$(basename "$t")
	echo "=== $name"
	case "$t" in
	*.sh) ( cd "$OBJ" && exec bash "$t" ) >"$results.out" 2>&1 ;;
	*) ( cd "$OBJ" && exec "$t" ) >"$results.out" 2>&1 ;;
	esac
	rc=$?
	if [ -d "$SANDIR" ] && [ -n "$(ls -A "$SANDIR" 2>/dev/null)" ]; then
		for r in "$SANDIR"/*; do
			echo "# sanitizer report $r:"
			sed 's/^/#   /' "$r" | head -60
			echo "not ok - $name: sanitizer report $(basename "$r")"
		done >>"$results.out"
		rm -f "$SANDIR"/*
	fi
	cat "$results.out"
	p=$(grep -c '^ok ' "$results.out")
	s=$(grep -c '^ok .*# SKIP' "$results.out")
	f=$(grep -c '^not ok ' "$results.out")
	p=$((p - s))
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1
		echo "not ok - $name exited with status $rc"
	fi
	if [ "$f" -gt 0 ]; then
		failures="$failures $name"
	fi
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + s))
done
rm -f "$results.out"
echo "==="
[ -n "$failures" ] && echo "failing:$failures"
[ "$skipped" -gt 0 ] && echo "$skipped skipped"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
