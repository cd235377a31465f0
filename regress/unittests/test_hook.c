/*
 * Unit tests of the commit hook (hook.h is the contract), end to end:
 * real runners running real hook programs (small /bin/sh scripts in a
 * mkdtemp directory), real timeouts.  About 20 seconds.
 *
 *	test_hook [NAME-SUBSTRING...]
 *
 * The scratch directory is under $OBJ/regress/work/unit (or
 * ./regress/work/unit, else $TMPDIR) and removed at the end unless
 * TEST_KEEP is set.  While the tests run, stderr is a log file in it: the
 * runner inherits it (a regular file, so it keeps it) and the tests read
 * the runner's lines there.  The log is copied to the real stderr when a
 * test failed.
 */
#include "includes.h"

#include <sys/types.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "atomic-upload.h"
#include "hook.h"
#include "log.h"
#include "misc.h"
#include "test_helper.h"

#define SHA_HEX	"0123456789abcdef0123456789abcdef" \
		"fedcba9876543210fedcba9876543210"

static char scratch[PATH_MAX];
static char logpath[PATH_MAX];

/* ---- helpers ---- */

static int
setup_scratch(void)
{
	char base[PATH_MAX], tmpl[PATH_MAX];
	const char *obj = getenv("OBJ"), *tmp = getenv("TMPDIR");

	if (obj != NULL && *obj != '\0')
		join(base, sizeof(base), obj, "regress/work/unit");
	else
		snprintf(base, sizeof(base), "regress/work/unit");
	if (mkdir_p(base, 0755) != 0)
		snprintf(base, sizeof(base), "%s",
		    tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	join(tmpl, sizeof(tmpl), base, "hook.XXXXXX");
	if (mkdtemp(tmpl) == NULL)
		return errno;
	/* Hook programs must be absolute, and the scripts quote it. */
	if (realpath(tmpl, scratch) == NULL)
		return errno;
	if (strchr(scratch, '\'') != NULL)
		return EINVAL;
	return 0;
}

/* An executable /bin/sh script `name` in the scratch directory; `body`
 * finds the scratch directory in $D. */
static int
write_script(const char *name, const char *body, char *path, size_t len)
{
	FILE *f;

	join(path, len, scratch, name);
	if ((f = fopen(path, "w")) == NULL)
		return errno;
	fprintf(f, "#!/bin/sh\nD='%s'\n%s", scratch, body);
	if (fclose(f) != 0)
		return errno;
	return chmod(path, 0755) == 0 ? 0 : errno;
}

/* The whole of a small file, NUL-terminated. */
static int
read_text(const char *path, char *buf, size_t len)
{
	size_t done = 0;
	int fd, r;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return errno;
	r = read_full(fd, buf, len - 1, &done);
	close(fd);
	buf[done] = '\0';
	return r == EPIPE ? 0 : r == 0 ? EFBIG : r;
}

static char *
scratch_text(const char *name, char *buf, size_t len)
{
	char path[PATH_MAX];

	join(path, sizeof(path), scratch, name);
	if (read_text(path, buf, len) != 0)
		buf[0] = '\0';
	return buf;
}

static int
wait_for_file(const char *name, double secs)
{
	char path[PATH_MAX];
	double end = monotime_double() + secs;

	join(path, sizeof(path), scratch, name);
	while (access(path, F_OK) != 0) {
		if (monotime_double() > end)
			return ETIMEDOUT;
		usleep(20000);
	}
	return 0;
}

static int
scratch_exists(const char *name)
{
	char path[PATH_MAX];

	join(path, sizeof(path), scratch, name);
	return access(path, F_OK) == 0;
}

static int
log_has(const char *needle)
{
	static char buf[1024 * 1024];

	if (read_text(logpath, buf, sizeof(buf)) != 0)
		return 0;
	return strstr(buf, needle) != NULL;
}

/* The hex mask that follows `needle` in the log, or ~0 if absent. */
static unsigned long long
log_mask(const char *needle)
{
	static char buf[1024 * 1024];
	const char *p;

	if (read_text(logpath, buf, sizeof(buf)) != 0 ||
	    (p = strstr(buf, needle)) == NULL)
		return ~0ULL;
	return strtoull(p + strlen(needle), NULL, 16);
}

static int
wait_for_log(const char *needle, double secs)
{
	double end = monotime_double() + secs;

	while (!log_has(needle)) {
		if (monotime_double() > end)
			return 0;
		usleep(20000);
	}
	return 1;
}

/* The value of NAME in an `env` dump, or NULL. */
static const char *
env_get(const char *dump, const char *name, char *out, size_t len)
{
	const char *p = dump, *nl;
	size_t n = strlen(name), vlen;

	while (*p != '\0') {
		if ((nl = strchr(p, '\n')) == NULL)
			nl = p + strlen(p);
		if (strncmp(p, name, n) == 0 && p[n] == '=') {
			vlen = (size_t)(nl - (p + n + 1));
			if (vlen >= len)
				vlen = len - 1;
			memcpy(out, p + n + 1, vlen);
			out[vlen] = '\0';
			return out;
		}
		p = *nl == '\0' ? nl : nl + 1;
	}
	return NULL;
}

static pid_t
scratch_pid(const char *name)
{
	char buf[64];

	return (pid_t)atol(scratch_text(name, buf, sizeof(buf)));
}

/* State, parent and session of a process from /proc; ENOENT if gone. */
static int
proc_stat(pid_t pid, char *state, long *ppid, long *sid)
{
	char path[64], buf[1024], *p;
	long pgrp;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if (read_text(path, buf, sizeof(buf)) != 0)
		return ENOENT;
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 1, " %c %ld %ld %ld", state, ppid, &pgrp, sid) != 4)
		return EINVAL;
	return 0;
}

/* Gone: no such process, or a zombie left for whoever adopted it. */
static int
pid_gone(pid_t pid)
{
	char state;
	long ppid, sid;

	if (kill(pid, 0) == -1 && errno == ESRCH)
		return 1;
	return proc_stat(pid, &state, &ppid, &sid) != 0 || state == 'Z';
}

static int
wait_pid_gone(pid_t pid, double until)
{
	while (!pid_gone(pid)) {
		if (monotime_double() > until)
			return 0;
		usleep(20000);
	}
	return 1;
}

static void
opts_init(struct hook_opts *o, const char *program)
{
	memset(o, 0, sizeof(*o));
	o->program = program;
	o->protocol = "sftp";
	o->user = "alice";
	o->client_addr = "192.0.2.7";
	o->sync = STAGE_SYNC_DATA;
}

static void
report_init(struct stage_report *rep, const char *path)
{
	memset(rep, 0, sizeof(*rep));
	snprintf(rep->path, sizeof(rep->path), "%s", path);
	rep->bytes = 12345;
	rep->seconds = 1.5;
	rep->method = STAGE_NAMED;
}

/* A commit as stage_commit() reports one. */
static void
upload(struct hook *h, const char *path)
{
	struct stage_report rep;

	report_init(&rep, path);
	rep.published = 1;
	hook_upload(h, &rep, 1);
}

/* ---- tests ---- */

static void
test_settings(void)
{
	struct hook_opts o;
	struct hook *h = (struct hook *)&o;

	TEST_START("hook_new checks the program; hook_settings_from_env");
	opts_init(&o, "relative/hook");
	ASSERT_INT_EQ(hook_new(&o, &h), EINVAL);
	ASSERT_PTR_EQ(h, NULL);
	opts_init(&o, NULL);
	ASSERT_INT_EQ(hook_new(&o, &h), EINVAL);
	opts_init(&o, "");
	ASSERT_INT_EQ(hook_new(&o, &h), EINVAL);
	hook_free(NULL);

	/* A hook that is never used starts nothing. */
	opts_init(&o, "/nonexistent/hook");
	if (ASSERT_INT_EQ(hook_new(&o, &h), 0)) {
		hook_free(h);
		errno = 0;
		ASSERT_INT_EQ(waitpid(-1, NULL, WNOHANG), -1);
		ASSERT_INT_EQ(errno, ECHILD);
	}

	opts_init(&o, "/x");
	setenv("ATOMIC_UPLOAD_HOOK_ABORTS", "Yes", 1);
	setenv("ATOMIC_UPLOAD_HOOK_TIMEOUT", "86400", 1);
	setenv("ATOMIC_UPLOAD_HOOK_MAX_RUNNING", "64", 1);
	hook_settings_from_env(&o);
	ASSERT_INT_EQ(o.on_abort, 1);
	ASSERT_INT_EQ(o.timeout, 86400);
	ASSERT_INT_EQ(o.max_running, 64);
	setenv("ATOMIC_UPLOAD_HOOK_ABORTS", "false", 1);
	setenv("ATOMIC_UPLOAD_HOOK_TIMEOUT", "1", 1);
	setenv("ATOMIC_UPLOAD_HOOK_MAX_RUNNING", "1", 1);
	hook_settings_from_env(&o);
	ASSERT_INT_EQ(o.on_abort, 0);
	ASSERT_INT_EQ(o.timeout, 1);
	ASSERT_INT_EQ(o.max_running, 1);
	/* Bad values: an error line each, and the value kept. */
	setenv("ATOMIC_UPLOAD_HOOK_ABORTS", "maybe", 1);
	setenv("ATOMIC_UPLOAD_HOOK_TIMEOUT", "86401", 1);
	setenv("ATOMIC_UPLOAD_HOOK_MAX_RUNNING", "0", 1);
	hook_settings_from_env(&o);
	ASSERT_INT_EQ(o.on_abort, 0);
	ASSERT_INT_EQ(o.timeout, 1);
	ASSERT_INT_EQ(o.max_running, 1);
	ASSERT_TRUE(log_has("ATOMIC_UPLOAD_HOOK_ABORTS=maybe not understood"));
	ASSERT_TRUE(log_has("ATOMIC_UPLOAD_HOOK_TIMEOUT=86401 not understood"));
	ASSERT_TRUE(log_has("ATOMIC_UPLOAD_HOOK_MAX_RUNNING=0 not understood"));
	setenv("ATOMIC_UPLOAD_HOOK_TIMEOUT", "10s", 1);
	setenv("ATOMIC_UPLOAD_HOOK_MAX_RUNNING", "65", 1);
	hook_settings_from_env(&o);
	ASSERT_INT_EQ(o.timeout, 1);
	ASSERT_INT_EQ(o.max_running, 1);
	unsetenv("ATOMIC_UPLOAD_HOOK_ABORTS");
	unsetenv("ATOMIC_UPLOAD_HOOK_TIMEOUT");
	unsetenv("ATOMIC_UPLOAD_HOOK_MAX_RUNNING");
	opts_init(&o, "/x");
	hook_settings_from_env(&o);
	ASSERT_INT_EQ(o.on_abort, 0);
	ASSERT_INT_EQ(o.timeout, 0);
	ASSERT_INT_EQ(o.max_running, 0);
	TEST_DONE();
}

static void
test_commit_env(void)
{
	struct hook_opts o;
	struct hook *h = NULL;
	struct stage_report rep;
	char prog[PATH_MAX], cwd[PATH_MAX], want[PATH_MAX + 64];
	char v[PATH_MAX + 64], runs[256];
	static char dump[65536];

	TEST_START("commit: the hook runs once, with the facts in its "
	    "environment");
	if (!ASSERT_INT_EQ(write_script("env-hook",
	    "echo run >> \"$D/env.runs\"\n"
	    "{ env; echo \"ARGC=$#\"; echo \"ARG1=$1\"; } > \"$D/env.tmp\"\n"
	    "mv \"$D/env.tmp\" \"$D/env.out\"\n", prog, sizeof(prog)), 0) ||
	    !ASSERT_PTR_NE(getcwd(cwd, sizeof(cwd)), NULL))
		goto out;
	opts_init(&o, prog);
	if (!ASSERT_INT_EQ(hook_new(&o, &h), 0))
		goto out;
	/* Relative, as the client named it: UPLOAD_PATH is made absolute. */
	report_init(&rep, "./sub/dir/file1");
	snprintf(rep.sha256, sizeof(rep.sha256), "%s", SHA_HEX);
	rep.published = 1;
	hook_upload(h, &rep, 1);
	if (!ASSERT_INT_EQ(wait_for_file("env.out", 5), 0))
		goto out;
	scratch_text("env.out", dump, sizeof(dump));
	snprintf(want, sizeof(want), "%s/sub/dir/file1", cwd);
	ASSERT_STR_EQ(env_get(dump, "UPLOAD_EVENT", v, sizeof(v)), "commit");
	ASSERT_STR_EQ(env_get(dump, "UPLOAD_PATH", v, sizeof(v)), want);
	ASSERT_STR_EQ(env_get(dump, "ARG1", v, sizeof(v)), want);
	ASSERT_STR_EQ(env_get(dump, "ARGC", v, sizeof(v)), "1");
	ASSERT_STR_EQ(env_get(dump, "UPLOAD_CLIENT_PATH", v, sizeof(v)),
	    "./sub/dir/file1");
	ASSERT_STR_EQ(env_get(dump, "UPLOAD_SIZE", v, sizeof(v)), "12345");
	ASSERT_STR_EQ(env_get(dump, "UPLOAD_SHA256", v, sizeof(v)), SHA_HEX);
	ASSERT_STR_EQ(env_get(dump, "UPLOAD_USER", v, sizeof(v)), "alice");
	ASSERT_STR_EQ(env_get(dump, "UPLOAD_CLIENT", v, sizeof(v)),
	    "192.0.2.7");
	ASSERT_STR_EQ(env_get(dump, "UPLOAD_PROTOCOL", v, sizeof(v)), "sftp");
	ASSERT_STR_EQ(env_get(dump, "UPLOAD_DURABILITY", v, sizeof(v)),
	    "data");
	ASSERT_STR_EQ(env_get(dump, "UPLOAD_METHOD", v, sizeof(v)), "named");
	ASSERT_STR_EQ(env_get(dump, "UPLOAD_SECONDS", v, sizeof(v)), "1.500");
	/* Our environment is passed on, but not a stale UPLOAD_REASON. */
	ASSERT_STR_EQ(env_get(dump, "HOOKTEST_MARK", v, sizeof(v)), "kept");
	ASSERT_PTR_EQ(env_get(dump, "UPLOAD_REASON", v, sizeof(v)), NULL);
	hook_free(h);
	h = NULL;
	usleep(300000);
	ASSERT_STR_EQ(scratch_text("env.runs", runs, sizeof(runs)), "run\n");
 out:
	hook_free(h);
	TEST_DONE();
}

/*
 * The hook starts with no signal blocked or ignored, whatever the
 * session did.  A sed script as the hook, with /proc/self/status as the
 * "uploaded" file: sed prints its own signal state (a shell would reset
 * some of it, and blocks everything while it waits for a child).
 */
static void
test_signals(void)
{
	struct hook_opts o;
	struct hook *h = NULL;
	sigset_t usr2, old_mask;
	void (*old_usr1)(int);
	char prog[PATH_MAX];
	const char *sed;
	FILE *f;

	TEST_START("the hook starts with default signals, none blocked");
	sed = access("/bin/sed", X_OK) == 0 ? "/bin/sed" : "/usr/bin/sed";
	join(prog, sizeof(prog), scratch, "sig-hook");
	if (!ASSERT_PTR_NE(f = fopen(prog, "w"), NULL))
		goto out;
	fprintf(f, "#!%s -nf\n/^Sig[BI][lg][kn]:/p\n", sed);
	if (!ASSERT_INT_EQ(fclose(f), 0) ||
	    !ASSERT_INT_EQ(chmod(prog, 0755), 0))
		goto out;
	opts_init(&o, prog);
	if (!ASSERT_INT_EQ(hook_new(&o, &h), 0))
		goto out;
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	old_usr1 = signal(SIGUSR1, SIG_IGN);
	sigprocmask(SIG_BLOCK, &usr2, &old_mask);
	upload(h, "/proc/self/status");
	sigprocmask(SIG_SETMASK, &old_mask, NULL);
	signal(SIGUSR1, old_usr1);
	ASSERT_TRUE(wait_for_log("hook \"/proc/self/status\": exit 0", 5));
	ASSERT_TRUE(log_has("hook \"/proc/self/status\": "
	    "SigBlk:?0000000000000000\r\n"));
	/*
	 * Signals 32 and 33 are the C library's own (thread cancellation,
	 * setxid): glibc will not change their disposition, and GNU make
	 * 4.3 starts its commands with them ignored.  Every other signal
	 * must be at its default.
	 */
	ASSERT_INT_EQ(log_mask("hook \"/proc/self/status\": SigIgn:?") &
	    ~(3ULL << 31), 0);
 out:
	hook_free(h);
	TEST_DONE();
}

static void
test_aborts(void)
{
	struct hook_opts o;
	struct hook *h = NULL;
	struct stage_report rep;
	char prog[PATH_MAX], v[512];
	static char dump[65536];

	TEST_START("aborts run the hook only with on_abort; unchanged never");
	if (!ASSERT_INT_EQ(write_script("ev-hook",
	    "n=$(basename \"$1\")\n"
	    "env > \"$D/ev.$n.tmp\"\n"
	    "mv \"$D/ev.$n.tmp\" \"$D/ev.$n\"\n", prog, sizeof(prog)), 0))
		goto out;
	/* One at a time: once the marker ran, anything sent before it has
	 * run too. */
	opts_init(&o, prog);
	o.max_running = 1;
	if (!ASSERT_INT_EQ(hook_new(&o, &h), 0))
		goto out;
	report_init(&rep, "/a/aborted1");
	snprintf(rep.reason, sizeof(rep.reason), "client closed early");
	hook_upload(h, &rep, 0);
	report_init(&rep, "/a/unchanged1");
	rep.unchanged = 1;
	hook_upload(h, &rep, 1);
	upload(h, "/a/marker1");
	ASSERT_INT_EQ(wait_for_file("ev.marker1", 5), 0);
	ASSERT_FALSE(scratch_exists("ev.aborted1"));
	ASSERT_FALSE(scratch_exists("ev.unchanged1"));
	hook_free(h);
	h = NULL;

	o.on_abort = 1;
	if (!ASSERT_INT_EQ(hook_new(&o, &h), 0))
		goto out;
	report_init(&rep, "/b/aborted2");
	snprintf(rep.reason, sizeof(rep.reason), "client closed early");
	hook_upload(h, &rep, 0);
	report_init(&rep, "/b/unchanged2");
	rep.unchanged = 1;
	hook_upload(h, &rep, 1);
	/* Published, then the directory fsync failed: a commit with a
	 * warning (stage_commit() returned the error). */
	report_init(&rep, "b/warned2");
	snprintf(rep.final_path, sizeof(rep.final_path), "/srv/real/warned2");
	rep.published = 1;
	rep.error = EIO;
	snprintf(rep.reason, sizeof(rep.reason), "directory fsync after "
	    "publishing: I/O error");
	hook_upload(h, &rep, 0);
	upload(h, "/b/marker2");
	if (!ASSERT_INT_EQ(wait_for_file("ev.marker2", 5), 0))
		goto out;
	ASSERT_FALSE(scratch_exists("ev.unchanged2"));
	if (ASSERT_TRUE(scratch_exists("ev.aborted2"))) {
		scratch_text("ev.aborted2", dump, sizeof(dump));
		ASSERT_STR_EQ(env_get(dump, "UPLOAD_EVENT", v, sizeof(v)),
		    "abort");
		ASSERT_STR_EQ(env_get(dump, "UPLOAD_REASON", v, sizeof(v)),
		    "client closed early");
		/* Not computed: absent, though our environment has one. */
		ASSERT_PTR_EQ(env_get(dump, "UPLOAD_SHA256", v, sizeof(v)),
		    NULL);
	}
	if (ASSERT_TRUE(scratch_exists("ev.warned2"))) {
		scratch_text("ev.warned2", dump, sizeof(dump));
		ASSERT_STR_EQ(env_get(dump, "UPLOAD_EVENT", v, sizeof(v)),
		    "commit");
		ASSERT_STR_EQ(env_get(dump, "UPLOAD_PATH", v, sizeof(v)),
		    "/srv/real/warned2");
		ASSERT_STR_EQ(env_get(dump, "UPLOAD_CLIENT_PATH", v,
		    sizeof(v)), "b/warned2");
		ASSERT_STR_EQ(env_get(dump, "UPLOAD_REASON", v, sizeof(v)),
		    "directory fsync after publishing: I/O error");
	}
	scratch_text("ev.marker2", dump, sizeof(dump));
	ASSERT_PTR_EQ(env_get(dump, "UPLOAD_REASON", v, sizeof(v)), NULL);
 out:
	hook_free(h);
	TEST_DONE();
}

static void
test_failing_hook(void)
{
	struct hook_opts o;
	struct hook *h = NULL;
	char prog[PATH_MAX], missing[PATH_MAX], want[1100];

	TEST_START("a failing hook is logged with its output; the next runs");
	if (!ASSERT_INT_EQ(write_script("noisy-hook",
	    "case \"$1\" in\n"
	    "/hf|/he)\n"
	    "	printf 'line 1 \\033[1mbold\\n'\n"
	    "	x=x; i=0\n"
	    "	while [ $i -lt 11 ]; do x=$x$x; i=$((i+1)); done\n"
	    "	echo \"$x\" >&2\n"
	    "	i=2; while [ $i -le 150 ]; do echo \"line $i\"; "
	    "i=$((i+1)); done\n"
	    "	exit 3 ;;\n"
	    "*)	echo ok > \"$D/noisy.ok\" ;;\n"
	    "esac\n", prog, sizeof(prog)), 0))
		goto out;
	opts_init(&o, prog);
	o.max_running = 1;
	if (!ASSERT_INT_EQ(hook_new(&o, &h), 0))
		goto out;
	upload(h, "/hf");
	upload(h, "/hn");
	ASSERT_INT_EQ(wait_for_file("noisy.ok", 5), 0);
	ASSERT_TRUE(wait_for_log("hook \"/hn\": exit 0 after ", 3));
	ASSERT_TRUE(log_has("hook \"/hf\": exit status 3\r\n"));
	/* Sanitised, capped at 1000 bytes a line and 100 lines. */
	ASSERT_TRUE(log_has("hook \"/hf\": line 1 ?[1mbold\r\n"));
	memset(want, 'x', sizeof(want));
	memcpy(want, "hook \"/hf\": ", 12);
	memcpy(want + 12 + 1000, "\r\n", 3);
	ASSERT_TRUE(log_has(want));
	ASSERT_TRUE(log_has("hook \"/hf\": line 99\r\n"));
	ASSERT_FALSE(log_has("hook \"/hf\": line 100\r\n"));
	ASSERT_TRUE(log_has("hook \"/hf\": output truncated\r\n"));
	hook_free(h);
	h = NULL;

	/* The runner logs at the session's level: a failure is an error,
	 * the output is not. */
	log_init("test_hook", LOG_LEVEL_ERROR, LOG_USER, 1);
	if (ASSERT_INT_EQ(hook_new(&o, &h), 0))
		upload(h, "/he");
	log_init("test_hook", LOG_LEVEL_VERBOSE, LOG_USER, 1);
	ASSERT_TRUE(wait_for_log("hook \"/he\": exit status 3\r\n", 5));
	ASSERT_FALSE(log_has("hook \"/he\": line 1"));
	hook_free(h);
	h = NULL;

	join(missing, sizeof(missing), scratch, "missing-hook");
	opts_init(&o, missing);
	if (!ASSERT_INT_EQ(hook_new(&o, &h), 0))
		goto out;
	upload(h, "/hm");
	ASSERT_TRUE(wait_for_log("hook \"/hm\": exit status 127\r\n", 5));
	ASSERT_TRUE(log_has("hook \"/hm\": cannot execute "));
 out:
	hook_free(h);
	TEST_DONE();
}

/* Does the listing ("FD TARGET" lines) have exactly `line`? */
static int
has_line(const char *list, const char *line)
{
	size_t n = strlen(line);
	const char *p;

	for (p = list; (p = strstr(p, line)) != NULL; p++) {
		if ((p == list || p[-1] == '\n') && p[n] == '\n')
			return 1;
	}
	return 0;
}

static void
test_descriptors(void)
{
	struct hook_opts o;
	struct hook *h = NULL;
	char prog[PATH_MAX], secret[PATH_MAX], want[PATH_MAX + 8], *p, *nl;
	static char runner_fds[65536], hook_fds[65536];
	int fd = -1, n = 0;
	long num;

	TEST_START("neither the runner nor a hook holds our descriptors");
	join(secret, sizeof(secret), scratch, "secret-file");
	/* Not close-on-exec: the runner must close it itself. */
	if (!ASSERT_INT_GE(fd = open(secret, O_RDWR | O_CREAT, 0600), 0) ||
	    !ASSERT_INT_EQ(write_script("fd-hook",
	    "cd /proc/$PPID/fd &&\n"
	    "for f in *; do echo \"$f $(readlink \"$f\")\"; done "
	    "> \"$D/fds.runner.tmp\"\n"
	    "mv \"$D/fds.runner.tmp\" \"$D/fds.runner\"\n"
	    "cd /proc/$$/fd &&\n"
	    "for f in *; do echo \"$f $(readlink \"$f\")\"; done "
	    "> \"$D/fds.hook.tmp\"\n"
	    "mv \"$D/fds.hook.tmp\" \"$D/fds.hook\"\n", prog,
	    sizeof(prog)), 0))
		goto out;
	opts_init(&o, prog);
	if (!ASSERT_INT_EQ(hook_new(&o, &h), 0))
		goto out;
	upload(h, "/fd");
	if (!ASSERT_INT_EQ(wait_for_file("fds.hook", 5), 0))
		goto out;
	scratch_text("fds.runner", runner_fds, sizeof(runner_fds));
	scratch_text("fds.hook", hook_fds, sizeof(hook_fds));
	ASSERT_TRUE(has_line(runner_fds, "0 /dev/null"));
	ASSERT_TRUE(has_line(runner_fds, "1 /dev/null"));
	snprintf(want, sizeof(want), "2 %s", logpath);
	ASSERT_TRUE(has_line(runner_fds, want));
	ASSERT_TRUE(strstr(runner_fds, "\n3 socket:[") != NULL);
	ASSERT_TRUE(strstr(runner_fds, "secret-file") == NULL);
	/* Nothing else but its SIGCHLD descriptor and this hook's output
	 * (valgrind's own descriptors sit above 1000). */
	for (p = runner_fds; *p != '\0'; p = nl + 1) {
		if ((nl = strchr(p, '\n')) == NULL)
			break;
		num = strtol(p, NULL, 10);
		if (num > 3 && num < 1000) {
			n++;
			if (strncmp(strchr(p, ' ') + 1, "pipe:", 5) != 0 &&
			    strncmp(strchr(p, ' ') + 1,
			    "anon_inode:[signalfd]", 21) != 0)
				TEST_FAIL("runner holds %.*s", (int)(nl - p),
				    p);
		}
	}
	ASSERT_INT_EQ(n, 2);
	ASSERT_TRUE(has_line(hook_fds, "0 /dev/null"));
	ASSERT_TRUE(strstr(hook_fds, "secret-file") == NULL);
	ASSERT_TRUE(strstr(hook_fds, "socket:") == NULL);
	ASSERT_TRUE(strstr(hook_fds, "signalfd") == NULL);
 out:
	if (fd != -1)
		close(fd);
	hook_free(h);
	TEST_DONE();
}

static void
test_no_zombies(void)
{
	struct hook_opts o;
	struct hook *h = NULL;
	char prog[PATH_MAX], state = '?';
	pid_t runner, lingerer = 0;
	long ppid = 0, sid = 0;

	TEST_START("no zombies; the runner is detached and exits after us");
	if (!ASSERT_INT_EQ(write_script("reaper-hook",
	    "echo $PPID > \"$D/runner.pid.tmp\"\n"
	    "mv \"$D/runner.pid.tmp\" \"$D/runner.pid\"\n"
	    "sleep 20 &\n"		/* holds the output pipe */
	    "echo $! > \"$D/lingerer.tmp\"\n"
	    "mv \"$D/lingerer.tmp\" \"$D/lingerer.pid\"\n"
	    "exit 0\n", prog, sizeof(prog)), 0))
		goto out;
	opts_init(&o, prog);
	if (!ASSERT_INT_EQ(hook_new(&o, &h), 0))
		goto out;
	upload(h, "/hz");
	/* The middle process was reaped; the runner is not our child. */
	errno = 0;
	ASSERT_INT_EQ(waitpid(-1, NULL, WNOHANG), -1);
	ASSERT_INT_EQ(errno, ECHILD);
	if (!ASSERT_INT_EQ(wait_for_file("runner.pid", 5), 0) ||
	    !ASSERT_INT_EQ(wait_for_file("lingerer.pid", 5), 0))
		goto out;
	runner = scratch_pid("runner.pid");
	lingerer = scratch_pid("lingerer.pid");
	if (!ASSERT_INT_GT(runner, 1))
		goto out;
	ASSERT_INT_EQ(proc_stat(runner, &state, &ppid, &sid), 0);
	ASSERT_INT_NE(ppid, getpid());
	ASSERT_INT_EQ(sid, runner);	/* setsid() */
	/* Its exit is logged although the pipe is still held. */
	ASSERT_TRUE(wait_for_log("hook \"/hz\": exit 0 after ", 3));
	hook_free(h);
	h = NULL;
	ASSERT_TRUE(wait_pid_gone(runner, monotime_double() + 3));
	errno = 0;
	ASSERT_INT_EQ(waitpid(-1, NULL, WNOHANG), -1);
	ASSERT_INT_EQ(errno, ECHILD);
 out:
	if (lingerer > 1)
		(void)kill(lingerer, SIGKILL);
	hook_free(h);
	TEST_DONE();
}

static void
test_stderr_pipe(void)
{
	struct hook_opts o;
	struct hook *h = NULL;
	struct pollfd pfd;
	char prog[PATH_MAX], buf[256];
	int p[2] = { -1, -1 }, saved = -1;

	TEST_START("a pipe on stderr (sshd's channel) is not held by the "
	    "runner");
	if (!ASSERT_INT_EQ(write_script("pipe-hook",
	    "sleep 2\n"
	    "readlink /proc/$PPID/fd/2 > \"$D/pipe.tmp\"\n"
	    "mv \"$D/pipe.tmp\" \"$D/pipe.done\"\n", prog, sizeof(prog)), 0) ||
	    !ASSERT_INT_EQ(pipe2(p, O_CLOEXEC), 0) ||
	    !ASSERT_INT_GE(saved = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3),
	    0))
		goto out;
	opts_init(&o, prog);
	if (!ASSERT_INT_EQ(hook_new(&o, &h), 0))
		goto out;
	/* Quiet: the runner logs to syslog now, and need not. */
	log_init("test_hook", LOG_LEVEL_ERROR, LOG_USER, 1);
	dup2(p[1], STDERR_FILENO);
	upload(h, "/hp");
	dup2(saved, STDERR_FILENO);
	log_init("test_hook", LOG_LEVEL_VERBOSE, LOG_USER, 1);
	close(p[1]);
	p[1] = -1;
	/* EOF while the hook still runs: nobody else has the pipe. */
	pfd.fd = p[0];
	pfd.events = POLLIN;
	if (ASSERT_INT_EQ(poll(&pfd, 1, 1500), 1))
		ASSERT_INT_EQ(read(p[0], buf, sizeof(buf)), 0);
	ASSERT_FALSE(scratch_exists("pipe.done"));
	if (ASSERT_INT_EQ(wait_for_file("pipe.done", 5), 0))
		ASSERT_STR_EQ(scratch_text("pipe.done", buf, sizeof(buf)),
		    "/dev/null\n");
 out:
	if (saved != -1)
		close(saved);
	if (p[0] != -1)
		close(p[0]);
	if (p[1] != -1)
		close(p[1]);
	hook_free(h);
	TEST_DONE();
}

static void
test_max_running(void)
{
	struct hook_opts o;
	struct hook *h = NULL;
	char prog[PATH_MAX], path[32], *p;
	static char log[8192];
	double t0, end;
	int i, cur = 0, most = 0, starts = 0, ends = 0;

	TEST_START("max_running: never more at once; all queued run");
	if (!ASSERT_INT_EQ(write_script("par-hook",
	    "echo \"start $1\" >> \"$D/par.log\"\n"
	    "sleep 1\n"
	    "echo \"end $1\" >> \"$D/par.log\"\n", prog, sizeof(prog)), 0))
		goto out;
	opts_init(&o, prog);
	o.max_running = 2;
	if (!ASSERT_INT_EQ(hook_new(&o, &h), 0))
		goto out;
	t0 = monotime_double();
	for (i = 1; i <= 6; i++) {
		snprintf(path, sizeof(path), "/p/%d", i);
		upload(h, path);
	}
	/* Closed at once: what is queued still runs. */
	hook_free(h);
	h = NULL;
	for (end = t0 + 12; monotime_double() < end; usleep(50000)) {
		scratch_text("par.log", log, sizeof(log));
		for (ends = 0, p = log; (p = strstr(p, "end ")) != NULL; p++)
			ends++;
		if (ends >= 6)
			break;
	}
	ASSERT_INT_GE(monotime_double() - t0, 2.9);
	for (p = log; *p != '\0'; p = strchr(p, '\n') + 1) {
		if (strncmp(p, "start ", 6) == 0) {
			starts++;
			if (++cur > most)
				most = cur;
		} else if (strncmp(p, "end ", 4) == 0)
			cur--;
		if (strchr(p, '\n') == NULL)
			break;
	}
	ASSERT_INT_EQ(starts, 6);
	ASSERT_INT_EQ(ends, 6);
	ASSERT_INT_EQ(most, 2);
 out:
	hook_free(h);
	TEST_DONE();
}

static void
test_timeout(void)
{
	struct hook_opts o;
	struct hook *h = NULL;
	char prog[PATH_MAX], want[PATH_MAX + 64];
	pid_t pids[4] = { 0, 0, 0, 0 };
	double t0, t;
	int i;

	TEST_START("a hook that hangs: no delay for us, killed at the "
	    "timeout");
	if (!ASSERT_INT_EQ(write_script("slow-hook",
	    "n=$(basename \"$1\")\n"
	    "echo $$ > \"$D/$n.pid.tmp\"; mv \"$D/$n.pid.tmp\" \"$D/$n.pid\"\n"
	    "if [ \"$n\" = stubborn ]; then trap '' TERM; fi\n"
	    "sleep 30 &\n"
	    "echo $! > \"$D/$n.kid.tmp\"; mv \"$D/$n.kid.tmp\" \"$D/$n.kid\"\n"
	    "wait\n"
	    "echo finished > \"$D/$n.finished\"\n", prog, sizeof(prog)), 0))
		goto out;
	opts_init(&o, prog);
	o.timeout = 1;
	if (!ASSERT_INT_EQ(hook_new(&o, &h), 0))
		goto out;
	t0 = monotime_double();
	upload(h, "/t/plain");
	upload(h, "/t/stubborn");
	ASSERT_INT_LT((monotime_double() - t0) * 1000, 500);
	t = monotime_double();
	hook_free(h);
	h = NULL;
	ASSERT_INT_LT((monotime_double() - t) * 1000, 500);
	if (!ASSERT_INT_EQ(wait_for_file("plain.kid", 5), 0) ||
	    !ASSERT_INT_EQ(wait_for_file("stubborn.kid", 5), 0))
		goto out;
	pids[0] = scratch_pid("plain.pid");
	pids[1] = scratch_pid("plain.kid");
	pids[2] = scratch_pid("stubborn.pid");
	pids[3] = scratch_pid("stubborn.kid");
	for (i = 0; i < 4; i++) {
		if (!ASSERT_INT_GT(pids[i], 1))
			goto out;
	}
	/* SIGTERM to the group after 1 s ... */
	ASSERT_TRUE(wait_pid_gone(pids[0], t0 + 4));
	ASSERT_TRUE(wait_pid_gone(pids[1], t0 + 4));
	ASSERT_FALSE(pid_gone(pids[2]));
	/* ... and SIGKILL 5 s later for one that ignores it. */
	ASSERT_TRUE(wait_pid_gone(pids[2], t0 + 9));
	ASSERT_TRUE(wait_pid_gone(pids[3], t0 + 9));
	ASSERT_INT_GE((monotime_double() - t0) * 1000, 5500);
	snprintf(want, sizeof(want), "hook \"/t/plain\": timed out after 1 s, "
	    "killed\r\n");
	ASSERT_TRUE(wait_for_log(want, 2));
	snprintf(want, sizeof(want), "hook \"/t/stubborn\": timed out after "
	    "1 s, killed\r\n");
	ASSERT_TRUE(wait_for_log(want, 2));
	ASSERT_FALSE(scratch_exists("plain.finished"));
	ASSERT_FALSE(scratch_exists("stubborn.finished"));
 out:
	for (i = 0; i < 4; i++) {
		if (pids[i] > 1 && !pid_gone(pids[i]))
			(void)kill(pids[i], SIGKILL);
	}
	hook_free(h);
	TEST_DONE();
}

static void
test_runner_killed(void)
{
	struct hook_opts o;
	struct hook *h = NULL;
	char prog[PATH_MAX];
	pid_t first = 0, second = 0;

	TEST_START("a runner that was killed: no SIGPIPE, a new one takes "
	    "the next event");
	if (!ASSERT_INT_EQ(write_script("kill-hook",
	    "n=$(basename \"$1\")\n"
	    "echo $PPID > \"$D/k.$n.tmp\"; mv \"$D/k.$n.tmp\" \"$D/k.$n\"\n",
	    prog, sizeof(prog)), 0))
		goto out;
	opts_init(&o, prog);
	if (!ASSERT_INT_EQ(hook_new(&o, &h), 0))
		goto out;
	upload(h, "/k/one");
	if (!ASSERT_INT_EQ(wait_for_file("k.one", 5), 0) ||
	    !ASSERT_INT_GT(first = scratch_pid("k.one"), 1))
		goto out;
	ASSERT_INT_EQ(kill(first, SIGKILL), 0);
	ASSERT_TRUE(wait_pid_gone(first, monotime_double() + 3));
	/* Default SIGPIPE: a send without MSG_NOSIGNAL would kill us. */
	signal(SIGPIPE, SIG_DFL);
	upload(h, "/k/two");
	if (!ASSERT_INT_EQ(wait_for_file("k.two", 5), 0))
		goto out;
	second = scratch_pid("k.two");
	ASSERT_INT_GT(second, 1);
	ASSERT_INT_NE(second, first);
	ASSERT_FALSE(log_has("\"/k/two\" dropped"));
 out:
	hook_free(h);
	TEST_DONE();
}

static int queue_full_lines;

static void
count_queue_full(enum log_level level, const char *line)
{
	(void)level;
	if (strstr(line, "dropped: the hook runner's queue is full") != NULL)
		queue_full_lines++;
}

static void
test_queue_full(void)
{
	struct hook_opts o;
	struct hook *h = NULL;
	char prog[PATH_MAX], path[64];
	pid_t runner = 0;
	double t0, per;
	int sent = 0, stopped = 0;

	TEST_START("a runner that does not keep up: events dropped, we never "
	    "wait");
	if (!ASSERT_INT_EQ(write_script("q-hook",
	    "case \"$1\" in /q/first)\n"
	    "	echo $PPID > \"$D/q.tmp\"; mv \"$D/q.tmp\" \"$D/q.pid\" ;;\n"
	    "esac\n", prog, sizeof(prog)), 0))
		goto out;
	opts_init(&o, prog);
	o.max_running = 8;
	if (!ASSERT_INT_EQ(hook_new(&o, &h), 0))
		goto out;
	upload(h, "/q/first");
	if (!ASSERT_INT_EQ(wait_for_file("q.pid", 5), 0) ||
	    !ASSERT_INT_GT(runner = scratch_pid("q.pid"), 1) ||
	    !ASSERT_INT_EQ(kill(runner, SIGSTOP), 0))
		goto out;
	stopped = 1;
	/* The runner was forked before: it does not share the sink. */
	queue_full_lines = 0;
	log_set_sink(count_queue_full);
	t0 = monotime_double();
	while (queue_full_lines == 0 && sent < 100000) {
		snprintf(path, sizeof(path), "/q/%d", ++sent);
		upload(h, path);
	}
	per = (monotime_double() - t0) / sent;
	log_set_sink(NULL);
	test_note("%d events before the first was dropped, %.1f us each",
	    sent, per * 1e6);
	ASSERT_INT_EQ(queue_full_lines, 1);
	ASSERT_INT_LT(per * 1000, 5);
	ASSERT_INT_EQ(kill(runner, SIGCONT), 0);
	stopped = 0;
	/* More than it queues: it drops the rest, with an error. */
	if (sent - 1 > HOOK_MAX_QUEUED)
		ASSERT_TRUE(wait_for_log("events already waiting\r\n", 5));
	else
		test_note("the socket held no more than the runner queues");
 out:
	/* Not a thousand hooks: the runner goes, and with it the queue. */
	if (runner > 1) {
		(void)kill(runner, SIGKILL);
		if (stopped)
			(void)kill(runner, SIGCONT);
		ASSERT_TRUE(wait_pid_gone(runner, monotime_double() + 3));
	}
	hook_free(h);
	TEST_DONE();
}

int
main(int argc, char **argv)
{
	char line[2048];
	int r, fd, real_stderr, status, dropped = 0;
	FILE *f;

	setvbuf(stdout, NULL, _IOLBF, 0);
	umask(022);
	if ((r = setup_scratch()) != 0) {
		printf("not ok - test_hook: scratch directory: %s\n",
		    strerror(r));
		return 1;
	}
	join(logpath, sizeof(logpath), scratch, "runner.log");
	if ((fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
	    0644)) == -1 ||
	    (real_stderr = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3)) == -1 ||
	    dup2(fd, STDERR_FILENO) == -1) {
		printf("not ok - test_hook: log file: %s\n", strerror(errno));
		return 1;
	}
	close(fd);
	log_init("test_hook", LOG_LEVEL_VERBOSE, LOG_USER, 1);
	/* Inherited by the hooks; the UPLOAD_ ones must never show. */
	setenv("HOOKTEST_MARK", "kept", 1);
	setenv("UPLOAD_SHA256", "stale", 1);
	setenv("UPLOAD_REASON", "stale", 1);
	test_note("scratch %s", scratch);
	test_set_filter(argc - 1, argv + 1);

#define RUN(fn) do { if (test_wanted(#fn)) fn(); } while (0)
	RUN(test_settings);
	RUN(test_commit_env);
	RUN(test_signals);
	RUN(test_aborts);
	RUN(test_failing_hook);
	RUN(test_descriptors);
	RUN(test_no_zombies);
	RUN(test_runner_killed);
	RUN(test_queue_full);
	RUN(test_stderr_pipe);
	RUN(test_max_running);
	RUN(test_timeout);
#undef RUN

	status = test_exit_status();
	dup2(real_stderr, STDERR_FILENO);
	close(real_stderr);
	if (status != 0 && (f = fopen(logpath, "r")) != NULL) {
		/* Without test_queue_full's flood of dropped events. */
		fprintf(stderr, "--- %s\n", logpath);
		while (fgets(line, sizeof(line), f) != NULL) {
			if (strstr(line, "events already waiting") != NULL)
				dropped++;
			else
				fputs(line, stderr);
		}
		fprintf(stderr, "--- (and %d \"events already waiting\" "
		    "lines)\n", dropped);
		fclose(f);
	}
	if (getenv("TEST_KEEP") == NULL)
		rm_rf(scratch);
	else
		test_diag("kept %s", scratch);
	return status;
}
