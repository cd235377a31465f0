#!/bin/bash
# Hand-built SFTP packets over a pipe to "$SFTP_SERVER -e" (regress/
# sftp_raw.py): every request type side by side with stock's server
# (same statuses, attributes, names), malformed packets (answered with
# the right id and status, the session goes on; nothing dies of a
# signal), the INFO commit/abort log lines, and what this and other
# sessions see of an upload in flight.  The malformed-input and log
# expectations are ours only: against stock they print SKIP; against
# stock the in-flight checks fail (its partial file is visible).
tid=t-sftp-raw
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"

PY=/usr/bin/python3
RAW="$SRC/regress/sftp_raw.py"
[ -x "$SFTP_SERVER" ] || fail "no server at $SFTP_SERVER"
[ -x "$STOCK_SFTP_SERVER" ] || fail "no stock server at $STOCK_SFTP_SERVER"
export tid

for part in conformance malformed logs atomic; do
	"$PY" "$RAW" "$part" "$WORK/$part" ||
	    verbose "$part: failures above"
done
exit 0
