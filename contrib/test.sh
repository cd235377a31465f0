#!/bin/bash
# Run every test: the README's test command, and what CI runs.
#
#   contrib/test.sh            two builds, each followed by `make check`:
#                              warnings as errors, then ASan+UBSan (and a
#                              static build for the chroot test); on the
#                              first build also the SFTP end-to-end tests
#                              under valgrind and each libFuzzer harness
#                              for FUZZ_SECONDS (default 60)
#   contrib/test.sh --quick    only the first build's `make check`
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

# The tests run programs as an unprivileged user in this tree: every
# directory above it must let others through (a clone below a 0700
# "mktemp -d" directory does not).  Say so at once, not as forty
# permission failures later.
d=$top
while [ "$d" != / ]; do
	if [ -z "$(find "$d" -maxdepth 0 -perm -o+x)" ]; then
		echo "# $d is not searchable by other users: the tests as the" \
		    "unprivileged user will fail (chmod o+x $d, or clone elsewhere)"
		break
	fi
	d=$(dirname "$d")
done

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
	count_summary "$name" "$log.check"
}

# count_summary NAME OUTPUT: add the output's last "N passed, N failed".
count_summary() {
	local name=$1 out=$2 line p f
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -1)
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

# run_stage NAME BUILD COMMAND...: a further stage in a built tree.
run_stage() {
	local name=$1 dir="$top/.build-$2" out
	shift 2
	out="$top/.build-$name.log"
	echo "##### $name"
	if [ ! -f "$dir/Makefile" ]; then
		echo "not ok - $name: no build in $dir" | tee "$out"
		total_fail=$((total_fail + 1))
		summaries="$summaries
$name: no build"
		return
	fi
	( cd "$dir" && "$@" ) 2>&1 | tee "$out"
	count_summary "$name" "$out"
}

TESTS_SELECTED="$*"
export TESTS_SELECTED
run_build werror "--enable-werror"
if [ "$quick" -eq 0 ] && [ -z "$TESTS_SELECTED" ]; then
	# valgrind cannot run a sanitizer build: the -Werror one it is.
	run_stage valgrind werror sh regress/valgrind-check.sh
	# The harnesses build with clang, ASan and UBSan of their own.
	run_stage fuzz werror sh -c 'if make fuzz >regress/work/make-fuzz.log 2>&1
	    then sh regress/fuzz/run.sh "${FUZZ_SECONDS:-60}"
	    else tail -30 regress/work/make-fuzz.log
	    echo "not ok - fuzz: make fuzz failed"; echo "0 passed, 1 failed"; fi'
fi
if [ "$quick" -eq 0 ]; then
	# Sanitizer reports from programs started by sshd land in files;
	# run-tests.sh counts any such file as a failure.
	run_build sanitizers "--enable-werror --enable-sanitizers"
fi
if [ "$quick" -eq 0 ]; then
	# Static programs in chroot jails: regress/t-chroot.sh skips in the
	# dynamic builds, so a third build runs it (with the unit tests).
	TESTS_SELECTED="${TESTS_SELECTED:-test_ t-chroot}" \
	    run_build static "--enable-werror --enable-static"
fi
echo "#####$summaries"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
