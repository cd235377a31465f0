/*
 * Unit tests for misc.c (read_full, write_full, parse_u64, sanitise_copy,
 * monotime_double, session_passwd, open_null) and log.c (level and facility names, the commit/abort
 * line shape).
 */
#include "includes.h"

#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "atomic-upload.h"
#include "log.h"
#include "misc.h"
#include "test_helper.h"

static void
test_read_full(void)
{
	int p[2] = { -1, -1 };
	char buf[64];
	size_t done = 12345;

	TEST_START("read_full: exact, then EOF gives EPIPE and the count");
	if (!ASSERT_INT_EQ(pipe(p), 0))
		goto out;
	ASSERT_INT_EQ(write(p[1], "hello world", 11), 11);
	ASSERT_INT_EQ(read_full(p[0], buf, 5, &done), 0);
	ASSERT_INT_EQ(done, 5);
	ASSERT_MEM_EQ(buf, "hello", 5);
	ASSERT_INT_EQ(read_full(p[0], buf, 0, NULL), 0);
	close(p[1]);
	p[1] = -1;
	done = 0;
	ASSERT_INT_EQ(read_full(p[0], buf, 10, &done), EPIPE);
	ASSERT_INT_EQ(done, 6);
	ASSERT_MEM_EQ(buf, " world", 6);
	ASSERT_INT_EQ(read_full(-1, buf, 1, NULL), EBADF);
 out:
	if (p[0] >= 0)
		close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	TEST_DONE();
}

/* read_full must collect a message that arrives in pieces. */
static void
test_read_full_pieces(void)
{
	int p[2] = { -1, -1 };
	char buf[32];
	size_t done = 0;
	pid_t pid = -1;
	int status;

	TEST_START("read_full: short reads are joined");
	if (!ASSERT_INT_EQ(pipe(p), 0))
		goto out;
	if ((pid = fork()) == 0) {
		close(p[0]);
		if (write(p[1], "abc", 3) != 3)
			_exit(1);
		usleep(50000);
		if (write(p[1], "defgh", 5) != 5)
			_exit(1);
		_exit(0);
	}
	if (!ASSERT_INT_GT(pid, 0))
		goto out;
	close(p[1]);
	p[1] = -1;
	ASSERT_INT_EQ(read_full(p[0], buf, 8, &done), 0);
	ASSERT_INT_EQ(done, 8);
	ASSERT_MEM_EQ(buf, "abcdefgh", 8);
	ASSERT_INT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_INT_EQ(status, 0);
 out:
	if (p[0] >= 0)
		close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	TEST_DONE();
}

static void
test_write_full(void)
{
	int p[2] = { -1, -1 };
	char *big = NULL, *back = NULL;
	size_t len = 1 << 20;
	pid_t pid = -1;
	int status;

	TEST_START("write_full: 1 MiB through a pipe, EPIPE on a closed one");
	if (!ASSERT_INT_EQ(pipe(p), 0))
		goto out;
	big = malloc(len);
	back = malloc(len);
	if (!ASSERT_PTR_NE(big, NULL) || !ASSERT_PTR_NE(back, NULL))
		goto out;
	for (size_t i = 0; i < len; i++)
		big[i] = (char)(i * 7 + i / 251);
	/* A pipe holds 64 KiB: the reader must run at the same time. */
	if ((pid = fork()) == 0) {
		close(p[1]);
		if (read_full(p[0], back, len, NULL) != 0 ||
		    memcmp(back, big, len) != 0)
			_exit(1);
		_exit(0);
	}
	if (!ASSERT_INT_GT(pid, 0))
		goto out;
	close(p[0]);
	p[0] = -1;
	ASSERT_INT_EQ(write_full(p[1], big, len), 0);
	close(p[1]);
	p[1] = -1;
	ASSERT_INT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_INT_EQ(status, 0);

	/* Writing to a pipe nobody reads: EPIPE, not a crash. */
	signal(SIGPIPE, SIG_IGN);
	if (!ASSERT_INT_EQ(pipe(p), 0))
		goto out;
	close(p[0]);
	p[0] = -1;
	ASSERT_INT_EQ(write_full(p[1], "x", 1), EPIPE);
	ASSERT_INT_EQ(write_full(p[1], "", 0), 0);
 out:
	signal(SIGPIPE, SIG_DFL);
	if (p[0] >= 0)
		close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	free(big);
	free(back);
	TEST_DONE();
}

static void
test_parse_u64(void)
{
	unsigned long long v;

	TEST_START("parse_u64");
	v = 99;
	ASSERT_INT_EQ(parse_u64("0", &v), 0);
	ASSERT_INT_EQ(v, 0);
	ASSERT_INT_EQ(parse_u64("12345", &v), 0);
	ASSERT_INT_EQ(v, 12345);
	ASSERT_INT_EQ(parse_u64("007", &v), 0);
	ASSERT_INT_EQ(v, 7);
	ASSERT_INT_EQ(parse_u64("18446744073709551615", &v), 0);
	ASSERT_TRUE(v == 18446744073709551615ULL);
	v = 42;
	ASSERT_INT_EQ(parse_u64("18446744073709551616", &v), ERANGE);
	ASSERT_INT_EQ(parse_u64("99999999999999999999", &v), ERANGE);
	ASSERT_INT_EQ(v, 42);	/* untouched on error */
	ASSERT_INT_EQ(parse_u64("", &v), EINVAL);
	ASSERT_INT_EQ(parse_u64(NULL, &v), EINVAL);
	ASSERT_INT_EQ(parse_u64("12a", &v), EINVAL);
	ASSERT_INT_EQ(parse_u64("-1", &v), EINVAL);
	ASSERT_INT_EQ(parse_u64("+1", &v), EINVAL);
	ASSERT_INT_EQ(parse_u64(" 1", &v), EINVAL);
	ASSERT_INT_EQ(parse_u64("1 ", &v), EINVAL);
	ASSERT_INT_EQ(parse_u64("0x10", &v), EINVAL);
	ASSERT_INT_EQ(v, 42);
	TEST_DONE();
}

static void
test_sanitise_copy(void)
{
	char buf[16];

	TEST_START("sanitise_copy");
	sanitise_copy(buf, sizeof(buf), "plain text");
	ASSERT_STR_EQ(buf, "plain text");
	sanitise_copy(buf, sizeof(buf), "a\nb\rc\td\x1b" "e\x7f");
	ASSERT_STR_EQ(buf, "a?b?c?d?e?");
	/* Bytes >= 0x80 (UTF-8) are kept: file names may be any language. */
	sanitise_copy(buf, sizeof(buf), "\xc3\xa9t\xc3\xa9");
	ASSERT_STR_EQ(buf, "\xc3\xa9t\xc3\xa9");
	/* Truncated to the buffer, always terminated. */
	sanitise_copy(buf, 5, "abcdefgh");
	ASSERT_STR_EQ(buf, "abcd");
	sanitise_copy(buf, 1, "abc");
	ASSERT_STR_EQ(buf, "");
	memcpy(buf, "keep", 5);
	sanitise_copy(buf, 0, "abc");
	ASSERT_STR_EQ(buf, "keep");
	sanitise_copy(buf, sizeof(buf), "");
	ASSERT_STR_EQ(buf, "");
	TEST_DONE();
}

static void
test_path_split(void)
{
	char dir[16], name[300];
	const char *base = NULL;

	TEST_START("path_split: directory part and last component");
	ASSERT_INT_EQ(path_split("a/b/c.txt", dir, sizeof(dir), &base), 0);
	ASSERT_STR_EQ(dir, "a/b");
	ASSERT_STR_EQ(base, "c.txt");
	ASSERT_INT_EQ(path_split("c.txt", dir, sizeof(dir), &base), 0);
	ASSERT_STR_EQ(dir, ".");
	ASSERT_STR_EQ(base, "c.txt");
	ASSERT_INT_EQ(path_split("/c", dir, sizeof(dir), &base), 0);
	ASSERT_STR_EQ(dir, "/");
	ASSERT_STR_EQ(base, "c");
	/* What open(2) of these for creation calls a directory. */
	ASSERT_INT_EQ(path_split("a/", dir, sizeof(dir), &base), EISDIR);
	ASSERT_INT_EQ(path_split("a/..", dir, sizeof(dir), &base), EISDIR);
	ASSERT_INT_EQ(path_split(".", dir, sizeof(dir), &base), EISDIR);
	ASSERT_INT_EQ(path_split("", dir, sizeof(dir), &base), ENOENT);
	/* Too long for the buffer, or for a name. */
	ASSERT_INT_EQ(path_split("0123456789abcdef/x", dir, sizeof(dir),
	    &base), ENAMETOOLONG);
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	ASSERT_INT_EQ(path_split(name, dir, sizeof(dir), &base), ENAMETOOLONG);
	TEST_DONE();
}

static void
test_monotime(void)
{
	double a, b;

	TEST_START("monotime_double increases");
	a = monotime_double();
	usleep(20000);
	b = monotime_double();
	ASSERT_TRUE(a > 0.0);
	ASSERT_TRUE(b - a >= 0.015);
	ASSERT_TRUE(b - a < 5.0);
	TEST_DONE();
}

static void
test_log_levels(void)
{
	enum log_level l = LOG_LEVEL_QUIET;

	TEST_START("log_parse_level");
	ASSERT_INT_EQ(log_parse_level("QUIET", &l), 0);
	ASSERT_INT_EQ(l, LOG_LEVEL_QUIET);
	ASSERT_INT_EQ(log_parse_level("fatal", &l), 0);
	ASSERT_INT_EQ(l, LOG_LEVEL_FATAL);
	ASSERT_INT_EQ(log_parse_level("Error", &l), 0);
	ASSERT_INT_EQ(l, LOG_LEVEL_ERROR);
	ASSERT_INT_EQ(log_parse_level("INFO", &l), 0);
	ASSERT_INT_EQ(l, LOG_LEVEL_INFO);
	ASSERT_INT_EQ(log_parse_level("verbose", &l), 0);
	ASSERT_INT_EQ(l, LOG_LEVEL_VERBOSE);
	ASSERT_INT_EQ(log_parse_level("DEBUG", &l), 0);
	ASSERT_INT_EQ(l, LOG_LEVEL_DEBUG1);
	ASSERT_INT_EQ(log_parse_level("debug1", &l), 0);
	ASSERT_INT_EQ(l, LOG_LEVEL_DEBUG1);
	ASSERT_INT_EQ(log_parse_level("DEBUG2", &l), 0);
	ASSERT_INT_EQ(l, LOG_LEVEL_DEBUG2);
	ASSERT_INT_EQ(log_parse_level("DeBuG3", &l), 0);
	ASSERT_INT_EQ(l, LOG_LEVEL_DEBUG3);
	l = LOG_LEVEL_INFO;
	ASSERT_INT_EQ(log_parse_level("DEBUG4", &l), -1);
	ASSERT_INT_EQ(log_parse_level("", &l), -1);
	ASSERT_INT_EQ(log_parse_level("INFO ", &l), -1);
	ASSERT_INT_EQ(log_parse_level(NULL, &l), -1);
	ASSERT_INT_EQ(l, LOG_LEVEL_INFO);	/* untouched on error */
	TEST_DONE();
}

static void
test_log_facilities(void)
{
	int f = -7;

	TEST_START("log_parse_facility");
	ASSERT_INT_EQ(log_parse_facility("DAEMON", &f), 0);
	ASSERT_INT_EQ(f, LOG_DAEMON);
	ASSERT_INT_EQ(log_parse_facility("user", &f), 0);
	ASSERT_INT_EQ(f, LOG_USER);
	ASSERT_INT_EQ(log_parse_facility("AUTH", &f), 0);
	ASSERT_INT_EQ(f, LOG_AUTH);
#ifdef LOG_AUTHPRIV
	ASSERT_INT_EQ(log_parse_facility("AuthPriv", &f), 0);
	ASSERT_INT_EQ(f, LOG_AUTHPRIV);
#endif
	ASSERT_INT_EQ(log_parse_facility("LOCAL0", &f), 0);
	ASSERT_INT_EQ(f, LOG_LOCAL0);
	ASSERT_INT_EQ(log_parse_facility("local7", &f), 0);
	ASSERT_INT_EQ(f, LOG_LOCAL7);
	f = -7;
	ASSERT_INT_EQ(log_parse_facility("LOCAL8", &f), -1);
	ASSERT_INT_EQ(log_parse_facility("kern", &f), -1);
	ASSERT_INT_EQ(log_parse_facility("", &f), -1);
	ASSERT_INT_EQ(log_parse_facility(NULL, &f), -1);
	ASSERT_INT_EQ(f, -7);
	TEST_DONE();
}

/* Run `fn` with stderr going to a pipe; return what it logged. */
static int
capture_stderr(void (*fn)(void *), void *arg, char *out, size_t outlen)
{
	int p[2], saved = -1, r = 0;
	ssize_t n;
	size_t off = 0;

	out[0] = '\0';
	if (pipe(p) != 0)
		return errno;
	if ((saved = dup(STDERR_FILENO)) < 0 ||
	    dup2(p[1], STDERR_FILENO) < 0) {
		r = errno;
		goto out;
	}
	fn(arg);
	dup2(saved, STDERR_FILENO);
	close(p[1]);
	p[1] = -1;
	while (off + 1 < outlen &&
	    (n = read(p[0], out + off, outlen - 1 - off)) > 0)
		off += (size_t)n;
	out[off] = '\0';
 out:
	if (saved >= 0)
		close(saved);
	close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	return r;
}

static void
log_commit_line(void *arg)
{
	log_stage(arg, 1);
}

static void
log_abort_line(void *arg)
{
	log_stage(arg, 0);
}

static void
log_levels_filtered(void *arg)
{
	(void)arg;
	debug("hidden at INFO");
	verbose("hidden too");
	logit("shown %d", 1);
	error("shown %s", "two");
}

static void
test_log_stage_lines(void)
{
	struct stage_report rep;
	char out[2048];

	TEST_START("log_stage commit/abort line shapes, newline-safe");
	log_init("test_misc", LOG_LEVEL_INFO, LOG_AUTH, 1);
	memset(&rep, 0, sizeof(rep));
	snprintf(rep.path, sizeof(rep.path), "/srv/in/a.csv");
	rep.bytes = 1234;
	rep.seconds = 1.5;
	rep.method = STAGE_NAMED;
	ASSERT_INT_EQ(capture_stderr(log_commit_line, &rep, out,
	    sizeof(out)), 0);
	ASSERT_STR_EQ(out, "commit \"/srv/in/a.csv\" bytes 1234 seconds "
	    "1.500 method named\r\n");

	rep.method = STAGE_TMPFILE;
	rep.error = EIO;
	snprintf(rep.reason, sizeof(rep.reason), "fsync: I/O error");
	ASSERT_INT_EQ(capture_stderr(log_abort_line, &rep, out,
	    sizeof(out)), 0);
	ASSERT_STR_EQ(out, "abort \"/srv/in/a.csv\" bytes 1234 seconds "
	    "1.500 method tmpfile reason \"fsync: I/O error\"\r\n");

	/* A client-chosen name must not forge a second log line. */
	snprintf(rep.path, sizeof(rep.path), "x\nabort \"y\"\r");
	rep.error = 0;
	rep.method = STAGE_DIRECT;
	ASSERT_INT_EQ(capture_stderr(log_commit_line, &rep, out,
	    sizeof(out)), 0);
	ASSERT_STR_EQ(out, "commit \"x?abort \"y\"?\" bytes 1234 seconds "
	    "1.500 method direct\r\n");

	ASSERT_INT_EQ(capture_stderr(log_levels_filtered, NULL, out,
	    sizeof(out)), 0);
	ASSERT_STR_EQ(out, "shown 1\r\nshown two\r\n");
	ASSERT_INT_EQ(log_get_level(), LOG_LEVEL_INFO);
	log_reset();
	ASSERT_INT_EQ(log_get_level(), LOG_LEVEL_ERROR);
	TEST_DONE();
}

/*
 * In a child that becomes a uid with no passwd entry (root only): the
 * user is known by number, home from an absolute HOME, else "/".
 * Exit status: the number of the first failed step, 0 if all passed.
 */
static int
session_passwd_child(uid_t uid)
{
	struct passwd *pw;
	char want[32];
	int numeric = -1;

	if (setgid((gid_t)uid) != 0 || setuid(uid) != 0)
		return 1;
	snprintf(want, sizeof(want), "%lu", (unsigned long)uid);
	setenv("HOME", "/upload", 1);
	pw = session_passwd(&numeric);
	if (numeric != 1 || strcmp(pw->pw_name, want) != 0 ||
	    pw->pw_uid != uid || pw->pw_gid != (gid_t)uid)
		return 2;
	if (strcmp(pw->pw_dir, "/upload") != 0)
		return 3;
	setenv("HOME", "relative/dir", 1);
	if (strcmp(session_passwd(NULL)->pw_dir, "/") != 0)
		return 4;
	unsetenv("HOME");
	if (strcmp(session_passwd(NULL)->pw_dir, "/") != 0)
		return 5;
	return 0;
}

static void
test_session_passwd(void)
{
	struct passwd *pw;
	uid_t uid;
	pid_t pid;
	int numeric = -1, status;

	TEST_START("session_passwd: the account, or a number without one");
	pw = session_passwd(&numeric);
	ASSERT_INT_EQ(numeric, name_getpwuid(getuid()) == NULL);
	ASSERT_INT_EQ(pw->pw_uid, getuid());
	if (getuid() == 0) {
		ASSERT_INT_EQ(numeric, 0);
		ASSERT_STR_EQ(pw->pw_name, "root");
		/* A uid nobody has. */
		for (uid = 2147480001U; name_getpwuid(uid) != NULL; uid++)
			;
		if ((pid = fork()) == 0)
			_exit(session_passwd_child(uid));
		ASSERT_INT_EQ(waitpid(pid, &status, 0), pid);
		ASSERT_TRUE(WIFEXITED(status));
		ASSERT_INT_EQ(WEXITSTATUS(status), 0);
	}
	TEST_DONE();
}

static void
test_open_null(void)
{
	char c;
	int fd;

	TEST_START("open_null: a descriptor that reads as end of file");
	fd = open_null();
	ASSERT_INT_GE(fd, 0);
	ASSERT_INT_EQ(read(fd, &c, 1), 0);
	close(fd);
	TEST_DONE();
}

int
main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_set_filter(argc - 1, argv + 1);
	if (test_wanted("read_full")) {
		test_read_full();
		test_read_full_pieces();
	}
	if (test_wanted("write_full"))
		test_write_full();
	if (test_wanted("parse_u64"))
		test_parse_u64();
	if (test_wanted("sanitise_copy"))
		test_sanitise_copy();
	if (test_wanted("path_split"))
		test_path_split();
	if (test_wanted("session_passwd"))
		test_session_passwd();
	if (test_wanted("open_null"))
		test_open_null();
	if (test_wanted("monotime"))
		test_monotime();
	if (test_wanted("log_parse_level"))
		test_log_levels();
	if (test_wanted("log_parse_facility"))
		test_log_facilities();
	if (test_wanted("log_stage"))
		test_log_stage_lines();
	return test_exit_status();
}
