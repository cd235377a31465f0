#!/bin/bash
# The staging directories README.atomic recommends work for an ordinary
# user: a shared root-owned directory of mode 1733 (others may create but
# not list), and a per-user one through %u.  A new file is an anonymous
# O_TMPFILE there (the destination has no default ACL, no setgid bit); a
# replacement is renamed into place from a private directory there, and
# without O_TMPFILE the staged file itself lives in one - strace -y shows
# where - and each upload is published with nothing left behind.  Both programs: sftp-server with -t,
# and scp -t with ATOMIC_UPLOAD_TMPDIR (once scp is built).
tid=t-install-staging
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"
test_user_setup
command -v strace >/dev/null || { skip "$tid" "no strace"; exit 0; }

SHARED=$WORK/shared-stage
PERUSER=$WORK/peruser
DEST=$WORK/dest
mkdir -p "$SHARED" "$PERUSER/$TEST_USER" "$DEST"
chmod 1733 "$SHARED"
chown "$TEST_USER" "$PERUSER/$TEST_USER" "$DEST"
chmod 700 "$PERUSER/$TEST_USER"
head -c 200000 /dev/urandom > "$WORK/src"
chmod 644 "$WORK/src"
# strace runs as the user: its output goes where the user may write.
mkdir -p "$WORK/tr"
chown "$TEST_USER" "$WORK/tr"
TRACE=$WORK/tr/trace
TRACED=openat,renameat,renameat2
# LeakSanitizer cannot work under ptrace (a sanitizer build); ASan's other
# checks still report, to run-tests.sh's directory.
NOLEAK="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"

# staged_in TRACE DIR: the upload went through DIR: a staged file created
# O_CREAT|O_EXCL in a private directory below DIR, or a rename into place
# from one or from a temporary name in DIR.
staged_in() {
	grep -E "^[0-9]+ +openat\([0-9]+<$2/\.au-[A-Za-z0-9]+>, \"upload\", [^)]*O_CREAT\|O_EXCL[^)]*\) = [0-9]+" "$1" >/dev/null && return 0
	grep -E "^[0-9]+ +renameat2?\([0-9]+<$2/\.au-[A-Za-z0-9]+>, \"upload\"," "$1" >/dev/null && return 0
	grep -E "^[0-9]+ +renameat2?\([0-9]+<$2>, \"\.au-[A-Za-z0-9]{16}\"," "$1" >/dev/null && return 0
	verbose "nothing staged in $2: $(grep -E 'O_TMPFILE|O_EXCL|rename' "$1" | head -3)"
	return 1
}
# anonymous_in TRACE DIR: an O_TMPFILE made in DIR.
anonymous_in() {
	grep -E "^[0-9]+ +openat\([0-9]+<$2>, \"\.\", [^)]*O_TMPFILE[^)]*\) = [0-9]+" "$1" >/dev/null && return 0
	verbose "no O_TMPFILE in $2: $(grep -E 'O_TMPFILE|O_EXCL' "$1" | head -3)"
	return 1
}

# sftp_put TMPDIR-ARG NAME [ENV...]: upload $WORK/src as the user, traced.
sftp_put() {
	local t=$1 n=$2
	shift 2
	rm -f "$TRACE"
	printf 'put %s %s\n' "$WORK/src" "$DEST/$n" |
	    as_user env ASAN_OPTIONS="$NOLEAK" "$@" sftp -b - -D "strace -f -y -qq -e trace=$TRACED -o $TRACE $SFTP_SERVER -t $t -l INFO -e" \
	    >"$WORK/sftp.out" 2>&1
}

sftp_put "$SHARED" a
check "sftp-server -t DIR: a new file is an O_TMPFILE there" \
    anonymous_in "$TRACE" "$SHARED"
sftp_put "$SHARED" a
check "sftp-server -t DIR (1733, root's): a replacement is renamed from there" \
    staged_in "$TRACE" "$SHARED"
check "... published complete, no note about the directory" \
    eval 'cmp -s "$WORK/src" "$DEST/a" && ! grep -q "staging beside" "$WORK/sftp.out"'
sftp_put "$PERUSER/%u" a
check "sftp-server -t DIR/%u: renamed from the user's own directory" \
    staged_in "$TRACE" "$PERUSER/$TEST_USER"
check "... published complete" cmp -s "$WORK/src" "$DEST/a"
sftp_put "$SHARED" b ATOMIC_UPLOAD_TMPFILE=off
check "sftp-server -t DIR without O_TMPFILE: a new file is staged there" \
    staged_in "$TRACE" "$SHARED"
check "... published complete" cmp -s "$WORK/src" "$DEST/b"
check "nothing left in either staging directory" \
    test -z "$(find "$SHARED" "$PERUSER/$TEST_USER" -mindepth 1)"

if [ -x "$SCP" ]; then
	# One C record fed to the sink, as an scp -O client would send it.
	scp_put() {
		rm -f "$TRACE"
		{ printf 'C0644 %d %s\n' "$(stat -c %s "$WORK/src")" "$2"; cat "$WORK/src"; printf '\0'; } |
		    as_user env ATOMIC_UPLOAD_TMPDIR="$1" ASAN_OPTIONS="$NOLEAK" \
		    strace -f -y -qq -e trace=$TRACED -o "$TRACE" "$SCP" -t "$DEST" \
		    >"$WORK/scp.out" 2>&1
	}
	scp_put "$SHARED" c
	check "scp -t: a new file is an O_TMPFILE there" \
	    anonymous_in "$TRACE" "$SHARED"
	scp_put "$SHARED" c
	check "scp -t, ATOMIC_UPLOAD_TMPDIR=DIR (1733): a replacement is renamed from there" \
	    staged_in "$TRACE" "$SHARED"
	check "... published complete" cmp -s "$WORK/src" "$DEST/c"
	scp_put "$PERUSER/%u" c
	check "scp -t, ATOMIC_UPLOAD_TMPDIR=DIR/%u: renamed from the user's own" \
	    staged_in "$TRACE" "$PERUSER/$TEST_USER"
	check "... published complete, nothing left behind" \
	    eval 'cmp -s "$WORK/src" "$DEST/c" && test -z "$(find "$SHARED" "$PERUSER/$TEST_USER" -mindepth 1)"'
else
	skip "scp -t with ATOMIC_UPLOAD_TMPDIR" "no atomic-upload scp built"
fi
check "the destination directory holds only the final names" \
    test "$(ls -A "$DEST" | tr '\n' ' ')" = "a b c "
