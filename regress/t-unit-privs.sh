#!/bin/bash
# The staging module's permission behaviour as an unprivileged user (root
# bypasses the checks that matter here).  Root prepares directories, then
# the unit-test binary's tool mode stages files as $TEST_USER:
#   test_atomic_upload -x stage [opts] PATH
#   -> open=E method=M note="..." write=E commit=E bytes=N
# Expected results are those of open(2) for the same request, or stock's
# in-place write where staging is impossible.
tid=t-unit-privs
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"

need_root
test_user_setup

T="$OBJ/regress/unittests/test_atomic_upload"
[ -x "$T" ] || fail "missing $T (make unittests)"

P="$WORK/privs"
U=$TEST_USER

# Layout (owner mode):
#   rodir     root 0755       user may not create here
#     wfile   user 0644       ... but may write this file
#   wdir      user 0755
#     rofile  user 0444
#     rootf   root 0644
#     own     user 0640
#   stg-ro    root 0755       a staging directory the user cannot use
#   stg-ok    user 0700
#   sticky    root 1777
#     rootw   root 0666       another user's file in a sticky directory
#   sgid      root:root 2777  setgid directory, group the user is not in
setup() {
	rm -rf "$P"
	mkdir -p "$P"/rodir "$P"/wdir "$P"/stg-ro "$P"/stg-ok "$P"/sticky \
	    "$P"/sgid
	chmod 755 "$P" "$P"/rodir "$P"/stg-ro
	printf 'old w' >"$P/rodir/wfile"
	chown "$U" "$P/rodir/wfile"
	chmod 644 "$P/rodir/wfile"
	chown "$U" "$P/wdir" "$P/stg-ok"
	chmod 755 "$P/wdir"
	chmod 700 "$P/stg-ok"
	printf 'read only' >"$P/wdir/rofile"
	chown "$U" "$P/wdir/rofile"
	chmod 444 "$P/wdir/rofile"
	printf "root's" >"$P/wdir/rootf"
	chmod 644 "$P/wdir/rootf"
	printf 'own old' >"$P/wdir/own"
	chown "$U" "$P/wdir/own"
	chmod 640 "$P/wdir/own"
	chmod 1777 "$P/sticky"
	printf 'shared' >"$P/sticky/rootw"
	chmod 666 "$P/sticky/rootw"
	chown root:root "$P/sgid"
	chmod 2777 "$P/sgid"
}

# stage_as_user TOOL-ARGS...: output in $out.
stage_as_user() {
	out=$(as_user "$T" -x stage "$@" 2>&1)
	trace "as $U: $*: $out"
}

has() {
	case "$out" in
	$2) ok "$1" ;;
	*) notok "$1 (got: $out)" ;;
	esac
}

entries() {
	local dir=$1 want got
	shift
	want=$(printf '%s\n' "$@" | sed '/^$/d' | sort | tr '\n' ' ')
	got=$(ls -A "$dir" | sort | tr '\n' ' ')
	[ "$got" = "$want" ] && return 0
	verbose "$dir holds [$got], want [$want]"
	return 1
}

content_is() {
	[ "$(cat "$1" 2>/dev/null)" = "$2" ]
}

# The errno open(2) gives the user for the same request (sanity: the
# expectations below are open(2)'s, not invented).
open_errno_as_user() {
	as_user /usr/bin/python3 -c '
import errno, os, sys
try:
    os.close(os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
    print("OK")
except OSError as e:
    print(errno.errorcode[e.errno])' "$1"
}

for m in "" -n; do
	mn=tmpfile
	[ -n "$m" ] && mn=named
	setup

	# New file in a directory the user cannot write: EACCES, as open(2).
	want=$(open_errno_as_user "$P/rodir/new")
	rm -f "$P/rodir/new"
	stage_as_user $m -b 5 "$P/rodir/new"
	has "[$mn] new file in a read-only directory: open=$want" "open=$want*"
	check "[$mn] read-only directory unchanged" entries "$P/rodir" wfile

	# Writable file in a read-only directory: no staging possible, write
	# in place as stock does, and say so.
	stage_as_user $m -c N -b 5 "$P/rodir/wfile"
	has "[$mn] writable file in read-only directory: direct, with a note" \
	    "open=OK method=direct note=\"*\"*commit=OK*"
	check "[$mn] ... written in place" content_is "$P/rodir/wfile" NNNNN
	stage_as_user $m -F w -c M -b 2 "$P/rodir/wfile"
	has "[$mn] ... also without O_TRUNC" "open=OK method=direct note=\"*\"*commit=OK*"
	check "[$mn] ... edited in place" content_is "$P/rodir/wfile" MMNNN

	# Read-only file in a writable directory: EACCES (staging could
	# replace it, but open(2) would refuse).
	stage_as_user $m -b 5 "$P/wdir/rofile"
	has "[$mn] read-only file: EACCES" "open=EACCES*"
	check "[$mn] read-only file unchanged" content_is "$P/wdir/rofile" \
	    "read only"
	stage_as_user $m -b 5 "$P/wdir/rootf"
	has "[$mn] root's 0644 file: EACCES" "open=EACCES*"
	check "[$mn] root's file unchanged" content_is "$P/wdir/rootf" "root's"
	check "[$mn] no debris in the writable directory" \
	    entries "$P/wdir" rofile rootf own

	# Replacing one's own file keeps its mode and group.
	chgrp "$(id -gn "$U")" "$P/wdir/own"
	stage_as_user $m -c R -b 3 "$P/wdir/own"
	has "[$mn] own file replaced" "open=OK method=$mn note=-*commit=OK*"
	check "[$mn] own file: content" content_is "$P/wdir/own" RRR
	check "[$mn] own file: mode 0640 kept" \
	    test "$(stat -c %a "$P/wdir/own")" = 640
	check "[$mn] own file: owner and group" \
	    test "$(stat -c %U:%G "$P/wdir/own")" = "$U:$(id -gn "$U")"
	# Its group one the user is not in, and readable by that group only:
	# a new inode could not have it, so it is written in place, as stock
	# writes it (the group keeps its access, nobody else gains any).
	chgrp root "$P/wdir/own"
	stage_as_user $m -c Q -b 3 "$P/wdir/own"
	has "[$mn] own file, root's group 0640: in place with a note" \
	    "open=OK method=direct note=\"*\"*commit=OK*"
	check "[$mn] ... group root and mode 0640 kept" \
	    test "$(stat -c %G:%a "$P/wdir/own")" = root:640
	# A group that grants nothing beyond the others' bits: staged, with
	# the user's group, and the log says so.
	chmod 644 "$P/wdir/own"
	stage_as_user $m -c P -b 3 "$P/wdir/own"
	has "[$mn] own file, root's group 0644: staged with a note" \
	    "open=OK method=$mn note=\"*group*\"*commit=OK*"
	check "[$mn] ... content, mode 0644, the user's group" \
	    test "$(cat "$P/wdir/own"):$(stat -c %G:%a "$P/wdir/own")" = "PPP:$(id -gn "$U"):644"
	chmod 640 "$P/wdir/own"

	# A staging directory the user cannot write: fall back, say why.
	stage_as_user $m -t "$P/stg-ro" -b 4 "$P/wdir/n1"
	has "[$mn] unwritable staging directory: fallback with a note" \
	    "open=OK method=$mn note=\"*\"*commit=OK*"
	check "[$mn] unwritable staging directory left empty" entries "$P/stg-ro"
	stage_as_user $m -t "$P/stg-ok" -L -b 4 "$P/wdir/n2"
	has "[$mn] own staging directory used" "open=OK method=$mn note=-*commit=OK*"
	if [ -n "$m" ]; then
		has "[$mn] ... the temporary was there" "*tmpdir .*temp*"
	fi
	check "[$mn] own staging directory empty afterwards" \
	    entries "$P/stg-ok"

	# umask applies to a new file's mode.
	stage_as_user $m -u 027 -m 666 -b 1 "$P/wdir/um"
	check "[$mn] umask 027, mode 0666 -> 0640" \
	    test "$(stat -c %a "$P/wdir/um")" = 640

	# Set-id bits of one's own file: stock's write as the user loses
	# them (the kernel clears them for a writer without CAP_FSETID); a
	# staged replace must end the same way.  The twin gets stock's
	# treatment.
	printf 'old' >"$P/wdir/suid"
	chown "$U" "$P/wdir/suid"
	chmod 6755 "$P/wdir/suid"
	cp -p "$P/wdir/suid" "$P/wdir/suid-twin"
	as_user /usr/bin/python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_TRUNC)
os.write(fd, b"new")
os.close(fd)' "$P/wdir/suid-twin"
	stage_as_user $m -c n -b 3 "$P/wdir/suid"
	has "[$mn] own set-id file replaced" "*commit=OK*"
	a=$(stat -c %a "$P/wdir/suid") b=$(stat -c %a "$P/wdir/suid-twin")
	check "[$mn] set-id bits as stock's write leaves them (staged $a, stock $b)" \
	    test "$a" = "$b"
	rm -f "$P/wdir/suid" "$P/wdir/suid-twin"

	# Another user's writable file in a sticky directory: a rename over
	# it would fail (EPERM), so write in place like stock.
	stage_as_user $m -c S -b 4 "$P/sticky/rootw"
	has "[$mn] other's file in sticky dir: direct with a note" \
	    "open=OK method=direct note=\"*\"*commit=OK*"
	check "[$mn] ... written" content_is "$P/sticky/rootw" SSSS
	check "[$mn] ... still root's" \
	    test "$(stat -c %U "$P/sticky/rootw")" = root
	check "[$mn] sticky dir: no debris" entries "$P/sticky" rootw

	# setgid directory: a new file gets the directory's group, as
	# open(2) gives it, also when staged elsewhere.
	stage_as_user $m -b 2 "$P/sgid/plain"
	check "[$mn] setgid dir: group inherited" \
	    test "$(stat -c %G "$P/sgid/plain")" = root
	stage_as_user $m -t "$P/stg-ok" -b 2 "$P/sgid/viatmp"
	has "[$mn] setgid dir via staging directory: committed" "*commit=OK*"
	g=$(stat -c %G "$P/sgid/viatmp" 2>/dev/null)
	check "[$mn] setgid dir via staging directory: group root (got $g)" \
	    test "$g" = root
done

# Sweep as the user: removes the user's own stale temporaries, never
# another user's file with a temporary-looking name.
setup
out=$(as_user "$T" -x stage -n -L -A -b 1 "$P/wdir/x" 2>&1)
name=$(printf '%s\n' "$out" | awk '$3 == "temp" { print $2; exit }')
if [ -n "$name" ]; then
	# A stale one of the user's: started, then killed.
	as_user "$T" -x stage -n -w 60 -b 100000 "$P/wdir/y" >"$WORK/stager.out" \
	    2>&1 </dev/null &
	pid=$!
	wait_for grep -q staged "$WORK/stager.out" || notok "stager did not stage"
	# $! is the shell running as_user; the tool says its own pid.
	tpid=$(sed -n 's/.*staged pid=\([0-9]*\).*/\1/p' "$WORK/stager.out")
	[ -n "$tpid" ] && kill -9 "$tpid"
	wait $pid 2>/dev/null
	printf 'root owned' >"$P/wdir/$name"
	out=$(as_user "$T" -x sweep "$P/wdir" 2>&1)
	has "user's sweep removes exactly the user's stale temporary" \
	    "sweep=OK removed=1"
	check "root's temporary-looking file kept" test -f "$P/wdir/$name"
	check "nothing else removed" entries "$P/wdir" rofile rootf own "$name"
else
	notok "could not learn a temporary name: $out"
fi
