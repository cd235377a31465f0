#!/bin/bash
# Resumable atomic uploads (issue 14; sftp-server.8, RESUMABLE UPLOADS), end to
# end through a real sshd on 127.0.0.1, uploads as the unprivileged
# $TEST_USER (and one as root):
#   1. OpenSSH sftp (reput, put -a), lftp (put -c), curl (-C -),
#      paramiko (stat + "r+" + seek, and "a"), psftp (reput) and the
#      WinSCP/FileZilla pattern (NAME.filepart resumed, then renamed):
#      each upload cut half-way by SIGKILL of the client and by SIGKILL
#      of the sshd session process serving it, then resumed: the file is
#      byte for byte the source, the killed session logged "partial ...
#      kept: N bytes", the resuming one "resume ... from N bytes" and a
#      close line whose written count is the rest only; nothing at the
#      final name meanwhile; no partial data left after the commit;
#   2. expiry (ATOMIC_UPLOAD_PARTIAL_AGE): an expired partial is not
#      resumed (the upload starts over), and "sftp-server -S DIR" as root
#      removes expired partial data and keeps the rest (stores in the
#      destination directories when no staging directory is set);
#   3. isolation: the partial is seen by its user's sessions only
#      (stat, listing, read, exclusive create), not by another user's
#      nor root's, nor on disk; its store is 0700 and the user's; a
#      REMOVE, a truncating OPEN, a RENAME of the name discard it;
#      ATOMIC_UPLOAD_PARTIAL_MAX (not kept when bigger, oldest evicted);
#   4. a resume from a changed source, cut again: nothing published;
#   5. lftp reconnecting on its own while replacing a file;
#   6. psftp reput after a killed replacement, and after its partial
#      expired: refused, the old file intact (never old head + new tail);
#   7. ATOMIC_UPLOAD_RESUME=off: nothing kept;
#   8. a cancel (a declared size not reached at CLOSE) and a session
#      ended by a malformed packet keep nothing;
#      OpenSSH sftp's ^C (it declares no size) shown;
#   9. a resume of a file another session of the user is replacing is
#      refused; a plain upload clears the record of an interrupted
#      replacement.
# A watcher (regress/helpers/watch.py) reads the upload directories all
# along: only complete files, published at most once per upload.
# Against stock (SFTP_SERVER=/usr/lib/openssh/sftp-server) the watcher,
# the log-line, store, isolation and "nothing published" checks fail;
# stock's in-place file makes most byte-identity checks pass.
# Knobs: RS_SIZE, RS_RATE, RS_SMALL, RS_AGE, RS_TIMEOUT, RS_SECTIONS.
tid=t-resume
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"
need_root
test_user_setup

# ---- Knobs --------------------------------------------------------------
RS_SIZE=${RS_SIZE:-64M}		# the large uploads, cut half-way
RS_RATE=${RS_RATE:-16777216}	# bytes/s of the uploads that get cut
RS_SMALL=${RS_SMALL:-8M}	# uploads cut by the paramiko helper
RS_PSIZE=${RS_PSIZE:-3M}	# psftp's uploads (psftp is slow: ~400 KB/s here)
RS_AGE=${RS_AGE:-2}		# ATOMIC_UPLOAD_PARTIAL_AGE of the expiry cases
RS_TIMEOUT=${RS_TIMEOUT:-180}	# one client command at most (seconds)
RS_SECTIONS=${RS_SECTIONS:-"1 2 3 4 5 6 7 8 9"}

PY=/usr/bin/python3
MKPAYLOAD="$SRC/regress/helpers/mkpayload.py"
WATCH="$SRC/regress/helpers/watch.py"
SLOW="$SRC/regress/helpers/slowpipe.py"
STAGED="$SRC/regress/helpers/staged_size.py"
PMC="$SRC/regress/clients/resume_client.py"
ours=1
[ "$SFTP_SERVER" = "$STOCK_SFTP_SERVER" ] && ours=0
[ -x "$SFTP_SERVER" ] || fail "no server at $SFTP_SERVER"
have_pm=1; "$PY" -c 'import paramiko' 2>/dev/null || have_pm=0
have_lftp=1; command -v lftp >/dev/null || have_lftp=0
have_psftp=1
command -v psftp >/dev/null && command -v puttygen >/dev/null || have_psftp=0
have_curl=1; curl -V 2>/dev/null | grep -q '^Protocols:.* sftp' || have_curl=0
section() { case " $RS_SECTIONS " in *" $1 "*) return 0 ;; esac; return 1; }

RWORK=$(realpath "$WORK")
FS="$RWORK/fs"			# everything uploaded lives below
D="$FS/up"			# the upload directory (the user's)
STAGE="$FS/stage"		# the staging directory (root's, 1733)
NW="$FS/unwatched"		# where a published part is expected
SW="$FS/sweep"			# -S case: stores in destination dirs
L="$RWORK/local"		# the sources
LOGS="$RWORK/logs"		# one file per server session: logs/PID
PIDS="$RWORK/server.pids"	# one line per server session started
mkdir -p "$D" "$STAGE" "$NW" "$SW/x" "$SW/y" "$SW/z" "$L" "$LOGS"
chown "$TEST_USER:" "$D" "$NW" "$SW/x" "$SW/y" "$SW/z"
chmod 1733 "$STAGE"
chmod 1777 "$LOGS"
: >"$PIDS"
chmod 666 "$PIDS"
: >"$RWORK/relay.pids"
chmod 666 "$RWORK/relay.pids"

# ---- The server ---------------------------------------------------------
# The subsystem is a wrapper: it notes its PID (the server's, after the
# exec; its parent is the sshd session process), takes the case's
# settings from server.env, and keeps the server's log (-e -l INFO) in
# logs/PID.
WRAP="$RWORK/sftp-server-wrap"
cat >"$WRAP" <<EOF
#!/bin/sh
echo \$\$ >>"$PIDS"
SERVER_ARGS=
. "$RWORK/server.env"
exec "$SFTP_SERVER" "\$@" -e -l INFO \$SERVER_ARGS 2>>"$LOGS/\$\$"
EOF
chmod 755 "$WRAP"
# env_case [-t] VAR=VALUE...: the settings of the next sessions; -t:
# staging in $STAGE (ours only: stock has no -t).
env_case() {
	{
		if [ "${1:-}" = -t ]; then
			shift
			[ $ours = 1 ] && echo "SERVER_ARGS='-t $STAGE'"
		fi
		for kv in "$@"; do echo "export $kv"; done
	} >"$RWORK/server.env"
	chmod 644 "$RWORK/server.env"
}
env_case -t
REAL_SFTP_SERVER=$SFTP_SERVER
SFTP_SERVER=$WRAP SFTP_SERVER_ARGS= start_sshd
SFTP_SERVER=$REAL_SFTP_SERVER
KEY="$WORK/sshd/client_key"

# A second unprivileged user, for isolation.
USER2=${TEST_USER2:-autest2}
if ! id "$USER2" >/dev/null 2>&1; then
	useradd -m -s /bin/bash "$USER2" >/dev/null 2>&1 || fail "useradd $USER2"
	on_exit "userdel -r '$USER2'"
fi
usermod -p '*' "$USER2" >/dev/null 2>&1
# cannot CMD...: CMD fails (its output dropped).
cannot() { ! "$@" >/dev/null 2>&1; }
as_user2() {
	setpriv --reuid="$USER2" --regid="$USER2" --init-groups \
	    --reset-env -- env PATH=/usr/local/bin:/usr/bin:/bin "$@"
}

# ---- Processes ------------------------------------------------------------
# Everything started in the background is noted in $BG and killed by
# PID at exit if it is still a child of ours (a PID reaped meanwhile may
# belong to someone else by then).
BG=""
kill_bg() {
	local p
	for p in $(ps -o pid= --ppid $$); do
		case " $BG " in *" $p "*) kill -9 "$p" ;; esac
	done
}
on_exit kill_bg
kill_relays() {
	local p
	for p in $(cat "$RWORK/relay.pids" 2>/dev/null); do
		tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF "$SLOW" &&
		    kill -9 "$p"
	done
}
on_exit kill_relays

# gone PID: the process has ended (a zombie counts: our PID 1 may not
# reap orphans).  No fork: it is polled.
gone() {
	local s
	{ read -r s <"/proc/$1/stat"; } 2>/dev/null || return 0
	s=${s##*) }
	[ "${s%% *}" = Z ]
}
# reap PID [SECONDS]: wait (30 s) for a child of ours to end, SIGKILL
# it then; its exit status.
reap() {
	local i
	for i in $(seq 1 $((${2:-30} * 10))); do
		gone "$1" && break
		sleep 0.1
	done
	gone "$1" || { verbose "pid $1 still running: killed"; kill -9 "$1"; }
	{ wait "$1"; } 2>/dev/null
}
# mark: sessions started from now on are the next ones.
mark() { MARK=$(wc -l <"$PIDS"); }
# sessions: PIDs of the servers started since the mark.
sessions() { tail -n +$((MARK + 1)) "$PIDS"; }
# next_server: the first server started since the mark (waits for it).
next_server() {
	local i p
	for i in $(seq 1 300); do
		p=$(sessions | head -1)
		[ -n "$p" ] && { echo "$p"; return 0; }
		sleep 0.1
	done
	return 1
}
# slog: the logs of the sessions since the mark (CR LF made LF), once
# their servers have ended.
slog() {
	local p
	for p in $(sessions); do
		wait_for gone "$p" || verbose "server $p still running"
		tr -d '\r' <"$LOGS/$p" 2>/dev/null
	done
}
# is_below PID ANCESTOR: ANCESTOR is PID's parent, or its parent's ...
is_below() {
	local p=$1 i
	for i in $(seq 1 20); do
		p=$(ps -o ppid= -p "$p" 2>/dev/null | tr -d ' ')
		[ -z "$p" ] || [ "$p" -le 1 ] && return 1
		[ "$p" = "$2" ] && return 0
	done
	return 1
}
# session_of SERVERPID: the sshd process serving that session (the
# server's parent, below our sshd, not our sshd itself).
session_of() {
	local pp
	pp=$(ps -o ppid= -p "$1" 2>/dev/null | tr -d ' ')
	[ -n "$pp" ] && [ "$pp" != "$SSHD_PID" ] && is_below "$pp" "$SSHD_PID" &&
	    echo "$pp"
}
# staged SERVERPID: the size of the largest file below $FS the server
# holds open for writing (its upload in flight; 0 if none).
staged() { "$PY" "$STAGED" "$1" "$FS"; }
# wait_staged SERVERPID BYTES: until the server's upload holds BYTES
# (60 s at most); fails if the server ended first.
wait_staged() { "$PY" "$STAGED" "$1" "$FS" "$2" >/dev/null; }
# note_session SERVERPID: find its session process now, so that the cut
# (a moment that matters) is a kill only.
declare -A SESS
note_session() { SESS[$1]=$(session_of "$1"); }
# cut_upload HOW CLIENTPID SERVERPID: SIGKILL the client (HOW "client") or the
# sshd session process serving it ("session"); wait for both the client
# and the server to end.
cut_upload() {
	local how=$1 cpid=$2 spid=$3 sess
	exec 3>&2 2>/dev/null	# no "Killed" notices from the shell
	case $how in
	client)	kill -9 "$cpid" ;;
	TERM|HUP) kill -$how "$spid" ;;
	session)
		sess=${SESS[$spid]:-}
		[ -n "$sess" ] || sess=$(session_of "$spid")
		if [ -n "$sess" ]; then
			kill -9 "$sess"
		else
			verbose "no session process above server $spid: client killed"
			kill -9 "$cpid"
		fi ;;
	esac
	wait_for gone "$spid" || verbose "server $spid did not end"
	# A client whose session was killed may try to reconnect (lftp):
	# it is not given the time to.
	reap "$cpid" 5
	exec 2>&3 3>&-
}

# ---- Clients --------------------------------------------------------------
# Each start_* runs an upload in the background, slowed to $RS_RATE,
# as $2 (user), and sets CPID; each *_resume continues one in the
# foreground at full speed.  $WORK/c.out has the client's output.
KBIT=$((RS_RATE * 8 / 1024))
start_sftp() {	# SRC USER DEST
	printf 'put %s %s\n' "$1" "$3" >"$WORK/batch"
	(exec sftp -q -l $KBIT -b "$WORK/batch" $SSH_OPTS "$2@localhost") \
	    >"$WORK/c.out" 2>&1 &
	CPID=$!; BG="$BG $CPID"
}
sftp_cmd() {	# USER COMMAND...: one batch command at full speed
	local u=$1
	shift
	echo "$*" >"$WORK/batch"
	timeout $RS_TIMEOUT sftp -q -b "$WORK/batch" $SSH_OPTS "$u@localhost" \
	    >"$WORK/c.out" 2>&1
}
LFTP_PRE=""
lftp_pre() {	# USER [RATE] [MORE SETTINGS]
	echo "set sftp:connect-program 'ssh -a -x -F $WORK/sshd/ssh_config';" \
	    "set net:max-retries ${LFTP_RETRIES:-1}; set net:timeout 15;" \
	    "set net:reconnect-interval-base 300;" \
	    "set net:limit-rate 0:${2:-0}; ${3:-}" \
	    "open -u $1, sftp://127.0.0.1:$SSHD_PORT"
}
start_lftp() {	# SRC USER DEST
	(exec lftp -c "$(lftp_pre "$2" "$RS_RATE"); put $1 -o $3") \
	    >"$WORK/c.out" 2>&1 &
	CPID=$!; BG="$BG $CPID"
}
lftp_cmd() {	# USER COMMAND
	timeout $RS_TIMEOUT lftp -c "$(lftp_pre "$1"); $2" >"$WORK/c.out" 2>&1
}
cu() {
	curl -sS -k --key "$KEY" --pubkey "$KEY.pub" "$@"
}
start_curl() {	# SRC USER DEST
	(exec curl -sS -k --key "$KEY" --pubkey "$KEY.pub" -u "$2:" \
	    --limit-rate "$RS_RATE" -T "$1" "sftp://127.0.0.1:$SSHD_PORT$3") \
	    >"$WORK/c.out" 2>&1 &
	CPID=$!; BG="$BG $CPID"
}
curl_resume() {	# SRC USER DEST
	timeout $RS_TIMEOUT curl -sS -k --key "$KEY" --pubkey "$KEY.pub" \
	    -u "$2:" -C - -T "$1" "sftp://127.0.0.1:$SSHD_PORT$3" \
	    >"$WORK/c.out" 2>&1
}
# psftp's settings come from a saved session of its own HOME: PuTTY
# proxies a connection to 127.0.0.1 only when told to (ProxyLocalhost).
psftp_args() {	# USER
	echo "-load rs -batch -P $SSHD_PORT -i $WORK/client.ppk" \
	    "-hostkey $HOSTFP -l $1"
}
start_psftp() {	# SRC USER DEST
	printf 'put %s %s\n' "$1" "$3" >"$WORK/pbatch"
	(HOME=$WORK/phome exec psftp $(psftp_args "$2") -b "$WORK/pbatch" \
	    -proxycmd "$PY $SLOW 127.0.0.1 $SSHD_PORT $((PSIZE / 4)) $RWORK/relay.pids" \
	    127.0.0.1) >"$WORK/c.out" 2>&1 </dev/null &
	CPID=$!; BG="$BG $CPID"
}
psftp_cmd() {	# USER COMMAND...
	local u=$1
	shift
	echo "$*" >"$WORK/pbatch"
	HOME=$WORK/phome timeout $RS_TIMEOUT psftp $(psftp_args "$u") \
	    -b "$WORK/pbatch" -proxycmd "$PY $SLOW 127.0.0.1 $SSHD_PORT 0 $RWORK/relay.pids" \
	    127.0.0.1 >"$WORK/c.out" 2>&1 </dev/null
}
pm() {		# USER MODE ARGS...: resume_client.py
	local u=$1
	shift
	timeout $RS_TIMEOUT "$PY" "$PMC" "$SSHD_PORT" "$KEY" "$u" "$@"
}
start_pm() {	# SRC USER DEST BYTES: paramiko writes BYTES and waits
	"$PY" "$PMC" "$SSHD_PORT" "$KEY" "$2" part "$1" "$3" "$4" \
	    >"$WORK/c.out" 2>&1 &
	CPID=$!; BG="$BG $CPID"
}
pm_ready() { grep -q '^ready' "$WORK/c.out"; }

if [ $have_psftp = 1 ]; then
	puttygen "$KEY" -O private -o "$WORK/client.ppk" >/dev/null 2>&1 ||
	    have_psftp=0
	HOSTFP=$(ssh-keygen -l -E sha256 -f "$WORK/sshd/host_key.pub" |
	    awk '{ print $2 }')
	mkdir -p "$WORK/phome/.putty/sessions"
	echo "ProxyLocalhost=1" >"$WORK/phome/.putty/sessions/rs"
fi

# ---- Files and logs ---------------------------------------------------------
size_of() { "$PY" -c 'import sys
u = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
t = sys.argv[1]
print(int(t[:-1]) * u[t[-1].upper()] if t[-1:].upper() in u else int(t))' "$1"; }
SIZE=$(size_of "$RS_SIZE")
SMALL=$(size_of "$RS_SMALL")
HALF=$((SIZE / 2))
SHALF=$((SMALL / 2))
PSIZE=$(size_of "$RS_PSIZE")
"$PY" "$MKPAYLOAD" "$L/big" "$SIZE" big || fail "mkpayload"
"$PY" "$MKPAYLOAD" "$L/big2" "$SIZE" big2 || fail "mkpayload"
"$PY" "$MKPAYLOAD" "$L/small" "$SMALL" small || fail "mkpayload"
"$PY" "$MKPAYLOAD" "$L/psrc" "$PSIZE" psrc || fail "mkpayload"
"$PY" "$MKPAYLOAD" "$L/pold" $((PSIZE * 3 / 4)) pold || fail "mkpayload"
"$PY" "$MKPAYLOAD" "$L/old" $((SIZE * 3 / 4)) old || fail "mkpayload"
"$PY" "$MKPAYLOAD" "$L/oldsmall" $((SMALL * 3 / 4)) oldsmall || fail "mkpayload"

# Published names: how many times each is expected to appear (the
# watcher's create+moved_to count may not exceed it).
declare -A PUB
pub() { PUB[$1]=$(( ${PUB[$1]:-0} + 1 )); }
# place LOCAL NAME [DIR]: put LOCAL at DIR/NAME (the user's) by a rename,
# as a complete file.
place() {
	local dir=${3:-$D}
	install -o "$TEST_USER" -g "$TEST_GID" -m 644 "$1" "$dir/.place.tmp" &&
	    mv -f "$dir/.place.tmp" "$dir/$2"
	[ "$dir" = "$D" ] && pub "$2"
}
# dcount [DIR]: partial data files (d.*) in the stores below DIR ($FS).
dcount() {
	find "${1:-$FS}" -path '*/.au-partial-*/d.*' -type f 2>/dev/null | wc -l
}
# kept LOG PATH: N of "partial "PATH" kept: N bytes" (empty if none).
kept() {
	awk -v p="partial \"$2\" kept: " 'index($0, p) == 1 {
	    s = substr($0, length(p) + 1); sub(/ .*/, "", s); n = s }
	    END { print n }' "$1"
}
# resumed LOG PATH: N of "resume "PATH" from N bytes" (empty if none).
resumed() {
	awk -v p="resume \"$2\" from " 'index($0, p) == 1 {
	    s = substr($0, length(p) + 1); sub(/ .*/, "", s); n = s }
	    END { print n }' "$1"
}
# written LOG PATH: W of the last "close "PATH" bytes read R written W".
written() {
	awk -v p="close \"$2\" bytes read " 'index($0, p) == 1 {
	    n = $NF } END { print n }' "$1"
}
has_line() { grep -qF -- "$2" "$1"; }	# LOG TEXT
# commit_sha LOG PATH: the sha256 of PATH's last commit line.
commit_sha() {
	awk -v p="commit \"$2\" bytes " 'index($0, p) == 1 {
	    for (i = 1; i < NF; i++) if ($i == "sha256") h = $(i + 1) }
	    END { print h }' "$1"
}
# sum256 FILE: sha256sum's, computed once per file.
declare -A SUMS
sum256() {
	[ -n "${SUMS[$1]:-}" ] || SUMS[$1]=$(sha256sum <"$1" | cut -d' ' -f1)
	echo "${SUMS[$1]}"
}
# stores_only DIR: DIR holds nothing but partial stores (.au-partial-*).
stores_only() {
	local extra
	extra=$(ls -A "$1" | grep -v '^\.au-partial-[0-9]*$' | tr '\n' ' ')
	[ -z "$extra" ] && return 0
	verbose "$1 holds $extra"
	return 1
}
STORE="$STAGE/.au-partial-$TEST_UID"

# The paramiko helper cuts most uploads: it writes exactly what it is
# told and waits.
# pm_cut HOW SRC USER DEST BYTES: paramiko writes BYTES of SRC to DEST,
# then the client or its session is killed; the session's log is in
# $WORK/log1.
pm_cut() {
	local spid
	mark
	start_pm "$2" "$3" "$4" "$5"
	spid=$(next_server)
	wait_secs 60 pm_ready || verbose "paramiko did not write $5 bytes of $4: $(tail -2 "$WORK/c.out")"
	cut_upload "$1" "$CPID" "$spid"
	slog >"$WORK/log1"
}
# same A B: cmp, and where they differ if they do (a region of B that
# holds bytes of A from elsewhere is named).
same() {
	cmp -s "$1" "$2" && return 0
	[ -f "$2" ] && "$PY" - "$1" "$2" <<'EOF'
import sys
a = open(sys.argv[1], "rb").read()
b = open(sys.argv[2], "rb").read()
n = min(len(a), len(b))
i = next((k for k in range(0, n, 4096) if a[k:k + 4096] != b[k:k + 4096]), n)
while i < n and a[i] == b[i]:
    i += 1
j = i
while j < n and a[j:j + 64] != b[j:j + 64]:
    j += 64
k = a.find(b[i + 16:i + 48]) - 16 if i + 48 <= len(b) else -1
print("# %s: %d bytes, %s: %d bytes; first difference at %d, "
      "for about %d bytes%s" % (sys.argv[1], len(a), sys.argv[2], len(b),
      i, j - i, "; those bytes are the source's at %d (%+d)" % (k, k - i)
      if k >= 0 else ""))
EOF
	return 1
}
# same_prefix SRC FILE N: FILE is the first N bytes of SRC.
same_prefix() {
	[ "$(stat -c %s "$2")" = "$3" ] && head -c "$3" "$1" | cmp -s - "$2" &&
	    return 0
	head -c "$3" "$1" >"$WORK/prefix"
	same "$WORK/prefix" "$2"
	return 1
}
# judge LABEL RC FILE NEW OLD: the upload ended with the new file, or
# failed with the old one intact; never anything else.
judge() {
	if [ "$2" = 0 ] && cmp -s "$4" "$3"; then
		ok "$1: the new file, byte for byte"
	elif [ "$2" != 0 ] && cmp -s "$5" "$3"; then
		ok "$1: refused, the old file intact"
	elif [ "$2" = 0 ]; then
		notok "$1: client succeeded, but the file is neither the new one nor the old ($(stat -c %s "$3" 2>&1) bytes)"
		same "$4" "$3"
	else
		notok "$1: client failed ($2) and the file is not the old one ($(stat -c %s "$3" 2>&1) bytes): $(tail -2 "$WORK/c.out" | tr '\n' '|')"
	fi
}

[ "$RS_SECTIONS" = none ] && return 0
# ---- The watcher --------------------------------------------------------
"$PY" "$WATCH" --interval 5 --ready "$WORK/ready" --stop "$WORK/stop" \
    "$D" "$SW/x" "$SW/y" "$SW/z" >"$WORK/watch.out" 2>&1 &
WATCH_PID=$!
on_exit "kill $WATCH_PID"
wait_for test -e "$WORK/ready" || fail "watcher did not start"

# ---- 1. Each client: cut half-way two ways, then resumed ------------------
# one_case CLIENT HOW NAME USER: a big upload to $D/NAME by CLIENT, cut
# (HOW: client or session) once half of it is staged, resumed.
one_case() {
	local client=$1 how=$2 name=$3 u=${4:-$TEST_USER} dest label
	local spid n w r rc base final src=$L/big size=$SIZE half=$HALF
	dest="$D/$name"
	[ $client = psftp ] && { src=$L/psrc; size=$PSIZE; half=$((PSIZE / 2)); }
	label="$client, $how killed${4:+ (as $4)}"
	case $how in TERM|HUP) label="$client, server got SIG$how" ;; esac
	base=$(dcount "$STAGE")
	touch "$WORK/mark.t"
	mark
	case $client in
	sftp)	start_sftp "$src" "$u" "$dest" ;;
	lftp)	start_lftp "$src" "$u" "$dest" ;;
	curl)	start_curl "$src" "$u" "$dest" ;;
	psftp)	start_psftp "$src" "$u" "$dest" ;;
	paramiko|filepart)
		start_pm "$src" "$u" "$dest" "$half" ;;
	esac
	spid=$(next_server)
	[ -n "$spid" ] && note_session "$spid"
	if [ -z "$spid" ]; then
		notok "$label: no session started: $(tail -2 "$WORK/c.out")"
		kill -9 "$CPID"; reap "$CPID"
		return
	fi
	case $client in
	paramiko|filepart) wait_secs 60 pm_ready ;;
	*)	wait_staged "$spid" "$half" ;;
	esac
	n=$(staged "$spid")
	if gone "$spid" || [ "$n" -ge "$size" ] || [ "$n" -eq 0 ]; then
		notok "$label: not cut half-way (staged $n of $size bytes; server ${spid}): $(tail -2 "$WORK/c.out")"
		cut_upload "$how" "$CPID" "$spid"
		return
	fi
	cut_upload "$how" "$CPID" "$spid"
	ok "$label: cut with $n of $size bytes staged"
	check "$label: nothing at the final name after the cut" \
	    test ! -e "$dest"
	slog >"$WORK/log1"
	n=$(kept "$WORK/log1" "$dest")
	if [ -n "$n" ] && [ "$n" -gt 0 ]; then
		ok "$label: log: partial kept: $n bytes"
	else
		notok "$label: log: no \"partial ... kept\" line: $(grep -F "\"$dest\"" "$WORK/log1" | tail -3 | tr '\n' '|')"
	fi
	case $client in
	paramiko|filepart)
		check "$label: kept exactly the $half acknowledged bytes" \
		    test "$n" = "$half" ;;
	esac
	check "$label: partial data in the store" \
	    test "$(dcount "$STAGE")" -gt "$base"
	# The kept data is what the client sent: the source's first N bytes.
	kd=$(find "$STAGE" -path '*/.au-partial-*/d.*' -type f -newer "$WORK/mark.t" 2>/dev/null)
	if [ -n "$kd" ] && [ "$(echo "$kd" | wc -l)" = 1 ] && [ -n "$n" ]; then
		check "$label: the kept data is the source's first $n bytes" \
		    same_prefix "$src" "$kd" "$n"
	fi
	check "$label: the store is 0700 and $u's" \
	    test "$(stat -c '%a %U' "$STAGE/.au-partial-$(id -u "$u")" 2>&1)" = "700 $u"
	# The resume.
	mark
	case $client/$how in
	sftp/session)	sftp_cmd "$u" put -a "$src" "$dest" ;;
	sftp/*)		sftp_cmd "$u" reput "$src" "$dest" ;;
	lftp/*)		lftp_cmd "$u" "put -c $src -o $dest" ;;
	curl/*)		curl_resume "$src" "$u" "$dest" ;;
	psftp/*)	psftp_cmd "$u" reput "$src" "$dest" ;;
	paramiko/session) pm "$u" resume "$src" "$dest" append >"$WORK/c.out" 2>&1 ;;
	paramiko/*)	pm "$u" resume "$src" "$dest" rplus >"$WORK/c.out" 2>&1 ;;
	filepart/*)	pm "$u" resume "$src" "$dest" rplus >"$WORK/c.out" 2>&1 &&
			    pm "$u" rename "$dest" "$D/${name%.filepart}" \
			    >>"$WORK/c.out" 2>&1 ;;
	esac
	rc=$?
	final=$dest
	[ $client = filepart ] && final="$D/${name%.filepart}"
	if [ $rc = 0 ]; then
		ok "$label: resumed"
		pub "$name"
		[ $client = filepart ] && pub "${name%.filepart}"
	else
		notok "$label: resume failed ($rc): $(tail -3 "$WORK/c.out" | tr '\n' '|')"
	fi
	check "$label: byte for byte the source" same "$src" "$final"
	slog >"$WORK/log2"
	r=$(resumed "$WORK/log2" "$dest")
	w=$(written "$WORK/log2" "$dest")
	if [ -n "$r" ] && [ "$r" = "$n" ]; then
		ok "$label: log: resume from $r bytes (as kept)"
	else
		notok "$label: log: resume from ${r:-(no line)}, kept ${n:-(none)}"
	fi
	# The rest, not the whole file (a client may send a little again).
	if [ -n "$w" ] && [ -n "$n" ] && [ "$w" -ge $((size - n)) ] &&
	    [ "$w" -le $((size - n + 1048576)) ] && [ "$w" -lt "$size" ]; then
		ok "$label: close line: $w bytes written, the rest only"
	else
		notok "$label: close line: written ${w:-(no line)}, want $size - ${n:-?}"
	fi
	check "$label: commit line" has_line "$WORK/log2" "commit \"$dest\" bytes $size "
	if [ $ours = 1 ]; then
		# The digest covers the kept part too, not only what came now.
		check "$label: commit line's sha256 is the whole file's" \
		    test "$(commit_sha "$WORK/log2" "$dest")" = "$(sum256 "$src")"
	fi
	check "$label: no partial data left" test "$(dcount "$STAGE")" = "$base"
	check "$label: nothing but stores in the staging directory" \
	    stores_only "$STAGE"
}

if section 1; then
	for how in client session; do
		one_case sftp $how "sftp-$how"
		if [ $have_lftp = 1 ]; then
			one_case lftp $how "lftp-$how"
		else
			skip "lftp, $how killed" "lftp not installed"
		fi
		if [ $have_curl = 1 ]; then
			one_case curl $how "curl-$how"
		else
			skip "curl, $how killed" "no curl with sftp"
		fi
		if [ $have_pm = 1 ]; then
			one_case paramiko $how "pm-$how"
			one_case filepart $how "fp-$how.bin.filepart"
		else
			skip "paramiko, $how killed" "python3-paramiko not installed"
			skip "filepart, $how killed" "python3-paramiko not installed"
		fi
		if [ $have_psftp = 1 ]; then
			one_case psftp $how "psftp-$how"
		else
			skip "psftp, $how killed" "putty-tools not installed"
		fi
	done
	one_case sftp client "sftp-root" root
	# The server told to stop: SIGTERM, SIGHUP.
	one_case sftp TERM "sftp-term"
	[ $have_pm = 1 ] && one_case paramiko HUP "pm-hup"
fi

if [ $have_pm = 0 ]; then
	skip "sections 2-8" "python3-paramiko not installed"
	RS_SECTIONS=""
fi

# ---- 2. Expiry --------------------------------------------------------------
if section 2; then
	env_case -t "ATOMIC_UPLOAD_PARTIAL_AGE=$RS_AGE"
	base=$(dcount "$STAGE")
	pm_cut client "$L/small" "$TEST_USER" "$D/expired" "$SHALF"
	n=$(kept "$WORK/log1" "$D/expired")
	check "expiry: partial kept ($n bytes) for ${RS_AGE} s" \
	    has_line "$WORK/log1" "partial \"$D/expired\" kept: $SHALF bytes, resumable for $RS_AGE s"
	check "expiry: partial data in the store" test "$(dcount "$STAGE")" -gt "$base"
	sleep $((RS_AGE + 1))
	mark
	if [ $have_curl = 1 ]; then
		curl_resume "$L/small" "$TEST_USER" "$D/expired"
	else
		pm "$TEST_USER" resume "$L/small" "$D/expired" rplus >"$WORK/c.out" 2>&1
	fi
	rc=$?
	check "expiry: the upload after expiry succeeded" test $rc = 0
	[ $rc = 0 ] && pub expired
	check "expiry: byte for byte the source" cmp -s "$L/small" "$D/expired"
	slog >"$WORK/log2"
	check "expiry: no resume line" \
	    test -z "$(resumed "$WORK/log2" "$D/expired")"
	check "expiry: the whole file sent again ($SMALL bytes written)" \
	    test "$(written "$WORK/log2" "$D/expired")" = "$SMALL"
	check "expiry: the expired partial data is gone" \
	    test "$(dcount "$STAGE")" = "$base"

	# The session start sweeps the staging directory: expired data goes
	# without a lookup of its name.
	pm_cut client "$L/small" "$TEST_USER" "$D/swept" "$SHALF"
	n=$(dcount "$STAGE")
	sleep $((RS_AGE + 1))
	pm "$TEST_USER" stat "$D/expired" >/dev/null 2>&1
	check "startup sweep: a later session removed the expired data ($n, then $(dcount "$STAGE"))" \
	    test "$(dcount "$STAGE")" = $((n - 1))
	check "startup sweep: nothing published" test ! -e "$D/swept"
	# (What the sweep left, a lookup of the name removes.)
	check "lookup of an expired partial: no such file" \
	    test "$(pm "$TEST_USER" stat "$D/swept" 2>&1)" = ENOENT
	check "lookup of an expired partial: its data removed" \
	    test "$(dcount "$STAGE")" = "$base"

	# The age's units.
	b2=$(dcount "$STAGE")
	for age in 90s:90 2m:120 3h:10800 2d:172800; do
		env_case -t "ATOMIC_UPLOAD_PARTIAL_AGE=${age%:*}"
		pm_cut client "$L/small" "$TEST_USER" "$D/age" 65536
		check "ATOMIC_UPLOAD_PARTIAL_AGE=${age%:*}: resumable for ${age#*:} s" \
		    has_line "$WORK/log1" "partial \"$D/age\" kept: 65536 bytes, resumable for ${age#*:} s"
		pm "$TEST_USER" remove "$D/age" >/dev/null 2>&1
	done
	check "the age's units: nothing left" test "$(dcount "$STAGE")" = "$b2"

	# -S as root: stores in the destination directories (no -t).
	env_case "ATOMIC_UPLOAD_PARTIAL_AGE=$RS_AGE"
	pm_cut client "$L/small" "$TEST_USER" "$SW/x/a" "$SHALF"
	pm_cut session "$L/small" "$TEST_USER" "$SW/y/a" "$SHALF"
	sleep $((RS_AGE + 4))
	env_case
	pm_cut client "$L/small" "$TEST_USER" "$SW/z/a" "$SHALF"
	check "sweep: without a staging directory the store is in the destination directory" \
	    test "$(stat -c '%a %U' "$SW/x/.au-partial-$TEST_UID" 2>&1)" = "700 $TEST_USER"
	before=$(dcount "$SW")
	check "sweep: three partials before -S ($before)" test "$before" = 3
	ATOMIC_UPLOAD_PARTIAL_AGE=$((RS_AGE + 2)) "$SFTP_SERVER" -S "$SW" \
	    >"$WORK/sweep.out" 2>&1
	rc=$?
	check "sweep: sftp-server -S exit status 0 ($(head -1 "$WORK/sweep.out"))" test $rc = 0
	after=$(dcount "$SW")
	check "sweep: the two expired partials removed, the fresh one kept ($after left)" \
	    test "$after" = 1
	check "sweep: the fresh one is z's" test "$(dcount "$SW/z")" = 1
	mark
	pm "$TEST_USER" resume "$L/small" "$SW/z/a" rplus >"$WORK/c.out" 2>&1
	check "sweep: z resumed, byte for byte" cmp -s "$L/small" "$SW/z/a"
	slog >"$WORK/log2"
	check "sweep: z resumed from $SHALF bytes" \
	    test "$(resumed "$WORK/log2" "$SW/z/a")" = "$SHALF"
	check "sweep: x and y: nothing published" \
	    test ! -e "$SW/x/a" -a ! -e "$SW/y/a"
	check "sweep: no partial data left" test "$(dcount "$SW")" = 0
	env_case -t
fi

# ---- 3. Isolation -----------------------------------------------------------
# seen_by USER: what USER's session says of NAME: stat, listing.
if section 3; then
	env_case -t
	base0=$(dcount "$STAGE")
	place "$L/oldsmall" iso-rep
	pm_cut client "$L/small" "$TEST_USER" "$D/iso-new" "$SHALF"
	pm_cut session "$L/small" "$TEST_USER" "$D/iso-rep" "$SHALF"
	OLDS=$(stat -c %s "$L/oldsmall")
	check "isolation: on disk: no iso-new" test ! -e "$D/iso-new"
	check "isolation: on disk: iso-rep is still the old file" \
	    cmp -s "$L/oldsmall" "$D/iso-rep"
	# The user's own sessions see the partials.
	check "isolation: $TEST_USER: stat iso-new: $SHALF bytes" \
	    test "$(pm "$TEST_USER" stat "$D/iso-new" 2>&1)" = "$SHALF"
	check "isolation: $TEST_USER: stat iso-rep: $SHALF bytes (the partial)" \
	    test "$(pm "$TEST_USER" stat "$D/iso-rep" 2>&1)" = "$SHALF"
	check "isolation: $TEST_USER: listing shows iso-new, $SHALF bytes" \
	    test "$(pm "$TEST_USER" list "$D" iso-new 2>&1)" = "$SHALF"
	check "isolation: $TEST_USER: listing shows iso-rep, $SHALF bytes" \
	    test "$(pm "$TEST_USER" list "$D" iso-rep 2>&1)" = "$SHALF"
	rm -f "$WORK/got"
	pm "$TEST_USER" get "$D/iso-new" "$WORK/got" >/dev/null 2>&1
	head -c "$SHALF" "$L/small" >"$WORK/head"
	check "isolation: $TEST_USER: reading iso-new reads the partial" \
	    cmp -s "$WORK/head" "$WORK/got"
	# An exclusive create of a partial's name: it exists (as stock's
	# half-written file would).  Out of the watcher's sight: a wrongly
	# created empty file is not the point there.
	for m in excl xmode; do
		pm_cut client "$L/small" "$TEST_USER" "$NW/$m" "$SHALF"
		r=$(pm "$TEST_USER" $m "$NW/$m" 2>&1)
		check "isolation: $TEST_USER: exclusive create ($m) of a partial's name: refused (${r%% *})" \
		    test "${r%% *}" = refused
		check "isolation: exclusive create ($m): nothing on disk, the partial kept" \
		    test ! -e "$NW/$m" -a "$(pm "$TEST_USER" stat "$NW/$m" 2>&1)" = "$SHALF"
		pm "$TEST_USER" remove "$NW/$m" >/dev/null 2>&1
	done
	# Nobody else does.
	for who in "$USER2" root; do
		check "isolation: $who: stat iso-new: no such file" \
		    test "$(pm "$who" stat "$D/iso-new" 2>&1)" = ENOENT
		check "isolation: $who: stat iso-rep: the old size" \
		    test "$(pm "$who" stat "$D/iso-rep" 2>&1)" = "$OLDS"
		check "isolation: $who: listing: no iso-new" \
		    test "$(pm "$who" list "$D" iso-new 2>&1)" = absent
		check "isolation: $who: listing: iso-rep, the old size" \
		    test "$(pm "$who" list "$D" iso-rep 2>&1)" = "$OLDS"
		rm -f "$WORK/got"
		pm "$who" get "$D/iso-rep" "$WORK/got" >/dev/null 2>&1
		check "isolation: $who: reading iso-rep reads the old file" \
		    cmp -s "$L/oldsmall" "$WORK/got"
	done
	check "isolation: the store is 0700 and $TEST_USER's" \
	    test "$(stat -c '%a %U' "$STORE" 2>&1)" = "700 $TEST_USER"
	check "isolation: $USER2 cannot list the store" \
	    cannot as_user2 ls "$STORE"
	d1=$(find "$STORE" -name 'd.*' 2>/dev/null | head -1)
	check "isolation: $USER2 cannot read partial data" \
	    cannot as_user2 cat "${d1:-$STORE/d.none}"
	# Resumed by the user, both end as the new file.
	pm "$TEST_USER" resume "$L/small" "$D/iso-new" rplus >/dev/null 2>&1 && pub iso-new
	pm "$TEST_USER" resume "$L/small" "$D/iso-rep" append >/dev/null 2>&1 && pub iso-rep
	check "isolation: iso-new resumed, byte for byte" cmp -s "$L/small" "$D/iso-new"
	check "isolation: iso-rep resumed, byte for byte the new file" \
	    cmp -s "$L/small" "$D/iso-rep"

	# The same directory through another path (a symlink): the same
	# partial.
	ln -s "$D" "$FS/uplink"
	pm_cut client "$L/small" "$TEST_USER" "$D/iso-link" "$SHALF"
	check "another path: the user sees the partial through the symlink" \
	    test "$(pm "$TEST_USER" stat "$FS/uplink/iso-link" 2>&1)" = "$SHALF"
	r=$(pm "$TEST_USER" resume "$L/small" "$FS/uplink/iso-link" rplus 2>&1 | tail -1)
	[ "${r#from}" != "$r" ] && pub iso-link
	check "another path: resumed through it from $SHALF ($r)" test "$r" = "from $SHALF"
	check "another path: byte for byte" cmp -s "$L/small" "$D/iso-link"
	rm -f "$FS/uplink"

	# The destination changed meanwhile (a file published there by
	# someone else): the partial is forgotten, the user sees that file.
	pm_cut client "$L/small" "$TEST_USER" "$D/iso-chg" "$SHALF"
	place "$L/oldsmall" iso-chg
	check "changed meanwhile: the user sees the new file, not the partial" \
	    test "$(pm "$TEST_USER" stat "$D/iso-chg" 2>&1)" = "$OLDS"
	# A non-truncating open of it opens that file (a client resuming
	# the file it is shown: here it has nothing more to send).
	mark
	r=$(pm "$TEST_USER" resume "$L/oldsmall" "$D/iso-chg" rplus 2>&1 | tail -1)
	slog >"$WORK/log2"
	check "changed meanwhile: a non-truncating open continues that file, not the partial ($r)" \
	    test "$r" = "from $OLDS" -a -z "$(resumed "$WORK/log2" "$D/iso-chg")"
	check "changed meanwhile: that file unchanged" cmp -s "$L/oldsmall" "$D/iso-chg"
	check "changed meanwhile: its data gone" test "$(dcount "$STAGE")" = "$base0"

	# What discards a partial: REMOVE, a truncating OPEN, RENAME.
	base=$(dcount "$STAGE")
	pm_cut client "$L/small" "$TEST_USER" "$D/iso-rm" "$SHALF"
	pm "$TEST_USER" remove "$D/iso-rm" >/dev/null 2>&1
	check "discard: REMOVE of a partial's name discards it" \
	    test "$(dcount "$STAGE")" = "$base"
	check "discard: after REMOVE: no such file" \
	    test "$(pm "$TEST_USER" stat "$D/iso-rm" 2>&1)" = ENOENT
	pm_cut client "$L/small" "$TEST_USER" "$D/iso-tr" "$SHALF"
	mark
	pm "$TEST_USER" put "$L/small" "$D/iso-tr" >/dev/null 2>&1 && pub iso-tr
	check "discard: a truncating upload over a partial: byte for byte" \
	    cmp -s "$L/small" "$D/iso-tr"
	slog >"$WORK/log2"
	check "discard: a truncating upload resumes nothing, sends everything" \
	    test -z "$(resumed "$WORK/log2" "$D/iso-tr")" -a \
	    "$(written "$WORK/log2" "$D/iso-tr")" = "$SMALL"
	check "discard: the truncated partial's data is gone" \
	    test "$(dcount "$STAGE")" = "$base"
	pm_cut client "$L/small" "$TEST_USER" "$D/iso-mv" "$SHALF"
	pm "$TEST_USER" rename "$D/iso-mv" "$D/iso-mv2" >/dev/null 2>&1
	check "discard: RENAME of a partial's name: nothing published" \
	    test ! -e "$D/iso-mv" -a ! -e "$D/iso-mv2"
	check "discard: RENAME of a partial's name discards it" \
	    test "$(dcount "$STAGE")" = "$base"

	# ATOMIC_UPLOAD_PARTIAL_MAX: bigger than the cap: not kept; over
	# the cap: the oldest evicted.
	env_case -t "ATOMIC_UPLOAD_PARTIAL_MAX=$((SHALF / 1048576 - 1))M"
	pm_cut client "$L/small" "$TEST_USER" "$D/cap-big" "$SHALF"
	check "cap: a partial bigger than the cap is not kept (log)" \
	    has_line "$WORK/log1" "partial \"$D/cap-big\" not kept"
	check "cap: ... and not in the store" test "$(dcount "$STAGE")" = "$base"
	env_case -t "ATOMIC_UPLOAD_PARTIAL_MAX=$((SHALF * 3 / 2))"
	pm_cut client "$L/small" "$TEST_USER" "$D/cap-1" $((SHALF / 2))
	sleep 1
	pm_cut client "$L/small" "$TEST_USER" "$D/cap-2" $((SHALF / 2 + 4096))
	sleep 1
	pm_cut client "$L/small" "$TEST_USER" "$D/cap-3" $((SHALF / 2 + 8192))
	check "cap: the oldest evicted: two partials left" \
	    test "$(dcount "$STAGE")" = $((base + 2))
	check "cap: cap-1 (oldest) gone" \
	    test "$(pm "$TEST_USER" stat "$D/cap-1" 2>&1)" = ENOENT
	check "cap: cap-3 (newest) kept" \
	    test "$(pm "$TEST_USER" stat "$D/cap-3" 2>&1)" = $((SHALF / 2 + 8192))
	env_case -t
	for n in cap-2 cap-3; do
		pm "$TEST_USER" remove "$D/$n" >/dev/null 2>&1
	done
	check "cap: nothing left after removing them" \
	    test "$(dcount "$STAGE")" = "$base"
fi

# ---- 4. A resume from a changed source, cut again -----------------------
if section 4; then
	env_case -t
	place "$L/old" chg-rep
	for name in chg-new chg-rep; do
		dest="$D/$name"
		mark
		start_sftp "$L/big" "$TEST_USER" "$dest"
		spid=$(next_server)
		wait_staged "$spid" "$HALF"
		cut_upload client "$CPID" "$spid"
		slog >"$WORK/log1"
		n1=$(kept "$WORK/log1" "$dest")
		# The source changed; reput continues from the partial with
		# other bytes, and is cut again.
		mark
		printf 'reput %s %s\n' "$L/big2" "$dest" >"$WORK/batch"
		# (Slower, and cut a quarter of the way: it must not finish
		# before the cut.)
		(exec sftp -q -l $((KBIT / 4)) -b "$WORK/batch" $SSH_OPTS "$TEST_USER@localhost") \
		    >"$WORK/c.out" 2>&1 &
		CPID=$!; BG="$BG $CPID"
		spid=$(next_server)
		note_session "$spid"
		wait_staged "$spid" $(( ${n1:-0} + (SIZE - ${n1:-0}) / 4 ))
		s2=$(staged "$spid")
		cut_upload session "$CPID" "$spid"
		slog >"$WORK/log2"
		n2=$(kept "$WORK/log2" "$dest")
		verbose "$name: kept ${n1:-none}, resumed to $s2, kept ${n2:-none}"
		if [ $name = chg-new ]; then
			check "changed source, cut twice: $name: nothing published" \
			    test ! -e "$dest"
		else
			check "changed source, cut twice: $name: the old file" \
			    cmp -s "$L/old" "$dest"
		fi
		check "changed source, cut twice: $name: the second cut kept more (${n1:-none} then ${n2:-none})" \
		    test -n "$n1" -a -n "$n2" -a "${n2:-0}" -gt "${n1:-0}"
		check "changed source, cut twice: $name: the user sees the partial" \
		    test "$(pm "$TEST_USER" stat "$dest" 2>&1)" = "${n2:-x}"
		# A plain put of the new source ends it.
		sftp_cmd "$TEST_USER" put "$L/big2" "$dest" && pub $name
		check "changed source: $name: a plain put: byte for byte" \
		    cmp -s "$L/big2" "$dest"
	done
	check "changed source: no partial data left" test "$(dcount "$STAGE")" = 0
fi

# ---- 5. lftp reconnects on its own while replacing ---------------------------
if section 5; then
	if [ $have_lftp = 1 ]; then
		env_case -t
		place "$L/old" lftp-rep
		dest="$D/lftp-rep"
		mark
		LFTP_RETRIES=5
		# (A quarter of the rate: it must still be running at the cut.)
		(exec lftp -c "$(lftp_pre "$TEST_USER" $((RS_RATE / 4)) "set net:reconnect-interval-base 1; set net:reconnect-interval-multiplier 1; set net:persist-retries 3;"); put $L/big -o $dest") \
		    >"$WORK/c.out" 2>&1 &
		CPID=$!; BG="$BG $CPID"
		LFTP_RETRIES=1
		spid=$(next_server)
		sess=$(session_of "$spid")
		wait_staged "$spid" "$HALF"
		[ -n "$sess" ] && kill -9 "$sess"
		verbose "lftp-rep: cut past $HALF bytes"
		wait_for gone "$spid"
		reap "$CPID"
		rc=$?
		verbose "lftp: exit $rc, $(sessions | wc -l) sessions: $(tail -2 "$WORK/c.out" | tr '\n' '|')"
		check "lftp reconnecting: cut mid-upload, it reconnected ($(sessions | wc -l) sessions)" \
		    test "$(sessions | wc -l)" -ge 2
		judge "lftp reconnecting while replacing" "$rc" "$dest" "$L/big" "$L/old"
		[ $rc = 0 ] && pub lftp-rep
		slog >"$WORK/log2"
		grep -e '^resume ' -e '^partial ' -e '^commit ' -e '^abort ' -e '^open ' "$WORK/log2" |
		    grep -F "\"$dest\"" | sed 's/^/# server: /'
		check "lftp reconnecting: no partial data left" test "$(dcount "$STAGE")" = 0
	else
		skip "lftp reconnecting while replacing" "lftp not installed"
	fi
fi

# ---- 6. psftp reput after a killed replacement -----------------------------
if section 6; then
	if [ $have_psftp = 1 ]; then
		env_case -t
		dest="$D/psftp-rep"
		place "$L/pold" psftp-rep
		mark
		start_psftp "$L/psrc" "$TEST_USER" "$dest"
		spid=$(next_server)
		wait_staged "$spid" $((PSIZE / 2))
		cut_upload client "$CPID" "$spid"
		check "psftp replacement cut: the old file in place" cmp -s "$L/pold" "$dest"
		psftp_cmd "$TEST_USER" reput "$L/psrc" "$dest"
		rc=$?
		judge "psftp reput after a killed replacement" "$rc" "$dest" "$L/psrc" "$L/pold"
		[ $rc = 0 ] && pub psftp-rep

		# The partial expired: the old file is back in view, and a
		# reput must not append the new file's tail to it.
		env_case -t "ATOMIC_UPLOAD_PARTIAL_AGE=$RS_AGE"
		place "$L/pold" psftp-rep
		mark
		start_psftp "$L/psrc" "$TEST_USER" "$dest"
		spid=$(next_server)
		wait_staged "$spid" $((PSIZE / 2))
		cut_upload client "$CPID" "$spid"
		sleep $((RS_AGE + 1))
		mark
		psftp_cmd "$TEST_USER" reput "$L/psrc" "$dest"
		rc=$?
		verbose "psftp reput after expiry: exit $rc: $(tail -2 "$WORK/c.out" | tr '\n' '|')"
		check "psftp reput after the partial expired: refused" test $rc != 0
		check "psftp reput after the partial expired: the old file intact" \
		    cmp -s "$L/pold" "$dest"
		[ $rc = 0 ] && pub psftp-rep
		slog >"$WORK/log2"
		check "psftp reput after expiry: log: resume ... refused" \
		    grep -q "^resume \"$dest\" refused: " "$WORK/log2"
		check "sftp reput after expiry: refused too" \
		    sh -c "! sftp -q -b - $SSH_OPTS '$TEST_USER@localhost' >/dev/null 2>&1 <<EOF
reput $L/psrc $dest
EOF"
		check "sftp reput after expiry: the old file intact" cmp -s "$L/pold" "$dest"
		psftp_cmd "$TEST_USER" put "$L/psrc" "$dest"
		rc=$?
		check "psftp put after the refusal: succeeds" test $rc = 0
		[ $rc = 0 ] && pub psftp-rep
		check "psftp put after the refusal: byte for byte" cmp -s "$L/psrc" "$dest"
		env_case -t
	else
		skip "psftp reput after a killed replacement" "putty-tools not installed"
	fi
fi

# ---- 7. ATOMIC_UPLOAD_RESUME=off ----------------------------------------------
if section 7; then
	env_case -t ATOMIC_UPLOAD_RESUME=off
	base=$(dcount)
	pm_cut client "$L/small" "$TEST_USER" "$D/off" "$SHALF"
	check "resume off: nothing at the name after the cut" test ! -e "$D/off"
	check "resume off: abort logged" has_line "$WORK/log1" "abort \"$D/off\" bytes "
	check "resume off: no partial kept (log)" \
	    test -z "$(kept "$WORK/log1" "$D/off")"
	check "resume off: nothing in any store" test "$(dcount)" = "$base"
	mark
	sftp_cmd "$TEST_USER" reput "$L/small" "$D/off"
	rc=$?
	if [ $rc != 0 ]; then
		check "resume off: reput fails, nothing published" test ! -e "$D/off"
	else
		pub off
		check "resume off: reput started over: byte for byte" cmp -s "$L/small" "$D/off"
	fi
	slog >"$WORK/log2"
	check "resume off: no resume line" test -z "$(resumed "$WORK/log2" "$D/off")"
	env_case -t
fi

# ---- 8. A cancel keeps nothing ---------------------------------------------
if section 8; then
	env_case -t
	base=$(dcount)
	mark
	pm "$TEST_USER" cancel "$L/small" "$D/cancel" "$SHALF" >"$WORK/c.out" 2>&1
	check "cancel (declared size, CLOSE early): the close fails" \
	    grep -q '^close failed' "$WORK/c.out"
	slog >"$WORK/log1"
	check "cancel: abort reason: the declared size" \
	    grep -q "^abort \"$D/cancel\" .* reason \"declared size $SMALL, received $SHALF\"" "$WORK/log1"
	check "cancel: no partial kept (log)" test -z "$(kept "$WORK/log1" "$D/cancel")"
	check "cancel: nothing in any store" test "$(dcount)" = "$base"
	check "cancel: nothing published" test ! -e "$D/cancel"

	# A malformed packet (lost framing) ends the session: nothing kept.
	mark
	pm "$TEST_USER" malformed "$L/small" "$D/malformed" "$SHALF" >"$WORK/c.out" 2>&1
	slog >"$WORK/log1"
	grep -F "\"$D/malformed\"" "$WORK/log1" | grep -v '^open ' | sed 's/^/# server: /'
	check "malformed packet: the session ended, the upload aborted" \
	    has_line "$WORK/log1" "abort \"$D/malformed\" "
	check "malformed packet: no partial kept (log)" \
	    test -z "$(kept "$WORK/log1" "$D/malformed")"
	check "malformed packet: nothing in any store" test "$(dcount)" = "$base"
	check "malformed packet: nothing published" test ! -e "$D/malformed"

	# OpenSSH sftp interrupted (SIGINT, as ^C): it closes the handle
	# without having declared a size; in a directory the watcher does
	# not read.
	mark
	start_sftp "$L/big" "$TEST_USER" "$NW/intr"
	spid=$(next_server)
	wait_staged "$spid" "$HALF"
	kill -INT "$CPID"
	reap "$CPID"
	wait_for gone "$spid"
	slog >"$WORK/log1"
	if grep -q "^abort \"$NW/intr\" .*declared size" "$WORK/log1"; then
		check "sftp ^C: no partial kept" test -z "$(kept "$WORK/log1" "$NW/intr")"
	elif grep -q "^commit \"$NW/intr\" " "$WORK/log1" ||
	    { [ $ours = 0 ] && grep -q "^close \"$NW/intr\" " "$WORK/log1"; }; then
		skip "sftp ^C: a cancel not kept" "OpenSSH sftp declares no size at OPEN: its interrupted put closes the handle and the part is published (sftp-server.8, the documented limit)"
	else
		skip "sftp ^C: a cancel not kept" "sftp did not close the upload on SIGINT: $(grep -F "\"$NW/intr\"" "$WORK/log1" | tail -2 | tr '\n' '|')"
	fi
	check "sftp ^C: no partial data kept" test "$(dcount)" = "$base"
fi

[ "$RS_SECTIONS" = none ] && return 0
# ---- 9. A replacement in progress in another session ---------------------
# While a session of the user replaces a file, another session's
# non-truncating write-open of it would continue a partial that is not
# there yet: refused.  The upload then completes.
if section 9; then
	env_case -t
	place "$L/old" busy
	mark
	# (A quarter of the rate: it must still be running at the resume.)
	printf 'put %s %s\n' "$L/big" "$D/busy" >"$WORK/batch"
	(exec sftp -q -l $((KBIT / 4)) -b "$WORK/batch" $SSH_OPTS "$TEST_USER@localhost") \
	    >"$WORK/c.out" 2>&1 &
	CPID=$!; BG="$BG $CPID"
	spid=$(next_server)
	wait_staged "$spid" $((SIZE / 8))
	r=$(pm "$TEST_USER" resume "$L/big" "$D/busy" rplus 2>&1 | tail -1)
	verbose "resume during the replacement: $r"
	check "busy: a resume while another session replaces the file: refused" \
	    test "${r#from}" = "$r"
	check "busy: meanwhile the old file in place" cmp -s "$L/old" "$D/busy"
	reap "$CPID" $RS_TIMEOUT
	rc=$?
	check "busy: the replacement itself completes" test $rc = 0
	[ $rc = 0 ] && pub busy
	check "busy: byte for byte the new file" cmp -s "$L/big" "$D/busy"
	slog >"$WORK/log2"
	check "busy: log: resume ... refused" grep -q "^resume \"$D/busy\" refused: " "$WORK/log2"
	check "busy: the refusal says another session is replacing it (not an interrupted upload)" \
	    grep -q "^resume \"$D/busy\" refused: .*another session" "$WORK/log2"

	# After a refusal (the record of an interrupted replacement, its
	# data expired), a plain upload clears the record: a non-truncating
	# open is allowed again.
	env_case -t "ATOMIC_UPLOAD_PARTIAL_AGE=$RS_AGE"
	place "$L/oldsmall" cleared
	pm_cut client "$L/small" "$TEST_USER" "$D/cleared" "$SHALF"
	sleep $((RS_AGE + 1))
	r=$(pm "$TEST_USER" resume "$L/small" "$D/cleared" rplus 2>&1 | tail -1)
	check "record: resume onto the old file after expiry: refused" \
	    test "${r#from}" = "$r"
	check "record: the old file intact" cmp -s "$L/oldsmall" "$D/cleared"
	pm "$TEST_USER" put "$L/small" "$D/cleared" >/dev/null 2>&1 && pub cleared
	check "record: a plain upload then: byte for byte" cmp -s "$L/small" "$D/cleared"
	r=$(pm "$TEST_USER" resume "$L/small" "$D/cleared" rplus 2>&1 | tail -1)
	check "record: cleared by it: a non-truncating open allowed again ($r)" \
	    test "$r" = "from $SMALL"
	check "record: the file unchanged by that" cmp -s "$L/small" "$D/cleared"
	env_case -t
fi

# ---- The watcher's verdict, and what is left ------------------------------
watch_verdict
# publishes NAME: the watcher's create + moved_to count for $D/NAME.
publishes() {
	sed -n "s|^# name $D/$1 .* events \([^ ]*\).*|\1|p" "$WORK/watch.out" |
	    tr ',' '\n' | awk -F= '$1 == "create" || $1 == "moved_to" { n += $2 }
	    END { print n + 0 }'
}
bad=""
for name in "${!PUB[@]}"; do
	p=$(publishes "$name")
	[ "$p" -le "${PUB[$name]}" ] || bad="$bad $name($p>${PUB[$name]})"
done
check "each name appeared at most once per upload${bad:+:$bad}" test -z "$bad"
check "no partial data left in any store" test "$(dcount)" = 0
check "nothing but stores in the staging directory" stores_only "$STAGE"
wait_for sessions_gone || verbose "sshd sessions still running"
exit 0
