/*
 * The commit hook; see hook.h.
 *
 * Two processes are involved.  The session builds one record per event
 * (NAME=VALUE strings) and hands it to the runner with a single
 * non-blocking send() on a SOCK_SEQPACKET socket pair: the kernel queues
 * a whole record or nothing, so there is no framing to lose, and
 * MSG_NOSIGNAL means a runner that died gives EPIPE, never a SIGPIPE
 * (sftp-server ends the session on SIGPIPE).  The runner is a grandchild
 * whose parent exits at once: init adopts it, so the session never has a
 * child to reap.  Its state lives in runner_main()'s frame; nothing here
 * is global.
 */
#include "includes.h"

#include <sys/types.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <unistd.h>

#include "atomic-upload.h"
#include "hook.h"
#include "log.h"
#include "misc.h"

#define HOOK_TIMEOUT_MAX	86400	/* seconds */
#define HOOK_MAX_RUNNING_MAX	64
#define HOOK_RECORD_MAX		32768	/* bytes of one event's strings */
#define HOOK_SNDBUF		(1024 * 1024)	/* the kernel may cap it */
#define HOOK_KILL_GRACE		5	/* seconds from SIGTERM to SIGKILL */
#define HOOK_LINE_MAX		1000	/* bytes of one output line logged */
#define HOOK_LINES_MAX		100	/* output lines logged per run */
#define HOOK_DRAIN_READS	16	/* reads of a reaped hook's output */
#define RUNNER_EVFD		3	/* the event socket, in the runner */

extern char **environ;

struct hook {
	char *program;
	char *protocol;
	char *user;
	char *client_addr;
	int on_abort;
	unsigned int timeout;
	unsigned int max_running;
	enum stage_sync sync;
	int sock;		/* our end of the runner's socket; -1: none */
};

/*
 * Every name an event may set.  Inherited variables of these names are
 * never passed to a hook, so a variable hook.h calls absent is absent,
 * whatever the session's environment held (sshd's AcceptEnv may let a
 * client set it).
 */
static const char *const hook_vars[] = {
	"UPLOAD_EVENT", "UPLOAD_PATH", "UPLOAD_CLIENT_PATH", "UPLOAD_SIZE",
	"UPLOAD_SHA256", "UPLOAD_USER", "UPLOAD_CLIENT", "UPLOAD_PROTOCOL",
	"UPLOAD_DURABILITY", "UPLOAD_METHOD", "UPLOAD_SECONDS",
	"UPLOAD_REASON",
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- The session's side ---- */

/* One event being built: NAME=VALUE strings, each NUL-terminated. */
struct record {
	char *buf;		/* HOOK_RECORD_MAX bytes */
	size_t len;
};

static int __attribute__((format(printf, 3, 4)))
record_add(struct record *rec, const char *name, const char *fmt, ...)
{
	size_t room = HOOK_RECORD_MAX - rec->len;
	va_list ap;
	int n, m;

	n = snprintf(rec->buf + rec->len, room, "%s=", name);
	if (n < 0 || (size_t)n >= room)
		return E2BIG;
	va_start(ap, fmt);
	m = vsnprintf(rec->buf + rec->len + n, room - (size_t)n, fmt, ap);
	va_end(ap);
	if (m < 0 || (size_t)m >= room - (size_t)n)
		return E2BIG;
	rec->len += (size_t)n + (size_t)m + 1;	/* the NUL ends it */
	return 0;
}

/*
 * UPLOAD_PATH: where the content was published, absolute.  Without a
 * resolved path the destination is made absolute against our working
 * directory, which is the one stage_open() resolved it against (the
 * session does not chdir after it starts).
 */
static int
record_add_path(struct record *rec, const struct stage_report *rep)
{
	char cwd[PATH_MAX];
	const char *p = rep->path;

	if (rep->final_path[0] != '\0')
		return record_add(rec, "UPLOAD_PATH", "%s", rep->final_path);
	if (p[0] == '/' || getcwd(cwd, sizeof(cwd)) == NULL)
		return record_add(rec, "UPLOAD_PATH", "%s", p);
	while (p[0] == '.' && p[1] == '/') {
		for (p += 2; *p == '/'; p++)
			;
	}
	return record_add(rec, "UPLOAD_PATH", "%s/%s",
	    strcmp(cwd, "/") == 0 ? "" : cwd, p);
}

static int
build_record(const struct hook *h, const struct stage_report *rep,
    int commit, struct record *rec)
{
	int r;

	if ((r = record_add(rec, "UPLOAD_EVENT", "%s",
	    commit ? "commit" : "abort")) != 0 ||
	    (r = record_add_path(rec, rep)) != 0 ||
	    (r = record_add(rec, "UPLOAD_CLIENT_PATH", "%s", rep->path)) != 0 ||
	    (r = record_add(rec, "UPLOAD_SIZE", "%lld",
	    (long long)rep->bytes)) != 0 ||
	    (r = record_add(rec, "UPLOAD_USER", "%s", h->user)) != 0 ||
	    (r = record_add(rec, "UPLOAD_CLIENT", "%s", h->client_addr)) != 0 ||
	    (r = record_add(rec, "UPLOAD_PROTOCOL", "%s", h->protocol)) != 0 ||
	    (r = record_add(rec, "UPLOAD_DURABILITY", "%s",
	    stage_sync_name(h->sync))) != 0 ||
	    (r = record_add(rec, "UPLOAD_METHOD", "%s",
	    stage_method_name(rep->method))) != 0 ||
	    (r = record_add(rec, "UPLOAD_SECONDS", "%.3f", rep->seconds)) != 0)
		return r;
	if (rep->sha256[0] != '\0' &&
	    (r = record_add(rec, "UPLOAD_SHA256", "%.64s", rep->sha256)) != 0)
		return r;
	/* An abort always says why; a commit only when it has a warning. */
	if (!commit || rep->error != 0) {
		if ((r = record_add(rec, "UPLOAD_REASON", "%.*s",
		    (int)sizeof(rep->reason), rep->reason[0] != '\0' ?
		    rep->reason : "unknown")) != 0)
			return r;
	}
	return 0;
}

static void runner_main(const struct hook *h, int evfd)
    __attribute__((noreturn));

/*
 * Start the runner: fork, and fork again in the child, which exits at
 * once.  Waiting for that middle process takes no longer than a fork;
 * after it the runner belongs to init and no SIGCHLD of ours will ever
 * concern it.
 */
static int
start_runner(struct hook *h)
{
	int sv[2], status, r = 0, sndbuf = HOOK_SNDBUF;
	pid_t pid, w;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
		return errno;
	/* Room for a burst of events while the runner is still starting. */
	(void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf,
	    sizeof(sndbuf));
	if ((pid = fork()) == -1) {
		r = errno;
		goto out;
	}
	if (pid == 0) {
		close(sv[0]);
		if ((pid = fork()) == 0)
			runner_main(h, sv[1]);
		_exit(pid == -1 ? 1 : 0);
	}
	while ((w = waitpid(pid, &status, 0)) == -1 && errno == EINTR)
		;
	/* w == -1 (ECHILD) if SIGCHLD is ignored: the send will tell. */
	if (w == pid && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
		r = EAGAIN;
 out:
	close(sv[1]);
	if (r != 0) {
		close(sv[0]);
		return r;
	}
	h->sock = sv[0];
	debug("hook: runner started for %s", h->program);
	return 0;
}

/* Hand `rec` to the runner, starting one if needed; on failure `why`
 * (`whylen` bytes) says why. */
static int
hand_over(struct hook *h, const struct record *rec, char *why, size_t whylen)
{
	int r = 0, attempt;
	ssize_t n;

	for (attempt = 0; attempt < 2; attempt++) {
		if (h->sock == -1 && (r = start_runner(h)) != 0) {
			snprintf(why, whylen, "cannot start the hook runner: "
			    "%s", strerror(r));
			return r;
		}
		while ((n = send(h->sock, rec->buf, rec->len,
		    MSG_DONTWAIT | MSG_NOSIGNAL)) == -1 && errno == EINTR)
			;
		if (n >= 0)
			return 0;
		r = errno;
		if (r == EAGAIN || r == EWOULDBLOCK) {
			snprintf(why, whylen,
			    "the hook runner's queue is full");
			return r;
		}
		if (r != EPIPE && r != ECONNRESET && r != ENOTCONN) {
			snprintf(why, whylen, "%s", strerror(r));
			return r;
		}
		/* The runner died (killed by someone): a new one takes the
		 * event, once. */
		close(h->sock);
		h->sock = -1;
		snprintf(why, whylen, "the hook runner is gone");
	}
	return r;
}

int
hook_new(const struct hook_opts *o, struct hook **hp)
{
	struct hook *h = NULL;
	int r = 0;

	*hp = NULL;
	if (o == NULL || o->program == NULL || o->program[0] != '/')
		return EINVAL;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return ENOMEM;
	h->sock = -1;
	if ((h->program = strdup(o->program)) == NULL ||
	    (h->protocol = strdup(o->protocol != NULL ?
	    o->protocol : "")) == NULL ||
	    (h->user = strdup(o->user != NULL ? o->user : "")) == NULL ||
	    (h->client_addr = strdup(o->client_addr != NULL ?
	    o->client_addr : "UNKNOWN")) == NULL) {
		r = ENOMEM;
		goto out;
	}
	h->on_abort = o->on_abort != 0;
	h->timeout = o->timeout == 0 ? HOOK_TIMEOUT_DEFAULT :
	    o->timeout > HOOK_TIMEOUT_MAX ? HOOK_TIMEOUT_MAX : o->timeout;
	h->max_running = o->max_running == 0 ? HOOK_MAX_RUNNING_DEFAULT :
	    o->max_running > HOOK_MAX_RUNNING_MAX ? HOOK_MAX_RUNNING_MAX :
	    o->max_running;
	h->sync = o->sync;
	*hp = h;
	h = NULL;
 out:
	hook_free(h);
	return r;
}

void
hook_upload(struct hook *h, const struct stage_report *rep, int committed)
{
	struct record rec = { NULL, 0 };
	char why[128] = "";
	int commit, r;

	if (h == NULL || rep == NULL || rep->unchanged)
		return;
	/* As log_stage() tells them apart: content that was published is
	 * a commit, even when a later step failed (a warning). */
	commit = rep->published || (committed && rep->error == 0);
	if (!commit && !h->on_abort)
		return;
	if ((rec.buf = malloc(HOOK_RECORD_MAX)) == NULL) {
		r = ENOMEM;
		goto out;
	}
	if ((r = build_record(h, rep, commit, &rec)) != 0)
		goto out;
	r = hand_over(h, &rec, why, sizeof(why));
 out:
	if (r != 0)
		error("hook: event for \"%s\" dropped: %s", rep->path,
		    why[0] != '\0' ? why : strerror(r));
	free(rec.buf);
}

void
hook_free(struct hook *h)
{
	if (h == NULL)
		return;
	/* The runner sees EOF, finishes what it has and exits. */
	if (h->sock != -1)
		close(h->sock);
	free(h->program);
	free(h->protocol);
	free(h->user);
	free(h->client_addr);
	free(h);
}

static int
parse_on_off(const char *s, int *on)
{
	static const char *const yes[] = { "on", "yes", "1", "true" };
	static const char *const no[] = { "off", "no", "0", "false" };
	size_t i;

	for (i = 0; i < NELEM(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*on = 1;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*on = 0;
			return 0;
		}
	}
	return EINVAL;
}

static int
parse_range(const char *s, unsigned int lo, unsigned int hi,
    unsigned int *out)
{
	unsigned long long v;
	int r;

	if ((r = parse_u64(s, &v)) != 0)
		return r;
	if (v < lo || v > hi)
		return ERANGE;
	*out = (unsigned int)v;
	return 0;
}

void
hook_settings_from_env(struct hook_opts *o)
{
	const char *env;
	unsigned int v;
	int on;

	if ((env = getenv("ATOMIC_UPLOAD_HOOK_ABORTS")) != NULL &&
	    *env != '\0') {
		if (parse_on_off(env, &on) != 0)
			error("ATOMIC_UPLOAD_HOOK_ABORTS=%s not understood: "
			    "hooks %s after aborts", env,
			    o->on_abort ? "run" : "do not run");
		else
			o->on_abort = on;
	}
	if ((env = getenv("ATOMIC_UPLOAD_HOOK_TIMEOUT")) != NULL &&
	    *env != '\0') {
		if (parse_range(env, 1, HOOK_TIMEOUT_MAX, &v) != 0)
			error("ATOMIC_UPLOAD_HOOK_TIMEOUT=%s not understood "
			    "(1 to %u seconds): using %u", env,
			    HOOK_TIMEOUT_MAX, o->timeout != 0 ? o->timeout :
			    HOOK_TIMEOUT_DEFAULT);
		else
			o->timeout = v;
	}
	if ((env = getenv("ATOMIC_UPLOAD_HOOK_MAX_RUNNING")) != NULL &&
	    *env != '\0') {
		if (parse_range(env, 1, HOOK_MAX_RUNNING_MAX, &v) != 0)
			error("ATOMIC_UPLOAD_HOOK_MAX_RUNNING=%s not "
			    "understood (1 to %u): using %u", env,
			    HOOK_MAX_RUNNING_MAX,
			    o->max_running != 0 ? o->max_running :
			    HOOK_MAX_RUNNING_DEFAULT);
		else
			o->max_running = v;
	}
}

/* ---- The runner (a detached grandchild of the session) ---- */

/* One queued event: the record as received, checked. */
struct event {
	char *rec;		/* NAME=VALUE strings, each NUL-terminated */
	size_t len;
	size_t nvars;
	const char *path;	/* UPLOAD_PATH's value, inside rec */
};

/* One running hook.  A free slot has pid 0. */
struct job {
	pid_t pid;		/* also its process group */
	int out;		/* its stdout and stderr; -1 after EOF */
	struct event *ev;
	char *name;		/* the path, sanitised for the log */
	double start;
	double kill_at;		/* SIGKILL after the SIGTERM */
	int term_sent;
	int kill_sent;
	char line[HOOK_LINE_MAX + 1];
	size_t linelen;
	int skipping;		/* the rest of an over-long line */
	unsigned int lines;	/* output lines logged */
	int muted;		/* more than HOOK_LINES_MAX */
};

struct runner {
	const char *program;
	unsigned int timeout;
	unsigned int max_running;
	int evfd;		/* -1 once the session closed its end */
	int sigfd;		/* SIGCHLD */
	struct event **queue;	/* ring of HOOK_MAX_QUEUED */
	size_t qhead;
	size_t qlen;
	struct job *jobs;	/* max_running slots */
	unsigned int running;
	char *buf;		/* HOOK_RECORD_MAX, for receiving */
	struct pollfd *pfd;	/* 2 + max_running */
	struct job **pjob;	/* the job of each pfd entry, or NULL */
};

static void
event_free(struct event *ev)
{
	if (ev == NULL)
		return;
	free(ev->rec);
	free(ev);
}

/* Check a received record and keep a copy of it. */
static int
event_parse(const char *buf, size_t len, struct event **evp)
{
	struct event *ev = NULL;
	char *p, *eq;
	int r = 0;

	*evp = NULL;
	if (len == 0 || buf[len - 1] != '\0')
		return EINVAL;
	if ((ev = calloc(1, sizeof(*ev))) == NULL ||
	    (ev->rec = malloc(len)) == NULL) {
		r = ENOMEM;
		goto out;
	}
	memcpy(ev->rec, buf, len);
	ev->len = len;
	for (p = ev->rec; p < ev->rec + len; p += strlen(p) + 1) {
		if ((eq = strchr(p, '=')) == NULL || eq == p) {
			r = EINVAL;
			goto out;
		}
		if (strncmp(p, "UPLOAD_PATH=", 12) == 0)
			ev->path = eq + 1;
		ev->nvars++;
	}
	if (ev->path == NULL) {
		r = EINVAL;
		goto out;
	}
	*evp = ev;
	ev = NULL;
 out:
	event_free(ev);
	return r;
}

/* Does the NAME=VALUE string `var` name a variable `ev` sets (or one
 * it may set)? */
static int
event_sets(const struct event *ev, const char *var)
{
	const char *p;
	size_t i, n;

	if ((p = strchr(var, '=')) == NULL)
		return 0;
	n = (size_t)(p - var);
	for (i = 0; i < NELEM(hook_vars); i++) {
		if (strlen(hook_vars[i]) == n &&
		    strncmp(var, hook_vars[i], n) == 0)
			return 1;
	}
	for (p = ev->rec; p < ev->rec + ev->len; p += strlen(p) + 1) {
		if (strncmp(p, var, n + 1) == 0)
			return 1;
	}
	return 0;
}

/* The hook's environment: ours, with the event's variables replacing
 * any of the same names.  The strings stay ours and ev's. */
static int
job_environment(const struct event *ev, char ***envp)
{
	char **env, *p;
	size_t n, i, k = 0;

	*envp = NULL;
	for (n = 0; environ != NULL && environ[n] != NULL; n++)
		;
	if ((env = calloc(n + ev->nvars + 1, sizeof(*env))) == NULL)
		return ENOMEM;
	for (i = 0; i < n; i++) {
		if (!event_sets(ev, environ[i]))
			env[k++] = environ[i];
	}
	for (p = ev->rec; p < ev->rec + ev->len; p += strlen(p) + 1)
		env[k++] = p;
	env[k] = NULL;
	*envp = env;
	return 0;
}

/* Every signal to its default action, none blocked: what a freshly
 * started program expects (the session ignores or catches some). */
static void
signals_default(void)
{
	struct sigaction sa;
	sigset_t none;
	int sig;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	for (sig = 1; sig < NSIG; sig++)
		(void)sigaction(sig, &sa, NULL);	/* KILL, STOP: EINVAL */
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
}

/* In the hook's child: become the hook.  stdin is the runner's, i.e.
 * /dev/null. */
static void __attribute__((noreturn))
job_exec(const char *program, const char *path, int outfd, char **envp)
{
	char *argv[3];

	/* Its own group, so a timeout kills what it started too. */
	(void)setpgid(0, 0);
	signals_default();
	if (dup2(outfd, STDOUT_FILENO) == -1 ||
	    dup2(outfd, STDERR_FILENO) == -1)
		_exit(127);
	argv[0] = (char *)program;
	argv[1] = (char *)path;
	argv[2] = NULL;
	execve(program, argv, envp);
	dprintf(STDERR_FILENO, "cannot execute %s: %s\n", program,
	    strerror(errno));
	free(envp);	/* only for leak checkers, which also run at _exit */
	_exit(127);
}

static int
job_start(struct runner *R, struct job *j, struct event *ev)
{
	char **envp = NULL;
	int out[2] = { -1, -1 }, r = 0;
	pid_t pid;

	if ((r = job_environment(ev, &envp)) != 0)
		goto out;
	if ((j->name = strdup(ev->path)) == NULL) {
		r = ENOMEM;
		goto out;
	}
	sanitise_copy(j->name, strlen(j->name) + 1, j->name);
	/* Close-on-exec: other hooks must not inherit this one's pipe. */
	if (pipe2(out, O_CLOEXEC) != 0) {
		r = errno;
		goto out;
	}
	if ((pid = fork()) == -1) {
		r = errno;
		goto out;
	}
	if (pid == 0)
		job_exec(R->program, ev->path, out[1], envp);
	/* Also here, so kill(-pid) works before the child got to it. */
	(void)setpgid(pid, pid);
	/* Only our end: the hook's stdout must stay blocking. */
	(void)fcntl(out[0], F_SETFL, O_NONBLOCK);
	j->pid = pid;
	j->out = out[0];
	out[0] = -1;
	j->ev = ev;
	j->start = monotime_double();
	R->running++;
	debug("hook \"%s\": started, pid %ld", j->name, (long)pid);
 out:
	if (r != 0) {
		free(j->name);
		j->name = NULL;
	}
	if (out[0] != -1)
		close(out[0]);
	if (out[1] != -1)
		close(out[1]);
	free(envp);
	return r;
}

static void
job_log_line(struct job *j)
{
	char clean[HOOK_LINE_MAX + 1];

	if (j->linelen > 0 && j->line[j->linelen - 1] == '\r')
		j->linelen--;
	j->line[j->linelen] = '\0';
	j->linelen = 0;
	if (j->muted)
		return;
	if (j->lines >= HOOK_LINES_MAX) {
		logit("hook \"%s\": output truncated", j->name);
		j->muted = 1;
		return;
	}
	j->lines++;
	sanitise_copy(clean, sizeof(clean), j->line);
	logit("hook \"%s\": %s", j->name, clean);
}

static void
job_take_output(struct job *j, const char *buf, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			if (!j->skipping)
				job_log_line(j);
			j->skipping = 0;
			j->linelen = 0;
		} else if (j->skipping) {
			continue;
		} else if (j->linelen == HOOK_LINE_MAX) {
			/* Log the start of it, drop the rest. */
			job_log_line(j);
			j->skipping = 1;
		} else
			j->line[j->linelen++] = buf[i] == '\0' ? '?' : buf[i];
	}
}

/* The hook's output is at EOF or no longer read. */
static void
job_close_output(struct job *j)
{
	if (j->out == -1)
		return;
	if (j->linelen > 0 && !j->skipping)
		job_log_line(j);
	close(j->out);
	j->out = -1;
}

/* One read of the hook's output; 0 while more may come. */
static int
job_read_output(struct job *j)
{
	char buf[4096];
	ssize_t n;

	if (j->out == -1)
		return EPIPE;
	if ((n = read(j->out, buf, sizeof(buf))) > 0) {
		job_take_output(j, buf, (size_t)n);
		return 0;
	}
	if (n == -1 && errno == EINTR)
		return 0;
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return EAGAIN;
	job_close_output(j);
	return EPIPE;
}

static void
job_finish(struct runner *R, struct job *j, int status)
{
	double secs = monotime_double() - j->start;
	int i;

	/*
	 * What the hook wrote before it exited is in the pipe now.  A
	 * process it left behind may hold the pipe open for ever: take
	 * what is there and stop.
	 */
	for (i = 0; i < HOOK_DRAIN_READS; i++) {
		if (job_read_output(j) != 0)
			break;
	}
	job_close_output(j);
	if (j->term_sent)
		error("hook \"%s\": timed out after %u s, killed", j->name,
		    R->timeout);
	else if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		verbose("hook \"%s\": exit 0 after %.3f s", j->name, secs);
	else if (WIFEXITED(status))
		error("hook \"%s\": exit status %d", j->name,
		    WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		error("hook \"%s\": killed by signal %d", j->name,
		    WTERMSIG(status));
	event_free(j->ev);
	free(j->name);
	memset(j, 0, sizeof(*j));
	j->out = -1;
	R->running--;
}

static void
runner_reap(struct runner *R)
{
	struct signalfd_siginfo si;
	unsigned int i;
	pid_t pid;
	int status;

	/* Signals merge: the waitpid loop finds every child anyway. */
	while (read(R->sigfd, &si, sizeof(si)) > 0)
		;
	for (;;) {
		if ((pid = waitpid(-1, &status, WNOHANG)) == -1 &&
		    errno == EINTR)
			continue;
		if (pid <= 0)
			break;
		for (i = 0; i < R->max_running; i++) {
			if (R->jobs[i].pid == pid) {
				job_finish(R, &R->jobs[i], status);
				break;
			}
		}
	}
}

/* Take every event the session has sent, without waiting. */
static void
runner_read_events(struct runner *R)
{
	struct event *ev;
	ssize_t n;
	int r;

	while (R->evfd != -1) {
		n = recv(R->evfd, R->buf, HOOK_RECORD_MAX, MSG_DONTWAIT);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			if (n == -1)
				error("hook: reading events: %s",
				    strerror(errno));
			close(R->evfd);
			R->evfd = -1;
			return;
		}
		if ((r = event_parse(R->buf, (size_t)n, &ev)) != 0) {
			error("hook: bad event dropped: %s", strerror(r));
			continue;
		}
		if (R->qlen == HOOK_MAX_QUEUED) {
			error("hook: event for \"%s\" dropped: %d events "
			    "already waiting", ev->path, HOOK_MAX_QUEUED);
			event_free(ev);
			continue;
		}
		R->queue[(R->qhead + R->qlen) % HOOK_MAX_QUEUED] = ev;
		R->qlen++;
	}
}

static void
runner_start_jobs(struct runner *R)
{
	struct event *ev;
	unsigned int i;
	int r;

	while (R->qlen > 0 && R->running < R->max_running) {
		ev = R->queue[R->qhead];
		R->qhead = (R->qhead + 1) % HOOK_MAX_QUEUED;
		R->qlen--;
		for (i = 0; R->jobs[i].pid != 0; i++)
			;	/* running < max_running: one is free */
		if ((r = job_start(R, &R->jobs[i], ev)) != 0) {
			error("hook \"%s\": cannot start %s: %s", ev->path,
			    R->program, strerror(r));
			event_free(ev);
		}
	}
}

static void
job_signal(const struct job *j, int sig)
{
	/* The group is ours while its leader is unreaped; if it somehow
	 * is not a group, the hook alone. */
	if (kill(-j->pid, sig) == -1)
		(void)kill(j->pid, sig);
}

static void
runner_timeouts(struct runner *R, double now)
{
	struct job *j;
	unsigned int i;

	for (i = 0; i < R->max_running; i++) {
		j = &R->jobs[i];
		if (j->pid == 0)
			continue;
		if (!j->term_sent && now >= j->start + R->timeout) {
			job_signal(j, SIGTERM);
			j->term_sent = 1;
			j->kill_at = now + HOOK_KILL_GRACE;
		} else if (j->term_sent && !j->kill_sent && now >= j->kill_at) {
			job_signal(j, SIGKILL);
			j->kill_sent = 1;
		}
	}
}

/* Milliseconds until the next timeout is due, -1 for none. */
static int
runner_poll_ms(const struct runner *R, double now)
{
	const struct job *j;
	double next = -1, t, ms;
	unsigned int i;

	for (i = 0; i < R->max_running; i++) {
		j = &R->jobs[i];
		if (j->pid == 0 || j->kill_sent)
			continue;
		t = j->term_sent ? j->kill_at : j->start + R->timeout;
		if (next < 0 || t < next)
			next = t;
	}
	if (next < 0)
		return -1;
	if (next <= now)
		return 0;
	ms = (next - now) * 1000 + 1;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

static void __attribute__((noreturn))
runner_loop(struct runner *R)
{
	unsigned int i;
	nfds_t n, k;

	for (;;) {
		runner_start_jobs(R);
		if (R->evfd == -1 && R->qlen == 0 && R->running == 0) {
			debug("hook: runner done");
			_exit(0);
		}
		/* Output first and SIGCHLD last: lines before exit lines. */
		n = 0;
		for (i = 0; i < R->max_running; i++) {
			if (R->jobs[i].pid != 0 && R->jobs[i].out != -1) {
				R->pfd[n].fd = R->jobs[i].out;
				R->pfd[n].events = POLLIN;
				R->pjob[n++] = &R->jobs[i];
			}
		}
		if (R->evfd != -1) {
			R->pfd[n].fd = R->evfd;
			R->pfd[n].events = POLLIN;
			R->pjob[n++] = NULL;
		}
		R->pfd[n].fd = R->sigfd;
		R->pfd[n].events = POLLIN;
		R->pjob[n++] = NULL;
		if (poll(R->pfd, n, runner_poll_ms(R, monotime_double())) > 0) {
			for (k = 0; k < n; k++) {
				if (R->pfd[k].revents == 0)
					continue;
				if (R->pjob[k] != NULL)
					(void)job_read_output(R->pjob[k]);
				else if (R->pfd[k].fd == R->evfd)
					runner_read_events(R);
				else
					runner_reap(R);
			}
		}
		runner_timeouts(R, monotime_double());
	}
}

/* Close every descriptor from `lowfd` up. */
static void
close_from(int lowfd)
{
	struct rlimit rl;
	struct dirent *de;
	DIR *d;
	long fd, maxfd;
	char *end;

#ifdef SYS_close_range
	if (syscall(SYS_close_range, (unsigned int)lowfd, ~0U, 0) == 0)
		return;
#endif
	if ((d = opendir("/proc/self/fd")) != NULL) {
		while ((de = readdir(d)) != NULL) {
			fd = strtol(de->d_name, &end, 10);
			if (*end == '\0' && end != de->d_name &&
			    fd >= lowfd && fd != dirfd(d))
				close((int)fd);
		}
		closedir(d);
		return;
	}
	maxfd = getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur != RLIM_INFINITY ? (long)rl.rlim_cur : 65536;
	for (fd = lowfd; fd < maxfd; fd++)
		close((int)fd);
}

/*
 * Keep only the event socket (moved to RUNNER_EVFD), with /dev/null on
 * stdin and stdout: the session's connection, staged files and the rest
 * must not outlive the session in us.  stderr stays if it is a log file
 * or a terminal; a pipe or socket is sshd's channel, which would keep the
 * client's session open as long as we hold it.
 */
static int
runner_fds(int evfd)
{
	struct stat st;
	int null, keep;

	keep = fstat(STDERR_FILENO, &st) == 0 &&
	    (S_ISREG(st.st_mode) || isatty(STDERR_FILENO));
	if (evfd != RUNNER_EVFD &&
	    dup3(evfd, RUNNER_EVFD, O_CLOEXEC) == -1)
		return errno;
	/* Lowest free: 0..2 if one was closed, else above RUNNER_EVFD. */
	if ((null = open_null()) == -1)
		return errno;
	if (dup2(null, STDIN_FILENO) == -1 ||
	    dup2(null, STDOUT_FILENO) == -1 ||
	    (!keep && dup2(null, STDERR_FILENO) == -1))
		return errno;
	close_from(RUNNER_EVFD + 1);	/* null too, unless it is 0..2 */
	return 0;
}

static void
runner_main(const struct hook *h, int evfd)
{
	struct runner R;
	sigset_t chld;
	int r;

	memset(&R, 0, sizeof(R));
	(void)setsid();
	signals_default();
	/* The session's fatal hook would abort its uploads from here. */
	log_set_fatal_hook(NULL);
	/* glibc's syslog socket is about to be closed under it, and a
	 * stderr that is the connection's is let go: from here lines go
	 * to syslog (same ident and facility) or to a log file. */
	log_detach();
	if ((r = runner_fds(evfd)) != 0) {
		error("hook: runner: descriptors: %s", strerror(r));
		_exit(1);
	}
	R.program = h->program;
	R.timeout = h->timeout;
	R.max_running = h->max_running;
	R.evfd = RUNNER_EVFD;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &chld, NULL) != 0 ||
	    (R.sigfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC)) == -1) {
		error("hook: runner: signalfd: %s", strerror(errno));
		_exit(1);
	}
	if ((R.queue = calloc(HOOK_MAX_QUEUED, sizeof(*R.queue))) == NULL ||
	    (R.jobs = calloc(R.max_running, sizeof(*R.jobs))) == NULL ||
	    (R.buf = malloc(HOOK_RECORD_MAX)) == NULL ||
	    (R.pfd = calloc(R.max_running + 2, sizeof(*R.pfd))) == NULL ||
	    (R.pjob = calloc(R.max_running + 2, sizeof(*R.pjob))) == NULL) {
		error("hook: runner: out of memory");
		_exit(1);
	}
	runner_loop(&R);
}
