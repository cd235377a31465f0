#!/bin/bash
# make install / make uninstall into a DESTDIR: the files land where the
# directory variables say, with the right modes; our scp goes into its own
# directory (scpdir), never over or ahead of the system's /usr/bin/scp;
# uninstall removes exactly what install put.  Then make distclean in a
# scratch clone leaves only what autoreconf made.
tid=t-install
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"

have_scp=no
[ -x "$OBJ/scp" ] && have_scp=yes
have_man1=no
[ -f "$SRC/scp.1" ] && have_man1=yes

# files_under DIR: every non-directory below DIR, with its mode.
files_under() {
	(cd "$1" && find . ! -type d -printf '%m %p\n' | sort)
}

# install_case NAME EXPECTED-FILE MAKE-VARIABLES...
install_case() {
	local name=$1 expected=$2 d=$WORK/$1
	shift 2
	rm -rf "$d"
	mkdir -p "$d"
	if make -s -C "$OBJ" install DESTDIR="$d" "$@" >"$WORK/make.out" 2>&1; then
		ok "$name: make install"
	else
		notok "$name: make install"
		sed 's/^/# /' "$WORK/make.out"
	fi
	files_under "$d" > "$WORK/$name.got"
	if diff "$expected" "$WORK/$name.got" >"$WORK/$name.diff"; then
		ok "$name: files and modes as expected"
	else
		notok "$name: files and modes as expected"
		sed 's/^/# /' "$WORK/$name.diff"
	fi
	check "$name: nothing at /usr/bin/scp or in bindir" \
	    eval 'test -z "$(cd "$d" && find . -path "*/bin/*")"'
	if cmp -s "$OBJ/sftp-server" "$(find "$d" -name sftp-server -type f | head -1)"; then
		ok "$name: the installed sftp-server is the built one"
	else
		notok "$name: the installed sftp-server is the built one"
	fi
	make -s -C "$OBJ" uninstall DESTDIR="$d" "$@" >"$WORK/make.out" 2>&1 ||
	    { notok "$name: make uninstall"; sed 's/^/# /' "$WORK/make.out"; }
	check "$name: make uninstall leaves no file behind" \
	    test -z "$(files_under "$d")"
	check "$name: ... nor our own scp directory" \
	    test -z "$(cd "$d" && find . -type d -name atomic-upload)"
}

# expect LIBEXECDIR SCPDIR MANDIR: the list install must produce.
expect() {
	{
		echo "755 .$1/sftp-server"
		[ "$have_scp" = yes ] && echo "755 .$2/scp"
		echo "644 .$3/man8/atomic-sftp-server.8"
		[ "$have_man1" = yes ] && echo "644 .$3/man1/atomic-scp.1"
	} | sort > "$WORK/expected"
}

# The defaults (configure's prefix, /usr/local unless told otherwise).
prefix=$(sed -n 's/^prefix=[[:space:]]*//p' "$OBJ/Makefile")
expect "$prefix/libexec" "$prefix/libexec/atomic-upload" "$prefix/share/man"
install_case default "$WORK/expected"
case $prefix in
/usr) verbose "configured with prefix /usr: the scp check still holds, scp is in libexec" ;;
esac

expect /opt/au/libexec /opt/au/libexec/atomic-upload /opt/au/share/man
install_case prefix "$WORK/expected" prefix=/opt/au

expect /usr/lib/x-au /srv/au-scp /usr/share/man
install_case dirs "$WORK/expected" prefix=/usr libexecdir=/usr/lib/x-au \
    scpdir=/srv/au-scp mandir=/usr/share/man bindir=/usr/bin

# What git ignores in a tree (the build's products), on one line.
ignored_in() {
	(cd "$1" && git status --ignored --porcelain | grep '^!!' | sort | tr '\n' ' ')
}

# A scratch clone: configure's --prefix/--libexecdir/--mandir reach the
# install; distclean leaves only autoreconf's products, maintainer-clean
# nothing at all.  Targets are made with "make -t" (empty files, no
# compiler): this checks the Makefile's lists, not the code.
# The scratch tree is a git repository of its own whatever $SRC is (CI
# runs on a copy without .git): git add honours .gitignore, git clean then
# removes every build product that came along.
if command -v git >/dev/null; then
	c=$WORK/clone
	mkdir -p "$c"
	tar -C "$SRC" --exclude=./.git --exclude='./.build-*' --exclude=./regress/work \
	    -cf - . | tar -C "$c" -xf -
	(cd "$c" && git init -q && git add -A && git -c user.name=t -c user.email=t@localhost \
	    commit -q -m scratch && git clean -fdxq)
	if [ -f "$SRC/configure" ] && [ -f "$SRC/config.h.in" ]; then
		cp "$SRC/configure" "$SRC/config.h.in" "$c/"
	else
		(cd "$c" && autoreconf -fi >/dev/null 2>&1)
	fi
	if (cd "$c" && ./configure --prefix=/opt/cfg --libexecdir=/opt/cfg/lx \
	    --mandir=/opt/cfg/m >/dev/null 2>&1 &&
	    make -s -t all unittests helpers regress/clients/libssh2_upload >/dev/null 2>&1 &&
	    make -s install DESTDIR="$c/dest" >/dev/null 2>&1); then
		{
			echo "755 ./opt/cfg/lx/sftp-server"
			[ -f "$c/scp" ] && echo "755 ./opt/cfg/lx/atomic-upload/scp"
			echo "644 ./opt/cfg/m/man8/atomic-sftp-server.8"
			[ -f "$c/scp.1" ] && echo "644 ./opt/cfg/m/man1/atomic-scp.1"
		} | sort > "$WORK/expected"
		files_under "$c/dest" > "$WORK/cfg.got"
		check "configure --prefix --libexecdir --mandir: make install follows them" \
		    diff "$WORK/expected" "$WORK/cfg.got"
		rm -rf "$c/dest"
		mkdir -p "$c/regress/work/something"
		(cd "$c" && make -s distclean >/dev/null 2>&1)
		check "make distclean leaves only configure and config.h.in" \
		    test "$(ignored_in "$c")" = "!! config.h.in !! configure "
		(cd "$c" && ./configure >/dev/null 2>&1 && make -s maintainer-clean >/dev/null 2>&1)
		check "make maintainer-clean leaves a pristine tree" \
		    test -z "$(ignored_in "$c")"
	else
		notok "configure and make -t in a scratch clone"
	fi
	rm -rf "$c"
else
	skip "configure, distclean in a scratch clone" "no git"
fi
