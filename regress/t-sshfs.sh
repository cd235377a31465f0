#!/bin/bash
# A real sshfs mount (FUSE, as root) through a throwaway sshd on
# 127.0.0.1, logged in as the unprivileged test user, with $SFTP_SERVER as
# the sftp subsystem (DESIGN.md 11, issue 12).  The sftp subsystem is
# regress/session_view.py's trace relay in front of $SFTP_SERVER, so every
# request sshfs sends is recorded (work/t-sshfs/trace/, folded per step in
# work/t-sshfs/trace-summary.txt; SSHFS_SHOW_TRACE=1 prints it).
#
# 1. File system semantics: cp of new and existing files, echo > and >>,
#    two appenders on one file, sed -i, an editor's write-temp-and-rename,
#    tar x of a tree, rsync with and without --inplace, truncate -s, mv
#    within the mount.  Each command sequence runs twice, on the mount and
#    on a local scratch directory; exit status, the server's tree (names,
#    types, modes, sizes, content; mtimes where the command sets them)
#    and the tree seen through the mount must be identical.  sshfs
#    releases (CLOSEs) files asynchronously, after the command returned:
#    the server side is waited for, never slept for.
# 2. Atomicity: regress/helpers/watch.py reads the exported directory
#    while whole-file writers (cp new and over, a slow shell redirect,
#    tar x, rsync, an editor's temp-and-rename) write self-describing
#    files through the mount; it must never see a partial file (stock's
#    server shows them: this check fails against stock).
# 3. sshfs itself SIGKILLed (its PID, kept) while writing a new file and
#    rewriting an existing one through a second mount: after the mount is
#    gone, nothing new is published and the old file is intact (fails
#    against stock).
#
# sshfs options: -f (foreground: $! is sshfs itself, to be killed by
# PID), -F (the test's ssh_config: the user's key, 127.0.0.1:$SSHD_PORT),
# -o ServerAliveInterval=15,ServerAliveCountMax=3; no "reconnect" (a new
# session would not see the old one's uploads, and a dead mount must stay
# dead for check 3); no sshfs_sync (the default: WRITEs pipelined, errors
# reported at flush, many requests in flight when the LSTATs come; what
# users run).  SSHFS_OPTS adds options (e.g. SSHFS_OPTS="-o sshfs_sync").
tid=t-sshfs
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"
need_root
# Stopped by a signal: leave through the EXIT trap, which unmounts.
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP

PY=/usr/bin/python3
SV="$SRC/regress/session_view.py"
MKPAYLOAD="$SRC/regress/helpers/mkpayload.py"
WATCH="$SRC/regress/helpers/watch.py"
for p in sshfs fusermount3 rsync tar sed truncate mountpoint timeout; do
	command -v "$p" >/dev/null 2>&1 ||
	    { skip "sshfs mount" "$p not installed (apt-get install sshfs fuse3 rsync)"; exit 0; }
done
[ -c /dev/fuse ] || { skip "sshfs mount" "no /dev/fuse"; exit 0; }
[ -x "$SFTP_SERVER" ] || fail "no server at $SFTP_SERVER"
umask 022

test_user_setup
IN="$WORK/in"		# inputs of the commands
SEED="$WORK/seed"	# each step's starting tree
D="$WORK/export"	# the exported directory (server side)
L="$WORK/local"		# the local scratch directory
M="$WORK/mnt"		# the sshfs mount of $D
M2="$WORK/mnt2"		# the mount sshfs is killed on
TRACE="$WORK/trace"
OUT="$WORK/out"
mkdir -p "$IN" "$SEED" "$D" "$L" "$M" "$M2" "$TRACE" "$OUT"
chown "$TEST_USER" "$D"
chmod 1777 "$TRACE"
export IN

# The subsystem: the trace relay in front of $SFTP_SERVER (INFO log of
# ours, or stock's, beside the trace).
cat >"$WORK/subsystem.sh" <<EOF
#!/bin/sh
exec $PY $SV trace $TRACE/session-\$\$.log --strip $D -- $SFTP_SERVER -e -l INFO "\$@" 2>>$TRACE/server-\$\$.log
EOF
chmod 755 "$WORK/subsystem.sh"
SFTP_SERVER="$WORK/subsystem.sh" SFTP_SERVER_ARGS="" start_sshd

# ------------------------------------------------------------ helpers

# slowcat FILE: FILE to stdout in 256 KiB pieces, about 6 MB/s.
slowcat() {
	"$PY" -c '
import sys, time
o = sys.stdout.buffer
with open(sys.argv[1], "rb") as f:
    while True:
        b = f.read(262144)
        if not b:
            break
        o.write(b)
        o.flush()
        time.sleep(0.04)' "$1"
}
export -f slowcat
export PY

# reap PID: kill -9 PID if it is still a process of ours that has not
# been waited for (an exited and reaped PID may have been reused).
reap() { [ -e "/proc/$1" ] && [ "$(ps -o ppid= -p "$1" | tr -d ' ')" = "$$" ] && kill -9 "$1"; }

# mount_sshfs DIR MOUNTPOINT: sshfs in the foreground, in the background;
# sets SSHFS_PID and SESSION_LOG (the trace of its SFTP session).
mount_sshfs() {
	local before after i
	before=$(ls "$TRACE"/session-*.log 2>/dev/null | sort)
	# shellcheck disable=SC2086
	sshfs -f -F "$WORK/sshd/ssh_config" \
	    -o ServerAliveInterval=15,ServerAliveCountMax=3 ${SSHFS_OPTS:-} \
	    "$TEST_USER@localhost:$1" "$2" </dev/null >>"$WORK/sshfs.log" 2>&1 &
	SSHFS_PID=$!
	on_exit "fusermount3 -u -z '$2'; umount -l '$2'; reap $SSHFS_PID"
	for i in $(seq 1 100); do
		mountpoint -q "$2" && break
		kill -0 "$SSHFS_PID" 2>/dev/null || break
		sleep 0.1
	done
	mountpoint -q "$2" || { tail -5 "$WORK/sshfs.log"; fail "sshfs did not mount $2"; }
	SESSION_LOG=""
	for i in $(seq 1 50); do
		after=$(ls "$TRACE"/session-*.log 2>/dev/null | sort)
		SESSION_LOG=$(comm -13 <(echo "$before") <(echo "$after") | head -1)
		[ -n "$SESSION_LOG" ] && break
		sleep 0.1
	done
	[ -n "$SESSION_LOG" ] || fail "no trace of sshfs's session"
}

# mark TEXT: a step marker in the main session's trace.
mark() { local m="$*"; echo "=== ${m//$'\n'/ ; }" >>"$MAIN_LOG"; }
open_handles() { "$PY" "$SV" handles "$MAIN_LOG"; }
# quiet: sshfs has released every file (its CLOSEs come late).
quiet() {
	local i
	for i in $(seq 1 80); do
		[ "$(open_handles)" = 0 ] && return 0
		sleep 0.1
	done
	verbose "sshfs still holds $(open_handles) handles"
	return 1
}

# treesig DIR [mtime]: one line per entry below DIR: path, type, mode,
# size and sha256 of files (and their mtime in seconds with "mtime"),
# symlink targets (not with NOLINK set, as for the view through the
# mount: sshfs's own cache answers readlink with EPERM for a while after
# tar replaced its placeholder file by the symlink, with stock as with
# ours).  Directories: mode only.
treesig() {
	timeout 60 "$PY" "$SV" treesig "$1" ${2:+--mtime} ${NOLINK:+--nolink}
}

# same_tree A B [mtime]
same_tree() { [ "$(treesig "$1" "${3:-}")" = "$(treesig "$2" "${3:-}")" ]; }

# settle A B [mtime]: wait (8 s at most) until A's tree is B's.
settle() {
	local end=$((SECONDS + 8))
	while [ "$SECONDS" -le "$end" ]; do
		same_tree "$@" && return 0
		sleep 0.1
	done
	return 1
}

show_diff() {
	diff <(treesig "$1" "${3:-}") <(treesig "$2" "${3:-}") |
	    sed -n 's/^[<>]/#   &/p' | head -40
}

# seed NAME: the step's starting tree ($SEED/NAME) on both sides.
seed() {
	rm -rf "${D:?}/$1" "${L:?}/$1"
	if [ -d "$SEED/$1" ]; then
		cp -a "$SEED/$1" "$D/$1"
		cp -a "$SEED/$1" "$L/$1"
	else
		mkdir "$D/$1" "$L/$1"
	fi
	chown -R "$TEST_USER:" "$D/$1"
}

# step NAME [mtime] COMMANDS: run COMMANDS (bash) in $M/NAME and in
# $L/NAME; compare exit status, the server's tree, the mount's view.
step() {
	local name=$1 t="" cmds rc_m rc_l
	shift
	[ "$1" = mtime ] && { t=mtime; shift; }
	cmds=$1
	mark "step $name: $cmds"
	(cd "$M/$name" && exec timeout 120 bash -c "$cmds") >"$OUT/$name.mount" 2>&1
	rc_m=$?
	(cd "$L/$name" && exec timeout 120 bash -c "$cmds") >"$OUT/$name.local" 2>&1
	rc_l=$?
	if [ "$rc_m" = "$rc_l" ]; then
		ok "$name: exit status as on a local directory ($rc_l)"
	else
		notok "$name: exit status $rc_m on the mount, $rc_l on a local directory"
		sed 's/^/#   mount: /' "$OUT/$name.mount" | head -10
		sed 's/^/#   local: /' "$OUT/$name.local" | head -10
	fi
	if settle "$D/$name" "$L/$name" $t; then
		ok "$name: server's tree byte-identical to a local directory's${t:+ (mtimes too)}"
	else
		notok "$name: server's tree byte-identical to a local directory's${t:+ (mtimes too)}"
		verbose "< server   > local"
		show_diff "$D/$name" "$L/$name" $t
	fi
	quiet
	mark "($name: the test reads the tree through the mount)"
	if NOLINK=1 same_tree "$M/$name" "$L/$name" $t; then
		ok "$name: tree seen through the mount as the local one"
	else
		notok "$name: tree seen through the mount as the local one"
		verbose "< mount   > local"
		NOLINK=1 show_diff "$M/$name" "$L/$name" $t
	fi
}

# ------------------------------------------------------------ inputs

head -c 1048699 /dev/urandom >"$IN/a.bin"
head -c 300001 /dev/urandom >"$IN/b.bin"
printf 'small file\n' >"$IN/small.txt"
chmod 644 "$IN"/*
# A tree for tar: modes, an empty file, a nested directory, a symlink,
# old mtimes.
mkdir -p "$WORK/tree/top/sub/deeper"
head -c 70000 /dev/urandom >"$WORK/tree/top/data"
printf '#!/bin/sh\necho hi\n' >"$WORK/tree/top/run.sh"
: >"$WORK/tree/top/empty"
printf 'secret\n' >"$WORK/tree/top/sub/private"
head -c 200000 /dev/urandom >"$WORK/tree/top/sub/deeper/blob"
ln -s ../data "$WORK/tree/top/sub/link"
chmod 755 "$WORK/tree/top/run.sh"
chmod 600 "$WORK/tree/top/sub/private"
chmod 640 "$WORK/tree/top/sub/deeper/blob"
find "$WORK/tree" -exec touch -h -d '2001-01-02 03:04:05' {} +
tar -C "$WORK/tree" -cf "$IN/tree.tar" top
# Two versions of a tree for rsync: the second changes, grows and
# shrinks files and adds one.
mkdir -p "$IN/r1/d" "$IN/r2/d"
head -c 500000 /dev/urandom >"$IN/r1/big"
printf 'one\ntwo\nthree\n' >"$IN/r1/d/text"
head -c 9000 /dev/urandom >"$IN/r1/shrinks"
cp -a "$IN/r1/." "$IN/r2/"
printf 'CHANGED' | dd of="$IN/r2/big" bs=1 seek=250000 conv=notrunc 2>/dev/null
head -c 1000 /dev/urandom >>"$IN/r2/big"
printf 'one\nTWO\nthree\nfour\n' >"$IN/r2/d/text"
truncate -s 4000 "$IN/r2/shrinks"
printf 'new\n' >"$IN/r2/added"
chmod 600 "$IN/r2/d/text"
touch -d '2002-03-04 05:06:07' "$IN/r1/big" "$IN/r1/d/text" "$IN/r1/shrinks"
touch -d '2003-04-05 06:07:08' "$IN/r2/big" "$IN/r2/d/text" "$IN/r2/shrinks" "$IN/r2/added"

# Starting trees.
mkdir -p "$SEED/cp-existing" "$SEED/echo" "$SEED/appenders" "$SEED/sed" \
    "$SEED/editor" "$SEED/truncate" "$SEED/mv/sub"
head -c 3000000 /dev/urandom >"$SEED/cp-existing/old.bin"
printf 'a much longer old text than the new one\n' >"$SEED/cp-existing/old.txt"
chmod 600 "$SEED/cp-existing/old.txt"
printf 'old g\n' >"$SEED/echo/g"
printf 'start\n' >"$SEED/appenders/log"
printf 'foo 1\nbar 2\nfoo 3\n' >"$SEED/sed/t.txt"
printf 'version 1\n' >"$SEED/editor/f.txt"
head -c 400000 /dev/urandom >"$SEED/editor/big"
head -c 5000 /dev/urandom >"$SEED/truncate/t1"
head -c 5000 /dev/urandom >"$SEED/truncate/t3"
for n in a b c d; do printf '%s\n' "$n" >"$SEED/mv/$n"; done

# ------------------------------------------------------ 1. semantics

mount_sshfs "$D" "$M"
MAIN_PID=$SSHFS_PID
MAIN_LOG=$SESSION_LOG
verbose "$(sshfs --version 2>&1 | grep -i '^sshfs version') pid $MAIN_PID, trace $MAIN_LOG"

for s in cp-new cp-existing echo appenders sed editor tar rsync rsync-inplace truncate mv; do
	seed "$s"
done

step cp-new 'cp "$IN/a.bin" new.bin && cp "$IN/small.txt" new.txt'
step cp-existing 'cp "$IN/a.bin" old.bin && cp "$IN/small.txt" old.txt'
step echo 'echo x > f && echo y >> f && echo x > g && echo y >> g'
# The issue's two appenders, on a file that exists and on one written
# just before through the mount.
step appenders 'exec 3>>log; echo a >&3; echo b >> log; exec 3>&-
echo start > log2; exec 3>>log2; echo a >&3; echo b >> log2; exec 3>&-'
step sed 'sed -i s/foo/baz/ t.txt && printf "foo\n" > u.txt && sed -i s/foo/qux/ u.txt'
step editor 'printf "version 2\n" > .f.txt.swp && mv .f.txt.swp f.txt &&
cp "$IN/b.bin" .big.swp && mv -f .big.swp big &&
printf "brand new\n" > .n.swp && mv .n.swp n.txt'
step tar mtime 'tar --no-same-owner -xf "$IN/tree.tar"'
step rsync mtime 'rsync -rlpt "$IN/r1/" . && rsync -rlpt "$IN/r2/" .'
step rsync-inplace mtime 'rsync -rlpt --inplace "$IN/r1/" . &&
rsync -rlpt --inplace --no-whole-file "$IN/r2/" .'
step truncate 'truncate -s 1000 t1 && truncate -s 10000 t1 && truncate -s 123 t2 && truncate -s 0 t3'
step mv 'mv a a2 && mv b sub/ && mv c d &&
echo fresh > n && mv n n2 && cp "$IN/b.bin" m.bin && mv m.bin sub/m.bin'

# ------------------------------------------------------ 2. atomicity

W="$D/w"
mkdir -p "$W"
"$PY" "$MKPAYLOAD" "$IN/p-cp-new" 32M cp-new
"$PY" "$MKPAYLOAD" "$IN/p-cp-over" 32M cp-over
"$PY" "$MKPAYLOAD" "$IN/p-piped" 6M piped
"$PY" "$MKPAYLOAD" "$IN/p-rs-new" 8M rs-new
"$PY" "$MKPAYLOAD" "$IN/p-rs-over" 8M rs-over
"$PY" "$MKPAYLOAD" "$IN/p-ed" 8M ed
mkdir -p "$WORK/tarw"
for n in t1 t2 t3; do "$PY" "$MKPAYLOAD" "$WORK/tarw/$n" 3M "$n"; done
tar -C "$WORK/tarw" -cf "$IN/payloads.tar" t1 t2 t3
"$PY" "$MKPAYLOAD" "$W/cp-over" 1M old-cp-over
"$PY" "$MKPAYLOAD" "$W/rs-over" 1M old-rs-over
chown -R "$TEST_USER:" "$W"

"$PY" "$WATCH" --interval 1 --ready "$WORK/watch.ready" \
    --stop "$WORK/watch.stop" "$W" >"$WORK/watch.out" 2>&1 &
WATCH_PID=$!
on_exit "reap $WATCH_PID"
wait_for test -e "$WORK/watch.ready" || fail "watcher did not start"

# writer DESC COMMANDS (run in $M/w)
writer() {
	local rc
	mark "writer $1: $2"
	(cd "$M/w" && exec timeout 120 bash -c "$2") >"$OUT/w-$1" 2>&1
	rc=$?
	if [ "$rc" = 0 ]; then
		ok "whole-file writer $1: exit status 0"
	else
		notok "whole-file writer $1: exit status $rc"
		sed 's/^/#   /' "$OUT/w-$1" | head -5
	fi
}
writer cp-new 'cp "$IN/p-cp-new" cp-new'
writer cp-over 'cp "$IN/p-cp-over" cp-over'
writer piped 'slowcat "$IN/p-piped" > piped'
writer tar 'tar --no-same-owner -xf "$IN/payloads.tar"'
writer rsync 'rsync "$IN/p-rs-new" rs-new && rsync "$IN/p-rs-over" rs-over'
writer editor 'cp "$IN/p-ed" .ed.swp && mv .ed.swp ed'
# Every file complete on the server (sshfs's late CLOSEs waited for).
complete() {
	local n
	for n in cp-new cp-over piped rs-new rs-over ed; do
		cmp -s "$IN/p-$n" "$W/$n" || return 1
	done
	for n in t1 t2 t3; do
		cmp -s "$WORK/tarw/$n" "$W/$n" || return 1
	done
}
wait_for complete
quiet
if complete; then
	ok "whole-file writers: every file complete on the server"
else
	notok "whole-file writers: every file complete on the server"
	ls -la "$W" | sed 's/^/#   /'
fi
check "whole-file writers: no debris in the directory" \
    entries "$W" cp-new cp-over piped rs-new rs-over ed t1 t2 t3
touch "$WORK/watch.stop"
wait "$WATCH_PID"
wrc=$?
grep '^# OFFENCE' "$WORK/watch.out" | head -6
grep -E '^# (watch:|partial)' "$WORK/watch.out"
check "watcher never saw a partial file (stock does)" test "$wrc" = 0

# -------------------------------------------- 3. sshfs killed mid-write

K="$D/k"
mkdir -p "$K"
"$PY" "$MKPAYLOAD" "$IN/p-big" 64M killed
"$PY" "$MKPAYLOAD" "$K/old" 2M old
cp "$K/old" "$WORK/old.copy"
chown -R "$TEST_USER:" "$K"
mount_sshfs "$K" "$M2"
KPID=$SSHFS_PID
KLOG=$SESSION_LOG
(cd "$M2" && exec bash -c 'slowcat "$IN/p-big" > killed') >/dev/null 2>&1 &
W1=$!
(cd "$M2" && exec bash -c 'slowcat "$IN/p-big" > old') >/dev/null 2>&1 &
W2=$!
on_exit "reap $W1; reap $W2"
# Both uploads have data on the server (some WRITEs of each sent), or a
# writer gave up: then kill at once, before the other one completes.
written() { [ "$(grep -c "WRITE \"k/$1\"" "$KLOG")" -ge 8 ]; }
under_way() { written killed && written old; }
writers_ended() { ! kill -0 "$W1" 2>/dev/null || ! kill -0 "$W2" 2>/dev/null; }
wait_for eval 'under_way || writers_ended'
if under_way && ! writers_ended; then
	ok "sshfs killed mid-write: both uploads under way"
else
	notok "sshfs killed mid-write: both uploads under way"
	grep -E '^#|OPEN|CLOSE|STATUS|NO_SUCH' "$KLOG" | head -20 | sed 's/^/#   /'
fi
{ kill -9 "$KPID"; wait "$KPID"; } 2>/dev/null
# The session ends (ssh sees sshfs's socket close); the writers fail.
check "sshfs killed mid-write: the server session ends" \
    wait_for grep -q '=== server exit' "$KLOG"
kill -9 "$W1" "$W2" 2>/dev/null
wait "$W1" "$W2" 2>/dev/null
fusermount3 -u -z "$M2" 2>/dev/null || umount -l "$M2" 2>/dev/null
check "sshfs killed mid-write: the mount is gone" eval '! mountpoint -q "$M2"'
check "sshfs killed mid-write: the new file is not published (stock leaves it)" \
    test ! -e "$K/killed"
check "sshfs killed mid-write: the rewritten file keeps its old content" \
    cmp -s "$WORK/old.copy" "$K/old"
check "sshfs killed mid-write: no debris (but the kept upload)" \
    entries_partials "$K" old

# ------------------------------------------------------------ the end

mark "unmount"
fusermount3 -u "$M" 2>/dev/null || { sleep 1; fusermount3 -u "$M"; }
check "main mount unmounted" wait_for eval '! kill -0 '"$MAIN_PID"
wait "$MAIN_PID" 2>/dev/null
check "main session ended" wait_for grep -q '=== server exit' "$MAIN_LOG"
"$PY" "$SV" summarize "$MAIN_LOG" >"$WORK/trace-summary.txt"
{ echo "=== killed mount"; "$PY" "$SV" summarize "$KLOG"; } >>"$WORK/trace-summary.txt"
if [ -n "${SSHFS_SHOW_TRACE:-}" ]; then
	sed 's/^/# /' "$WORK/trace-summary.txt"
else
	verbose "what sshfs sent: $WORK/trace-summary.txt"
fi
exit 0
