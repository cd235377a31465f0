# Sourced by every regress/t-*.sh script (bash).  Gives:
#   ok DESC / notok DESC / skip DESC WHY / check DESC CMD...  (TAP lines)
#   fail MSG          print "not ok" and exit 1 (setup failures)
#   verbose/trace     messages for humans (never counted)
#   WORK              a fresh scratch directory for this test ($tid)
#   need_root         skip the whole script unless running as root
#   test_user_setup   create the unprivileged user $TEST_USER (root only)
#   as_user CMD...    run a command as $TEST_USER
#   start_sshd [CONFIG-LINES]  throwaway sshd on 127.0.0.1:$SSHD_PORT whose
#                     Subsystem sftp is $SFTP_SERVER (with $SFTP_SERVER_ARGS)
#                     and whose PATH puts $OBJ/regress/work/bin first;
#                     $SSH_OPTS are the ssh/scp/sftp options to reach it
#                     as root (-F config), $USER_SSH_OPTS the same for
#                     $TEST_USER under as_user; stopped by the EXIT trap.
#   wait_for CMD...   retry a command for up to 10 s (wait_secs N CMD...)
#   watch_verdict [DESC]  stop the watcher $WATCH_PID, check its verdict
#   entries DIR NAME...  DIR holds exactly these names (no debris)
#   partial_stores DIR  DIR holds only stores of kept partial uploads
#                     (prints how many)
#   entries_partials DIR NAME...  entries, beside stores of kept uploads
#   entries_records DIR NAME...   entries, beside stores holding records
#   sessions_gone     no sshd session is left (wait_for sessions_gone)
# Environment from run-tests.sh: SRC, OBJ, SFTP_SERVER, SCP.
set -u
: "${SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
: "${OBJ:=$SRC}"
: "${SFTP_SERVER:=$OBJ/sftp-server}"
: "${SCP:=$OBJ/scp}"
: "${tid:=$(basename "$0" .sh)}"
STOCK_SFTP_SERVER=${STOCK_SFTP_SERVER:-/usr/lib/openssh/sftp-server}
TEST_USER=${TEST_USER:-autest}
export SRC OBJ SFTP_SERVER SCP STOCK_SFTP_SERVER TEST_USER

WORK="$OBJ/regress/work/$tid"
rm -rf "$WORK"
mkdir -p "$WORK"
chmod 755 "$OBJ/regress/work" "$WORK" 2>/dev/null

_cleanups=()
_run_cleanups() {
	local i
	for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do
		eval "${_cleanups[$i]}" >/dev/null 2>&1
	done
}
trap _run_cleanups EXIT
# on_exit CMD: run CMD (a string) when the test exits, last registered first.
on_exit() { _cleanups+=("$1"); }

ok() { echo "ok - $tid: $*"; }
notok() { echo "not ok - $tid: $*"; }
skip() { echo "ok - $tid: $1 # SKIP ${2:-}"; }
fail() { notok "$*"; exit 1; }
verbose() { echo "# $*"; }
trace() { [ -n "${TEST_TRACE:-}" ] && echo "# $*"; return 0; }

# check DESC CMD...: ok if CMD succeeds.
check() {
	local desc=$1; shift
	if "$@"; then ok "$desc"; else notok "$desc"; fi
}

need_root() {
	if [ "$(id -u)" -ne 0 ]; then
		skip "$tid" "needs root"
		exit 0
	fi
}

test_user_setup() {
	need_root
	if ! id "$TEST_USER" >/dev/null 2>&1; then
		useradd -m -s /bin/bash "$TEST_USER" >/dev/null 2>&1 ||
		    fail "useradd $TEST_USER"
	fi
	TEST_UID=$(id -u "$TEST_USER")
	TEST_GID=$(id -g "$TEST_USER")
	TEST_HOME=$(getent passwd "$TEST_USER" | cut -d: -f6)
	# sshd refuses accounts with a locked password ("!") on some setups.
	usermod -p '*' "$TEST_USER" >/dev/null 2>&1
	# A tree below a 0700 directory (mktemp -d) is out of the user's
	# reach: say so, rather than fail every permission test obscurely.
	as_user test -x "$WORK" ||
	    fail "$TEST_USER cannot reach $WORK: a parent directory is not searchable by others (chmod o+x it)"
	export TEST_UID TEST_GID TEST_HOME
}

as_user() {
	setpriv --reuid="$TEST_USER" --regid="$TEST_USER" --init-groups \
	    --reset-env -- env PATH=/usr/local/bin:/usr/bin:/bin "$@"
}

wait_for() { wait_secs 10 "$@"; }
# wait_secs SECONDS CMD...: retry a command for up to SECONDS.
wait_secs() {
	local i n=$(($1 * 10))
	shift
	for i in $(seq 1 "$n"); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

# watch_verdict [DESC]: stop the watcher $WATCH_PID (regress/helpers/
# watch.py writing $WORK/watch.out, stopped by $WORK/stop), show its
# summary and offences, and check that it never saw a partial file.
watch_verdict() {
	local rc
	touch "$WORK/stop"
	wait "$WATCH_PID"
	rc=$?
	grep -e '^# watch:' "$WORK/watch.out"
	grep -e OFFENCE -e '^# partial' "$WORK/watch.out" | head -20
	check "${1:-the watcher never saw a partial file}" test "$rc" = 0
}

# A free TCP port on 127.0.0.1.
free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_sshd() {
	local extra=${1:-} sshd keydir
	need_root
	test_user_setup
	sshd=$(command -v sshd || echo /usr/sbin/sshd)
	[ -x "$sshd" ] || fail "sshd not installed"
	mkdir -p /run/sshd
	keydir="$WORK/sshd"
	rm -rf "$keydir"	# a second start_sshd in one test gets new keys
	mkdir -p "$keydir" "$OBJ/regress/work/bin"
	chmod 755 "$keydir"
	ssh-keygen -q -t ed25519 -N '' -f "$keydir/host_key" >/dev/null || fail "host key"
	ssh-keygen -q -t ed25519 -N '' -f "$keydir/client_key" >/dev/null || fail "client key"
	# ssh refuses a private key others can read: the unprivileged user
	# gets a copy of its own.
	cp "$keydir/client_key" "$keydir/user_key"
	chown "$TEST_USER" "$keydir/user_key"
	chmod 600 "$keydir/client_key" "$keydir/user_key"
	cp "$keydir/client_key.pub" "$keydir/authorized_keys"
	chmod 644 "$keydir/authorized_keys"
	SSHD_PORT=$(free_port)
	cat > "$keydir/sshd_config" <<EOC
Port $SSHD_PORT
ListenAddress 127.0.0.1
HostKey $keydir/host_key
PidFile $keydir/sshd.pid
AuthorizedKeysFile $keydir/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin yes
StrictModes no
UsePAM no
LogLevel VERBOSE
SetEnv PATH=$OBJ/regress/work/bin:/usr/local/bin:/usr/bin:/bin ${ASAN_OPTIONS:+ASAN_OPTIONS=$ASAN_OPTIONS} ${UBSAN_OPTIONS:+UBSAN_OPTIONS=$UBSAN_OPTIONS}
Subsystem sftp $SFTP_SERVER ${SFTP_SERVER_ARGS:-}
$extra
EOC
	"$sshd" -D -e -f "$keydir/sshd_config" >"$keydir/sshd.log" 2>&1 &
	SSHD_PID=$!
	on_exit "kill $SSHD_PID"
	cat > "$keydir/ssh_config" <<EOC
Host *
	HostName 127.0.0.1
	Port $SSHD_PORT
	IdentityFile $keydir/client_key
	IdentitiesOnly yes
	StrictHostKeyChecking no
	UserKnownHostsFile /dev/null
	GlobalKnownHostsFile /dev/null
	LogLevel ERROR
	BatchMode yes
EOC
	sed "s|$keydir/client_key|$keydir/user_key|" "$keydir/ssh_config" \
	    > "$keydir/ssh_config_user"
	chmod 644 "$keydir/ssh_config" "$keydir/ssh_config_user"
	# root uses SSH_OPTS; as_user commands use USER_SSH_OPTS.
	SSH_OPTS="-F $keydir/ssh_config"
	USER_SSH_OPTS="-F $keydir/ssh_config_user"
	SSHD_LOG="$keydir/sshd.log"
	export SSHD_PORT SSHD_PID SSH_OPTS USER_SSH_OPTS SSHD_LOG
	wait_for ssh $SSH_OPTS root@localhost true ||
	    { tail -20 "$SSHD_LOG"; fail "sshd did not come up on port $SSHD_PORT"; }
}

# entries DIR NAME...: DIR holds exactly these names, hidden ones
# included (no upload debris); says what it holds otherwise.
entries() {
	local dir=$1 want got
	shift
	want=$(printf '%s\n' "$@" | sed '/^$/d' | sort | tr '\n' ' ')
	got=$(ls -A "$dir" | sort | tr '\n' ' ')
	[ "$got" = "$want" ] && return 0
	verbose "$dir holds [$got], want [$want]"
	return 1
}

# partial_stores DIR: DIR holds nothing but stores of kept partial uploads
# (.au-partial-UID, 0700, holding only "d." data and "r." records), the
# resumable data of uploads whose connection was lost (DESIGN.md 12).
# Prints how many partial uploads they hold.
partial_stores() {
	local rc
	_entries_stores d "$1"
	rc=$?
	echo "$PARTIAL_DATA"
	return $rc
}

# entries_partials DIR NAME...: DIR holds exactly these names, beside
# well-formed stores of kept partial uploads (uploads whose connection was
# lost are resumable).  entries_records DIR NAME...: the same, but the
# stores may hold only records: an interrupted or failed replacement
# leaves one, so that nothing continues the old file as if it were the
# start of the new one, but no data was to be kept (DESIGN.md 12).
# Both leave the number of partial data files in PARTIAL_DATA.
entries_partials() { _entries_stores d "$@"; }
entries_records() { _entries_stores r "$@"; }
_entries_stores() {
	local allow=$1 dir=$2 e f want got bad=0
	shift 2
	PARTIAL_DATA=0
	for e in "$dir"/.au-partial-[0-9]*; do
		[ -e "$e" ] || [ -L "$e" ] || continue
		if [ -L "$e" ] || [ ! -d "$e" ] ||
		    [ "$(stat -c %a "$e")" != 700 ]; then
			verbose "$e: not a 0700 directory"; bad=1; continue
		fi
		for f in "$e"/.[!.]* "$e"/*; do
			[ -e "$f" ] || [ -L "$f" ] || continue
			if [ -L "$f" ] || [ ! -f "$f" ]; then
				verbose "$f: not a file"; bad=1; continue
			fi
			case "${f##*/}" in
			r.*) ;;
			d.*) PARTIAL_DATA=$((PARTIAL_DATA + 1))
			     [ "$allow" = d ] && continue
			     verbose "$e: partial data kept: ${f##*/}"; bad=1 ;;
			*) verbose "$e: debris in a store: ${f##*/}"; bad=1 ;;
			esac
		done
	done
	want=$(printf '%s\n' "$@" | sed '/^$/d' | sort | tr '\n' ' ')
	got=$(ls -A "$dir" | grep -v '^\.au-partial-[0-9]*$' | sort | tr '\n' ' ')
	if [ "$got" != "$want" ]; then
		verbose "$dir holds [$got], want [$want] (beside partial stores)"
		bad=1
	fi
	return $bad
}

# sessions_gone: the sshd of start_sshd has no session children left
# (found by parent PID, never by name).  Sessions end asynchronously
# after a client goes: use as "wait_for sessions_gone".
sessions_gone() { [ -z "$(ps -o pid= --ppid "$SSHD_PID")" ]; }
