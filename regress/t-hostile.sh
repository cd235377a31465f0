#!/bin/bash
# Hostile input to the receive paths:
#   1. destination names of 255 bytes (the temporary name must still fit)
#      and names that are not UTF-8, through OpenSSH sftp, scp and scp -O
#      and a real sshd, staged as O_TMPFILE and as named temporaries;
#   2. the parent directory swapped for a symlink while an upload is open:
#      the commit lands in the directory that was opened (or fails), and
#      never follows the new symlink;
#   3. a world-writable staging directory without the sticky bit: refused,
#      the upload staged beside its destination instead, and logged (a
#      replacement, which renames into place from the staging directory);
#   4. symlinks planted in a shared staging directory by another user at
#      the very names the server will use (its random source made
#      predictable): never followed, never swept;
#   5. 10,000 handles opened and never closed: the server hands out at
#      most what its limits extension advertises, refuses the rest with
#      a status, keeps serving, and leaves nothing behind at EOF;
#   6. a client pushing 255 KiB writes faster than the disk takes them
#      (each pwrite delayed): the server's peak RSS stays bounded;
#   7. a WRITE refused for its offset: the upload must not commit.
# Against stock (SFTP_SERVER=/usr/lib/openssh/sftp-server SCP=/usr/bin/scp)
# the staging cases SKIP and the handle case fails (stock leaves every
# never-closed upload behind as a file).
tid=t-hostile
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"
need_root
test_user_setup

PY=/usr/bin/python3
HOSTILE="$SRC/regress/torture/hostile.py"
DRIVE="$SRC/regress/torture/faultdrive.py"
SHIM="$OBJ/regress/helpers/faultshim.so"
[ -f "$SHIM" ] || fail "missing $SHIM (make helpers)"
[ -x "$SFTP_SERVER" ] || fail "no server at $SFTP_SERVER"
stock=0
[ "$SFTP_SERVER" = "$STOCK_SFTP_SERVER" ] && stock=1
have_scp=0
[ -x "$SCP" ] && have_scp=1

D="$WORK/d"	# destination directory
S="$WORK/s"	# staging directory
reset() {
	rm -rf "$D" "$S"
	mkdir -p "$D" "$S"
	chmod 700 "$S"
}
srv_args() {
	if [ $stock = 1 ]; then echo "-e -l INFO"; else echo "-e -l INFO -t $S"; fi
}
# has DESC PATTERN: ok if $out matches the glob PATTERN.
has() {
	case "$out" in
	$2) ok "$1" ;;
	*) notok "$1 (got: $out)" ;;
	esac
}

# ---------------------------------------------------------------------
# 1. Names, through sshd.  The subsystem and the session's scp are
#    wrappers taking per-case environment from $WORK/server.env.
WRAP="$WORK/sftp-server-wrap"
cat >"$WRAP" <<EOF
#!/bin/sh
SERVER_ARGS=
[ -r $WORK/server.env ] && . $WORK/server.env
exec $SFTP_SERVER "\$@" \$SERVER_ARGS 2>>$WORK/server.log
EOF
chmod 755 "$WRAP"
mkdir -p "$OBJ/regress/work/bin"
SCPWRAP="$OBJ/regress/work/bin/scp"
if [ $have_scp = 1 ]; then
	cat >"$SCPWRAP" <<EOF
#!/bin/sh
[ -r $WORK/server.env ] && . $WORK/server.env
exec $SCP "\$@" 2>>$WORK/scp.log
EOF
	chmod 755 "$SCPWRAP"
	on_exit "rm -f '$SCPWRAP'"
fi
REAL_SFTP_SERVER=$SFTP_SERVER
SFTP_SERVER=$WRAP SFTP_SERVER_ARGS="-e -l INFO" start_sshd
SFTP_SERVER=$REAL_SFTP_SERVER

LONG=$(printf 'L%.0s' $(seq 1 251)).dat	# 255 bytes
BAD=$(printf 'bad-\377\376-\303\303-\200.dat')	# not UTF-8
"$PY" "$SRC/regress/helpers/mkpayload.py" "$WORK/src" 100K n1
"$PY" "$SRC/regress/helpers/mkpayload.py" "$WORK/old" 1K n2

# upload_name CLIENT NAME: $WORK/src to $D/NAME.
upload_name() {
	local cl=$1 name=$2
	case $cl in
	sftp)	printf 'put "%s" "%s"\n' "$WORK/src" "$D/$name" >"$WORK/batch"
		sftp $SSH_OPTS -q -b "$WORK/batch" root@localhost ;;
	scp)	scp $SSH_OPTS -q "$WORK/src" "root@localhost:$D/$name" ;;
	scpO)	scp -O $SSH_OPTS -q "$WORK/src" "root@localhost:$D/$name" ;;
	esac
}
clients="sftp scp"
[ $have_scp = 1 ] && clients="$clients scpO"
for how in tmpfile named; do
	for which in long bad; do
		name=$LONG
		[ $which = bad ] && name=$BAD
		for what in new replace; do
			for cl in $clients; do
				desc="$cl, $which name, $what, $how"
				reset
				[ $what = replace ] && cp "$WORK/old" "$D/$name"
				: >"$WORK/count"
				{
					# Staging beside the destination: the
					# temporary names are made there.
					echo "FAULTSHIM_COUNT=$WORK/count; FAULTSHIM_DIR=$D; export FAULTSHIM_COUNT FAULTSHIM_DIR"
					rule=""
					[ $how = named ] && rule="openat:EOPNOTSUPP:tmpfile"
					echo "LD_PRELOAD=$SHIM; FAULTSHIM='$rule'; export LD_PRELOAD FAULTSHIM"
				} >"$WORK/server.env"
				if upload_name $cl "$name" >"$WORK/client.out" 2>&1; then
					ok "$desc: accepted"
				else
					notok "$desc: $(tr -d '\r' <"$WORK/client.out" | head -2 | tr '\n' ' ')"
				fi
				wait_for sessions_gone
				rm -f "$WORK/server.env"
				check "$desc: complete under its name" \
				    cmp -s "$WORK/src" "$D/$name"
				check "$desc: nothing else in the destination" \
				    entries "$D" "$name"
				# The longest temporary name the server made.
				tl=$(awk '$2 ~ /^(openat|linkat|renameat|renameat2)$/ && $5 ~ /^\./ { print length($5) }' \
				    "$WORK/count" | sort -n | tail -1)
				if [ -n "$tl" ]; then
					check "$desc: temporary name fits ($tl bytes)" \
					    test "$tl" -le 255
				elif [ $stock = 0 ] && [ $how = named ]; then
					notok "$desc: no temporary name seen"
				fi
			done
		done
	done
done

# ---------------------------------------------------------------------
# 2. The parent directory swapped for a symlink during the upload.  The
#    upload holds its destination directory open from OPEN to CLOSE and
#    publishes relative to it: the data lands in the directory that was
#    opened (now sub.old), never in the symlink's target.
for t in "" "-t $S"; do
	[ $stock = 1 ] && [ -n "$t" ] && continue
	reset
	mkdir -p "$D/sub" "$D/other"
	out=$("$PY" "$HOSTILE" swap "$D" -- "$SFTP_SERVER" -e $t 2>>"$WORK/server.log")
	desc="parent swapped for a symlink (${t:-staging beside}):"
	verbose "$desc $out"
	has "$desc the new symlink is never followed" "*symlink_target=absent*"
	case "$out" in
	*close=OK*) has "$desc committed in the opened directory" \
	    "*opened_dir=complete*" ;;
	*) has "$desc refused, nothing published" "*opened_dir=absent*" ;;
	esac
	check "$desc no debris" entries "$D/sub.old" f
	check "$desc staging directory empty" entries "$S"
done

# ---------------------------------------------------------------------
# 3. A world-writable staging directory without the sticky bit.
if [ $stock = 0 ]; then
	for mode in 0777 1777; do
		reset
		chmod $mode "$S"
		printf '%s' old >"$D/f"
		printf '%s' old >"$D/g"
		: >"$WORK/count"
		: >"$WORK/srv.log"
		out=$("$PY" "$DRIVE" sftp "$D/f" 100000 -- env LD_PRELOAD="$SHIM" \
		    FAULTSHIM= FAULTSHIM_DIR="$S" FAULTSHIM_COUNT="$WORK/count" \
		    "$SFTP_SERVER" -e -l INFO -t "$S" 2>"$WORK/srv.log")
		used=$(awk '$2 ~ /^openat/' "$WORK/count" | wc -l)
		if [ $mode = 0777 ]; then
			has "staging dir 0777: upload still commits" "*close=OK*"
			check "staging dir 0777: not used ($used creations there)" \
			    test "$used" -eq 0
			check "staging dir 0777: refusal logged" \
			    grep -aq 'writable by others without the sticky bit' "$WORK/srv.log"
		else
			has "staging dir 1777: upload commits" "*close=OK*"
			check "staging dir 1777: used" test "$used" -gt 0
			check "staging dir 1777: no refusal logged" \
			    eval '! grep -aq "without the sticky bit" "$WORK/srv.log"'
		fi
		check "staging dir $mode: upload complete" \
		    test "$(stat -c %s "$D/f")" -eq 100000
		check "staging dir $mode: no debris" entries "$D" f g
		check "staging dir $mode: staging directory empty" entries "$S"
		if [ $have_scp = 1 ]; then
			: >"$WORK/count"
			out=$("$PY" "$DRIVE" scp g 1000 -- env LD_PRELOAD="$SHIM" \
			    FAULTSHIM= FAULTSHIM_DIR="$S" FAULTSHIM_COUNT="$WORK/count" \
			    ATOMIC_UPLOAD_TMPDIR="$S" ATOMIC_UPLOAD_LOG=stderr "$SCP" -t "$D" 2>"$WORK/scp1.log")
			used=$(awk '$2 ~ /^openat/' "$WORK/count" | wc -l)
			has "scp -t, staging dir $mode: accepted" "*end=OK*"
			if [ $mode = 0777 ]; then
				check "scp -t, staging dir 0777: not used" test "$used" -eq 0
				check "scp -t, staging dir 0777: refusal logged" \
				    grep -aq 'writable by others without the sticky bit' "$WORK/scp1.log"
			else
				check "scp -t, staging dir 1777: used" test "$used" -gt 0
			fi
			check "scp -t, staging dir $mode: no debris" entries "$D" f g
		fi
	done
else
	skip "world-writable staging directory" "stock has no staging"
fi

# ---------------------------------------------------------------------
# 4. Symlinks planted by another user in a shared (1777) staging
#    directory at the names the server will use.  getrandom is made to
#    return zeros, so the "unpredictable" part of each name is known.
victim="$WORK/victim"
if [ $stock = 0 ]; then
	reset
	chmod 1777 "$S"
	printf 'precious' >"$victim"
	chmod 644 "$victim"
	printf '%s' "old" >"$D/f"
	planted_env=(env LD_PRELOAD="$SHIM" FAULTSHIM_COUNT="$WORK/count")
	# With getrandom returning zeros, every private directory would be
	# ".au-" and sixteen 'a's: in the staging directory (named staging,
	# and the O_TMPFILE replace's rename) and, without -t, beside the
	# destination, here a shared directory too.
	n1=.au-aaaaaaaaaaaaaaaa
	n2=$n1
	printf '%s' "old" >"$D/f"
	chmod 1777 "$D"
	as_user ln -s "$victim" "$S/$n1"
	as_user ln -s "$victim" "$D/$n2"
	planted=$(find "$S" "$D" -type l | wc -l)
	check "symlinks planted by $TEST_USER ($planted)" test "$planted" -eq 2
	for how in named tmpfile; do
		rule="getrandom:ZERO"
		[ $how = named ] && rule="getrandom:ZERO,openat:EOPNOTSUPP:tmpfile"
		out=$("$PY" "$DRIVE" sftp "$D/f" 5000 -- env LD_PRELOAD="$SHIM" \
		    FAULTSHIM="$rule" FAULTSHIM_DIR="$WORK" \
		    "$SFTP_SERVER" -e -l INFO -t "$S" 2>>"$WORK/server.log")
		verbose "planted symlinks, $how: $out"
		check "planted symlinks, $how: victim untouched" \
		    test "$(cat "$victim")" = precious
		check "planted symlinks, $how: links still links" \
		    test "$(find "$S" "$D" -type l | wc -l)" -eq "$planted"
		case "$out" in
		*close=OK*) check "planted symlinks, $how: upload complete" \
		    test "$(stat -c %s "$D/f")" -eq 5000 ;;
		*) check "planted symlinks, $how: refused, old content kept" \
		    test "$(cat "$D/f")" = old ;;
		esac
		check "planted symlinks, $how: nothing else in the destination" \
		    entries "$D" f ${n2:+"$n2"}
	done
	# Root's sweep (the cron job) removes a stale temporary whoever owns
	# it, since no live staging holds its lock, but never follows or
	# removes a symlink.
	as_user sh -c "printf x > '$S/.f.au-AAAAAAAAAAAAAAAA'"
	"$SFTP_SERVER" -S "$S" >/dev/null 2>&1
	"$SFTP_SERVER" -S "$D" >/dev/null 2>&1
	check "sweep leaves the other user's symlinks" \
	    test "$(find "$S" "$D" -type l | wc -l)" -eq "$planted"
	check "root's sweep removes the other user's stale temporary" \
	    test ! -e "$S/.f.au-AAAAAAAAAAAAAAAA"
	check "sweep: victim untouched" test "$(cat "$victim")" = precious
else
	skip "planted symlinks in the staging directory" "stock has no staging"
fi

# ---------------------------------------------------------------------
# 5. 10,000 handles opened for writing and never closed.
for nofile in "" 64; do
	reset
	pl=()
	[ -n "$nofile" ] && pl=(prlimit --nofile=$nofile)
	out=$("$PY" "$HOSTILE" handles "$D" 10000 -- "${pl[@]}" "$SFTP_SERVER" \
	    $(srv_args) 2>>"$WORK/server.log")
	desc="10000 handles${nofile:+ (RLIMIT_NOFILE $nofile)}"
	verbose "$desc: $out"
	limit=$(printf '%s' "$out" | sed -n 's/.*limit=\([0-9]*\).*/\1/p')
	handles=$(printf '%s' "$out" | sed -n 's/.* handles=\([0-9]*\).*/\1/p')
	refused=$(printf '%s' "$out" | sed -n 's/.* refused=\([0-9]*\).*/\1/p')
	check "$desc: no more handles than the limits extension advertises ($handles of $limit)" \
	    test "${handles:-1}" -le "${limit:-0}"
	check "$desc: every other OPEN answered with a status ($refused)" \
	    test $((${handles:-0} + ${refused:-0})) -eq 10000
	has "$desc: still serving (write, stat), exit 0" "*write=OK stat=ATTRS*exit=0"
	if [ -n "$nofile" ]; then
		check "$desc: the advertised limit is really available ($handles of $limit)" \
		    test "${handles:-0}" -eq "${limit:-1}"
	fi
	check "$desc: nothing left behind at EOF ($(ls -A "$D" | wc -l) entries)" \
	    entries "$D"
	check "$desc: staging directory empty (but kept partial uploads)" \
	    entries_partials "$S"
done

# ---------------------------------------------------------------------
# 6. 255 KiB writes faster than the disk: 96 MiB in 386 WRITEs, up to 384
#    (96 MiB) in flight, every pwrite/write delayed 4 ms.  The peak RSS
#    must stay within 32 MiB of a one-request-at-a-time upload's.
reset
slow=(env LD_PRELOAD="$SHIM" FAULTSHIM="pwrite:DELAY:ms=4,write:DELAY:ms=4:file" FAULTSHIM_DIR="$WORK")
base=$("$PY" "$HOSTILE" flood "$D/base" 4 1 -- "${slow[@]}" "$SFTP_SERVER" \
    $(srv_args) 2>>"$WORK/server.log")
out=$("$PY" "$HOSTILE" flood "$D/big" 96 384 -- "${slow[@]}" "$SFTP_SERVER" \
    $(srv_args) 2>>"$WORK/server.log")
verbose "one at a time: $base"
verbose "flood: $out"
b=$(printf '%s' "$base" | sed -n 's/.*hwm_kib=\([0-9]*\).*/\1/p')
f=$(printf '%s' "$out" | sed -n 's/.*hwm_kib=\([0-9]*\).*/\1/p')
has "flood: every write answered OK, committed" "writes=386 statuses=OK:386 close=OK size=100663296*exit=0"
check "flood: peak RSS bounded (${f:-?} KiB, one at a time ${b:-?} KiB)" \
    test "${f:-999999}" -le $((${b:-0} + 32768))

# ---------------------------------------------------------------------
# 7. A WRITE the server refuses (offset + length past 2^63 - 1) in the
#    middle of an upload: the data of that request is missing, so the
#    CLOSE must not publish what did arrive.
reset
printf 'old' >"$D/f"
out=$("$PY" "$HOSTILE" badoffset "$D/f" -- "$SFTP_SERVER" $(srv_args) \
    2>>"$WORK/server.log")
verbose "refused write: $out"
has "refused WRITE: answered with an error" "write=OK,[!O]*"
has "refused WRITE: CLOSE does not commit" "*close=[!O]*"
check "refused WRITE: previous content kept" test "$(cat "$D/f")" = old
check "refused WRITE: no debris" entries_records "$D" f
check "refused WRITE: staging directory empty (but records)" \
    entries_records "$S"

exit 0
