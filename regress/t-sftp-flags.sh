#!/bin/bash
# The command line, driven by OpenSSH's sftp over a pipe (sftp -D).
# Stock's flags (-R, -p/-P, -Q, -d, -u, -l/-e/-f, usage errors) run side
# by side with stock's /usr/lib/openssh/sftp-server: the same batch from
# the same starting state must give the same client output, the same exit
# status and the same files.  Our own flags (-t, -s, -n, -m) and their
# environment variables are checked through what the server does: strace
# shows where the staged file is created and what is flushed, inodes show
# whether a file was replaced or written in place, and the INFO log says
# so.  Ours-only parts print SKIP when SFTP_SERVER is stock's.
tid=t-sftp-flags
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"

[ -x "$STOCK_SFTP_SERVER" ] || fail "no stock server at $STOCK_SFTP_SERVER"
# Sessions whose -d fails stay in the directory they started in: here.
cd "$WORK" || fail "cd $WORK"
ours=0
[ "$SFTP_SERVER" != "$STOCK_SFTP_SERVER" ] && ours=1
D="$WORK/d"
UP="$WORK/up"
printf 'uploaded content\n' >"$UP"
chmod 644 "$UP"

reset_d() {
	rm -rf "$D"
	mkdir -p "$D/sub"
	printf 'existing\n' >"$D/f"
	chmod 644 "$D/f"
	rm -f "$WORK/got"
}

# state: what a reader of $D sees (names, types, sizes, modes, f's text).
state() {
	(cd "$D" && find . -printf '%p %y %s %m\n' | sort && cat f 2>/dev/null)
}

# both FLAGS...: run the batch $WORK/batch with ours and with stock, each
# from a fresh $D, started as "SERVER FLAGS..."; the client's output with
# its exit status, and then the state, land in $WORK/{out,state}.{ours,stock}.
both() {
	local who srv
	for who in ours stock; do
		srv=$SFTP_SERVER
		[ $who = stock ] && srv=$STOCK_SFTP_SERVER
		reset_d
		sftp -b "$WORK/batch" -D "$srv $*" >"$WORK/out.$who" 2>&1
		echo "exit $?" >>"$WORK/out.$who"
		# df's free counts move between the two runs.
		sed -i 's/^ *[0-9][0-9 %]*$/ (df figures)/' "$WORK/out.$who"
		state >"$WORK/state.$who"
	done
}

# same_as_stock DESC: the last "both" gave the same output and state.
same_as_stock() {
	if cmp -s "$WORK/out.ours" "$WORK/out.stock" &&
	    cmp -s "$WORK/state.ours" "$WORK/state.stock"; then
		ok "$1: same as stock"
	else
		notok "$1: differs from stock"
		diff -u "$WORK/out.stock" "$WORK/out.ours" | sed 's/^/#   /'
		diff -u "$WORK/state.stock" "$WORK/state.ours" | sed 's/^/#   /'
	fi
}

# The batch: every kind of change, each allowed to fail ("-"), then reads.
WRITES="-put $UP $D/new
-put $UP $D/f
-reput $UP $D/f
-mkdir $D/m
-rmdir $D/sub
-rename $D/f $D/g
-ln -s f $D/s
-ln $D/f $D/h
-chmod 600 $D/f
-chgrp 0 $D/f
-rm $D/f
-df $D
-get $D/f $WORK/got
-ls $D"
printf '%s\n' "$WRITES" >"$WORK/batch"

# 1. Read-only mode.
both -R
same_as_stock "-R: every write refused, reads served"
check "-R: nothing changed" test "$(state)" = "$(reset_d; state)"
grep -q 'Permission denied' "$WORK/out.ours" ||
    notok "-R: no Permission denied in the client output"

# 2. Allow and deny lists.
both -P write,mkdir,remove
same_as_stock "-P write,mkdir,remove"
both -p open,close,read,stat,lstat,fstat,realpath,opendir,readdir
same_as_stock "-p (reads only)"
both -P setstat,fsetstat -p open,close,write,read,stat,lstat,fstat,realpath,setstat,mkdir
same_as_stock "-P and -p together (deny wins)"
# Without posix-rename sftp falls back to the version 3 RENAME.
printf 'rename %s/f %s/g\n-rename %s/g %s/sub\n' "$D" "$D" "$D" "$D" >"$WORK/batch"
both -P posix-rename
same_as_stock "-P posix-rename: plain rename, never replacing"

# 3. -Q and usage errors: same output and exit status.
#    Ours lists its three check-file requests after stock's list.
for q in requests REQUESTS; do
	a=$("$SFTP_SERVER" -Q $q 2>&1; echo "exit $?")
	b=$("$STOCK_SFTP_SERVER" -Q $q 2>&1; echo "exit $?")
	extra=$(printf '%s\n' "$a" | grep '^check-file' | tr '\n' ' ')
	case $extra in
	''|'check-file-name check-file-handle check-file ') ;;
	*) extra="unexpected: $extra" ;;
	esac
	a=$(printf '%s\n' "$a" | grep -v '^check-file')
	case $extra in unexpected*) a="$a (and $extra)" ;; esac
	check "-Q $q: same list and status as stock (ours adds: ${extra:-nothing})" \
	    test "$a" = "$b"
done
# Every command line below, run by ours and by stock with no client
# (stdin /dev/null): the same exit status, standard output, standard
# error and syslog lines (priority, tag, text).  Bad values are refused
# the way stock refuses them: some while the options are read (logged to
# syslog even with -e, since logging is not set up yet; before -Q), a
# bad -l or -f once they are all read.  With root and unshare -m,
# regress/helpers/syslog_catch.py owns /dev/log in a private mount
# namespace; otherwise only the exit status and output are compared.
# Both servers run as "sftp-server" (symlinks): the tag is the name.
SYSLOG_CATCH="$SRC/regress/helpers/syslog_catch.py"
mkdir -p "$WORK/cmp-ours" "$WORK/cmp-stock"
ln -sf "$SFTP_SERVER" "$WORK/cmp-ours/sftp-server"
ln -sf "$STOCK_SFTP_SERVER" "$WORK/cmp-stock/sftp-server"
catch_syslog=0
if [ "$(id -u)" = 0 ] && unshare -m --propagation private true 2>/dev/null; then
	catch_syslog=1
else
	skip "command lines: syslog lines compared" "needs root and unshare -m"
fi
# run_cmdline WHO ARGS...: what "sftp-server ARGS..." (ours or stock) did.
run_cmdline() {
	local who=$1
	shift
	if [ $catch_syslog = 1 ]; then
		unshare -m --propagation private sh -c '
		    mount -t tmpfs none /dev && mknod -m 666 /dev/null c 1 3 &&
		    exec "$@"' - /usr/bin/python3 "$SYSLOG_CATCH" \
		    "$WORK/cmp-$who/sftp-server" "$@"
	else
		/usr/bin/python3 "$SYSLOG_CATCH" "$WORK/cmp-$who/sftp-server" "$@"
	fi
}
# cmdline_as_stock ARGS...: same exit status, output and syslog lines.
# -Q requests lists our three check-file requests after stock's (issue 15):
# checked on their own below, left out of the comparison.
cmdline_as_stock() {
	run_cmdline ours "$@" 2>&1 | grep -v '^stdout: check-file' >"$WORK/cmd.ours"
	run_cmdline stock "$@" >"$WORK/cmd.stock" 2>&1
	if cmp -s "$WORK/cmd.ours" "$WORK/cmd.stock"; then
		ok "$(printf '%.60s' "$*"): same as stock ($(grep -v '^stdout' "$WORK/cmd.ours" | tr '\n' ' ' | cut -c1-110))"
	else
		notok "$(printf '%.60s' "$*"): differs from stock"
		diff -u "$WORK/cmd.stock" "$WORK/cmd.ours" | cut -c1-200 | sed 's/^/#   /'
	fi
}
# ~/NAME: PATH_MAX - 1 characters once expanded is accepted, one more
# is refused.  The same names show how long a log line may be (stderr,
# syslog).
LONG_OK=$(printf "%$((4095 - ${#HOME} - 1))s" | tr ' ' x)
LONG_BAD=${LONG_OK}x
while read -r line; do
	eval "set -- $line"
	cmdline_as_stock "$@"
done <<EOF
-Q bogus
-Q ''
-Q requests -Q bogus
-Q bogus -Q requests
-R -Q requests
-h
-z
-d
-l
-u
-p open -p close
-P open -P close
-e -p a -p b -Q requests
-P bogus,open -e -l verbose
-u 999
-u abc
-u ''
-u -1
-u 0x1
-u 1000
-u 99999999999999999999
-u ' 22'
-e -u 999
-u 999 -Q requests
-l bogus
-l ''
-l DEBUG4
-f bogus
-f local8
-f security
-f ''
-e -l bogus
-l bogus -f bogus -e
-f bogus -l bogus
-l bogus -l info
-f bogus -f local0 -l info
-l bogus -Q requests
-f bogus -h
-l bogus -u 999
-e -l silent -l info
-e -l silent -d /nonexistent-$tid
-e -l quiet -d /nonexistent-$tid
-e -l fatal -d /nonexistent-$tid
-e -l error -d /nonexistent-$tid
-e -l Info -f Local7
-d %x
-e -d %x
-d %
-d %d%
-d %%%
-d %x%
-d %dx%y
-d \~nosuchuser-$tid
-e -d \~nosuchuser-$tid/%x
-d \~%u
-d %x -d /
-d / -d %x
-d %x -Q requests
-l bogus -d %x
-e -l info -d \~/$LONG_OK
-e -l info -d \~/$LONG_BAD
-e -l info -d \~root/$LONG_BAD
-e -l info -d %d/$LONG_BAD
-e -l info -d /$LONG_OK
-l info -d /$LONG_OK
-e -d ''
-c
-e -c -l info
-e -l info -c
-c -u 999
-cu 999
-c foo -u 999
-e -l info -c foo -R
-R foo -u 999
foo -u 999
-e -l info -- localhost sftp
-eRl info -u 022
EOF
for args in "-l info" "-l DEBUG3" "-l silent" "-f LOCAL0" "-f daemon" "-c" \
    "-e" "-u 022" "-- localhost sftp"; do
	"$SFTP_SERVER" $args </dev/null >/dev/null 2>&1
	check "$args accepted (exit status $?)" test $? = 0
done

# 4. -d start directory, with expansions (a relative path then lands
#    there).
mkdir -p "$WORK/start/root-0" "$WORK/start/%"
printf 'pwd\n-put %s rel\n' "$UP" >"$WORK/batch"
for dir in "$WORK/start/%u-%U" "%d" "~" "~root" "$WORK/start/%%" \
    "$WORK/nonexistent"; do
	rm -f "$WORK/start/root-0/rel" "/root/rel" "$WORK/rel"
	both -d "$dir"
	rm -f "$WORK/start/root-0/rel" "/root/rel" "$WORK/rel"
	same_as_stock "-d $dir: $(grep 'Remote working' "$WORK/out.ours")"
done
rm -rf "$WORK/start/%"
if [ "$(id -u)" = 0 ]; then
	test_user_setup
	mkdir -p "$WORK/start/$TEST_USER-$TEST_UID"
	chmod 755 "$WORK/start"
	chown "$TEST_USER" "$WORK/start/$TEST_USER-$TEST_UID"
	printf 'pwd\n' >"$WORK/batch"
	chmod 644 "$WORK/batch"
	for srv in "$SFTP_SERVER" "$STOCK_SFTP_SERVER"; do
		as_user sftp -q -b "$WORK/batch" -D "$srv -d $WORK/start/%u-%U" 2>&1
	done 2>&1 | grep '^Remote working' >"$WORK/out"
	check "-d %u-%U as $TEST_USER: $(head -1 "$WORK/out")" \
	    test "$(sed -n 1p "$WORK/out")" = "Remote working directory: $WORK/start/$TEST_USER-$TEST_UID" \
	    -a "$(sed -n 1p "$WORK/out")" = "$(sed -n 2p "$WORK/out")"
else
	skip "-d %u-%U as another user" "needs root"
fi

# -d in a session, side by side: where "pwd" (REALPATH ".") says the
# session is, the log (-e -l verbose: a chdir failure is logged at
# ERROR, and the session goes on where it started, here), and where a
# relative upload lands.  A relative -d is taken from the directory the
# server starts in.  An unknown ~user or %-escape ends both before the
# session starts.
mkdir -p "$WORK/rel/inner" "$WORK/start/%"
printf 'not a directory\n' >"$WORK/plainfile"
printf 'pwd\n-put %s relput\n' "$UP" >"$WORK/batch"
for dir in rel rel/inner rel/../rel/inner . .. "$WORK//rel/" nonexistent \
    rel/nonexistent plainfile "%d/nonexistent-$tid" "$WORK/start/%%" \
    "~nosuchuser-$tid" "~nosuchuser-$tid/x" "%x" "%U"; do
	for who in ours stock; do
		srv=$SFTP_SERVER
		[ $who = stock ] && srv=$STOCK_SFTP_SERVER
		find "$WORK" -name relput -delete
		rm -f "$HOME/relput" "$WORK/../relput"
		sftp -b "$WORK/batch" -D "$srv -e -l verbose -d '$dir'" \
		    >"$WORK/out.$who" 2>&1
		echo "exit $?" >>"$WORK/out.$who"
		{ find "$WORK" -name relput; ls "$HOME/relput" \
		    "$WORK/../relput" 2>/dev/null; } |
		    sort >>"$WORK/out.$who"
		grep -v -e '^commit ' -e '^unchanged ' "$WORK/out.$who" >"$WORK/out.$who.f"
	done
	if cmp -s "$WORK/out.ours.f" "$WORK/out.stock.f"; then
		ok "session -d $dir: same as stock ($(grep -e '^Remote working' -e chdir -e expand -e relput "$WORK/out.ours.f" | tr '\n' ' '))"
	else
		notok "session -d $dir: differs from stock"
		diff -u "$WORK/out.stock.f" "$WORK/out.ours.f" | sed 's/^/#   /'
	fi
done
find "$WORK" -name relput -delete
rm -f "$HOME/relput" "$WORK/../relput"

# 5. -u umask on new files and directories.
printf 'put %s %s/new\nmkdir %s/m\n' "$UP" "$D" "$D" >"$WORK/batch"
chmod 666 "$UP"
for u in 077 0 027; do
	both -u $u
	same_as_stock "-u $u: $(cd "$D" && stat -c '%n %a' new m | tr '\n' ' ')"
done
chmod 644 "$UP"

# 6. Logging: at INFO, VERBOSE and DEBUG1 our lines are stock's, plus one commit
#    line per upload (and no "stage" line: staging worked).  stock counts
#    users-groups-by-id's ids wrong in its log line ("N users, 0 groups"
#    with N = users + groups): the numbers of that line are not compared.
printf '%s\n' "$WRITES" "put $UP $D/second" "-rm $D/nonexistent" >"$WORK/batch"
# At DEBUG1 we add one line on the settings, and name the
# users-groups-by-id request our way.  At DEBUG2, the lines on -p, -P
# and -R too (extensions not advertised, requests let through).
ALLOW=open,close,write,read,realpath,stat,lstat,fstat,opendir,readdir,mkdir
ALLOW=$ALLOW,rename,setstat,remove,symlink,readlink,users-groups-by-id,limits
for lv in INFO VERBOSE DEBUG1 DEBUG2 "DEBUG2 -R" \
    "DEBUG2 -P mkdir,statvfs,write -p $ALLOW"; do
	both -e -l $lv
	for who in ours stock; do
		grep -v -e '^exit ' -e '^sftp> ' -e '^Remote working' "$WORK/out.$who" |
		    grep -v -e '^commit "' -e '^abort "' -e '^unchanged "' -e '^stage "' |
		    grep -v -e '^debug1: staging ' -e '^debug1: .*users.groups.by.id' |
		    grep -v -e '^Refusing non-allowlisted check-file' \
		        -e 'refusing to advertise disallowed extension check-file' |
		    sed 's/^\(users-groups-by-id:\) .*/\1 N/' >"$WORK/log.$who"
	done
	if cmp -s "$WORK/log.ours" "$WORK/log.stock"; then
		ok "-l $lv: stock's log lines ($(wc -l <"$WORK/log.ours") lines)"
	else
		notok "-l $lv: log lines differ from stock's"
		diff -u "$WORK/log.stock" "$WORK/log.ours" | sed 's/^/#   /'
	fi
	if [ $ours = 1 ] && [ "$lv" = "${lv%% *}" ]; then
		n=$(grep -c '^commit "' "$WORK/out.ours")
		c=$(grep -c '^open ".*" flags WRITE' "$WORK/out.ours")
		check "-l $lv: a commit line per upload ($n of $c)" \
		    test "$n" = "$c" -a "$n" -ge 3
		check "-l $lv: commit lines have path, bytes, seconds, method" \
		    grep -q "^commit \"$D/second\" bytes 17 seconds [0-9.]* method " \
		    "$WORK/out.ours"
	fi
done
# Without -e nothing goes to stderr (syslog instead), at any level.
printf 'put %s %s/x\n' "$UP" "$D" >"$WORK/batch"
reset_d
for srv in "$SFTP_SERVER" "$STOCK_SFTP_SERVER"; do
	sftp -q -b "$WORK/batch" -D "$srv -l DEBUG3 -f LOCAL1" 2>"$WORK/out" >/dev/null
	check "no -e: no log on stderr ($srv)" test ! -s "$WORK/out"
done
# Through syslog: the same priorities (facility and level), tag and
# lines as stock, plus our commit line.  In a private mount namespace
# whose /dev is a fresh tmpfs, regress/helpers/syslog_session.py owns
# /dev/log.  Both servers run under one name (symlinks), since the tag
# is the program's name.
SYSLOG_SESSION="$SRC/regress/helpers/syslog_session.py"
mkdir -p "$WORK/ours" "$WORK/stock"
ln -sf "$SFTP_SERVER" "$WORK/ours/tag-test"
ln -sf "$STOCK_SFTP_SERVER" "$WORK/stock/tag-test"
if [ "$(id -u)" = 0 ] && unshare -m --propagation private true 2>/dev/null; then
	for args in "-l INFO" "-f DAEMON -l INFO" "-f LOCAL3 -l VERBOSE" \
	    "-f AUTHPRIV -l INFO" "-f LOCAL7"; do
		for who in ours stock; do
			rm -f "$WORK/slog"
			unshare -m --propagation private sh -c '
			    mount -t tmpfs none /dev && mknod -m 666 /dev/null c 1 3 &&
			    exec "$@"' - /usr/bin/python3 "$SYSLOG_SESSION" "$WORK/slog" \
			    "$WORK/$who/tag-test" $args >"$WORK/syslog.$who" 2>&1
		done
		grep -v '^<[0-9]*> tag-test: commit "' "$WORK/syslog.ours" \
		    >"$WORK/syslog.ours.stock-lines"
		if cmp -s "$WORK/syslog.ours.stock-lines" "$WORK/syslog.stock"; then
			ok "syslog $args: stock's priorities, tag and lines ($(wc -l <"$WORK/syslog.stock") lines)"
		else
			notok "syslog $args: differs from stock"
			diff -u "$WORK/syslog.stock" "$WORK/syslog.ours" | sed 's/^/#   /'
		fi
		if [ $ours = 1 ] && [ "$args" != "-f LOCAL7" ]; then
			pri=$(sed -n 's/^\(<[0-9]*>\) tag-test: session opened .*/\1/p' "$WORK/syslog.ours")
			check "syslog $args: the commit line, at the same priority $pri" \
			    grep -q "^$pri tag-test: commit \"$WORK/slog\" bytes 5 " "$WORK/syslog.ours"
		fi
	done
else
	skip "syslog lines" "needs root and unshare -m"
fi

# At the default level (ERROR) with -e, a session that goes well logs
# nothing.
for srv in "$SFTP_SERVER" "$STOCK_SFTP_SERVER"; do
	sftp -q -b "$WORK/batch" -D "$srv -e" 2>"$WORK/out" >/dev/null
	check "-e at ERROR: a clean session logs nothing ($srv)" test ! -s "$WORK/out"
done

# 7. Our own flags.
if [ $ours = 0 ]; then
	skip "-t, -s, -n, -m and ATOMIC_UPLOAD_*" "stock server"
	exit 0
fi
if ! command -v strace >/dev/null 2>&1 ||
    ! strace -f -o /dev/null true >/dev/null 2>&1; then
	skip "-t, -s and ATOMIC_UPLOAD_* through strace" "no strace or no ptrace"
	have_strace=0
else
	have_strace=1
fi
STAGE="$WORK/stage"
OTHER="$WORK/other"
mkdir -p "$STAGE" "$OTHER"
chmod 700 "$STAGE" "$OTHER"
printf 'put %s %s/f\n' "$UP" "$D" >"$WORK/batch"

# upload_with [VAR=VALUE...] -- FLAGS...: from a fresh $D, upload $UP
# over $D/f with sftp -D, the server run with these environment variables
# and flags at INFO, under the command prefix in the array $wrap (if
# any); its log in $WORK/out.  False if the content is wrong.
wrap=()
upload_with() {
	local envs=()
	while [ "$1" != -- ]; do
		envs+=("$1")
		shift
	done
	shift
	reset_d
	before_ino=$(stat -c %i "$D/f")
	env "${envs[@]}" "${wrap[@]}" \
	    sftp -q -b "$WORK/batch" -D "$SFTP_SERVER -e -l INFO $*" \
	    >"$WORK/out" 2>&1
	cmp -s "$UP" "$D/f" && return 0
	notok "upload with ${envs[*]} $*: wrong content"
	return 1
}
# traced ARGS...: upload_with under strace -y (descriptors shown with
# their paths); the trace in $WORK/trace.
traced() {
	wrap=(env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
	    strace -f -qq -y -o "$WORK/trace"
	    -e trace=openat,renameat,renameat2,fsync,fdatasync,sync_file_range)
	upload_with "$@"
	wrap=()
}
# staged_in DIR: the upload (a replacement: $D/f exists) went through DIR:
# renamed into place from a private directory there, or staged in one.
staged_in() {
	grep -q "renameat2\?([0-9]*<$1/\\.au-[A-Za-z0-9]*>, \"upload\"" "$WORK/trace" ||
	    grep -q "renameat2\?([0-9]*<$1>, \"\\.au-[A-Za-z0-9]*\"" "$WORK/trace" ||
	    grep -q "openat([0-9]*<$1/\\.au-[A-Za-z0-9]*>, \"upload\", .*O_CREAT|O_EXCL" "$WORK/trace"
}
# syncs: "F D": how many fsync/fdatasync hit a file in $D (or the staged
# file) and how many the directory $D itself.
syncs() {
	local f d
	f=$(grep -E '^[0-9]+ +(fsync|fdatasync)\(' "$WORK/trace" | grep -vc "($D>\|<$D>)")
	d=$(grep -E '^[0-9]+ +(fsync|fdatasync)\(' "$WORK/trace" | grep -c "<$D>)")
	echo "$f $d"
}

if [ $have_strace = 1 ]; then
	traced -- -t "$STAGE"
	check "-t: staged in the staging directory" staged_in "$STAGE"
	traced ATOMIC_UPLOAD_TMPDIR="$STAGE" --
	check "ATOMIC_UPLOAD_TMPDIR: staged there" staged_in "$STAGE"
	traced ATOMIC_UPLOAD_TMPDIR="$OTHER" -- -t "$STAGE"
	check "-t wins over ATOMIC_UPLOAD_TMPDIR" staged_in "$STAGE"
	traced --
	check "no -t: staged beside the destination" staged_in "$D"
	traced -- -t "$WORK/start/%u-%U"
	check "-t with %u-%U: staged in $WORK/start/root-0" staged_in "$WORK/start/root-0"

	traced --
	check "default durability (full): file and directory flushed ($(syncs))" \
	    test "$(syncs | awk '{ print ($1 >= 1 && $2 >= 1) }')" = 1
	traced -- -s full
	check "-s full: file and directory flushed ($(syncs))" \
	    test "$(syncs | awk '{ print ($1 >= 1 && $2 >= 1) }')" = 1
	traced -- -s data
	check "-s data: only the file flushed ($(syncs))" \
	    test "$(syncs | awk '{ print ($1 >= 1 && $2 == 0) }')" = 1
	traced -- -s none
	check "-s none: nothing flushed ($(syncs))" test "$(syncs)" = "0 0"
	traced ATOMIC_UPLOAD_SYNC=none --
	check "ATOMIC_UPLOAD_SYNC=none: nothing flushed ($(syncs))" test "$(syncs)" = "0 0"
	traced ATOMIC_UPLOAD_SYNC=data --
	check "ATOMIC_UPLOAD_SYNC=data: only the file flushed ($(syncs))" \
	    test "$(syncs | awk '{ print ($1 >= 1 && $2 == 0) }')" = 1
	traced ATOMIC_UPLOAD_SYNC=none -- -s full
	check "-s wins over ATOMIC_UPLOAD_SYNC ($(syncs))" \
	    test "$(syncs | awk '{ print ($1 >= 1 && $2 >= 1) }')" = 1
fi

# A staging directory on another filesystem is not used (no copy across
# filesystems): staged beside the destination, and the log says why.
SHM=/dev/shm
if [ -d $SHM ] && [ "$(stat -c %d $SHM)" != "$(stat -c %d "$WORK")" ]; then
	mkdir -p "$SHM/au-$tid-$$"
	chmod 700 "$SHM/au-$tid-$$"
	on_exit "rm -rf $SHM/au-$tid-$$"
	reset_d
	sftp -q -b "$WORK/batch" -D "$SFTP_SERVER -e -l INFO -t $SHM/au-$tid-$$" \
	    >"$WORK/out" 2>&1
	check "-t on another filesystem: upload done" cmp -s "$UP" "$D/f"
	check "-t on another filesystem: logged ($(grep '^stage ' "$WORK/out"))" \
	    grep -q "^stage \"$D/f\": " "$WORK/out"
	check "-t on another filesystem: nothing left there" \
	    entries "$SHM/au-$tid-$$"
else
	skip "-t on another filesystem" "/dev/shm missing or on the same filesystem"
fi
# A world-writable staging directory without the sticky bit is refused.
mkdir -p "$WORK/open"
chmod 777 "$WORK/open"
reset_d
sftp -q -b "$WORK/batch" -D "$SFTP_SERVER -e -l INFO -t $WORK/open" >"$WORK/out" 2>&1
check "-t world-writable, not sticky: upload done beside the destination" \
    cmp -s "$UP" "$D/f"
check "-t world-writable, not sticky: refused, and said so" \
    grep -q "^stage \"$D/f\": .*writable by others without the sticky bit" "$WORK/out"
check "-t world-writable, not sticky: nothing left there" entries "$WORK/open"

# Staging off: a replaced file keeps its inode (written in place, as
# stock writes it); with staging it gets a new one.
# inode_kept ARGS...: upload_with; true if $D/f kept its inode.
inode_kept() {
	upload_with "$@" || return 2
	[ "$(stat -c %i "$D/f")" = "$before_ino" ]
}
inode_kept --
check "default: the file is replaced (new inode)" test $? = 1
check "default: the commit line says staged" \
    grep -q '^commit .* method \(tmpfile\|named\)' "$WORK/out"
inode_kept -- -n
check "-n: written in place (same inode)" test $? = 0
check "-n: the commit line says direct" grep -q '^commit .* method direct' "$WORK/out"
inode_kept ATOMIC_UPLOAD_STAGING=off --
check "ATOMIC_UPLOAD_STAGING=off: written in place" test $? = 0
inode_kept ATOMIC_UPLOAD_STAGING=off -- -s full
check "-s alone leaves ATOMIC_UPLOAD_STAGING=off in force" test $? = 0

# -m: a write without truncation (reput) on an existing file.
printf 'reput %s %s/f\n' "$UP" "$D" >"$WORK/batch"
printf 'uploa' >"$WORK/partial"
for m in copy inplace; do
	reset_d
	cp "$WORK/partial" "$D/f"
	ino=$(stat -c %i "$D/f")
	sftp -q -b "$WORK/batch" -D "$SFTP_SERVER -m $m" >"$WORK/out" 2>&1
	check "-m $m: reput completes the file" cmp -s "$UP" "$D/f"
	if [ $m = copy ]; then
		check "-m copy: a staged copy replaced the file" \
		    test "$(stat -c %i "$D/f")" != "$ino"
	else
		check "-m inplace: the file was modified in place" \
		    test "$(stat -c %i "$D/f")" = "$ino"
	fi
done
check "no debris in the destination" entries "$D" f sub
check "no debris in the staging directory" entries "$STAGE"

# Bad values of our own flags: refused with a message and stock's
# statuses (1 for a usage error, 255 for a fatal one).
# refused STATUS PATTERN ARGS...: the server exits STATUS and says
# PATTERN (on stderr, with -e for what is logged).
refused() {
	local want=$1 pat=$2
	shift 2
	"$SFTP_SERVER" "$@" </dev/null >"$WORK/out" 2>&1
	local got=$?
	check "$*: exit $got, $(head -1 "$WORK/out" | cut -c1-70)" \
	    test $got = "$want" -a -n "$(grep -e "$pat" "$WORK/out")"
}
refused 1 'Invalid durability "bogus"' -s bogus
refused 1 'Invalid modify policy "bogus"' -m bogus
refused 1 '^usage: ' -t
refused 1 '^usage: ' -s
refused 1 '^usage: ' -m
refused 1 '^usage: ' -S
refused 255 '^-t %x: unknown key %x' -e -t %x
refused 255 '^-t %d%: % at the end' -e -t %d%
refused 255 "^-t ~nosuchuser-$tid: no such user nosuchuser-$tid" -e -t "~nosuchuser-$tid"
refused 1 "sweep $WORK/nonexistent: No such file or directory" -S "$WORK/nonexistent"
# A bad environment value is logged and the default kept: staging on,
# durability full, copy, beside the destination.
printf 'put %s %s/f\n' "$UP" "$D" >"$WORK/batch"
upload_with ATOMIC_UPLOAD_SYNC=bogus --
check "ATOMIC_UPLOAD_SYNC=bogus: logged" \
    grep -q '^ATOMIC_UPLOAD_SYNC=bogus not understood: using full' "$WORK/out"
inode_kept ATOMIC_UPLOAD_STAGING=bogus --
check "ATOMIC_UPLOAD_STAGING=bogus: staging stays on (new inode)" test $? = 1
check "ATOMIC_UPLOAD_STAGING=bogus: logged" \
    grep -q '^ATOMIC_UPLOAD_STAGING=bogus not understood' "$WORK/out"
inode_kept ATOMIC_UPLOAD_STAGING=on -- -n
check "-n wins over ATOMIC_UPLOAD_STAGING=on" test $? = 0
upload_with ATOMIC_UPLOAD_MODIFY=bogus --
check "ATOMIC_UPLOAD_MODIFY=bogus: logged" \
    grep -q '^ATOMIC_UPLOAD_MODIFY=bogus not understood: using copy' "$WORK/out"
upload_with ATOMIC_UPLOAD_TMPDIR=%x --
check "ATOMIC_UPLOAD_TMPDIR=%x: logged, the session goes on" \
    grep -q '^ATOMIC_UPLOAD_TMPDIR=%x: unknown key %x: staging beside' "$WORK/out"
upload_with -- -t "$WORK/nonexistent"
check "-t to a missing directory: staged beside, and said so ($(grep '^stage ' "$WORK/out" | cut -c1-60))" \
    grep -q "^stage \"$D/f\": " "$WORK/out"
if [ $have_strace = 1 ]; then
	traced ATOMIC_UPLOAD_SYNC=bogus --
	check "ATOMIC_UPLOAD_SYNC=bogus: full durability ($(syncs))" \
	    test "$(syncs | awk '{ print ($1 >= 1 && $2 >= 1) }')" = 1
	traced ATOMIC_UPLOAD_TMPDIR=%x --
	check "ATOMIC_UPLOAD_TMPDIR=%x: staged beside the destination" staged_in "$D"
	traced -- -n
	check "-n: nothing flushed ($(syncs))" test "$(syncs)" = "0 0"
	traced -- -n -s data
	check "-n -s data: the file flushed ($(syncs))" \
	    test "$(syncs | awk '{ print ($1 >= 1 && $2 == 0) }')" = 1
	# A relative -t is taken from the start directory.
	mkdir -p "$WORK/start/rel-stage"
	chmod 700 "$WORK/start/rel-stage"
	traced -- -d "$WORK/start" -t rel-stage
	check "-d DIR -t relative: staged in DIR/relative" \
	    staged_in "$WORK/start/rel-stage"
fi

# -h documents our flags.
"$SFTP_SERVER" -h >"$WORK/out" 2>&1
for f in -t -s -n -m; do
	check "-h mentions $f" grep -q -- "\\[$f \\|-[a-zA-Z]*${f#-}[a-zA-Z]*\\]" "$WORK/out"
done
exit 0
