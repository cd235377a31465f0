#!/bin/bash
# The Debian package (debian/), built and used the way an administrator
# would: "dpkg-buildpackage -us -uc -b", then "apt install" / "apt remove".
#
# 1. The build, from a fresh copy of the tree (the files git knows, or the
#    tree less its build products), as an unprivileged user: it must pass
#    with the declared build dependencies and run the unit tests (and skip
#    them under DEB_BUILD_OPTIONS=nocheck).  lintian on the .changes: no
#    error, and no warning that debian/ does not override with a comment.
# 2. The install, on the real system without touching it: a private mount
#    namespace with an overlay over /, chrooted into (as t-wrapper.sh does),
#    where this script runs again (AU_DEB_PHASE=overlay).  There dpkg -i
#    must divert the distribution's sftp-server and scp, refusing when
#    someone else diverts them already; an sshd running Debian's stock
#    sshd_config (only the listening address, port, host key and PidFile
#    set on the command line) must serve our programs for sftp, scp and
#    scp -O uploads by an ordinary user, with killed clients, while a
#    watcher reads the upload directory; reinstalls of atomic-upload,
#    openssh-sftp-server and openssh-client must keep the diversions; and
#    dpkg -r and dpkg -P must put the stock programs back byte for byte,
#    with sftp working again through the stock server.
#
# The sanitizer pass of contrib/test.sh skips this test: the package is
# built with the plain toolchain from its own copy of the tree, so the
# second pass would only repeat the first.
tid=t-deb
# The overlay phase runs this script again inside the chroot, with a WORK
# of its own: the first WORK holds the overlay's upper layer and the .deb.
[ "${AU_DEB_PHASE:-}" = overlay ] && tid=t-deb-overlay
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"

OUR_DIR=/usr/libexec/atomic-upload
STOCK_SFTP=/usr/lib/openssh/sftp-server
STOCK_SCP=/usr/bin/scp
DEFAULTS=/etc/default/atomic-upload
WATCH=$SRC/regress/helpers/watch.py
MKPAYLOAD=$SRC/regress/helpers/mkpayload.py

# ---------------------------------------------------------------------
# Part 2, inside the overlay.

# repack PKG OUT [MARK FILE]: a .deb of the installed PKG, same version, its
# files copied from the system; with MARK, the line MARK is appended to
# FILE (an ELF program still runs with bytes after its end), so that the
# "new build" is recognisable wherever dpkg puts it.  Installing it is
# what an upgrade of PKG does to its files.
repack() {
	local pkg=$1 out=$2 mark=${3:-} file=${4:-} d f
	d=$WORK/repack-$pkg${mark:+-marked}
	rm -rf "$d"
	mkdir -p "$d/DEBIAN"
	dpkg-query -L "$pkg" | while IFS= read -r f; do
		case $f in
		/.) continue ;;
		/*) ;;
		*) continue ;;	# "diverted by" and "package diverts" lines
		esac
		if [ -d "$f" ] && [ ! -L "$f" ]; then
			mkdir -p "$d$f"
		else
			mkdir -p "$(dirname "$d$f")"
			cp -a "$f" "$d$f"
		fi
	done
	dpkg-query -s "$pkg" | awk '
		/^Status:/ { next }
		/^Conffiles:/ { skip = 1; next }
		skip && /^ / { next }
		{ skip = 0; print }' > "$d/DEBIAN/control"
	dpkg-query -W -f '${Conffiles}\n' "$pkg" |
	    awk '$1 ~ /^\// && $3 != "obsolete" { print $1 }' > "$d/DEBIAN/conffiles"
	[ -s "$d/DEBIAN/conffiles" ] || rm -f "$d/DEBIAN/conffiles"
	[ -n "$mark" ] && echo "$mark" >> "$d$file"
	dpkg-deb -Zgzip -z1 -b "$d" "$out" >"$WORK/repack.out" 2>&1
}

# pids_of EXE: the running processes whose program is EXE (one find, not
# a shell loop over /proc: under load that takes seconds).
pids_of() {
	find /proc/[0-9]*/exe -maxdepth 0 -lname "$1" 2>/dev/null |
	    sed 's|^/proc/\([0-9]*\)/exe$|\1|'
}

# staging_pid EXE: the PID of a running EXE that holds a staged file -
# anonymous in $UP, or in a private directory there - with data in it.
staging_pid() {
	local p fd
	for p in $(pids_of "$1"); do
		for fd in /proc/"$p"/fd/*; do
			case $(readlink "$fd" 2>/dev/null) in
			"$UP/#"*" (deleted)" | "$UP/.au-"*) ;;
			*) continue ;;
			esac
			[ "$(stat -L -c %s "$fd" 2>/dev/null || echo 0)" -gt 0 ] || continue
			echo "$p"
			return 0
		done
	done
	return 1
}

# serving_pid EXE: the PID of a running EXE with a file in $UP open.
serving_pid() {
	local p fd
	for p in $(pids_of "$1"); do
		for fd in /proc/"$p"/fd/*; do
			case $(readlink "$fd" 2>/dev/null) in
			"$UP/"*) echo "$p"; return 0 ;;
			esac
		done
	done
	return 1
}

# client_argv KIND SRC NAME [LIMIT]: in $argv, the command that uploads
# SRC to $UP/NAME with KIND (sftp; scp: SFTP mode; scp-O: legacy),
# rate-limited to LIMIT Kbit/s.
client_argv() {
	local kind=$1 src=$2 name=$3 limit=${4:-}
	case $kind in
	sftp)
		echo "put $src $UP/$name" > "$WORK/batch-$name"
		chmod 644 "$WORK/batch-$name"
		argv=(sftp -q -F "$CFG" ${limit:+-l $limit} -b "$WORK/batch-$name"
		    "$TEST_USER@localhost") ;;
	scp) argv=(scp -q -F "$CFG" ${limit:+-l $limit} "$src"
		    "$TEST_USER@localhost:$UP/$name") ;;
	scp-O) argv=(scp -O -q -F "$CFG" ${limit:+-l $limit} "$src"
		    "$TEST_USER@localhost:$UP/$name") ;;
	esac
}

# client KIND SRC NAME [LIMIT]: that upload, as $TEST_USER.
client() {
	local argv
	client_argv "$@"
	as_user "${argv[@]}"
}

# client_bg KIND SRC NAME [LIMIT]: the same in the background, in a
# session of its own, so that a kill of the process group $! takes the
# client and the ssh it started, as when the uploading machine dies.
client_bg() {
	local argv
	client_argv "$@"
	setsid setpriv --reuid="$TEST_USER" --regid="$TEST_USER" --init-groups \
	    --reset-env -- env PATH=/usr/local/bin:/usr/bin:/bin "${argv[@]}" &
}

# killed_upload KIND EXE: a slow upload with KIND, killed (SIGKILL, client
# and its ssh) once EXE - our server program - holds a staged file with
# data in it.  Nothing may appear under the name, before or after.
killed_upload() {
	local kind=$1 exe=$2 name=killed-$1 cpid spid="" early="" i
	client_bg "$kind" "$WORK/slow" "$name" 4000 >"$WORK/client-$name.out" 2>&1
	cpid=$!
	on_exit "kill -KILL -- -$cpid"
	for i in $(seq 1 300); do
		kill -0 "$cpid" 2>/dev/null || break
		[ -e "$UP/$name" ] && early=yes
		spid=$(staging_pid "$exe") && break
		sleep 0.1
	done
	[ -e "$UP/$name" ] && early=yes
	check "($kind, killed) served by $exe, data staged" test -n "$spid"
	kill -KILL -- "-$cpid" 2>/dev/null
	wait "$cpid" 2>/dev/null
	# The server notices the lost connection and aborts.
	[ -n "$spid" ] && wait_for test ! -e "/proc/$spid"
	check "($kind, killed) nothing under the name, during or after" \
	    eval 'test -z "$early" && test ! -e "$UP/$name"'
}

# dpkg_s_ours NAME: dpkg -S says atomic-upload diverts NAME and has a
# file there.
dpkg_s_ours() {
	dpkg -S "$1" >"$WORK/dpkg-S" 2>&1
	grep -qxF "diversion by atomic-upload from: $1" "$WORK/dpkg-S" &&
	    grep -qxF "diversion by atomic-upload to: $1.distrib" "$WORK/dpkg-S" &&
	    grep -qE "^(.*, )?atomic-upload(, .*)?: $1\$" "$WORK/dpkg-S" && return 0
	verbose "dpkg -S $1: $(tr '\n' '|' < "$WORK/dpkg-S")"
	return 1
}

overlay_phase() {
	local deb=$AU_DEB port div_before div_ours f

	# In here nothing runs services, and man-db need not reindex at
	# every dpkg run.
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	rm -f /var/lib/man-db/auto-update

	for f in "$STOCK_SFTP" "$STOCK_SCP"; do
		if [ -n "$(dpkg-divert --list "$f")" ]; then
			skip "$tid" "$f is diverted on this system already: $(dpkg-divert --list "$f")"
			return 0
		fi
	done
	if dpkg-query -W -f '${db:Status-Abbrev}' atomic-upload 2>/dev/null | grep -q '^.[^n]'; then
		skip "$tid" "atomic-upload is installed on this system already"
		return 0
	fi
	cp -a "$STOCK_SFTP" "$WORK/stock-sftp-server"
	cp -a "$STOCK_SCP" "$WORK/stock-scp"
	st() { stat -c '%F %a %U %G' "$1"; }
	st_sftp=$(st "$STOCK_SFTP")
	st_scp=$(st "$STOCK_SCP")
	div_before=$(dpkg-divert --list | sort)
	# "New builds" of the two openssh packages, and the present ones.
	repack openssh-sftp-server "$WORK/sftp-new.deb" "# t-deb rebuild" "$STOCK_SFTP" &&
	    repack openssh-sftp-server "$WORK/sftp-orig.deb" &&
	    repack openssh-client "$WORK/client-new.deb" "# t-deb rebuild" "$STOCK_SCP" &&
	    repack openssh-client "$WORK/client-orig.deb" ||
	    { cat "$WORK/repack.out"; fail "repacking the openssh packages"; }

	# ---- someone else's diversion: refused, nothing changed ----
	dpkg-divert --local --rename --divert "$STOCK_SCP.distrib" --add "$STOCK_SCP" >/dev/null
	cp -p "$STOCK_SCP.distrib" "$STOCK_SCP"
	dpkg -i "$deb" >"$WORK/dpkg.out" 2>&1
	rc=$?
	check "dpkg -i refuses while the administrator diverts $STOCK_SCP" \
	    eval 'test $rc -ne 0 && grep -q "$STOCK_SCP is already diverted" "$WORK/dpkg.out"'
	check "... and changes nothing: not installed, sftp-server neither diverted nor moved" \
	    eval 'test -z "$(dpkg-query -W -f "\${db:Status-Abbrev}" atomic-upload 2>/dev/null | grep "^.[^n]")" &&
	    test -z "$(dpkg-divert --list "$STOCK_SFTP")" && test ! -e "$STOCK_SFTP.distrib" &&
	    cmp -s "$STOCK_SFTP" "$WORK/stock-sftp-server" &&
	    test "$(dpkg-divert --list "$STOCK_SCP")" = "local diversion of $STOCK_SCP to $STOCK_SCP.distrib"'
	rm -f "$STOCK_SCP"
	dpkg-divert --local --rename --divert "$STOCK_SCP.distrib" --remove "$STOCK_SCP" >/dev/null
	cmp -s "$STOCK_SCP" "$WORK/stock-scp" || fail "could not undo the local diversion of $STOCK_SCP"

	# ---- install ----
	if dpkg -i "$deb" >"$WORK/dpkg.out" 2>&1; then
		ok "dpkg -i $(basename "$deb")"
	else
		notok "dpkg -i $(basename "$deb")"
		sed 's/^/# /' "$WORK/dpkg.out"
	fi
	div_ours=$(printf '%s\n' "$div_before" \
	    "diversion of $STOCK_SFTP to $STOCK_SFTP.distrib by atomic-upload" \
	    "diversion of $STOCK_SCP to $STOCK_SCP.distrib by atomic-upload" | sed '/^$/d' | sort)
	check "dpkg-divert --list: sftp-server and scp diverted by atomic-upload, nothing else" \
	    test "$(dpkg-divert --list | sort)" = "$div_ours"
	check "the stock programs are at .distrib, byte-identical" \
	    eval 'cmp -s "$STOCK_SFTP.distrib" "$WORK/stock-sftp-server" &&
	    cmp -s "$STOCK_SCP.distrib" "$WORK/stock-scp"'
	check "$STOCK_SFTP is ours ($OUR_DIR/sftp-server)" \
	    test "$(readlink -f "$STOCK_SFTP")" = "$OUR_DIR/sftp-server"
	check "$STOCK_SCP is the wrapper: our scp for server modes, scp.distrib for the rest" \
	    eval 'grep -qxF "au_atomic_scp='"'$OUR_DIR/scp'"'" "$STOCK_SCP" &&
	    grep -qxF "au_distrib_scp='"'$STOCK_SCP.distrib'"'" "$STOCK_SCP" &&
	    grep -qxF "au_defaults_file='"'$DEFAULTS'"'" "$STOCK_SCP" && test -x "$OUR_DIR/scp"'
	check "dpkg -S: both names are diverted by atomic-upload, and ours" \
	    eval 'dpkg_s_ours "$STOCK_SFTP" && dpkg_s_ours "$STOCK_SCP"'
	check "$DEFAULTS is a conffile, the template, staging beside each destination" \
	    eval 'dpkg-query -W -f "\${Conffiles}" atomic-upload | grep -q " $DEFAULTS " &&
	    cmp -s "$DEFAULTS" "$SRC/contrib/atomic-upload.default" &&
	    grep -qx "ATOMIC_UPLOAD_TMPDIR=" "$DEFAULTS"'
	check "man pages under their own names, OpenSSH's kept" \
	    eval 'test -f /usr/share/man/man8/atomic-sftp-server.8.gz &&
	    test -f /usr/share/man/man1/atomic-scp.1.gz &&
	    dpkg -S /usr/share/man/man1/scp.1.gz | grep -q "^openssh-client:" &&
	    dpkg -S /usr/share/man/man8/sftp-server.8.gz | grep -q "^openssh-sftp-server:"'
	check "docs in /usr/share/doc/atomic-upload" \
	    eval 'test -f /usr/share/doc/atomic-upload/README.atomic.gz &&
	    test -f /usr/share/doc/atomic-upload/README.md.gz &&
	    test -f /usr/share/doc/atomic-upload/copyright &&
	    test -f /usr/share/doc/atomic-upload/changelog.gz'

	# ---- sshd as Debian ships it ----
	test_user_setup
	local home=$TEST_HOME
	[ -d "$home" ] || { mkdir -p "$home"; chown "$TEST_USER:" "$home"; chmod 755 "$home"; }
	ssh-keygen -q -t ed25519 -N '' -f "$WORK/host_key" >/dev/null || fail "host key"
	ssh-keygen -q -t ed25519 -N '' -f "$WORK/user_key" >/dev/null || fail "user key"
	chown "$TEST_USER" "$WORK/user_key"
	# The user's own authorized_keys (the stock AuthorizedKeysFile), in
	# here only.
	mkdir -p "$home/.ssh"
	cp "$WORK/user_key.pub" "$home/.ssh/authorized_keys"
	chown -R "$TEST_USER:" "$home/.ssh"
	chmod 700 "$home/.ssh"
	chmod 600 "$home/.ssh/authorized_keys"
	# A fresh install's configuration: the packaged sshd_config and
	# nothing in sshd_config.d.
	cp /usr/share/openssh/sshd_config /etc/ssh/sshd_config
	rm -f /etc/ssh/sshd_config.d/*
	check "sshd_config is Debian's, with its stock Subsystem line" \
	    grep -qxP "Subsystem\\tsftp\\t$STOCK_SFTP" /etc/ssh/sshd_config
	mkdir -p /run/sshd
	port=$(free_port)
	/usr/sbin/sshd -D -e -o ListenAddress=127.0.0.1 -o Port="$port" \
	    -o HostKey="$WORK/host_key" -o PidFile="$WORK/sshd.pid" \
	    >"$WORK/sshd.log" 2>&1 &
	SSHD_PID=$!
	on_exit "kill $SSHD_PID"
	CFG=$WORK/ssh_config
	cat > "$CFG" <<EOC
Host *
	HostName 127.0.0.1
	Port $port
	IdentityFile $WORK/user_key
	IdentitiesOnly yes
	StrictHostKeyChecking no
	UserKnownHostsFile /dev/null
	GlobalKnownHostsFile /dev/null
	LogLevel ERROR
	BatchMode yes
EOC
	chmod 644 "$CFG"
	wait_for as_user ssh -F "$CFG" "$TEST_USER@localhost" true ||
	    { sed 's/^/# /' "$WORK/sshd.log" | tail -20; fail "sshd (stock config) did not let $TEST_USER in"; }

	# ---- uploads, watched ----
	UP=$WORK/up
	mkdir -p "$UP"
	chown "$TEST_USER:" "$UP"
	chmod 755 "$UP"
	python3 "$MKPAYLOAD" "$WORK/full" 3M 1 && python3 "$MKPAYLOAD" "$WORK/slow" 8M 2 ||
	    fail "mkpayload"
	chmod 644 "$WORK/full" "$WORK/slow"
	python3 "$WATCH" --all --ready "$WORK/ready" --stop "$WORK/stop" "$UP" \
	    >"$WORK/watch.out" 2>&1 &
	local wpid=$! wrc kind
	on_exit "kill $wpid"
	wait_for test -e "$WORK/ready" || fail "watcher did not start"

	for kind in sftp scp scp-O; do
		client "$kind" "$WORK/full" "full-$kind" >"$WORK/client.out" 2>&1
		rc=$?
		check "($kind) upload as $TEST_USER completes, byte-identical" \
		    eval 'test $rc -eq 0 && cmp -s "$WORK/full" "$UP/full-$kind"'
		[ $rc -eq 0 ] || sed 's/^/# /' "$WORK/client.out"
	done
	killed_upload sftp "$OUR_DIR/sftp-server"
	killed_upload scp "$OUR_DIR/sftp-server"
	killed_upload scp-O "$OUR_DIR/scp"
	# (and the store of the killed SFTP uploads, kept for a resume)
	check "the upload directory holds the completed uploads, nothing else" \
	    entries_partials "$UP" full-sftp full-scp full-scp-O
	touch "$WORK/stop"
	wait "$wpid"
	wrc=$?
	grep -e OFFENCE -e '^# partial' "$WORK/watch.out" | head -10 | sed 's/^/# /'
	check "the watcher never saw a partial file" test "$wrc" = 0

	# A user's own scp (client mode) goes through the wrapper to the
	# distribution's.
	as_user scp "$WORK/full" "$UP/local-copy" >"$WORK/client.out" 2>&1
	check "client-mode scp through the wrapper copies (to scp.distrib)" \
	    cmp -s "$WORK/full" "$UP/local-copy"
	rm -f "$UP/local-copy"

	# ---- reinstalls and upgrades keep the diversions ----
	dpkg -i "$deb" >"$WORK/dpkg.out" 2>&1
	check "dpkg -i atomic-upload again (an upgrade): diversions unchanged, ours in place" \
	    eval 'test "$(dpkg-divert --list | sort)" = "$div_ours" &&
	    test "$(readlink -f "$STOCK_SFTP")" = "$OUR_DIR/sftp-server" &&
	    cmp -s "$STOCK_SCP.distrib" "$WORK/stock-scp"'
	dpkg -i "$WORK/sftp-new.deb" "$WORK/client-new.deb" >"$WORK/dpkg.out" 2>&1
	rc=$?
	check "new builds of openssh-sftp-server and openssh-client install" test $rc -eq 0
	[ $rc -eq 0 ] || sed 's/^/# /' "$WORK/dpkg.out"
	check "... to the diverted names; ours stay in place, diversions unchanged" \
	    eval 'test "$(tail -c 16 "$STOCK_SFTP.distrib")" = "# t-deb rebuild" &&
	    test "$(tail -c 16 "$STOCK_SCP.distrib")" = "# t-deb rebuild" &&
	    test "$(readlink -f "$STOCK_SFTP")" = "$OUR_DIR/sftp-server" &&
	    grep -q "atomic-upload scp wrapper" "$STOCK_SCP" &&
	    test "$(dpkg-divert --list | sort)" = "$div_ours"'
	client sftp "$WORK/full" after-upgrade >"$WORK/client.out" 2>&1
	as_user scp "$WORK/full" "$UP/local-copy" >>"$WORK/client.out" 2>&1
	check "... sftp uploads and client-mode scp still work" \
	    eval 'cmp -s "$WORK/full" "$UP/after-upgrade" && cmp -s "$WORK/full" "$UP/local-copy"'
	rm -f "$UP/after-upgrade" "$UP/local-copy"
	dpkg -i "$WORK/sftp-orig.deb" "$WORK/client-orig.deb" >"$WORK/dpkg.out" 2>&1
	check "the present builds reinstalled: .distrib holds them again" \
	    eval 'cmp -s "$STOCK_SFTP.distrib" "$WORK/stock-sftp-server" &&
	    cmp -s "$STOCK_SCP.distrib" "$WORK/stock-scp"'

	# ---- remove, purge ----
	if dpkg -r atomic-upload >"$WORK/dpkg.out" 2>&1; then
		ok "dpkg -r atomic-upload"
	else
		notok "dpkg -r atomic-upload"
		sed 's/^/# /' "$WORK/dpkg.out"
	fi
	check "after remove: dpkg's diversions are exactly as before" \
	    test "$(dpkg-divert --list | sort)" = "$div_before"
	check "after remove: $STOCK_SFTP is the stock one, byte for byte, same type and mode" \
	    eval 'cmp -s "$STOCK_SFTP" "$WORK/stock-sftp-server" && test "$(st "$STOCK_SFTP")" = "$st_sftp"'
	check "after remove: $STOCK_SCP is the stock one, byte for byte, same type and mode" \
	    eval 'cmp -s "$STOCK_SCP" "$WORK/stock-scp" && test "$(st "$STOCK_SCP")" = "$st_scp"'
	check "after remove: no .distrib, no $OUR_DIR; the conffile stays until purge" \
	    eval 'test ! -e "$STOCK_SFTP.distrib" && test ! -e "$STOCK_SCP.distrib" &&
	    test ! -e "$OUR_DIR" && test -f "$DEFAULTS"'

	# The stock server serves again: slowed down, its process is seen
	# writing into the upload directory (and the name exists at once:
	# the stock server writes in place).
	client_bg sftp "$WORK/slow" stock-sftp 8000 >"$WORK/client.out" 2>&1
	local cpid=$! stock_pid="" i t0=$SECONDS
	on_exit "kill -KILL -- -$cpid"
	for i in $(seq 1 300); do
		kill -0 "$cpid" 2>/dev/null || break
		stock_pid=$(serving_pid "$STOCK_SFTP") && break
		sleep 0.1
	done
	wait "$cpid"
	rc=$?
	check "after remove: sftp uploads again, served by the stock $STOCK_SFTP" \
	    eval 'test $rc -eq 0 && test -n "$stock_pid" && cmp -s "$WORK/slow" "$UP/stock-sftp"'
	[ -n "$stock_pid" ] || verbose "rc $rc, polls $i, $((SECONDS - t0)) s, no stock sftp-server seen; $(cat "$WORK/client.out")"
	client scp-O "$WORK/full" stock-scp-O >"$WORK/client.out" 2>&1
	check "after remove: scp -O uploads again (the stock scp -t)" \
	    cmp -s "$WORK/full" "$UP/stock-scp-O"

	if dpkg -P atomic-upload >"$WORK/dpkg.out" 2>&1; then
		ok "dpkg -P atomic-upload"
	else
		notok "dpkg -P atomic-upload"
		sed 's/^/# /' "$WORK/dpkg.out"
	fi
	check "after purge: not installed, $DEFAULTS gone" \
	    eval 'test -z "$(dpkg-query -W -f "\${db:Status-Abbrev}" atomic-upload 2>/dev/null | grep "^.[^n]")" &&
	    test ! -e "$DEFAULTS"'
	check "after purge: diversions as before, the stock programs byte for byte" \
	    eval 'test "$(dpkg-divert --list | sort)" = "$div_before" &&
	    cmp -s "$STOCK_SFTP" "$WORK/stock-sftp-server" && cmp -s "$STOCK_SCP" "$WORK/stock-scp"'
}

if [ "${AU_DEB_PHASE:-}" = overlay ]; then
	tid=t-deb	# one name in the TAP lines
	overlay_phase
	exit 0
fi

# ---------------------------------------------------------------------
# Part 1, on the host: build and lint.

need_root
# (FUZZ_CFLAGS always names -fsanitize: the build's own CFLAGS tell.)
if grep -Eq '^(CFLAGS|LDFLAGS)=.*-fsanitize' "$OBJ/Makefile" 2>/dev/null; then
	skip "$tid" "sanitizer build: the package is built with the plain toolchain from its own copy of the tree, so this would repeat the plain build's run"
	exit 0
fi

missing_tools() {
	local c
	for c in dpkg-buildpackage dpkg-checkbuilddeps dh lintian; do
		command -v "$c" >/dev/null 2>&1 || printf '%s ' "$c"
	done
}
if [ -n "$(missing_tools)" ]; then
	sh "$SRC/contrib/install-deps.sh" >"$WORK/install-deps.out" 2>&1
fi
if [ -n "$(missing_tools)" ]; then
	skip "$tid" "no $(missing_tools)(debhelper, dpkg-dev, lintian) and contrib/install-deps.sh could not install them"
	exit 0
fi
test_user_setup
start=$SECONDS

# The tree as a fresh clone has it.  SRC may be a git work tree (a
# developer's), or a copy with build products in it (contrib/test.sh's
# .build-NAME, inside the top work tree, which ignores it).
PKGROOT=$WORK/pkg
TREE=$PKGROOT/atomic-upload
mkdir -p "$TREE"
src_real=$(cd "$SRC" && pwd -P)
if [ "$(git -C "$SRC" rev-parse --show-toplevel 2>/dev/null)" = "$src_real" ]; then
	how="the files git knows"
	( cd "$SRC" && git ls-files -z --cached --others --exclude-standard |
	    while IFS= read -r -d '' f; do
		[ -e "$f" ] || [ -L "$f" ] && printf '%s\0' "$f"
	    done | tar --null -T - -cf - ) | tar -C "$TREE" -xf -
else
	how="a copy, cleaned with make maintainer-clean"
	tar -C "$SRC" --exclude=./.git --exclude=./regress/work \
	    --exclude='./.build-*' --exclude=./debian/atomic-upload \
	    --exclude=./debian/.debhelper --exclude=./debian/tmp -cf - . |
	    tar -C "$TREE" -xf -
	[ -f "$TREE/Makefile" ] && make -C "$TREE" maintainer-clean >/dev/null 2>&1
fi
check "a fresh tree ($how): no configure, no Makefile, no objects" \
    eval 'test -f "$TREE/debian/control" && test ! -e "$TREE/configure" &&
    test ! -e "$TREE/Makefile" && test -z "$(find "$TREE" -name "*.o" | head -1)"'
chown -R "$TEST_USER:" "$PKGROOT"

# As an unprivileged user: Rules-Requires-Root: no, so no fakeroot either.
( cd "$TREE" && as_user dpkg-buildpackage -us -uc -b -jauto ) >"$WORK/build.log" 2>&1
rc=$?
build_s=$((SECONDS - start))
ver=$(dpkg-parsechangelog -l "$TREE/debian/changelog" -S Version)
arch=$(dpkg --print-architecture)
DEB=$PKGROOT/atomic-upload_${ver}_$arch.deb
CHANGES=$PKGROOT/atomic-upload_${ver}_$arch.changes
if [ $rc -eq 0 ] && [ -f "$DEB" ]; then
	ok "dpkg-buildpackage -us -uc -b as $TEST_USER (${build_s} s)"
else
	notok "dpkg-buildpackage -us -uc -b as $TEST_USER"
	tail -40 "$WORK/build.log" | sed 's/^/# /'
	exit 1
fi
check "the build ran every unit test, all passed" \
    eval 'for t in "$TREE"/regress/unittests/test_*.c; do
	t=${t%.c}; [ "${t##*/}" = test_helper ] && continue
	grep -qx "== regress/unittests/${t##*/}" "$WORK/build.log" || exit 1
    done; grep -q "^ok " "$WORK/build.log" && ! grep -q "^not ok" "$WORK/build.log"'
( cd "$TREE" && as_user env DEB_BUILD_OPTIONS=nocheck make -f debian/rules override_dh_auto_test ) \
    >"$WORK/nocheck.log" 2>&1
rc=$?
check "DEB_BUILD_OPTIONS=nocheck: no unit test runs" \
    eval 'test $rc -eq 0 && ! grep -q -e "^== " -e "^ok " "$WORK/nocheck.log"'

dpkg-deb -c "$DEB" | awk '{ print $6 }' | sed 's|^\./|/|' > "$WORK/contents"
for f in "$OUR_DIR/sftp-server" "$OUR_DIR/scp" "$STOCK_SFTP" "$STOCK_SCP" "$DEFAULTS" \
    /usr/share/man/man8/atomic-sftp-server.8.gz /usr/share/man/man1/atomic-scp.1.gz \
    /usr/share/doc/atomic-upload/README.atomic.gz /usr/share/doc/atomic-upload/README.md.gz; do
	grep -qxF "$f" "$WORK/contents" || { verbose "not in the package: $f"; missing_file=yes; }
done
check "the package holds our programs, the two names, the defaults file, man pages, docs" \
    test -z "${missing_file:-}"
check "$DEFAULTS is the package's one conffile" \
    test "$(dpkg-deb --ctrl-tarfile "$DEB" | tar -xOf - ./conffiles)" = "$DEFAULTS"

# lintian: errors fail; warnings only if debian/ overrides them.  (With
# --show-overrides, --fail-on counts the overridden ones too: the verdict
# is read from the tags shown.  Exit status 1 is lintian failing to run.)
as_user lintian -I --show-overrides "$CHANGES" >"$WORK/lintian.out" 2>&1
rc=$?
verbose "lintian: $(grep -c '^E: ' "$WORK/lintian.out") errors, $(grep -c '^W: ' "$WORK/lintian.out") warnings, $(grep -c '^I: ' "$WORK/lintian.out") infos, $(grep -c '^O: ' "$WORK/lintian.out") overridden"
grep -e '^[EWIO]: ' "$WORK/lintian.out" | sed 's/^/#   /'
check "lintian: no error, no warning that is not overridden" \
    eval 'test $rc -eq 0 && ! grep -q -e "^E: " -e "^W: " "$WORK/lintian.out"'
[ $rc -eq 0 ] || sed 's/^/# /' "$WORK/lintian.out" | tail -5
# Each override says why: a group of override lines follows a comment.
overrides=()
for f in "$TREE"/debian/*lintian-overrides "$TREE"/debian/source/lintian-overrides; do
	[ -f "$f" ] && overrides+=("$f")
done
check "every lintian override has a comment" \
    awk 'FNR == 1 { prev = "" }
	/^[ \t]*$/ { prev = ""; next }
	/^#/ { prev = "comment"; next }
	{ if (prev == "") { print FILENAME ": " $0; bad = 1 } prev = "override" }
	END { exit bad }' /dev/null "${overrides[@]}"

# ---- part 2 ----
if ! unshare -m true 2>/dev/null || ! grep -qw overlay /proc/filesystems; then
	skip "install and remove in an overlay" "no mount namespaces or overlayfs here"
	exit 0
fi
host_div=$(dpkg-divert --list | sort)
cp -p "$STOCK_SFTP" "$WORK/host-sftp-server"
cp -p "$STOCK_SCP" "$WORK/host-scp"
ovl=$WORK/ovl
mkdir -p "$ovl/upper" "$ovl/work" "$ovl/merged"
cat > "$WORK/enter-overlay" <<EOF
set -e
mount --make-rprivate /
mount -t overlay overlay -o lowerdir=/,upperdir=$ovl/upper,workdir=$ovl/work $ovl/merged
for d in /proc /sys /dev /dev/pts; do mount --rbind \$d $ovl/merged\$d; done
# A /run of its own: sshd's PAM session must not reach the host's logind
# or D-Bus, if it has them.
mount -t tmpfs -o mode=755 tmpfs $ovl/merged/run
mkdir -p $ovl/merged$OBJ $ovl/merged$SRC
mount --rbind $OBJ $ovl/merged$OBJ
[ "$SRC" = "$OBJ" ] || mount --rbind $SRC $ovl/merged$SRC
set +e
exec chroot $ovl/merged env AU_DEB_PHASE=overlay AU_DEB=$DEB bash $SRC/regress/t-deb.sh
EOF
unshare -m --propagation private bash "$WORK/enter-overlay" 2>"$WORK/overlay.err"
orc=$?
if [ "$orc" -ne 0 ]; then
	notok "overlay phase exited $orc"
	sed 's/^/# /' "$WORK/overlay.err" | tail -20
fi
check "the host is untouched: diversions, sftp-server, scp, no atomic-upload installed" \
    eval 'test "$(dpkg-divert --list | sort)" = "$host_div" &&
    cmp -s "$STOCK_SFTP" "$WORK/host-sftp-server" && cmp -s "$STOCK_SCP" "$WORK/host-scp" &&
    test -z "$(dpkg-query -W -f "\${db:Status-Abbrev}" atomic-upload 2>/dev/null | grep "^.[^n]")"'
verbose "t-deb: $((SECONDS - start)) s in all"
