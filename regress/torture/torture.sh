#!/bin/bash
# Atomicity torture: a real sshd on 127.0.0.1 with $SFTP_SERVER as its sftp
# subsystem (-t to a staging directory) and $SCP as the session's scp, and
# for DURATION seconds a few workers uploading at once into one directory
# with every client we have: OpenSSH sftp, scp (SFTP mode), scp -O,
# libssh2 (pipelined writes) and paramiko.  Uploads are SIGKILLed at random
# moments, clients vanish without CLOSE, every writer overwrites the same
# few names, files range from empty to tens of MiB.
#
# Two watchers read the destination the way processing scripts do: one
# polls the directory, one waits for IN_CLOSE_WRITE and IN_MOVED_TO
# (regress/helpers/watch.py, ctypes inotify).  Every file they see must be
# complete: each payload carries its length and sha256 in a header
# (regress/helpers/mkpayload.py).  At the end the destination may hold
# only final names and the staging directory nothing at all.
#
# usage: torture.sh [--duration SECONDS] [--workers N] [--seed N]
#   (as root; environment as for the regress tests: OBJ, SRC,
#   SFTP_SERVER, SCP.  SFTP_SERVER=/usr/lib/openssh/sftp-server
#   SCP=/usr/bin/scp runs it against stock, where it must fail.)
#
# Prints "# " progress lines and one summary line beginning "torture:";
# exits 0 when nothing partial was seen, nothing was lost and there is no
# debris, 1 otherwise.
: "${SRC:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${tid:=torture}"
. "$SRC/regress/test-lib.sh"

DURATION=30
WORKERS=5
SEED=$$
while [ $# -gt 0 ]; do
	case $1 in
	--duration) DURATION=$2; shift 2 ;;
	--workers) WORKERS=$2; shift 2 ;;
	--seed) SEED=$2; shift 2 ;;
	*) echo "usage: torture.sh [--duration S] [--workers N] [--seed N]" >&2
	   exit 2 ;;
	esac
done
need_root

PY=/usr/bin/python3
WATCH="$SRC/regress/helpers/watch.py"
MKPAYLOAD="$SRC/regress/helpers/mkpayload.py"
PARAMIKO="$SRC/regress/torture/paramiko_up.py"
LIBSSH2="$OBJ/regress/clients/libssh2_upload"

D="$WORK/dst"		# the upload directory the watchers read
STAGE="$WORK/stage"	# the staging directory (same filesystem)
POOL="$WORK/pool"	# the payloads
LOG="$WORK/log"		# one line per upload, appended by the workers
mkdir -p "$D" "$STAGE" "$POOL"
chmod 700 "$STAGE"
: >"$LOG"

stock=0
[ "$SFTP_SERVER" = "$STOCK_SFTP_SERVER" ] && stock=1

# Which clients can run here.
kinds="sftp scp"
if [ -x "$SCP" ]; then
	kinds="$kinds scpO"
else
	verbose "no $SCP yet: scp -O (the scp -t sink) left out"
fi
if [ -x "$LIBSSH2" ]; then
	kinds="$kinds libssh2"
else
	verbose "no $LIBSSH2 (make check builds it): libssh2 left out"
fi
if "$PY" -c 'import paramiko' 2>/dev/null; then
	kinds="$kinds paramiko"
else
	verbose "python3-paramiko missing: paramiko left out"
fi
read -r -a KINDS <<<"$kinds"

# Payloads: two of each size, so that overwrites change the content.  The
# empty ones go to their own names (an empty file has no header).
verbose "making payloads"
SIZES="0 200 4K 64K 1M 4M 12M 32M"
for s in $SIZES; do
	for v in a b; do
		if [ "$s" = 0 ]; then
			: >"$POOL/0$v"
		else
			"$PY" "$MKPAYLOAD" "$POOL/$s$v" "$s" "$SEED-$s-$v"
		fi
	done
done
read -r -a SIZE_LIST <<<"$SIZES"
BIG_LIST=(4M 12M 32M)

# The session's scp: the sink under test, staging where sftp-server does.
mkdir -p "$OBJ/regress/work/bin"
# Its commit and abort lines go to scp.log (stock scp ignores all this).
cat >"$OBJ/regress/work/bin/scp" <<EOF
#!/bin/sh
ATOMIC_UPLOAD_TMPDIR=$STAGE
ATOMIC_UPLOAD_LOG=stderr
export ATOMIC_UPLOAD_TMPDIR ATOMIC_UPLOAD_LOG
exec $SCP "\$@" 2>>$WORK/scp.log
EOF
chmod 755 "$OBJ/regress/work/bin/scp"
on_exit "rm -f '$OBJ/regress/work/bin/scp'"

# sshd runs the subsystem line through the shell: the redirection keeps
# the server's INFO log (commit and abort lines) apart.
if [ $stock = 1 ]; then
	SFTP_SERVER_ARGS="-e -l INFO 2>>$WORK/server.log"
else
	SFTP_SERVER_ARGS="-e -l INFO -t $STAGE 2>>$WORK/server.log"
fi
# MaxStartups: a burst of connections must not be dropped at random.
start_sshd "MaxStartups 100:30:200"
verbose "sshd on 127.0.0.1:$SSHD_PORT, sftp-server $SFTP_SERVER, scp $SCP, clients: $kinds"
KEY="$WORK/sshd/client_key"

# The watchers: a polling one and an inotify consumer that looks only at
# IN_CLOSE_WRITE and IN_MOVED_TO, as a processing script would.
STOP="$WORK/stop"
EMPTY_RE='^empty-[0-9]+\.dat$'
"$PY" "$WATCH" --no-inotify --interval 10 --quiet --empty "$EMPTY_RE" \
    --ready "$WORK/ready.poll" --stop "$STOP" "$D" >"$WORK/watch.poll" 2>&1 &
wpoll=$!
"$PY" "$WATCH" --interval 0 --events close_write,moved_to \
    --empty "$EMPTY_RE" --ready "$WORK/ready.inotify" --stop "$STOP" "$D" \
    >"$WORK/watch.inotify" 2>&1 &
winotify=$!
on_exit "kill $wpoll $winotify"
wait_for test -e "$WORK/ready.poll" -a -e "$WORK/ready.inotify" ||
    fail "watchers did not start"

# client KIND MODE SRC NAME: run one upload in the foreground.
#   MODE put: a normal upload; vanish: leave without CLOSE; hang: write
#   half, print "written", wait to be killed (libssh2 and paramiko only).
client() {
	local kind=$1 mode=$2 src=$3 name=$4
	case $kind in
	sftp)
		# A batch file, not a pipe: the PID killed must be sftp's.
		printf 'put %s %s\n' "$src" "$D/$name" >"$WORK/batch.$BASHPID"
		exec sftp $SSH_OPTS -q -b "$WORK/batch.$BASHPID" root@localhost ;;
	scp)	exec scp $SSH_OPTS -q "$src" "root@localhost:$D/$name" ;;
	scpO)	exec scp -O $SSH_OPTS -q "$src" "root@localhost:$D/$name" ;;
	libssh2)
		exec "$LIBSSH2" -p "$SSHD_PORT" -u root -k "$KEY" \
		    -K "$KEY.pub" -m "$mode" "$src" "$D/$name" ;;
	paramiko)
		exec "$PY" "$PARAMIKO" "$SSHD_PORT" root "$KEY" "$mode" \
		    "$src" "$D/$name" ;;
	esac
}

# wait_written PID N: until process PID has written N bytes (wchar of
# /proc/PID/io: write(2) to files and pipes) or is gone.
wait_written() {
	local pid=$1 want=$2 k v
	while [ -r "/proc/$pid/io" ]; do
		while read -r k v; do
			[ "$k" = wchar: ] && break
		done <"/proc/$pid/io" 2>/dev/null
		[ "$k" = wchar: ] && [ "${v:-0}" -ge "$want" ] && return 0
		sleep 0.02
	done
	return 1
}

# worker N: uploads until the deadline.  Each upload is logged as
#   KIND MODE SIZE NAME FATE RC
# FATE done (ran to the end; RC its exit status), killed (SIGKILLed while
# running), or vanished (left without CLOSE on purpose).
worker() {
	local w=$1 n=0 kind size v src name fate mode pid ms rc r bytes out
	RANDOM=$((SEED + w * 7919))
	while [ "$(date +%s)" -lt "$DEADLINE" ]; do
		kind=${KINDS[$(((w + n + RANDOM % 2) % ${#KINDS[@]}))]}
		n=$((n + 1))
		size=${SIZE_LIST[$((RANDOM % ${#SIZE_LIST[@]}))]}
		v=a
		[ $((RANDOM % 2)) = 1 ] && v=b
		src="$POOL/$size$v"
		if [ "$size" = 0 ]; then
			name="empty-$((RANDOM % 2)).dat"
		else
			name="f-$((RANDOM % 4)).dat"
		fi
		fate=done
		mode=put
		r=$((RANDOM % 100))
		if [ $r -lt 25 ]; then
			fate=kill
			# Mostly a big file.
			if [ $((RANDOM % 4)) != 0 ]; then
				size=${BIG_LIST[$((RANDOM % ${#BIG_LIST[@]}))]}
				src="$POOL/$size$v"
				name="f-$((RANDOM % 4)).dat"
			fi
		elif [ $r -lt 35 ] && { [ $kind = libssh2 ] || [ $kind = paramiko ]; }; then
			fate=vanished
			mode=vanish
		fi
		# libssh2 and paramiko write to their socket with send(), which
		# /proc/PID/io does not count: half of their kills come after
		# "hang" mode has had the first half acknowledged.
		if [ $fate = kill ] && [ $((RANDOM % 2)) = 1 ] &&
		    { [ $kind = libssh2 ] || [ $kind = paramiko ]; }; then
			mode=hang
		fi
		out="$WORK/out.$w"
		client "$kind" "$mode" "$src" "$name" >"$out" 2>>"$WORK/client.err" &
		pid=$!
		if [ $fate = kill ]; then
			# Mid-transfer: once the client has written 10-90 % of
			# the file's size to its ssh pipe; small files and the
			# socket clients at a random moment instead.
			bytes=$(stat -c %s "$src")
			if [ $mode = hang ]; then
				while kill -0 "$pid" 2>/dev/null &&
				    ! grep -qs written "$out"; do
					sleep 0.02
				done
			elif [ "$bytes" -ge 1048576 ] &&
			    { [ $kind = sftp ] || [ $kind = scp ] || [ $kind = scpO ]; }; then
				wait_written "$pid" $((bytes / 100 * (10 + RANDOM % 80)))
			else
				ms=$((100 + RANDOM % 1500))
				sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
			fi
			if kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null; then
				wait "$pid" 2>/dev/null
				echo "$kind $mode $size $name killed 137" >>"$LOG"
				continue
			fi
			fate=done
		fi
		wait "$pid"
		rc=$?
		echo "$kind $mode $size $name $fate $rc" >>"$LOG"
	done
}

START=$(date +%s)
DEADLINE=$((START + DURATION))
verbose "running $WORKERS workers for $DURATION s (seed $SEED)"
wpids=()
for ((i = 0; i < WORKERS; i++)); do
	worker "$i" &
	wpids+=($!)
done
on_exit "kill ${wpids[*]}"
wait "${wpids[@]}"
ELAPSED=$(($(date +%s) - START))

# Let every session end (killed clients' servers see EOF and abort), then
# stop the watchers.
wait_for sessions_gone || wait_for sessions_gone ||
    verbose "sshd sessions still running: $(ps -o pid=,args= --ppid "$SSHD_PID" | tr '\n' ';')"
touch "$STOP"
wait "$wpoll"
wait "$winotify"

# A last reading of the destination, and the debris.
final_out=$("$PY" "$WATCH" --no-inotify --interval 0 --stop "$STOP" \
    --empty "$EMPTY_RE" --quiet "$D" 2>&1)
final_bad=$(printf '%s\n' "$final_out" | sed -n 's/^# watch: .* \([0-9]*\) offences.*/\1/p')
debris=$(ls -A "$D" | grep -Evc '^(f-[0-9]+|empty-[0-9]+)\.dat$')
staging_debris=$(ls -A "$STAGE" | wc -l)
for f in $(ls -A "$D" | grep -Ev '^(f-[0-9]+|empty-[0-9]+)\.dat$'); do
	verbose "debris in destination: $f ($(stat -c %s "$D/$f") bytes)"
done
for f in $(ls -A "$STAGE"); do
	verbose "debris in staging: $f"
done
# Non-empty "empty" names are partial too; an empty f-* name is partial.
for f in "$D"/empty-*.dat; do
	[ -f "$f" ] && [ -s "$f" ] && { verbose "non-empty $f"; final_bad=$((final_bad + 1)); }
done

# Lost data: a name to which an upload committed must exist.
lost=0
for name in $(awk '$5 == "done" && $6 == 0 { print $4 }' "$LOG" | sort -u); do
	if [ ! -f "$D/$name" ]; then
		verbose "lost: $name was uploaded but is missing"
		lost=$((lost + 1))
	fi
done

count() { awk "$1" "$LOG" | wc -l; }
attempted=$(wc -l <"$LOG")
committed=$(count '$5 == "done" && $6 == 0')
failed=$(count '$5 == "done" && $6 != 0')
kills=$(count '$5 == "killed"')
vanished=$(count '$5 == "vanished"')
aborted=$((kills + vanished + failed))
per_kind=""
for k in "${KINDS[@]}"; do
	per_kind="$per_kind $k=$(count "\$1 == \"$k\"")/$(count "\$1 == \"$k\" && \$5 == \"done\" && \$6 == 0")"
done
big=$(count '$3 == "12M" || $3 == "32M"')
empty=$(count '$3 == "0"')
wpoll_checks=$(sed -n 's/^# watch: \([0-9]*\) checks.*/\1/p' "$WORK/watch.poll")
wino_checks=$(sed -n 's/^# watch: \([0-9]*\) checks.*/\1/p' "$WORK/watch.inotify")
poll_bad=$(sed -n 's/^# watch: .* \([0-9]*\) offences.*/\1/p' "$WORK/watch.poll")
ino_bad=$(sed -n 's/^# watch: .* \([0-9]*\) offences.*/\1/p' "$WORK/watch.inotify")
overflows=$(sed -n 's/^# watch: .* \([0-9]*\) queue overflows.*/\1/p' "$WORK/watch.inotify")
partial=$((${poll_bad:-0} + ${ino_bad:-0}))
# IN_CLOSE_WRITE events on the final names (each commit should give one).
close_writes=$(sed -n 's/^# name .* events .*close_write=\([0-9]*\).*/\1/p' \
    "$WORK/watch.inotify" | awk '{ n += $1 } END { print n + 0 }')
# Of those, how many the kernel may have merged (regress/helpers/watch.py).
close_write_overlaps=$(sed -n 's/^# name .* overlaps \([0-9]*\)$/\1/p' \
    "$WORK/watch.inotify" | awk '{ n += $1 } END { print n + 0 }')
srv_commits=$(grep -ac '^commit "' "$WORK/server.log" 2>/dev/null)
srv_aborts=$(grep -ac '^abort "' "$WORK/server.log" 2>/dev/null)
sink_commits=$(grep -ac 'commit "' "$WORK/scp.log" 2>/dev/null)
sink_aborts=$(grep -ac 'abort "' "$WORK/scp.log" 2>/dev/null)

grep -h '^# OFFENCE' "$WORK/watch.poll" "$WORK/watch.inotify" | head -8
[ -s "$WORK/client.err" ] &&
    verbose "client errors (first 5): $(sort "$WORK/client.err" | uniq -c | sort -rn | head -5 | tr -s ' ' | tr '\n' ';')"
grep -a 'runtime error\|AddressSanitizer' "$WORK/server.log" "$WORK/scp.log" 2>/dev/null | head -3

which=ours
[ $stock = 1 ] && which=stock
echo "torture: server=$which seconds=$ELAPSED workers=$WORKERS uploads=$attempted committed=$committed aborted=$aborted (failed=$failed killed=$kills vanished=$vanished) kills=$kills big=$big empty=$empty clients[tried/committed]:$per_kind logged[server_commits=${srv_commits:-0} server_aborts=${srv_aborts:-0} sink_commits=${sink_commits:-0} sink_aborts=${sink_aborts:-0}] watcher_checks[poll=${wpoll_checks:-0} inotify=${wino_checks:-0} overflows=${overflows:-0}] close_write_events=$close_writes close_write_overlaps=$close_write_overlaps partial_sightings=$partial (poll=${poll_bad:-?} inotify=${ino_bad:-?}) final_partial=${final_bad:-?} lost=$lost debris=$((debris + staging_debris)) (destination=$debris staging=$staging_debris)"

[ "$partial" -eq 0 ] && [ "${final_bad:-1}" -eq 0 ] && [ "$lost" -eq 0 ] &&
    [ "$debris" -eq 0 ] && [ "$staging_debris" -eq 0 ] &&
    [ "$committed" -gt 0 ] && [ -n "$poll_bad" ] && [ -n "$ino_bad" ]
