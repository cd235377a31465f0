#!/bin/bash
# Run every test: the README's test command, and what CI runs.
#
#   contrib/test.sh            two builds, each followed by `make check`:
#                              warnings as errors, then ASan+UBSan
#   contrib/test.sh --quick    only the first build
#   contrib/test.sh TEST...    only the named tests (both builds)
#
# Needs root on Debian 12 (installs packages, starts a throwaway sshd on
# 127.0.0.1, creates the unprivileged test user).  The last line is the
# total over both builds: "N passed, N failed".
set -u
cd "$(dirname "$0")/.." || exit 1
top=$(pwd)
quick=0
if [ "${1:-}" = "--quick" ]; then quick=1; shift; fi

sh contrib/install-deps.sh || { echo "0 passed, 1 failed"; exit 1; }

total_pass=0
total_fail=0
summaries=""

# run_build NAME CONFIGURE-ARGS: out-of-source copy, build, make check.
run_build() {
	local name=$1 args=$2 dir log line p f
	dir="$top/.build-$name"
	log="$dir.log"
	echo "##### build $name: ./configure $args"
	rm -rf "$dir"
	mkdir -p "$dir"
	# A copy, not VPATH: tests write into the tree they run from.
	git ls-files -z 2>/dev/null | tar -C "$top" --null -T - -cf - 2>/dev/null |
	    tar -C "$dir" -xf - || cp -a "$top"/. "$dir"/
	if ! ( cd "$dir" && autoreconf -fi >/dev/null 2>&1 &&
	    ./configure $args >/dev/null && make -j2 >"$log" 2>&1 ); then
		tail -40 "$log"
		echo "build $name FAILED"
		total_fail=$((total_fail + 1))
		summaries="$summaries
$name: build failed"
		return
	fi
	( cd "$dir" && make -s check TESTS="${TESTS_SELECTED:-}" ) 2>&1 | tee "$log.check"
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log.check" | tail -1)
	if [ -z "$line" ]; then
		total_fail=$((total_fail + 1))
		summaries="$summaries
$name: no summary line"
		return
	fi
	p=${line%% passed*}
	f=${line#*, }; f=${f%% failed}
	total_pass=$((total_pass + p))
	total_fail=$((total_fail + f))
	summaries="$summaries
$name: $line"
}

TESTS_SELECTED="$*"
export TESTS_SELECTED
run_build werror "--enable-werror"
if [ "$quick" -eq 0 ]; then
	# Sanitizer reports from programs started by sshd land in files;
	# run-tests.sh counts any such file as a failure.
	run_build sanitizers "--enable-werror --enable-sanitizers"
fi
echo "#####$summaries"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
