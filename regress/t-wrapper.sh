#!/bin/bash
# The scp wrapper (contrib/scp-wrapper.sh) and make install-wrapper /
# uninstall-wrapper (contrib/wrapper-install.sh).
#
# 1. Scratch roots (DESTDIR): a tiny chroot holding dash, a stand-in for
#    the distribution's scp and one for ours, each of which records its
#    argv and the ATOMIC_UPLOAD_* environment.  "make install-wrapper
#    DESTDIR=root" in a root with a dpkg database (dpkg-divert --root) and
#    in one without (the .bin convention); then server modes (-t, -f,
#    clustered, with --) must reach ours with the settings from the
#    defaults file and the environment, client modes the system's with the
#    environment untouched; a missing ours is refused (or falls back when
#    configured); uninstall-wrapper puts the original back byte for byte.
# 2. The real system, without touching it: an overlay of / in a private
#    mount namespace, chrooted into, where "make install-wrapper" runs the
#    real dpkg-divert on the real (copied-on-write) dpkg database.  The
#    namespace and everything written in it vanish when the test ends, so
#    nothing needs undoing on the host and other tests that run /usr/bin/scp
#    at the same time are never affected.  With atomic-upload's scp built,
#    a real sshd in there serves "scp -O" through the wrapper and the
#    upload is staged in the directory from /etc/default/atomic-upload.
tid=t-wrapper
# The overlay phase (part 2) runs this script again inside the chroot,
# with a WORK of its own: part 1's WORK holds the overlay's upper layer.
[ "${AU_WRAPPER_PHASE:-}" = overlay ] && tid=t-wrapper-overlay
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"
if [ "${AU_WRAPPER_PHASE:-}" = overlay ]; then
	tid=t-wrapper	# one name in the TAP lines
	. "$SRC/regress/wrapper-overlay-phase.sh"
	exit 0
fi

need_root
CHROOT=$(command -v chroot) || { skip "$tid" "no chroot"; exit 0; }

PREFIX=/usr/local
OURS=$PREFIX/libexec/atomic-upload/scp	# the Makefile's default scpdir
DEFAULTS=/etc/default/atomic-upload

# A root that can run /bin/sh scripts: dash and the libraries it needs.
make_root() {
	local r=$1 lib
	rm -rf "$r"
	mkdir -p "$r/usr/bin" "$r/usr/lib" "$r/etc" "$r/tmp" "$r/$PREFIX/libexec/atomic-upload"
	ln -s usr/bin "$r/bin"
	cp /bin/dash "$r/usr/bin/sh"
	for lib in $(ldd /bin/dash | grep -o '/[^ ]*'); do
		mkdir -p "$r$(dirname "$lib")"
		cp -L "$lib" "$r$lib"
	done
	# The stand-ins: each records who ran, every argument, and the
	# environment the wrapper is responsible for.
	cat > "$WORK/recorder" <<'EOF'
{
	echo "prog=$PROG_NAME"
	for a do printf 'arg=<%s>\n' "$a"; done
	for v in TMPDIR SYNC STAGING MODIFY LOG FALLBACK; do
		eval "s=\${ATOMIC_UPLOAD_$v+set} x=\${ATOMIC_UPLOAD_$v-}"
		if [ -n "$s" ]; then echo "$v=<$x>"; else echo "$v unset"; fi
	done
	echo "PATH=<$PATH>"
	echo "LD_PRELOAD=<${LD_PRELOAD-}>"
} > /rec
EOF
	{ echo '#!/bin/sh'; echo "PROG_NAME=stock-$RANDOM$RANDOM"; cat "$WORK/recorder"; } > "$r/usr/bin/scp"
	{ echo '#!/bin/sh'; echo 'PROG_NAME=ours'; cat "$WORK/recorder"; } > "$r$OURS"
	printf '#!/bin/sh\nprintf "%%s\\n" "$*" >> /logger.out\n' > "$r/usr/bin/logger"
	chmod 755 "$r/usr/bin/scp" "$r$OURS" "$r/usr/bin/logger"
	stock_name=$(sed -n 's/^PROG_NAME=//p' "$r/usr/bin/scp")
}

# wrap [VAR=VALUE...] -- ARG...: run the installed /usr/bin/scp in $R with
# exactly that environment; $rc, $WORK/out (stdout+stderr), $R/rec.
wrap() {
	local envs=()
	while [ "$1" != -- ]; do envs+=("$1"); shift; done
	shift
	rm -f "$R/rec" "$R/logger.out"
	env -i PATH=/usr/bin "${envs[@]}" "$CHROOT" "$R" /usr/bin/scp "$@" \
	    >"$WORK/out" 2>&1
	rc=$?
}

# reached WHO ARG...: the last wrap ran WHO (ours|stock) with exactly ARGs.
reached() {
	local who=$1 want got a
	shift
	[ "$who" = stock ] && who=$stock_name
	want=$(echo "prog=$who"; for a do printf 'arg=<%s>\n' "$a"; done)
	got=$(awk '/^(TMPDIR|SYNC|STAGING|MODIFY|LOG|FALLBACK|PATH|LD_PRELOAD)[ =]/{exit} {print}' "$R/rec" 2>/dev/null)
	if [ "$got" != "$want" ]; then
		verbose "wanted: $want"
		verbose "got:    $got"
		verbose "output: $(cat "$WORK/out")"
		return 1
	fi
}

# env_is NAME VALUE|unset: what the last wrapped program saw.
env_is() {
	local line
	if [ "$2" = unset ]; then line="$1 unset"; else line="$1=<$2>"; fi
	grep -qxF -- "$line" "$R/rec" 2>/dev/null && return 0
	verbose "wanted '$line' in: $(tr '\n' ' ' < "$R/rec" 2>/dev/null)"
	return 1
}

mk() { make -s -C "$OBJ" "$@" prefix=$PREFIX >"$WORK/make.out" 2>&1; }

# ---- 1a. dpkg-divert --root in a scratch root with a dpkg database ----
R=$WORK/root
make_root "$R"
mkdir -p "$R/var/lib/dpkg"
cp -p "$R/usr/bin/scp" "$WORK/original-scp"
orig_ino=$(stat -c %i "$R/usr/bin/scp")

# Refused while our scp is not installed: the wrapper would turn every
# scp upload away.
mv "$R$OURS" "$WORK/ours.away"
if ! mk install-wrapper DESTDIR="$R" && cmp -s "$R/usr/bin/scp" "$WORK/original-scp" &&
    [ ! -e "$R/usr/bin/scp.distrib" ] && [ ! -s "$R/var/lib/dpkg/diversions" ]; then
	ok "install-wrapper refuses without our scp and changes nothing"
else
	notok "install-wrapper refuses without our scp and changes nothing"
	cat "$WORK/make.out"
fi
mv "$WORK/ours.away" "$R$OURS"

if mk install-wrapper DESTDIR="$R"; then
	ok "install-wrapper DESTDIR (dpkg)"
else
	notok "install-wrapper DESTDIR (dpkg)"; cat "$WORK/make.out"
fi
check "dpkg records a local diversion to scp.distrib" \
    test "$(dpkg-divert --root="$R" --listpackage /usr/bin/scp)/$(dpkg-divert --root="$R" --truename /usr/bin/scp)" = "LOCAL//usr/bin/scp.distrib"
check "the system's scp is scp.distrib, same inode" \
    test "$(stat -c %i "$R/usr/bin/scp.distrib" 2>/dev/null)" = "$orig_ino"
check "the wrapper has its paths filled in" \
    grep -qxF "au_atomic_scp='$OURS'" "$R/usr/bin/scp"
check "no placeholder left in the wrapper" \
    test -z "$(grep -n '@[A-Z_]*@' "$R/usr/bin/scp")"
check "wrapper mode 755, defaults file 644" \
    test "$(stat -c %a "$R/usr/bin/scp") $(stat -c %a "$R$DEFAULTS" 2>/dev/null)" = "755 644"

# Server modes, as sshd runs them, with the installed (template) defaults.
wrap -- -t /srv/in
check "scp -t reaches ours" reached ours -t /srv/in
check "... with ATOMIC_UPLOAD_SYNC=full from the defaults file" env_is SYNC full
check "... and no staging dir (empty in the template)" env_is TMPDIR unset
for args in "-f /srv/out/file" "-v -r -p -d -t -- /srv/in" "-rt /srv/in" \
    "-pf /srv/out/f" "-prt /srv/in" "-vrpdt /srv/in" "-t -- -dash-file" \
    "-q -f -- /srv/x" "-d -t /srv" "-v -f -p /a" "-4 -t /a"; do
	wrap -- $args
	check "scp $args reaches ours" reached ours $args
done
wrap -- -t "/srv/a name" $'with\nnewline' '' '*'
check "arguments pass through exactly (spaces, newline, empty, glob)" \
    reached ours -t "/srv/a name" $'with\nnewline' '' '*'

# Client modes reach the system's, with the environment left alone.
for args in "-O a host:b" "-r x y" "-p -q a b" "a -t" "a b -f" \
    "-o -t a host:" "-oFoo=-t a b" "-P22t a b" "-P -t a b" "-i -f a b" \
    "-S -t a b" "-l 100t a b" "-- -t x" "-3 -F cfg h:a h:b" "-" \
    "-V" "-s a b" "-T a b" "-J -f a b"; do
	wrap -- $args
	check "scp $args reaches the system's" reached stock $args
done
wrap -- 
check "scp with no arguments reaches the system's" reached stock
wrap -- -O a 'host:my file'
check "client arguments pass through exactly" reached stock -O a 'host:my file'
check "... without the defaults file's settings" env_is SYNC unset
wrap ATOMIC_UPLOAD_TMPDIR=/mine -- -O a host:
check "... and with the caller's own environment" env_is TMPDIR /mine

# The defaults file, read without executing it.
cat > "$R$DEFAULTS" <<'EOF'
# a comment
   ATOMIC_UPLOAD_TMPDIR="/srv/stage %u"   # quoted, with a space
export ATOMIC_UPLOAD_SYNC=none
ATOMIC_UPLOAD_SYNC=data # last one wins
ATOMIC_UPLOAD_MODIFY='inplace'
ATOMIC_UPLOAD_LOG=none
ATOMIC_UPLOAD_STAGING=$(touch /pwned)
ATOMIC_UPLOAD_STAGING=
PATH=/evil
LD_PRELOAD=/evil.so
ATOMIC_UPLOAD_BOGUS=x
not a setting
ATOMIC_UPLOAD_FALLBACK=no
EOF
wrap -- -t /srv/in
check "defaults file: quoted value with a space" env_is TMPDIR "/srv/stage %u"
check "defaults file: export, trailing comment, last line wins" env_is SYNC data
check "defaults file: single quotes" env_is MODIFY inplace
check "defaults file: ATOMIC_UPLOAD_LOG" env_is LOG none
check "defaults file: empty means unset" env_is STAGING unset
check "defaults file: nothing executed" test ! -e "$R/pwned"
check "defaults file: only ATOMIC_UPLOAD_ settings (PATH)" env_is PATH /usr/bin
check "defaults file: only ATOMIC_UPLOAD_ settings (LD_PRELOAD)" env_is LD_PRELOAD ""
wrap ATOMIC_UPLOAD_TMPDIR=/from-env -- -t /srv/in
check "the environment wins over the file" env_is TMPDIR /from-env
check "... for that variable only" env_is SYNC data
wrap ATOMIC_UPLOAD_TMPDIR= -- -t /srv/in
check "the environment wins even when empty" env_is TMPDIR ""
rm -f "$R$DEFAULTS"
wrap -- -t /srv/in
check "no defaults file: still ours, nothing set" \
    eval 'reached ours -t /srv/in && env_is TMPDIR unset && env_is SYNC unset'

# Our scp missing: refused, in the protocol and in the log.
mv "$R$OURS" "$WORK/ours.away"
wrap -- -t /srv/in
if [ "$rc" -eq 1 ] && [ ! -e "$R/rec" ] && head -c1 "$WORK/out" | od -An -c | grep -q '001' &&
    grep -q 'auth.err' "$R/logger.out" 2>/dev/null; then
	ok "ours missing: server mode refused (\\1 line, exit 1, auth.err log)"
else
	notok "ours missing: server mode refused (\\1 line, exit 1, auth.err log)"
	verbose "rc=$rc out=$(cat "$WORK/out") log=$(cat "$R/logger.out" 2>/dev/null)"
fi
wrap -- -O a host:b
check "ours missing: client mode unaffected" reached stock -O a host:b
mkdir "$R$OURS"
wrap -- -t /srv/in
check "ours a directory: refused the same way" \
    eval '[ "$rc" -eq 1 ] && [ ! -e "$R/rec" ] && grep -q "not available" "$WORK/out"'
rmdir "$R$OURS"
wrap ATOMIC_UPLOAD_FALLBACK=yes -- -t /srv/in
check "ours missing, ATOMIC_UPLOAD_FALLBACK=yes: the system's scp serves" \
    eval 'reached stock -t /srv/in && grep -q auth.warning "$R/logger.out"'
echo "ATOMIC_UPLOAD_FALLBACK=yes" > "$R$DEFAULTS"
wrap -- -f /srv/x
check "... also when set in the defaults file" reached stock -f /srv/x
mv "$WORK/ours.away" "$R$OURS"

# Install again over an installed wrapper: only the wrapper is refreshed.
echo "ATOMIC_UPLOAD_SYNC=data" > "$R$DEFAULTS"
if mk install-wrapper DESTDIR="$R" && cmp -s "$R/usr/bin/scp.distrib" "$WORK/original-scp" &&
    grep -qF "atomic-upload scp wrapper" "$R/usr/bin/scp" &&
    [ "$(cat "$R$DEFAULTS")" = "ATOMIC_UPLOAD_SYNC=data" ]; then
	ok "install-wrapper twice: system's scp kept, defaults file kept"
else
	notok "install-wrapper twice: system's scp kept, defaults file kept"
	cat "$WORK/make.out"
fi
wrap -- -O a b
check "... client mode still reaches the system's" reached stock -O a b

# Uninstall: the original, byte for byte, same inode, nothing left over.
if mk uninstall-wrapper DESTDIR="$R"; then
	ok "uninstall-wrapper DESTDIR (dpkg)"
else
	notok "uninstall-wrapper DESTDIR (dpkg)"; cat "$WORK/make.out"
fi
check "the original scp is back, byte-identical, same inode and mode" \
    eval 'cmp -s "$R/usr/bin/scp" "$WORK/original-scp" &&
    test "$(stat -c %i.%a "$R/usr/bin/scp")" = "$orig_ino.$(stat -c %a "$WORK/original-scp")"'
check "no scp.distrib, no diversion left" \
    eval 'test ! -e "$R/usr/bin/scp.distrib" && test -z "$(dpkg-divert --root="$R" --list "*scp*")"'
check "a locally changed defaults file is kept" test -f "$R$DEFAULTS"
wrap -- -t /srv/in
check "after uninstall, scp -t reaches the system's" reached stock -t /srv/in

# A second cycle with the template defaults: uninstall removes the file.
mk install-wrapper DESTDIR="$R" && rm -f "$R$DEFAULTS" && mk install-wrapper DESTDIR="$R"
mk uninstall-wrapper DESTDIR="$R"
check "an unchanged defaults file is removed by uninstall-wrapper" \
    eval 'test ! -e "$R$DEFAULTS" && cmp -s "$R/usr/bin/scp" "$WORK/original-scp"'

# ---- 1b. no dpkg database: the scp.bin convention ----
R=$WORK/root-rpm
make_root "$R"
cp -p "$R/usr/bin/scp" "$WORK/original-scp"
if mk install-wrapper DESTDIR="$R" && cmp -s "$R/usr/bin/scp.bin" "$WORK/original-scp" &&
    [ ! -e "$R/usr/bin/scp.distrib" ]; then
	ok "install-wrapper without dpkg: the system's scp is scp.bin"
else
	notok "install-wrapper without dpkg: the system's scp is scp.bin"; cat "$WORK/make.out"
fi
wrap -- -rt /srv/in
check "(.bin) scp -rt reaches ours" reached ours -rt /srv/in
wrap -- -r a b
check "(.bin) scp -r a b reaches the system's" reached stock -r a b
# A package upgrade (rpm -U) puts a new scp where the wrapper was; running
# install-wrapper again makes the new one the system's scp.
{ echo '#!/bin/sh'; echo "PROG_NAME=stock-v2"; cat "$WORK/recorder"; } > "$R/usr/bin/scp.new"
chmod 755 "$R/usr/bin/scp.new"
mv "$R/usr/bin/scp.new" "$R/usr/bin/scp"
cp -p "$R/usr/bin/scp" "$WORK/upgraded-scp"
mk install-wrapper DESTDIR="$R"
stock_name=stock-v2
wrap -- -O a b
check "(.bin) after a package upgrade, install-wrapper again: client reaches the new scp" \
    reached stock -O a b
mk uninstall-wrapper DESTDIR="$R"
check "(.bin) uninstall-wrapper: the new scp is back, nothing left" \
    eval 'cmp -s "$R/usr/bin/scp" "$WORK/upgraded-scp" && test ! -e "$R/usr/bin/scp.bin"'

# ---- 2. the real system, in an overlay that vanishes with the test ----
ovl=$WORK/ovl
mkdir -p "$ovl/upper" "$ovl/work" "$ovl/merged"
cat > "$WORK/enter-overlay" <<EOF
set -e
mount --make-rprivate /
mount -t overlay overlay -o lowerdir=/,upperdir=$ovl/upper,workdir=$ovl/work $ovl/merged
for d in /proc /sys /dev /dev/pts /run; do mount --rbind \$d $ovl/merged\$d; done
mkdir -p $ovl/merged$OBJ $ovl/merged$SRC
mount --rbind $OBJ $ovl/merged$OBJ
[ "$SRC" = "$OBJ" ] || mount --rbind $SRC $ovl/merged$SRC
# Other tests' programs in the shared bin directory must not stand in
# for the wrapper: an empty one in here.
mkdir -p $OBJ/regress/work/bin
mount -t tmpfs tmpfs $ovl/merged$OBJ/regress/work/bin
set +e
exec chroot $ovl/merged env AU_WRAPPER_PHASE=overlay bash $SRC/regress/t-wrapper.sh
EOF
if ! unshare -m true 2>/dev/null || ! grep -qw overlay /proc/filesystems; then
	skip "real-system install in an overlay" "no mount namespaces or overlayfs here"
	exit 0
fi
# The overlay's own phase prints its TAP lines; a failure to enter it is one.
unshare -m --propagation private bash "$WORK/enter-overlay" 2>"$WORK/overlay.err"
orc=$?
if [ "$orc" -ne 0 ]; then
	notok "overlay phase exited $orc"
	sed 's/^/# /' "$WORK/overlay.err" | tail -20
fi
check "the host's /usr/bin/scp is untouched" \
    eval 'test -z "$(dpkg-divert --list /usr/bin/scp)" && ! grep -qF "atomic-upload scp wrapper" /usr/bin/scp'
