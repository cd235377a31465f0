#!/bin/sh
# atomic-upload scp wrapper: installed as /usr/bin/scp by "make install-wrapper".
#
# sshd runs "scp [-v] [-r] [-p] [-d] -t|-f [--] PATH" through the user's
# shell for every legacy scp client (scp -O, OpenSSH before 9.0).  Those
# server-mode invocations go to atomic-upload's scp, with the staging
# settings from the defaults file; every other invocation - a person or a
# script using scp as a client - goes to the distribution's scp, untouched.
#
# The three paths below are filled in by "make install-wrapper"; nothing is
# looked up at run time.
au_atomic_scp='@ATOMIC_SCP@'
au_distrib_scp='@DISTRIB_SCP@'
au_defaults_file='@DEFAULTS_FILE@'

# The variables the defaults file may set.  A variable that is already in
# the environment (sshd's SetEnv, perhaps in a Match block) wins over the
# file, even when empty: the file holds the site's defaults, the session
# may be more specific.  Our scp's own flags win over both.
au_settings='ATOMIC_UPLOAD_TMPDIR ATOMIC_UPLOAD_SYNC ATOMIC_UPLOAD_STAGING
ATOMIC_UPLOAD_MODIFY ATOMIC_UPLOAD_LOG ATOMIC_UPLOAD_FALLBACK
ATOMIC_UPLOAD_DIGEST ATOMIC_UPLOAD_XATTR ATOMIC_UPLOAD_HOOK
ATOMIC_UPLOAD_HOOK_ABORTS ATOMIC_UPLOAD_HOOK_TIMEOUT
ATOMIC_UPLOAD_HOOK_MAX_RUNNING'

log_to_syslog() {
	# $1 priority, $2 message.  No logger, no /dev/null (a chroot) must
	# not change the outcome, only lose the log line.
	if [ -c /dev/null ]; then
		logger -p "auth.$1" -t atomic-upload -- "scp wrapper: $2" 2>/dev/null || :
	else
		logger -p "auth.$1" -t atomic-upload -- "scp wrapper: $2" || :
	fi
}

is_setting() {
	for au_s in $au_settings; do
		[ "$1" = "$au_s" ] && return 0
	done
	return 1
}

# Reads NAME=VALUE lines as a shell would for the simple forms (an optional
# "export ", VALUE bare, "double-" or 'single-quoted', # comments) without
# executing anything: every user's uploads read this file.  There is no
# expansion of $VAR or `...`; write %u, %d, %U in ATOMIC_UPLOAD_TMPDIR for
# per-user directories, our scp expands those.
read_defaults() {
	[ -r "$au_defaults_file" ] || return 0
	au_from_env=' '
	for au_s in $au_settings; do
		eval "au_already=\${$au_s+set}"
		[ -n "$au_already" ] && au_from_env="$au_from_env$au_s "
	done
	while IFS= read -r au_line || [ -n "$au_line" ]; do
		au_line=${au_line#"${au_line%%[![:space:]]*}"}
		case $au_line in
		'' | '#'*) continue ;;
		'export '*) au_line=${au_line#export}
			au_line=${au_line#"${au_line%%[![:space:]]*}"} ;;
		esac
		case $au_line in
		*=*) ;;
		*) continue ;;
		esac
		au_name=${au_line%%=*}
		au_value=${au_line#*=}
		is_setting "$au_name" || continue
		case $au_from_env in
		*" $au_name "*) continue ;;
		esac
		case $au_value in
		\"*) au_value=${au_value#\"}; au_value=${au_value%%\"*} ;;
		\'*) au_value=${au_value#\'}; au_value=${au_value%%\'*} ;;
		*) au_value=${au_value%%[[:space:]]*} ;;
		esac
		# As in a shell, the last line wins; empty means "not set".
		if [ -n "$au_value" ]; then
			eval "$au_name=\$au_value"
			export "$au_name"
		else
			unset "$au_name"
		fi
	done < "$au_defaults_file"
}

# Server mode is the -t (sink) or -f (source) flag, parsed the way scp's
# getopt does: flags may be clustered (-prt), options stop at "--" or at
# the first operand, and the letters that take an argument swallow the rest
# of their word or the next word (so "-o -t" or "-P22t" is not server mode).
is_server_mode() {
	au_want_arg=no
	for au_arg do
		if [ "$au_want_arg" = yes ]; then
			au_want_arg=no
			continue
		fi
		case $au_arg in
		--) return 1 ;;
		-?*) ;;
		*) return 1 ;;
		esac
		au_letters=${au_arg#-}
		while [ -n "$au_letters" ]; do
			au_rest=${au_letters#?}
			au_letter=${au_letters%"$au_rest"}
			au_letters=$au_rest
			case $au_letter in
			t | f) return 0 ;;
			c | D | F | i | J | l | M | o | P | S | X)
				[ -z "$au_letters" ] && au_want_arg=yes
				break ;;
			esac
		done
	done
	return 1
}

case $au_atomic_scp$au_distrib_scp in
*@*@*)
	echo "scp-wrapper.sh: not installed (run make install-wrapper)" >&2
	exit 1 ;;
esac

if ! is_server_mode "$@"; then
	[ -x "$au_distrib_scp" ] || {
		echo "scp: the system's scp ($au_distrib_scp) is missing;" \
		    "reinstall openssh-client or run make uninstall-wrapper" >&2
		exit 127
	}
	exec "$au_distrib_scp" "$@"
fi

read_defaults
if [ -f "$au_atomic_scp" ] && [ -x "$au_atomic_scp" ]; then
	exec "$au_atomic_scp" "$@"
fi

# Our scp is missing (removed by "make uninstall" with the wrapper still in
# place, or a broken install).  By default the upload is refused: the
# operator installed this because something downstream must never see a
# partial file, and silently writing in place would break that promise
# with nobody noticing.  ATOMIC_UPLOAD_FALLBACK=yes in the defaults file
# chooses availability instead: the stock scp serves, with a warning in
# the log for every session.
case ${ATOMIC_UPLOAD_FALLBACK:-no} in
yes | YES | true | 1)
	log_to_syslog warning "$au_atomic_scp missing: running $au_distrib_scp, uploads are NOT atomic"
	exec "$au_distrib_scp" "$@" ;;
esac
log_to_syslog err "$au_atomic_scp missing: refusing scp server mode (ATOMIC_UPLOAD_FALLBACK=yes in $au_defaults_file allows the stock scp)"
# The client shows this protocol error line as "scp: ...".
printf '\001scp: atomic upload is not available on this server (%s missing)\n' "$au_atomic_scp"
exit 1
