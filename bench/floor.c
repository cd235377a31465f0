/*
 * floor: the least work a durable small-file upload can cost on this disk.
 *
 *   floor [-n files] [-s bytes] [-y full|data|none] DIR
 *
 * For each of `files` files: create a temporary name in DIR (O_EXCL),
 * write `bytes` bytes, fsync the file, close it, rename it to its final
 * name and fsync DIR.  That is what durability `full` must do per file at
 * the very least, with no protocol, no network and no copy from a client;
 * the benchmark compares the servers' small-file time against it.
 * `-y data` leaves out the directory fsync, `-y none` both fsyncs.
 *
 * Prints one line: files=N bytes=S seconds=T (T from the first create to
 * the last fsync).  Exit 0, or 1 with a message on the first error.
 */
#include "includes.h"

#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum durability { DURABILITY_NONE, DURABILITY_DATA, DURABILITY_FULL };

struct floor_config {
	unsigned long files;
	size_t bytes;
	enum durability durability;
	const char *dir;
};

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Parse a whole decimal number; 0 or EINVAL/ERANGE. */
static int
parse_count(const char *s, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9')
		return EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0)
		return errno;
	if (*end != '\0')
		return EINVAL;
	*out = v;
	return 0;
}

static int
parse_durability(const char *s, enum durability *out)
{
	if (strcmp(s, "full") == 0)
		*out = DURABILITY_FULL;
	else if (strcmp(s, "data") == 0)
		*out = DURABILITY_DATA;
	else if (strcmp(s, "none") == 0)
		*out = DURABILITY_NONE;
	else
		return EINVAL;
	return 0;
}

/* Write all of buf, retrying short writes and EINTR; 0 or errno. */
static int
write_all(int fd, const char *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		if ((n = write(fd, buf, len)) == -1) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * One file, the way a durable atomic upload lands it.  On error *what
 * names the step that failed.  Returns 0 or an errno value.
 */
static int
land_one_file(int dirfd, unsigned long index, const char *data, size_t len,
    enum durability durability, const char **what)
{
	char tmpname[64], finalname[64];
	int fd = -1, r = 0;

	snprintf(tmpname, sizeof(tmpname), ".f%06lu.tmp", index);
	snprintf(finalname, sizeof(finalname), "f%06lu", index);
	*what = "create";
	if ((fd = openat(dirfd, tmpname,
	    O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) == -1) {
		r = errno;
		goto out;
	}
	*what = "write";
	if ((r = write_all(fd, data, len)) != 0)
		goto out;
	*what = "fsync file";
	if (durability != DURABILITY_NONE && fsync(fd) == -1) {
		r = errno;
		goto out;
	}
	*what = "close";
	r = close(fd) == -1 ? errno : 0;
	fd = -1;
	if (r != 0)
		goto out;
	*what = "rename";
	if (renameat(dirfd, tmpname, dirfd, finalname) == -1) {
		r = errno;
		goto out;
	}
	*what = "fsync directory";
	if (durability == DURABILITY_FULL && fsync(dirfd) == -1) {
		r = errno;
		goto out;
	}
 out:
	if (fd != -1)
		close(fd);
	return r;
}

static int
run_floor(const struct floor_config *cfg, double *seconds)
{
	const char *what = "open directory";
	char *data = NULL;
	unsigned long i;
	double started;
	size_t k;
	int dirfd = -1, r = 0;

	if ((data = malloc(cfg->bytes > 0 ? cfg->bytes : 1)) == NULL) {
		r = errno;
		what = "malloc";
		goto out;
	}
	/* Not all zeroes, so no filesystem can treat the data as a hole. */
	for (k = 0; k < cfg->bytes; k++)
		data[k] = (char)(k * 131 + 7);
	if ((dirfd = open(cfg->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		r = errno;
		goto out;
	}
	started = now_seconds();
	for (i = 0; i < cfg->files; i++) {
		if ((r = land_one_file(dirfd, i, data, cfg->bytes,
		    cfg->durability, &what)) != 0)
			goto out;
	}
	*seconds = now_seconds() - started;
 out:
	if (r != 0)
		fprintf(stderr, "floor: %s: %s: %s\n", cfg->dir, what,
		    strerror(r));
	if (dirfd != -1)
		close(dirfd);
	free(data);
	return r;
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: floor [-n files] [-s bytes] [-y full|data|none] dir\n");
}

int
main(int argc, char **argv)
{
	struct floor_config cfg;
	unsigned long bytes;
	double seconds = 0;
	int ch;

	cfg.files = 2000;
	cfg.bytes = 4096;
	cfg.durability = DURABILITY_FULL;
	while ((ch = getopt(argc, argv, "n:s:y:")) != -1) {
		switch (ch) {
		case 'n':
			if (parse_count(optarg, &cfg.files) != 0) {
				usage();
				return 1;
			}
			break;
		case 's':
			if (parse_count(optarg, &bytes) != 0) {
				usage();
				return 1;
			}
			cfg.bytes = bytes;
			break;
		case 'y':
			if (parse_durability(optarg, &cfg.durability) != 0) {
				usage();
				return 1;
			}
			break;
		default:
			usage();
			return 1;
		}
	}
	if (optind + 1 != argc) {
		usage();
		return 1;
	}
	cfg.dir = argv[optind];
	if (run_floor(&cfg, &seconds) != 0)
		return 1;
	printf("files=%lu bytes=%zu seconds=%.6f\n", cfg.files, cfg.bytes,
	    seconds);
	return 0;
}
