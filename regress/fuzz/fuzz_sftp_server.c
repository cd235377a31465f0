/*
 * libFuzzer harness: the whole SFTP server (dispatcher, every handler,
 * staging through atomic-upload) answering a fuzzed byte stream in a
 * scratch directory.
 *
 * Input: one byte of session options (bits below), then the client's
 * byte stream exactly as it would arrive on stdin.  Each run gets a fresh
 * session and a fresh scratch tmpfs holding a small tree (f, d/g, l -> f,
 * stg/), and ends as a lost connection does.  With resumable uploads on
 * (OPT_RESUME) that session's uploads still open are kept as partial
 * ones; the stores are swept, and a second session of the same user gets
 * the same stream again (it finds them: a non-truncating open continues
 * one, a truncating one discards it, REMOVE and RENAME forget it) and ends
 * as a closed connection does.  Besides the sanitizers, a run fails
 * (abort) when:
 *   - a reply is malformed (length over SFTP_MAX_MSG, cut short);
 *   - a staging is still open after the session ended;
 *   - a named temporary is left anywhere in the scratch tree;
 *   - a descriptor is left open.
 *
 * Filesystem safety: see sandbox.h and README.  The harness refuses to
 * run when the sandbox cannot be set up.
 */
#include "includes.h"

#include <sys/types.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomic-upload.h"
#include "log.h"
#include "sftp-codec.h"
#include "sftp-server.h"
#include "sandbox.h"

#define OPT_READONLY	0x01
#define OPT_LIMITS	0x02	/* 3 handles at most; -P symlink,hardlink */
#define OPT_SYNC_MASK	0x0c	/* >> 2: full, data, none, full+resume */
#define OPT_RESUME	0x0c	/* all of OPT_SYNC_MASK: resumable uploads */
#define OPT_INPLACE	0x10	/* modify in place instead of copying */
#define OPT_DISABLED	0x20	/* no staging at all (stock behaviour) */
#define OPT_NO_TMPFILE	0x40	/* named temporaries only */
#define OPT_TMPDIR	0x80	/* stage in stg/ */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *scratch;
static char stagedir[PATH_MAX];

static void
discard_line(enum log_level level, const char *line)
{
	/* Formatted (so format bugs show), then dropped. */
	(void)level;
	(void)line;
}

static void die(const char *) __attribute__((noreturn));

static void
die(const char *what)
{
	fprintf(stderr, "fuzz_sftp_server: %s\n", what);
	abort();
}

static int
first_free_fd(void)
{
	/* Not /dev/null: the sandbox makes every device node unusable. */
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
		die("no sandbox: refusing to run requests against real files");
	snprintf(stagedir, sizeof(stagedir), "%s/stg", scratch);
	log_init("fuzz_sftp_server", LOG_LEVEL_DEBUG3, 0, 1);
	/* FUZZ_SFTP_LOG=1: the server's log on stderr, to see what one
	 * input did. */
	if (getenv("FUZZ_SFTP_LOG") == NULL)
		log_set_sink(discard_line);
	umask(022);
	return 0;
}

static void
make_tree(void)
{
	static const char content[] = "0123456789abcdef0123456789abcdef\n";
	int fd;

	if ((fd = open("f", O_WRONLY | O_CREAT | O_TRUNC, 0644)) == -1 ||
	    write(fd, content, sizeof(content) - 1) !=
	    (ssize_t)(sizeof(content) - 1) || close(fd) != 0)
		die("make f");
	if (mkdir("d", 0755) != 0 || mkdir("stg", 0700) != 0 ||
	    symlink("f", "l") != 0)
		die("make d, stg, l");
	if ((fd = open("d/g", O_WRONLY | O_CREAT | O_TRUNC, 0600)) == -1 ||
	    close(fd) != 0)
		die("make d/g");
}

/* Every queued reply is a whole packet of a size we promise. */
static void
drain_output(struct sftp_session *s)
{
	const u_char *p;
	size_t len, off = 0, msglen;

	sftp_session_output(s, &p, &len);
	while (off < len) {
		if (sftp_frame_check(p + off, len - off, SFTP_MAX_MSG,
		    &msglen) != 0)
			die("reply over the maximum or cut short");
		if (msglen == 0)
			die("empty reply");
		off += 4 + msglen;
	}
	sftp_session_output_consume(s, len);
}

/* No named temporary may survive its session, anywhere. */
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

/*
 * One session over the whole stream, as the I/O loop runs it: feed while
 * the server wants input, drain what it answered, stop when it says
 * framing is lost.  It ends as a lost connection (`lost`) or as a
 * closed one.
 */
static void
run_session(const struct sftp_server_opts *opts, const uint8_t *data,
    size_t size, int lost)
{
	struct sftp_session *s = NULL;
	size_t used, off;
	int r, stuck = 0;

	if (sftp_session_new(opts, &s) != 0)
		die("session");
	for (off = 0, r = 0; off < size && r == 0; off += used) {
		r = sftp_session_input(s, data + off, size - off, &used);
		drain_output(s);
		/* Output was drained: the next call must take something. */
		stuck = used == 0 ? stuck + 1 : 0;
		if (stuck > 2)
			die("input not taken with output drained");
	}
	if (r == 0)
		r = sftp_session_process(s);
	drain_output(s);
	if (lost)
		sftp_session_lost(s, "fuzz input over");
	else
		sftp_session_free(s, "fuzz input over");
	if (stage_count() != 0)
		die("staging still open after the session ended");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sftp_server_opts opts;
	u_char o;
	int lowest_free_fd, resume;

	if (size < 1)
		return 0;
	if (sandbox_reset() != 0)
		die("scratch reset");
	make_tree();
	/* What the server opens first takes this number: if it is still
	 * taken at the end, something was left open. */
	lowest_free_fd = first_free_fd();
	o = data[0];
	memset(&opts, 0, sizeof(opts));
	opts.user = "fuzz";
	opts.home = scratch;
	opts.client_addr = "127.0.0.1";
	opts.readonly = (o & OPT_READONLY) != 0;
	opts.max_handles = (o & OPT_LIMITS) ? 3 : 0;
	opts.denied = (o & OPT_LIMITS) ? "symlink,hardlink" : NULL;
	resume = (o & OPT_RESUME) == OPT_RESUME;
	switch ((o & OPT_SYNC_MASK) >> 2) {
	case 1:
		opts.stage.sync = STAGE_SYNC_DATA;
		break;
	case 2:
		opts.stage.sync = STAGE_SYNC_NONE;
		break;
	default:
		opts.stage.sync = STAGE_SYNC_FULL;
		break;
	}
	opts.stage.modify = (o & OPT_INPLACE) ? STAGE_MODIFY_INPLACE :
	    STAGE_MODIFY_COPY;
	opts.stage.disabled = (o & OPT_DISABLED) != 0;
	opts.stage.no_tmpfile = (o & OPT_NO_TMPFILE) != 0;
	/* Digests as shipped (on), stored as an xattr in half the runs;
	 * check-file limited so a fuzzed range stays cheap. */
	opts.stage.digest = 1;
	opts.stage.digest_xattr = (o & OPT_LIMITS) ? "user.sha256" : NULL;
	opts.check_file_max = 1 << 20;
	opts.stage.tmpdir = (o & OPT_TMPDIR) ? stagedir : NULL;
	/* Resumable uploads: an age nothing in a run outlives (so a run
	 * does what it did the last time, whatever the clock says), and a
	 * cap small enough for the store to make room now and then. */
	opts.stage.resume = resume;
	opts.stage.partial.age = 600;
	opts.stage.partial.record_age = 0;
	opts.stage.partial.max_bytes = 64 * 1024;
	data++;
	size--;
	run_session(&opts, data, size, resume);
	if (resume) {
		/* Nothing but kept data and records may be left; then what
		 * the server's start-up sweep does, and the user's next
		 * session. */
		check_debris(".", 0);
		if (stage_sweep_partial(".", STAGE_SWEEP_TREE,
		    &opts.stage.partial, NULL, NULL) != 0)
			die("sweep");
		run_session(&opts, data, size, 0);
	}
	check_debris(".", 0);
	if (first_free_fd() != lowest_free_fd)
		die("descriptor leaked");
	return 0;
}
