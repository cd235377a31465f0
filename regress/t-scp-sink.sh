#!/bin/bash
# scp -t (the sink sshd runs for "scp -O" uploads), fed raw record streams.
#   1. side by side with the stock /usr/bin/scp -t: the same replies, exit
#      status and resulting tree for good and malformed streams;
#   2. atomicity: nothing visible while a file is in flight, nothing
#      published or left behind after short data, an error byte, EOF or a
#      signal; a write error reported after the data, the stream in step;
#   3. modes, -p times, existing files keep their mode, staging settings,
#      log lines, permission errors as the unprivileged user.
# Run with SCP=/usr/bin/scp to see section 2 fail against stock.
tid=t-scp-sink
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"

STOCK_SCP=${STOCK_SCP:-/usr/bin/scp}
[ -x "$SCP" ] || fail "no scp at $SCP"
D="$WORK/d"
export ATOMIC_UPLOAD_LOG=stderr

reset() {
	rm -rf "$D"
	mkdir -p "$D"
}

# Everything in DIR, hidden names too: "name size mode" per line.
tree() {
	(cd "$1" && find . -mindepth 1 -printf '%p %s %m\n' | LC_ALL=C sort)
}

# feed STREAM ARGS...: printf STREAM into "$SCP ARGS...", replies in
# $WORK/out, stderr in $WORK/err, exit status in $rc.
feed() {
	local s=$1
	shift
	printf "$s" | "$SCP" "$@" >"$WORK/out" 2>"$WORK/err"
	rc=$?
}

replies() { od -An -c "$WORK/out" | tr -s ' \n' ' '; }

# 1. Side by side -------------------------------------------------------

# sbs DESC STREAM ARGS...: the same stream to stock and to $SCP, each in
# a fresh $D; replies, status and tree must be equal.
sbs() {
	local desc=$1 s=$2 a b
	shift 2
	if [ ! -x "$STOCK_SCP" ]; then
		skip "$desc" "no stock scp"
		return
	fi
	reset
	(cd "$WORK" && printf "$s" | "$STOCK_SCP" "$@" >"$WORK/out.stock" \
	    2>/dev/null; echo "rc=$?" >>"$WORK/out.stock")
	tree "$D" >"$WORK/tree.stock"
	reset
	(cd "$WORK" && printf "$s" | "$SCP" "$@" >"$WORK/out.ours" \
	    2>"$WORK/err"; echo "rc=$?" >>"$WORK/out.ours")
	tree "$D" >"$WORK/tree.ours"
	if cmp -s "$WORK/out.stock" "$WORK/out.ours" &&
	    { [ -n "${REPLIES_ONLY:-}" ] ||
	    cmp -s "$WORK/tree.stock" "$WORK/tree.ours"; }; then
		ok "same as stock: $desc"
	else
		notok "same as stock: $desc"
		verbose "stock: $(od -An -c "$WORK/out.stock" | tr -s ' \n' ' ')"
		verbose "ours:  $(od -An -c "$WORK/out.ours" | tr -s ' \n' ' ')"
		diff "$WORK/tree.stock" "$WORK/tree.ours" | sed 's/^/# /'
		sed 's/^/# err: /' "$WORK/err"
	fi
}

sbs "one file" 'C0644 5 a\nhello\0' -t d
sbs "two files, T records, -p" \
    'T1000000000 0 1000000001 0\nC0640 5 a\nhello\0T1 999999 2 0\nC0600 0 e\n\0' -p -t d
sbs "file to a new name" 'C0644 5 x\nhello\0' -t d/newname
sbs "-r tree" 'D0755 0 sub\nC0644 5 a\nhello\0D0700 0 in\nC0600 3 b\nabc\0E\nE\nC0644 1 top\nz\0' -r -t d
sbs "D without -r" 'D0755 0 sub\nE\n' -t d
sbs "top-level E ends" 'E\nC0644 5 a\nhello\0' -t d
sbs "negative size" 'C0644 -5 a\nhello\0' -t d
sbs "size not a number" 'C0644 x a\nhello\0' -t d
sbs "size too big" 'C0644 99999999999999999999999 a\nhello\0' -t d
sbs "size past off_t" 'C0644 9223372036854775808 a\nhello\0' -t d
sbs "size not delimited" 'C0644 5x a\nhello\0' -t d
sbs "mode digit 8" 'C0648 5 a\nhello\0' -t d
sbs "mode too short" 'C064 5 a\nhello\0' -t d
sbs "mode too long" 'C00644 5 a\nhello\0' -t d
sbs "name with /" 'C0644 5 a/b\nhello\0' -t d
sbs "name .." 'C0644 5 ..\nhello\0' -t d
sbs "name ." 'C0644 5 .\nhello\0' -t d
sbs "empty name" 'C0644 5 \nhello\0' -t d
sbs "D name .." 'D0755 0 ..\nE\n' -r -t d
sbs "missing newline" 'C0644 5 a' -t d
sbs "not a record first" 'X\n' -t d
sbs "not a record later" 'C0644 1 a\nx\0X\n' -t d
sbs "warning record, then a file" '\1scp: something\nC0644 1 a\nx\0' -t d
sbs "fatal record" '\2scp: fatal\nC0644 1 a\nx\0' -t d
sbs "T usec 1000000" 'T1000000000 1000000 1000000001 0\nC0644 5 b\nhello\0' -p -t d
sbs "T usec -1" 'T1000000000 -1 1000000001 0\nC0644 5 b\nhello\0' -p -t d
sbs "T atime usec bad" 'T1 0 1 0x\n' -p -t d
sbs "T atime missing" 'T1000000000 0\n' -p -t d
sbs "T not a number" 'Tx 0 1 0\n' -p -t d
sbs "T trailing space" 'T1 0 1 0 \n' -p -t d
# Stock publishes z although its sender said the data is bad: only the
# replies are compared here; section 2 checks that nothing is published.
REPLIES_ONLY=1 sbs "sender error byte, then the next file (replies)" \
    'C0644 5 z\nhello\1scp: z: read error\nC0644 5 w\nhello\0' -t d
check "sender error byte: that file is not published, the next one is" \
    test "$(tree "$D")" = "./w 5 644"
sbs "ambiguous target" 'C0644 5 q\nhello\0' -t d d
sbs "no target" 'C0644 5 q\nhello\0' -t
sbs "-d and a file" 'C0644 5 x\nhello\0' -d -t d/none
sbs "-T and -- accepted" 'C0644 5 q\nhello\0' -T -t -- d

# A name that is a directory: the file is refused and the source (a real
# one skips the data) goes on.
reset; mkdir "$D/isdir"
feed 'C0644 5 isdir\nC0644 5 c\nhello\0' -t "$D"
check "open failure is a warning, the next file lands" \
    test "$rc" = 1 -a -f "$D/c" -a "$(cat "$D/c")" = hello
grep -q "isdir: Is a directory" "$WORK/out" || notok "open failure text: $(replies)"

# 2. Atomicity ----------------------------------------------------------

# Records that must publish nothing and leave nothing, even over an
# existing file: that file keeps its content.
atomic_case() {
	local desc=$1 s=$2
	reset
	printf 'old content\n' >"$D/f"
	feed "$s" -t "$D"
	if [ "$(cat "$D/f")" = "old content" ] && [ ! -e "$D/new" ] &&
	    [ "$(ls -A "$D")" = f ] && [ "$rc" -ne 0 ]; then
		ok "nothing published or left: $desc"
	else
		notok "nothing published or left: $desc (rc $rc: $(ls -A "$D" | tr '\n' ' ')/ $(head -c 40 "$D/f" | od -An -c | tr -s ' \n' ' '))"
	fi
}
atomic_case "short data over a file" 'C0644 20 f\nnew data'
atomic_case "short data, new name" 'C0644 20 new\nnew data'
atomic_case "EOF before the status byte" 'C0644 8 f\nnew data'
atomic_case "error byte after the data" 'C0644 8 f\nnew data\1scp: f: Input/output error\n'
atomic_case "fatal byte after the data" 'C0644 8 f\nnew data\2scp: f: gone\n'
atomic_case "junk instead of the status byte" 'C0644 8 f\nnew dataC0644 1 new\nx\0'
atomic_case "short data in a -r tree" 'D0755 0 sub\nC0644 9 f\nabc' -r
atomic_case "file record with / after a good one" 'C0644 3 new\nabc\1x\nC0644 1 ../f\nx\0'

# Line longer than the protocol's 2047 bytes: a clear error, nothing made.
reset
long=$(head -c 2100 /dev/zero | tr '\0' a)
feed "C0644 5 $long\nhello\0C0644 1 b\nx\0" -t "$D"
if [ "$rc" = 1 ] && [ -z "$(ls -A "$D")" ] &&
    grep -q 'protocol error' "$WORK/out"; then
	ok "line over 2047 bytes: protocol error, nothing created"
else
	notok "line over 2047 bytes (rc $rc, $(ls -A "$D" | wc -l) entries, $(head -c 60 "$WORK/out" | od -An -c | tr -s ' \n' ' '))"
fi
reset
feed 'C0644 5 a\0b\nhello\0' -t "$D"
check "NUL byte inside a record: refused, nothing created" \
    test "$rc" = 1 -a -z "$(ls -A "$D")"

# In flight: a sink blocked half-way through a file, then finished, or
# killed.  While it waits the name shows nothing (or the old content).
start_sink() {
	rm -f "$WORK/in"
	mkfifo "$WORK/in"
	"$SCP" "$@" <"$WORK/in" >"$WORK/out" 2>"$WORK/err" &
	sink_pid=$!
	exec 7>"$WORK/in"
}
# Wait for N reply bytes from the sink, then a little for it to block.
wait_replies() {
	local i
	for i in $(seq 1 100); do
		[ "$(stat -c %s "$WORK/out")" -ge "$1" ] && break
		sleep 0.05
	done
	sleep 0.2
}

reset
printf 'old content\n' >"$D/f"
start_sink -t "$D"
printf 'C0644 17 f\nnew data' >&7
wait_replies 2
check "in flight: the old content is still under the name" \
    test "$(cat "$D/f")" = "old content"
check "in flight: nothing else visible in the directory" \
    test "$(ls -A "$D")" = f
printf ' complete' >&7
wait_replies 2
check "all bytes but no status byte yet: still the old content" \
    test "$(cat "$D/f")" = "old content"
printf '\0' >&7
exec 7>&-
wait "$sink_pid"
check "after the status byte: published whole" \
    test "$(cat "$D/f")" = "new data complete" -a "$(ls -A "$D")" = f
check "the sink's final ack comes after the commit" \
    test "$(replies)" = " \\0 \\0 \\0 "

for sig in TERM HUP PIPE KILL; do
	reset
	printf 'old content\n' >"$D/f"
	start_sink -t "$D"
	printf 'C0644 1000 f\nnew data' >&7
	wait_replies 2
	kill -$sig "$sink_pid"
	wait "$sink_pid" 2>/dev/null
	exec 7>&-
	if [ "$(cat "$D/f")" = "old content" ] && [ "$(ls -A "$D")" = f ]; then
		ok "SIG$sig mid-file: old content kept, nothing left"
	else
		notok "SIG$sig mid-file: $(ls -A "$D" | tr '\n' ' ')"
	fi
	if [ "$sig" = TERM ]; then
		check "SIGTERM: abort logged with its reason" \
		    grep -q 'abort ".*/f" bytes 8 .*reason "killed by signal 15' "$WORK/err"
	fi
done

# Named temporaries (a staging directory): a signal removes them too.
reset
mkdir -p "$WORK/stage"
ATOMIC_UPLOAD_TMPDIR="$WORK/stage" start_sink -t "$D"
printf 'C0644 1000 f\nnew data' >&7
wait_replies 2
staged=$(ls -A "$WORK/stage" | wc -l)
kill -TERM "$sink_pid"
wait "$sink_pid" 2>/dev/null
exec 7>&-
check "staging directory: the temporary lives there while in flight" \
    test "$staged" = 1 -o -n "$(grep -l tmpfile "$WORK/err")"
check "staging directory: empty after SIGTERM, nothing published" \
    test -z "$(ls -A "$WORK/stage")" -a -z "$(ls -A "$D")"

# Write error (file size limit): reported with \1 after the data, and the
# stream stays in step: the next file lands.
reset
head -c 20000 /dev/zero >"$WORK/big"
(
	trap '' XFSZ
	ulimit -f 8	# 8 KiB
	{ printf 'C0644 20000 big\n'; cat "$WORK/big"; printf '\0'
	  printf 'C0644 5 small\nhello\0'; } |
	    "$SCP" -t "$D" >"$WORK/out" 2>"$WORK/err"
	echo $? >"$WORK/rc"
)
rc=$(cat "$WORK/rc")
if [ "$rc" = 1 ] && [ ! -e "$D/big" ] && [ "$(cat "$D/small" 2>/dev/null)" = hello ] &&
    grep -q 'big: File too large' "$WORK/out"; then
	ok "write error: \\1 after the data, file not published, next file lands"
else
	notok "write error (rc $rc, $(ls -A "$D" | tr '\n' ' '), $(replies | head -c 200))"
fi
check "write error: no staging debris" test "$(ls -A "$D")" = small

# 3. Modes, times, settings ----------------------------------------------

reset
(umask 022; feed 'C0666 1 a\nx\0C0640 1 b\nx\0C4755 1 c\nx\0' -t "$D")
check "new files: mode from the record, umask applied, set-id dropped" \
    test "$(stat -c %a "$D/a" "$D/b" "$D/c" | tr '\n' ' ')" = "644 640 755 "
reset
(umask 022; feed 'C4755 1 c\nx\0C1777 1 s\nx\0C0600 1 p\nx\0' -p -t "$D")
check "-p: modes exactly as sent" \
    test "$(stat -c %a "$D/c" "$D/s" "$D/p" | tr '\n' ' ')" = "4755 1777 600 "
reset
printf old >"$D/e"; chmod 600 "$D/e"
feed 'C0755 3 e\nnew\0' -t "$D"
check "existing file keeps its mode without -p" \
    test "$(stat -c %a "$D/e")" = 600 -a "$(cat "$D/e")" = new
feed 'C0755 3 e\nNEW\0' -p -t "$D"
check "existing file takes the sent mode with -p" \
    test "$(stat -c %a "$D/e")" = 755 -a "$(cat "$D/e")" = NEW
reset
feed 'T1000000000 123456 1100000000 0\nC0644 5 t\nhello\0' -p -t "$D"
check "-p: T record times on the published file" \
    test "$(stat -c '%Y %X' "$D/t")" = "1000000000 1100000000"
check "-p: microseconds kept" \
    test "$(stat -c '%y' "$D/t" | cut -c21-26)" = 123456
reset
feed 'T1000000000 0 1000000000 0\nD0750 0 sub\nC0644 1 f\nx\0E\n' -r -p -t "$D"
check "-p: directory mode and times applied after its E" \
    test "$(stat -c '%a %Y' "$D/sub")" = "750 1000000000"
reset
(umask 022; feed 'D0500 0 ro\nC0644 1 f\nx\0E\n' -r -t "$D")
check "a directory sent read-only is filled, then given its mode" \
    test "$(stat -c %a "$D/ro")" = 500 -a -f "$D/ro/f"
chmod 755 "$D/ro"

# A directory exists as soon as its D record is acknowledged (per-file
# atomicity, not per-tree).
reset
start_sink -r -t "$D"
printf 'D0755 0 tree\nC0644 100 f\nabc' >&7
wait_replies 3
check "D record: the directory is created at once, the file is not" \
    test -d "$D/tree" -a -z "$(ls -A "$D/tree")"
kill -TERM "$sink_pid"; wait "$sink_pid" 2>/dev/null; exec 7>&-

reset
feed 'C0644 5 a\nhello\0C0644 9 b\nabc' -t "$D"
check "log: one commit line (path, bytes, seconds)" \
    grep -q "^commit \"$D/a\" bytes 5 seconds [0-9.]* method " "$WORK/err"
check "log: one abort line with the reason" \
    grep -q "^abort \"$D/b\" bytes 3 seconds [0-9.]* method .* reason \"connection lost after 3 of 9 bytes\"" "$WORK/err"

reset
mkdir -p "$WORK/stage2/root"
touch "$WORK/stage2/root/.junk.au-AbCdEfGh01234567"
ATOMIC_UPLOAD_TMPDIR="$WORK/stage2/%u" feed 'C0644 5 a\nhello\0' -t "$D"
check "ATOMIC_UPLOAD_TMPDIR with %u: stale temporary swept at start" \
    test ! -e "$WORK/stage2/root/.junk.au-AbCdEfGh01234567" -a "$(cat "$D/a")" = hello
check "ATOMIC_UPLOAD_TMPDIR: the sweep is logged" grep -q '^sweep ' "$WORK/err"
ATOMIC_UPLOAD_SYNC=bogus feed 'C0644 5 b\nhello\0' -t "$D"
check "ATOMIC_UPLOAD_SYNC=bogus: logged, upload still made" \
    test "$rc" = 0 -a "$(cat "$D/b")" = hello
grep -q 'ATOMIC_UPLOAD_SYNC=bogus' "$WORK/err" || notok "bad ATOMIC_UPLOAD_SYNC not logged"
for s in full data none; do
	ATOMIC_UPLOAD_SYNC=$s feed 'C0644 5 c\nhello\0' -t "$D"
	check "ATOMIC_UPLOAD_SYNC=$s" test "$rc" = 0 -a "$(cat "$D/c")" = hello
done

# A larger file, content intact.
reset
head -c 3000000 /dev/urandom >"$WORK/payload"
{ printf 'C0644 3000000 big\n'; cat "$WORK/payload"; printf '\0'; } |
    "$SCP" -t "$D" >"$WORK/out" 2>"$WORK/err"
check "3 MB file: content intact" cmp -s "$WORK/payload" "$D/big"

# Permission errors as the unprivileged user, side by side with stock.
if [ "$(id -u)" -eq 0 ] && [ -x "$STOCK_SCP" ]; then
	test_user_setup
	for who in stock ours; do
		reset
		chmod 755 "$D"
		bin=$SCP; [ $who = stock ] && bin=$STOCK_SCP
		printf 'C0644 5 x\nhello\0' | as_user "$bin" -t "$D" \
		    >"$WORK/perm.$who" 2>/dev/null
		echo "rc=$? files=$(ls -A "$D" | wc -l)" >>"$WORK/perm.$who"
	done
	if cmp -s "$WORK/perm.stock" "$WORK/perm.ours"; then
		ok "unwritable directory as $TEST_USER: same reply as stock"
	else
		notok "unwritable directory: stock $(od -An -c "$WORK/perm.stock" | tr -s ' \n' ' ') ours $(od -An -c "$WORK/perm.ours" | tr -s ' \n' ' ')"
	fi
	grep -q 'Permission denied' "$WORK/perm.ours" ||
	    notok "no Permission denied from ours"
	# A file the user may write in a directory it may not: stock
	# writes in place; so do we (staging is impossible).
	reset
	chmod 755 "$D"
	printf old >"$D/w"
	chown "$TEST_USER" "$D/w"
	printf 'C0644 3 w\nnew\0' | as_user "$SCP" -t "$D" >"$WORK/out" 2>"$WORK/err"
	check "writable file in an unwritable directory: written as stock does" \
	    test "$?" = 0 -a "$(cat "$D/w")" = new
else
	skip "permission errors" "needs root and stock scp"
fi

# Staging off is stock behaviour: written in place and not flushed,
# unless a durability is asked for (as with sftp-server -n).
if command -v strace >/dev/null; then
	for sync in "" data full; do
		reset
		# No LeakSanitizer under ptrace.
		printf 'C0644 4 s\nsync\0' | ATOMIC_UPLOAD_STAGING=off \
		    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
		    ATOMIC_UPLOAD_SYNC=$sync strace -f -qq -o "$WORK/sync.st" \
		    -e trace=fsync,fdatasync,syncfs,sync_file_range \
		    "$SCP" -t "$D" >"$WORK/out" 2>"$WORK/err"
		rc=$?
		n=$(grep -c sync "$WORK/sync.st")
		if [ -z "$sync" ]; then
			check "staging off: written, nothing flushed ($n calls)" \
			    test $rc = 0 -a "$(cat "$D/s")" = sync -a "$n" = 0
		else
			check "staging off, ATOMIC_UPLOAD_SYNC=$sync: flushed ($n calls)" \
			    test $rc = 0 -a "$(cat "$D/s")" = sync -a "$n" -gt 0
		fi
	done
else
	skip "staging off and flushing" "no strace"
fi
exit 0
