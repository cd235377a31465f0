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
# (regress/helpers/mkpayload.py).
#
# Resumes (DESIGN.md 12): the server keeps the staged data of an upload
# whose connection was lost, and a later non-truncating write-open of the
# name by the same user continues it.  Some killed uploads go to names
# private to their worker and to one payload (r<W>-<SIZE>.dat), and
# the worker's next action is then often a resume of the same payload to
# the same name: OpenSSH sftp "reput" (falling back to "put" when there is
# nothing to continue), paramiko (STAT, open "r+", seek, write the rest;
# or open "a"), lftp "put -c" where installed.  A resume may itself be
# killed (and resumed again), refused, or start over; one that reported
# success must have published exactly its payload.  The server log says
# which resumes continued kept data.  The shared names keep the
# overwrite churn; no resume goes to them (a partial kept there may hold
# another worker's payload, and continuing it would publish a mix: the
# client's doing, not the server's).  TORTURE_RESUME_PAUSE=MS has
# paramiko's resumes wait up to MS ms between their STAT and their OPEN,
# so that the upload a resume races can end between the two (default 0).
# TORTURE_STALLS=1: a killed replacement of a private name (one size,
# 4M, so that names come back) is first stalled (SIGSTOP: its connection
# stays open, its upload in flight for the server), and dies only after
# the resume that follows has STATed the name (paramiko "r+", pausing
# before its OPEN): a connection that dies late, after the user resumed.
# On by default (TORTURE_STALLS=0 turns it off): it caught a server that
# published a truncated file (the resume STATed the old file, adopted the
# shorter kept data at its OPEN, wrote nothing past it and committed it).
#
# At the end the destination may hold only final names, and the staging
# directory only stores of kept partial uploads (.au-partial-UID, see
# partial_stores in regress/test-lib.sh), whose data files are counted.
# The server runs with ATOMIC_UPLOAD_PARTIAL_AGE=600 (seconds;
# TORTURE_PARTIAL_AGE overrides it), so nothing expires during a run: no
# kept data file may be older than that.
#
# usage: torture.sh [--duration SECONDS] [--workers N] [--seed N]
#   (as root; environment as for the regress tests: OBJ, SRC,
#   SFTP_SERVER, SCP.  SFTP_SERVER=/usr/lib/openssh/sftp-server
#   SCP=/usr/bin/scp runs it against stock, where it must fail.)
#
# Prints "# " progress lines and one summary line beginning "torture:";
# exits 0 when nothing partial was seen, nothing was lost, every resume
# that succeeded published its payload and there is no debris (kept
# partial uploads younger than their age are not debris), 1 otherwise.
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
# How long the server keeps partial uploads (seconds): longer than a run.
PARTIAL_AGE=${TORTURE_PARTIAL_AGE:-600}
# paramiko's resumes pause up to this many ms between STAT and OPEN.
RESUME_PAUSE=${TORTURE_RESUME_PAUSE:-0}
# Some killed uploads stall first (SIGSTOP) and die during the resume.
STALLS=${TORTURE_STALLS:-1}

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
# The clients that resume: sftp reput, paramiko, lftp put -c.
rkinds="sftp"
case " $kinds " in *" paramiko "*) rkinds="$rkinds paramiko" ;; esac
if command -v lftp >/dev/null 2>&1; then
	rkinds="$rkinds lftp"
else
	verbose "no lftp: its put -c left out of the resumes"
fi
read -r -a RKINDS <<<"$rkinds"

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
# Removed first, never written through: a symlink left there (another
# test links the scp under test there) would have the wrapper overwrite
# that scp, /usr/bin/scp in a run against stock.
rm -f "$OBJ/regress/work/bin/scp"
cat >"$OBJ/regress/work/bin/scp" <<EOF
#!/bin/sh
ATOMIC_UPLOAD_TMPDIR=$STAGE
ATOMIC_UPLOAD_LOG=stderr
ATOMIC_UPLOAD_PARTIAL_AGE=$PARTIAL_AGE
export ATOMIC_UPLOAD_TMPDIR ATOMIC_UPLOAD_LOG ATOMIC_UPLOAD_PARTIAL_AGE
exec $SCP "\$@" 2>>$WORK/scp.log
EOF
chmod 755 "$OBJ/regress/work/bin/scp"
on_exit "rm -f '$OBJ/regress/work/bin/scp'"

# sshd runs the subsystem line through the shell: the redirection keeps
# the server's INFO log (commit and abort lines) apart.
if [ $stock = 1 ]; then
	SFTP_SERVER_ARGS="-e -l INFO 2>>$WORK/server.log"
	STAGED=0	# where a store would be: beside the destination
else
	SFTP_SERVER_ARGS="-e -l INFO -t $STAGE 2>>$WORK/server.log"
	STAGED=1	# the store is in the staging directory
fi
# The subsystem runs through a wrapper that sets the partial uploads' age.
cat >"$WORK/sftp-server.sh" <<EOF
#!/bin/sh
ATOMIC_UPLOAD_PARTIAL_AGE=$PARTIAL_AGE
export ATOMIC_UPLOAD_PARTIAL_AGE
exec $SFTP_SERVER "\$@"
EOF
chmod 755 "$WORK/sftp-server.sh"
: >"$WORK/server.log"
# MaxStartups: a burst of connections must not be dropped at random.
SFTP_SERVER="$WORK/sftp-server.sh" start_sshd "MaxStartups 100:30:200"
verbose "sshd on 127.0.0.1:$SSHD_PORT, sftp-server $SFTP_SERVER (ATOMIC_UPLOAD_PARTIAL_AGE=$PARTIAL_AGE), scp $SCP, clients: $kinds, resuming: $rkinds"
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
#   half, print "written", wait to be killed (libssh2 and paramiko only);
#   resume: continue what is there (sftp reput, paramiko STAT + "r+",
#   lftp put -c); append: paramiko's open "a".
client() {
	local kind=$1 mode=$2 src=$3 name=$4 cmd=put
	case $kind in
	sftp)
		[ "$mode" = resume ] && cmd=reput
		# A batch file, not a pipe: the PID killed must be sftp's.
		printf '%s %s %s\n' $cmd "$src" "$D/$name" >"$WORK/batch.$BASHPID"
		exec sftp $SSH_OPTS -q -b "$WORK/batch.$BASHPID" root@localhost ;;
	lftp)
		# Its own ssh (our config: key, port) as the transport; one
		# try, no reconnecting.
		exec lftp -c "set sftp:connect-program 'ssh -a -x $SSH_OPTS';
		    set net:max-retries 1; set net:timeout 30;
		    set cmd:fail-exit yes; open -u root, sftp://localhost;
		    put -c '$src' -o '$D/$name'" </dev/null ;;
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

# srv_lines TEXT: how many lines of the server's log hold TEXT (fixed).
srv_lines() { grep -Fc -- "$1" "$WORK/server.log" 2>/dev/null; }
# aborts NAME: the abort lines for NAME, of sftp-server and the scp sink.
aborts() { cat "$WORK/server.log" "$WORK/scp.log" 2>/dev/null | grep -Fc -- "abort \"$D/$1\""; }

# msleep MS: sleep MS milliseconds.
msleep() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }

# resume W SIZE V NAME: worker W resumes the upload of payload SIZE+V to
# its private NAME with a resuming client, perhaps killing it again.
# Logged as the uploads are, with an outcome after RC:
#   continued	the server continued kept data (its log says so)
#   refused	the server refused to continue (its log says so)
#   over	nothing to continue: uploaded from the start (sftp falls back
#		to put after reput found no file; paramiko and lftp upload
#		the whole file when STAT finds none)
#   complete	nothing left to send: the whole payload was there
#   killed	SIGKILLed (resumed again, perhaps, by the next action)
#   failed	any other failure of the client
# and, after a resume that reported success, "ok" when the destination is
# its payload byte for byte, "MISMATCH" when it is not.  Returns 0 when
# the upload is still to be resumed (killed), 1 when it is done with.
resume() {
	local w=$1 size=$2 v=$3 name=$4 kind mode pid rc fate c0 f0 c1 f1
	local outcome check=- src="$POOL/$2$3" out="$WORK/out.$1" err="$WORK/err.$1"
	local t ms
	kind=${RKINDS[$((RANDOM % ${#RKINDS[@]}))]}
	mode=resume
	[ "$kind" = paramiko ] && [ $((RANDOM % 2)) = 1 ] && mode=append
	fate=done
	[ $((RANDOM % 100)) -lt 25 ] && fate=kill
	ms=$((100 + RANDOM % 1500))
	# paramiko may pause between its STAT and its OPEN (a slow client).
	PARAMIKO_UP_PAUSE_MS=$((RANDOM % (RESUME_PAUSE + 1)))
	if [ -n "$STALLED" ] && [ "${RKINDS[1]:-}" = paramiko ]; then
		# The interrupted upload is still in flight (stalled): a
		# paramiko "r+" resume STATs while it is, and its OPEN comes
		# after the stalled upload died.
		kind=paramiko
		mode=resume
		fate=done
		PARAMIKO_UP_PAUSE_MS=$((1200 + RANDOM % 800))
	fi
	export PARAMIKO_UP_PAUSE_MS
	# Half of the resumes first give the killed upload's session time
	# to go (its abort line, at most 2 s: one killed before its OPEN
	# never writes one); the others race it, as an impatient user does.
	if [ -z "$STALLED" ] && [ $((RANDOM % 2)) = 1 ] && [ $stock = 0 ]; then
		for ((t = 0; t < 100; t++)); do
			[ "$(aborts "$name")" -gt "${ABORTS_BEFORE:-0}" ] && break
			sleep 0.02
		done
	fi
	c0=$(srv_lines "resume \"$D/$name\" from")
	f0=$(srv_lines "resume \"$D/$name\" refused")
	ABORTS_BEFORE=$(aborts "$name")
	client "$kind" "$mode" "$src" "$name" >"$out" 2>"$err" &
	pid=$!
	if [ -n "$STALLED" ]; then
		# The stalled connection dies once the resume has STATed.
		for ((t = 0; t < 150; t++)); do
			grep -qs '^stat' "$out" && break
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.02
		done
		unstall
	fi
	if [ $fate = kill ]; then
		msleep "$ms"
		if kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null; then
			wait "$pid" 2>/dev/null
			rc=137
			fate=killed
		else
			fate=done
		fi
	fi
	if [ $fate = done ]; then
		wait "$pid"
		rc=$?
	fi
	cat "$err" >>"$WORK/client.err"
	c1=$(srv_lines "resume \"$D/$name\" from")
	f1=$(srv_lines "resume \"$D/$name\" refused")
	if [ "$f1" -gt "$f0" ]; then
		outcome=refused
	elif [ $fate = killed ]; then
		outcome=killed
	elif [ "$c1" -gt "$c0" ]; then
		outcome=continued
	elif [ $kind = sftp ] && [ $rc != 0 ] && grep -qs 'No such file' "$err"; then
		# reput found no file: nothing was kept (or not yet).
		outcome=over
		(client sftp put "$src" "$name") >/dev/null 2>>"$WORK/client.err"
		rc=$?
	elif [ $kind = sftp ] && [ $rc != 0 ] && grep -qs 'same size or larger' "$err"; then
		outcome=complete
		cmp -s "$D/$name" "$src" && rc=0
	elif [ $rc = 0 ] && grep -qs '^over' "$out"; then
		outcome=over
	elif [ $rc = 0 ]; then
		# paramiko "from N" with nothing left, lftp with nothing to
		# send, or kept data of 0 bytes (not logged as a resume).
		outcome=complete
		grep -qs "^from $(stat -c %s "$src")\$" "$out" || outcome=over
		[ $kind = lftp ] && outcome=over
	else
		outcome=failed
	fi
	if [ $fate = done ] && [ $rc = 0 ]; then
		check=ok
		if ! cmp -s "$D/$name" "$src"; then
			check=MISMATCH
			verbose "MISMATCH: $kind $mode of $size$v to $name ($outcome) published $(stat -c %s "$D/$name" 2>&1) bytes that are not the payload"
			cp "$D/$name" "$WORK/mismatch.$w.$RANDOM" 2>/dev/null
		fi
	fi
	echo "$kind $mode $size $name $fate $rc $outcome $check" >>"$LOG"
	[ $fate = killed ]
}

# unstall: kill the worker's stalled upload (SIGSTOPped while its
# connection stayed open: for the server, an upload in flight).
unstall() {
	local pid kind mode size name
	[ -n "$STALLED" ] || return 0
	read -r pid kind mode size name <<<"$STALLED"
	STALLED=""
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	echo "$kind $mode $size $name killed 137" >>"$LOG"
}

# worker N: uploads until the deadline.  Each upload is logged as
#   KIND MODE SIZE NAME FATE RC [OUTCOME CHECK]
# FATE done (ran to the end; RC its exit status), killed (SIGKILLed while
# running), or vanished (left without CLOSE on purpose); resumes (MODE
# resume or append) add their OUTCOME and CHECK (see resume()).
worker() {
	local w=$1 n=0 kind size v src name fate mode pid rc r bytes out
	local pending=""
	STALLED=""
	RANDOM=$((SEED + w * 7919))
	while [ "$(date +%s)" -lt "$DEADLINE" ]; do
		# After a killed or vanished upload to a private name, mostly
		# a resume.
		if [ -n "$pending" ] && [ $((RANDOM % 100)) -lt 85 ]; then
			# shellcheck disable=SC2086
			resume "$w" $pending || pending=""
			unstall
			continue
		fi
		unstall
		pending=""
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
		if [ $r -lt 30 ]; then
			fate=kill
			# Mostly a big file.
			if [ $((RANDOM % 4)) != 0 ]; then
				size=${BIG_LIST[$((RANDOM % ${#BIG_LIST[@]}))]}
				src="$POOL/$size$v"
				name="f-$((RANDOM % 4)).dat"
			fi
			# Three quarters to a name of this worker's own that
			# only ever gets one payload (the "a" of its size), to
			# be resumed.  Few such names: a name is often there
			# already, and its upload is then a replacement.
			if [ $((RANDOM % 4)) != 0 ] && [ "$size" != 0 ]; then
				# (With stalls, one such name: it comes back.)
				[ "$STALLS" = 1 ] && size=4M
				v=a
				src="$POOL/${size}a"
				name="r$w-$size.dat"
			fi
		elif [ $r -lt 40 ] && { [ $kind = libssh2 ] || [ $kind = paramiko ]; }; then
			fate=vanished
			mode=vanish
			# Half of them to a private name, to be resumed.
			if [ $((RANDOM % 2)) = 1 ] && [ "$size" != 0 ]; then
				v=a
				src="$POOL/${size}a"
				name="r$w-$size.dat"
			fi
		fi
		# libssh2 and paramiko write to their socket with send(), which
		# /proc/PID/io does not count: half of their kills come after
		# "hang" mode has had the first half acknowledged, and all of
		# those to a private name (a resume wants something kept).
		r=$((RANDOM % 2))
		case $name in r*) r=1 ;; esac
		if [ $fate = kill ] && [ $r = 1 ] &&
		    { [ $kind = libssh2 ] || [ $kind = paramiko ]; }; then
			mode=hang
		fi
		ABORTS_BEFORE=$(aborts "$name")
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
				msleep $((100 + RANDOM % 1500))
			fi
			# With TORTURE_STALLS=1 the replacements of a private
			# name stall instead, and die during the resume: a
			# connection that dies only after the user resumed.
			if [ "$STALLS" = 1 ] && [ "${name#r}" != "$name" ] &&
			    [ -f "$D/$name" ] && kill -0 "$pid" 2>/dev/null &&
			    kill -STOP "$pid" 2>/dev/null; then
				STALLED="$pid $kind $mode $size $name"
				pending="$size $v $name"
				continue
			fi
			if kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null; then
				wait "$pid" 2>/dev/null
				echo "$kind $mode $size $name killed 137" >>"$LOG"
				case $name in r*) pending="$size $v $name" ;; esac
				continue
			fi
			fate=done
		fi
		wait "$pid"
		rc=$?
		echo "$kind $mode $size $name $fate $rc" >>"$LOG"
		[ $fate = vanished ] && case $name in r*) pending="$size $v $name" ;; esac
	done
	unstall
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
FINAL_RE='^(f-[0-9]+|empty-[0-9]+|r[0-9]+-[0-9]+[KM]?)\.dat$'
# The store of kept partial uploads is in the staging directory; only a
# server without one (none here) would keep it in the destination.
STORE_RE='^\.au-partial-[0-9]+$'
debris=0
for f in $(ls -A "$D" | grep -Ev "$FINAL_RE"); do
	if [ $STAGED = 0 ] && printf '%s\n' "$f" | grep -Eq "$STORE_RE"; then
		continue
	fi
	verbose "debris in destination: $f ($(stat -c %s "$D/$f") bytes)"
	debris=$((debris + 1))
done
# The staging directory: stores of kept partial uploads and nothing else
# (partial_stores says what else it finds, and counts the data files).
stores_out=$(partial_stores "$STAGE")
stores_rc=$?
kept=$(printf '%s\n' "$stores_out" | tail -n 1)
staging_debris=$(printf '%s\n' "$stores_out" | sed '$d' | grep -c .)
[ "$stores_rc" != 0 ] && [ "$staging_debris" = 0 ] && staging_debris=1
[ "$staging_debris" != 0 ] && printf '%s\n' "$stores_out" | sed '$d'
if [ $STAGED = 0 ]; then
	for f in "$D"/.au-partial-*; do
		[ -d "$f" ] || continue
		kept=$((kept + $(find "$f" -name 'd.*' -type f | wc -l)))
	done
fi
# None of it expired: a data file kept longer than the age is debris the
# server should have removed (nothing can be that old in a run shorter
# than the age).
expired=$(find "$STAGE" "$D" -path '*/.au-partial-*/d.*' -type f \
    ! -newermt "@$(($(date +%s) - PARTIAL_AGE))" 2>/dev/null | wc -l)
[ "$expired" -gt 0 ] && verbose "kept partial data older than $PARTIAL_AGE s: $expired files"
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
allkinds=("${KINDS[@]}")
case " $rkinds " in *" lftp "*) allkinds+=(lftp) ;; esac
for k in "${allkinds[@]}"; do
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
# Resumes: from the workers' log, and what the server's log says.
r_attempted=$(count '$2 == "resume" || $2 == "append"')
r_continued=$(count '$7 == "continued"')
r_refused=$(count '$7 == "refused"')
r_over=$(count '$7 == "over"')
r_complete=$(count '$7 == "complete"')
r_killed=$(count '$7 == "killed"')
r_failed=$(count '$7 == "failed"')
r_ok=$(count '$8 == "ok"')
r_mismatch=$(count '$8 == "MISMATCH"')
srv_continued=$(grep -ac '^resume ".*/r[0-9]*-[^/]*" from [0-9]* bytes' "$WORK/server.log")
# On the shared names: OpenSSH scp's non-truncating opens take up data
# kept there (it writes the whole file and sets its size at the end).
srv_continued_shared=$(grep -ac '^resume ".*/f-[0-9]*\.dat" from [0-9]* bytes' "$WORK/server.log")
srv_refused=$(grep -ac '^resume ".*" refused' "$WORK/server.log")
# Refusals of non-truncating opens on the shared names: not resumes of
# ours but OpenSSH scp (SFTP mode opens without TRUNC).
srv_refused_shared=$(grep -ac '^resume ".*/f-[0-9]*\.dat" refused' "$WORK/server.log")
srv_kept=$(grep -ac '^partial ".*" kept' "$WORK/server.log")
srv_not_kept=$(grep -ac '^partial ".*" not kept' "$WORK/server.log")

grep -h '^# OFFENCE' "$WORK/watch.poll" "$WORK/watch.inotify" | head -8
[ -s "$WORK/client.err" ] &&
    verbose "client errors (first 5): $(sort "$WORK/client.err" | uniq -c | sort -rn | head -5 | tr -s ' ' | tr '\n' ';')"
grep -a 'runtime error\|AddressSanitizer' "$WORK/server.log" "$WORK/scp.log" 2>/dev/null | head -3

which=ours
[ $stock = 1 ] && which=stock
echo "torture: server=$which seconds=$ELAPSED workers=$WORKERS uploads=$attempted committed=$committed aborted=$aborted (failed=$failed killed=$kills vanished=$vanished) kills=$kills big=$big empty=$empty clients[tried/committed]:$per_kind logged[server_commits=${srv_commits:-0} server_aborts=${srv_aborts:-0} sink_commits=${sink_commits:-0} sink_aborts=${sink_aborts:-0}] watcher_checks[poll=${wpoll_checks:-0} inotify=${wino_checks:-0} overflows=${overflows:-0}] close_write_events=$close_writes close_write_overlaps=$close_write_overlaps partial_sightings=$partial (poll=${poll_bad:-?} inotify=${ino_bad:-?}) final_partial=${final_bad:-?} lost=$lost resumes[attempted=$r_attempted continued=$r_continued refused=$r_refused started_over=$r_over complete=$r_complete resume_killed=$r_killed resume_failed=$r_failed payload_ok=$r_ok mismatch=$r_mismatch] server_log[continued_from=${srv_continued:-0} continued_shared=${srv_continued_shared:-0} refusals=${srv_refused:-0} refusals_shared=${srv_refused_shared:-0} partials_kept=${srv_kept:-0} not_kept=${srv_not_kept:-0}] kept_partials=${kept:-?} expired_partials=$expired (age $PARTIAL_AGE s) debris=$((debris + staging_debris)) (destination=$debris staging=$staging_debris)"

[ "$partial" -eq 0 ] && [ "${final_bad:-1}" -eq 0 ] && [ "$lost" -eq 0 ] &&
    [ "$debris" -eq 0 ] && [ "$staging_debris" -eq 0 ] &&
    [ "$expired" -eq 0 ] && [ "$r_mismatch" -eq 0 ] &&
    [ "$committed" -gt 0 ] && [ -n "$poll_bad" ] && [ -n "$ino_bad" ]
