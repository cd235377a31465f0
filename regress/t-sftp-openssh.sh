#!/bin/bash
# OpenSSH's own clients against $SFTP_SERVER: sftp (and scp in its default
# SFTP mode) started with -D, straight over a pipe, and through a real sshd
# whose Subsystem line runs the server with -t (a staging directory).  The
# same command list runs both ways: put, get, reput, reget, -p, -R trees,
# rename, ln, ln -s, chmod/chgrp/chown, df, mkdir/rmdir, rm, empty, large
# and sparse files; contents are compared byte for byte, modes and times
# with stat, and no debris may be left.  Then permissions as the
# unprivileged user, side by side with stock's server where the outcome
# is stock's.
tid=t-sftp-openssh
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"
need_root
test_user_setup

PY=/usr/bin/python3
MKPAYLOAD="$SRC/regress/helpers/mkpayload.py"
ours=0
[ "$SFTP_SERVER" != "$STOCK_SFTP_SERVER" ] && ours=1
L="$WORK/local"
STAGE="$WORK/stage"
mkdir -p "$L" "$STAGE"
chmod 700 "$STAGE"

# Local fixtures.
head -c 100003 /dev/urandom >"$L/small"
: >"$L/empty"
"$PY" "$MKPAYLOAD" "$L/large" 40M large
# 24 MiB, mostly holes, with data at the start, the middle and the end.
truncate -s 24M "$L/sparse"
for off in 0 7777777 25165000; do
	head -c 777 /dev/urandom |
	    dd of="$L/sparse" bs=1 seek=$off conv=notrunc status=none
done
cp "$L/small" "$L/timed"
chmod 640 "$L/timed"
touch -d '2001-02-03 04:05:06' "$L/timed"
mkdir -p "$L/tree/sub/deeper" "$L/tree/emptydir"
head -c 5000 /dev/urandom >"$L/tree/one"
: >"$L/tree/sub/zero"
head -c 300000 /dev/urandom >"$L/tree/sub/deeper/two"
chmod 600 "$L/tree/sub/deeper/two"

# sftp_batch CONN...: run the batch on stdin with sftp CONN...; output
# and errors in $WORK/out.  Exit status is sftp's.
sftp_batch() {
	cat >"$WORK/batch"
	sftp -q -b "$WORK/batch" "$@" >"$WORK/out" 2>&1
}

# same_file A B: the same bytes.
same_file() { cmp -s "$1" "$2" || { verbose "$1 and $2 differ"; return 1; }; }
mode_of() { stat -c %a "$1"; }
mtime_of() { stat -c %Y "$1"; }

# suite LABEL R CONN...: the command list against the remote directory R.
suite() {
	local label=$1 R=$2 h
	shift 2
	rm -rf "$R" "$L/got"
	mkdir -p "$R" "$L/got"

	# put (with fsync@openssh.com) and get, empty, large, sparse.
	if sftp_batch "$@" <<EOF
put -f $L/small $R/small
put $L/empty $R/empty
put $L/large $R/large
put $L/sparse $R/sparse
get $R/small $L/got/small
get $R/empty $L/got/empty
get $R/large $L/got/large
get $R/sparse $L/got/sparse
EOF
	then
		for f in small empty large sparse; do
			check "$label: put $f: same bytes" same_file "$L/$f" "$R/$f"
			check "$label: get $f: same bytes" same_file "$L/$f" "$L/got/$f"
		done
		check "$label: put of a new file gets mode 0644 (umask 022)" \
		    test "$(mode_of "$R/small")" = 644
	else
		notok "$label: put/get: $(tail -3 "$WORK/out")"
	fi

	# reput and reget: resume from a partial copy on the other side.
	head -c 30000 "$L/small" >"$R/resumed"
	head -c 40000 "$L/large" >"$L/got/resumed"
	if sftp_batch "$@" <<EOF
reput $L/small $R/resumed
reget $R/large $L/got/resumed
EOF
	then
		check "$label: reput completes the file" same_file "$L/small" "$R/resumed"
		check "$label: reget completes the file" same_file "$L/large" "$L/got/resumed"
	else
		notok "$label: reput/reget: $(tail -3 "$WORK/out")"
	fi

	# -p: times and modes survive the commit, both ways.
	cp "$L/small" "$R/rtimed"
	chmod 604 "$R/rtimed"
	touch -d '1999-12-31 23:59:58' "$R/rtimed"
	if sftp_batch "$@" <<EOF
put -p $L/timed $R/timed
get -p $R/rtimed $L/got/rtimed
EOF
	then
		check "$label: put -p keeps the mode" test "$(mode_of "$R/timed")" = 640
		check "$label: put -p keeps the mtime" \
		    test "$(mtime_of "$R/timed")" = "$(mtime_of "$L/timed")"
		check "$label: put -p content" same_file "$L/timed" "$R/timed"
		check "$label: get -p keeps the mode" test "$(mode_of "$L/got/rtimed")" = 604
		check "$label: get -p keeps the mtime" \
		    test "$(mtime_of "$L/got/rtimed")" = "$(mtime_of "$R/rtimed")"
	else
		notok "$label: put -p/get -p: $(tail -3 "$WORK/out")"
	fi

	# Recursive trees.
	if sftp_batch "$@" <<EOF
put -Rp $L/tree $R/tree
get -Rp $R/tree $L/got/tree
EOF
	then
		check "$label: put -R: same tree" diff -r "$L/tree" "$R/tree"
		check "$label: put -R: empty directory made" test -d "$R/tree/emptydir"
		check "$label: put -Rp: file mode kept" \
		    test "$(mode_of "$R/tree/sub/deeper/two")" = 600
		check "$label: get -R: same tree" diff -r "$L/tree" "$L/got/tree"
	else
		notok "$label: put -R/get -R: $(tail -3 "$WORK/out")"
	fi

	# Names: rename, hard and symbolic links, mkdir, rmdir, rm.
	cp "$L/small" "$R/a"
	if sftp_batch "$@" <<EOF
rename $R/a $R/b
ln $R/b $R/hard
ln -s b $R/soft
mkdir $R/newdir
mkdir $R/gone
rmdir $R/gone
put $L/small $R/victim
rm $R/victim
EOF
	then
		check "$label: rename" test ! -e "$R/a" -a -f "$R/b"
		check "$label: rename content" same_file "$L/small" "$R/b"
		check "$label: ln makes a hard link" \
		    test "$(stat -c %i "$R/hard")" = "$(stat -c %i "$R/b")"
		check "$label: ln -s makes a symlink to b" \
		    test "$(readlink "$R/soft")" = b
		check "$label: mkdir" test -d "$R/newdir"
		check "$label: rmdir" test ! -e "$R/gone"
		check "$label: rm" test ! -e "$R/victim"
	else
		notok "$label: rename/ln/mkdir/rm: $(tail -3 "$WORK/out")"
	fi
	# sftp renames with posix-rename@openssh.com where it is offered,
	# which replaces an existing name.
	if sftp_batch "$@" <<<"rename $R/small $R/b"; then
		check "$label: rename onto an existing name replaces it" \
		    same_file "$L/small" "$R/b"
	else
		notok "$label: rename onto an existing name: $(tail -3 "$WORK/out")"
	fi

	# cp: the copy-data extension, server side, into a staged handle.
	if sftp_batch "$@" <<EOF
cp $R/large $R/copied
cp $R/timed $R/copied-p
EOF
	then
		check "$label: cp (copy-data)" same_file "$L/large" "$R/copied"
		check "$label: cp: content" same_file "$L/timed" "$R/copied-p"
		check "$label: cp: mode of the source ($(stat -c %a "$R/copied-p"))" \
		    test "$(stat -c %a "$R/copied-p")" = 640
	else
		notok "$label: cp: $(tail -3 "$WORK/out")"
	fi

	# Attributes.
	cp "$L/small" "$R/attrs"
	if sftp_batch "$@" <<EOF
chmod 600 $R/attrs
chgrp $TEST_GID $R/attrs
chown $TEST_UID $R/attrs
EOF
	then
		check "$label: chmod" test "$(mode_of "$R/attrs")" = 600
		check "$label: chgrp and chown" \
		    test "$(stat -c %u:%g "$R/attrs")" = "$TEST_UID:$TEST_GID"
	else
		notok "$label: chmod/chgrp/chown: $(tail -3 "$WORK/out")"
	fi

	# df: the same figures as stock's server gives for the directory
	# (sizes and inode totals; the free counts may move in between).
	if sftp_batch "$@" <<<"df $R" && cp "$WORK/out" "$WORK/df" &&
	    sftp_batch -D "$STOCK_SFTP_SERVER" <<<"df $R"; then
		h=$(awk 'NR == 3 { print $1 }' "$WORK/df")
		check "$label: df reports the size stock reports ($h KiB)" \
		    test -n "$h" -a "$h" = "$(awk 'NR == 3 { print $1 }' "$WORK/out")"
	else
		notok "$label: df: $(tail -3 "$WORK/out")"
	fi

	check "$label: no debris in the destination" entries "$R" \
	    empty large sparse resumed timed rtimed tree b hard soft \
	    newdir attrs copied copied-p
	check "$label: no debris in the tree" \
	    test "$(find "$R/tree" -name '.*' | wc -l)" = 0
}

# 1. Straight over a pipe.
if [ $ours = 1 ]; then
	DIRECT="$SFTP_SERVER -t $STAGE"
else
	DIRECT=$SFTP_SERVER
fi
suite "sftp -D" "$WORK/direct" -D "$DIRECT"
check "sftp -D: staging directory empty" entries "$STAGE"

# 2. Through sshd.
[ $ours = 1 ] && SFTP_SERVER_ARGS="-t $STAGE"
start_sshd
suite "sshd" "$WORK/viasshd" $SSH_OPTS root@localhost

# scp, SFTP mode (the default since OpenSSH 9.0).
R="$WORK/scp"
mkdir -p "$R"
if scp -q $SSH_OPTS "$L/large" "$L/empty" root@localhost:"$R/" 2>"$WORK/err" &&
    scp -q -p $SSH_OPTS "$L/timed" root@localhost:"$R/timed" 2>>"$WORK/err" &&
    scp -q -r $SSH_OPTS "$L/tree" root@localhost:"$R/tree" 2>>"$WORK/err" &&
    scp -q $SSH_OPTS root@localhost:"$R/large" "$L/got/scp-large" 2>>"$WORK/err"; then
	check "scp: large upload, same bytes" same_file "$L/large" "$R/large"
	check "scp: empty upload" same_file "$L/empty" "$R/empty"
	check "scp -p: mtime kept" test "$(mtime_of "$R/timed")" = "$(mtime_of "$L/timed")"
	check "scp -p: mode kept" test "$(mode_of "$R/timed")" = 640
	check "scp -r: same tree" diff -r "$L/tree" "$R/tree"
	check "scp: download, same bytes" same_file "$L/large" "$L/got/scp-large"
else
	notok "scp: $(cat "$WORK/err")"
fi
# Replacing with scp -D too (no sshd; scp runs the program without
# arguments, so a script adds them).
printf '#!/bin/sh\nexec %s\n' "$DIRECT" >"$WORK/direct-server"
chmod 755 "$WORK/direct-server"
cp "$L/small" "$R/replaced"
if scp -q -D "$WORK/direct-server" "$L/large" localhost:"$R/replaced" 2>"$WORK/err"; then
	check "scp -D: replaces a file, same bytes" same_file "$L/large" "$R/replaced"
else
	notok "scp -D: $(cat "$WORK/err")"
fi
check "scp: no debris in the destination" entries "$R" large empty timed tree replaced
wait_for sessions_gone
check "sshd: staging directory empty" entries "$STAGE"

# 3. Permissions, as the unprivileged user through sshd.
P="$WORK/perm"
mkdir -p "$P/nowrite" "$P/mine"
chmod 755 "$P" "$P/nowrite"
chown "$TEST_USER" "$P/mine" "$L/small"
chmod 644 "$L/small"
usftp() {
	cat >"$WORK/batch"
	chmod 644 "$WORK/batch"
	as_user sftp -q -b "$WORK/batch" "$@" >"$WORK/out" 2>&1
}
if usftp $USER_SSH_OPTS "$TEST_USER@localhost" <<<"put $L/small $P/nowrite/x"; then
	notok "user: upload into a directory without write permission succeeded"
else
	check "user: upload into a non-writable directory: Permission denied" \
	    grep -q 'Permission denied' "$WORK/out"
fi
check "user: nothing left in the non-writable directory" entries "$P/nowrite"

if usftp $USER_SSH_OPTS "$TEST_USER@localhost" <<<"put $L/small $P/mine/new"; then
	check "user: upload into own directory" same_file "$L/small" "$P/mine/new"
	check "user: the upload belongs to the user" \
	    test "$(stat -c %u "$P/mine/new")" = "$TEST_UID"
else
	notok "user: upload into own directory: $(cat "$WORK/out")"
fi

# scp's SFTP mode resolves "~" with expand-path@openssh.com.
rm -f "$TEST_HOME/scp-tilde"
if as_user scp -q $USER_SSH_OPTS "$L/small" "$TEST_USER@localhost:~/scp-tilde" \
    >"$WORK/out" 2>&1 &&
    as_user scp -q $USER_SSH_OPTS "$L/small" "$TEST_USER@localhost:~$TEST_USER/scp-tilde2" \
    >>"$WORK/out" 2>&1; then
	check "user: scp to ~/ lands in the home directory" \
	    same_file "$L/small" "$TEST_HOME/scp-tilde"
	check "user: scp to ~user/ lands in the home directory" \
	    same_file "$L/small" "$TEST_HOME/scp-tilde2"
else
	notok "user: scp to ~: $(cat "$WORK/out")"
fi
rm -f "$TEST_HOME/scp-tilde" "$TEST_HOME/scp-tilde2"

# A file the user may not write, in a directory the user may write: the
# upload must be refused as stock refuses it (staging must not let a
# rename replace what the open would not have been allowed to change).
printf 'root file\n' >"$P/mine/rootfile"
printf 'read-only\n' >"$P/mine/readonly"
chown "$TEST_USER" "$P/mine/readonly"
chmod 444 "$P/mine/readonly"
for f in rootfile readonly; do
	old=$(cat "$P/mine/$f")
	if usftp $USER_SSH_OPTS "$TEST_USER@localhost" <<<"put $L/small $P/mine/$f"; then
		notok "user: upload over a non-writable file ($f) succeeded"
	else
		check "user: upload over a non-writable file ($f): Permission denied" \
		    grep -q 'Permission denied' "$WORK/out"
	fi
	check "user: non-writable file ($f) unchanged" test "$(cat "$P/mine/$f")" = "$old"
done
check "user: no debris in own directory" entries "$P/mine" new rootfile readonly

# A file the user may write in a directory the user may not: staging is
# impossible, so the file is written in place as stock writes it, and the
# server says so at INFO.  Same outcome with stock's server, side by side.
for server in "$SFTP_SERVER" "$STOCK_SFTP_SERVER"; do
	if [ "$server" = "$STOCK_SFTP_SERVER" ]; then
		who=stock
	else
		who=ours
	fi
	printf 'old content of the user file\n' >"$P/nowrite/userfile"
	chown "$TEST_USER" "$P/nowrite/userfile"
	chmod 644 "$P/nowrite/userfile"
	ino=$(stat -c %i "$P/nowrite/userfile")
	if usftp -D "$server -e -l INFO" <<<"put $L/small $P/nowrite/userfile"; then
		check "user, $who: writable file in a non-writable directory: uploaded" \
		    same_file "$L/small" "$P/nowrite/userfile"
		check "user, $who: written in place (same inode)" \
		    test "$(stat -c %i "$P/nowrite/userfile")" = "$ino"
	else
		notok "user, $who: writable file in a non-writable directory: $(cat "$WORK/out")"
	fi
	if [ $who = ours ] && [ $ours = 1 ]; then
		if grep -q "^stage \"$P/nowrite/userfile\": " "$WORK/out" &&
		    grep -q "^commit \"$P/nowrite/userfile\" bytes 100003 .* method direct" \
		    "$WORK/out"; then
			ok "user: the in-place write is logged ($(grep '^stage ' "$WORK/out"))"
		else
			notok "user: no stage/commit direct lines in: $(cat "$WORK/out")"
		fi
	fi
	check "user, $who: nothing else in the non-writable directory" \
	    entries "$P/nowrite" userfile
done

# 4. Replacing a file keeps what stock's truncate-in-place keeps: owner,
#    group, mode, extended attributes and the ACL (side by side).
# attrs_of FILE: owner, group, mode, user xattrs and ACL, one line.
attrs_of() {
	echo "$(stat -c '%u:%g %a' "$1") $(getfattr -d --absolute-names "$1" 2>/dev/null |
	    grep -v '^#') $(getfacl -cp "$1" 2>/dev/null | tr '\n' ' ')"
}
K="$WORK/keep"
for server in "$SFTP_SERVER" "$STOCK_SFTP_SERVER"; do
	rm -rf "$K"
	mkdir -p "$K"
	printf 'old\n' >"$K/f"
	chown "$TEST_USER:$TEST_USER" "$K/f"
	chmod 640 "$K/f"
	setfattr -n user.tag -v kept "$K/f" 2>/dev/null
	setfacl -m u:nobody:r "$K/f" 2>/dev/null
	before=$(attrs_of "$K/f")
	ln "$K/f" "$K/hardlink"
	if sftp_batch -D "$server" <<<"put $L/large $K/f"; then
		check "replace ($server): content" same_file "$L/large" "$K/f"
		# The inode changes with staging (sftp-server.8): a hard link
		# keeps the old content; stock writes through it.
		if [ "$server" = "$STOCK_SFTP_SERVER" ]; then
			check "replace (stock): the hard link shows the new content" \
			    same_file "$L/large" "$K/hardlink"
		else
			check "replace (ours): the hard link keeps the old content" \
			    test "$(cat "$K/hardlink")" = old
		fi
		after=$(attrs_of "$K/f")
		if [ "$after" = "$before" ]; then
			ok "replace ($server): owner, group, mode, xattr, ACL kept ($after)"
		else
			notok "replace ($server): was [$before], now [$after]"
		fi
	else
		notok "replace ($server): $(cat "$WORK/out")"
	fi
	check "replace ($server): no debris" entries "$K" f hardlink
done

# 5. A sticky world-writable directory (as /tmp), as the unprivileged
#    user: another user's file that the user may write is written in
#    place (a rename over it is not allowed), as stock does; the user's
#    own file is replaced whole.
T="$WORK/sticky"
for server in "$SFTP_SERVER" "$STOCK_SFTP_SERVER"; do
	rm -rf "$T"
	mkdir -p "$T"
	chmod 1777 "$T"
	printf 'root file\n' >"$T/rootfile"
	chmod 666 "$T/rootfile"
	printf 'user file\n' >"$T/userfile"
	chown "$TEST_USER" "$T/userfile"
	ino=$(stat -c %i "$T/rootfile")
	if usftp -D "$server -e -l INFO" <<EOF
put $L/small $T/rootfile
put $L/small $T/userfile
put $L/small $T/newfile
EOF
	then
		check "sticky ($server): other user's writable file uploaded in place" \
		    test "$(stat -c %i "$T/rootfile")" = "$ino"
		for f in rootfile userfile newfile; do
			check "sticky ($server): $f content" same_file "$L/small" "$T/$f"
		done
		check "sticky ($server): rootfile still root's" \
		    test "$(stat -c %u "$T/rootfile")" = 0
		if [ "$server" = "$SFTP_SERVER" ] && [ $ours = 1 ]; then
			check "sticky: the in-place write is logged" \
			    grep -q "^stage \"$T/rootfile\": " "$WORK/out"
		fi
	else
		notok "sticky ($server): $(cat "$WORK/out")"
	fi
	check "sticky ($server): no debris" entries "$T" rootfile userfile newfile
done
exit 0
