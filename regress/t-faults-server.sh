#!/bin/bash
# Faults at the level of the programs, not the module: sftp-server (and the
# scp -t sink, when $SCP exists) receive an upload while the system calls
# under them fail, and each time the client must hear an error, the
# destination must keep its previous content and nothing may be left in
# the destination or staging directories.
#   1. Raw SFTP packets (regress/torture/faultdrive.py) to $SFTP_SERVER
#      -t STAGE under the LD_PRELOAD shim (regress/helpers/faultshim.so)
#      and under strace -e inject: ENOSPC, EDQUOT, EIO on pwrite; EIO on
#      fsync/fdatasync and on rename/link; EMFILE on open; the status of
#      the failing request is checked.  Both O_TMPFILE and named staging.
#   2. The same for "$SCP -t DIR" (the legacy sink): the \1 message.
#   3. Real clients through sshd: OpenSSH sftp and scp (and scp -O) with
#      the server under the shim.
#   4. A genuinely full filesystem (a 4 MiB tmpfs): an upload larger
#      than the free space, through sftp and scp -O.
#   5. The server SIGKILLed mid-upload: the destination is untouched, an
#      O_TMPFILE leaves nothing, a named temporary is swept by the next
#      server start (-t) or by sftp-server -S.
# Against stock (SFTP_SERVER=/usr/lib/openssh/sftp-server SCP=/usr/bin/scp)
# the "previous content kept" checks fail: stock truncates in place.
tid=t-faults-server
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"
need_root

PY=/usr/bin/python3
DRIVE="$SRC/regress/torture/faultdrive.py"
SHIM="$OBJ/regress/helpers/faultshim.so"
[ -f "$SHIM" ] || fail "missing $SHIM (make helpers)"
[ -x "$SFTP_SERVER" ] || fail "no server at $SFTP_SERVER"

stock=0
[ "$SFTP_SERVER" = "$STOCK_SFTP_SERVER" ] && stock=1
FS="$WORK/fs"
D="$FS/d"		# destination directory
S="$FS/s"		# staging directory, same filesystem
OLD="previous content"
SIZE=300000		# ten 32 KiB writes and a bit
faults=0		# faults injected (for the summary)

# Server arguments: stock has no -t.
srv_args() {
	if [ $stock = 1 ]; then
		echo "-e -l INFO"
	else
		echo "-e -l INFO -t $S"
	fi
}

reset() {
	rm -rf "$FS"
	mkdir -p "$D" "$S"
	chmod 700 "$S"
	printf '%s' "$OLD" >"$D/f"
}

is_old() { [ -f "$1" ] && [ "$(cat "$1")" = "$OLD" ]; }

# has DESC PATTERN: ok if $out matches the glob PATTERN.
has() {
	case "$out" in
	$2) ok "$1" ;;
	*) notok "$1 (got: $out)" ;;
	esac
}

# after DESC: the destination kept its old content, nothing left over.
after() {
	check "$1: previous content kept" is_old "$D/f"
	check "$1: no debris in the destination" entries_records "$D" f
	check "$1: staging directory empty (but records)" entries_records "$S"
}

# ---------------------------------------------------------------------
# 1. sftp-server over raw packets.

# sfault DESC SPEC DIR PATTERN: the upload of $SIZE bytes to f under the
# shim rule SPEC, acting on files below DIR.
sfault() {
	local desc=$1 spec=$2 dir=$3 pat=$4
	reset
	out=$("$PY" "$DRIVE" sftp "$D/f" $SIZE -- env LD_PRELOAD="$SHIM" \
	    FAULTSHIM="$spec" FAULTSHIM_DIR="$dir" FAULTSHIM_COUNT="$WORK/count" \
	    "$SFTP_SERVER" $(srv_args) 2>>"$WORK/server.log")
	faults=$((faults + 1))
	trace "$spec: $out"
	has "sftp $desc: error reported" "$pat"
	has "sftp $desc: server did not crash" "*exit=0"
	after "sftp $desc"
}

# (The write rules catch stock's lseek+write as well as our pwrite.)
# A write error shows on that WRITE; the CLOSE that follows must not
# commit the prefix.
NOTOK_CLOSE='close=[!O]*'
for m in tmpfile named; do
	pre=""
	dir=$FS
	# Named staging: the O_TMPFILE open in the staging directory fails
	# as on a filesystem without it (the first openat below $S).
	[ $m = named ] && pre="openat:EOPNOTSUPP:tmpfile,"
	sfault "[$m] pwrite ENOSPC" "${pre}pwrite:ENOSPC:after=3,write:ENOSPC:file:after=3" "$dir" \
	    "open=HANDLE write=FAILURE $NOTOK_CLOSE"
	sfault "[$m] pwrite EDQUOT" "${pre}pwrite:EDQUOT,write:EDQUOT:file" "$dir" \
	    "open=HANDLE write=FAILURE $NOTOK_CLOSE"
	sfault "[$m] pwrite EIO" "${pre}pwrite:EIO:after=1,write:EIO:file:after=1" "$dir" \
	    "open=HANDLE write=FAILURE $NOTOK_CLOSE"
	sfault "[$m] fsync/fdatasync EIO" \
	    "${pre}fsync:EIO:file,fdatasync:EIO:file" "$dir" \
	    "open=HANDLE write=OK $NOTOK_CLOSE"
	sfault "[$m] rename/link EIO" "${pre}rename*:EIO,link*:EIO" "$dir" \
	    "open=HANDLE write=OK $NOTOK_CLOSE"
	sfault "[$m] rename/link ENOSPC" "${pre}rename*:ENOSPC,link*:ENOSPC" "$dir" \
	    "open=HANDLE write=OK $NOTOK_CLOSE"
done
# EMFILE on every open below the destination's filesystem tree.
sfault "open EMFILE" "open*:EMFILE" "$FS" "open=FAILURE write=OK close=-*"

# Running out of descriptors for real: RLIMIT_NOFILE 24 and 64 uploads
# opened one after another and all closed; then one upload kept open
# while others are opened until OPEN fails.
reset
out=$("$PY" "$DRIVE" sftp-many "$D/m" 5000 -- prlimit --nofile=24 \
    "$SFTP_SERVER" $(srv_args) 2>>"$WORK/server.log")
has "sftp with 24 descriptors: 64 uploads in turn all commit" \
    "open=HANDLE write=OK close=OK opened=64*exit=0"
rm -f "$D"/m.*

# strace -e inject: the same, below libc.
have_strace=0
command -v strace >/dev/null 2>&1 && strace -f -o /dev/null true >/dev/null 2>&1 &&
    have_strace=1
st() { ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace "$@"; }

# stfault DESC INJECT PATTERN [STRACE-ARGS...]
stfault() {
	local desc=$1 inj=$2 pat=$3 set
	shift 3
	set=${inj%%:*}
	reset
	out=$("$PY" "$DRIVE" sftp "$D/f" $SIZE -- env \
	    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
	    strace -f -o /dev/null "$@" -e trace="$set" -e inject="$inj" \
	    "$SFTP_SERVER" $(srv_args) 2>>"$WORK/server.log")
	faults=$((faults + 1))
	has "strace sftp $desc: error reported" "$pat"
	has "strace sftp $desc: server did not crash" "*exit=0"
	after "strace sftp $desc"
}
# pwrite64 only: write(2) is also the reply channel (stock writes files
# with lseek+write, so its uploads are not faulted by these three).
if [ $have_strace = 1 ]; then
	stfault "pwrite ENOSPC" "pwrite64:error=ENOSPC:when=3+" \
	    "open=HANDLE write=FAILURE $NOTOK_CLOSE"
	stfault "pwrite EDQUOT" "pwrite64:error=EDQUOT" \
	    "open=HANDLE write=FAILURE $NOTOK_CLOSE"
	stfault "pwrite EIO" "pwrite64:error=EIO:when=2+" \
	    "open=HANDLE write=FAILURE $NOTOK_CLOSE"
	stfault "fsync+fdatasync EIO" "fsync,fdatasync:error=EIO" \
	    "open=HANDLE write=OK $NOTOK_CLOSE"
	stfault "rename/link EIO" \
	    "rename,renameat,renameat2,link,linkat:error=EIO" \
	    "open=HANDLE write=OK $NOTOK_CLOSE"
	stfault "openat EMFILE" "openat:error=EMFILE" \
	    "open=FAILURE write=OK close=-*" -P "$D"
else
	skip "strace fault injection" "strace missing or ptrace not permitted"
fi

# ---------------------------------------------------------------------
# 2. The scp sink, "scp -t DIR", under the shim: the \1 message.

have_scp=0
[ -x "$SCP" ] && have_scp=1
scpfault() {
	local desc=$1 spec=$2 dir=$3
	reset
	out=$("$PY" "$DRIVE" scp f $SIZE -- env LD_PRELOAD="$SHIM" \
	    FAULTSHIM="$spec" FAULTSHIM_DIR="$dir" ATOMIC_UPLOAD_TMPDIR="$S" ATOMIC_UPLOAD_LOG=stderr \
	    "$SCP" -t "$D" 2>>"$WORK/scp.log")
	faults=$((faults + 1))
	trace "scp $spec: $out"
	case "$out" in
	*header=ERR*|*end=ERR*) ok "scp -t $desc: error reported ($(
	    printf '%s' "$out" | sed 's/.*msg="\([^"]*\)".*/\1/'))" ;;
	*) notok "scp -t $desc: no error reported (got: $out)" ;;
	esac
	case "$out" in
	*exit=-*) notok "scp -t $desc: sink died of a signal ($out)" ;;
	*) ok "scp -t $desc: sink did not crash" ;;
	esac
	after "scp -t $desc"
}
if [ $have_scp = 1 ]; then
	for m in tmpfile named; do
		pre=""
		dir=$FS
		[ $m = named ] && pre="openat:EOPNOTSUPP:tmpfile,"
		scpfault "[$m] write ENOSPC" "${pre}pwrite:ENOSPC:after=2,write:ENOSPC:file" "$dir"
		scpfault "[$m] write EDQUOT" "${pre}pwrite:EDQUOT,write:EDQUOT:file" "$dir"
		scpfault "[$m] write EIO" "${pre}pwrite:EIO,write:EIO:file" "$dir"
		scpfault "[$m] fsync EIO" "${pre}fsync:EIO:file,fdatasync:EIO:file" "$dir"
		scpfault "[$m] rename/link EIO" "${pre}rename*:EIO,link*:EIO" "$dir"
	done
	scpfault "open EMFILE" "open*:EMFILE" "$D"
	# Sanity: without a fault the sink publishes the upload.
	reset
	out=$("$PY" "$DRIVE" scp f $SIZE -- env ATOMIC_UPLOAD_TMPDIR="$S" \
	    "$SCP" -t "$D" 2>>"$WORK/scp.log")
	has "scp -t without a fault: accepted" "*end=OK*exit=0"
	check "scp -t without a fault: published" \
	    test "$(stat -c %s "$D/f")" -eq $SIZE
else
	skip "scp -t faults" "no $SCP yet"
fi

# ---------------------------------------------------------------------
# 3-5 run through a real sshd.  Its sftp subsystem and the session's scp
# are wrappers that record their PID and take per-case environment
# (fault rules, extra arguments) from $WORK/server.env.
WRAP="$WORK/sftp-server-wrap"
cat >"$WRAP" <<EOF
#!/bin/sh
echo \$\$ >>$WORK/server.pids
SERVER_ARGS=
[ -r $WORK/server.env ] && . $WORK/server.env
exec $SFTP_SERVER "\$@" \$SERVER_ARGS 2>>$WORK/server.log
EOF
mkdir -p "$OBJ/regress/work/bin"
SCPWRAP="$OBJ/regress/work/bin/scp"
if [ $have_scp = 1 ]; then
	cat >"$SCPWRAP" <<EOF
#!/bin/sh
echo \$\$ >>$WORK/scp.pids
[ -r $WORK/server.env ] && . $WORK/server.env
ATOMIC_UPLOAD_LOG=stderr; export ATOMIC_UPLOAD_LOG
exec $SCP "\$@" 2>>$WORK/scp.log
EOF
	chmod 755 "$SCPWRAP"
	on_exit "rm -f '$SCPWRAP'"
fi
chmod 755 "$WRAP"
REAL_SFTP_SERVER=$SFTP_SERVER
SFTP_SERVER=$WRAP SFTP_SERVER_ARGS="-e -l INFO" start_sshd
SFTP_SERVER=$REAL_SFTP_SERVER

# env_case LINES: the environment of the next servers ("" for none).
env_case() { printf '%s\n' "$@" >"$WORK/server.env"; }
tmpdir_env() {
	[ $stock = 1 ] && return
	echo "SERVER_ARGS=\"-t $1\"; ATOMIC_UPLOAD_TMPDIR=$1; export ATOMIC_UPLOAD_TMPDIR"
}

"$PY" - "$WORK/big" <<'EOF'
import sys
open(sys.argv[1], "wb").write(b"z" * (6 << 20))
EOF
# OpenSSH's sftp writes 255 KiB per request (the limits extension): 1 MiB
# is a few writes.
head -c 1048576 "$WORK/big" >"$WORK/src"

# client_fault DESC CLIENT SPEC: one upload of $WORK/src by a real client
# (sftp, scp, scpO) to $D/f, the server under the shim rule SPEC.
client_fault() {
	local desc=$1 cl=$2 spec=$3 rc
	reset
	env_case "$(tmpdir_env "$S")" \
	    "LD_PRELOAD=$SHIM; FAULTSHIM='$spec'; FAULTSHIM_DIR=$FS; export LD_PRELOAD FAULTSHIM FAULTSHIM_DIR"
	case $cl in
	sftp)	printf 'put %s %s\n' "$WORK/src" "$D/f" >"$WORK/batch"
		sftp $SSH_OPTS -q -b "$WORK/batch" root@localhost \
		    >"$WORK/client.out" 2>&1 ;;
	scp)	scp $SSH_OPTS -q "$WORK/src" "root@localhost:$D/f" \
		    >"$WORK/client.out" 2>&1 ;;
	scpO)	scp -O $SSH_OPTS -q "$WORK/src" "root@localhost:$D/f" \
		    >"$WORK/client.out" 2>&1 ;;
	esac
	rc=$?
	faults=$((faults + 1))
	wait_for sessions_gone
	env_case ""
	if [ $rc -ne 0 ] && [ -s "$WORK/client.out" ]; then
		ok "$cl $desc: client failed (exit $rc): $(head -1 "$WORK/client.out" | tr -d '\r')"
	else
		notok "$cl $desc: client exit $rc, said: $(tr -d '\r' <"$WORK/client.out" | head -2 | tr '\n' ' ')"
	fi
	after "$cl $desc"
}
clients="sftp scp"
[ $have_scp = 1 ] && clients="$clients scpO"
for cl in $clients; do
	client_fault "pwrite ENOSPC" $cl "pwrite:ENOSPC:after=1,write:ENOSPC:file:after=1"
	client_fault "pwrite EIO" $cl "pwrite:EIO,write:EIO:file"
	client_fault "fsync EIO" $cl "fsync:EIO:file,fdatasync:EIO:file"
	client_fault "rename/link EIO" $cl "rename*:EIO,link*:EIO"
	client_fault "open EMFILE" $cl "open*:EMFILE"
done

# ---------------------------------------------------------------------
# 4. A genuinely full filesystem: 4 MiB of tmpfs, a 6 MiB upload.
FULL="$WORK/full"
mkdir -p "$FULL"
if mount -t tmpfs -o size=4m tmpfs "$FULL" 2>/dev/null; then
	on_exit "umount '$FULL'"
	fclients="sftp"
	[ $have_scp = 1 ] && fclients="$fclients scpO"
	for cl in $fclients; do
		rm -rf "${FULL:?}"/*
		mkdir -p "$FULL/d" "$FULL/s"
		chmod 700 "$FULL/s"
		printf '%s' "$OLD" >"$FULL/d/f"
		used0=$(df --output=used -B1 "$FULL" | tail -1)
		env_case "$(tmpdir_env "$FULL/s")"
		case $cl in
		sftp)	printf 'put %s %s\n' "$WORK/big" "$FULL/d/f" >"$WORK/batch"
			sftp $SSH_OPTS -q -b "$WORK/batch" root@localhost \
			    >"$WORK/client.out" 2>&1 ;;
		scpO)	scp -O $SSH_OPTS -q "$WORK/big" "root@localhost:$FULL/d/f" \
			    >"$WORK/client.out" 2>&1 ;;
		esac
		rc=$?
		faults=$((faults + 1))
		wait_for sessions_gone
		env_case ""
		used1=$(df --output=used -B1 "$FULL" | tail -1)
		if [ $rc -ne 0 ]; then
			ok "$cl full filesystem: client failed: $(head -1 "$WORK/client.out" | tr -d '\r')"
		else
			notok "$cl full filesystem: client reported success"
		fi
		check "$cl full filesystem: previous content kept" \
		    eval 'is_old "$FULL/d/f"'
		check "$cl full filesystem: no debris" entries_records "$FULL/d" f
		check "$cl full filesystem: staging directory empty (but records)" \
		    entries_records "$FULL/s"
		# The record of the failed replacement stays; the data's
		# space comes back.
		rm -rf "$FULL"/s/.au-partial-* "$FULL"/d/.au-partial-*
		used1=$(df --output=used -B1 "$FULL" | tail -1)
		check "$cl full filesystem: space given back (used $used0 -> $used1)" \
		    test "$used1" -le "$used0"
	done
else
	skip "full filesystem" "cannot mount a tmpfs here"
fi

# ---------------------------------------------------------------------
# 5. The server SIGKILLed mid-upload.  The client is slowed to 4 Mbit/s
#    so the upload is in flight when the server dies.

# kill_case DESC NAMED TMPDIR [CLIENT]: upload $WORK/big with CLIENT (sftp,
# or scpO to kill the scp -t sink), kill the server once its staged data
# has reached 512 KiB; TMPDIR "" stages beside the destination.
kill_case() {
	local desc=$1 named=$2 tdir=$3 cl=${4:-sftp} cpid spid rc i left pids
	reset
	pids="$WORK/server.pids"
	[ "$cl" = scpO ] && pids="$WORK/scp.pids"
	: >"$pids"
	local -a lines=()
	[ -n "$tdir" ] && lines+=("$(tmpdir_env "$tdir")")
	if [ "$named" = 1 ]; then
		# As on a filesystem without O_TMPFILE.
		lines+=("ATOMIC_UPLOAD_TMPFILE=off; export ATOMIC_UPLOAD_TMPFILE")
	fi
	env_case "${lines[@]}"
	if [ "$cl" = scpO ]; then
		scp -O $SSH_OPTS -q -l 4000 "$WORK/big" "root@localhost:$D/f" \
		    >"$WORK/client.out" 2>&1 &
	else
		printf 'put %s %s\n' "$WORK/big" "$D/f" >"$WORK/batch"
		sftp $SSH_OPTS -q -l 4000 -b "$WORK/batch" root@localhost \
		    >"$WORK/client.out" 2>&1 &
	fi
	cpid=$!
	on_exit "kill -9 $cpid"
	wait_for test -s "$pids"
	spid=$(tail -1 "$pids")
	# The staged data: the server's open descriptors below $FS (an
	# O_TMPFILE shows as "#inode (deleted)", stock's file as f).
	staged_size() {
		local fd t
		for fd in /proc/"$spid"/fd/*; do
			t=$(readlink "$fd" 2>/dev/null) || continue
			case "$t" in
			"$FS"/*) [ -f "$fd" ] && stat -L -c %s "$fd" ;;
			esac
		done | sort -n | tail -1
	}
	for i in $(seq 1 150); do
		[ "$(staged_size)" -ge 524288 ] 2>/dev/null && break
		sleep 0.1
	done
	verbose "$desc: killing server $spid with $(staged_size) bytes staged"
	kill -KILL "$spid"
	wait "$cpid"
	rc=$?
	faults=$((faults + 1))
	wait_for sessions_gone
	env_case ""
	check "server killed ($desc): client failed (exit $rc)" test $rc -ne 0
	check "server killed ($desc): previous content kept" is_old "$D/f"
	check "server killed ($desc): nothing visible beside the destination" \
	    eval 'test -z "$(ls "$D" | grep -v "^f\$")"'
	left=$({ ls -A "$D"; [ -n "$tdir" ] && ls -A "$tdir"; } |
	    grep -v '^\.au-partial-' | grep -c '^\.')
	verbose "$desc: hidden entries left by the killed server: $left"
	if [ "$named" = 0 ]; then
		check "server killed ($desc): an O_TMPFILE leaves nothing" \
		    test "$left" -eq 0
	fi
}

kill_case "O_TMPFILE in the staging directory" 0 "$S"
after "server killed (O_TMPFILE)"
kill_case "named temporary in the staging directory" 1 "$S"
if [ $stock = 0 ]; then
	check "named temporary left by the killed server" \
	    test "$(ls -A "$S" | grep -vc '^\.au-partial-')" -eq 1
fi
# The next server start sweeps the staging directory.
env_case "$(tmpdir_env "$S")"
sftp $SSH_OPTS -q -b /dev/null root@localhost >/dev/null 2>&1
wait_for sessions_gone
env_case ""
check "next server start: staging directory swept" entries_records "$S"
check "next server start: the sweep is logged" \
    grep -aq 'sweep .*removed 1 stale temporary file' "$WORK/server.log"
after "server killed (named), after the sweep"

kill_case "named temporary beside the destination" 1 ""
if [ $stock = 0 ]; then
	n=$(ls -A "$D" | grep -v '^\.au-partial-' | grep -c '^\.')
	check "named temporary beside the destination left ($n)" test "$n" -eq 1
	"$SFTP_SERVER" -S "$D" >/dev/null 2>&1
	check "sftp-server -S sweeps it" entries_records "$D" f
fi
after "server killed beside the destination, after the sweep"

# The scp -t sink SIGKILLed mid-upload; the next sink started with the
# staging directory sweeps what a named temporary left.
if [ $have_scp = 1 ]; then
	kill_case "scp -t, O_TMPFILE in the staging directory" 0 "$S" scpO
	after "scp -t killed (O_TMPFILE)"
	kill_case "scp -t, named temporary in the staging directory" 1 "$S" scpO
	if [ $stock = 0 ]; then
		check "scp -t: named temporary left by the killed sink" \
		    test "$(ls -A "$S" | grep -vc '^\.au-partial-')" -eq 1
	fi
	env_case "$(tmpdir_env "$S")"
	scp -O $SSH_OPTS -q "$WORK/src" "root@localhost:$WORK/other.dat" >/dev/null 2>&1
	wait_for sessions_gone
	env_case ""
	check "scp -t: next sink start sweeps the staging directory" \
	    entries_records "$S"
	after "scp -t killed (named), after the sweep"
fi

verbose "faults injected: $faults"
grep -a 'runtime error\|AddressSanitizer' "$WORK/server.log" "$WORK"/scp.log 2>/dev/null | head -3
exit 0
