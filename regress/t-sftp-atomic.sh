#!/bin/bash
# The contract, as a processing script sees it: regress/helpers/watch.py
# reads the destination directory (inotify and polling) while large
# uploads run through a real sshd with sftp, scp in its SFTP mode and the
# libssh2 client; some are SIGKILLed mid-way (clients, and one server),
# others replace existing files, race for one name, or replace one name
# over and over.  The watcher must never see a partial file; killed
# uploads publish nothing and keep the previous content; nothing is left
# in the destination or the staging directory.  Against stock's server
# (SFTP_SERVER=/usr/lib/openssh/sftp-server) this test fails.
tid=t-sftp-atomic
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"
need_root

PY=/usr/bin/python3
MKPAYLOAD="$SRC/regress/helpers/mkpayload.py"
WATCH="$SRC/regress/helpers/watch.py"
L2="$OBJ/regress/clients/libssh2_upload"
if [ ! -x "$L2" ]; then
	L2="$WORK/libssh2_upload"
	cc -I"$OBJ" -I"$SRC" -DHAVE_CONFIG_H -O2 -o "$L2" \
	    "$SRC/regress/clients/libssh2_upload.c" -lssh2 2>/dev/null ||
	    L2=""
fi

D="$WORK/dst"
L="$WORK/local"
STAGE="$WORK/stage"
mkdir -p "$D" "$L" "$STAGE"
chmod 700 "$STAGE"
[ "$SFTP_SERVER" != "$STOCK_SFTP_SERVER" ] && SFTP_SERVER_ARGS="-t $STAGE"
start_sshd
KEYS=(-k "$WORK/sshd/client_key" -K "$WORK/sshd/client_key.pub")
# Slow enough to be killed half-way: 16 MiB at 1 MB/s.  (At 4 MB/s an
# upload started first could finish before the sixth session had even
# logged in, on a loaded machine where each login took over a second.)
RATE=8000

"$PY" "$MKPAYLOAD" "$L/big" 16M big
"$PY" "$MKPAYLOAD" "$L/big2" 16M big2
for i in 1 2 3 4 5; do
	"$PY" "$MKPAYLOAD" "$L/mid$i" 3M "mid$i"
done
# Previous content of the names that get replaced.
REPLACED="rep-srvKILL rep-srvTERM rep-srvHUP rep-sftp-kill rep-scp-kill rep-l2-kill rep-sftp-ok rep-scp-ok churn"
for n in $REPLACED; do
	"$PY" "$MKPAYLOAD" "$L/old-$n" 200K "old-$n"
	cp "$L/old-$n" "$D/$n"
done

# bg_sftp/bg_scp/bg_l2 SRC DEST: slow background uploads (exec, so that $! is the
# client itself), PIDs collected in $pids.
pids=""
bg_sftp() {
	printf 'put %s %s\n' "$1" "$2" >"$WORK/batch-${2##*/}"
	(exec sftp -q -l $RATE -b "$WORK/batch-${2##*/}" $SSH_OPTS root@localhost) \
	    >"$WORK/out-${2##*/}" 2>&1 &
	pids="$pids $!"
}
bg_scp() {
	(exec scp -q -l $RATE $SSH_OPTS "$1" root@localhost:"$2") \
	    >"$WORK/out-${2##*/}" 2>&1 &
	pids="$pids $!"
}
bg_l2() {
	[ -n "$L2" ] || return 0
	(exec "$L2" -p "$SSHD_PORT" -u root "${KEYS[@]}" -m hang "$1" "$2") \
	    >"$WORK/out-${2##*/}" 2>&1 &
	pids="$pids $!"
}
on_exit 'kill -9 $pids'

# The sftp-server processes under our sshd (found by parentage).
servers() {
	local p
	ps -eo pid=,ppid=,comm= | awk -v root="$SSHD_PID" '
	    { parent[$1] = $2; comm[$1] = $3 }
	    END { for (p in parent) { q = p
		while (q in parent && q != root && q > 1) q = parent[q]
		if (q == root && comm[p] ~ /sftp-server/) print p } }'
}
# writing: at least $want (1) of the servers hold a file below $D or
# $STAGE open: uploads in flight (O_TMPFILE shows as "DIR/#N (deleted)").
writing() {
	local p n=0
	for p in $(servers); do
		ls -l /proc/"$p"/fd 2>/dev/null | grep -q -e " $D/" -e " $STAGE/" &&
		    n=$((n + 1))
	done
	[ $n -ge "${want:-1}" ]
}

# The watcher.
"$PY" "$WATCH" --interval 2 --ready "$WORK/ready" --stop "$WORK/stop" "$D" \
    >"$WORK/watch.out" 2>&1 &
WATCH_PID=$!
on_exit "kill $WATCH_PID"
wait_for test -e "$WORK/ready" || fail "watcher did not start"

# 1. A server killed mid-upload (SIGKILL), or told to stop (SIGTERM,
#    SIGHUP), each in a session of its own to know which server it is.
for sig in KILL TERM HUP; do
	for n in new-srv$sig rep-srv$sig; do
		bg_sftp "$L/big" "$D/$n"
		wait_for writing || verbose "no server wrote ($n)"
		srv=$(servers)
		verbose "SIG$sig to server $srv ($n)"
		[ -n "$srv" ] && kill -$sig $srv
		wait_for sessions_gone || verbose "session of $n still running"
	done
done

# 2. Clients killed mid-upload: sftp, scp (SFTP mode), libssh2; new names
#    and replacements.
bg_sftp "$L/big" "$D/new-sftp-kill"
bg_sftp "$L/big" "$D/rep-sftp-kill"
bg_scp "$L/big" "$D/new-scp-kill"
bg_scp "$L/big" "$D/rep-scp-kill"
bg_l2 "$L/big" "$D/new-l2-kill"
bg_l2 "$L/big" "$D/rep-l2-kill"
nkill=6
[ -n "$L2" ] || nkill=4
want=$nkill wait_for writing || verbose "not all $nkill uploads started"
sleep 0.5
exec 3>&2 2>/dev/null	# no "Killed" job notices
kill -9 $pids
wait $pids
exec 2>&3 3>&-
pids=""
wait_for sessions_gone || verbose "sshd sessions still running after the kills"

# 3. Complete uploads at full speed, in parallel: new names, replacements,
#    three sessions racing for one name, and one name replaced five times
#    in a row.
RATE=0
up_sftp() {
	printf 'put %s %s\n' "$1" "$2" >"$WORK/batch-$3"
	sftp -q -b "$WORK/batch-$3" $SSH_OPTS root@localhost >"$WORK/out-$3" 2>&1 ||
	    echo "sftp $2: $(cat "$WORK/out-$3")" >>"$WORK/failures"
}
: >"$WORK/failures"
(up_sftp "$L/big" "$D/new-sftp-ok" a) &
pids="$pids $!"
(up_sftp "$L/big" "$D/rep-sftp-ok" b) &
pids="$pids $!"
(scp -q $SSH_OPTS "$L/big" root@localhost:"$D/new-scp-ok" ||
    echo "scp new-scp-ok" >>"$WORK/failures") &
pids="$pids $!"
(scp -q $SSH_OPTS "$L/big2" root@localhost:"$D/rep-scp-ok" ||
    echo "scp rep-scp-ok" >>"$WORK/failures") &
pids="$pids $!"
if [ -n "$L2" ]; then
	("$L2" -p "$SSHD_PORT" -u root "${KEYS[@]}" -m put "$L/big2" "$D/new-l2-ok" \
	    >/dev/null 2>&1 || echo "libssh2 new-l2-ok" >>"$WORK/failures") &
	pids="$pids $!"
fi
for i in 1 2 3; do
	(up_sftp "$L/mid$i" "$D/race" "race$i") &
	pids="$pids $!"
done
(for i in 1 2 3 4 5; do up_sftp "$L/mid$i" "$D/churn" "churn$i"; done) &
pids="$pids $!"
# (Not a bare "wait": sshd and the watcher are children too.)
wait $pids
pids=""
wait_for sessions_gone || verbose "sshd sessions still running"

watch_verdict
sed 's/^/# failed: /' "$WORK/failures"
check "every complete upload succeeded" test ! -s "$WORK/failures"

for n in new-srvKILL new-srvTERM new-srvHUP new-sftp-kill new-scp-kill new-l2-kill; do
	check "killed upload $n: nothing published" test ! -e "$D/$n"
done
for n in rep-srvKILL rep-srvTERM rep-srvHUP rep-sftp-kill rep-scp-kill rep-l2-kill; do
	check "killed replacement $n: previous content kept" cmp -s "$L/old-$n" "$D/$n"
done
check "sftp: new file complete" cmp -s "$L/big" "$D/new-sftp-ok"
check "sftp: replacement complete" cmp -s "$L/big" "$D/rep-sftp-ok"
check "scp: new file complete" cmp -s "$L/big" "$D/new-scp-ok"
check "scp: replacement complete" cmp -s "$L/big2" "$D/rep-scp-ok"
if [ -n "$L2" ]; then
	check "libssh2: new file complete" cmp -s "$L/big2" "$D/new-l2-ok"
else
	skip "libssh2 uploads" "client not built"
fi
check "race for one name: exactly one complete upload" \
    sh -c "cmp -s '$L/mid1' '$D/race' || cmp -s '$L/mid2' '$D/race' || cmp -s '$L/mid3' '$D/race'"
check "churn: the last replacement" cmp -s "$L/mid5" "$D/churn"
expected="new-sftp-ok rep-sftp-ok new-scp-ok rep-scp-ok race $REPLACED"
[ -n "$L2" ] && expected="$expected new-l2-ok"
# shellcheck disable=SC2086
# inotify consumers: every published file gave IN_CREATE or IN_MOVED_TO
# and exactly one IN_CLOSE_WRITE per upload (on complete content: the
# watcher checked the file at each event).
# events NAME: the watcher's event summary for NAME.
events() { sed -n "s|^# name $D/$1 .* events \([^ ]*\).*|\1|p" "$WORK/watch.out"; }
for n in new-sftp-ok rep-sftp-ok new-scp-ok rep-scp-ok ${L2:+new-l2-ok}; do
	e=$(events $n)
	case ",$e," in
	*,close_write=1,*create=1,* | *,close_write=1,*moved_to=1,*)
		ok "inotify: $n: $e" ;;
	*)	notok "inotify: $n: $e (want close_write=1 and create or moved_to)" ;;
	esac
done
e=$(events churn)
check "inotify: churn: five IN_CLOSE_WRITE for five uploads ($e)" \
    test "$(echo "$e" | sed -n 's/.*close_write=\([0-9]*\).*/\1/p')" = 5
check "no debris in the destination" entries "$D" \
    $(printf '%s\n' $expected | sort -u)
# Uploads whose connection was lost (a killed client, a server stopped by
# SIGTERM or SIGHUP) are kept for a resume in the user's store in the
# staging directory; a server killed outright, and scp, keep nothing.
if kept=$(partial_stores "$STAGE"); then
	ok "staging directory: no debris beside $kept kept partial uploads"
else
	notok "staging directory: debris beside the partial stores"
fi
check "kept partial uploads: at most the ten whose connection was lost" \
    test "$kept" -le 10
check "a server killed outright keeps no partial data" \
    test -z "$(find "$STAGE" -name 'd.*srvKILL')"
exit 0
