#!/bin/bash
# Dropbear, the other sshd that runs an external sftp-server: its path is
# built in (/usr/lib/sftp-server, on Debian a link to OpenSSH's), and its
# sessions find scp on a fixed PATH.  Dropbear runs here in a private
# mount namespace in which $SFTP_SERVER is bind-mounted over OpenSSH's
# sftp-server and $SCP over /usr/bin/scp, so the host's files are never
# touched; the staging directory reaches both through the environment
# (dropbear -e passes its own on).  OpenSSH's sftp, scp and scp -O log in
# as the unprivileged user on 127.0.0.1: uploads, replacements and
# downloads must work, uploads killed mid-way must publish nothing and
# keep the previous content, and a watcher reading the destination must
# never see a partial file.  Against stock (SFTP_SERVER=
# /usr/lib/openssh/sftp-server SCP=/usr/bin/scp) the atomicity checks fail.
tid=t-dropbear
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"
need_root

DROPBEAR=$(command -v dropbear || echo /usr/sbin/dropbear)
DROPBEARKEY=$(command -v dropbearkey || echo /usr/bin/dropbearkey)
[ -x "$DROPBEAR" ] && [ -x "$DROPBEARKEY" ] ||
    { skip "$tid" "dropbear not installed (dropbear-bin)"; exit 0; }
unshare -m --propagation private true 2>/dev/null ||
    { skip "$tid" "no mount namespaces here"; exit 0; }
# What Dropbear runs for the sftp subsystem, as the file it resolves to.
DB_SFTP=$(readlink -f /usr/lib/sftp-server)
[ -f "$DB_SFTP" ] || { skip "$tid" "no /usr/lib/sftp-server for dropbear"; exit 0; }
[ -f /usr/bin/scp ] || { skip "$tid" "no /usr/bin/scp to stand in for"; exit 0; }
test_user_setup

PY=/usr/bin/python3
MKPAYLOAD="$SRC/regress/helpers/mkpayload.py"
WATCH="$SRC/regress/helpers/watch.py"
DB="$WORK/db"
D="$WORK/dst"
L="$WORK/local"
STAGE="$WORK/stage"
mkdir -p "$DB/dotssh" "$D" "$L" "$STAGE"
chown "$TEST_USER" "$D" "$STAGE" "$DB/dotssh"
chmod 700 "$STAGE" "$DB/dotssh"
chmod 755 "$D" "$L"

"$DROPBEARKEY" -t ed25519 -f "$DB/host_key" >/dev/null 2>&1 ||
    fail "dropbearkey"
ssh-keygen -q -t ed25519 -N '' -f "$DB/user_key" >/dev/null || fail "client key"
chown "$TEST_USER" "$DB/user_key"
chmod 600 "$DB/user_key"
install -o "$TEST_USER" -m 600 "$DB/user_key.pub" "$DB/dotssh/authorized_keys"
# The mount point for the user's ~/.ssh inside dropbear's namespace.
if [ ! -d "$TEST_HOME/.ssh" ]; then
	install -d -o "$TEST_USER" -m 700 "$TEST_HOME/.ssh"
	on_exit "rmdir '$TEST_HOME/.ssh' 2>/dev/null"
fi

PORT=$(free_port)
# unshare and sh exec, so the PID is dropbear's own.
unshare -m --propagation private sh -c '
	set -e
	mount --bind "$1" "$2"
	mount --bind "$3" /usr/bin/scp
	mount --bind "$4" "$5"
	shift 5
	exec "$@"' sh "$SFTP_SERVER" "$DB_SFTP" "$SCP" "$DB/dotssh" \
    "$TEST_HOME/.ssh" env ATOMIC_UPLOAD_TMPDIR="$STAGE" \
    "$DROPBEAR" -F -E -e -s -w -p "127.0.0.1:$PORT" -r "$DB/host_key" \
    -P "$DB/dropbear.pid" >"$DB/dropbear.log" 2>&1 &
DB_PID=$!
on_exit "kill $DB_PID"

O=(-o "HostName=127.0.0.1" -o "Port=$PORT" -o "IdentityFile=$DB/user_key"
    -o IdentitiesOnly=yes -o StrictHostKeyChecking=no
    -o UserKnownHostsFile=/dev/null -o GlobalKnownHostsFile=/dev/null
    -o LogLevel=ERROR -o BatchMode=yes)
H="$TEST_USER@db"
wait_for as_user ssh "${O[@]}" "$H" true ||
    { sed 's/^/# /' "$DB/dropbear.log" | tail -20; fail "dropbear did not come up"; }
check "a dropbear session runs the scp bound over /usr/bin/scp" \
    test "$(as_user ssh "${O[@]}" "$H" 'cksum < /usr/bin/scp')" = "$(cksum < "$SCP")"

# Payloads, and the previous content of the names that get replaced.
"$PY" "$MKPAYLOAD" "$L/big" 12M big
"$PY" "$MKPAYLOAD" "$L/mid" 2M mid
for n in rep-sftp rep-scp rep-scpO rep-sftp-kill rep-scpO-kill; do
	"$PY" "$MKPAYLOAD" "$L/old-$n" 100K "old-$n"
	install -o "$TEST_USER" -m 644 "$L/old-$n" "$D/$n"
done
chmod 644 "$L"/*

"$PY" "$WATCH" --interval 2 --ready "$WORK/ready" --stop "$WORK/stop" "$D" \
    >"$WORK/watch.out" 2>&1 &
WATCH_PID=$!
on_exit "kill $WATCH_PID"
wait_for test -e "$WORK/ready" || fail "watcher did not start"

# Sessions: the processes below dropbear (by parentage, never by name).
sessions() {
	ps -eo pid=,ppid= | awk -v root="$DB_PID" '
	    { parent[$1] = $2 }
	    END { for (p in parent) { q = parent[p]
		while (q in parent && q != root && q > 1) q = parent[q]
		if (q == root) print p } }'
}
no_sessions() { [ -z "$(sessions)" ]; }
# writing: a session process holds a file below $D or $STAGE open.
writing() {
	local p
	for p in $(sessions); do
		ls -l /proc/"$p"/fd 2>/dev/null |
		    grep -q -e " $D/" -e " $STAGE/" && return 0
	done
	return 1
}

# 1. Uploads killed half-way (about 3 s into 24 s): sftp and scp -O, new
#    names and replacements.  sftp's own ^C would send CLOSE; a kill does
#    not, like a dropped connection.
# bg_as_user CMD...: as_user in the background, exec'd all the way down
# (setpriv, env, the client), so that $! is the client itself.
bg_as_user() {
	(exec setpriv --reuid="$TEST_USER" --regid="$TEST_USER" --init-groups \
	    --reset-env -- env PATH=/usr/local/bin:/usr/bin:/bin "$@") &
}
# staging: a session process holds a staged file open:
# an O_TMPFILE ("#inode (deleted)") in the destination or staging directory, or a
# file in a private directory in the staging directory.
staging() {
	local p
	for p in $(sessions); do
		ls -l /proc/"$p"/fd 2>/dev/null |
		    grep -q -e " $D/#[0-9]* (deleted)" -e " $STAGE/#[0-9]* (deleted)" \
		    -e " $STAGE/\.au-[A-Za-z0-9]*/upload" &&
		    return 0
	done
	return 1
}
kill_upload() {
	local what=$1 dest=$2 pid
	case $what in
	sftp)	printf 'put %s %s\n' "$L/big" "$D/$dest" >"$WORK/batch-$dest"
		bg_as_user sftp -q -l 4000 -b "$WORK/batch-$dest" "${O[@]}" "$H" \
		    >"$WORK/out-$dest" 2>&1 ;;
	scpO)	bg_as_user scp -O -q -l 4000 "${O[@]}" "$L/big" "$H:$D/$dest" \
		    >"$WORK/out-$dest" 2>&1 ;;
	esac
	pid=$!
	wait_for writing || verbose "$dest: no session wrote"
	sleep 1
	check "$dest: staged, nothing at the name" staging
	check "$dest: the name shows no new content mid-upload" \
	    eval "test ! -e '$D/$dest' || cmp -s '$L/old-$dest' '$D/$dest'"
	kill -9 "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	wait_for no_sessions || verbose "$dest: session still running"
}
kill_upload sftp new-sftp-kill
kill_upload sftp rep-sftp-kill
kill_upload scpO new-scpO-kill
kill_upload scpO rep-scpO-kill
check "killed sftp upload of a new name: nothing published" test ! -e "$D/new-sftp-kill"
check "killed scp -O upload of a new name: nothing published" test ! -e "$D/new-scpO-kill"
check "killed sftp replacement: previous content kept" cmp -s "$L/old-rep-sftp-kill" "$D/rep-sftp-kill"
check "killed scp -O replacement: previous content kept" cmp -s "$L/old-rep-scpO-kill" "$D/rep-scpO-kill"

# 2. Complete uploads: sftp (with -p), scp in its SFTP mode, scp -O; new
#    names and replacements.
touch -d '2001-02-03 04:05:06' "$L/mid"
printf 'put -p %s %s\nput %s %s\n' "$L/mid" "$D/new-sftp" "$L/big" "$D/rep-sftp" \
    >"$WORK/batch-ok"
check "sftp put (new name, -p) and put (replacement)" eval \
    'as_user sftp -q -b "$WORK/batch-ok" "${O[@]}" "$H" >/dev/null' 
check "sftp: new file complete" cmp -s "$L/mid" "$D/new-sftp"
check "sftp put -p: modification time kept through the commit" \
    test "$(stat -c %Y "$D/new-sftp")" = "$(stat -c %Y "$L/mid")"
check "sftp: replacement complete" cmp -s "$L/big" "$D/rep-sftp"
check "scp (SFTP mode) upload and replacement" eval \
    'as_user scp -q "${O[@]}" "$L/mid" "$H:$D/new-scp" &&
     as_user scp -q "${O[@]}" "$L/big" "$H:$D/rep-scp"'
check "scp (SFTP mode): files complete" eval \
    'cmp -s "$L/mid" "$D/new-scp" && cmp -s "$L/big" "$D/rep-scp"'
check "scp -O upload and replacement" eval \
    'as_user scp -O -q -p "${O[@]}" "$L/mid" "$H:$D/new-scpO" &&
     as_user scp -O -q "${O[@]}" "$L/big" "$H:$D/rep-scpO"'
check "scp -O: files complete" eval \
    'cmp -s "$L/mid" "$D/new-scpO" && cmp -s "$L/big" "$D/rep-scpO"'
check "scp -O -p: modification time kept" \
    test "$(stat -c %Y "$D/new-scpO")" = "$(stat -c %Y "$L/mid")"
check "replaced files keep their owner" \
    test "$(stat -c %U "$D/rep-sftp" "$D/rep-scp" "$D/rep-scpO" | sort -u)" = "$TEST_USER"

# 3. Downloads through both programs.
rm -rf "$WORK/get"
install -d -o "$TEST_USER" "$WORK/get"
printf 'get %s %s\n' "$D/rep-sftp" "$WORK/get/a" >"$WORK/batch-get"
check "sftp get and scp -O download" eval \
    'as_user sftp -q -b "$WORK/batch-get" "${O[@]}" "$H" >/dev/null &&
     as_user scp -O -q "${O[@]}" "$H:$D/new-scpO" "$WORK/get/b"'
check "downloads complete" eval \
    'cmp -s "$L/big" "$WORK/get/a" && cmp -s "$L/mid" "$WORK/get/b"'

# 4. A permission the unprivileged user lacks is refused, and leaves
#    nothing behind.
install -d -m 755 "$D/rootonly"
check "upload into a directory the user cannot write fails" \
    eval '! as_user scp -O -q "${O[@]}" "$L/mid" "$H:$D/rootonly/x" 2>/dev/null'
check "... and leaves it empty" entries "$D/rootonly"
rmdir "$D/rootonly"

wait_for no_sessions || verbose "dropbear sessions still running"
watch_verdict
check "no debris in the destination" entries "$D" new-sftp rep-sftp new-scp \
    rep-scp new-scpO rep-scpO rep-sftp-kill rep-scpO-kill
check "staging directory: nothing but the killed uploads kept for a resume" \
    entries_partials "$STAGE"
exit 0
