/*
 * sftp-server: the program sshd runs for "Subsystem sftp".  Options and
 * environment, then a poll() loop between stdin/stdout and the session
 * object of sftp-server.c.
 */
#include "includes.h"

#include <sys/types.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <unistd.h>

#include "atomic-upload.h"
#include "digest.h"
#include "hook.h"
#include "log.h"
#include "misc.h"
#include "sftp-server.h"

/* Exit statuses stock uses. */
#define EXIT_USAGE		1
#define EXIT_BAD_MESSAGE	11
#define EXIT_FATAL		255

/* Handles we aim to offer, and descriptors kept back for stdio, syslog,
 * name service lookups and the transient ones of an open or a commit. */
#define HANDLES_WANTED		1024
#define FD_RESERVE		12

/* Bytes of deferred hashing per idle moment: about a millisecond, so a
 * request that arrives meanwhile waits no longer than that. */
#define BACKGROUND_BUDGET	(1024 * 1024)

/* Set by the signal handler, acted on by the main loop. */
static volatile sig_atomic_t got_signal;
/* The session fatal() must close (its uploads aborted and logged). */
static struct sftp_session *live_session;

static void
usage(const char *progname)
{
	fprintf(stderr,
	    "usage: %s [-ehnRx] [-d start_directory] [-f log_facility] "
	    "[-H commit_hook]\n"
	    "\t[-l log_level] [-m copy|inplace] [-P denied_requests]\n"
	    "\t[-p allowed_requests] [-s full|data|none] "
	    "[-t staging_directory]\n"
	    "\t[-u umask]\n"
	    "       %s -Q protocol_feature\n"
	    "       %s -S staging_directory\n",
	    progname, progname, progname);
	exit(EXIT_USAGE);
}

static void
on_signal(int signo)
{
	got_signal = signo;
}

static void
fatal_cleanup(void)
{
	struct sftp_session *s = live_session;

	live_session = NULL;
	if (s != NULL)
		sftp_session_free(s, "fatal error");
}

/* Descriptors 0-2 must exist, or a file we open could become "stdout". */
static void
sanitise_stdfd(void)
{
	int fd;

	while ((fd = open_null()) >= 0 && fd <= STDERR_FILENO)
		;
	if (fd > STDERR_FILENO)
		close(fd);
}

static int
parse_umask(const char *s, mode_t *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 8);
	if (*s == '\0' || *end != '\0' || errno != 0 || v < 0 || v > 0777)
		return EINVAL;
	*out = (mode_t)v;
	return 0;
}

static int
parse_modify(const char *s, enum stage_modify *out)
{
	if (strcasecmp(s, "copy") == 0)
		*out = STAGE_MODIFY_COPY;
	else if (strcasecmp(s, "inplace") == 0 ||
	    strcasecmp(s, "in-place") == 0)
		*out = STAGE_MODIFY_INPLACE;
	else
		return EINVAL;
	return 0;
}

static int
parse_switch(const char *s, int *on)
{
	if (strcasecmp(s, "off") == 0 || strcasecmp(s, "no") == 0 ||
	    strcmp(s, "0") == 0 || strcasecmp(s, "false") == 0)
		*on = 0;
	else if (strcasecmp(s, "on") == 0 || strcasecmp(s, "yes") == 0 ||
	    strcmp(s, "1") == 0 || strcasecmp(s, "true") == 0)
		*on = 1;
	else
		return EINVAL;
	return 0;
}

/* Why a directory template could not be expanded. */
enum expand_fail {
	EXPAND_OK = 0,
	EXPAND_NO_USER,		/* ~name: no such user */
	EXPAND_TOO_LONG,	/* PATH_MAX or more once ~ is expanded */
	EXPAND_BAD_KEY,		/* %x with an unknown x */
	EXPAND_BAD_FORMAT,	/* a % at the very end */
	EXPAND_NO_MEMORY
};

/*
 * A directory template as -d takes it: first a leading ~ or ~user (the
 * user name runs to the first '/'), then %d (home), %u (user), %U (uid)
 * and %%.  On failure *detail says what was wrong (the user name, or
 * the key).
 */
static enum expand_fail
expand_dir(const char *tmpl, const struct passwd *pw, char **out,
    char *detail, size_t dlen)
{
	const struct passwd *who = pw;
	const char *rest, *p;
	char *tilde = NULL;
	size_t ulen;
	int r;

	*out = NULL;
	detail[0] = '\0';
	if (tmpl[0] == '~') {
		rest = strchr(tmpl, '/');
		ulen = rest == NULL ? strlen(tmpl + 1) :
		    (size_t)(rest - tmpl - 1);
		if (ulen > 0) {
			char *name;

			if ((name = strndup(tmpl + 1, ulen)) == NULL)
				return EXPAND_NO_MEMORY;
			who = name_getpwnam(name);
			snprintf(detail, dlen, "%s", name);
			free(name);
			if (who == NULL)
				return EXPAND_NO_USER;
		}
		if (asprintf(&tilde, "%s%s", who->pw_dir,
		    rest == NULL ? "" : rest) < 0)
			return EXPAND_NO_MEMORY;
		if (strlen(tilde) >= PATH_MAX) {
			free(tilde);
			return EXPAND_TOO_LONG;
		}
		tmpl = tilde;
	}
	/* The first bad escape, from the left, is the one reported. */
	for (p = tmpl; *p != '\0'; p++) {
		if (*p != '%')
			continue;
		if (p[1] == '\0') {
			free(tilde);
			return EXPAND_BAD_FORMAT;
		}
		if (strchr("duU%", p[1]) == NULL) {
			snprintf(detail, dlen, "%%%c", p[1]);
			free(tilde);
			return EXPAND_BAD_KEY;
		}
		p++;
	}
	r = stage_expand_dir(tmpl, pw->pw_name, pw->pw_dir, pw->pw_uid, out);
	free(tilde);
	if (r == ENOMEM)
		return EXPAND_NO_MEMORY;
	if (r != 0)	/* not expected after the checks above */
		return EXPAND_BAD_FORMAT;
	return EXPAND_OK;
}

/*
 * -d as stock takes it: expanded while the options are read, so before
 * logging is set up (the messages go to syslog whatever -e says) and
 * before -Q; an expansion that fails ends the program with status 255,
 * with the messages stock logs.
 */
static char *
start_directory(const char *tmpl, const struct passwd *pw)
{
	char *dir, detail[256];

	switch (expand_dir(tmpl, pw, &dir, detail, sizeof(detail))) {
	case EXPAND_OK:
		return dir;
	case EXPAND_NO_USER:
		error("tilde_expand: No such user %s", detail);
		exit(EXIT_FATAL);
	case EXPAND_TOO_LONG:
		error("tilde_expand: Path too long");
		exit(EXIT_FATAL);
	case EXPAND_BAD_KEY:
		error("vdollar_percent_expand: unknown key %s", detail);
		fatal("percent_expand: failed");
	case EXPAND_BAD_FORMAT:
		error("vdollar_percent_expand: invalid format");
		fatal("percent_expand: failed");
	case EXPAND_NO_MEMORY:
	default:
		fatal("-d %s: %s", tmpl, strerror(ENOMEM));
	}
	return NULL;
}

/* Our words for an expansion that failed (for -t and its variable). */
static const char *
expand_failure(enum expand_fail f, const char *detail, char *buf,
    size_t len)
{
	switch (f) {
	case EXPAND_NO_USER:
		snprintf(buf, len, "no such user %s", detail);
		break;
	case EXPAND_TOO_LONG:
		snprintf(buf, len, "path too long");
		break;
	case EXPAND_BAD_KEY:
		snprintf(buf, len, "unknown key %s", detail);
		break;
	case EXPAND_BAD_FORMAT:
		snprintf(buf, len, "%% at the end");
		break;
	default:
		snprintf(buf, len, "%s", strerror(ENOMEM));
		break;
	}
	return buf;
}

/*
 * Raise the descriptor limit toward what HANDLES_WANTED staged uploads
 * need, and return how many handles can then really be honoured: an
 * upload holds its file, its directory and, with a staging directory,
 * that directory too.
 */
static unsigned int
plan_handles(int have_tmpdir)
{
	struct rlimit rl;
	rlim_t want, per = have_tmpdir ? 3 : 2, avail;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 64;
	want = (rlim_t)HANDLES_WANTED * per + FD_RESERVE;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want &&
	    (rl.rlim_max == RLIM_INFINITY || rl.rlim_max > rl.rlim_cur)) {
		rl.rlim_cur = (rl.rlim_max == RLIM_INFINITY ||
		    rl.rlim_max > want) ? want : rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			(void)getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want)
		return HANDLES_WANTED;
	avail = rl.rlim_cur > FD_RESERVE + per ? rl.rlim_cur - FD_RESERVE : per;
	return (unsigned int)(avail / per);
}

static void
install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: poll, read and write return so the loop sees it. */
	sa.sa_flags = 0;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGPIPE, &sa, NULL);
}

/*
 * Resumable uploads from the environment: ATOMIC_UPLOAD_RESUME (on),
 * ATOMIC_UPLOAD_PARTIAL_AGE (24h), ATOMIC_UPLOAD_PARTIAL_MAX (no cap).
 * A bad value is logged and the default kept.
 */
static void
resume_settings(struct stage_opts *so, int *on)
{
	const char *env;
	time_t age;
	off_t max;

	so->partial.age = PARTIAL_AGE_DEFAULT;
	so->partial.record_age = 0;
	so->partial.max_bytes = 0;
	if ((env = getenv("ATOMIC_UPLOAD_RESUME")) != NULL && *env != '\0' &&
	    parse_switch(env, on) != 0) {
		error("ATOMIC_UPLOAD_RESUME=%s not understood: resume stays on",
		    env);
		*on = 1;
	}
	if ((env = getenv("ATOMIC_UPLOAD_PARTIAL_AGE")) != NULL &&
	    *env != '\0') {
		if (partial_parse_age(env, &age) != 0)
			error("ATOMIC_UPLOAD_PARTIAL_AGE=%s not understood: "
			    "using 24h", env);
		else
			so->partial.age = age;
	}
	if ((env = getenv("ATOMIC_UPLOAD_PARTIAL_MAX")) != NULL &&
	    *env != '\0') {
		if (partial_parse_size(env, &max) != 0)
			error("ATOMIC_UPLOAD_PARTIAL_MAX=%s not understood: "
			    "no cap", env);
		else
			so->partial.max_bytes = max;
	}
	so->resume = *on;
}

/* The exit status for a failed sftp_session_process(), which ends the
 * session for a reason of ours: nothing is kept for a resume. */
static int
process_failed(int r, const char **reason, int *lost)
{
	*lost = 0;
	if (r == EMSGSIZE) {
		*reason = "protocol error";
		return EXIT_BAD_MESSAGE;
	}
	*reason = strerror(r);
	return EXIT_FATAL;
}

/*
 * Serve until the client closes its side.  Returns the exit status, or -1
 * when a signal asks us to stop; the caller ends the session.  *reason
 * says why uploads still open are aborted.
 */
static int
serve(struct sftp_session *s, const char **reason, int *lost)
{
	struct pollfd pfd[2];
	const u_char *op;
	u_char *ip;
	size_t olen, room;
	ssize_t n;
	int in_eof = 0, r, idle;

	*reason = "connection lost";
	*lost = 1;	/* unless we end it for a reason of our own */
	for (;;) {
		if (got_signal != 0)
			return -1;
		sftp_session_output(s, &op, &olen);
		if (in_eof && olen == 0)
			break;
		/*
		 * A descriptor is watched only when we want it: a hung-up
		 * one reports POLLHUP whatever the events, and input is
		 * left unread while replies wait (backpressure).
		 */
		pfd[0].fd = (!in_eof && sftp_session_wants_input(s)) ?
		    STDIN_FILENO : -1;
		pfd[0].events = POLLIN;
		pfd[0].revents = 0;
		pfd[1].fd = olen > 0 ? STDOUT_FILENO : -1;
		pfd[1].events = POLLOUT;
		pfd[1].revents = 0;
		/* With digests waiting to be hashed, only look: the client
		 * comes first, the hashing takes the moments it leaves. */
		idle = sftp_session_background_pending(s);
		if ((n = poll(pfd, 2, idle ? 0 : -1)) < 0) {
			if (errno == EINTR)
				continue;
			error("poll: %s", strerror(errno));
			*reason = "poll failed";
			*lost = 0;
			return EXIT_FATAL;
		}
		if (n == 0) {
			sftp_session_background_run(s, BACKGROUND_BUDGET);
			continue;
		}
		if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			r = sftp_session_input_space(s, &ip, &room);
			if (r != 0) {
				error("input buffer: %s", strerror(r));
				return EXIT_FATAL;
			}
			n = read(STDIN_FILENO, ip, room);
			if (n < 0 && errno != EINTR && errno != EAGAIN) {
				error("read: %s", strerror(errno));
				*reason = "read error";
				return EXIT_USAGE;	/* stock: 1 */
			}
			if (n == 0) {
				debug("read eof");
				in_eof = 1;
			} else if (n > 0) {
				sftp_session_input_added(s, (size_t)n);
				if ((r = sftp_session_process(s)) != 0)
					return process_failed(r, reason,
					    lost);
			}
		}
		/* Processing input above may have moved the buffer. */
		sftp_session_output(s, &op, &olen);
		if (olen > 0 &&
		    (pfd[1].revents & (POLLOUT | POLLHUP | POLLERR))) {
			n = write(STDOUT_FILENO, op, olen);
			if (n < 0 && errno != EINTR && errno != EAGAIN) {
				error("write: %s", strerror(errno));
				return EXIT_FATAL;
			}
			if (n > 0) {
				sftp_session_output_consume(s, (size_t)n);
				/* Requests held back by a full output. */
				if ((r = sftp_session_process(s)) != 0)
					return process_failed(r, reason,
					    lost);
			}
		}
	}
	if (sftp_session_input_pending(s) > 0)
		debug("connection closed in the middle of a request");
	return 0;
}

int
main(int argc, char **argv)
{
	struct sftp_server_opts opts;
	struct sftp_session *s = NULL;
	struct passwd *pw;
	enum log_level level = LOG_LEVEL_ERROR;
	int facility = LOG_AUTH, log_stderr = 0, ch, r, status, staging_on, tmpfile_on;
	int have_sync = 0, have_modify = 0, have_staging = 0, have_xattr = 0;
	int digest_on = 1, numeric_user;
	unsigned long long check_max;
	int bad_level = 0, bad_facility = 0, skipargs = 0;
	int have_level = 0, have_facility = 0;
	int env_bad_level = 0, env_bad_facility = 0;
	enum expand_fail ef;
	const char *progname, *tmp_tmpl = NULL, *env;
	const char *sweep_dir = NULL, *reason = NULL;
	int resume_on = 1, lost = 0;
	unsigned int expired;
	char *start_dir = NULL, *tmpdir = NULL, addr[128], detail[256];
	char failure[300];
	unsigned int swept;
	mode_t mask;
	size_t i;

	sanitise_stdfd();
	progname = strrchr(argv[0], '/') != NULL ? strrchr(argv[0], '/') + 1 :
	    argv[0];
	log_init(progname, LOG_LEVEL_ERROR, LOG_AUTH, 0);
	memset(&opts, 0, sizeof(opts));

	pw = session_passwd(&numeric_user);

	/*
	 * ':' first: a missing argument is told apart from an unknown
	 * option, for -c.
	 */
	opterr = 0;
	while (!skipargs && (ch = getopt(argc, argv,
#ifdef __GLIBC__
	    "+"	/* stop at the first non-option word, as BSD does */
#endif
	    ":d:f:l:P:p:Q:u:c:ehRt:s:nm:S:xH:")) != -1) {
		switch (ch) {
		case 'Q':
			if (strcasecmp(optarg, "requests") != 0) {
				fprintf(stderr, "Invalid query type\n");
				exit(EXIT_USAGE);
			}
			for (i = 0; sftp_request_name(i) != NULL; i++)
				printf("%s\n", sftp_request_name(i));
			exit(0);
		case 'R':
			opts.readonly = 1;
			break;
		case 'c':
			/*
			 * Run as a login shell ("sftp-server -c command"):
			 * as stock does, the word after -c (even one that
			 * looks like an option) and everything after it
			 * are ignored.
			 */
			skipargs = 1;
			break;
		case ':':
			if (optopt == 'c') {	/* -c as the last word */
				skipargs = 1;
				break;
			}
			usage(progname);
			break;
		case 'e':
			log_stderr = 1;
			break;
		/*
		 * A bad -l or -f is logged (to syslog: logging is not set
		 * up yet) and refused once every option is read, as stock
		 * does; a later good one replaces it.
		 */
		case 'l':
			have_level = 1;
			bad_level = log_parse_level(optarg, &level) != 0;
			if (bad_level)
				error("Invalid log level \"%s\"", optarg);
			break;
		case 'f':
			have_facility = 1;
			bad_facility =
			    log_parse_facility(optarg, &facility) != 0;
			if (bad_facility)
				error("Invalid log facility \"%s\"", optarg);
			break;
		case 'd':
			free(start_dir);
			start_dir = start_directory(optarg, pw);
			break;
		case 'p':
			if (opts.allowed != NULL)
				fatal("Permitted requests already set");
			opts.allowed = optarg;
			break;
		case 'P':
			if (opts.denied != NULL)
				fatal("Refused requests already set");
			opts.denied = optarg;
			break;
		case 'u':
			if (parse_umask(optarg, &mask) != 0)
				fatal("Invalid umask \"%s\"", optarg);
			umask(mask);
			break;
		case 't':
			tmp_tmpl = optarg;
			break;
		case 's':
			if (stage_parse_sync(optarg, &opts.stage.sync) != 0) {
				fprintf(stderr, "Invalid durability \"%s\": "
				    "full, data or none\n", optarg);
				exit(EXIT_USAGE);
			}
			have_sync = 1;
			break;
		case 'n':
			opts.stage.disabled = 1;
			have_staging = 1;
			break;
		case 'm':
			if (parse_modify(optarg, &opts.stage.modify) != 0) {
				fprintf(stderr, "Invalid modify policy \"%s\": "
				    "copy or inplace\n", optarg);
				exit(EXIT_USAGE);
			}
			have_modify = 1;
			break;
		case 'S':
			sweep_dir = optarg;
			break;
		case 'x':
			have_xattr = 1;
			break;
		case 'H':
			opts.hook.program = optarg;
			break;
		case 'h':
		default:
			usage(progname);
		}
	}
	/* Words after the options ("-- HOST sftp" from scp -D) are ignored. */

	/*
	 * As a login shell (-c) the command line carries no options: a
	 * jail's Match block passes the log level and facility with
	 * SetEnv instead.  A flag wins; a bad value is reported once
	 * logging is up, and the default kept.
	 */
	if (!have_level && (env = getenv("ATOMIC_UPLOAD_LOG_LEVEL")) != NULL &&
	    *env != '\0')
		env_bad_level = log_parse_level(env, &level) != 0;
	if (!have_facility &&
	    (env = getenv("ATOMIC_UPLOAD_LOG_FACILITY")) != NULL &&
	    *env != '\0')
		env_bad_facility = log_parse_facility(env, &facility) != 0;

	/* Stock's words for a bad -l or -f (the level is checked first). */
	if (bad_level) {
		fprintf(stderr, "Unrecognized internal syslog level code -1\n");
		exit(EXIT_USAGE);
	}
	if (bad_facility) {
		fprintf(stderr,
		    "Unrecognized internal syslog facility code -1\n");
		exit(EXIT_USAGE);
	}
	log_init(progname, level, facility, log_stderr);
	if (env_bad_level)
		error("ATOMIC_UPLOAD_LOG_LEVEL=%s not understood: using ERROR",
		    getenv("ATOMIC_UPLOAD_LOG_LEVEL"));
	if (env_bad_facility)
		error("ATOMIC_UPLOAD_LOG_FACILITY=%s not understood: using AUTH",
		    getenv("ATOMIC_UPLOAD_LOG_FACILITY"));
	if (numeric_user)
		verbose("no name for uid %lu (a chroot without /etc/passwd?): "
		    "known by number, home \"%s\"", (unsigned long)getuid(),
		    pw->pw_dir);

	resume_settings(&opts.stage, &resume_on);
	if (sweep_dir != NULL) {
		if ((r = stage_sweep_partial(sweep_dir, STAGE_SWEEP_TREE,
		    &opts.stage.partial, &swept, &expired)) != 0) {
			fprintf(stderr, "%s: sweep %s: %s\n", progname,
			    sweep_dir, strerror(r));
			exit(EXIT_USAGE);
		}
		logit("sweep \"%s\": removed %u stale temporary file%s, "
		    "%u expired partial upload%s", sweep_dir, swept,
		    swept == 1 ? "" : "s", expired, expired == 1 ? "" : "s");
		exit(0);
	}

	/* The environment fills in what the flags left unset; a bad value
	 * there is logged and the safe default kept. */
	if (tmp_tmpl == NULL &&
	    (env = getenv("ATOMIC_UPLOAD_TMPDIR")) != NULL && *env != '\0')
		tmp_tmpl = env;
	if (!have_sync && (env = getenv("ATOMIC_UPLOAD_SYNC")) != NULL &&
	    *env != '\0') {
		if (stage_parse_sync(env, &opts.stage.sync) != 0)
			error("ATOMIC_UPLOAD_SYNC=%s not understood: "
			    "using full", env);
		else
			have_sync = 1;
	}
	if (!have_staging && (env = getenv("ATOMIC_UPLOAD_STAGING")) != NULL &&
	    *env != '\0') {
		if (parse_switch(env, &staging_on) != 0)
			error("ATOMIC_UPLOAD_STAGING=%s not understood: "
			    "staging stays on", env);
		else
			opts.stage.disabled = !staging_on;
	}
	if ((env = getenv("ATOMIC_UPLOAD_TMPFILE")) != NULL && *env != '\0') {
		if (parse_switch(env, &tmpfile_on) != 0)
			error("ATOMIC_UPLOAD_TMPFILE=%s not understood: "
			    "O_TMPFILE stays allowed", env);
		else
			opts.stage.no_tmpfile = !tmpfile_on;
	}
	if (!have_modify && (env = getenv("ATOMIC_UPLOAD_MODIFY")) != NULL &&
	    *env != '\0' && parse_modify(env, &opts.stage.modify) != 0)
		error("ATOMIC_UPLOAD_MODIFY=%s not understood: using copy",
		    env);
	/* Digests: on unless switched off; -x (or its variable) stores them
	 * as an extended attribute, and needs them. */
	if ((env = getenv("ATOMIC_UPLOAD_DIGEST")) != NULL && *env != '\0' &&
	    parse_switch(env, &digest_on) != 0) {
		error("ATOMIC_UPLOAD_DIGEST=%s not understood: digests stay on",
		    env);
		digest_on = 1;
	}
	if (!have_xattr && (env = getenv("ATOMIC_UPLOAD_XATTR")) != NULL &&
	    *env != '\0' && parse_switch(env, &have_xattr) != 0) {
		error("ATOMIC_UPLOAD_XATTR=%s not understood: no xattr", env);
		have_xattr = 0;
	}
	opts.stage.digest = digest_on || have_xattr;
	/* Hashed in the moments between requests (serve()), not in each
	 * WRITE: no reply waits for it. */
	opts.stage.digest_deferred = 1;
	if (have_xattr)
		opts.stage.digest_xattr = DIGEST_XATTR_NAME;
	if (opts.stage.digest && !digest_available())
		debug("built without OpenSSL: no upload digests");
	if ((env = getenv("ATOMIC_UPLOAD_CHECK_FILE_MAX")) != NULL &&
	    *env != '\0') {
		if (parse_u64(env, &check_max) != 0 || check_max == 0)
			error("ATOMIC_UPLOAD_CHECK_FILE_MAX=%s not understood: "
			    "using %llu", env, CHECK_FILE_MAX_DEFAULT);
		else
			opts.check_file_max = check_max;
	}
	if (opts.hook.program == NULL &&
	    (env = getenv("ATOMIC_UPLOAD_HOOK")) != NULL && *env != '\0')
		opts.hook.program = env;
	if (opts.hook.program != NULL) {
		if (opts.hook.program[0] != '/')
			fatal("-H %s: the commit hook must be an absolute path",
			    opts.hook.program);
		hook_settings_from_env(&opts.hook);
	}

	/* Staging off means stock behaviour: no fsync either, unless the
	 * durability was asked for explicitly. */
	if (opts.stage.disabled && !have_sync)
		opts.stage.sync = STAGE_SYNC_NONE;
	if (opts.stage.disabled)
		opts.stage.resume = 0;	/* the file itself is the partial one */

	if (tmp_tmpl != NULL) {
		ef = expand_dir(tmp_tmpl, pw, &tmpdir, detail, sizeof(detail));
		if (ef != EXPAND_OK) {
			expand_failure(ef, detail, failure, sizeof(failure));
			if (tmp_tmpl != getenv("ATOMIC_UPLOAD_TMPDIR"))
				fatal("-t %s: %s", tmp_tmpl, failure);
			error("ATOMIC_UPLOAD_TMPDIR=%s: %s: staging beside "
			    "each destination", tmp_tmpl, failure);
		}
	}
	opts.stage.tmpdir = tmpdir;

	opts.user = pw->pw_name;
	opts.home = pw->pw_dir;
	opts.client_addr = ssh_client_address(addr, sizeof(addr));
	opts.max_handles = plan_handles(tmpdir != NULL);

	if ((r = sftp_session_new(&opts, &s)) != 0)
		fatal("session: %s", strerror(r));
	live_session = s;
	log_set_fatal_hook(fatal_cleanup);

	if (start_dir != NULL && chdir(start_dir) != 0)
		error("chdir to \"%s\" failed: %s", start_dir, strerror(errno));
	if (tmpdir != NULL) {
		/* Named temporaries a killed server left behind, and the
		 * user's partial uploads that expired. */
		if (stage_sweep_partial(tmpdir, 0, &opts.stage.partial, &swept,
		    &expired) == 0 && (swept > 0 || expired > 0))
			logit("sweep \"%s\": removed %u stale temporary file%s, "
			    "%u expired partial upload%s", tmpdir, swept,
			    swept == 1 ? "" : "s", expired,
			    expired == 1 ? "" : "s");
	}
	debug("staging %s, durability %s, modify %s, staging directory %s, "
	    "max handles %u, digest %s%s, hook %s, resume %s",
	    opts.stage.disabled ? "off" : "on",
	    stage_sync_name(opts.stage.sync),
	    opts.stage.modify == STAGE_MODIFY_COPY ? "copy" : "inplace",
	    tmpdir != NULL ? tmpdir : "(beside destination)",
	    opts.max_handles,
	    opts.stage.digest && digest_available() ? "sha256" : "off",
	    opts.stage.digest_xattr != NULL ? " (xattr)" : "",
	    opts.hook.program != NULL ? opts.hook.program : "none",
	    opts.stage.resume ? "on" : "off");

	install_signals();
	status = serve(s, &reason, &lost);
	if (status < 0) {
		int signo = got_signal;
		char why[64];

		logit("received signal %d: aborting open uploads", signo);
		snprintf(why, sizeof(why), "server killed by signal %d", signo);
		live_session = NULL;
		/* Stopped from outside (a hangup, sshd or the system going
		 * down): the upload was interrupted, not refused. */
		sftp_session_lost(s, why);
		free(start_dir);
		free(tmpdir);
		/* Die of the signal, as the stock server would have. */
		signal(signo, SIG_DFL);
		raise(signo);
		exit(EXIT_FATAL);
	}
	live_session = NULL;
	if (lost)
		sftp_session_lost(s, reason);
	else
		sftp_session_free(s, reason);
	free(start_dir);
	free(tmpdir);
	return status;
}
