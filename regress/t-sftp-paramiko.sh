#!/bin/bash
# paramiko (python3-paramiko, another SFTP implementation) against
# $SFTP_SERVER behind a real sshd: put and get (paramiko prefetches reads
# and pipelines writes), a file object written in chunks with
# set_pipelined(True) whose mode and times are set through the handle
# before close (they must survive the commit), reads through a write
# handle, and clients that close the transport without CLOSE or are
# killed: nothing published, nothing left.
tid=t-sftp-paramiko
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"
need_root

PY=/usr/bin/python3
CLIENT="$SRC/regress/clients/paramiko_client.py"
MKPAYLOAD="$SRC/regress/helpers/mkpayload.py"
"$PY" -c 'import paramiko' 2>/dev/null ||
    { skip "paramiko" "python3-paramiko not installed"; exit 0; }

D="$WORK/dst"
L="$WORK/local"
STAGE="$WORK/stage"
mkdir -p "$D" "$L" "$STAGE"
chmod 700 "$STAGE"
[ "$SFTP_SERVER" != "$STOCK_SFTP_SERVER" ] && SFTP_SERVER_ARGS="-t $STAGE"
start_sshd

pm() { "$PY" "$CLIENT" -p "$SSHD_PORT" -k "$WORK/sshd/client_key" "$@"; }
# run DESC MODE ARGS...: the client must succeed; its "ok" lines are
# shown, a failure is one "not ok" with the client's words.
run() {
	local desc=$1
	shift
	if pm "$@" >"$WORK/out" 2>"$WORK/err"; then
		sed 's/^ok /# client: /' "$WORK/out"
		ok "$desc"
	else
		notok "$desc: $(tail -3 "$WORK/err")"
	fi
}

"$PY" "$MKPAYLOAD" "$L/big" 12M big
head -c 70001 /dev/urandom >"$L/small"
: >"$L/empty"

# put and get.
for f in big small empty; do
	run "put $f" put "$L/$f" "$D/$f"
	check "put $f: same bytes" cmp -s "$L/$f" "$D/$f"
	run "get $f" get "$D/$f" "$L/got-$f"
	check "get $f: same bytes" cmp -s "$L/$f" "$L/got-$f"
done

# Chunked, pipelined writes with chmod/utime on the handle, onto a new
# name and over an existing file.
printf 'previous\n' >"$D/replaced"
for f in chunked replaced; do
	run "chunks onto $f: handle stat, chmod, utime before close" \
	    chunks "$L/big" "$D/$f" 40000 981173106
	check "chunks onto $f: same bytes" cmp -s "$L/big" "$D/$f"
	check "chunks onto $f: mode set on the handle survives the commit" \
	    test "$(stat -c %a "$D/$f")" = 640
	check "chunks onto $f: mtime set on the handle survives the commit" \
	    test "$(stat -c %Y "$D/$f")" = 981173106
done
run "read back through a write handle" readback "$D/readback"

wait_for sessions_gone
check "no debris after the completed uploads" \
    entries "$D" big small empty chunked replaced readback
check "staging directory empty after the completed uploads" entries "$STAGE"

# Names changed while an upload is in flight (sftp-server.8, ATOMIC
# UPLOADS): the session sees its own upload, so a REMOVE of the name
# removes it (nothing is published, a file it replaced is gone) and a
# RENAME moves it (published under the new name; a file it replaced loses
# its old name), as they would act on stock's file; a directory renamed
# meanwhile takes the upload with it; this session cannot remove a
# directory it is uploading into (Failure, as stock: stock's file is in
# it), and when another session removes it the close fails.  What another
# session does to the name acts on the disk, where the upload is not yet.
I="$WORK/inflight"
mkdir -p "$I/dmv" "$I/drm" "$I/drm2"
for n in old-rm old-rm2 old-mv old-pmv; do
	printf 'old %s\n' $n >"$I/$n"
done
pm inflight "$I" >"$WORK/out" 2>"$WORK/err" ||
    notok "in-flight renames: client failed: $(tail -3 "$WORK/err")"
# result SCENARIO STEP: the client's outcome.
result() { awk -v s="$1" -v t="$2" '$1 == s && $2 == t { print $3 }' "$WORK/out"; }
# holds FILE TEXT: FILE's content is TEXT.
holds() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
new() { printf 'new content of %s' "$1"; }
if [ "$SFTP_SERVER" = "$STOCK_SFTP_SERVER" ]; then
	sed 's/^/# stock: /' "$WORK/out"
	skip "uploads in flight: renames and removes" "stock server"
else
	expect() {
		local label=$1 act=$2 close=$3
		shift 3
		if [ "$(result "$label" act)" = "$act" ] &&
		    [ "$(result "$label" close)" = "$close" ] && "$@"; then
			ok "in flight: $label: $act, close $close, result as documented"
		else
			notok "in flight: $label: $(grep "^$label " "$WORK/out" | tr '\n' ' ')"
		fi
	}
	expect remove-new ok ok test ! -e "$I/new-rm"
	expect remove-old ok ok test ! -e "$I/old-rm"
	expect rename-new ok ok \
	    eval 'holds "$I/new-mv.moved" "$(new new-mv)" && [ ! -e "$I/new-mv" ]'
	expect rename-old ok ok \
	    eval 'holds "$I/old-mv.moved" "$(new old-mv)" && [ ! -e "$I/old-mv" ]'
	expect posix-rename-old ok ok \
	    eval 'holds "$I/old-pmv.moved" "$(new old-pmv)" && [ ! -e "$I/old-pmv" ]'
	expect rename-dir ok ok \
	    eval 'holds "$I/dmv.moved/f" "$(new dmv/f)" && [ ! -e "$I/dmv" ]'
	expect rmdir-dir "error:Failure" ok holds "$I/drm/f" "$(new drm/f)"
	expect rmdir-dir-other-session ok "error:Commit" test ! -e "$I/drm2"
	expect remove-old-other-session ok ok holds "$I/old-rm2" "$(new old-rm2)"
	expect excl-raced ok "error:Commit" \
	    holds "$I/excl-new" "written by the other session"
	check "exclusive create of an existing name fails at open" \
	    test "$(result excl-existing open)" != ok -a -n "$(result excl-existing open)"
	check "in flight: no debris" entries "$I" new-mv.moved old-mv.moved \
	    old-pmv.moved dmv.moved drm old-rm2 excl-new
fi

# The transport closes without CLOSE.
printf 'previous content\n' >"$D/old"
for f in new old; do
	if pm vanish "$L/big" "$D/$f" >"$WORK/out" 2>"$WORK/err" &&
	    grep -q written "$WORK/out"; then
		ok "vanish onto $f: half written, transport closed"
	else
		notok "vanish onto $f: $(cat "$WORK/err")"
	fi
done
wait_for sessions_gone || verbose "sshd sessions still running"
check "vanished client: new name not published" test ! -e "$D/new"
check "vanished client: previous content kept" \
    test "$(cat "$D/old")" = "previous content"

# Killed with its writes acknowledged (exec: $! must be the client, not
# a subshell around it).
(exec "$PY" "$CLIENT" -p "$SSHD_PORT" -k "$WORK/sshd/client_key" \
    hang "$L/big" "$D/killed") >"$WORK/hang.out" 2>&1 &
pid=$!
on_exit "kill -9 $pid"
wait_for grep -q written "$WORK/hang.out" || verbose "client never wrote"
kill -9 $pid
wait $pid 2>/dev/null
wait_for sessions_gone || notok "sshd sessions still running after the kill"
check "killed client: nothing published" test ! -e "$D/killed"
check "no debris after the vanished clients" \
    entries "$D" big small empty chunked replaced readback old
check "staging directory: nothing but the vanished clients' kept uploads" \
    entries_partials "$STAGE"
exit 0
