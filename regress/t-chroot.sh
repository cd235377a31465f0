#!/bin/bash
# Chroot jails (README.atomic, "Chroot jails"): two unprivileged users,
# each in a ChrootDirectory jail of his own that contrib/jail-install.sh
# made, with our static sftp-server as login shell; a real sshd on
# 127.0.0.1.  The jails hold no libraries, no /proc, no /etc/passwd, no
# /dev/null.  Uploads with OpenSSH sftp, scp (SFTP mode), paramiko and
# libssh2, complete ones and ones killed half-way or abandoned without
# CLOSE, while a watcher reads both upload directories: never a partial
# file, files owned by their user, nothing left in the staging
# directories.  Each user sees only his jail.  Log lines reach a syslog
# socket inside the first jail; the second jail has none, and its client
# is told.  jail-install.sh is idempotent and --uninstall puts a jail
# back as it was.
#
# Against stock (SFTP_SERVER=/usr/lib/openssh/sftp-server) the same
# jails are served by sshd's internal-sftp, as administrators do today:
# the watcher sees partial files and the test fails.
tid=t-chroot
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"
need_root

PY=/usr/bin/python3
MKPAYLOAD="$SRC/regress/helpers/mkpayload.py"
WATCH="$SRC/regress/helpers/watch.py"
PMCLIENT="$SRC/regress/clients/paramiko_client.py"
INSTALL="$SRC/contrib/jail-install.sh"
L2="$OBJ/regress/clients/libssh2_upload"
if [ ! -x "$L2" ]; then
	L2="$WORK/libssh2_upload"
	cc -I"$OBJ" -I"$SRC" -DHAVE_CONFIG_H -O2 -o "$L2" \
	    "$SRC/regress/clients/libssh2_upload.c" -lssh2 2>/dev/null ||
	    L2=""
fi
HAVE_PM=1
"$PY" -c 'import paramiko' 2>/dev/null || HAVE_PM=0

STOCK=0
[ "$SFTP_SERVER" = "$STOCK_SFTP_SERVER" ] && STOCK=1
# Ours runs from the directory it was built in, at the same path inside
# the jail (a login shell must exist at one path on both sides).
BINDIR=$(cd "$(dirname "$SFTP_SERVER")" && pwd)
if [ $STOCK = 0 ]; then
	for p in "$SFTP_SERVER" "$SCP"; do
		if ldd "$p" >/dev/null 2>&1; then
			skip "$tid" "$p is dynamic: ./configure --enable-static"
			exit 0
		fi
	done
	check "ldd: sftp-server is not a dynamic executable" \
	    sh -c "ldd '$SFTP_SERVER' 2>&1 | grep -q 'not a dynamic executable'"
	check "ldd: scp is not a dynamic executable" \
	    sh -c "ldd '$SCP' 2>&1 | grep -q 'not a dynamic executable'"
fi

# sshd wants every component of a jail's path owned by root and
# writable by nobody else: not below /tmp.
JBASE=$(mktemp -d /var/lib/au-chroot.XXXXXX) || fail "mktemp"
chmod 755 "$JBASE"
on_exit "rm -rf '$JBASE'"
U1=aujail1
U2=aujail2
J1="$JBASE/$U1"
J2="$JBASE/$U2"
for u in $U1 $U2; do
	userdel "$u" >/dev/null 2>&1
	if [ $STOCK = 0 ]; then shell="$BINDIR/sftp-server"; else shell=/usr/sbin/nologin; fi
	useradd -M -d /upload -s "$shell" "$u" >/dev/null 2>&1 || fail "useradd $u"
	on_exit "userdel $u"
	usermod -p '*' "$u" >/dev/null 2>&1
done
UID1=$(id -u $U1)
UID2=$(id -u $U2)

# The jails.
if [ $STOCK = 0 ]; then
	for u in $U1 $U2; do
		"$INSTALL" --user "$u" --bindir "$BINDIR" --from "$BINDIR" \
		    "$JBASE/$u" >"$WORK/install-$u.out" 2>&1 ||
		    fail "jail-install.sh $u: $(cat "$WORK/install-$u.out")"
	done
	check "jail-install.sh prints the Match block" \
	    grep -q "^Match User $U1" "$WORK/install-$U1.out"
	# Every name with its type, owner and mode; files with size and
	# time (a directory's time changes with what comes and goes).
	snap() {
		{ find "$1" -printf '%p %y %u %g %m\n'
		  find "$1" -type f -printf '%p %s %T@\n'; } | sort
	}
	snap "$J1" >"$WORK/snap1"
	"$INSTALL" --user $U1 --bindir "$BINDIR" --from "$BINDIR" "$J1" \
	    >/dev/null 2>&1
	snap "$J1" >"$WORK/snap2"
	check "jail-install.sh a second time changes nothing" \
	    cmp -s "$WORK/snap1" "$WORK/snap2"
	MATCH="Match User $U1,$U2
	ChrootDirectory $JBASE/%u
	ForceCommand $BINDIR/sftp-server
	SetEnv ATOMIC_UPLOAD_TMPDIR=/.upload-staging ATOMIC_UPLOAD_LOG_LEVEL=INFO
	AllowTcpForwarding no
	X11Forwarding no"
else
	for u in $U1 $U2; do
		mkdir -p "$JBASE/$u/upload" "$JBASE/$u/dev"
		chown "$u:" "$JBASE/$u/upload"
	done
	MATCH="Match User $U1,$U2
	ChrootDirectory $JBASE/%u
	ForceCommand internal-sftp -l INFO
	AllowTcpForwarding no
	X11Forwarding no"
fi
check "jail 1 holds no /proc, /etc/passwd, /dev/null or libraries" \
    sh -c "! test -e '$J1/proc' && ! test -e '$J1/etc/passwd' &&
	   ! test -e '$J1/dev/null' && ! test -e '$J1/lib' && ! test -e '$J1/usr/lib'"

# A syslog socket in jail 1, ours; jail 2 has none.
cat >"$WORK/syslog_listen.py" <<'EOF'
import os, signal, socket, sys
path, out, ready = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o666)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
open(ready, "w").close()
with open(out, "ab", buffering=0) as f:
    while True:
        f.write(s.recv(65536).rstrip(b"\n") + b"\n")
EOF
"$PY" "$WORK/syslog_listen.py" "$J1/dev/log" "$WORK/syslog1" "$WORK/syslog-ready" &
on_exit "kill $!"
wait_for test -e "$WORK/syslog-ready" || fail "syslog listener did not start"

start_sshd "$MATCH"
KEY="$WORK/sshd/client_key"

L="$WORK/local"
mkdir -p "$L"
"$PY" "$MKPAYLOAD" "$L/big" 16M big
"$PY" "$MKPAYLOAD" "$L/mid" 2M mid
"$PY" "$MKPAYLOAD" "$L/old" 100K old
for j in "$J1" "$J2"; do
	cp "$L/old" "$j/upload/replaced"
	chown --reference="$j/upload" "$j/upload/replaced"
done

"$PY" "$WATCH" --all --interval 2 --ready "$WORK/ready" --stop "$WORK/stop" \
    "$J1/upload" "$J2/upload" >"$WORK/watch.out" 2>&1 &
WATCH_PID=$!
on_exit "kill $WATCH_PID"
wait_for test -e "$WORK/ready" || fail "watcher did not start"

# sftp_as USER BATCH-LINES...: an sftp session; output in $WORK/sftp.out.
sftp_as() {
	local u=$1
	shift
	printf '%s\n' "$@" >"$WORK/batch"
	sftp -b "$WORK/batch" $SSH_OPTS "$u@localhost" >"$WORK/sftp.out" 2>&1
}
pm() { "$PY" "$PMCLIENT" -p "$SSHD_PORT" -k "$KEY" "$@"; }
l2() { "$L2" -p "$SSHD_PORT" -k "$KEY" -K "$KEY.pub" "$@"; }

# 1. Complete uploads, both jails.
for u in $U1 $U2; do
	check "$u: sftp put" sftp_as $u "put $L/mid /upload/sftp-new" \
	    "put $L/mid /upload/replaced"
	check "$u: scp (SFTP mode)" scp -q $SSH_OPTS "$L/mid" "$u@localhost:/upload/scp-new"
	if [ $HAVE_PM = 1 ]; then
		check "$u: paramiko put" pm -u $u put "$L/mid" /upload/pm-new
	fi
	if [ -n "$L2" ]; then
		check "$u: libssh2 put (pipelined)" l2 -u $u -m put "$L/mid" /upload/l2-new
	fi
done

# 1b. Inside the jail (no /proc) a session sees its own upload at its
#     name, through a descriptor reopened without /proc; handle chmod and
#     utime survive the commit; a resumed upload (reput: a write without
#     truncation, staged as a copy) commits whole.  In a subdirectory the
#     watcher does not read: the file to resume is partial on purpose.
mkdir "$J1/upload/sub"
head -c 1000000 "$L/mid" >"$J1/upload/sub/resume"
chown -R --reference="$J1/upload" "$J1/upload/sub"
if [ $HAVE_PM = 1 ]; then
	if pm -u $U1 chunks "$L/mid" /upload/sub/chunked 40000 981173106 \
	    >"$WORK/pm.out" 2>&1; then
		sed 's/^ok /# client: /' "$WORK/pm.out"
		ok "$U1: paramiko sees its own upload at its name, chmod and utime on the handle"
	else
		notok "$U1: paramiko chunks: $(tail -3 "$WORK/pm.out")"
	fi
	check "$U1: chunked upload complete" cmp -s "$L/mid" "$J1/upload/sub/chunked"
	check "$U1: handle chmod survives the commit" \
	    test "$(stat -c %a "$J1/upload/sub/chunked")" = 640
	check "$U1: handle utime survives the commit" \
	    test "$(stat -c %Y "$J1/upload/sub/chunked")" = 981173106
fi
check "$U1: sftp reput (resume)" sftp_as $U1 "reput $L/mid /upload/sub/resume"
check "$U1: resumed file complete" cmp -s "$L/mid" "$J1/upload/sub/resume"
check "$U1: resumed file owned by $U1" \
    test "$(stat -c %u "$J1/upload/sub/resume")" = "$UID1"

# 2. Uploads killed half-way and clients that vanish without CLOSE.
RATE=8000
pids=""
on_exit 'kill -9 $pids'
(exec sftp -q -l $RATE -b /dev/stdin $SSH_OPTS $U1@localhost \
    <<<"put $L/big /upload/killed-sftp") >/dev/null 2>&1 &
pids="$pids $!"
(exec scp -q -l $RATE $SSH_OPTS "$L/big" $U1@localhost:/upload/killed-scp) \
    >/dev/null 2>&1 &
pids="$pids $!"
(exec sftp -q -l $RATE -b /dev/stdin $SSH_OPTS $U1@localhost \
    <<<"put $L/big /upload/replaced") >/dev/null 2>&1 &
pids="$pids $!"
if [ -n "$L2" ]; then
	(exec "$L2" -p "$SSHD_PORT" -k "$KEY" -K "$KEY.pub" -u $U2 -m hang \
	    "$L/big" /upload/killed-l2) >/dev/null 2>&1 &
	pids="$pids $!"
fi
if [ $HAVE_PM = 1 ]; then
	(exec "$PY" "$PMCLIENT" -p "$SSHD_PORT" -k "$KEY" -u $U2 hang \
	    "$L/big" /upload/killed-pm) >/dev/null 2>&1 &
	pids="$pids $!"
fi
# Half-way: a few seconds into 16 MiB at 1 MB/s.
sleep 4
exec 3>&2 2>/dev/null
kill -9 $pids
wait $pids
exec 2>&3 3>&-
pids=""
vanished=""
if [ -n "$L2" ]; then
	check "$U2: libssh2 gone without CLOSE" l2 -u $U2 -m vanish "$L/big" /upload/vanish-l2
	vanished="$vanished vanish-l2"
fi
if [ $HAVE_PM = 1 ]; then
	check "$U1: paramiko gone without CLOSE" pm -u $U1 vanish "$L/big" /upload/vanish-pm
	vanished="$vanished vanish-pm"
fi
wait_for sessions_gone || verbose "sshd sessions still running"

# 3. Each user sees his own jail, nothing outside it.
sftp_as $U1 "ls -1a /" "cd .." "pwd" "ls -1a ."
sed 's/^/# /' "$WORK/sftp.out" | head -20
check "$U1: / lists the jail's own entries only" \
    sh -c "! grep -q -e $U2 -e '^etc' -e '^home' '$WORK/sftp.out'"
check "$U1: .. of / is /" grep -q 'Remote working directory: /$' "$WORK/sftp.out"
# fetch USER REMOTE LOCAL: an sftp get; fails if the server refuses.
fetch() { printf 'get %s %s\n' "$2" "$3" | sftp -b - $SSH_OPTS "$1@localhost" >/dev/null 2>&1; }
refused() { ! fetch "$@"; }
check "$U1: the other jail is out of reach (its absolute path)" \
    refused $U1 "$J2/upload/sftp-new" "$WORK/leak"
check "$U1: the other jail is out of reach (/../$U2)" \
    refused $U1 "/../$U2/upload/sftp-new" "$WORK/leak2"
check "$U1: its own file, by the same kind of route, is reachable" \
    fetch $U1 "/../../upload/sftp-new" "$WORK/own"
check "$U1: nothing leaked" sh -c "! test -e '$WORK/leak' && ! test -e '$WORK/leak2'"

# 4. What the watcher saw, and what is left.
watch_verdict "the watcher never saw a partial file in either jail"
# With the staging directory on the same filesystem, nothing but final
# names appears: no private ".au-" directory, even for an instant.
check "only final names ever appeared in the upload directories" \
    sh -c "! grep -q '^# name .*/upload/[.#]' '$WORK/watch.out'"

complete="sftp-new scp-new replaced"
[ $HAVE_PM = 1 ] && complete="$complete pm-new"
[ -n "$L2" ] && complete="$complete l2-new"
for j in "$J1" "$J2"; do
	u=${j##*/}
	uid=$(id -u "$u")
	for n in $complete; do
		check "$u: $n complete" cmp -s "$L/mid" "$j/upload/$n"
		check "$u: $n owned by $u" test "$(stat -c %u "$j/upload/$n")" = "$uid"
	done
done
for n in killed-sftp killed-scp; do
	check "$U1: $n: killed, nothing published" test ! -e "$J1/upload/$n"
done
check "$U1: killed replacement keeps the last complete content" \
    cmp -s "$L/mid" "$J1/upload/replaced"
for n in killed-l2 killed-pm; do
	[ -n "$L2" ] || [ $n != killed-l2 ] || continue
	[ $HAVE_PM = 1 ] || [ $n != killed-pm ] || continue
	check "$U2: $n: killed, nothing published" test ! -e "$J2/upload/$n"
done
for n in $vanished; do
	check "$n: no CLOSE, nothing published" \
	    sh -c "! test -e '$J1/upload/$n' && ! test -e '$J2/upload/$n'"
done
# shellcheck disable=SC2086
check "$U1: no debris in the upload directory" entries "$J1/upload" $complete sub
check "$U1: no debris in the subdirectory" entries "$J1/upload/sub" resume \
    $([ $HAVE_PM = 1 ] && echo chunked)
# shellcheck disable=SC2086
check "$U2: no debris in the upload directory" entries "$J2/upload" $complete
if [ $STOCK = 0 ]; then
	# The killed and vanished uploads are kept for a resume.
	check "$U1: staging directory: nothing but kept uploads" \
	    entries_partials "$J1/.upload-staging"
	check "$U2: staging directory: nothing but kept uploads" \
	    entries_partials "$J2/.upload-staging"
else
	skip "staging directories empty" "stock stages nothing"
fi

# 5. Logging inside the jail.
if [ $STOCK = 0 ]; then
	grep -e commit -e abort "$WORK/syslog1" | sed 's/^/# syslog: /' | head -8
	check "jail 1: commit lines reach the jail's /dev/log" \
	    grep -q 'sftp-server\[[0-9]*\]: commit "/upload/sftp-new" bytes' "$WORK/syslog1"
	check "jail 1: aborts are logged too" \
	    grep -q 'abort "/upload/killed-sftp"' "$WORK/syslog1"
	check "jail 1: no /etc/passwd: the user is known by number" \
	    grep -q "session opened for local user $UID1 " "$WORK/syslog1"
	check "jail 1: jail 2's sessions are not in jail 1's log" \
	    sh -c "! grep -q 'local user $UID2 ' '$WORK/syslog1'"
	# sshd throws a subsystem's stderr away: the word reaches a client
	# that runs the forced command as a command (README.atomic's check).
	ssh $SSH_OPTS -T $U2@localhost check </dev/null >/dev/null 2>"$WORK/ssh-$U2.err"
	sed 's/^/# stderr: /' "$WORK/ssh-$U2.err"
	check "jail 2: no syslog socket: the client is told" \
	    grep -q 'cannot log: no syslog socket at /dev/log' "$WORK/ssh-$U2.err"
else
	skip "syslog inside the jail" "internal-sftp logs through sshd"
fi

# 6. --uninstall gives a jail back as it was: one that existed before,
#    with contents of its own.
if [ $STOCK = 0 ]; then
	J3="$JBASE/third"
	mkdir -p "$J3/upload" "$J3/data"
	chmod 711 "$J3"
	echo keep >"$J3/data/file"
	chown $U1 "$J3/upload"
	chmod 770 "$J3/upload"
	snap "$J3" >"$WORK/snap3"
	"$INSTALL" --user $U1 --bindir /usr/libexec/atomic-upload \
	    --from "$BINDIR" "$J3" >/dev/null 2>&1 &&
	"$INSTALL" --user $U1 --bindir /usr/libexec/atomic-upload \
	    --from "$BINDIR" "$J3" >/dev/null 2>&1
	check "jail-install.sh into an existing directory: root-owned, 0755" \
	    test "$(stat -c '%u %a' "$J3")" = "0 755"
	check "jail-install.sh: staging directory owned by the user, 0700" \
	    test "$(stat -c '%U %a' "$J3/.upload-staging")" = "$U1 700"
	"$INSTALL" --uninstall --bindir /usr/libexec/atomic-upload "$J3" >"$WORK/uninstall.out" 2>&1
	snap "$J3" >"$WORK/snap4"
	diff "$WORK/snap3" "$WORK/snap4" | sed 's/^/# /' | head
	check "jail-install.sh --uninstall leaves the jail as it was" \
	    cmp -s "$WORK/snap3" "$WORK/snap4"
	"$INSTALL" --uninstall --bindir "$BINDIR" "$J1" >"$WORK/uninstall1.out" 2>&1
	check "--uninstall keeps an upload directory with uploads in it" \
	    sh -c "test -f '$J1/upload/sftp-new' && ! test -e '$J1$BINDIR/sftp-server'"
fi
exit 0
