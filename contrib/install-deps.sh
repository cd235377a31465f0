#!/bin/sh
# Install what building and testing atomic-upload needs on Debian 12
# (run as root).  Quiet and idempotent: skips apt when all is present.
set -e
PKGS="build-essential autoconf automake pkg-config libssl-dev libssh2-1-dev
 openssh-server openssh-client openssh-sftp-server python3 python3-paramiko
 strace ltrace valgrind clang libclang-rt-14-dev attr acl inotify-tools
 util-linux passwd procps dropbear-bin e2fsprogs sshfs fuse3 rsync
 debhelper dpkg-dev fakeroot lintian lftp putty-tools curl"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
	    missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-deps: need root to install:$missing" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq $missing >/dev/null
fi
