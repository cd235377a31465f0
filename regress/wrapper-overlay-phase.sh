# Part 2 of regress/t-wrapper.sh, sourced by it inside a chroot into an
# overlay of the real root (see there): here "/" is a throwaway copy of the
# host, so the install runs exactly as a sysadmin's would - no DESTDIR, the
# real dpkg-divert and dpkg database - and is then undone and compared.
PREFIX=/usr/local
OURS=$PREFIX/libexec/atomic-upload/scp
DEFAULTS=/etc/default/atomic-upload

mk() { make -s -C "$OBJ" "$@" prefix=$PREFIX >"$WORK/make.out" 2>&1; }

# traced_exec FILE CMD...: run CMD, listing in FILE every program it execs.
have_strace=no
command -v strace >/dev/null && have_strace=yes
traced_exec() {
	local f=$1
	shift
	if [ "$have_strace" = yes ]; then
		# LeakSanitizer cannot work under ptrace; ASan's other checks can.
		ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
		    strace -f -qq -e trace=execve -o "$f" "$@"
	else
		: > "$f"
		"$@"
	fi
}
execed() {
	[ "$have_strace" = yes ] || return 0
	grep -q "execve(\"$2\"" "$1" || { verbose "no execve of $2 in $1"; return 1; }
}
not_execed() {
	! grep -q "execve(\"$2\"" "$1"
}

div_before=$(dpkg-divert --list | sort)
cp -p /usr/bin/scp "$WORK/host-scp"

real_ours=no
if [ -x "$OBJ/scp" ]; then
	real_ours=yes
	check "(overlay) make install" mk install
	check "(overlay) make install puts our scp in its own directory, not on PATH" \
	    eval 'test -x "$OURS" && test ! -e "$PREFIX/bin/scp"'
	# SCP=/usr/bin/scp (run-tests.sh, to watch tests fail against
	# stock): that program stands where ours was installed.
	if [ "$SCP" != "$OBJ/scp" ] && [ -x "$SCP" ]; then
		verbose "our scp replaced by $SCP"
		install -m 0755 "$SCP" "$OURS"
	fi
else
	# Until scp.c exists: a stand-in that records its argv.
	mkdir -p "$(dirname "$OURS")"
	printf '#!/bin/sh\necho "ours $*" > %s/rec\n' "$WORK" > "$OURS"
	chmod 755 "$OURS"
fi

if mk install-wrapper; then
	ok "(overlay) make install-wrapper on the real system"
else
	notok "(overlay) make install-wrapper on the real system"
	sed 's/^/# /' "$WORK/make.out"
fi
check "(overlay) dpkg-divert lists the local diversion" \
    test "$(dpkg-divert --list /usr/bin/scp)" = "local diversion of /usr/bin/scp to /usr/bin/scp.distrib"
check "(overlay) /usr/bin/scp.distrib is the distribution's scp" \
    cmp -s /usr/bin/scp.distrib "$WORK/host-scp"
check "(overlay) /usr/bin/scp is the wrapper" \
    grep -qF "atomic-upload scp wrapper" /usr/bin/scp

# Client mode: a local copy by the distribution's scp.
echo "client copy" > "$WORK/a"
rm -f "$WORK/b"
traced_exec "$WORK/trace" /usr/bin/scp -O "$WORK/a" "$WORK/b" >"$WORK/out" 2>&1
check "(overlay) scp -O a b runs the distribution's scp" \
    eval 'execed "$WORK/trace" /usr/bin/scp.distrib && not_execed "$WORK/trace" "$OURS" && cmp -s "$WORK/a" "$WORK/b"'

# Server mode: a sink fed one file by hand.
mkdir -p "$WORK/in"
rm -f "$WORK/rec"
printf 'C0644 6 f\nhello\n\0' |
    traced_exec "$WORK/trace" /usr/bin/scp -t "$WORK/in" >"$WORK/out" 2>&1
if [ "$real_ours" = yes ]; then
	check "(overlay) scp -t runs our scp and the file lands" \
	    eval 'execed "$WORK/trace" "$OURS" && test "$(cat "$WORK/in/f" 2>/dev/null)" = hello'
else
	check "(overlay) scp -t runs our scp" \
	    eval 'execed "$WORK/trace" "$OURS" && test "$(cat "$WORK/rec" 2>/dev/null)" = "ours -t $WORK/in"'
fi

# An upgrade of openssh-client must leave the wrapper in place.  Only
# with the package file already at hand: no network in a test.
ver=$(dpkg-query -W -f '${Version}' openssh-client 2>/dev/null)
deb=$(ls /var/cache/apt/archives/openssh-client_"${ver//:/%3a}"_*.deb 2>/dev/null | head -1)
if [ -n "$deb" ]; then
	dpkg -i "$deb" >"$WORK/dpkg.out" 2>&1
	check "(overlay) dpkg -i openssh-client: the wrapper stays, the new scp goes to scp.distrib" \
	    eval 'grep -qF "atomic-upload scp wrapper" /usr/bin/scp && cmp -s /usr/bin/scp.distrib "$WORK/host-scp"'
else
	skip "(overlay) openssh-client reinstall keeps the wrapper" "no openssh-client_$ver .deb in /var/cache/apt/archives"
fi

# e2e_upload LABEL USER-SSH-OPTIONS: an scp -O upload as the ordinary user
# through the sshd those options reach; while it runs, our scp must hold
# the staged file in $STAGE and the destination name must not exist.
e2e_upload() {
	local label=$1 opts=$2 pid scp_pid staged_by="" early="" i src
	rm -rf "$DEST"
	mkdir -p "$DEST"
	chown "$TEST_USER" "$DEST"
	as_user scp -O $opts -l 4000 "$WORK/big" "$TEST_USER@localhost:$DEST/big" \
	    >"$WORK/scp.out" 2>&1 &
	scp_pid=$!
	on_exit "kill $scp_pid"
	# The first sight of the staged file, and at that moment the name.
	# The upload takes about 8 s at 4000 Kbit/s; under load the login
	# alone can take seconds, so poll for as long as the client lives.
	for i in $(seq 1 600); do
		kill -0 "$scp_pid" 2>/dev/null || break
		[ -e "$DEST/big" ] && { early=yes; break; }
		for pid in /proc/[0-9]*; do
			[ "$(readlink "$pid/exe" 2>/dev/null)" = "$OURS" ] || continue
			# An O_TMPFILE in the destination or staging directory, or a
			# file in a private directory in the staging one.
			ls -l "$pid/fd" 2>/dev/null | grep -q -e "-> $DEST/#[0-9]* (deleted)" \
			    -e "-> $STAGE/#[0-9]* (deleted)" \
			    -e "-> $STAGE/\.au-[A-Za-z0-9]*/upload" || continue
			staged_by=${pid#/proc/}
			[ -e "$DEST/big" ] && early=yes
			break
		done
		[ -n "$staged_by" ] && break
		sleep 0.1
	done
	verbose "$label: staged file seen by poll $i, $(stat -c %s "$DEST/big" 2>/dev/null || echo no) destination"
	check "(e2e $label) mid-upload: our scp holds a staged file (anonymous, or in $STAGE)" \
	    test -n "$staged_by"
	check "(e2e $label) mid-upload: nothing under the destination name" \
	    test -z "$early"
	wait "$scp_pid"
	src=$?
	check "(e2e $label) scp -O upload succeeds, content identical" \
	    eval 'test "$src" -eq 0 && cmp -s "$WORK/big" "$DEST/big"'
	check "(e2e $label) nothing left in the staging dir or beside the file" \
	    eval 'test -z "$(ls -A "$STAGE")" && test "$(ls -A "$DEST")" = big'
	[ "$src" -eq 0 ] || sed 's/^/# /' "$WORK/scp.out"
}

# End to end, the wrapper: a real sshd whose sessions find /usr/bin/scp
# (the wrapper) for "scp -t"; the staging directory comes from the
# defaults file.
if [ "$real_ours" = yes ]; then
	STAGE=$WORK/stage
	DEST=$WORK/upload
	mkdir -p "$STAGE"
	chmod 1733 "$STAGE"
	echo "ATOMIC_UPLOAD_TMPDIR=$STAGE" > "$DEFAULTS"
	head -c 4000000 /dev/urandom > "$WORK/big"
	chmod 644 "$WORK/big"
	start_sshd
	e2e_upload wrapper "$USER_SSH_OPTS"
else
	skip "(e2e) sshd + scp -O through the wrapper" "scp not built yet"
fi

if mk uninstall-wrapper; then
	ok "(overlay) make uninstall-wrapper"
else
	notok "(overlay) make uninstall-wrapper"
	sed 's/^/# /' "$WORK/make.out"
fi
check "(overlay) /usr/bin/scp is the distribution's again, byte-identical" \
    cmp -s /usr/bin/scp "$WORK/host-scp"
check "(overlay) dpkg's diversions are exactly as before" \
    test "$(dpkg-divert --list | sort)" = "$div_before"
check "(overlay) no scp.distrib left" test ! -e /usr/bin/scp.distrib
# End to end without the wrapper (README.atomic's alternative): one SetEnv
# line puts our scp's directory first on the sessions' PATH and names the
# staging directory; /usr/bin/scp is the distribution's again.
if [ "$real_ours" = yes ]; then
	rm -f "$DEFAULTS"
	kd=$WORK/sshd
	port2=$(free_port)
	sed -e "s|^Port .*|Port $port2|" -e "s|^PidFile .*|PidFile $kd/sshd2.pid|" \
	    -e "s|^SetEnv .*|SetEnv PATH=$(dirname "$OURS"):/usr/local/bin:/usr/bin:/bin ATOMIC_UPLOAD_TMPDIR=$STAGE|" \
	    "$kd/sshd_config" > "$kd/sshd_config2"
	"$(command -v sshd || echo /usr/sbin/sshd)" -D -e -f "$kd/sshd_config2" >"$kd/sshd2.log" 2>&1 &
	on_exit "kill $!"
	sed "s|^\tPort .*|\tPort $port2|" "$kd/ssh_config_user" > "$kd/ssh_config_user2"
	chmod 644 "$kd/ssh_config_user2"
	wait_for ssh -F "$kd/ssh_config_user2" root@localhost true 2>/dev/null ||
	    wait_for as_user ssh -F "$kd/ssh_config_user2" "$TEST_USER@localhost" true
	e2e_upload setenv "-F $kd/ssh_config_user2"
	mk uninstall
	check "(overlay) make uninstall removes our scp" test ! -e "$OURS"
fi
