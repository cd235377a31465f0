#!/bin/bash
# What one SFTP session sees of a name it is uploading (DESIGN.md 11,
# issue 12), in raw packets (regress/session_view.py): after OPEN
# WRITE|CREAT|TRUNC and some WRITEs, before CLOSE, the uploading session's
# STAT, LSTAT, FSTAT, OPEN+READ, second OPEN (shared; a truncating one
# truncates), SETSTAT, READDIR, REALPATH, RENAME, REMOVE, copy-data,
# pipelined WRITEs, two handles at different offsets and the order of
# CLOSEs must be answered as stock answers them ("as stock: ...", both
# sides printed on a mismatch).  A second session and the file system see
# the previous file or nothing until the last CLOSE ("other session (by
# design, not as stock): ..."): those checks fail against stock, which
# shows the partial file.
tid=t-session-view
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"

PY=/usr/bin/python3
[ -x "$SFTP_SERVER" ] || fail "no server at $SFTP_SERVER"
[ -x "$STOCK_SFTP_SERVER" ] || fail "no stock server at $STOCK_SFTP_SERVER"
export tid
umask 022
"$PY" "$SRC/regress/session_view.py" side "$WORK/side"
rc=$?
# 1: some checks failed (printed); anything else: the script broke.
[ "$rc" -le 1 ] || notok "session_view.py exited with status $rc"
exit 0
