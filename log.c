/* Logging; see log.h. */
#include "includes.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <paths.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <unistd.h>

#include "atomic-upload.h"
#include "log.h"

static struct {
	char ident[64];
	enum log_level level;
	int facility;
	int to_stderr;
	int syslog_open;
	void (*fatal_hook)(void);
	void (*sink)(enum log_level, const char *);
} logstate = { "", LOG_LEVEL_ERROR, LOG_AUTH, 1, 0, NULL, NULL };

/* A log file or a terminal, as opposed to a pipe or socket that
 * belongs to the connection. */
static int
stderr_is_file(void)
{
	struct stat st;

	return fstat(STDERR_FILENO, &st) == 0 &&
	    (S_ISREG(st.st_mode) || S_ISCHR(st.st_mode));
}

static const struct {
	const char *name;
	enum log_level level;
} level_names[] = {
	{ "QUIET", LOG_LEVEL_QUIET },
	{ "SILENT", LOG_LEVEL_QUIET },	/* stock takes it too */
	{ "FATAL", LOG_LEVEL_FATAL },
	{ "ERROR", LOG_LEVEL_ERROR },
	{ "INFO", LOG_LEVEL_INFO },
	{ "VERBOSE", LOG_LEVEL_VERBOSE },
	{ "DEBUG", LOG_LEVEL_DEBUG1 },
	{ "DEBUG1", LOG_LEVEL_DEBUG1 },
	{ "DEBUG2", LOG_LEVEL_DEBUG2 },
	{ "DEBUG3", LOG_LEVEL_DEBUG3 },
};

static const struct {
	const char *name;
	int facility;
} facility_names[] = {
	{ "DAEMON", LOG_DAEMON },
	{ "USER", LOG_USER },
	{ "AUTH", LOG_AUTH },
#ifdef LOG_AUTHPRIV
	{ "AUTHPRIV", LOG_AUTHPRIV },
#endif
	{ "LOCAL0", LOG_LOCAL0 },
	{ "LOCAL1", LOG_LOCAL1 },
	{ "LOCAL2", LOG_LOCAL2 },
	{ "LOCAL3", LOG_LOCAL3 },
	{ "LOCAL4", LOG_LOCAL4 },
	{ "LOCAL5", LOG_LOCAL5 },
	{ "LOCAL6", LOG_LOCAL6 },
	{ "LOCAL7", LOG_LOCAL7 },
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

int
log_parse_level(const char *name, enum log_level *out)
{
	size_t i;

	for (i = 0; name != NULL && i < NELEM(level_names); i++) {
		if (strcasecmp(name, level_names[i].name) == 0) {
			*out = level_names[i].level;
			return 0;
		}
	}
	return -1;
}

int
log_parse_facility(const char *name, int *out)
{
	size_t i;

	for (i = 0; name != NULL && i < NELEM(facility_names); i++) {
		if (strcasecmp(name, facility_names[i].name) == 0) {
			*out = facility_names[i].facility;
			return 0;
		}
	}
	return -1;
}

void
log_init(const char *progname, enum log_level level, int facility,
    int to_stderr)
{
	const char *base;

	if (logstate.syslog_open) {
		closelog();
		logstate.syslog_open = 0;
	}
	base = progname == NULL ? "" : strrchr(progname, '/');
	base = base == NULL ? progname : base + 1;
	snprintf(logstate.ident, sizeof(logstate.ident), "%s", base);
	logstate.level = level;
	logstate.facility = facility;
	logstate.to_stderr = to_stderr;
}

void
log_reset(void)
{
	log_init("", LOG_LEVEL_ERROR, LOG_AUTH, 1);
	logstate.fatal_hook = NULL;
	logstate.sink = NULL;
}

enum log_level
log_get_level(void)
{
	return logstate.level;
}

void
log_detach(void)
{
	/* Whatever glibc holds is closed; the next line reopens syslog
	 * with our ident and facility. */
	closelog();
	logstate.syslog_open = 0;
	if (logstate.to_stderr && !stderr_is_file())
		logstate.to_stderr = 0;
}

void
log_set_fatal_hook(void (*hook)(void))
{
	logstate.fatal_hook = hook;
}

void
log_set_sink(void (*sink)(enum log_level, const char *))
{
	logstate.sink = sink;
}

/*
 * glibc's syslog() drops lines without a word when nothing listens on
 * the log socket.  Outside a chroot that is a host without a syslog
 * daemon (a container), a choice; inside one - no /proc is how a jail
 * looks from within - it is a socket the administrator forgot to give
 * the jail.  There, say so once on stderr: the only channel left.  sshd
 * passes it to the client of a command session ("ssh -T user@host
 * check", README.atomic's test) and throws it away in SFTP sessions.
 */
static void
check_log_socket(void)
{
	static const int types[] = { SOCK_DGRAM, SOCK_STREAM };
	static int checked;
	struct sockaddr_un sun;
	size_t i;
	int fd, e = 0;

	if (checked)
		return;
	checked = 1;
	if (access("/proc/self", F_OK) == 0)
		return;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", _PATH_LOG);
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		if ((fd = socket(AF_UNIX, types[i] | SOCK_CLOEXEC, 0)) < 0)
			return;
		e = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0 ?
		    0 : errno;
		close(fd);
		if (e != EPROTOTYPE)
			break;
	}
	if (e == 0)
		return;
	dprintf(STDERR_FILENO, "%s: cannot log: no syslog socket at %s in "
	    "this chroot (%s); the administrator must create one "
	    "(README.atomic, \"Chroot jails\")\r\n",
	    logstate.ident[0] ? logstate.ident : "atomic-upload", _PATH_LOG,
	    strerror(e));
}

void
do_logv(enum log_level level, const char *fmt, va_list ap)
{
	char msg[1024], line[1100];
	const char *prefix = "", *what;
	int saved_errno = errno, pri = LOG_INFO;
	size_t i;

	if (level > logstate.level || logstate.level == LOG_LEVEL_QUIET)
		return;
	switch (level) {
	case LOG_LEVEL_FATAL:
		pri = LOG_CRIT;
		break;
	case LOG_LEVEL_ERROR:
		pri = LOG_ERR;
		break;
	case LOG_LEVEL_INFO:
	case LOG_LEVEL_VERBOSE:
		pri = LOG_INFO;
		break;
	case LOG_LEVEL_DEBUG1:
		prefix = "debug1: ";
		pri = LOG_DEBUG;
		break;
	case LOG_LEVEL_DEBUG2:
		prefix = "debug2: ";
		pri = LOG_DEBUG;
		break;
	default:
		prefix = "debug3: ";
		pri = LOG_DEBUG;
		break;
	}
	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* Paths come from clients: never let them forge extra log lines. */
	for (i = 0; msg[i] != '\0'; i++) {
		if (msg[i] == '\n' || msg[i] == '\r')
			msg[i] = '?';
	}
	snprintf(line, sizeof(line), "%s%s", prefix, msg);
	if (logstate.sink != NULL) {
		logstate.sink(level, line);
	} else if (logstate.to_stderr) {
		/* Stock's longest line on stderr: 1021 characters. */
		dprintf(STDERR_FILENO, "%.1021s\r\n", line);
	} else {
		if (!logstate.syslog_open) {
			check_log_socket();
			openlog(logstate.ident[0] ? logstate.ident : NULL,
			    LOG_PID, logstate.facility);
			logstate.syslog_open = 1;
		}
		/* Stock's syslog lines (not its stderr ones) name these,
		 * and its longest message is 500 characters, these words
		 * included. */
		what = level == LOG_LEVEL_ERROR ? "error: " :
		    level == LOG_LEVEL_FATAL ? "fatal: " : "";
		syslog(pri, "%s%.*s", what, (int)(500 - strlen(what)), line);
	}
	errno = saved_errno;
}

void
do_log(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	do_logv(level, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	do_logv(LOG_LEVEL_FATAL, fmt, ap);
	va_end(ap);
	if (logstate.fatal_hook != NULL) {
		void (*hook)(void) = logstate.fatal_hook;

		logstate.fatal_hook = NULL;	/* a fatal inside the hook ends here */
		hook();
	}
	if ((n = stage_abort_all()) > 0)
		do_log(LOG_LEVEL_INFO, "aborted %d open upload%s on fatal error",
		    n, n == 1 ? "" : "s");
	exit(255);
}

void
log_stage(const struct stage_report *rep, int committed)
{
	char sum[80] = "";

	if (rep->sha256[0] != '\0')
		snprintf(sum, sizeof(sum), " sha256 %s", rep->sha256);
	if (rep->unchanged && rep->error == 0) {
		do_log(LOG_LEVEL_INFO, "unchanged \"%s\" bytes %lld seconds %.3f "
		    "method %s: nothing written, nothing published", rep->path,
		    (long long)rep->bytes, rep->seconds,
		    stage_method_name(rep->method));
	} else if (rep->published && rep->error != 0) {
		do_log(LOG_LEVEL_INFO, "commit \"%s\" bytes %lld seconds %.3f "
		    "method %s%s warning \"%s\"", rep->path,
		    (long long)rep->bytes, rep->seconds,
		    stage_method_name(rep->method), sum, rep->reason);
	} else if (committed && rep->error == 0) {
		do_log(LOG_LEVEL_INFO, "commit \"%s\" bytes %lld seconds %.3f "
		    "method %s%s", rep->path, (long long)rep->bytes,
		    rep->seconds, stage_method_name(rep->method), sum);
	} else {
		do_log(LOG_LEVEL_INFO, "abort \"%s\" bytes %lld seconds %.3f "
		    "method %s reason \"%s\"", rep->path, (long long)rep->bytes,
		    rep->seconds, stage_method_name(rep->method),
		    rep->reason[0] != '\0' ? rep->reason : "unknown");
		return;
	}
	/* What the digest cost beyond hashing on the way through. */
	if (rep->digest_reread > 0)
		do_log(LOG_LEVEL_VERBOSE, "digest \"%s\": %lld bytes read back "
		    "(written out of order or modified)", rep->path,
		    (long long)rep->digest_reread);
	if (rep->digest_holes > 0)
		do_log(LOG_LEVEL_INFO, "digest \"%s\": not computed: %lld bytes "
		    "of holes would have to be read back", rep->path,
		    (long long)rep->digest_holes);
	if (rep->xattr_error != 0)
		do_log(LOG_LEVEL_ERROR, "digest \"%s\": not stored as an "
		    "extended attribute: %s", rep->path,
		    strerror(rep->xattr_error));
}
