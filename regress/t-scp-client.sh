#!/bin/bash
# Our scp as the user's CLIENT (legacy protocol): local-to-local copies,
# uploads and downloads through a real sshd on 127.0.0.1 whose sessions
# run our scp -t/-f, remote-to-remote copies relayed through this host,
# and -S programs that are not ssh: a local "remote" shell, and hostile
# "servers" sending crafted records that must be refused with nothing
# created outside the target.  A killed client, or a source dying
# mid-file, must publish nothing and leave no debris.
# Every wait is bounded: a hang is a failure, not a stuck test run.
tid=t-scp-client
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"

WATCH="$SRC/regress/helpers/watch.py"
MKPAYLOAD="$SRC/regress/helpers/mkpayload.py"
[ -x "$SCP" ] || fail "no scp at $SCP"
STOCK_SCP=/usr/bin/scp
"$STOCK_SCP" -O 2>&1 | grep -q 'unknown option' && STOCK_SCP=

# Our client, bounded in time (124 from timeout means it hung).
cscp() { timeout -k 5 60 "$SCP" -q "$@"; }
# In the background, it is run directly (so that a signal sent to $! is
# sent to it), and reap_bg PID gives its exit status, or 124 (after a
# SIGKILL) when it is still running 15 s later.
reap_bg() {
	local i
	for i in $(seq 1 150); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$1" 2>/dev/null; then
		kill -KILL "$1"
		wait "$1" 2>/dev/null
		return 124
	fi
	wait "$1"
}

L="$WORK/loc"		# sources
D="$WORK/dst"		# targets
H="$WORK/helpers"
BIN="$OBJ/regress/work/bin"
mkdir -p "$H" "$BIN"
reset() {
	rm -rf "$L" "$D"
	mkdir -p "$L" "$D"
}
listing() { (cd "$1" && find . -printf '%p %y %s %m %T@\n' | sed 's/\.[0-9]*$//' | LC_ALL=C sort); }
# No hidden staging debris and no stray names: DIR holds exactly NAME...
only() { entries "$@"; }

# Local to local ---------------------------------------------------------
reset
printf 'alpha\n' >"$L/a"
printf 'beta\n' >"$L/b"
: >"$L/empty"
cscp "$L/a" "$D/"
check "local: file into a directory" cmp -s "$L/a" "$D/a"
cscp "$L/a" "$D/renamed"
check "local: file to a new name" cmp -s "$L/a" "$D/renamed"
cscp "$L/empty" "$D/"
check "local: empty file" test -f "$D/empty" -a ! -s "$D/empty"
printf 'old content\n' >"$D/b"
chmod 600 "$D/b"
cscp "$L/b" "$D/b"
check "local: existing file replaced" cmp -s "$L/b" "$D/b"
check "local: existing file keeps its mode without -p" \
    test "$(stat -c %a "$D/b")" = 600
check "local: nothing else in the target" only "$D" a renamed empty b

reset
mkdir -p "$L/tree/sub/deeper" "$L/tree/emptydir"
printf 'one\n' >"$L/tree/one"
printf 'two\n' >"$L/tree/sub/two"
head -c 300000 /dev/urandom >"$L/tree/sub/deeper/three"
chmod 640 "$L/tree/one"
chmod 750 "$L/tree/sub"
chmod 4711 "$L/tree/sub/two"
touch -d @1000000000 "$L/tree/one" "$L/tree/sub/deeper/three"
touch -d @1100000000 "$L/tree/sub/deeper" "$L/tree/sub" "$L/tree"
cscp -r -p "$L/tree" "$D/"
rc=$?
check "local -r -p: exit status 0" test $rc = 0
check "local -r -p: same tree, sizes, modes, times" \
    test "$(listing "$L/tree")" = "$(listing "$D/tree")"
check "local -r -p: same content" diff -r "$L/tree" "$D/tree"
(umask 022; cscp -r "$L/tree" "$D/copy")
check "local -r to a new name: the tree is created under it" \
    cmp -s "$L/tree/sub/deeper/three" "$D/copy/sub/deeper/three"
check "local -r without -p: set-id bits dropped, umask applied" \
    test "$(stat -c %a "$D/copy/sub/two")" = 711
check "local -r without -p: times not kept" \
    test "$(stat -c %Y "$D/copy/one")" != 1000000000
cscp "$L/tree" "$D/norec" 2>"$WORK/err"
check "local: a directory without -r is refused" \
    test $? = 1 -a ! -e "$D/norec"
check "local: ... saying why" grep -q 'not a regular file' "$WORK/err"

reset
printf 'a\n' >"$L/a"
printf 'b\n' >"$L/b"
cscp "$L/a" "$L/b" "$D/nodir" 2>"$WORK/err"
check "local: several sources into a missing directory: exit 1" test $? = 1
check "local: ... nothing created" only "$D"
cscp "$L/nothing" "$L/a" "$D/" 2>"$WORK/err"
rc=$?
check "local: a missing source is an error (exit 1) ..." test $rc = 1
check "local: ... with the reason" grep -q 'nothing: No such file' "$WORK/err"
check "local: ... and the other sources are copied" cmp -s "$L/a" "$D/a"

# Atomic: the target shows its old content until the new one is whole.
reset
python3 "$MKPAYLOAD" "$L/slow" 6M 7 || fail "mkpayload"
python3 "$MKPAYLOAD" "$D/slow" 1M 8 || fail "mkpayload"
cp "$D/slow" "$WORK/old"
python3 "$WATCH" --all --ready "$WORK/ready" --stop "$WORK/stop" "$D" \
    >"$WORK/watch.out" 2>&1 &
wpid=$!
on_exit "kill $wpid"
wait_for test -e "$WORK/ready" || fail "watcher did not start"
# -l (Kbit/s) makes it last about 3 s.
"$SCP" -q -l 16000 "$L/slow" "$D/slow" &
cpid=$!
changed_early=0
for i in $(seq 1 10); do
	sleep 0.1
	cmp -s "$D/slow" "$WORK/old" || changed_early=1
done
reap_bg "$cpid"
rc=$?
check "local -l: the old content stays until the copy is complete" \
    test $changed_early = 0
check "local -l: then the new content, whole" test $rc = 0 -a \
    "$(cmp "$L/slow" "$D/slow" 2>&1)" = ""
# Killed mid-file: nothing published, no debris.
rm -f "$D/slow"
"$SCP" -q -l 16000 "$L/slow" "$D/" &
cpid=$!
sleep 0.7
kill -KILL "$cpid"
reap_bg "$cpid" 2>/dev/null
sleep 0.3
check "local, client SIGKILLed mid-file: nothing published, no debris" \
    only "$D"
"$SCP" -q -l 16000 "$L/slow" "$D/" &
cpid=$!
sleep 0.7
kill -TERM "$cpid"
reap_bg "$cpid"
rc=$?
check "local, client SIGTERMed mid-file: exit 1, as stock's" test $rc = 1
check "local, client SIGTERMed: nothing published, no debris" only "$D"
touch "$WORK/stop"
wait "$wpid"
wrc=$?
sed 's/^/# watch: /' "$WORK/watch.out" | grep -v '^# watch: #' | head -5
check "local: the watcher never saw a partial file" test $wrc = 0

# -l paces a local copy once: the receiving side sleeps, the sending
# child does not (both did, and the copy took twice as long).
if command -v strace >/dev/null; then
	reset
	head -c 600000 /dev/urandom >"$L/paced"
	mkdir -p "$WORK/st"
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
	    strace -f -ff -qq -e trace=nanosleep,clock_nanosleep -o "$WORK/st/p" \
	    "$SCP" -q -l 8000 "$L/paced" "$D/"
	check "local -l: copied" cmp -s "$L/paced" "$D/paced"
	check "local -l: one process paces the copy ($(grep -l sleep "$WORK/st"/p.* | wc -l))" \
	    test "$(grep -l sleep "$WORK/st"/p.* | wc -l)" = 1
	rm -rf "$WORK/st"
else
	skip "local -l paced once" "no strace"
fi

# -S programs that are not ssh --------------------------------------------
# localsh: runs the "remote" command here, host ignored; records its
# argument list and the pipes and sockets it holds beyond 0, 1 and 2.
ln -sf "$SCP" "$BIN/scp"
on_exit "rm -f '$BIN/scp'"
on_exit "rm -f '$BIN/scp'"
cat >"$H/localsh" <<EOF
#!/bin/sh
for a; do last=\$a; done
printf '%s\n' "\$*" >>"$WORK/localsh.args"
# ls itself, not this shell: its saved descriptors are close-on-exec.
ls -l /proc/self/fd >>"$WORK/localsh.fds"
PATH="$BIN:\$PATH" exec sh -c "\$last"
EOF
chmod +x "$H/localsh"
lscp() { rm -f "$WORK/localsh.args" "$WORK/localsh.fds"; cscp -S "$H/localsh" "$@"; }
# The pipes and sockets this shell already had (the harness's) are
# inherited by everything; any other one a program holds beyond its
# stdin and stdout leaked from us.
ls -l /proc/$$/fd >"$WORK/fds.base"
pipes() { awk '$NF ~ /^(pipe|socket):/ && $(NF-2) !~ /^[012]$/ { print $NF }' "$@"; }
no_leaked_fds() {
	local leaked
	leaked=$(pipes "$WORK/localsh.fds" | grep -vxF -f <(pipes "$WORK/fds.base"))
	[ -z "$leaked" ] && return 0
	verbose "leaked into the -S program: $(echo $leaked)"
	return 1
}

reset
printf 'alpha\n' >"$L/a"
printf 'beta\n' >"$L/b"
printf 'gamma\n' >"$L/c.txt"
printf 'delta\n' >"$L/d.txt"
lscp "$L/a" "$L/b" h:"$D/"
check "-S: upload of two files" test $? = 0 -a "$(cat "$D/a" "$D/b")" = \
    "$(printf 'alpha\nbeta')"
check "-S: the program is given ssh's options, -- host and the command" \
    grep -q -- "-oRequestTTY=no .*-- h scp -d -t '$D/'\$" "$WORK/localsh.args"
lscp -P 2222 -o Foo=bar "$L/a" user@h:"$D/"
check "-S: -P port and -o options and the user go to the program" \
    grep -q -- "-o Foo=bar .*-p 2222 -l user -- h " "$WORK/localsh.args"
lscp "$L/a" 'h:~/in/x y' 2>/dev/null
check "-S: a leading ~ in a target is left to the remote shell, the rest quoted" \
    grep -q -- " -- h scp -t ~/'in/x y'\$" "$WORK/localsh.args"
mkdir -p "$WORK/home"
HOME="$WORK/home" lscp "$L/a" 'h:~/x y'
check "-S: upload to ~/NAME lands in the remote home" cmp -s "$L/a" "$WORK/home/x y"
rm -f "$D/x y"
HOME="$WORK/home" lscp 'h:~/x y' "$D/"
check "-S: download of ~/NAME from the remote home" cmp -s "$L/a" "$D/x y"
rm -rf "$WORK/home" "$D/x y"
lscp "$L/a" 'h:~nobody/in' 2>/dev/null
check "-S: ... and a leading ~user" \
    grep -q -- " -- h scp -t ~nobody/'in'\$" "$WORK/localsh.args"
lscp "$L/a" 'h:a~b/$HOME' 2>/dev/null
check "-S: a ~ elsewhere and \$ stay quoted" \
    grep -q -- " -- h scp -t 'a~b/\$HOME'\$" "$WORK/localsh.args"
rm -rf "$D"/*
lscp h:"$L/a" "$D/"
check "-S: download" cmp -s "$L/a" "$D/a"
lscp h:"$L/*.txt" "$D/"
check "-S: download of a wildcard the remote shell expands" \
    only "$D" a c.txt d.txt
printf 'back\n' >"$L/back\\slash"
printf 'quote\n' >"$L/it's \"q\""
lscp h:"$L/back\\slash" h:"$L/it's \"q\"" "$D/"
check "-S: download of names with a backslash and quotes" \
    test "$(cat "$D/back\\slash" "$D/it's \"q\"")" = "$(printf 'back\nquote')"
lscp h:"$L/a" h:"$L/b" "$D/f" 2>"$WORK/err"
check "-S: several downloads into a non-directory: exit 1" test $? = 1
check "-S: ... nothing created" test ! -e "$D/f"
lscp h:"$L/nothing" "$D/" 2>"$WORK/err"
check "-S: missing remote file: exit 1 with the source's message" \
    test $? = 1 -a -n "$(grep 'nothing: No such file' "$WORK/err")"

# Remote to remote through the relay, both ends -S programs.
reset
printf 'alpha\n' >"$L/a"
mkdir -p "$L/tree/sub"
printf 'one\n' >"$L/tree/one"
head -c 200000 /dev/urandom >"$L/tree/sub/two"
lscp h1:"$L/a" h2:"$D/"
rc=$?
check "-S remote to remote: exit status 0 (124: it hung)" test $rc = 0
check "-S remote to remote: the file arrived" cmp -s "$L/a" "$D/a"
check "-S remote to remote: two programs ran" \
    test "$(wc -l <"$WORK/localsh.args")" = 2
check "-S remote to remote: no program inherited the other's pipes" \
    no_leaked_fds
lscp -r -p h1:"$L/tree" h2:"$D/"
check "-S remote to remote -r -p: same tree" \
    test "$(listing "$L/tree")" = "$(listing "$D/tree")"
lscp h1:"$L/a" h2:"$D/missing/" 2>"$WORK/err"
check "-S remote to remote: the destination's error fails the copy" \
    test $? = 1
check "-S remote to remote: ... and its message is shown" \
    grep -q "missing/" "$WORK/err"
lscp h1:"$L/nothing" h2:"$D/" 2>"$WORK/err"
check "-S remote to remote: a missing source fails the copy" test $? = 1

# A local source and a local sink through the program: its descriptors.
lscp h:"$L/a" "$D/again"
check "-S download: the program holds no pipe but its stdin/stdout" \
    no_leaked_fds

# Hostile servers ---------------------------------------------------------
# evil: waits for the client's first \0, prints $EVIL (printf format),
# then either waits for EOF on stdin or ($EVIL_HANG) never exits.
cat >"$H/evil" <<EOF
#!/bin/sh
echo \$\$ >"$WORK/evil.pid"
head -c 1 >/dev/null
printf "\$EVIL"
[ -n "\${EVIL_DIE:-}" ] && kill -KILL \$\$
[ -n "\${EVIL_HANG:-}" ] && exec sleep 60 <&- >&-
exec cat >/dev/null
EOF
chmod +x "$H/evil"
OUT="$WORK/outside"
# evil_case DESC RECORDS [scp options]: the client must refuse, and
# nothing may appear in the target or beside it ($ALLOW: the one name
# that may, what the server sent before the offending record).
ALLOW=
evil_case() {
	local desc=$1 rec=$2 rc
	shift 2
	rm -rf "$OUT"
	mkdir -p "$OUT/d"
	EVIL="$rec" cscp -S "$H/evil" "$@" h:want "$OUT/d/" 2>"$WORK/err"
	rc=$?
	if [ $rc = 1 ] && only "$OUT/d" $ALLOW && only "$OUT" d &&
	    grep -q . "$WORK/err"; then
		ok "hostile server, $desc: refused (exit 1), ${ALLOW:-nothing} created"
	else
		notok "hostile server, $desc: exit $rc, $(ls -A "$OUT" "$OUT/d" | tr '\n' ' ')"
	fi
	if [ -n "$STOCK_SCP" ]; then
		rm -rf "$OUT"
		mkdir -p "$OUT/d"
		EVIL="$rec" timeout 3 "$STOCK_SCP" -O -q -S "$H/evil" "$@" \
		    h:want "$OUT/d/" 2>/dev/null
		verbose "stock scp -O, $desc: exit $? ($(ls -A "$OUT/d" | tr '\n' ' '))"
	fi
}
evil_case "name with a slash" 'C0644 3 sub/want\nabc\0'
evil_case "name ../want" 'C0644 3 ../want\nabc\0'
evil_case "name .." 'C0644 3 ..\nabc\0'
evil_case "name ." 'C0644 3 .\nabc\0'
evil_case "empty name" 'C0644 3 \nabc\0'
evil_case "absolute name" 'C0644 3 /tmp/want\nabc\0'
evil_case "a name other than requested" 'C0644 3 other\nabc\0'
ALLOW=want
evil_case "the requested name, then another" \
    'C0644 3 want\nabc\0C0644 3 other\nabc\0'
ALLOW=
evil_case "a D record without -r" 'D0755 0 want\nC0644 3 x\nabc\0E\n'
ALLOW=want
evil_case "-r: a .. inside the directory" \
    'D0755 0 want\nC0644 3 ..\nabc\0E\n' -r
check "-r: ... and nothing in the directory it entered" only "$OUT/d/want"
ALLOW=
evil_case "-r: a directory other than requested" \
    'D0755 0 other\nC0644 3 x\nabc\0E\n' -r
evil_case "negative size" 'C0644 -3 want\nabc\0'
evil_case "size past 2^63" 'C0644 99999999999999999999 want\nabc\0'
evil_case "huge size, then EOF" 'C0644 9223372036854775807 want\nabc'
evil_case "short data, then EOF" 'C0644 100 want\nabc'
evil_case "all data, then EOF before the status" 'C0644 3 want\nabc'
evil_case "all data, then an error status" 'C0644 3 want\nabc\1scp: oops\n'
evil_case "bad mode" 'C0999 3 want\nabc\0'
evil_case "NUL in the name" 'C0644 3 wa\0nt\nabc\0'
evil_case "garbage record" 'Xfoo\n'
# The same with a server that never exits: the client must not wait
# for it for ever (stock's exits at once).
rm -rf "$OUT"; mkdir -p "$OUT/d"
t0=$(date +%s)
EVIL='C0644 3 ../want\nabc\0' EVIL_HANG=1 \
    cscp -S "$H/evil" h:want "$OUT/d/" 2>/dev/null
rc=$?
check "hostile server that never exits: client exits 1 within 10 s" \
    test $rc = 1 -a $(( $(date +%s) - t0 )) -lt 10
check "hostile server that never exits: it is gone" \
    wait_for sh -c "! kill -0 $(cat "$WORK/evil.pid")"
kill "$(cat "$WORK/evil.pid")" 2>/dev/null
# A source killed mid-file.
rm -rf "$OUT"; mkdir -p "$OUT/d"
EVIL='C0644 1000000 want\nabcdef' EVIL_DIE=1 \
    cscp -S "$H/evil" h:want "$OUT/d/" 2>/dev/null
check "source SIGKILLed mid-file: exit 1, nothing published, no debris" \
    test $? = 1 -a -z "$(ls -A "$OUT/d")"
# The client SIGTERMed while the server stalls mid-file: stock kills its
# ssh and exits 1 at once.
rm -rf "$OUT" "$WORK/evil.pid"; mkdir -p "$OUT/d"
EVIL='C0644 1000000 want\nabcdef' EVIL_HANG=1 \
    "$SCP" -q -S "$H/evil" h:want "$OUT/d/" 2>/dev/null &
cpid=$!
wait_for test -s "$WORK/evil.pid"
sleep 0.5
t0=$(date +%s)
kill -TERM "$cpid"
reap_bg "$cpid"
rc=$?
check "client SIGTERMed mid-file: exit 1 within 5 s" \
    test $rc = 1 -a $(( $(date +%s) - t0 )) -lt 5
check "client SIGTERMed mid-file: its server is gone" \
    wait_for sh -c "! kill -0 $(cat "$WORK/evil.pid")"
check "client SIGTERMed mid-file: nothing published, no debris" \
    only "$OUT/d"
kill "$(cat "$WORK/evil.pid")" 2>/dev/null

# Through a real sshd ------------------------------------------------------
start_sshd
# A config without the port: -P must provide it.
grep -v '^[[:space:]]*Port ' "$WORK/sshd/ssh_config" >"$WORK/ssh_config_noport"
OPTS="-F $WORK/ssh_config_noport -P $SSHD_PORT"
check "the session's scp is ours" \
    test "$(ssh $SSH_OPTS root@localhost 'command -v scp')" = "$BIN/scp"

reset
printf 'alpha\n' >"$L/a"
printf 'with space\n' >"$L/sp ace"
mkdir -p "$L/tree/sub"
printf 'one\n' >"$L/tree/one"
head -c 500000 /dev/urandom >"$L/tree/sub/two"
chmod 600 "$L/tree/one"
touch -d @1000000000 "$L/tree/one" "$L/tree/sub"
mkdir "$D/up" "$D/down" "$D/r2r"
cscp $OPTS "$L/a" "$L/sp ace" root@localhost:"$D/up/"
check "sshd upload (-P, -F): exit 0" test $? = 0
check "sshd upload: files arrived" \
    test "$(cat "$D/up/a" "$D/up/sp ace")" = "$(cat "$L/a" "$L/sp ace")"
cscp $OPTS -r -p "$L/tree" root@localhost:"$D/up/"
check "sshd upload -r -p: same tree" \
    test "$(listing "$L/tree")" = "$(listing "$D/up/tree")"
cscp $OPTS root@localhost:"$D/up/a" root@localhost:"$D/up/sp ace" "$D/down/"
check "sshd download: exit 0" test $? = 0
check "sshd download: files arrived" only "$D/down" a "sp ace"
cscp $OPTS -r -p root@localhost:"$D/up/tree" "$D/down/"
check "sshd download -r -p: same tree" \
    test "$(listing "$L/tree")" = "$(listing "$D/down/tree")"
cscp -P "$SSHD_PORT" -F /dev/null -o BatchMode=yes -o ConnectTimeout=5 \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o IdentityFile=/nonexistent root@localhost:"$D/up/a" "$D/down/x" \
    2>/dev/null
check "sshd: authentication failure: exit 1, nothing created" \
    test $? = 1 -a ! -e "$D/down/x"

# -S with a wrapper that adds the options (it is ssh after all).
printf '#!/bin/sh\nexec ssh %s "$@"\n' "$SSH_OPTS" >"$H/sshwrap"
chmod +x "$H/sshwrap"
cscp -S "$H/sshwrap" "$L/a" root@localhost:"$D/up/viawrap"
check "sshd upload through an -S wrapper" cmp -s "$L/a" "$D/up/viawrap"

# Remote to remote: both ends sessions of the sshd, relayed here.
cscp $OPTS root@localhost:"$D/up/a" root@localhost:"$D/r2r/"
rc=$?
check "sshd remote to remote: exit 0 (124: it hung)" test $rc = 0
check "sshd remote to remote: the file arrived" cmp -s "$L/a" "$D/r2r/a"
cscp $OPTS -r -p root@localhost:"$D/up/tree" root@localhost:"$D/r2r/"
check "sshd remote to remote -r -p: same tree" \
    test "$(listing "$L/tree")" = "$(listing "$D/r2r/tree")"
check "sshd remote to remote: no debris" only "$D/r2r" a tree
wait_for sessions_gone
check "sshd: no session left behind" sessions_gone

# A download killed mid-file: nothing published locally.
python3 "$MKPAYLOAD" "$D/up/big" 4M 3 || fail "mkpayload"
mkdir "$D/killed"
"$SCP" -q $OPTS -l 16000 root@localhost:"$D/up/big" "$D/killed/" &
cpid=$!
sleep 1
kill -KILL "$cpid"
reap_bg "$cpid" 2>/dev/null
sleep 0.3
check "sshd download, client SIGKILLed: nothing published, no debris" \
    only "$D/killed"
"$SCP" -q $OPTS -l 16000 root@localhost:"$D/up/big" "$D/killed/" &
cpid=$!
sleep 1
kill -TERM "$cpid"
reap_bg "$cpid"
rc=$?
check "sshd download, client SIGTERMed: exit 1" test $rc = 1
check "sshd download, client SIGTERMed: nothing published, no debris" \
    only "$D/killed"
check "sshd: the killed clients' sessions end" wait_for sessions_gone
exit 0
