#!/bin/bash
# Real OpenSSH "scp -O" (the legacy protocol) through a real sshd on
# 127.0.0.1 whose sessions find $SCP first on PATH, so the remote end is
# ours: "scp -t" for uploads, "scp -f" for downloads.  Both directions,
# -r trees, -p times and modes, empty files, awkward names, a large file,
# and a client SIGKILLed mid-file while a watcher reads the destination
# like a processing script: nothing partial may ever be seen, nothing may
# be published, nothing left behind.
# Run with SCP=/usr/bin/scp to see the kill test fail against stock.
tid=t-scp-openssh
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"

CLIENT_SCP=${CLIENT_SCP:-/usr/bin/scp}
WATCH="$SRC/regress/helpers/watch.py"
MKPAYLOAD="$SRC/regress/helpers/mkpayload.py"
[ -x "$SCP" ] || fail "no scp at $SCP"
[ -x "$CLIENT_SCP" ] || { skip "$tid" "no OpenSSH scp client"; exit 0; }
"$CLIENT_SCP" -O 2>&1 | grep -q 'unknown option' &&
    { skip "$tid" "OpenSSH scp without -O"; exit 0; }

start_sshd
BIN="$OBJ/regress/work/bin"
mkdir -p "$BIN"
ln -sf "$SCP" "$BIN/scp"
on_exit "rm -f '$BIN/scp'"
on_exit "rm -f '$BIN/scp'"

ossh() { ssh $SSH_OPTS root@localhost "$@"; }
oscp() { "$CLIENT_SCP" -O -q $SSH_OPTS "$@"; }

check "the session's scp is ours" \
    test "$(ossh 'command -v scp')" = "$BIN/scp"

UP="$WORK/up"		# remote side (same host): uploads land here
LOC="$WORK/loc"		# local side
reset() {
	rm -rf "$UP" "$LOC"
	mkdir -p "$UP" "$LOC"
}

# Uploads and downloads ----------------------------------------------------
reset
printf 'hello world\n' >"$LOC/plain"
: >"$LOC/empty"
printf 'spaces\n' >"$LOC/with space"
printf 'quote\n' >"$LOC/it's"
printf 'dquote\n' >"$LOC/say \"hi\""
printf 'back\n' >"$LOC/back\\slash"
oscp "$LOC/plain" "$LOC/empty" "$LOC/with space" "$LOC/it's" \
    "$LOC/say \"hi\"" "$LOC/back\\slash" root@localhost:"$UP/"
check "upload: exit status 0" test $? = 0
for f in plain empty "with space" "it's" "say \"hi\"" "back\\slash"; do
	check "upload: $f" cmp -s "$LOC/$f" "$UP/$f"
done
check "upload: nothing else in the directory" test "$(ls -A "$UP" | wc -l)" = 6

rm -rf "$LOC"; mkdir "$LOC"
oscp root@localhost:"$UP/plain" root@localhost:"$UP/empty" \
    root@localhost:"$UP/with\\ space" "$LOC/"
check "download: exit status 0" test $? = 0
for f in plain empty "with space"; do
	check "download: $f" cmp -s "$UP/$f" "$LOC/$f"
done

# Newlines in names: OpenSSH's client sends such a name escaped (\^J), and
# our sink takes the escaped name as it is, as stock's does.
reset
nl=$(printf 'new\nline')
printf 'nl\n' >"$LOC/$nl"
oscp "$LOC/$nl" root@localhost:"$UP/"
check "name with a newline: arrives under its escaped name only" \
    test "$(ls -A "$UP")" = 'new\^Jline'
printf 'nl2\n' >"$UP/$nl"
rm -rf "$LOC"; mkdir "$LOC"
oscp -r root@localhost:"$UP" "$LOC/"
check "download of a newline name: escaped, content intact" \
    cmp -s "$UP/$nl" "$LOC/up/new\\^Jline"

# -r trees and -p ------------------------------------------------------------
reset
mkdir -p "$LOC/tree/a/b" "$LOC/tree/empty dir"
printf 'one\n' >"$LOC/tree/one"
printf 'two\n' >"$LOC/tree/a/two"
head -c 100000 /dev/urandom >"$LOC/tree/a/b/three"
: >"$LOC/tree/a/b/zero"
chmod 640 "$LOC/tree/one"
chmod 700 "$LOC/tree/a"
chmod 4755 "$LOC/tree/a/two"
touch -d @1000000000 "$LOC/tree/one" "$LOC/tree/a/b/three"
touch -d @1200000000 "$LOC/tree/a"
# (the protocol carries whole seconds)
listing() { (cd "$1" && find . -printf '%p %s %m %T@\n' | sed 's/\.[0-9]*$//' | LC_ALL=C sort); }
listing_nt() { (cd "$1" && find . ! -type d -printf '%p %s\n' | LC_ALL=C sort); }

oscp -r -p "$LOC/tree" root@localhost:"$UP/"
check "-r -p upload: exit status 0" test $? = 0
check "-r -p upload: same tree, sizes, modes, times" \
    test "$(listing "$LOC/tree")" = "$(listing "$UP/tree")"
diff -r "$LOC/tree" "$UP/tree" >/dev/null
check "-r -p upload: same content" test $? = 0

rm -rf "$UP/tree2"
(umask 022; oscp -r "$LOC/tree" root@localhost:"$UP/tree2")
check "-r upload to a new name: same files" \
    test "$(listing_nt "$LOC/tree")" = "$(listing_nt "$UP/tree2")"
check "-r without -p: set-id bit dropped, umask applied" \
    test "$(stat -c %a "$UP/tree2/a/two")" = 755

rm -rf "$LOC/back"; mkdir "$LOC/back"
oscp -r -p root@localhost:"$UP/tree" "$LOC/back/"
check "-r -p download: exit status 0" test $? = 0
check "-r -p download: same tree, sizes, modes, times" \
    test "$(listing "$UP/tree")" = "$(listing "$LOC/back/tree")"

# Existing file: its mode survives an upload without -p.
reset
printf old >"$UP/keep"; chmod 600 "$UP/keep"
printf new >"$LOC/keep"; chmod 755 "$LOC/keep"
oscp "$LOC/keep" root@localhost:"$UP/keep"
check "existing file keeps its mode without -p" \
    test "$(stat -c %a "$UP/keep")" = 600 -a "$(cat "$UP/keep")" = new
oscp -p "$LOC/keep" root@localhost:"$UP/keep"
check "existing file takes the mode with -p" test "$(stat -c %a "$UP/keep")" = 755

# Errors the client sees, as with stock.
reset
oscp "$LOC/nothing" root@localhost:"$UP/" 2>"$WORK/err"
check "missing local file: client fails" test $? != 0
oscp root@localhost:"$UP/nothing" "$LOC/" 2>"$WORK/err"
rc=$?
check "missing remote file: client fails with the server's message" \
    test $rc != 0 -a -n "$(grep 'No such file or directory' "$WORK/err")"
mkdir "$UP/isdir"
printf x >"$LOC/isdir"
oscp "$LOC/isdir" root@localhost:"$UP/" 2>"$WORK/err"
check "upload over a directory: refused, message shown" \
    grep -q 'Is a directory' "$WORK/err"

# As the unprivileged user, into its home and into a directory it may
# not write.
reset
printf 'mine\n' >"$LOC/mine"
chmod 644 "$LOC/mine"
chmod 755 "$LOC"
as_user "$CLIENT_SCP" -O -q $USER_SSH_OPTS "$LOC/mine" "$TEST_USER@localhost:"
check "as $TEST_USER: upload into the home directory" \
    cmp -s "$LOC/mine" "$TEST_HOME/mine"
check "as $TEST_USER: the file is the user's" \
    test "$(stat -c %U "$TEST_HOME/mine")" = "$TEST_USER"
rm -f "$TEST_HOME/mine"
chmod 755 "$UP"
as_user "$CLIENT_SCP" -O -q $USER_SSH_OPTS "$LOC/mine" "$TEST_USER@localhost:$UP/" 2>"$WORK/err"
check "as $TEST_USER: unwritable directory refused with Permission denied" \
    grep -q 'Permission denied' "$WORK/err"
check "as $TEST_USER: nothing created there" test -z "$(ls -A "$UP")"

# A large file, watched; then a client killed mid-file, watched ------------
reset
python3 "$MKPAYLOAD" "$LOC/big" 24M 1 || fail "mkpayload"
python3 "$WATCH" --all --ready "$WORK/ready" --stop "$WORK/stop" "$UP" \
    >"$WORK/watch.out" 2>&1 &
wpid=$!
on_exit "kill $wpid"
wait_for test -e "$WORK/ready" || fail "watcher did not start"
oscp "$LOC/big" root@localhost:"$UP/big"
check "large file: upload complete" cmp -s "$LOC/big" "$UP/big"
rm -f "$UP/big"

# Slowed down (-l, Kbit/s) so that the kill lands mid-file.
python3 "$MKPAYLOAD" "$LOC/slow" 8M 2 || fail "mkpayload"
"$CLIENT_SCP" -O -q -l 16000 $SSH_OPTS "$LOC/slow" root@localhost:"$UP/slow" &
cpid=$!
seen_partial=0
for i in $(seq 1 20); do
	sleep 0.1
	[ -e "$UP/slow" ] && seen_partial=1
done
kill -KILL "$cpid"
wait "$cpid" 2>/dev/null
# The server side notices the lost connection and aborts.
wait_for sh -c "test -z \"\$(ls -A '$UP')\""
sleep 0.5
check "killed client: the name never appeared during the upload" \
    test "$seen_partial" = 0
check "killed client: nothing published, nothing left" \
    test -z "$(ls -A "$UP")"
touch "$WORK/stop"
wait "$wpid"
wrc=$?
sed 's/^/# watch: /' "$WORK/watch.out" | grep -v '^# watch: #' | head -5
check "watcher: never saw a partial file" test "$wrc" = 0
exit 0
