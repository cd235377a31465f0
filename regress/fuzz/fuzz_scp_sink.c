/*
 * libFuzzer harness: the scp sink (scp -t) through scp_sink() in scp.h,
 * reading a fuzzed sender's records (C, D, E, T, \1 and \2 messages) and
 * file data, staging and publishing files in a scratch directory.
 *
 * Input: one byte of options (bits below), then what the sender sends.
 * The sender's side is a memfd holding the input (EOF after it), the
 * replies go to another memfd, so nothing blocks.  Each run gets a fresh
 * scratch tmpfs (sandbox.c: the same sandbox as fuzz_sftp_server) holding
 * t/ (the target directory) and t/old (a file uploads may replace).
 * Besides the sanitizers, a run fails (abort) when a staging is still
 * open after scp_sink() returned, a named temporary is left anywhere, or
 * a descriptor leaked.
 */
#include "includes.h"

#include <sys/types.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomic-upload.h"
#include "log.h"
#include "scp.h"
#include "sandbox.h"

#define OPT_RECURSIVE	0x01
#define OPT_PRESERVE	0x02
#define OPT_TARGET_DIR	0x04	/* -d */
#define OPT_ONE_FILE	0x08	/* target t/one, not the directory t */
#define OPT_NO_TMPFILE	0x10
#define OPT_DISABLED	0x20
#define OPT_INPLACE	0x40
#define OPT_SYNC_NONE	0x80

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *scratch;

static void
discard_line(enum log_level level, const char *line)
{
	(void)level;
	(void)line;
}

static void die(const char *) __attribute__((noreturn));

static void
die(const char *what)
{
	fprintf(stderr, "fuzz_scp_sink: %s\n", what);
	abort();
}

static int
first_free_fd(void)
{
	int fd = dup(STDERR_FILENO);

	if (fd == -1)
		die("dup");
	close(fd);
	return fd;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	if (sandbox_enter(argc, argv, &scratch) != 0)
		die("no sandbox: refusing to receive files into real places");
	log_init("fuzz_scp_sink", LOG_LEVEL_DEBUG3, 0, 1);
	if (getenv("FUZZ_SCP_LOG") == NULL)
		log_set_sink(discard_line);
	/* A reply to a peer that went away must not kill the harness. */
	signal(SIGPIPE, SIG_IGN);
	umask(022);
	return 0;
}

static void
make_tree(void)
{
	int fd;

	if (mkdir("t", 0755) != 0)
		die("make t");
	if ((fd = open("t/old", O_WRONLY | O_CREAT | O_TRUNC, 0644)) == -1 ||
	    write(fd, "old\n", 4) != 4 || close(fd) != 0)
		die("make t/old");
}

static void
check_debris(const char *dir, int depth)
{
	char path[PATH_MAX];
	struct dirent *de;
	struct stat st;
	DIR *d;

	if (depth > 16 || (d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (stage_is_temp_name(de->d_name)) {
			fprintf(stderr, "debris: %s/%s\n", dir, de->d_name);
			die("staging debris left behind");
		}
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
			check_debris(path, depth + 1);
	}
	closedir(d);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static volatile sig_atomic_t stop;
	struct scp_opts opts;
	struct scp_peer *peer;
	int in_fd, out_fd, lowest_free_fd;
	u_char o;

	if (size < 1)
		return 0;
	if (sandbox_reset() != 0)
		die("scratch reset");
	make_tree();
	lowest_free_fd = first_free_fd();
	o = data[0];
	if ((in_fd = memfd_create("sender", MFD_CLOEXEC)) == -1 ||
	    (out_fd = memfd_create("replies", MFD_CLOEXEC)) == -1)
		die("memfd_create");
	if (size > 1 && write(in_fd, data + 1, size - 1) != (ssize_t)(size - 1))
		die("write memfd");
	if (lseek(in_fd, 0, SEEK_SET) != 0)
		die("lseek memfd");
	memset(&opts, 0, sizeof(opts));
	opts.recursive = (o & OPT_RECURSIVE) != 0;
	opts.preserve = (o & OPT_PRESERVE) != 0;
	opts.target_dir = (o & OPT_TARGET_DIR) != 0;
	opts.umask = 022;
	opts.stage.no_tmpfile = (o & OPT_NO_TMPFILE) != 0;
	opts.stage.disabled = (o & OPT_DISABLED) != 0;
	opts.stage.modify = (o & OPT_INPLACE) ? STAGE_MODIFY_INPLACE :
	    STAGE_MODIFY_COPY;
	opts.stage.sync = (o & OPT_SYNC_NONE) ? STAGE_SYNC_NONE :
	    STAGE_SYNC_FULL;
	/* The peer holds a 64 KiB buffer: not on the stack. */
	if ((peer = malloc(sizeof(*peer))) == NULL)
		die("malloc");
	stop = 0;
	scp_peer_init(peer, in_fd, out_fd, &stop);
	(void)scp_sink(peer, &opts, (o & OPT_ONE_FILE) ? "t/one" : "t");
	free(peer);
	close(in_fd);
	close(out_fd);
	if (stage_count() != 0)
		die("staging still open after the sink returned");
	check_debris(".", 0);
	if (first_free_fd() != lowest_free_fd)
		die("descriptor leaked");
	return 0;
}
