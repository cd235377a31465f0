#!/bin/bash
# Upload digests and check-file.  Every upload's SHA-256, as logged in its
# commit line and stored as user.sha256 (-x, ATOMIC_UPLOAD_XATTR=on),
# must be sha256sum's of the published file: OpenSSH sftp put (in order),
# libssh2 (pipelined, and out of order), sftp put -a (appending to an
# existing file), scp in SFTP mode, scp -O (our scp through sshd), a 0444
# upload by an unprivileged owner; raw clients for out-of-order writes,
# holes, modifications, truncation, the switches (regress/digest_cases.py
# uploads).  check-file through paramiko's SFTPFile.check against hashlib
# and coreutils, and by raw packets (algorithms, ranges, blocks, limits,
# errors, staged data seen by its own session only, -P/-p/-Q, VERSION),
# side by side with stock, which answers OP_UNSUPPORTED.
# SFTP_SERVER=/usr/lib/openssh/sftp-server: our-only checks SKIP.
tid=t-digest
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"
need_root

PY=/usr/bin/python3
CASES="$SRC/regress/digest_cases.py"
MKPAYLOAD="$SRC/regress/helpers/mkpayload.py"
export tid
ours=0
[ "$SFTP_SERVER" != "$STOCK_SFTP_SERVER" ] && ours=1
why="stock has no digests"
# Our scp, unless $SCP is someone else's (it would not know the variable).
scp_ours=0
[ -x "$SCP" ] && grep -q ATOMIC_UPLOAD_XATTR "$SCP" 2>/dev/null && scp_ours=1
command -v getfattr >/dev/null || { skip "$tid" "no getfattr (attr)"; exit 0; }

D="$WORK/dst"
L="$WORK/local"
mkdir -p "$D" "$L"

# The subsystem: a wrapper that keeps the server's stderr (-e) in
# $SLOG, which sessions of the unprivileged user append to as well.
SLOG="$WORK/server.log"
CLOG="$WORK/scp.log"
: >"$SLOG"
: >"$CLOG"
chmod 666 "$SLOG" "$CLOG"
WRAP="$WORK/sftp-server-wrap"
cat >"$WRAP" <<EOF
#!/bin/sh
exec $SFTP_SERVER "\$@" 2>>$SLOG
EOF
chmod 755 "$WRAP"
# The session's scp: ours, storing user.sha256, logging to $CLOG.
mkdir -p "$OBJ/regress/work/bin"
SCPWRAP="$OBJ/regress/work/bin/scp"
# Never write through a link another test left there
# (it may point at the system's scp).
rm -f "$SCPWRAP"
cat >"$SCPWRAP" <<EOF
#!/bin/sh
ATOMIC_UPLOAD_XATTR=on ATOMIC_UPLOAD_LOG=stderr
export ATOMIC_UPLOAD_XATTR ATOMIC_UPLOAD_LOG
exec $SCP "\$@" 2>>$CLOG
EOF
chmod 755 "$SCPWRAP"
on_exit "rm -f '$SCPWRAP'"
REAL_SFTP_SERVER=$SFTP_SERVER
SFTP_SERVER_ARGS="-e -l VERBOSE"
[ $ours = 1 ] && SFTP_SERVER_ARGS="$SFTP_SERVER_ARGS -x"
SFTP_SERVER=$WRAP start_sshd
SFTP_SERVER=$REAL_SFTP_SERVER

# sum256 FILE: sha256sum's hex.
sum256() { sha256sum <"$1" | cut -d' ' -f1; }
# logsha LOG NAME: the sha256 of the last commit line of a path ending
# in NAME ("" without one).  (-e lines end in CR LF, as stock's.)
logsha() {
	tr -d '\r' <"$1" | grep -F "$2\" bytes " | grep '^commit "' | tail -1 |
	    sed -n 's/.* sha256 \([0-9a-f]\{64\}\)\( warning .*\)\{0,1\}$/\1/p'
}
xattr256() { getfattr --only-values -n user.sha256 "$1" 2>/dev/null; }
# reread LOG NAME: the VERBOSE "read back" line of NAME, if any.
reread() {
	grep -F "digest \"" "$1" | grep -F "$2\": " | grep 'read back' | tail -1
}
# scp_logged NAME: our scp has logged NAME's commit (it may come a moment
# after the client is done).
scp_logged() { test -n "$(logsha "$CLOG" "$1")"; }

# digests LABEL LOG FILE [reread|stream]: the commit line's sha256 and
# user.sha256 are sha256sum's; "reread"/"stream": the VERBOSE line
# says data was (not) read back.
digests() {
	local label=$1 log=$2 f=$3 how=${4:-} want
	want=$(sum256 "$f")
	if [ $ours = 0 ]; then
		skip "$label: commit line sha256 and user.sha256" "$why"
		return
	fi
	check "$label: commit line sha256 = sha256sum ($want)" \
	    test "$(logsha "$log" "$(basename "$f")")" = "$want"
	check "$label: user.sha256 = sha256sum" test "$(xattr256 "$f")" = "$want"
	case $how in
	reread)
		check "$label: VERBOSE line: data read back at the commit" \
		    test -n "$(reread "$log" "$(basename "$f")")" ;;
	stream)
		check "$label: hashed as it streamed, nothing read back" \
		    test -z "$(reread "$log" "$(basename "$f")")" ;;
	esac
}

"$PY" "$MKPAYLOAD" "$L/seq" 5M dg1 || fail "mkpayload"
"$PY" "$MKPAYLOAD" "$L/p6m" 6M dg2 || fail "mkpayload"
head -c 3145505 "$L/p6m" >"$L/pm"
head -c 1000003 "$L/seq" >"$L/odd"

# 1. OpenSSH sftp put: sequential writes.
if sftp -q $SSH_OPTS -b - root@localhost >"$WORK/out" 2>&1 <<EOF
put $L/seq $D/seq
EOF
then
	check "sftp put: same bytes" cmp -s "$L/seq" "$D/seq"
	digests "sftp put" "$SLOG" "$D/seq" stream
else
	notok "sftp put: $(tail -3 "$WORK/out")"
fi

# 2. libssh2: pipelined, and out of order (second half backwards first).
CLIENT="$OBJ/regress/clients/libssh2_upload"
if [ ! -x "$CLIENT" ]; then
	CLIENT="$WORK/libssh2_upload"
	cc -I"$OBJ" -I"$SRC" -DHAVE_CONFIG_H -O2 -o "$CLIENT" \
	    "$SRC/regress/clients/libssh2_upload.c" -lssh2 2>/dev/null ||
	    CLIENT=
fi
if [ -z "$CLIENT" ]; then
	skip "libssh2 uploads" "cannot build regress/clients/libssh2_upload"
else
	up() {
		timeout 120 "$CLIENT" -p "$SSHD_PORT" -u root \
		    -k "$WORK/sshd/client_key" -K "$WORK/sshd/client_key.pub" \
		    "$@" 2>"$WORK/err"
	}
	if up -m put -b 4194304 "$L/p6m" "$D/pipelined"; then
		check "libssh2 pipelined put: same bytes" cmp -s "$L/p6m" "$D/pipelined"
		digests "libssh2 pipelined put" "$SLOG" "$D/pipelined" stream
	else
		notok "libssh2 pipelined put: $(cat "$WORK/err")"
	fi
	if up -m scatter -b 65536 "$L/odd" "$D/scattered"; then
		check "libssh2 out of order: same bytes" cmp -s "$L/odd" "$D/scattered"
		digests "libssh2 out of order" "$SLOG" "$D/scattered" reread
	else
		notok "libssh2 out of order: $(cat "$WORK/err")"
	fi
fi

# 3. sftp put -a: resumes onto the first MiB already there (appends to
#    an existing file, whose whole new content is hashed).
head -c 1048576 "$L/seq" >"$D/resumed"
if sftp -q $SSH_OPTS -b - root@localhost >"$WORK/out" 2>&1 <<EOF
put -a $L/seq $D/resumed
EOF
then
	check "sftp put -a onto a partial copy: same bytes" \
	    cmp -s "$L/seq" "$D/resumed"
	digests "sftp put -a" "$SLOG" "$D/resumed" reread
else
	notok "sftp put -a: $(tail -3 "$WORK/out")"
fi

# 4. scp in SFTP mode (OpenSSH 9's default), over an existing file that
#    carries a stale user.sha256.
printf 'old\n' >"$D/viascp"
setfattr -n user.sha256 -v 0000 "$D/viascp"
if scp -q $SSH_OPTS "$L/pm" root@localhost:"$D/viascp" 2>"$WORK/err"; then
	check "scp (SFTP mode): same bytes" cmp -s "$L/pm" "$D/viascp"
	digests "scp (SFTP mode) over a stale user.sha256" "$SLOG" "$D/viascp"
else
	notok "scp (SFTP mode): $(cat "$WORK/err")"
fi

# 5. scp -O: the session's scp is ours, with ATOMIC_UPLOAD_XATTR=on.
if ! scp -O 2>&1 | grep -q 'unknown option' && [ $scp_ours = 1 ]; then
	if scp -O -q $SSH_OPTS "$L/odd" root@localhost:"$D/viascpO" \
	    2>"$WORK/err"; then
		check "scp -O: same bytes" cmp -s "$L/odd" "$D/viascpO"
		want=$(sum256 "$D/viascpO")
		wait_for scp_logged viascpO
		check "scp -O: commit line sha256 = sha256sum" \
		    test "$(logsha "$CLOG" viascpO)" = "$want"
		check "scp -O: user.sha256 = sha256sum" \
		    test "$(xattr256 "$D/viascpO")" = "$want"
	else
		notok "scp -O: $(cat "$WORK/err")"
	fi
else
	skip "scp -O digests" "no scp -O, or \$SCP is not ours"
fi

# 6. check-file through paramiko (sshd, the real subsystem).
if "$PY" -c 'import paramiko' 2>/dev/null; then
	cp "$L/pm" "$D/pm"
	"$PY" "$CASES" paramiko "$SSHD_PORT" "$WORK/sshd/client_key" "$D/pm"
else
	skip "paramiko check-file" "python3-paramiko not installed"
fi

# 7. As the unprivileged user: sftp put -p of a 0444 file keeps 0444
#    and gets user.sha256 all the same; raw clients (ours and stock side
#    by side) for a 0444 OPEN, owners and modes, and check-file-name of
#    root's 0600 file.
UD="$WORK/udst"
UL="$WORK/ulocal"
mkdir -p "$UD" "$UL"
chown "$TEST_USER" "$UD"
chmod 755 "$UD" "$UL"
head -c 200000 "$L/seq" >"$UL/ro444"
chmod 444 "$UL/ro444"
printf 'put -p %s %s\n' "$UL/ro444" "$UD/ro444" >"$UL/batch"
chmod 644 "$UL/batch"
if as_user sftp -q $USER_SSH_OPTS -b "$UL/batch" "$TEST_USER@localhost" \
    >"$WORK/out" 2>&1; then
	check "as $TEST_USER: sftp put -p of a 0444 file: same bytes" \
	    cmp -s "$UL/ro444" "$UD/ro444"
	check "as $TEST_USER: the upload is the user's, mode 0444" \
	    test "$(stat -c '%U %a' "$UD/ro444")" = "$TEST_USER 444"
	digests "as $TEST_USER: 0444 upload" "$SLOG" "$UD/ro444"
else
	notok "as $TEST_USER: sftp put -p: $(tail -3 "$WORK/out")"
fi
if [ $scp_ours = 1 ]; then
	if as_user scp -O -q -p $USER_SSH_OPTS "$UL/ro444" \
	    "$TEST_USER@localhost:$UD/ro444O" 2>"$WORK/err"; then
		check "as $TEST_USER: scp -O -p of a 0444 file: same bytes" \
		    cmp -s "$UL/ro444" "$UD/ro444O"
		check "as $TEST_USER: scp -O -p: the user's, mode 0444" \
		    test "$(stat -c '%U %a' "$UD/ro444O")" = "$TEST_USER 444"
		want=$(sum256 "$UD/ro444O")
		wait_for scp_logged ro444O
		check "as $TEST_USER: scp -O 0444 upload: commit line sha256" \
		    test "$(logsha "$CLOG" ro444O)" = "$want"
		check "as $TEST_USER: scp -O 0444 upload: user.sha256" \
		    test "$(xattr256 "$UD/ro444O")" = "$want"
	else
		notok "as $TEST_USER: scp -O -p: $(cat "$WORK/err")"
	fi
fi
printf 'secret\n' >"$WORK/rootsecret"
printf 'public\n' >"$WORK/rootpublic"
chmod 600 "$WORK/rootsecret"
chmod 644 "$WORK/rootpublic"
as_user mkdir "$UD/raw"
as_user tid="$tid" SFTP_SERVER="$SFTP_SERVER" \
    STOCK_SFTP_SERVER="$STOCK_SFTP_SERVER" \
    "$PY" "$CASES" user "$UD/raw" "$WORK/rootsecret" "$WORK/rootpublic"

# 8. Raw packets, the server started directly: uploads (ours only) and
#    check-file (ours, and stock side by side).
"$PY" "$CASES" uploads "$WORK/raw"
"$PY" "$CASES" checkfile "$WORK/raw"

# The server's own complaints.
if [ $ours = 1 ]; then
	check "no digest errors in the server log" \
	    test -z "$(grep -e 'not stored as an extended attribute' \
	    -e 'check-file .*: read:' "$SLOG" "$CLOG")"
fi
exit 0
