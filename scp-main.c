/*
 * scp: the command line.  "scp -t" and "scp -f" are the server side sshd
 * runs for legacy clients; anything else is the legacy client, which
 * spawns ssh to run them on the other host and speaks to it over pipes.
 */
#include "includes.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "atomic-upload.h"
#include "digest.h"
#include "hook.h"
#include "log.h"
#include "misc.h"
#include "scp.h"

#define EXIT_ERRORS	1

/* Set by the signal handler; the protocol code stops at its next I/O. */
static volatile sig_atomic_t got_signal;

/*
 * Client: the children alive (ssh, the -S program, a local source), so
 * that a signal reaches them at once, as stock's does: one waiting for a
 * peer that never answers would otherwise keep us waiting too.
 */
#define MAX_CHILDREN	2
static volatile pid_t children[MAX_CHILDREN];

/* The ssh command line, as the user's options shape it. */
struct argv_list {
	char **v;
	int n, cap;
};

struct client {
	struct argv_list ssh;	/* ssh and the options every call shares */
	const char *port;
	struct scp_opts opts;
	unsigned long long limit_bps;
	int ssh_verbose;
	int errors;
};

/* A parsed "[user@]host:path". */
struct remote {
	char *user;		/* NULL when not given */
	char *host;
	char *path;		/* "" becomes "." */
};

static void
usage(void)
{
	fprintf(stderr,
	    "usage: scp [-346ABCOpqRrTv] [-c cipher] [-F ssh_config] "
	    "[-i identity_file]\n"
	    "           [-J destination] [-l limit] [-o ssh_option] "
	    "[-P port]\n"
	    "           [-S program] source ... target\n");
	exit(EXIT_ERRORS);
}

static void
on_signal(int signo)
{
	int i;

	got_signal = signo;
	/* kill() is async-signal-safe; the children are reaped later. */
	for (i = 0; i < MAX_CHILDREN; i++) {
		if (children[i] > 0)
			kill(children[i], signo);
	}
}

static void
child_add(pid_t pid)
{
	int i;

	for (i = 0; i < MAX_CHILDREN; i++) {
		if (children[i] <= 0) {
			children[i] = pid;
			return;
		}
	}
	/* Never more than two at once; a third is only not signalled. */
}

static void
child_forget(pid_t pid)
{
	int i;

	for (i = 0; i < MAX_CHILDREN; i++) {
		if (children[i] == pid)
			children[i] = 0;
	}
}

static void
install_signals(int server)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: a blocked read returns and the code sees the flag. */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (server)
		sigaction(SIGPIPE, &sa, NULL);
	else
		signal(SIGPIPE, SIG_IGN);	/* a dead ssh: EPIPE */
}

/* Server: stagings are aborted by now; die of the signal. */
static void
exit_for_signal(void)
{
	int signo = got_signal;

	if (signo == 0)
		return;
	if (stage_abort_all() > 0)
		logit("aborted open uploads on signal %d", signo);
	signal(signo, SIG_DFL);
	raise(signo);
	exit(EXIT_ERRORS);
}

/* Client: stock's scp kills its ssh, reaps it and exits 1 on a signal;
 * by now our children are reaped and our stagings aborted. */
static void
client_exit_for_signal(void)
{
	if (got_signal == 0)
		return;
	(void)stage_abort_all();
	exit(EXIT_ERRORS);
}

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

/*
 * Staging settings from the environment (sshd's SetEnv, or the wrapper's
 * /etc/default/atomic-upload).  A bad value is logged and the safe
 * default kept.  *tmpdir is allocated.
 */
static void
stage_settings(struct stage_opts *so, char **tmpdir)
{
	struct passwd *pw;
	const char *env;
	int on, r, have_sync = 0;

	*tmpdir = NULL;
	if ((env = getenv("ATOMIC_UPLOAD_TMPDIR")) != NULL && *env != '\0') {
		pw = session_passwd(NULL);
		if ((r = stage_expand_dir(env, pw->pw_name, pw->pw_dir,
		    pw->pw_uid, tmpdir)) != 0) {
			error("ATOMIC_UPLOAD_TMPDIR=%s: %s: staging beside "
			    "each destination", env, r == EINVAL ?
			    "unknown %-escape" : strerror(r));
			*tmpdir = NULL;
		}
	}
	so->tmpdir = *tmpdir;
	if ((env = getenv("ATOMIC_UPLOAD_SYNC")) != NULL && *env != '\0') {
		if (stage_parse_sync(env, &so->sync) == 0)
			have_sync = 1;
		else {
			error("ATOMIC_UPLOAD_SYNC=%s not understood: using "
			    "full", env);
			so->sync = STAGE_SYNC_FULL;
		}
	}
	if ((env = getenv("ATOMIC_UPLOAD_STAGING")) != NULL && *env != '\0') {
		if (parse_switch(env, &on) != 0)
			error("ATOMIC_UPLOAD_STAGING=%s not understood: "
			    "staging stays on", env);
		else
			so->disabled = !on;
	}
	if ((env = getenv("ATOMIC_UPLOAD_TMPFILE")) != NULL && *env != '\0') {
		if (parse_switch(env, &on) != 0)
			error("ATOMIC_UPLOAD_TMPFILE=%s not understood: "
			    "O_TMPFILE stays allowed", env);
		else
			so->no_tmpfile = !on;
	}
	/* Staging off means stock behaviour, as in sftp-server: no flush
	 * either, unless a durability was asked for. */
	if (so->disabled && !have_sync)
		so->sync = STAGE_SYNC_NONE;
	/* Each upload's SHA-256: on unless switched off; stored as an
	 * extended attribute on request (which needs it). */
	so->digest = 1;
	if ((env = getenv("ATOMIC_UPLOAD_DIGEST")) != NULL && *env != '\0') {
		if (parse_switch(env, &on) != 0)
			error("ATOMIC_UPLOAD_DIGEST=%s not understood: "
			    "digests stay on", env);
		else
			so->digest = on;
	}
	if ((env = getenv("ATOMIC_UPLOAD_XATTR")) != NULL && *env != '\0') {
		if (parse_switch(env, &on) != 0)
			error("ATOMIC_UPLOAD_XATTR=%s not understood: no xattr",
			    env);
		else if (on) {
			so->digest = 1;
			so->digest_xattr = DIGEST_XATTR_NAME;
		}
	}
}

/*
 * The commit hook for a server sink (ATOMIC_UPLOAD_HOOK), or NULL.  A
 * hook that is not an absolute path is refused with a log line; the
 * uploads go on without it.
 */
static struct hook *
sink_hook(const struct stage_opts *so, char *addr, size_t addrlen)
{
	struct hook_opts ho;
	struct hook *h = NULL;
	struct passwd *pw;
	const char *env;

	if ((env = getenv("ATOMIC_UPLOAD_HOOK")) == NULL || *env == '\0')
		return NULL;
	memset(&ho, 0, sizeof(ho));
	ho.program = env;
	ho.protocol = "scp";
	pw = session_passwd(NULL);
	ho.user = pw->pw_name;
	ho.client_addr = ssh_client_address(addr, addrlen);
	ho.sync = so->sync;
	hook_settings_from_env(&ho);
	if (hook_new(&ho, &h) != 0) {
		error("ATOMIC_UPLOAD_HOOK=%s: not an absolute path: no hook",
		    env);
		return NULL;
	}
	return h;
}

static void
setup_log(int server)
{
	const char *env = getenv("ATOMIC_UPLOAD_LOG");

	if (!server) {
		/* The user's scp: errors on the terminal, no syslog. */
		log_init("scp", LOG_LEVEL_ERROR, LOG_USER, 1);
		return;
	}
	if (env != NULL && strcasecmp(env, "stderr") == 0)
		log_init("scp", LOG_LEVEL_INFO, LOG_AUTH, 1);
	else if (env != NULL && strcasecmp(env, "none") == 0)
		log_init("scp", LOG_LEVEL_QUIET, LOG_AUTH, 1);
	else
		log_init("scp", LOG_LEVEL_INFO, LOG_AUTH, 0);
}

/* Server side: scp -t TARGET / scp -f PATH... */
static int
run_server(int sink, struct scp_opts *o, char **args, int nargs)
{
	struct scp_peer *p;
	char *tmpdir = NULL, addr[128];
	unsigned int swept;
	int r, status;

	setup_log(1);
	stage_settings(&o->stage, &tmpdir);
	if (tmpdir != NULL && stage_sweep(tmpdir, 0, &swept) == 0 && swept > 0)
		logit("sweep \"%s\": removed %u stale temporary file%s",
		    tmpdir, swept, swept == 1 ? "" : "s");
	install_signals(1);
	if ((p = malloc(sizeof(*p))) == NULL)
		fatal("out of memory");
	scp_peer_init(p, STDIN_FILENO, STDOUT_FILENO, &got_signal);
	if (sink && (o->hook = sink_hook(&o->stage, addr,
	    sizeof(addr))) != NULL)
		o->stage.resolve_path = 1;
	if (sink) {
		if (nargs != 1) {
			scp_warn(p, o, "ambiguous target");
			r = SCP_FATAL;
		} else
			r = scp_sink(p, o, args[0]);
	} else
		r = scp_source(p, o, args, nargs);
	status = (r != 0 || p->errors > 0) ? EXIT_ERRORS : 0;
	/* Hooks still queued run on after us; we do not wait. */
	hook_free(o->hook);
	o->hook = NULL;
	free(p);
	free(tmpdir);
	exit_for_signal();
	return status;
}

/* Client side */

static void
argv_add(struct argv_list *a, const char *fmt, ...)
{
	va_list ap;
	char *s;

	if (a->n + 2 > a->cap) {
		a->cap = a->cap == 0 ? 32 : a->cap * 2;
		if ((a->v = realloc(a->v, (size_t)a->cap * sizeof(*a->v))) ==
		    NULL)
			fatal("out of memory");
	}
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		fatal("out of memory");
	va_end(ap);
	a->v[a->n++] = s;
	a->v[a->n] = NULL;
}

static void
argv_free(struct argv_list *a)
{
	int i;

	for (i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
	memset(a, 0, sizeof(*a));
}

/*
 * Where the host part of "[user@]host:path" ends, or NULL for a local
 * path: a ':' before any '/', with [v6] addresses kept whole.  A leading
 * ':' is a local name.
 */
static char *
remote_colon(char *arg)
{
	int bracket = 0;
	char *cp;

	if (*arg == ':')
		return NULL;
	if (*arg == '[')
		bracket = 1;
	for (cp = arg; *cp != '\0'; cp++) {
		if (*cp == '@' && cp[1] == '[')
			bracket = 1;
		if (*cp == ']' && cp[1] == ':' && bracket)
			return cp + 1;
		if (*cp == ':' && !bracket)
			return cp;
		if (*cp == '/')
			return NULL;
	}
	return NULL;
}

static int
parse_remote(const char *arg, struct remote *rm)
{
	char *copy, *colon, *at, *host;
	size_t hl;

	memset(rm, 0, sizeof(*rm));
	if ((copy = strdup(arg)) == NULL)
		return ENOMEM;
	if ((colon = remote_colon(copy)) == NULL) {
		free(copy);
		return EINVAL;
	}
	*colon = '\0';
	host = copy;
	if ((at = strrchr(copy, '@')) != NULL) {
		*at = '\0';
		rm->user = strdup(copy);
		host = at + 1;
	}
	hl = strlen(host);
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
		host[hl - 1] = '\0';
		host++;
	}
	rm->host = strdup(host);
	rm->path = strdup(colon[1] != '\0' ? colon + 1 : ".");
	free(copy);
	if (rm->host == NULL || rm->path == NULL || (at != NULL &&
	    rm->user == NULL) || *rm->host == '\0')
		return rm->host != NULL && *rm->host == '\0' ? EINVAL : ENOMEM;
	return 0;
}

static void
remote_free(struct remote *rm)
{
	free(rm->user);
	free(rm->host);
	free(rm->path);
	memset(rm, 0, sizeof(*rm));
}

/*
 * A path for the remote shell.  Everything is single-quoted, except a
 * leading ~ or ~user and (for a source, `glob`) the wildcards * ? [ ],
 * which the remote shell is meant to expand: legacy scp has always let
 * it, for targets too ("host:~/in/").
 */
static char *
shell_quote(const char *path, int glob)
{
	size_t len = strlen(path), i, j = 0, lead = 0;
	int open = 0;
	char *q;

	if ((q = malloc(len * 4 + 3)) == NULL)
		fatal("out of memory");
	if (path[0] == '~') {
		for (lead = 1; path[lead] != '\0' && path[lead] != '/' &&
		    (strchr("._-", path[lead]) != NULL ||
		    (path[lead] >= 'a' && path[lead] <= 'z') ||
		    (path[lead] >= 'A' && path[lead] <= 'Z') ||
		    (path[lead] >= '0' && path[lead] <= '9')); lead++)
			;
		if (path[lead] == '/')
			lead++;	/* the shell expands ~user only before an
				 * unquoted slash */
		else if (path[lead] != '\0')
			lead = 0;	/* not a plain ~user: quote it all */
		memcpy(q, path, lead);
		j = lead;
	}
	for (i = lead; i < len; i++) {
		char c = path[i];

		if (glob && strchr("*?[]", c) != NULL) {
			if (open)
				q[j++] = '\'';
			open = 0;
			q[j++] = c;
			continue;
		}
		if (!open) {
			q[j++] = '\'';
			open = 1;
		}
		if (c == '\'') {
			/* close, escaped quote, reopen */
			q[j++] = '\'';
			q[j++] = '\\';
			q[j++] = '\'';
			q[j++] = '\'';
		} else
			q[j++] = c;
	}
	if (open)
		q[j++] = '\'';
	if (j == 0) {
		q[j++] = '\'';
		q[j++] = '\'';
	}
	q[j] = '\0';
	return q;
}

/* The remote "scp -t/-f PATH" for one connection. */
static char *
remote_command(const struct client *c, int sink, int target_dir,
    const char *path)
{
	char *quoted = shell_quote(path, !sink), *cmd;

	if (asprintf(&cmd, "scp%s%s%s%s %s %s%s",
	    c->opts.verbose ? " -v" : "", c->opts.recursive ? " -r" : "",
	    c->opts.preserve ? " -p" : "", target_dir ? " -d" : "",
	    sink ? "-t" : "-f", path[0] == '-' ? "-- " : "", quoted) < 0)
		fatal("out of memory");
	free(quoted);
	return cmd;
}

/* Start ssh (or -S program) for `rm` running `cmd`; its stdin and stdout
 * are our pipes. */
static int
spawn_ssh(const struct client *c, const struct remote *rm, const char *cmd,
    pid_t *pidp, int *to_fd, int *from_fd)
{
	struct argv_list a;
	int in[2], out[2], i, r;
	pid_t pid;

	memset(&a, 0, sizeof(a));
	for (i = 0; i < c->ssh.n; i++)
		argv_add(&a, "%s", c->ssh.v[i]);
	if (c->port != NULL) {
		argv_add(&a, "-p");
		argv_add(&a, "%s", c->port);
	}
	if (rm->user != NULL) {
		argv_add(&a, "-l");
		argv_add(&a, "%s", rm->user);
	}
	argv_add(&a, "--");
	argv_add(&a, "%s", rm->host);
	argv_add(&a, "%s", cmd);
	if (c->opts.verbose) {
		fprintf(stderr, "Executing:");
		for (i = 0; i < a.n; i++)
			fprintf(stderr, " %s", a.v[i]);
		fprintf(stderr, "\n");
	}
	/*
	 * Close-on-exec: a second child (the other end of a remote-to-remote
	 * copy) must not hold these, or its peer would never see EOF.  The
	 * dup2() onto 0 and 1 in the child clears the flag there.
	 */
	in[0] = in[1] = out[0] = out[1] = -1;
	if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
		r = errno;
		goto fail;
	}
	fflush(stderr);
	if ((pid = fork()) < 0) {
		r = errno;
		goto fail;
	}
	if (pid == 0) {
		if (dup2(in[0], STDIN_FILENO) < 0 ||
		    dup2(out[1], STDOUT_FILENO) < 0) {
			fprintf(stderr, "scp: dup2: %s\n", strerror(errno));
			_exit(255);
		}
		signal(SIGPIPE, SIG_DFL);
		execvp(a.v[0], a.v);
		fprintf(stderr, "scp: %s: %s\n", a.v[0], strerror(errno));
		_exit(255);
	}
	child_add(pid);
	close(in[0]);
	close(out[1]);
	argv_free(&a);
	*pidp = pid;
	*to_fd = in[1];
	*from_fd = out[0];
	return 0;
 fail:
	for (i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (out[i] >= 0)
			close(out[i]);
	}
	argv_free(&a);
	return r;
}

/*
 * Reap a child; non-zero if it failed.  After a fatal protocol error
 * (`fatal`) the child may be a peer that never exits: our ends of its
 * pipes are closed by now, which ends ssh and any honest peer; one still
 * there after a grace period is terminated, as stock's exit would leave
 * it to be.
 */
static int
reap(pid_t pid, int fatal)
{
	struct timespec ts = { 0, 20 * 1000 * 1000 };
	int st = 0, i, failed = 1;
	pid_t r = 0;

	for (i = 0; fatal && i < 100 && got_signal == 0; i++) {
		if ((r = waitpid(pid, &st, WNOHANG)) < 0 && errno == EINTR)
			r = 0;
		if (r != 0)
			break;
		nanosleep(&ts, NULL);
	}
	if (r == 0) {
		/* A signal before child_add() did not reach this child. */
		if (fatal || got_signal != 0)
			kill(pid, got_signal != 0 ? got_signal : SIGTERM);
		while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
			;
	}
	if (r == pid)
		failed = !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	child_forget(pid);
	return failed;
}

static struct scp_peer *
new_peer(const struct client *c, int in_fd, int out_fd)
{
	struct scp_peer *p;

	if ((p = malloc(sizeof(*p))) == NULL)
		fatal("out of memory");
	scp_peer_init(p, in_fd, out_fd, &got_signal);
	p->limit_bps = c->limit_bps;
	return p;
}

/* Local files to a remote target: one connection for all of them. */
static void
to_remote(struct client *c, char **srcs, int nsrcs, const struct remote *dst,
    int target_dir)
{
	struct scp_peer *p;
	char *cmd;
	pid_t pid;
	int to, from, r;

	cmd = remote_command(c, 1, target_dir, dst->path);
	if ((r = spawn_ssh(c, dst, cmd, &pid, &to, &from)) != 0) {
		fprintf(stderr, "scp: %s: %s\n", c->ssh.v[0], strerror(r));
		c->errors++;
		free(cmd);
		return;
	}
	free(cmd);
	p = new_peer(c, from, to);
	r = scp_source(p, &c->opts, srcs, nsrcs);
	if (r != 0 || p->errors > 0)
		c->errors++;
	close(to);
	close(from);
	free(p);
	if (reap(pid, r != 0))
		c->errors++;
	client_exit_for_signal();
}

/*
 * The fnmatch(3) pattern a received top-level name must match: the last
 * component of the remote path, or NULL where the remote shell decides
 * ("/", "~user").  shell_quote() leaves only * ? [ ] to the remote
 * shell, so a backslash in the path is a plain character, and escaped
 * here as one.
 */
static int
request_pattern(const char *path, char **out)
{
	size_t len = strlen(path), i, j;
	const char *base;
	char *pat;

	*out = NULL;
	while (len > 1 && path[len - 1] == '/')
		len--;
	for (base = path + len; base > path && base[-1] != '/'; base--)
		;
	if (base == path + len || *base == '~' || (len == 1 && *path == '/'))
		return 0;
	if ((pat = malloc((size_t)(path + len - base) * 2 + 1)) == NULL)
		return ENOMEM;
	for (i = 0, j = 0; base + i < path + len; i++) {
		if (base[i] == '\\')
			pat[j++] = '\\';
		pat[j++] = base[i];
	}
	pat[j] = '\0';
	*out = pat;
	return 0;
}

/* A remote file or tree into a local target, received atomically. */
static void
from_remote(struct client *c, const struct remote *src, const char *target,
    int target_dir)
{
	struct scp_opts o = c->opts;
	struct scp_peer *p;
	char *cmd, *pattern;
	pid_t pid;
	int to, from, r;

	/* What we may receive at the top: the last component asked for. */
	if ((r = request_pattern(src->path, &pattern)) != 0) {
		fprintf(stderr, "scp: %s\n", strerror(r));
		c->errors++;
		return;
	}
	o.pattern = pattern;
	/* Several sources: the target must be a directory, as stock's. */
	o.target_dir = o.target_dir || target_dir;
	cmd = remote_command(c, 0, 0, src->path);
	if ((r = spawn_ssh(c, src, cmd, &pid, &to, &from)) != 0) {
		fprintf(stderr, "scp: %s: %s\n", c->ssh.v[0], strerror(r));
		c->errors++;
		free(cmd);
		free(pattern);
		return;
	}
	free(cmd);
	p = new_peer(c, from, to);
	r = scp_sink(p, &o, target);
	if (r != 0 || p->errors > 0)
		c->errors++;
	close(to);
	close(from);
	free(p);
	free(pattern);
	if (reap(pid, r != 0))
		c->errors++;
	client_exit_for_signal();
}

/*
 * What the destination of a remote-to-remote copy says back is only
 * replies: \0, or \1/\2 and a line of text.  The source end runs as a
 * server and would only log that text: the user sees it here.
 */
struct reply_echo {
	int in_msg;
	size_t len;
	char msg[SCP_LINE_MAX + 1];
};

static void
echo_replies(struct reply_echo *re, const char *buf, size_t n)
{
	char clean[SCP_LINE_MAX + 1];
	size_t i;

	for (i = 0; i < n; i++) {
		if (!re->in_msg) {
			if (buf[i] == '\0')
				continue;
			re->in_msg = 1;
			re->len = 0;
			if (buf[i] == '\1' || buf[i] == '\2')
				continue;
		}
		if (buf[i] != '\n') {
			if (re->len + 1 < sizeof(re->msg))
				re->msg[re->len++] = buf[i];
			continue;
		}
		re->msg[re->len] = '\0';
		sanitise_copy(clean, sizeof(clean), re->msg);
		fprintf(stderr, "%s\n", clean);
		re->in_msg = 0;
	}
}

/*
 * A remote-to-remote copy through this host: the source's records
 * (*src_in) go to the destination (*dst_out), the destination's replies
 * (*dst_in) back to the source (*src_out).  When one side's output ends
 * (or can no longer be delivered) the other side's input is closed, so
 * each end sees EOF as it would on a direct connection.  Every
 * descriptor is closed and set to -1 on return.
 */
static int
relay(int *src_in, int *src_out, int *dst_in, int *dst_out)
{
	int *in[2] = { src_in, dst_in }, *out[2] = { dst_out, src_out };
	struct reply_echo re;
	struct pollfd pfd[2];
	char *buf;
	ssize_t n;
	int i, r = 0;

	memset(&re, 0, sizeof(re));
	if ((buf = malloc(64 * 1024)) == NULL) {
		r = ENOMEM;
		goto out;
	}
	while (*src_in >= 0 || *dst_in >= 0) {
		if (got_signal != 0) {
			r = ECANCELED;
			goto out;
		}
		for (i = 0; i < 2; i++) {
			pfd[i].fd = *in[i];
			pfd[i].events = POLLIN;
			pfd[i].revents = 0;
		}
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			r = errno;
			goto out;
		}
		for (i = 0; i < 2; i++) {
			if (*in[i] < 0 || (pfd[i].revents &
			    (POLLIN | POLLHUP | POLLERR)) == 0)
				continue;
			n = read(*in[i], buf, 64 * 1024);
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n > 0 && i == 1)
				echo_replies(&re, buf, (size_t)n);
			/* EOF, a read error, or the other end gone (EPIPE):
			 * this direction is over; the exit statuses and the
			 * ends' own messages tell what went wrong. */
			if (n <= 0 || write_full(*out[i], buf, (size_t)n) != 0) {
				close(*in[i]);
				*in[i] = -1;
				close(*out[i]);
				*out[i] = -1;
			}
		}
	}
 out:
	free(buf);
	for (i = 0; i < 2; i++) {
		if (*in[i] >= 0)
			close(*in[i]);
		*in[i] = -1;
		if (*out[i] >= 0)
			close(*out[i]);
		*out[i] = -1;
	}
	return r;
}

/* Remote to remote through this host: "scp -f" there, "scp -t" here, and
 * the bytes relayed (the receiving scp checks the names). */
static void
remote_to_remote(struct client *c, const struct remote *src,
    const struct remote *dst, int target_dir)
{
	char *scmd, *dcmd;
	pid_t spid = -1, dpid = -1;
	int sto = -1, sfrom = -1, dto = -1, dfrom = -1, r;

	scmd = remote_command(c, 0, 0, src->path);
	dcmd = remote_command(c, 1, target_dir, dst->path);
	if ((r = spawn_ssh(c, src, scmd, &spid, &sto, &sfrom)) != 0 ||
	    (r = spawn_ssh(c, dst, dcmd, &dpid, &dto, &dfrom)) != 0) {
		fprintf(stderr, "scp: %s: %s\n", c->ssh.v[0], strerror(r));
		c->errors++;
	}
	if (spid > 0 && dpid > 0 &&
	    (r = relay(&sfrom, &sto, &dfrom, &dto)) != 0) {
		if (r != ECANCELED)
			fprintf(stderr, "scp: relay: %s\n", strerror(r));
		c->errors++;
	}
	if (sto >= 0)
		close(sto);
	if (sfrom >= 0)
		close(sfrom);
	if (dto >= 0)
		close(dto);
	if (dfrom >= 0)
		close(dfrom);
	if (spid > 0 && reap(spid, r != 0))
		c->errors++;
	if (dpid > 0 && reap(dpid, r != 0))
		c->errors++;
	free(scmd);
	free(dcmd);
	client_exit_for_signal();
}

/* Local to local: our own source in a child, our atomic sink here. */
static void
local_copy(struct client *c, char **srcs, int nsrcs, const char *target,
    int target_dir)
{
	struct scp_opts o = c->opts;
	struct scp_peer *p;
	int sv[2], r;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		fprintf(stderr, "scp: socketpair: %s\n", strerror(errno));
		c->errors++;
		return;
	}
	fflush(stderr);
	if ((pid = fork()) < 0) {
		fprintf(stderr, "scp: fork: %s\n", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		c->errors++;
		return;
	}
	if (pid == 0) {
		close(sv[0]);
		/* The sink prints what we send it; don't say it twice. */
		o.client = 0;
		o.verbose = 0;
		p = new_peer(c, sv[1], sv[1]);
		/* -l: the sink paces the copy; pacing here too halved it. */
		p->limit_bps = 0;
		r = scp_source(p, &o, srcs, nsrcs);
		_exit(r != 0 || p->errors > 0 ? EXIT_ERRORS : 0);
	}
	child_add(pid);
	close(sv[1]);
	o.target_dir = o.target_dir || target_dir;
	p = new_peer(c, sv[0], sv[0]);
	r = scp_sink(p, &o, target);
	if (r != 0 || p->errors > 0)
		c->errors++;
	close(sv[0]);
	free(p);
	if (reap(pid, r != 0))
		c->errors++;
	client_exit_for_signal();
}

static int
run_client(struct client *c, char **args, int nargs)
{
	struct remote dst, src;
	struct stat st;
	char *target = args[nargs - 1], *tmpdir = NULL;
	char **locals;
	int i, r, nlocal = 0, target_dir = nargs > 2, dst_remote;

	stage_settings(&c->opts.stage, &tmpdir);
	install_signals(0);
	if ((locals = calloc((size_t)nargs, sizeof(*locals))) == NULL)
		fatal("out of memory");
	dst_remote = remote_colon(target) != NULL;
	if (dst_remote && parse_remote(target, &dst) != 0) {
		fprintf(stderr, "scp: %s: invalid target\n", target);
		exit(EXIT_ERRORS);
	}
	/* Several sources into a local target: stock checks it once, first. */
	if (!dst_remote && (target_dir || c->opts.target_dir)) {
		r = stat(target, &st) != 0 ? errno :
		    S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
		if (r != 0) {
			fprintf(stderr, "scp: %s: %s\n", target, strerror(r));
			exit(EXIT_ERRORS);
		}
	}
	for (i = 0; i < nargs - 1; i++) {
		if (remote_colon(args[i]) == NULL) {
			locals[nlocal++] = args[i];
			continue;
		}
		if (parse_remote(args[i], &src) != 0) {
			fprintf(stderr, "scp: %s: invalid source\n", args[i]);
			c->errors++;
			continue;
		}
		if (dst_remote)
			remote_to_remote(c, &src, &dst, target_dir);
		else
			from_remote(c, &src, target, target_dir);
		remote_free(&src);
	}
	if (nlocal > 0 && dst_remote)
		to_remote(c, locals, nlocal, &dst, target_dir);
	else if (nlocal > 0)
		local_copy(c, locals, nlocal, target, target_dir);
	if (dst_remote)
		remote_free(&dst);
	free(locals);
	free(tmpdir);
	argv_free(&c->ssh);
	client_exit_for_signal();
	return c->errors > 0 ? EXIT_ERRORS : 0;
}

int
main(int argc, char **argv)
{
	struct client c;
	struct scp_opts *o = &c.opts;
	unsigned long long limit;
	const char *ssh_prog = "ssh";
	int ch, sink = 0, source = 0, agent = 0, batch = 0, i;
	char **opt_args;
	int nopt = 0;

	sanitise_stdfd();
	memset(&c, 0, sizeof(c));
	o->umask = umask(077);
	umask(o->umask);
	if ((opt_args = calloc((size_t)argc * 2 + 1, sizeof(*opt_args))) ==
	    NULL)
		exit(EXIT_ERRORS);

	opterr = 0;
	while ((ch = getopt(argc, argv,
#ifdef __GLIBC__
	    "+"
#endif
	    "346ABCc:D:dfF:i:J:l:o:OP:pqRrS:sTtvX:")) != -1) {
		switch (ch) {
		case '3':
		case 'R':
		case 'O':
			/* Copies between hosts always go through this one;
			 * the protocol is always the legacy one. */
			break;
		case '4':
		case '6':
		case 'C':
			opt_args[nopt++] = ch == '4' ? "-4" : ch == '6' ?
			    "-6" : "-C";
			break;
		case 'c':
		case 'F':
		case 'i':
		case 'J':
		case 'o':
			opt_args[nopt++] = ch == 'c' ? "-c" : ch == 'F' ?
			    "-F" : ch == 'i' ? "-i" : ch == 'J' ? "-J" : "-o";
			opt_args[nopt++] = optarg;
			break;
		case 'A':
			agent = 1;
			break;
		case 'B':
			batch = 1;
			break;
		case 'D':
		case 'X':
			/* SFTP-mode settings: there is no SFTP mode here. */
			break;
		case 's':
			fprintf(stderr, "scp: -s: this scp speaks only the "
			    "legacy scp protocol (as with -O)\n");
			exit(EXIT_ERRORS);
		case 'd':
			o->target_dir = 1;
			break;
		case 'f':
			source = 1;
			break;
		case 't':
			sink = 1;
			break;
		case 'l':
			if (parse_u64(optarg, &limit) != 0 || limit == 0 ||
			    limit > 100 * 1024 * 1024) {
				fprintf(stderr, "scp: bad limit: %s\n", optarg);
				usage();
			}
			c.limit_bps = limit * 1024 / 8;
			break;
		case 'P':
			c.port = optarg;
			break;
		case 'p':
			o->preserve = 1;
			break;
		case 'q':
			opt_args[nopt++] = "-q";
			break;
		case 'r':
			o->recursive = 1;
			break;
		case 'S':
			ssh_prog = optarg;
			break;
		case 'T':
			o->no_name_check = 1;
			break;
		case 'v':
			o->verbose = 1;
			opt_args[nopt++] = "-v";
			break;
		default:
			fprintf(stderr, "scp: unknown option -- %c\n",
			    optopt);
			usage();
		}
	}
	argc -= optind;
	argv += optind;

	/* Stock: -p means the modes as sent, no umask. */
	if (o->preserve)
		umask(0);
	if (sink || source) {
		free(opt_args);
		if (sink && source) {
			fprintf(stderr, "scp: -t and -f together\n");
			exit(EXIT_ERRORS);
		}
		return run_server(sink, o, argv, argc);
	}
	if (argc < 2)
		usage();
	setup_log(0);
	o->client = 1;

	argv_add(&c.ssh, "%s", ssh_prog);
	argv_add(&c.ssh, "-x");
	argv_add(&c.ssh, "-oPermitLocalCommand=no");
	argv_add(&c.ssh, "-oClearAllForwardings=yes");
	argv_add(&c.ssh, "-oRemoteCommand=none");
	argv_add(&c.ssh, "-oRequestTTY=no");
	for (i = 0; i < nopt; i++)
		argv_add(&c.ssh, "%s", opt_args[i]);
	if (batch)
		argv_add(&c.ssh, "-oBatchMode=yes");
	argv_add(&c.ssh, agent ? "-oForwardAgent=yes" : "-oForwardAgent=no");
	free(opt_args);
	return run_client(&c, argv, argc);
}
