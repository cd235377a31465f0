#!/bin/bash
# Security parity (issue 11): an upload is allowed, and its result owned
# and permitted, exactly as with the stock programs.  Every case of
# regress/security_cases.py runs twice on identical fresh fixtures, once
# with the stock sftp-server / scp -t and once with ours, as root and as
# the unprivileged users, and compares the outcome: allowed or refused
# (SFTP status, scp acks, exit status), content, owner, group, mode with
# set-id bits, ACL, xattrs, chattr flags, space used, inode kept, no debris.
# The accepted differences (atomicity: a replace makes a new inode, a hard
# link keeps the old content, ...) are named in the case descriptions.
#   1 symlinks (protected_symlinks, nosymfollow)   8 named temps swept by -S
#   2 protected_regular=2                          9 write-only drop box 1733
#   3 setgid dir: group on replace / new           10 RW open, no write
#   4 copy-on-modify on a small tmpfs              11 chattr +a / +i
#   5 default ACLs (with and without -t)           12 set-id bits on write
#   6 untrusted staging dirs (ours only)           13 shared staging dir temps
#   7 metadata from the file opened at OPEN        14 scp T record out of range
#   x with -t, only the final name in the destination dir (ours only)
# Runs under Debian's default sysctls fs.protected_symlinks=1,
# protected_regular=2, protected_fifos=1, protected_hardlinks=1 (set here,
# the old values restored at exit), in a private mount namespace (an ext4
# loop image, tmpfs mounts; the host's mounts are never touched).  Users
# $TEST_USER (autest), $OTHER_USER (auother) and group $TEAM_GROUP
# (auteam, which autest joins) are created if missing and left.
# Against stock (SFTP_SERVER=/usr/lib/openssh/sftp-server SCP=/usr/bin/scp)
# the side-by-side cases agree trivially and the ours-only cases SKIP.
# SECURITY_CASES="1 5 x" runs only those cases.
tid=t-security
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"
need_root
test_user_setup

OTHER_USER=${OTHER_USER:-auother}
TEAM_GROUP=${TEAM_GROUP:-auteam}
getent group "$TEAM_GROUP" >/dev/null || groupadd "$TEAM_GROUP" ||
    fail "groupadd $TEAM_GROUP"
id "$OTHER_USER" >/dev/null 2>&1 ||
    useradd -m -s /bin/bash "$OTHER_USER" >/dev/null 2>&1 ||
    fail "useradd $OTHER_USER"
id -nG "$TEST_USER" | tr ' ' '\n' | grep -qx "$TEAM_GROUP" ||
    usermod -aG "$TEAM_GROUP" "$TEST_USER" ||
    fail "usermod -aG $TEAM_GROUP $TEST_USER"
export OTHER_USER TEAM_GROUP

for t in setpriv unshare mount umount setfacl chattr mkfs.ext4; do
	if ! command -v "$t" >/dev/null 2>&1; then
		skip "$tid" "needs $t (apt-get install util-linux acl e2fsprogs)"
		exit 0
	fi
done
[ -x "$SFTP_SERVER" ] || fail "no server at $SFTP_SERVER"
[ -x "$SCP" ] || fail "no scp at $SCP"
[ -x "$STOCK_SFTP_SERVER" ] || fail "no stock server at $STOCK_SFTP_SERVER"

# The stock scp: OpenSSH's binary, even where /usr/bin/scp is diverted to
# our wrapper (install-wrapper moves the distribution's aside).
if [ -z "${STOCK_SCP:-}" ]; then
	STOCK_SCP=/usr/bin/scp
	t=$(dpkg-divert --truename /usr/bin/scp 2>/dev/null)
	[ -n "$t" ] && [ -x "$t" ] && STOCK_SCP=$t
	[ -x /usr/bin/scp.bin ] && STOCK_SCP=/usr/bin/scp.bin
fi
if [ "$(head -c 4 "$STOCK_SCP" 2>/dev/null)" != "$(printf '\177ELF')" ] ||
    ! grep -aq 'usage: scp \[-' "$STOCK_SCP"; then
	fail "$STOCK_SCP is not OpenSSH's scp (set STOCK_SCP)"
fi
export STOCK_SCP

FAULTSHIM_SO="$OBJ/regress/helpers/faultshim.so"
[ -f "$FAULTSHIM_SO" ] || FAULTSHIM_SO=
export FAULTSHIM_SO

# Debian's defaults; the old values come back at exit.
for kv in protected_symlinks=1 protected_regular=2 protected_fifos=1 \
    protected_hardlinks=1; do
	k=${kv%=*}
	old=$(cat "/proc/sys/fs/$k" 2>/dev/null) || continue
	on_exit "echo $old > /proc/sys/fs/$k"
	echo "${kv#*=}" >"/proc/sys/fs/$k" 2>/dev/null ||
	    verbose "cannot set fs.$k (stays $old)"
done

export tid
timeout -k 10 "${SECURITY_TIMEOUT:-900}" \
    unshare -m --propagation private \
    /usr/bin/python3 "$SRC/regress/security_cases.py" "$WORK"
rc=$?
case $rc in
0|1) ;;
124|137) notok "security_cases.py timed out" ;;
*) notok "security_cases.py exited with status $rc" ;;
esac
exit 0
