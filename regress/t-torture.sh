#!/bin/bash
# The atomicity torture test (regress/torture/torture.sh) for a short
# while: concurrent uploads by every client we have through a real sshd,
# random SIGKILLs, clients vanishing without CLOSE, overwrites of the same
# names, resumes of killed uploads, and two watchers reading the
# destination.  Its summary line is turned into TAP results here.
# TORTURE_SECONDS sets the duration (default 35), TORTURE_SEED the seed
# (default: the PID); TORTURE_STALLS=1 and TORTURE_RESUME_PAUSE=MS reach
# torture.sh (see there); against stock (SFTP_SERVER=/usr/lib/openssh/sftp-server
# SCP=/usr/bin/scp) the partial-file checks fail.
tid=t-torture
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"
need_root

out="$WORK/torture.out"
tid=t-torture-run bash "$SRC/regress/torture/torture.sh" \
    --duration "${TORTURE_SECONDS:-35}" --workers 5 \
    ${TORTURE_SEED:+--seed "$TORTURE_SEED"} >"$out" 2>&1
rc=$?
sed 's/^\([^#]\)/# \1/' "$out"
line=$(grep '^torture:' "$out")
[ -n "$line" ] || fail "torture.sh printed no summary (exit $rc)"

# field NAME: the number after "NAME=" in the summary line.
field() { printf '%s\n' "$line" | sed -n "s/.*[ ([]$1=\([0-9]*\).*/\1/p"; }

check "uploads committed ($(field committed) of $(field uploads))" \
    test "$(field committed)" -gt 0
check "clients SIGKILLed mid-upload ($(field kills))" test "$(field kills)" -gt 0
check "no partial file seen by the watchers (poll $(field poll), inotify $(field inotify))" \
    test "$(field partial_sightings)" = 0
check "no partial file at the end" test "$(field final_partial)" = 0
check "no committed upload lost" test "$(field lost)" = 0
check "no debris in the destination" test "$(field destination)" = 0
# Uploads whose connection was lost are kept for a resume (DESIGN.md 12):
# the staging directory holds their stores and nothing else.
check "staging directory holds only stores of kept partial uploads ($(field kept_partials) data files)" \
    test "$(field staging)" = 0
check "no kept partial data older than its age ($(field expired_partials) files)" \
    test "$(field expired_partials)" = 0
if [ "$(field attempted)" -gt 0 ]; then
	check "resumes that succeeded published their payload byte for byte ($(field payload_ok) of $(field attempted) resumes: $(field continued) continued, $(field refused) refused, $(field started_over) started over; $(field mismatch) mismatches)" \
	    test "$(field mismatch)" = 0
else
	skip "resumes that succeeded published their payload" "no upload was resumed in this run"
fi
# DESIGN 10: a consumer waiting for IN_CLOSE_WRITE gets one per commit, on
# the final name, after the new content is there (stock logs no commits:
# not checked there).  An aborted replacement adds at most one, on the
# unchanged old file: the old file is open for writing during the upload,
# as stock's is, and its close is seen.
commits=$(($(field server_commits) + $(field sink_commits)))
aborts=$(($(field server_aborts) + $(field sink_aborts)))
if [ "$commits" -gt 0 ]; then
	# Two commits of one name at the same moment can queue their
	# IN_CLOSE_WRITEs back to back, and the kernel then merges them:
	# the watcher counts the commits that overlapped so.
	cw=$(field close_write_events)
	cwo=$(field close_write_overlaps)
	check "one IN_CLOSE_WRITE per commit, at most one more per abort ($cw events, $commits commits, $aborts aborts, $cwo overlapping)" \
	    test "$cw" -le "$((commits + aborts))" -a "$cw" -ge "$((commits - cwo))"
fi
check "torture.sh exit status 0" test "$rc" = 0
exit 0
