#!/bin/bash
# The main job, on a fresh Debian 12 machine, as root:
#   build, start a throwaway sshd on 127.0.0.1 with our sftp-server and scp,
#   upload for real with sftp, scp (SFTP mode) and scp -O, kill some uploads
#   half-way, and let a watcher read the upload directory the whole time the
#   way a processing script would.  Then the same with the stock programs.
#
# The watcher checks every file it can see: each payload carries its own
# length and SHA-256 in a header, so a partial file cannot pass.
set -u
cd "$(dirname "$0")/.." || exit 1
top=$(pwd)

sh contrib/install-deps.sh || exit 1
if [ ! -x sftp-server ] || [ ! -x scp ]; then
	echo "== building"
	{ [ -x configure ] || autoreconf -fi; } >/dev/null 2>&1
	[ -f Makefile ] || ./configure >/dev/null || exit 1
	make -s >/dev/null || { make; exit 1; }
fi

export OBJ=$top SRC=$top
tid=demo
# shellcheck source=../regress/test-lib.sh
. regress/test-lib.sh >/dev/null

SIZE_MB=${DEMO_SIZE_MB:-48}
RATE_KBIT=${DEMO_RATE_KBIT:-100000}	# slow uploads so there is time to look
src="$WORK/src"
mkdir -p "$src"

# A self-describing payload: "AUDEMO <length> <sha256>\n" + random bytes.
mkpayload() {
	/usr/bin/python3 - "$1" "$2" <<'EOF'
import hashlib, os, sys
path, size = sys.argv[1], int(sys.argv[2])
body = os.urandom(size)
with open(path, "wb") as f:
    f.write(b"AUDEMO %d %s\n" % (size, hashlib.sha256(body).hexdigest().encode()))
    f.write(body)
EOF
}

# The watcher: polls the directory as fast as it can and reads every
# visible file; reports sightings of incomplete files.
watcher() {
	/usr/bin/python3 - "$1" "$2" <<'EOF'
import hashlib, os, sys, time
inbox, stopfile = sys.argv[1], sys.argv[2]
seen_ok, partial, reads = set(), {}, 0
while not os.path.exists(stopfile):
    try:
        names = os.listdir(inbox)
    except FileNotFoundError:
        names = []
    for n in names:
        if n.startswith("."):
            continue            # hidden names are never the product
        p = os.path.join(inbox, n)
        try:
            with open(p, "rb") as f:
                data = f.read()
        except (FileNotFoundError, IsADirectoryError):
            continue
        reads += 1
        ok = False
        nl = data.find(b"\n")
        if nl > 0:
            parts = data[:nl].split()
            if len(parts) == 3 and parts[0] == b"AUDEMO":
                body = data[nl + 1:]
                ok = (len(body) == int(parts[1]) and
                      hashlib.sha256(body).hexdigest().encode() == parts[2])
        if ok:
            seen_ok.add(n)
        else:
            partial[n] = partial.get(n, 0) + 1
    time.sleep(0.002)
print("WATCH complete_files=%d partial_sightings=%d reads=%d" %
      (len(seen_ok), sum(partial.values()), reads))
for n, c in sorted(partial.items()):
    print("WATCH partial %s seen %d times" % (n, c))
EOF
}

echo "== making payloads ($SIZE_MB MiB each)"
for i in 1 2 3; do mkpayload "$src/file$i.dat" $((SIZE_MB * 1048576)); done
mkpayload "$src/big.dat" $((SIZE_MB * 2 * 1048576))

# round LABEL SFTP_SERVER SCP: one full run; prints the watcher's verdict.
round() {
	local label=$1 server=$2 scpbin=$3 inbox stage stop wpid pid
	inbox="$WORK/$label/inbox"
	stage="$WORK/$label/staging"
	stop="$WORK/$label/stop"
	mkdir -p "$inbox" "$stage" "$OBJ/regress/work/bin"
	chmod 1777 "$stage"
	ln -sf "$scpbin" "$OBJ/regress/work/bin/scp"
	SFTP_SERVER=$server
	if [ "$label" = ours ]; then
		SFTP_SERVER_ARGS="-e -l INFO -t $stage 2>>$WORK/$label/server.log"
	else
		SFTP_SERVER_ARGS="-e -l INFO 2>>$WORK/$label/server.log"
	fi
	start_sshd >/dev/null
	echo "== $label: sshd on 127.0.0.1:$SSHD_PORT, Subsystem sftp $SFTP_SERVER ${SFTP_SERVER_ARGS% 2>>*}, scp -> $scpbin"

	watcher "$inbox" "$stop" > "$WORK/$label/watch.out" &
	wpid=$!

	echo "   sftp: 3 files, complete"
	printf 'put %s/file1.dat\nput %s/file2.dat\nput %s/file3.dat\n' "$src" "$src" "$src" |
	    sftp $SSH_OPTS -l "$RATE_KBIT" -b - "root@localhost:$inbox" >/dev/null 2>>"$WORK/$label/client.log"
	echo "   sftp: a big file, client killed half-way"
	echo "put $src/big.dat sftp-killed.dat" |
	    sftp $SSH_OPTS -l "$RATE_KBIT" -b - "root@localhost:$inbox" >/dev/null 2>>"$WORK/$label/client.log" &
	pid=$!
	sleep 3; kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
	sleep 1
	echo "   sftp: reput continues the killed upload where it stopped"
	echo "reput $src/big.dat sftp-killed.dat" |
	    sftp $SSH_OPTS -l "$RATE_KBIT" -b - "root@localhost:$inbox" >/dev/null 2>>"$WORK/$label/client.log"
	echo "   sftp: replacing file1.dat with a new version"
	mkpayload "$WORK/$label/new1.dat" $((SIZE_MB * 1048576))
	echo "put $WORK/$label/new1.dat file1.dat" |
	    sftp $SSH_OPTS -l "$RATE_KBIT" -b - "root@localhost:$inbox" >/dev/null 2>>"$WORK/$label/client.log"
	echo "   scp (SFTP mode): one file"
	scp $SSH_OPTS -l "$RATE_KBIT" "$src/file2.dat" "root@localhost:$inbox/scp-sftp.dat" >/dev/null 2>>"$WORK/$label/client.log"
	echo "   scp -O: one file, then a big one killed half-way"
	scp -O $SSH_OPTS -l "$RATE_KBIT" "$src/file3.dat" "root@localhost:$inbox/scp-legacy.dat" >/dev/null 2>>"$WORK/$label/client.log"
	scp -O $SSH_OPTS -l "$RATE_KBIT" "$src/big.dat" "root@localhost:$inbox/scp-killed.dat" >/dev/null 2>>"$WORK/$label/client.log" &
	pid=$!
	sleep 3; kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
	sleep 1
	touch "$stop"
	wait "$wpid"
	kill "$SSHD_PID" 2>/dev/null; wait "$SSHD_PID" 2>/dev/null

	sed 's/^/   /' "$WORK/$label/watch.out"
	echo "   upload directory afterwards:"
	ls -la "$inbox" | tail -n +2 | sed 's/^/     /'
	echo "   staging directory afterwards: $(ls -A "$stage" | wc -l) entries"
	if [ "$label" = ours ]; then
		echo "   commit/abort lines from our server's log:"
		grep -aE '^(commit|abort|partial|resume) "' "$WORK/$label/server.log" | tr -d '\r' | sed 's/^/     /' | head -20
	fi
}

ours_scp="$top/scp"
[ -x "$ours_scp" ] || ours_scp=/usr/bin/scp
round ours "$top/sftp-server" "$ours_scp"
round stock "$STOCK_SFTP_SERVER" /usr/bin/scp

ours=$(grep -o 'partial_sightings=[0-9]*' "$WORK/ours/watch.out")
stock=$(grep -o 'partial_sightings=[0-9]*' "$WORK/stock/watch.out")
echo
echo "== verdict"
echo "   atomic-upload: $ours; leftovers in upload dir: $(ls -A "$WORK/ours/inbox" | grep -c '^\.')"
echo "   stock OpenSSH: $stock; killed uploads left behind: $(ls "$WORK/stock/inbox" | grep -c scp-killed)"
for label in ours stock; do
	if cmp -s "$src/big.dat" "$WORK/$label/inbox/sftp-killed.dat"; then
		echo "   $label: the killed sftp upload was resumed with reput, complete"
	else
		echo "   $label: the killed sftp upload was NOT completed by reput"
	fi
done
[ "$ours" = "partial_sightings=0" ] &&
    cmp -s "$src/big.dat" "$WORK/ours/inbox/sftp-killed.dat"
