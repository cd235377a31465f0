#!/bin/bash
# curl's SFTP client (libcurl over libssh2, as scripts use it) against
# $SFTP_SERVER behind a real sshd, side by side with stock's server:
# upload, download, resume (-C -, an APPEND open), --append,
# --ftp-create-dirs and quote commands (rename, chmod, rm) must leave the
# same files with either server.  A curl killed mid-upload publishes
# nothing.  A curl that gives up (--max-time) closes its handle first:
# SFTP has no end-of-upload marker, so that part is published (the
# documented limit, sftp-server.8 ATOMIC UPLOADS); shown, not judged.
tid=t-sftp-curl
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"
need_root
curl -V 2>/dev/null | grep -q '^Protocols:.* sftp' ||
    { skip "curl" "no curl with sftp"; exit 0; }

L="$WORK/local"
STAGE="$WORK/stage"
mkdir -p "$L" "$STAGE"
chmod 700 "$STAGE"
head -c 5000000 /dev/urandom >"$L/f"
printf 'appended\n' >"$L/tail"
head -c 1000000 "$L/f" >"$L/part"

# cu ARGS...: curl to the sshd of start_sshd as root.
cu() {
	curl -s -S -k --key "$WORK/sshd/client_key" \
	    --pubkey "$WORK/sshd/client_key.pub" "$@"
}

# state DIR: names, types, sizes, modes, checksums.
state() {
	(cd "$1" && find . -mindepth 1 -printf '%p %y %s %m\n' | sort &&
	    find . -type f -exec md5sum {} + | sort -k2)
}

# The same operations with each server, into the same path.
D="$WORK/d"
SERVER_UNDER_TEST=$SFTP_SERVER
for who in ours stock; do
	SFTP_SERVER=$SERVER_UNDER_TEST
	SFTP_SERVER_ARGS=
	if [ $who = stock ]; then
		SFTP_SERVER=$STOCK_SFTP_SERVER
	elif [ "$SFTP_SERVER" != "$STOCK_SFTP_SERVER" ]; then
		SFTP_SERVER_ARGS="-t $STAGE"
	fi
	rm -rf "$D"
	mkdir -p "$D"
	cp "$L/part" "$D/resume"
	cp "$L/f" "$D/app"
	start_sshd
	U="sftp://root@127.0.0.1:$SSHD_PORT"
	{
		cu -T "$L/f" "$U$D/up"; echo "upload $?"
		cu -o "$WORK/down-$who" "$U$D/up"; echo "download $?"
		cmp -s "$L/f" "$WORK/down-$who"; echo "download content $?"
		cu -C - -T "$L/f" "$U$D/resume"; echo "resume $?"
		cu --append -T "$L/tail" "$U$D/app"; echo "append $?"
		cu --ftp-create-dirs -T "$L/tail" "$U$D/new/dir/file"
		echo "create-dirs $?"
		cu -Q "rename $D/up $D/up2" -Q "chmod 600 $D/up2" \
		    -Q "rm $D/resume-gone" -T "$L/tail" "$U$D/q" 2>/dev/null
		echo "quote with a failing rm $?"
		cu -Q "rename $D/up2 $D/up3" -Q "chmod 640 $D/up3" \
		    -T "$L/tail" "$U$D/q2"
		echo "quote $?"
	} >"$WORK/results-$who" 2>&1
	wait_for sessions_gone
	state "$D" >"$WORK/state-$who"
	kill "$SSHD_PID"
done
if cmp -s "$WORK/results-ours" "$WORK/results-stock" &&
    cmp -s "$WORK/state-ours" "$WORK/state-stock"; then
	ok "curl: same results and files as with stock ($(grep -c ' 0$' "$WORK/results-ours") operations succeeded)"
else
	notok "curl: differs from stock"
	diff -u "$WORK/results-stock" "$WORK/results-ours" | sed 's/^/#   /'
	diff -u "$WORK/state-stock" "$WORK/state-ours" | sed 's/^/#   /'
fi
check "curl: resume completed the file" cmp -s "$L/f" "$D/resume"
check "curl: append" sh -c "cat '$L/f' '$L/tail' | cmp -s - '$D/app'"
check "curl: upload content" cmp -s "$L/f" "$D/up3"
# (The failing rm stopped curl before its upload of q.)
check "curl: no debris" entries "$D" app new q2 resume up3
check "curl: staging directory empty" entries "$STAGE"

# Killed mid-upload: nothing published; given up on: the part it sent.
SFTP_SERVER=$SERVER_UNDER_TEST
SFTP_SERVER_ARGS=
[ "$SFTP_SERVER" != "$STOCK_SFTP_SERVER" ] && SFTP_SERVER_ARGS="-t $STAGE"
start_sshd
U="sftp://root@127.0.0.1:$SSHD_PORT"
rm -rf "$D"
mkdir -p "$D"
(exec curl -s -k --key "$WORK/sshd/client_key" \
    --pubkey "$WORK/sshd/client_key.pub" --limit-rate 1M \
    -T "$L/f" "$U$D/killed") &
pid=$!
on_exit "kill -9 $pid"
# Kill once the server holds the upload open (a few hundred KiB in).
sleep 1.5
kill -9 $pid
wait $pid 2>/dev/null
wait_for sessions_gone || notok "curl: session still running after the kill"
check "curl killed mid-upload: nothing published" test ! -e "$D/killed"
cu --limit-rate 1M --max-time 1 -T "$L/f" "$U$D/timeout" 2>/dev/null
verbose "curl --max-time 1 (exit $?) sends CLOSE: published $(stat -c %s "$D/timeout" 2>/dev/null || echo nothing) of 5000000 bytes (the documented limit)"
wait_for sessions_gone
check "curl: no debris after the killed upload" entries "$D" \
    $(test -e "$D/timeout" && echo timeout)
check "curl: staging directory: nothing but the killed upload, kept for a resume" \
    entries_partials "$STAGE"
exit 0
