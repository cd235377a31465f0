/*
 * rusage-wrap: run a program as a child and record what it cost.
 *
 *   BENCH_RUSAGE_FILE=FILE rusage-wrap PROGRAM [ARGS...]
 *
 * The benchmark puts this in front of the server side of a transfer (the
 * sftp Subsystem, `sftp -D`, the scp that sshd runs) so that the figures are
 * the server's alone, not the client's or sshd's.  When the child exits, one
 * line is appended to FILE:
 *
 *   user_s=U sys_s=S maxrss_kb=K wall_s=W status=N prog=NAME
 *
 * user_s/sys_s/maxrss_kb come from wait4() for that child (ru_maxrss is in
 * KiB on Linux); wall_s is fork to reap; status is the exit code, or 128+N
 * for a child killed by signal N.  Without BENCH_RUSAGE_FILE nothing is
 * recorded.  The exit status of the wrapper is the child's, so callers see
 * the same result as without the wrapper.
 */
#include "includes.h"

#include <sys/types.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RUSAGE_FILE_ENV	"BENCH_RUSAGE_FILE"

/* The child to pass termination signals on to (set once, before handlers). */
static volatile pid_t child_pid = -1;

static void
forward_signal(int sig)
{
	if (child_pid > 0)
		kill(child_pid, sig);
}

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
timeval_seconds(const struct timeval *tv)
{
	return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

/*
 * Append the record with one write() on an O_APPEND descriptor, so records
 * from wrappers that exit at the same time never interleave.
 * Returns 0 or an errno value.
 */
static int
append_record(const char *path, const struct rusage *ru, double wall,
    int status, const char *prog)
{
	char line[1024];
	const char *base;
	int fd = -1, len, r = 0;
	ssize_t n;

	base = strrchr(prog, '/');
	base = base != NULL ? base + 1 : prog;
	len = snprintf(line, sizeof(line),
	    "user_s=%.6f sys_s=%.6f maxrss_kb=%ld wall_s=%.6f status=%d "
	    "prog=%s\n", timeval_seconds(&ru->ru_utime),
	    timeval_seconds(&ru->ru_stime), ru->ru_maxrss, wall, status, base);
	if (len < 0 || (size_t)len >= sizeof(line)) {
		r = EOVERFLOW;
		goto out;
	}
	if ((fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
	    0644)) == -1) {
		r = errno;
		goto out;
	}
	if ((n = write(fd, line, (size_t)len)) != len)
		r = n == -1 ? errno : EIO;
 out:
	if (fd != -1 && close(fd) == -1 && r == 0)
		r = errno;
	return r;
}

/*
 * The wrapper must not keep the child's pipes open after the child is
 * gone: sftp and sshd wait for EOF on them.  Point our own copies at
 * /dev/null; stderr stays for our error message.
 */
static void
release_stdio(void)
{
	int fd;

	if ((fd = open("/dev/null", O_RDWR)) == -1)
		return;
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
}

int
main(int argc, char **argv)
{
	static const int forwarded[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM };
	struct sigaction sa;
	struct rusage ru;
	const char *record_path;
	double started;
	pid_t pid, reaped;
	size_t i;
	int wstatus, exit_status, r;

	if (argc < 2) {
		fprintf(stderr, "usage: %s program [args ...]\n", argv[0]);
		return 2;
	}
	record_path = getenv(RUSAGE_FILE_ENV);

	started = now_seconds();
	if ((pid = fork()) == -1) {
		fprintf(stderr, "rusage-wrap: fork: %s\n", strerror(errno));
		return 127;
	}
	if (pid == 0) {
		execvp(argv[1], argv + 1);
		fprintf(stderr, "rusage-wrap: %s: %s\n", argv[1],
		    strerror(errno));
		_exit(127);
	}
	child_pid = pid;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = forward_signal;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
		sigaction(forwarded[i], &sa, NULL);
	release_stdio();

	do {
		reaped = wait4(pid, &wstatus, 0, &ru);
	} while (reaped == -1 && errno == EINTR);
	if (reaped == -1) {
		fprintf(stderr, "rusage-wrap: wait4: %s\n", strerror(errno));
		return 127;
	}
	if (WIFEXITED(wstatus))
		exit_status = WEXITSTATUS(wstatus);
	else if (WIFSIGNALED(wstatus))
		exit_status = 128 + WTERMSIG(wstatus);
	else
		exit_status = 127;

	if (record_path != NULL && *record_path != '\0' &&
	    (r = append_record(record_path, &ru, now_seconds() - started,
	    exit_status, argv[1])) != 0)
		fprintf(stderr, "rusage-wrap: %s: %s\n", record_path,
		    strerror(r));
	return exit_status;
}
