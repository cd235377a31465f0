#!/bin/bash
# The commit hook (hook.h; sftp-server.8, DIGESTS AND THE COMMIT HOOK),
# end to end through a real sshd on 127.0.0.1, mostly as the
# unprivileged $TEST_USER:
#   1. OpenSSH sftp, scp (SFTP mode), scp -O (our scp -t) and paramiko:
#      one run per committed file, as the uploading user, as
#      "PROGRAM FINAL_PATH", with every UPLOAD_* variable right (the path
#      through a symlinked directory resolved, the client's path as
#      sent, the size and SHA-256 of what arrived; variables of those
#      names planted in the session never leak through);
#   2. aborted uploads (clients SIGKILLed mid-file, a client leaving
#      without CLOSE) run no hook unless ATOMIC_UPLOAD_HOOK_ABORTS=on;
#      an upload that changed nothing runs none even then;
#   3. a hook that hangs never delays the client, is killed at
#      ATOMIC_UPLOAD_HOOK_TIMEOUT (SIGKILL 5 s after an ignored SIGTERM,
#      its whole process group), and the runner holds none of the
#      session's descriptors; a failing hook's output and exit status
#      are logged;
#   4. ATOMIC_UPLOAD_HOOK_MAX_RUNNING bounds how many run at once;
#   5. nothing is left: no process of the user (nor root's runner), no
#      zombie, no session; a live session has no child after its hook;
#   6. a relative hook is refused.
# The subsystem and the session's scp are wrappers that take each case's
# settings from $WORK/server.env.  Against stock
# (SFTP_SERVER=/usr/lib/openssh/sftp-server, SCP=/usr/bin/scp) the
# uploads still run and the hook checks SKIP.
tid=t-hook
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"
need_root
test_user_setup

PY=/usr/bin/python3
CLIENT_SCP=${CLIENT_SCP:-/usr/bin/scp}
[ -x "$SFTP_SERVER" ] || fail "no server at $SFTP_SERVER"
[ -x "$SCP" ] || fail "no scp at $SCP"
"$CLIENT_SCP" -O 2>&1 | grep -q 'unknown option' &&
    { skip "$tid" "OpenSSH scp without -O"; exit 0; }
have_pm=1
"$PY" -c 'import paramiko' 2>/dev/null || have_pm=0
ours_sftp=1
[ "$SFTP_SERVER" = "$STOCK_SFTP_SERVER" ] && ours_sftp=0
ours_scp=0
grep -aq ATOMIC_UPLOAD_HOOK "$SCP" && ours_scp=1
NOHOOK_SFTP="stock sftp-server has no commit hook"
NOHOOK_SCP="stock scp has no commit hook"

EV="$WORK/ev"		# the hooks write here (one file per run)
D="$WORK/d"		# uploads land here (the user's)
L="$WORK/l"		# local files
H="$WORK/hooks"		# the hook programs
LOG="$WORK/server.log"	# sftp-server's stderr (-e -l INFO)
SCPLOG="$WORK/scp.log"	# scp -t's (ATOMIC_UPLOAD_LOG=stderr)
mkdir -p "$EV" "$D" "$L" "$H"
RWORK=$(realpath "$WORK")	# as UPLOAD_PATH shows it
chown "$TEST_USER" "$EV" "$D"
: >"$LOG"
: >"$SCPLOG"
: >"$WORK/server.pids"
chmod 666 "$LOG" "$SCPLOG" "$WORK/server.pids"

# ---- The hooks --------------------------------------------------------
# env.sh: one file per run, ev.*, with its environment, arguments, uid
# and parent (the runner); written aside and renamed, so a file seen is
# complete.
cat >"$H/env.sh" <<EOF
#!/bin/sh
t=\$(mktemp "$EV/.tmp.XXXXXX") || exit 1
{ env; printf 'HOOK_ARGC=%s\nHOOK_ARG1=%s\nHOOK_UID=%s\nHOOK_PPID=%s\n' \\
    "\$#" "\$1" "\$(id -u)" "\$PPID"; } >"\$t"
mv "\$t" "$EV/ev.\${t##*.}"
EOF
# hang.sh: ignores SIGTERM (so does its sleep), records its PIDs.
cat >"$H/hang.sh" <<EOF
#!/bin/sh
trap '' TERM
sleep 300 &
echo \$! >"$EV/hang.sleep"
echo \$PPID >"$EV/hang.runner"
date +%s.%N >"$EV/hang.start"
echo \$\$ >"$EV/hang.pid"
wait
EOF
# hangterm.sh: hangs, but SIGTERM ends it; files named by protocol.
cat >"$H/hangterm.sh" <<EOF
#!/bin/sh
p=$EV/hangterm.\$UPLOAD_PROTOCOL
sleep 300 &
echo \$! >"\$p.sleep"
echo \$PPID >"\$p.runner"
date +%s.%N >"\$p.start"
echo \$\$ >"\$p.pid"
wait
EOF
# fail.sh: talks on both outputs, exits 3.
cat >"$H/fail.sh" <<'EOF'
#!/bin/sh
echo "on stdout: $UPLOAD_SIZE bytes"
echo "on stderr: cannot process $1" >&2
exit 3
EOF
# slow.sh: one second each; how many were running when it started (its
# own marker included) goes into slow.log.
cat >"$H/slow.sh" <<EOF
#!/bin/sh
: >"$EV/run.\$\$"
n=\$(ls "$EV" | grep -c '^run\\.')
echo "start \$\$ \$n \$1" >>"$EV/slow.log"
sleep 1
rm -f "$EV/run.\$\$"
echo "end \$\$" >>"$EV/slow.log"
EOF
chmod 755 "$H"/*.sh

# ---- The session's sftp-server and scp ------------------------------
# server.env sets HOOK (the program), HOOK_VIA (flag: -H, env:
# ATOMIC_UPLOAD_HOOK), LOGTO (file, or channel: stderr left to sshd's
# channel) and exports any ATOMIC_UPLOAD_* setting.  The session also
# plants UPLOAD_* variables that a hook must never see, and one other
# variable it must.
WRAP="$WORK/sftp-server-wrap"
cat >"$WRAP" <<EOF
#!/bin/sh
echo \$\$ >>"$WORK/server.pids"
HOOK= HOOK_VIA=flag LOGTO=file SERVER_ARGS=
. "$WORK/server.env"
UPLOAD_EVENT=planted UPLOAD_REASON=planted UPLOAD_SHA256=planted
HOOKTEST_SESSION=inherited
export UPLOAD_EVENT UPLOAD_REASON UPLOAD_SHA256 HOOKTEST_SESSION
if [ $ours_sftp = 1 ] && [ -n "\$HOOK" ]; then
	case \$HOOK_VIA in
	flag)	set -- "\$@" -H "\$HOOK" ;;
	env)	ATOMIC_UPLOAD_HOOK=\$HOOK; export ATOMIC_UPLOAD_HOOK ;;
	esac
fi
[ "\$LOGTO" = channel ] && exec "$SFTP_SERVER" "\$@" \$SERVER_ARGS
exec "$SFTP_SERVER" "\$@" \$SERVER_ARGS 2>>"$LOG"
EOF
BIN="$OBJ/regress/work/bin"
mkdir -p "$BIN"
cat >"$BIN/scp" <<EOF
#!/bin/sh
HOOK= LOGTO=file
. "$WORK/server.env"
UPLOAD_EVENT=planted UPLOAD_REASON=planted UPLOAD_SHA256=planted
HOOKTEST_SESSION=inherited
export UPLOAD_EVENT UPLOAD_REASON UPLOAD_SHA256 HOOKTEST_SESSION
[ -n "\$HOOK" ] && { ATOMIC_UPLOAD_HOOK=\$HOOK; export ATOMIC_UPLOAD_HOOK; }
[ "\$LOGTO" = channel ] && exec "$SCP" "\$@"
ATOMIC_UPLOAD_LOG=stderr; export ATOMIC_UPLOAD_LOG
exec "$SCP" "\$@" 2>>"$SCPLOG"
EOF
chmod 755 "$WRAP" "$BIN/scp"
on_exit "rm -f '$BIN/scp'"
# env_case LINE...: the settings of the next sessions.
env_case() {
	printf '%s\n' "$@" >"$WORK/server.env"
	chmod 644 "$WORK/server.env"
}
env_case "HOOK=$H/env.sh"

REAL_SFTP_SERVER=$SFTP_SERVER
SFTP_SERVER=$WRAP SFTP_SERVER_ARGS="-e -l INFO" start_sshd
SFTP_SERVER=$REAL_SFTP_SERVER

# ---- Helpers -----------------------------------------------------------
usftp() {	# sftp as the user, batch on stdin
	cat >"$WORK/batch"
	chmod 644 "$WORK/batch"
	as_user timeout 60 sftp $USER_SSH_OPTS -q -b "$WORK/batch" \
	    "$TEST_USER@localhost" \
	    >"$WORK/out" 2>&1
}
uscp() {	# scp (SFTP mode) as the user
	as_user timeout 60 "$CLIENT_SCP" -q $USER_SSH_OPTS "$@" 2>"$WORK/out"
}
uscpO() {	# scp -O as the user
	as_user timeout 60 "$CLIENT_SCP" -O -q $USER_SSH_OPTS "$@" \
	    2>"$WORK/out"
}
pm() {		# the paramiko helper below, as the user (shared key)
	timeout 60 "$PY" "$WORK/pm.py" "$SSHD_PORT" "$WORK/sshd/client_key" \
	    "$TEST_USER" "$@"
}
cat >"$WORK/pm.py" <<'EOF'
import os, sys, time, paramiko
port, key, user, mode = sys.argv[1:5]
args = sys.argv[5:]
c = paramiko.SSHClient()
c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
c.connect("127.0.0.1", port=int(port), username=user, allow_agent=False,
          pkey=paramiko.Ed25519Key.from_private_key_file(key),
          look_for_keys=False, timeout=20)
s = c.open_sftp()
if mode == "put":
    s.put(args[0], args[1])
elif mode == "hold":		# put, then keep the session until told
    s.put(args[0], args[1])
    print("put", flush=True)
    while not os.path.exists(args[2]):
        time.sleep(0.1)
elif mode == "unchanged":	# opened for writing, closed untouched
    s.open(args[0], "r+").close()
elif mode == "vanish":		# half written, gone without CLOSE
    f = s.open(args[0], "wb")
    f.write(b"v" * 65536)
    f.flush()
    c.get_transport().close()
    os._exit(0)
c.close()
EOF

# our_procs: this test's processes, the user's and root's (other tests
# may run meanwhile, as the same user): programs of this build (servers
# and their runners), hooks, clients, everything in their sessions (a
# hook's children are in its runner's), and whatever has an UPLOAD_PATH
# of ours in its environment (a hook's children, even orphaned).
our_procs() {
	local env_pids
	env_pids=$(grep -lszF "UPLOAD_PATH=$RWORK/" /proc/[0-9]*/environ |
	    cut -d/ -f3 | tr '\n' ' ')
	# (the patterns go in the environment: awk's arguments would match)
	ps -e -o pid=,sid=,user=,stat=,args= 2>/dev/null |
	    P1="$OBJ/" P2="$H/" P3="$WORK/sshd/ssh_config" P4="$WORK/pm.py" \
	    P5=" $env_pids " awk '
		{
			line[$1] = $0; sid[$1] = $2
			a = $0; sub(/^ *[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +/, "", a)
			ours[$1] = index(a, ENVIRON["P1"]) == 1 ||
			    index(a, ENVIRON["P2"]) || index(a, ENVIRON["P3"]) ||
			    index(a, ENVIRON["P4"]) ||
			    index(ENVIRON["P5"], " " $1 " ")
		}
		END { for (p in line) if (ours[p] || ours[sid[p]]) print line[p] }'
}
no_procs() { [ -z "$(our_procs)" ]; }
# note_pids PID...: hooks that must not outlive the test.  At exit, a
# broken server's leftovers are killed by PID: noted hooks still running
# (if their environment shows they are this test's) and our_procs.
note_pids() { echo "$*" >>"$WORK/hook.pids"; }
kill_leftovers() {
	local p
	for p in $(cat "$WORK/hook.pids" 2>/dev/null); do
		tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null |
		    grep -q "^UPLOAD_PATH=$RWORK/" && kill -KILL "$p"
	done
	for p in $(our_procs | awk '{ print $1 }'); do
		[ "$p" != $$ ] && kill -KILL "$p"
	done
}
on_exit kill_leftovers
# settle: the sessions have ended and every runner and hook is gone.
settle() {
	local t0=$EPOCHREALTIME
	wait_for sessions_gone ||
	    verbose "sessions left: $(ps -o pid=,args= --ppid "$SSHD_PID" |
		tr '\n' ';')"
	wait_for no_procs ||
	    verbose "processes left: $(our_procs | tr '\n' ';')"
	trace "settled in $(since "$t0") s"
}
# fresh: no events, nothing uploaded; the next sessions use LINE...
fresh() {
	settle
	rm -rf "$EV"/* "$EV"/.tmp.* "$D"
	mkdir -p "$D/real"
	ln -s real "$D/link"
	chown -R -h "$TEST_USER" "$D"
	env_case "$@"
}
evs() { ls "$EV" | grep '^ev\.' | sed "s|^|$EV/|"; }
nev() { evs | wc -l; }
# ev_of PATH: the event files whose UPLOAD_PATH is PATH.
ev_of() { grep -lxF "UPLOAD_PATH=$1" $(evs) /dev/null 2>/dev/null; }
# has_event PATH: a hook ran for PATH.
has_event() { [ -n "$(ev_of "$1")" ]; }
# ended N: N slow hooks have ended.
ended() { [ "$(grep -c '^end' "$EV/slow.log" 2>/dev/null)" = "$1" ]; }
sha_of() { sha256sum <"$1" | cut -d' ' -f1; }
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
# lt A B: A < B (decimals)
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

# uploaded RC LOCAL REMOTE: the client succeeded, the bytes arrived.
uploaded() { [ "$1" = 0 ] && cmp -s "$2" "$3"; }
# uploaded_logged RC LOCAL REMOTE LOG TEXT: and LOG has TEXT.
uploaded_logged() { uploaded "$1" "$2" "$3" && grep -qF -- "$5" "$4"; }
# quick RC SECONDS LIMIT: the client succeeded within LIMIT seconds.
quick() { [ "$1" = 0 ] && lt "$2" "$3"; }
# logged LOG LINE...: every LINE is a whole line of LOG.
logged() {
	local log=$1 l
	shift
	for l; do tr -d '\r' <"$log" | grep -qxF -- "$l" || return 1; done
}
# dead PID...: none of them runs (a zombie waiting for init, which
# reaps orphans only now and then here, counts as dead).
dead() {
	local p st
	for p; do
		st=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		st=${st##*) }
		[ "${st%% *}" = Z ] || return 1
	done
	return 0
}
# dead_within MIN MAX T0 PID...: all gone, MIN to MAX seconds after T0.
dead_within() {
	local min=$1 max=$2 t=$(since "$3")
	shift 3
	dead "$@" && lt "$t" "$max" && ! lt "$t" "$min"
}
alive() { ! dead "$@"; }
# gone_while_alive PID: the sessions end while PID still runs.
gone_while_alive() { wait_for sessions_gone && ! dead "$1"; }

# env_is DESC FILE SPEC...: the event file holds what each SPEC says:
# VAR=VALUE exactly, VAR~ERE matching, !VAR absent.  One TAP line,
# naming every mismatch.
env_is() {
	local desc=$1 f=$2 spec var want got line bad=""
	shift 2
	local -A val
	if [ ! -f "$f" ]; then
		notok "$desc: no event"
		return
	fi
	while IFS= read -r line; do
		case $line in *=*) val[${line%%=*}]=${line#*=} ;; esac
	done <"$f"
	for spec; do
		case $spec in
		!*)	var=${spec#!}
			[ -z "${val[$var]+set}" ] ||
			    bad="$bad $var set (${val[$var]})" ;;
		*=*)	var=${spec%%=*} want=${spec#*=}
			got=${val[$var]-(unset)}
			[ "$got" = "$want" ] ||
			    bad="$bad $var=[$got] want [$want]" ;;
		*~*)	var=${spec%%~*} want=${spec#*~}
			got=${val[$var]-}
			[[ $got =~ $want ]] ||
			    bad="$bad $var=[$got] !~ $want" ;;
		esac
	done
	if [ -z "$bad" ]; then ok "$desc"; else notok "$desc:$bad"; fi
}
# commit_env DESC FILE LOCAL PATH CLIENT_PATH PROTOCOL UID [SPEC...]: a
# commit of the bytes of LOCAL at PATH, as the client named it.
commit_env() {
	local desc=$1 f=$2 loc=$3 path=$4 cpath=$5 proto=$6 uid=$7 user
	shift 7
	user=$(getent passwd "$uid" | cut -d: -f1)
	with_defaults "$@" -- UPLOAD_EVENT=commit "UPLOAD_PATH=$path" \
	    "UPLOAD_CLIENT_PATH=$cpath" "UPLOAD_SIZE=$(stat -c %s "$loc")" \
	    "UPLOAD_USER=$user" UPLOAD_CLIENT=127.0.0.1 \
	    "UPLOAD_PROTOCOL=$proto" 'UPLOAD_SECONDS~^[0-9]+\.[0-9]{3}$' \
	    "HOOK_ARGC=1" "HOOK_ARG1=$path" "HOOK_UID=$uid" \
	    HOOKTEST_SESSION=inherited '!UPLOAD_REASON' \
	    "UPLOAD_SHA256=$(sha_of "$loc")" UPLOAD_DURABILITY=full \
	    'UPLOAD_METHOD~^(tmpfile|named)$'
	env_is "$desc" "$f" "${specs[@]}"
}
# with_defaults SPEC... -- DEFAULT...: specs=(SPEC... and each DEFAULT
# whose variable no SPEC names).
with_defaults() {
	local d var named=" "
	specs=()
	while [ "$1" != -- ]; do
		specs+=("$1")
		spec_var "$1"
		named="$named$var "
		shift
	done
	shift
	for d; do
		spec_var "$d"
		case $named in *" $var "*) continue ;; esac
		specs+=("$d")
	done
}
# spec_var SPEC: var=the variable SPEC is about.
spec_var() { var=${1#!}; var=${var%%=*}; var=${var%%~*}; }
# one_run DESC PATH: exactly one event for PATH (after settle).
one_run() {
	local n
	n=$(ev_of "$2" | wc -l)
	if [ "$n" = 1 ]; then ok "$1"; else notok "$1: $n runs"; fi
}
# log_method LOGFILE PATH: the method of PATH's commit line.
log_method() {
	grep -F "commit \"$2\" " "$1" | tail -1 |
	    sed -n 's/.* method \([a-z]*\).*/\1/p'
}

head -c 70001 /dev/urandom >"$L/a"
head -c 123457 /dev/urandom >"$L/b"
head -c 3333 /dev/urandom >"$L/c"
head -c 1001 /dev/urandom >"$L/rel"
: >"$L/empty"
mkdir "$L/five"
for i in 1 2 3 4 5; do
	head -c $((i * 1000 + 7)) /dev/urandom >"$L/five/f$i"
done
"$PY" "$SRC/regress/helpers/mkpayload.py" "$L/big" 2M big
chmod -R a+rX "$L"
R=$(realpath "$D")/real		# where $D/link/* is published
RHOME=$(realpath "$TEST_HOME")
# In the user's home, named per run (other runs may share the user).
RS=hook-scp-$$ RP=hook-pm-$$
on_exit "rm -f '$TEST_HOME/$RS' '$TEST_HOME/$RP'"

# ---- 1. Commits ---------------------------------------------------------
fresh "HOOK=$H/env.sh"
printf 'old\n' >"$D/real/target"
ln -s target "$D/real/flink"
chown -h "$TEST_USER" "$D/real/target" "$D/real/flink"
printf 'put %s %s\nput %s %s\nput %s %s\n' "$L/a" "$D/link/a" \
    "$L/empty" "$D/link/empty" "$L/c" "$D/link/flink" | usftp
check "sftp put through a symlinked directory: uploaded" \
    cmp -s "$L/a" "$D/real/a"
check "sftp put to a symlink: the target replaced" \
    cmp -s "$L/c" "$D/real/target"
usftp <<EOF
put -r $L/five $D/real/five
EOF
check "sftp put -r of 5 files: uploaded" diff -r "$L/five" "$D/real/five"
uscp "$L/b" "$TEST_USER@localhost:$D/link/b"
check "scp (SFTP mode): uploaded" cmp -s "$L/b" "$D/real/b"
uscpO "$L/c" "$TEST_USER@localhost:$D/link/"
check "scp -O: uploaded" cmp -s "$L/c" "$D/real/c"
uscpO "$L/rel" "$TEST_USER@localhost:$RS"
check "scp -O to a relative name: uploaded" cmp -s "$L/rel" "$TEST_HOME/$RS"
if [ $have_pm = 1 ]; then
	pm put "$L/rel" "$RP"
	check "paramiko put to a relative name: uploaded" \
	    cmp -s "$L/rel" "$TEST_HOME/$RP"
fi
timeout 60 sftp $SSH_OPTS -q -b - root@localhost >/dev/null 2>&1 <<EOF
put $L/a $D/real/by-root
EOF
check "sftp as root: uploaded" cmp -s "$L/a" "$D/real/by-root"
settle

if [ $ours_sftp = 1 ]; then
	one_run "sftp put: the hook ran once" "$R/a"
	commit_env "sftp put through a symlinked directory: environment" \
	    "$(ev_of "$R/a")" "$L/a" "$R/a" "$D/link/a" sftp "$TEST_UID"
	check "sftp put: UPLOAD_METHOD is the commit line's" test \
	    "$(sed -n 's/^UPLOAD_METHOD=//p' "$(ev_of "$R/a")")" = \
	    "$(log_method "$LOG" "$D/link/a")"
	one_run "sftp put to a symlink: the hook ran once" "$R/target"
	commit_env "sftp put to a symlink: UPLOAD_PATH is its target" \
	    "$(ev_of "$R/target")" "$L/c" "$R/target" "$D/link/flink" sftp \
	    "$TEST_UID"
	one_run "sftp put of an empty file: the hook ran once" "$R/empty"
	commit_env "sftp put of an empty file: environment" \
	    "$(ev_of "$R/empty")" "$L/empty" "$R/empty" "$D/link/empty" \
	    sftp "$TEST_UID"
	n=0 bad=""
	for i in 1 2 3 4 5; do
		f=$(ev_of "$R/five/f$i")
		if [ "$(echo "$f" | grep -c .)" != 1 ]; then
			bad="$bad f$i:runs"
			continue
		fi
		n=$((n + 1))
		grep -qxF "UPLOAD_SHA256=$(sha_of "$L/five/f$i")" "$f" ||
		    bad="$bad f$i:sha256"
		grep -qxF "UPLOAD_SIZE=$(stat -c %s "$L/five/f$i")" "$f" ||
		    bad="$bad f$i:size"
		grep -qxF "UPLOAD_CLIENT_PATH=$D/real/five/f$i" "$f" ||
		    bad="$bad f$i:client path"
	done
	check "sftp put -r of 5 files: 5 runs, one each, right size and sha256${bad:+ (bad:$bad)}" \
	    test "$n" = 5 -a -z "$bad"
	runners=$(for i in 1 2 3 4 5; do
		sed -n 's/^HOOK_PPID=//p' "$(ev_of "$R/five/f$i")"
	done | sort -u)
	check "sftp put -r: one runner for the session's 5 runs ($(echo $runners))" \
	    test "$(echo "$runners" | grep -c .)" = 1
	one_run "scp (SFTP mode): the hook ran once" "$R/b"
	commit_env "scp (SFTP mode): environment" "$(ev_of "$R/b")" "$L/b" \
	    "$R/b" "$D/link/b" sftp "$TEST_UID"
	if [ $have_pm = 1 ]; then
		one_run "paramiko, relative name: the hook ran once" "$RHOME/$RP"
		commit_env "paramiko, relative name: absolute UPLOAD_PATH, UPLOAD_CLIENT_PATH as sent" \
		    "$(ev_of "$RHOME/$RP")" "$L/rel" "$RHOME/$RP" $RP \
		    sftp "$TEST_UID"
	else
		skip "paramiko, relative name" "python3-paramiko not installed"
	fi
	one_run "sftp as root: the hook ran once" "$R/by-root"
	commit_env "sftp as root: environment, run as root" \
	    "$(ev_of "$R/by-root")" "$L/a" "$R/by-root" "$D/real/by-root" \
	    sftp 0
else
	skip "sftp, scp (SFTP mode), paramiko: hook runs and environment" "$NOHOOK_SFTP"
fi
if [ $ours_scp = 1 ]; then
	one_run "scp -O: the hook ran once" "$R/c"
	commit_env "scp -O through a symlinked directory: environment" \
	    "$(ev_of "$R/c")" "$L/c" "$R/c" "$D/link/c" scp "$TEST_UID"
	check "scp -O: UPLOAD_METHOD is the commit line's" test \
	    "$(sed -n 's/^UPLOAD_METHOD=//p' "$(ev_of "$R/c")")" = \
	    "$(log_method "$SCPLOG" "$D/link/c")"
	one_run "scp -O, relative name: the hook ran once" "$RHOME/$RS"
	commit_env "scp -O, relative name: absolute UPLOAD_PATH, UPLOAD_CLIENT_PATH as sent" \
	    "$(ev_of "$RHOME/$RS")" "$L/rel" "$RHOME/$RS" $RS \
	    scp "$TEST_UID"
else
	skip "scp -O: hook runs and environment" "$NOHOOK_SCP"
fi
expect=0
[ $ours_sftp = 1 ] && expect=$((expect + 10 + have_pm))
[ $ours_scp = 1 ] && expect=$((expect + 2))
check "no other runs ($(nev) of $expect)" test "$(nev)" = "$expect"

# Settings: the hook from ATOMIC_UPLOAD_HOOK (sftp-server too), named
# temporaries, durability data, no digest: UPLOAD_SHA256 is absent, not
# the value planted in the session.
fresh "HOOK=$H/env.sh" HOOK_VIA=env \
    "export ATOMIC_UPLOAD_TMPFILE=off ATOMIC_UPLOAD_SYNC=data" \
    "export ATOMIC_UPLOAD_DIGEST=off"
echo "put $L/a $D/real/a" | usftp
uscpO "$L/c" "$TEST_USER@localhost:$D/real/c"
settle
if [ $ours_sftp = 1 ]; then
	commit_env "sftp, ATOMIC_UPLOAD_HOOK, _TMPFILE=off, _SYNC=data, _DIGEST=off: environment" \
	    "$(ev_of "$R/a")" "$L/a" "$R/a" "$D/real/a" sftp "$TEST_UID" \
	    UPLOAD_METHOD=named UPLOAD_DURABILITY=data '!UPLOAD_SHA256'
else
	skip "sftp, ATOMIC_UPLOAD_HOOK and settings" "$NOHOOK_SFTP"
fi
if [ $ours_scp = 1 ]; then
	commit_env "scp -O, _TMPFILE=off, _SYNC=data, _DIGEST=off: environment" \
	    "$(ev_of "$R/c")" "$L/c" "$R/c" "$D/real/c" scp "$TEST_UID" \
	    UPLOAD_METHOD=named UPLOAD_DURABILITY=data '!UPLOAD_SHA256'
else
	skip "scp -O settings" "$NOHOOK_SCP"
fi

# ---- 2. Aborts and unchanged files ------------------------------------
# kill_mid CLIENT DEST: a rate-limited upload of $L/big (20 s at 800
# kbit/s), SIGKILLed a second after the server opened DEST.
kill_mid() {
	local cpid
	case $1 in
	# (not through the function as_user: $! must be the client)
	sftp)	echo "put $L/big $2" >"$WORK/kbatch"
		chmod 644 "$WORK/kbatch"
		setpriv --reuid="$TEST_USER" --regid="$TEST_USER" --init-groups \
		    --reset-env -- env PATH=/usr/bin:/bin sftp $USER_SSH_OPTS \
		    -q -l 800 -b "$WORK/kbatch" "$TEST_USER@localhost" \
		    >/dev/null 2>&1 & ;;
	scpO)	setpriv --reuid="$TEST_USER" --regid="$TEST_USER" --init-groups \
		    --reset-env -- env PATH=/usr/bin:/bin "$CLIENT_SCP" -O -q \
		    -l 800 $USER_SSH_OPTS "$L/big" "$TEST_USER@localhost:$2" \
		    >/dev/null 2>&1 & ;;
	esac
	cpid=$!
	wait_for opened "$1" "$2" || verbose "$1: no server opened $2"
	sleep 1
	kill -KILL "$cpid"
	wait "$cpid" 2>/dev/null
}
# opened CLIENT DEST: the server side has DEST open: sftp-server logged
# the open (stock too), scp -t runs (the wrapper exec'd it; stock's does
# not log).
opened() {
	case $1 in
	sftp)	grep -qF "open \"$2\"" "$LOG" ;;
	scpO)	ps -u "$TEST_USER" -o args= | grep -qxF -- "$SCP -t $2" ;;
	esac
}
# abort_cases on|off: killed sftp and scp -O clients, a paramiko client
# gone without CLOSE and an unchanged file, with
# ATOMIC_UPLOAD_HOOK_ABORTS on or off.
abort_cases() {
	fresh "HOOK=$H/env.sh" "export ATOMIC_UPLOAD_HOOK_ABORTS=$1"
	printf 'old\n' >"$D/real/kept"
	chown "$TEST_USER" "$D/real/kept"
	kill_mid sftp "$D/real/k-sftp"
	kill_mid scpO "$D/real/k-scp"
	if [ $have_pm = 1 ]; then
		pm vanish "$D/real/k-pm"
		pm unchanged "$D/real/kept"
	fi
	settle
}
abort_cases off
if [ $ours_sftp = 1 ] && [ $ours_scp = 1 ]; then
	check "killed and vanished clients: nothing published" \
	    entries_partials "$D/real" kept
else
	skip "killed and vanished clients: nothing published" \
	    "stock publishes partial files (t-sftp-atomic, t-scp-openssh)"
fi
if [ $ours_sftp = 1 ]; then
	check "sftp killed mid-file: the abort is logged" \
	    grep -q "abort \"$D/real/k-sftp\"" "$LOG"
	[ $have_pm = 1 ] && check "paramiko r+ closed untouched: logged unchanged" \
	    grep -q "unchanged \"$D/real/kept\"" "$LOG"
fi
[ $ours_scp = 1 ] && check "scp -O killed mid-file: the abort is logged" \
    grep -q "abort \"$D/real/k-scp\"" "$SCPLOG"
if [ $ours_sftp = 1 ] || [ $ours_scp = 1 ]; then
	check "aborts and an unchanged file, ATOMIC_UPLOAD_HOOK_ABORTS unset: no run ($(nev))" \
	    test "$(nev)" = 0
fi

abort_cases on
for f in k-sftp k-scp k-pm; do
	e=$(ev_of "$R/$f")
	[ -n "$e" ] && verbose "$f: $(grep '^UPLOAD_REASON=' "$e")"
done
if [ $ours_sftp = 1 ]; then
	env_is "ATOMIC_UPLOAD_HOOK_ABORTS=on, sftp killed mid-file: an abort event" \
	    "$(ev_of "$R/k-sftp")" UPLOAD_EVENT=abort "UPLOAD_CLIENT_PATH=$D/real/k-sftp" \
	    'UPLOAD_REASON~.' UPLOAD_PROTOCOL=sftp "UPLOAD_USER=$TEST_USER" \
	    'UPLOAD_SIZE~^[0-9]+$' "HOOK_ARG1=$R/k-sftp" '!UPLOAD_SHA256'
	one_run "ATOMIC_UPLOAD_HOOK_ABORTS=on, sftp killed: one run" "$R/k-sftp"
	if [ $have_pm = 1 ]; then
		env_is "ATOMIC_UPLOAD_HOOK_ABORTS=on, paramiko gone without CLOSE: an abort event" \
		    "$(ev_of "$R/k-pm")" UPLOAD_EVENT=abort 'UPLOAD_REASON~.' \
		    UPLOAD_SIZE=65536 UPLOAD_PROTOCOL=sftp
		check "ATOMIC_UPLOAD_HOOK_ABORTS=on, an unchanged file: no run" \
		    test -z "$(ev_of "$R/kept")"
	fi
else
	skip "ATOMIC_UPLOAD_HOOK_ABORTS=on, sftp" "$NOHOOK_SFTP"
fi
if [ $ours_scp = 1 ]; then
	env_is "ATOMIC_UPLOAD_HOOK_ABORTS=on, scp -O killed mid-file: an abort event" \
	    "$(ev_of "$R/k-scp")" UPLOAD_EVENT=abort "UPLOAD_CLIENT_PATH=$D/real/k-scp" \
	    'UPLOAD_REASON~.' UPLOAD_PROTOCOL=scp "HOOK_ARG1=$R/k-scp"
else
	skip "ATOMIC_UPLOAD_HOOK_ABORTS=on, scp -O" "$NOHOOK_SCP"
fi
expect=0
[ $ours_sftp = 1 ] && expect=$((expect + 1 + have_pm))
[ $ours_scp = 1 ] && expect=$((expect + 1))
check "ATOMIC_UPLOAD_HOOK_ABORTS=on: no other runs ($(nev) of $expect)" \
    test "$(nev)" = "$expect"

# ---- 3. A hook that hangs, a hook that fails ---------------------------
fresh "HOOK=$H/hang.sh" "export ATOMIC_UPLOAD_HOOK_TIMEOUT=2"
t0=$(now)
echo "put $L/a $D/real/a" | usftp
rc=$? took=$(since "$t0")
check "hanging hook: sftp done in ${took} s, exit $rc" quick "$rc" "$took" 5
if [ $ours_sftp = 1 ]; then
	if wait_for test -s "$EV/hang.pid"; then
		hpid=$(cat "$EV/hang.pid") spid=$(cat "$EV/hang.sleep")
		runner=$(cat "$EV/hang.runner") hstart=$(cat "$EV/hang.start")
		note_pids "$hpid" "$spid"
		ok "hanging hook: started"
	else
		hpid=none spid=none runner=none hstart=$(now)
		notok "hanging hook: started"
	fi
	check "hanging hook: the session ended while it runs" \
	    gone_while_alive "$hpid"
	check "hanging hook: the runner has its own session" \
	    test "$(ps -o sid= -p "$runner" | tr -d ' ')" = "$runner"
	fds=$(ls -l "/proc/$runner/fd" 2>/dev/null | sed -n 's/.* -> //p')
	verbose "runner's descriptors: $(echo $fds)"
	# The session has gone: the runner closed its event socket.  Left:
	# /dev/null, the log file, the hook's output and the signalfd.
	check "hanging hook: the runner holds no socket, one pipe (the hook's), no file uploaded or staged" \
	    test "$(echo "$fds" | grep -c '^socket:')" = 0 -a \
	    "$(echo "$fds" | grep -c '^pipe:')" = 1 -a \
	    -z "$(echo "$fds" | grep -e "$WORK/d" -e deleted)"
	# SIGTERM at 2 s, ignored; SIGKILL to its group at 7 s.
	sleep "$(awk -v a="$hstart" -v b="$(now)" \
	    'BEGIN { d = a + 4 - b; print (d > 0 ? d : 0) }')"
	check "hanging hook: SIGTERM ignored, still running $(since "$hstart") s after its start" \
	    alive "$hpid"
	wait_for dead "$hpid" "$spid"
	life=$(since "$hstart")
	check "hanging hook: killed with its child $life s after its start (2 s, then 5 s grace)" \
	    dead_within 6.5 9 "$hstart" "$hpid" "$spid"
	check "hanging hook: the timeout is logged" \
	    logged "$LOG" "hook \"$R/a\": timed out after 2 s, killed"
else
	skip "hanging hook: timeout" "$NOHOOK_SFTP"
fi

# With stderr left to sshd's channel (as in production), scp -O and sftp
# sessions back to back: the runner must not keep the channel, or the
# client waits for the hook (killed at 5 s; SIGTERM ends this one).
fresh "HOOK=$H/hangterm.sh" LOGTO=channel "export ATOMIC_UPLOAD_HOOK_TIMEOUT=5"
for cl in scpO sftp; do
	t0=$(now)
	case $cl in
	scpO)	uscpO "$L/c" "$TEST_USER@localhost:$D/real/c" ;;
	sftp)	echo "put $L/b $D/real/b" | usftp ;;
	esac
	rc=$? took=$(since "$t0")
	check "hanging hook, stderr the channel: $cl done in ${took} s, exit $rc" \
	    quick "$rc" "$took" 4
done
# Both hooks run on after their sessions; each runner let the channel go
# (its stderr is /dev/null); each hook goes at 5 s.
declare -A th_pid th_sleep th_start th_runner label
label=([scp]="scp -O" [sftp]=sftp)
protos=""
[ $ours_scp = 1 ] && protos="scp"
[ $ours_sftp = 1 ] && protos="$protos sftp"
[ $ours_scp = 1 ] || skip "scp -O, hanging hook, stderr the channel" "$NOHOOK_SCP"
[ $ours_sftp = 1 ] || skip "sftp, hanging hook, stderr the channel" "$NOHOOK_SFTP"
for p in $protos; do
	f=$EV/hangterm.$p
	wait_for test -s "$f.pid"
	th_pid[$p]=$(cat "$f.pid" 2>/dev/null || echo none)
	th_sleep[$p]=$(cat "$f.sleep" 2>/dev/null || echo none)
	th_start[$p]=$(cat "$f.start" 2>/dev/null || now)
	th_runner[$p]=$(cat "$f.runner" 2>/dev/null || echo none)
	note_pids "${th_pid[$p]}" "${th_sleep[$p]}"
done
for p in $protos; do
	check "${label[$p]}, hanging hook, stderr the channel: the session ended while the hook runs" \
	    gone_while_alive "${th_pid[$p]}"
	fd2=$(readlink "/proc/${th_runner[$p]}/fd/2")
	check "${label[$p]}, stderr the channel: the runner's stderr is /dev/null ($fd2)" \
	    test "$fd2" = /dev/null
done
for p in $protos; do
	wait_for dead "${th_pid[$p]}" "${th_sleep[$p]}"
	life=$(since "${th_start[$p]}")
	check "${label[$p]}, hanging hook: SIGTERM to its group $life s after its start" \
	    dead_within 4.5 7 "${th_start[$p]}" "${th_pid[$p]}" "${th_sleep[$p]}"
done

fresh "HOOK=$H/fail.sh"
echo "put $L/a $D/real/a" | usftp
check "failing hook: sftp upload fine" uploaded $? "$L/a" "$D/real/a"
uscpO "$L/c" "$TEST_USER@localhost:$D/real/c"
check "failing hook: scp -O upload fine" uploaded $? "$L/c" "$D/real/c"
settle
if [ $ours_sftp = 1 ]; then
	check "failing hook, sftp: its stderr line logged" \
	    logged "$LOG" "hook \"$R/a\": on stderr: cannot process $R/a"
	check "failing hook, sftp: its stdout line logged" \
	    logged "$LOG" "hook \"$R/a\": on stdout: 70001 bytes"
	check "failing hook, sftp: exit status 3 logged" \
	    logged "$LOG" "hook \"$R/a\": exit status 3"
else
	skip "failing hook, sftp: logged" "$NOHOOK_SFTP"
fi
if [ $ours_scp = 1 ]; then
	check "failing hook, scp -O: output and exit status logged" \
	    logged "$SCPLOG" "hook \"$R/c\": on stderr: cannot process $R/c" \
	    "hook \"$R/c\": exit status 3"
else
	skip "failing hook, scp -O: logged" "$NOHOOK_SCP"
fi

# ---- 4. At most ATOMIC_UPLOAD_HOOK_MAX_RUNNING at once ------------------
fresh "HOOK=$H/slow.sh" "export ATOMIC_UPLOAD_HOOK_MAX_RUNNING=2"
cp -r "$L/five" "$WORK/six"
cp "$L/a" "$WORK/six/f6"
chmod -R a+rX "$WORK/six"
echo "put -r $WORK/six $D/real/six" | usftp
check "MAX_RUNNING=2: 6 files uploaded" diff -r "$WORK/six" "$D/real/six"
if [ $ours_sftp = 1 ]; then
	wait_for ended 6
	settle
	starts=$(grep -c '^start' "$EV/slow.log")
	peak=$(awk '$1 == "start" && $3 > m { m = $3 } END { print m + 0 }' \
	    "$EV/slow.log")
	check "MAX_RUNNING=2: all 6 ran ($starts)" test "$starts" = 6
	check "MAX_RUNNING=2: at most 2 at once (peak $peak)" test "$peak" = 2
else
	skip "MAX_RUNNING" "$NOHOOK_SFTP"
fi

# ---- 5. Nothing left ------------------------------------------------------
# no_zombie_child PID: PID runs, and no child of it is a zombie.
no_zombie_child() {
	[ -d "/proc/$1" ] && ! ps -o stat= --ppid "$1" | grep -q '^Z'
}
# While a session lives, after its hook ran: the runner is not its child
# and the process between them was reaped (no child at all).
if [ $have_pm = 1 ]; then
	fresh "HOOK=$H/env.sh"
	pm hold "$L/a" "$D/real/held" "$WORK/release" >"$WORK/hold.out" 2>&1 &
	hold=$!
	wait_for grep -q put "$WORK/hold.out"
	wait_for has_event "$R/held"
	srv=$(tail -1 "$WORK/server.pids")
	kids=$(ps -o pid=,stat=,comm= --ppid "$srv" | tr '\n' ' ')
	f=$(ev_of "$R/held")
	runner=$(sed -n 's/^HOOK_PPID=//p' "${f:-/dev/null}")
	wait_for no_zombie_child "${runner:-none}"
	if [ $ours_sftp = 1 ]; then
		check "after a hook ran, the live session's server has no child${kids:+ ($kids)}" \
		    test -n "$f" -a -z "$kids" -a -d "/proc/$srv"
		check "while the session lives, its runner ($runner) runs and reaped the hook" \
		    no_zombie_child "${runner:-none}"
	else
		skip "the live session has no child" "$NOHOOK_SFTP"
	fi
	touch "$WORK/release"
	wait "$hold"
else
	skip "the live session has no child" "python3-paramiko not installed"
fi
settle
check "nothing left: no session" sessions_gone
check "nothing left: no process of this test ($TEST_USER's or root's)" no_procs
# A zombie is a child its parent did not reap: one of a process of ours
# (a server, a runner), of sshd or of its sessions.  (A zombie child of
# init is init's to reap, and it does, in its time; zombies of other
# tests running meanwhile are theirs.)
ours="$SSHD_PID $(ps -o pid= --ppid "$SSHD_PID")"
ours="$ours $(our_procs | awk '{ print $1 }')"
zombies=$(ps -eo stat=,ppid=,pid=,comm= | OURS=$(echo $ours) awk '
	BEGIN {
		n = split(ENVIRON["OURS"], a, " ")
		for (i = 1; i <= n; i++) o[a[i]] = 1
	}
	$1 ~ /^Z/ && $2 in o' | tr '\n' ';')
check "nothing left: no zombie${zombies:+ ($zombies)}" test -z "$zombies"

# ---- 6. A relative hook ---------------------------------------------------
fresh "HOOK=env.sh"
echo "put $L/a $D/real/a" | usftp
rc=$?
if [ $ours_sftp = 1 ]; then
	check "relative -H: the session fails (exit $rc)" test "$rc" != 0
	check "relative -H: refused with a fatal line" \
	    grep -q -- '-H env.sh: the commit hook must be an absolute path' "$LOG"
	check "relative -H: nothing uploaded" entries "$D/real"
else
	skip "relative -H" "$NOHOOK_SFTP"
fi
uscpO "$L/c" "$TEST_USER@localhost:$D/real/c"
rc=$?
if [ $ours_scp = 1 ]; then
	check "scp -O, relative ATOMIC_UPLOAD_HOOK: logged, upload made without it" \
	    uploaded_logged $rc "$L/c" "$D/real/c" "$SCPLOG" \
	    'ATOMIC_UPLOAD_HOOK=env.sh: not an absolute path: no hook'
else
	skip "scp -O, relative ATOMIC_UPLOAD_HOOK" "$NOHOOK_SCP"
fi
settle
check "relative hooks: no run" test "$(nev)" = 0
exit 0
