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
check "staging directory empty after the vanished clients" entries "$STAGE"
exit 0
