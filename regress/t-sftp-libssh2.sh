#!/bin/bash
# libssh2 (a client library that pipelines writes: one call sends many
# WRITE requests before reading a reply) against $SFTP_SERVER behind a real
# sshd: large pipelined uploads, out-of-order offsets and a hole must give
# exactly the sent content; a client that vanishes without CLOSE (exits,
# or is killed) must publish nothing and leave nothing behind.
tid=t-sftp-libssh2
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"
need_root

PY=/usr/bin/python3
MKPAYLOAD="$SRC/regress/helpers/mkpayload.py"
CLIENT="$OBJ/regress/clients/libssh2_upload"
if [ ! -x "$CLIENT" ]; then
	# Makefile not regenerated yet: build a private copy.
	CLIENT="$WORK/libssh2_upload"
	cc -I"$OBJ" -I"$SRC" -DHAVE_CONFIG_H -O2 -Wall -o "$CLIENT" \
	    "$SRC/regress/clients/libssh2_upload.c" -lssh2 ||
	    { skip "libssh2 client" "cannot build (libssh2-1-dev missing?)"; exit 0; }
fi

D="$WORK/dst"
STAGE="$WORK/stage"
mkdir -p "$D" "$STAGE"
chmod 700 "$STAGE"
if [ "$SFTP_SERVER" != "$STOCK_SFTP_SERVER" ]; then
	SFTP_SERVER_ARGS="-t $STAGE"
fi
start_sshd

KEYS=(-k "$WORK/sshd/client_key" -K "$WORK/sshd/client_key.pub")
up() { "$CLIENT" -p "$SSHD_PORT" -u root "${KEYS[@]}" "$@"; }

# 1. Pipelined sequential writes: 4 MiB and 8 MiB per call (about 140
#    and 280 WRITE requests of 30000 bytes in flight).
"$PY" "$MKPAYLOAD" "$WORK/p6m" 6M seed6
for blk in 4194304 8388608; do
	rm -f "$D/p6m"
	if up -m put -b $blk "$WORK/p6m" "$D/p6m" 2>"$WORK/err"; then
		check "pipelined put, $blk bytes per call: exact content" \
		    cmp -s "$WORK/p6m" "$D/p6m"
	else
		notok "pipelined put, $blk bytes per call: $(cat "$WORK/err")"
	fi
done

# 2. Out-of-order offsets and a hole: 3 MiB in 256 KiB blocks, the second
#    half written backwards first; block 5 is all zeros and never sent.
"$PY" - "$WORK/scatter" <<'PYEOF'
import sys, random
blk = 256 * 1024
r = random.Random(7)
data = bytearray(r.randbytes(12 * blk))
data[5 * blk:6 * blk] = bytes(blk)
open(sys.argv[1], "wb").write(data)
PYEOF
if up -m scatter -b 262144 "$WORK/scatter" "$D/scatter" 2>"$WORK/err"; then
	check "out-of-order writes with a hole: exact content" \
	    cmp -s "$WORK/scatter" "$D/scatter"
else
	notok "out-of-order writes with a hole: $(cat "$WORK/err")"
fi
# Ends on a small last block, odd size.
head -c 1000003 "$WORK/p6m" >"$WORK/odd"
if up -m scatter -b 65536 "$WORK/odd" "$D/odd" 2>"$WORK/err"; then
	check "out-of-order writes, odd size: exact content" \
	    cmp -s "$WORK/odd" "$D/odd"
else
	notok "out-of-order writes, odd size: $(cat "$WORK/err")"
fi
wait_for sessions_gone
check "no debris after the completed uploads" \
    entries "$D" p6m scatter odd
check "staging directory empty after the completed uploads" entries "$STAGE"

# 3. The client vanishes without CLOSE after writing half the file.
printf 'previous content\n' >"$D/old"
up -m vanish "$WORK/p6m" "$D/new" 2>"$WORK/err" ||
    verbose "vanish(new): client said $(cat "$WORK/err")"
up -m vanish "$WORK/p6m" "$D/old" 2>"$WORK/err" ||
    verbose "vanish(old): client said $(cat "$WORK/err")"
wait_for sessions_gone || verbose "sshd sessions still running"
check "vanished client: new name not published" test ! -e "$D/new"
check "vanished client: previous content kept" \
    test "$(cat "$D/old")" = "previous content"
check "vanished client: no debris in destination" \
    entries "$D" p6m scatter odd old
check "vanished client: staging directory: nothing but its kept upload" \
    entries_partials "$STAGE"

# 4. The client is killed (SIGKILL) with its writes acknowledged.
# exec: $! must be the client, not a subshell around it.
(exec "$CLIENT" -p "$SSHD_PORT" -u root "${KEYS[@]}" -m hang "$WORK/p6m" \
    "$D/killed") >"$WORK/hang1.out" 2>"$WORK/err" &
pid1=$!
(exec "$CLIENT" -p "$SSHD_PORT" -u root "${KEYS[@]}" -m hang "$WORK/p6m" \
    "$D/old") >"$WORK/hang2.out" 2>&1 &
pid2=$!
on_exit "kill -9 $pid1 $pid2"
wait_for grep -q written "$WORK/hang1.out" || verbose "client 1 never wrote"
wait_for grep -q written "$WORK/hang2.out" || verbose "client 2 never wrote"
kill -9 "$pid1" "$pid2"
wait "$pid1" "$pid2" 2>/dev/null
wait_for sessions_gone || verbose "sshd sessions still running"
check "killed client: new name not published" test ! -e "$D/killed"
check "killed client: previous content kept" \
    test "$(cat "$D/old")" = "previous content"
check "killed client: no debris in destination" \
    entries "$D" p6m scatter odd old
check "killed client: staging directory: nothing but its kept upload" \
    entries_partials "$STAGE"
exit 0
