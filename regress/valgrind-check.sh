#!/bin/sh
# The SFTP end-to-end tests once more with our sftp-server under valgrind
# memcheck (contrib/test.sh runs this on the -Werror build; valgrind cannot
# run a sanitizer build).  Every server run writes a log; any error in any
# log (invalid access, uninitialised value, leak) is a failure.  Ends with
# "N passed, N failed" over the tests and the log checks.
#
#   regress/valgrind-check.sh [TEST...]
#       default: t-sftp-raw t-sftp-libssh2 t-sftp-openssh (all of those)
#
# Environment: OBJ (build directory, has sftp-server), SRC (sources).
set -u
: "${SRC:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${OBJ:=$SRC}"
export SRC OBJ
tests=${*:-t-sftp-raw t-sftp-libssh2 t-sftp-openssh}
VG=/usr/bin/valgrind
vgdir="$OBJ/regress/work/valgrind"
logs="$vgdir/logs"

if [ ! -x "$VG" ]; then
	echo "not ok - valgrind: $VG not installed"
	echo "0 passed, 1 failed"
	exit 1
fi
rm -rf "$vgdir"
mkdir -p "$logs"
chmod 755 "$OBJ/regress/work" "$vgdir"
chmod 1777 "$logs"	# sessions of the unprivileged test user log too
# sshd gives sessions a bare environment: the paths are written in.
cat >"$vgdir/sftp-server" <<EOW
#!/bin/sh
exec $VG --tool=memcheck --leak-check=full --error-exitcode=97 \\
    --num-callers=30 --log-file=$logs/sftp-server.%p.log \\
    $OBJ/sftp-server "\$@"
EOW
chmod 755 "$vgdir/sftp-server"

# run-tests.sh's own summary becomes a comment: the last line is ours.
# A server under valgrind takes a second or more to start.
SFTP_RAW_TIMEOUT_SCALE=5
export SFTP_RAW_TIMEOUT_SCALE
SFTP_SERVER="$vgdir/sftp-server" sh "$SRC/regress/run-tests.sh" $tests \
    >"$vgdir/out" 2>&1
sed 's/^\([0-9]* passed, [0-9]* failed\)$/# tests under valgrind: \1/' \
    "$vgdir/out"
line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$vgdir/out" | tail -1)
passed=${line%% passed*}
failed=${line#*, }; failed=${failed%% failed}
if [ -z "$line" ]; then
	passed=0
	failed=1
	echo "not ok - valgrind: the tests printed no summary"
fi

runs=0
cut_short=0
bad=0
for l in "$logs"/*.log; do
	[ -f "$l" ] || continue
	runs=$((runs + 1))
	n=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) error.*/\1/p' "$l" | tail -1)
	if [ -z "$n" ]; then
		# Killed by a signal (tests kill servers on purpose): no
		# summary, but errors found before the end still count.
		cut_short=$((cut_short + 1))
		grep -q '^==[0-9]*== \(Invalid\|Conditional\|Use of\|Syscall param\|Mismatched\)' "$l" && n=1 || n=0
	fi
	if [ "$n" -gt 0 ]; then
		sed 's/^/#   /' "$l" | head -80
		echo "not ok - valgrind: $n error(s) in $(basename "$l")"
		bad=$((bad + 1))
	fi
done
if [ "$runs" -eq 0 ]; then
	echo "not ok - valgrind: no sftp-server ran under valgrind (did the tests use \$SFTP_SERVER?)"
	bad=1
elif [ "$bad" -eq 0 ]; then
	echo "ok - valgrind: $runs sftp-server runs under memcheck, 0 errors ($cut_short ended by a signal)"
	passed=$((passed + 1))
fi
failed=$((failed + bad))
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
