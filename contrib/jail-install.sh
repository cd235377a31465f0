#!/bin/sh
# atomic-upload jail installer: puts the static sftp-server and scp into a
# ChrootDirectory jail, with a staging directory for the jailed user, and
# prints the sshd_config block to use.  README.atomic, "Chroot jails".
#
# usage: jail-install.sh [options] JAILROOT
#        jail-install.sh --uninstall JAILROOT
#   --user NAME     the account jailed here: owns the upload and staging
#                   directories (required to install)
#   --upload DIR    upload directory inside the jail (default /upload)
#   --staging DIR   staging directory inside the jail
#                   (default /.upload-staging)
#   --bindir DIR    where the programs go inside the jail (default
#                   /usr/libexec/atomic-upload); as a login shell the
#                   same path must hold an executable outside the jail too
#   --from DIR      where the built programs are (default: the build
#                   directory this script belongs to, else the current one)
#
# Idempotent: running it again changes nothing that is already right.
# What it creates is listed in BINDIR/.jail-install inside the jail, so
# --uninstall removes exactly that (directories only when empty, a
# non-empty upload directory is kept) and gives JAILROOT back the owner
# and mode it had.  Needs root.
set -eu

prog="jail-install.sh"
die() { echo "$prog: $*" >&2; exit 1; }
say() { echo "$prog: $*"; }

uninstall=0 user="" upload=/upload staging=/.upload-staging
bindir=/usr/libexec/atomic-upload from=""
while [ $# -gt 0 ]; do
	case $1 in
	--uninstall) uninstall=1 ;;
	--user) [ $# -ge 2 ] || die "--user needs a name"; user=$2; shift ;;
	--upload) [ $# -ge 2 ] || die "--upload needs a directory"; upload=$2; shift ;;
	--staging) [ $# -ge 2 ] || die "--staging needs a directory"; staging=$2; shift ;;
	--bindir) [ $# -ge 2 ] || die "--bindir needs a directory"; bindir=$2; shift ;;
	--from) [ $# -ge 2 ] || die "--from needs a directory"; from=$2; shift ;;
	--) shift; break ;;
	-*) die "unknown option $1" ;;
	*) break ;;
	esac
	shift
done
[ $# -eq 1 ] || die "usage: $prog [--user NAME] [--upload DIR] [--staging DIR] [--bindir DIR] [--from DIR] JAILROOT | --uninstall JAILROOT"
jail=$1
[ "$(id -u)" -eq 0 ] || die "needs root"
case $jail in /*) ;; *) die "JAILROOT must be an absolute path: $jail" ;; esac
for d in "$upload" "$staging" "$bindir"; do
	case $d in /*) ;; *) die "paths inside the jail are absolute: $d" ;; esac
	case /$d/ in */../*|*/./*) die "no . or .. in $d" ;; esac
done
jail=$(printf '%s\n' "$jail" | sed 's|/*$||; s|//*|/|g')
[ -n "$jail" ] || die "JAILROOT cannot be /"
manifest="$jail$bindir/.jail-install"

# sshd refuses a ChrootDirectory unless every component of its path,
# from /, belongs to root and no one else may write it.
check_path_component() {
	owner=$(stat -c %u "$1") mode=$(stat -c %a "$1")
	[ "$owner" = 0 ] && [ $(( 0$mode & 022 )) -eq 0 ]
}

if [ $uninstall -eq 1 ]; then
	{ [ -f "$manifest" ] && [ -f "$manifest.dirs" ]; } ||
	    die "$jail: not installed by $prog (no $manifest)"
	files=$(cat "$manifest")
	dirs=$(cat "$manifest.dirs")
	# Named temporaries a killed server left in the staging directory
	# (the jail's own static program, run as root from outside).
	printf '%s\n' "$files" | sed -n 's/^staging //p' | while IFS= read -r path; do
		"$jail$bindir/sftp-server" -S "$jail$path" >/dev/null 2>&1 || :
	done
	printf '%s\n' "$files" | sed -n 's/^file //p' | while IFS= read -r path; do
		rm -f "$jail$path"
	done
	rm -f "$manifest" "$manifest.dirs"
	# Directories we made, deepest first; one that is not empty (an
	# upload directory with uploads in it) is kept.
	printf '%s\n' "$dirs" | sed -n 's/^\(dir\|staging\|upload\) //p' |
	    awk '{ print length($0) " " $0 }' | sort -rn | cut -d' ' -f2- |
	    while IFS= read -r path; do
		rmdir "$jail$path" 2>/dev/null ||
		    say "kept $jail$path (not empty)"
	    done
	# Directories that were there: their owner and mode as they were.
	printf '%s\n' "$dirs" | sed -n 's/^prev //p' | while read -r ugm path; do
		[ -d "$jail$path" ] || continue
		chown "${ugm%:*}" "$jail$path" && chmod "${ugm##*:}" "$jail$path"
	done
	root=$(printf '%s\n' "$dirs" | sed -n 's/^root //p')
	case $root in
	created) rmdir "$jail" 2>/dev/null || say "kept $jail (not empty)" ;;
	*:*:*) chown "${root%:*}" "$jail" && chmod "${root##*:}" "$jail" ;;
	esac
	say "removed from $jail"
	exit 0
fi

[ -n "$user" ] || die "--user NAME is required"
uid=$(id -u "$user" 2>/dev/null) || die "no such user: $user"
gid=$(id -g "$user")
[ "$uid" != 0 ] || die "jail an unprivileged account, not root"

if [ -z "$from" ]; then
	here=$(cd "$(dirname "$0")" && pwd)
	if [ -x "$here/../sftp-server" ]; then from="$here/.."; else from=.; fi
fi
for p in sftp-server scp; do
	[ -x "$from/$p" ] || die "$from/$p: not built (./configure --enable-static && make)"
	# The jail holds no libraries: a dynamic program would not start.
	if ldd "$from/$p" >/dev/null 2>&1; then
		die "$from/$p is dynamically linked: build with ./configure --enable-static"
	fi
done

# Every component above the jail must already satisfy sshd: those are
# the system's directories, not ours to change.
dir=$(dirname "$jail")
while :; do
	[ -d "$dir" ] || die "$dir does not exist"
	check_path_component "$dir" ||
	    die "$dir: sshd's ChrootDirectory needs every component of the path owned by root and writable by nobody else"
	[ "$dir" = / ] && break
	dir=$(dirname "$dir")
done

# What existed before, so that --uninstall can put it back.
dirs_file="$manifest.dirs"
if [ -f "$dirs_file" ]; then
	old_dirs=$(cat "$dirs_file")
else
	if [ -d "$jail" ]; then
		old_dirs="root $(stat -c '%u:%g:%a' "$jail")"
	else
		old_dirs="root created"
	fi
fi
new_dirs=$old_dirs
record_dir() {
	printf '%s\n' "$new_dirs" | grep -qxF "$1 $2" ||
	    new_dirs=$(printf '%s\n%s %s' "$new_dirs" "$1" "$2")
}

# mkjaildir KIND PATH OWNER MODE: a directory inside the jail (and its
# missing parents, root's and 0755), recorded if we made it.
mkjaildir() {
	# (sh has no local variables, and this recurses: "$1".."$4" only)
	if [ "$(dirname "$2")" != / ] && [ ! -d "$jail$(dirname "$2")" ]; then
		mkjaildir dir "$(dirname "$2")" 0:0 755
	fi
	if [ ! -d "$jail$2" ]; then
		[ -e "$jail$2" ] && die "$jail$2 exists and is not a directory"
		mkdir "$jail$2"
		record_dir "$1" "$2"
	elif ! printf '%s\n' "$new_dirs" | grep -q " $2\$"; then
		record_dir prev "$(stat -c '%u:%g:%a' "$jail$2") $2"
	fi
	chown "$3" "$jail$2"
	chmod "$4" "$jail$2"
}

if [ ! -d "$jail" ]; then
	mkdir "$jail"
fi
chown 0:0 "$jail"
chmod 755 "$jail"
mkjaildir dir "$bindir" 0:0 755
mkjaildir dir /dev 0:0 755
# The programs: replaced by a rename, so a session starting meanwhile
# finds the old one or the new one, never half a file.
for p in sftp-server scp; do
	if ! cmp -s "$from/$p" "$jail$bindir/$p"; then
		cp "$from/$p" "$jail$bindir/.$p.new"
		chown 0:0 "$jail$bindir/.$p.new"
		chmod 755 "$jail$bindir/.$p.new"
		mv -f "$jail$bindir/.$p.new" "$jail$bindir/$p"
	fi
done
# The upload directory belongs to the user; the staging directory too,
# mode 0700: README.atomic's rule (owned by root or the user, writable
# by no one else) with nothing shared, so the user's own server may read
# it (without /proc that is how it learns the directory has no default
# ACL) and a new file is staged there, not beside its destination.
mkjaildir upload "$upload" "$uid:$gid" 755
mkjaildir staging "$staging" "$uid:$gid" 700
# Both on one filesystem, or the staging directory is not used.
if [ "$(stat -c %d "$jail$upload")" != "$(stat -c %d "$jail$staging")" ]; then
	say "warning: $jail$staging and $jail$upload are on different filesystems: files will be staged beside their destination"
fi

# put_file FILE: standard input into FILE, unless it already says that.
put_file() {
	cat >"$1.new"
	if cmp -s "$1.new" "$1"; then rm -f "$1.new"; else chmod 644 "$1.new" && mv -f "$1.new" "$1"; fi
}
printf '%s\n' "$new_dirs" | put_file "$dirs_file"
printf 'file %s\nfile %s\nstaging %s\n' "$bindir/sftp-server" "$bindir/scp" \
    "$staging" | put_file "$manifest"

say "installed in $jail for $user (uid $uid)"
cat <<EOF

# 1. /etc/ssh/sshd_config (Match blocks go at the end of the file):

Match User $user
	ChrootDirectory $jail
	ForceCommand $bindir/sftp-server
	SetEnv ATOMIC_UPLOAD_TMPDIR=$staging ATOMIC_UPLOAD_LOG_LEVEL=INFO
	AllowTcpForwarding no
	X11Forwarding no
	PermitTTY no

# 2. The jail has no shell, so the user's login shell is our sftp-server
#    (sshd runs "SHELL -c COMMAND" inside the jail; ours serves SFTP).
#    sshd checks the shell outside the jail before the chroot: the same
#    path must hold an executable there too (the Debian package puts one
#    there; else "install -D -m 755 $from/sftp-server $bindir/sftp-server").

usermod -s $bindir/sftp-server $user
grep -qxF $bindir/sftp-server /etc/shells || echo $bindir/sftp-server >> /etc/shells

#    (/etc/shells: sshd does not read it, but chsh and pam_shells do; leave
#    it out if other services must not accept this account.)

# 3. Logging: a syslog socket inside the jail, $jail/dev/log.
#    rsyslog:  /etc/rsyslog.d/atomic-upload-jail.conf with the line
#                  input(type="imuxsock" Socket="$jail/dev/log" CreatePath="on")
#              then: systemctl restart rsyslog
#    journald only: touch $jail/dev/log && mount --bind /run/systemd/journal/dev-log $jail/dev/log
#    Without one, sessions still work; no log lines, and the client is told.

sshd -t && systemctl reload ssh
EOF
