#!/bin/sh
# "make install-wrapper" / "make uninstall-wrapper": put the scp wrapper in
# the place of the system's scp, or put the system's scp back.
#
#   wrapper-install.sh install|uninstall
#
# From the Makefile, in the environment:
#   DESTDIR        a scratch root to work in ("" for the running system)
#   SYSTEM_SCP     the distribution's scp, where the wrapper goes (/usr/bin/scp)
#   ATOMIC_SCP     atomic-upload's scp, as installed by "make install"
#   DEFAULTS_FILE  the wrapper's settings (/etc/default/atomic-upload)
#   SCP_DIVERT     dpkg or rename; empty: dpkg where dpkg-divert exists and
#                  DESTDIR has a dpkg database, else rename
#   SRCDIR         where contrib/ is
#
# dpkg: a local diversion to SYSTEM_SCP.distrib, so that upgrades of
# openssh-client write the new scp there and leave the wrapper alone.
# rename: the RPM-world convention SYSTEM_SCP.bin; a package upgrade puts a
# new scp in place of the wrapper, and running install-wrapper again moves
# it aside in its turn.
#
# At every moment SYSTEM_SCP is a working program: the distribution's scp
# is hard-linked to its new name first (the diversion is recorded without
# dpkg-divert's own rename), then the wrapper is renamed over SYSTEM_SCP.
# An upload that sshd starts during the install gets one or the other.
set -eu

MARKER='atomic-upload scp wrapper'
root=${DESTDIR:-}
target=$root$SYSTEM_SCP
staged=$target.atomic-new

die() {
	echo "wrapper-install: $*" >&2
	exit 1
}

is_wrapper() {
	[ -f "$1" ] && grep -q "$MARKER" "$1" 2>/dev/null
}

# dpkg-divert, in DESTDIR's database when there is one.
divert() {
	if [ -n "$root" ]; then
		dpkg-divert --root="$root" "$@"
	else
		dpkg-divert "$@"
	fi
}

# --no-rename is explicit since dpkg 1.19; older ones never renamed
# unless asked.
no_rename=
have_dpkg=no
if command -v dpkg-divert >/dev/null 2>&1 && [ -d "$root/var/lib/dpkg" ]; then
	have_dpkg=yes
	dpkg-divert --help 2>/dev/null | grep -q -e '--no-rename' &&
	    no_rename=--no-rename
fi

# The diversion of SYSTEM_SCP, if dpkg has one: "LOCAL" for ours.
diverted_to() {
	[ "$have_dpkg" = yes ] || return 0
	[ -n "$(divert --listpackage "$SYSTEM_SCP")" ] || return 0
	divert --truename "$SYSTEM_SCP"
}

# Hard-link (copy where links are impossible) $1 to the name $2.
link_as() {
	rm -f "$2.atomic-new"
	ln "$1" "$2.atomic-new" 2>/dev/null || cp -p "$1" "$2.atomic-new"
	mv -f "$2.atomic-new" "$2"
}

do_install() {
	method=${SCP_DIVERT:-}
	if [ -z "$method" ]; then
		if [ "$have_dpkg" = yes ]; then method=dpkg; else method=rename; fi
	fi
	case $method in
	dpkg) [ "$have_dpkg" = yes ] ||
		die "SCP_DIVERT=dpkg but no dpkg-divert or no $root/var/lib/dpkg"
		distrib=$SYSTEM_SCP.distrib ;;
	rename) distrib=$SYSTEM_SCP.bin ;;
	*) die "SCP_DIVERT=$method: dpkg or rename" ;;
	esac

	# The wrapper without our scp would refuse every scp upload.
	[ -x "$root$ATOMIC_SCP" ] ||
	    die "$root$ATOMIC_SCP is not installed: run make install first"
	[ -e "$target" ] || [ -L "$target" ] ||
	    die "$target does not exist: no system scp to wrap"

	# The paths go into single-quoted strings through sed.
	for p in "$ATOMIC_SCP" "$distrib" "$DEFAULTS_FILE"; do
		case $p in
		/*) ;;
		*) die "$p: not an absolute path" ;;
		esac
		case $p in
		*[\'\|\&\\]*) die "$p: no ' | & or \\ in paths, please" ;;
		esac
	done
	trap 'rm -f "$staged"' EXIT
	sed -e "s|@ATOMIC_SCP@|$ATOMIC_SCP|g" \
	    -e "s|@DISTRIB_SCP@|$distrib|g" \
	    -e "s|@DEFAULTS_FILE@|$DEFAULTS_FILE|g" \
	    "$SRCDIR/contrib/scp-wrapper.sh" > "$staged"
	chmod 0755 "$staged"

	current=$(diverted_to)
	if [ -n "$current" ] && [ "$current" != "$distrib" ]; then
		die "$SYSTEM_SCP is already diverted to $current; not touching it"
	fi
	if is_wrapper "$target"; then
		# Installed before: refresh the wrapper only.
		[ -x "$root$distrib" ] ||
		    die "$target is our wrapper but $root$distrib is missing; reinstall the scp package"
		if [ "$method" = dpkg ] && [ -z "$current" ]; then
			divert --local $no_rename --divert "$distrib" --add "$SYSTEM_SCP" >/dev/null
		fi
		echo "wrapper-install: refreshing the wrapper at $target"
	elif [ "$method" = dpkg ]; then
		if [ -n "$current" ] || [ -e "$root$distrib" ]; then
			die "$root$distrib exists but $target is not our wrapper; sort that out by hand"
		fi
		link_as "$target" "$root$distrib"
		divert --local $no_rename --divert "$distrib" --add "$SYSTEM_SCP" || {
			rm -f "$root$distrib"
			die "dpkg-divert failed; nothing changed"
		}
	else
		# A package upgrade that replaced the wrapper brings a newer scp:
		# it becomes the one the wrapper runs.
		[ -e "$root$distrib" ] &&
		    echo "wrapper-install: $target is a new scp (package upgrade?): it replaces $root$distrib"
		link_as "$target" "$root$distrib"
	fi
	mv -f "$staged" "$target"
	trap - EXIT
	echo "wrapper-install: $target is the wrapper; the system's scp is $root$distrib; server modes run $ATOMIC_SCP"

	if [ -e "$root$DEFAULTS_FILE" ]; then
		echo "wrapper-install: keeping $root$DEFAULTS_FILE"
	else
		mkdir -p "$(dirname "$root$DEFAULTS_FILE")"
		cp "$SRCDIR/contrib/atomic-upload.default" "$root$DEFAULTS_FILE"
		chmod 0644 "$root$DEFAULTS_FILE"
		echo "wrapper-install: installed $root$DEFAULTS_FILE"
	fi
}

do_uninstall() {
	current=$(diverted_to)
	if [ -n "$current" ] && [ "$current" != "$SYSTEM_SCP.distrib" ]; then
		die "$SYSTEM_SCP is diverted to $current, not by us; not touching it"
	fi
	if [ -n "$current" ]; then
		distrib=$current
	elif [ -e "$target.bin" ]; then
		distrib=$SYSTEM_SCP.bin
	elif [ -e "$target.distrib" ]; then
		distrib=$SYSTEM_SCP.distrib
	else
		distrib=
	fi

	if ! is_wrapper "$target"; then
		if [ -e "$target" ] && [ -n "$distrib" ] && [ -z "$current" ]; then
			# Replaced by a package upgrade (rename method): the scp
			# in place is the newer one; the moved-aside one is stale.
			rm -f "$root$distrib"
			echo "wrapper-install: $target is not the wrapper (a package upgrade?); removed the stale $root$distrib"
		elif [ -n "$current" ]; then
			die "$target is not our wrapper although diverted to $distrib; sort that out by hand"
		else
			echo "wrapper-install: $target is not the wrapper: nothing to undo"
		fi
	else
		[ -n "$distrib" ] && [ -e "$root$distrib" ] ||
		    die "the system's scp is missing (no $target.distrib or .bin): reinstall the scp package, then remove $target"
		# Record first, then one rename over the wrapper: scp never
		# goes missing.
		if [ -n "$current" ]; then
			divert --local $no_rename --divert "$distrib" --remove "$SYSTEM_SCP"
		fi
		mv -f "$root$distrib" "$target"
		echo "wrapper-install: $target is the system's scp again"
	fi

	if [ -f "$root$DEFAULTS_FILE" ]; then
		if cmp -s "$SRCDIR/contrib/atomic-upload.default" "$root$DEFAULTS_FILE"; then
			rm -f "$root$DEFAULTS_FILE"
		else
			echo "wrapper-install: keeping $root$DEFAULTS_FILE (changed locally; remove it by hand)"
		fi
	fi
}

case ${1:-} in
install) do_install ;;
uninstall) do_uninstall ;;
*) die "usage: wrapper-install.sh install|uninstall" ;;
esac
