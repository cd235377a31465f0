/* A tiny TAP helper for the unit tests; see test_helper.h. */
#include "includes.h"

#include <sys/types.h>
#include <sys/stat.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_helper.h"

/* One test at a time; all of it resettable by test_start(). */
static struct {
	char name[256];
	int running;
	int failed;		/* assertions failed in the current test */
	int skipped;
	char skip_why[256];
	int any_failed;		/* over the whole run */
	int unfinished;		/* a test started while another ran */
	int filter_argc;
	char **filter_argv;
} state;

void
test_set_filter(int argc, char **argv)
{
	state.filter_argc = argc;
	state.filter_argv = argv;
}

int
test_wanted(const char *name)
{
	int i;

	if (state.filter_argc <= 0)
		return 1;
	for (i = 0; i < state.filter_argc; i++) {
		if (strstr(name, state.filter_argv[i]) != NULL)
			return 1;
	}
	return 0;
}

void
test_start(const char *name)
{
	if (state.running) {
		/* The previous test forgot TEST_DONE(): count it as failed
		 * rather than silently dropping it. */
		printf("not ok - %s: test not finished\n", state.name);
		state.any_failed = 1;
		state.unfinished = 1;
	}
	snprintf(state.name, sizeof(state.name), "%s", name);
	state.running = 1;
	state.failed = 0;
	state.skipped = 0;
	state.skip_why[0] = '\0';
	fflush(stdout);
}

void
test_done(void)
{
	if (!state.running) {
		printf("not ok - TEST_DONE without TEST_START (after %s)\n",
		    state.name);
		state.any_failed = 1;
		return;
	}
	if (state.failed == 0) {
		if (state.skipped)
			printf("ok - %s # SKIP %s\n", state.name,
			    state.skip_why);
		else
			printf("ok - %s\n", state.name);
	}
	state.running = 0;
	fflush(stdout);
}

void
test_skip_current(const char *why)
{
	state.skipped = 1;
	snprintf(state.skip_why, sizeof(state.skip_why), "%s", why);
}

void
test_skip(const char *name, const char *why)
{
	printf("ok - %s # SKIP %s\n", name, why);
	fflush(stdout);
}

const char *
test_name(void)
{
	return state.running ? state.name : "(no test)";
}

int
test_current_failed(void)
{
	return state.failed != 0;
}

int
test_exit_status(void)
{
	if (state.running) {
		printf("not ok - %s: test not finished\n", state.name);
		state.any_failed = 1;
		state.running = 0;
	}
	fflush(stdout);
	return state.any_failed ? 1 : 0;
}

static void
vnote(const char *fmt, va_list ap)
{
	char buf[2048];
	char *p, *line;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	/* Every line a TAP comment, so a multi-line message cannot forge a
	 * result line. */
	for (line = buf; line != NULL; line = p) {
		if ((p = strchr(line, '\n')) != NULL)
			*p++ = '\0';
		if (*line != '\0' || p != NULL)
			printf("# %s\n", line);
	}
	fflush(stdout);
}

void
test_note(const char *fmt, ...)
{
	va_list ap;

	if (getenv("TEST_VERBOSE") == NULL)
		return;
	va_start(ap, fmt);
	vnote(fmt, ap);
	va_end(ap);
}

void
test_diag(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vnote(fmt, ap);
	va_end(ap);
}

int
test_fail(const char *file, int line, const char *fmt, ...)
{
	char msg[2048], *p;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (p = msg; *p != '\0'; p++) {
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	}
	/* The first failure is the result line; the rest are diagnostics. */
	if (state.failed == 0)
		printf("not ok - %s: %s:%d: %s\n", test_name(), file, line,
		    msg);
	else
		printf("#   also %s:%d: %s\n", file, line, msg);
	state.failed++;
	state.any_failed = 1;
	fflush(stdout);
	return 0;
}

int
test_assert_int(const char *file, int line, const char *ea, const char *eb,
    const char *op, long long a, long long b)
{
	int holds;

	if (strcmp(op, "==") == 0)
		holds = a == b;
	else if (strcmp(op, "!=") == 0)
		holds = a != b;
	else if (strcmp(op, "<") == 0)
		holds = a < b;
	else if (strcmp(op, "<=") == 0)
		holds = a <= b;
	else if (strcmp(op, ">") == 0)
		holds = a > b;
	else
		holds = a >= b;
	if (holds)
		return 1;
	return test_fail(file, line, "%s %s %s (got %lld want %s%lld)",
	    ea, op, eb, a, strcmp(op, "==") == 0 ? "" : op, b);
}

/* Printable form of a possibly long or binary string for a message. */
static void
quote(char *dst, size_t len, const char *src)
{
	size_t i, o = 0;

	if (src == NULL) {
		snprintf(dst, len, "NULL");
		return;
	}
	if (len < 8) {
		dst[0] = '\0';
		return;
	}
	dst[o++] = '"';
	for (i = 0; src[i] != '\0' && o + 6 < len; i++) {
		unsigned char c = (unsigned char)src[i];

		if (isprint(c) && c != '"' && c != '\\')
			dst[o++] = (char)c;
		else
			o += (size_t)snprintf(dst + o, len - o, "\\x%02x", c);
	}
	if (src[i] != '\0') {
		dst[o++] = '.';
		dst[o++] = '.';
	}
	dst[o++] = '"';
	dst[o] = '\0';
}

int
test_assert_str(const char *file, int line, const char *ea, const char *eb,
    int want_equal, const char *a, const char *b)
{
	char qa[200], qb[200];
	int equal;

	if (a == NULL || b == NULL)
		equal = a == b;
	else
		equal = strcmp(a, b) == 0;
	if (equal == want_equal)
		return 1;
	quote(qa, sizeof(qa), a);
	quote(qb, sizeof(qb), b);
	return test_fail(file, line, "%s %s %s (got %s want %s%s)", ea,
	    want_equal ? "==" : "!=", eb, qa, want_equal ? "" : "not ", qb);
}

int
test_assert_mem(const char *file, int line, const char *ea, const char *eb,
    const void *a, const void *b, size_t len)
{
	const unsigned char *pa = a, *pb = b;
	size_t i;

	if (a == NULL || b == NULL)
		return test_fail(file, line, "%s == %s: NULL pointer", ea, eb);
	for (i = 0; i < len; i++) {
		if (pa[i] != pb[i])
			break;
	}
	if (i == len)
		return 1;
	return test_fail(file, line, "%s == %s over %zu bytes (first "
	    "difference at offset %zu: got 0x%02x want 0x%02x)", ea, eb, len,
	    i, pa[i], pb[i]);
}

int
test_assert_true(const char *file, int line, const char *expr, int value,
    int want)
{
	if (value == want)
		return 1;
	return test_fail(file, line, "%s (got %s want %s)", expr,
	    value ? "true" : "false", want ? "true" : "false");
}

/* ------------------------------------------------------------------ */
/* Files                                                               */

static char scratch_dir[PATH_MAX];

static int
rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		(void)rmdir(p);
	else
		(void)unlink(p);
	return 0;
}

void
rm_rf(const char *path)
{
	struct stat st;

	if (lstat(path, &st) != 0)
		return;
	/* A directory made read-only by a test must still go away. */
	if (S_ISDIR(st.st_mode))
		(void)chmod(path, 0755);
	(void)nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int
mkdir_p(const char *path, mode_t mode)
{
	char tmp[PATH_MAX], *p;

	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return ENAMETOOLONG;
	for (p = tmp + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, mode) != 0 && errno != EEXIST)
			return errno;
		*p = '/';
	}
	if (mkdir(tmp, mode) != 0 && errno != EEXIST)
		return errno;
	return 0;
}

void
join(char *out, size_t len, const char *dir, const char *name)
{
	if (snprintf(out, len, "%s/%s", dir, name) >= (int)len) {
		fprintf(stderr, "path too long: %s/%s\n", dir, name);
		abort();
	}
}

/* A fresh, empty scratch directory `name` (mode 0755). */
int
fresh_dir(const char *name, char *out, size_t len)
{
	join(out, len, scratch_dir, name);
	rm_rf(out);
	if (mkdir(out, 0755) != 0)
		return errno;
	return chmod(out, 0755) == 0 ? 0 : errno;
}

int
write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? errno : EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Create or replace `path` in place with exactly `data`, mode `mode`. */
int
put_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd, r;

	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode)) < 0)
		return errno;
	r = write_all(fd, data, len);
	if (r == 0 && fchmod(fd, mode) != 0)
		r = errno;
	if (close(fd) != 0 && r == 0)
		r = errno;
	return r;
}

int
put_str(const char *path, const char *s)
{
	return put_file(path, s, strlen(s), 0644);
}

/* Whole content of `path` (malloc'd, NUL-terminated for convenience). */
int
get_file(const char *path, char **data, size_t *len)
{
	struct stat st;
	char *buf = NULL;
	size_t off = 0;
	ssize_t n;
	int fd, r = 0;

	*data = NULL;
	*len = 0;
	if ((fd = open(path, O_RDONLY)) < 0)
		return errno;
	if (fstat(fd, &st) != 0) {
		r = errno;
		goto out;
	}
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
		r = ENOMEM;
		goto out;
	}
	while (off < (size_t)st.st_size) {
		n = read(fd, buf + off, (size_t)st.st_size - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = errno;
			goto out;
		}
		if (n == 0)
			break;
		off += (size_t)n;
	}
	buf[off] = '\0';
	*data = buf;
	*len = off;
	buf = NULL;
 out:
	free(buf);
	close(fd);
	return r;
}

/* Deterministic data, different for each seed. */
void
fill_pattern(char *buf, size_t len, unsigned int seed)
{
	size_t i;
	unsigned int x = seed * 2654435761u + 12345u;

	for (i = 0; i < len; i++) {
		if ((i & 3) == 0)
			x = x * 1103515245u + 12345u;
		buf[i] = (char)(x >> (8 * (i & 3)));
	}
}

char *
pattern(size_t len, unsigned int seed)
{
	char *buf = malloc(len ? len : 1);

	if (buf == NULL) {
		fprintf(stderr, "out of memory\n");
		abort();
	}
	fill_pattern(buf, len, seed);
	return buf;
}

int
list_dir(const char *dir, struct listing *l)
{
	struct dirent *de;
	DIR *d;

	l->n = 0;
	if ((d = opendir(dir)) == NULL)
		return errno;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (l->n < MAX_ENTRIES)
			snprintf(l->name[l->n], sizeof(l->name[0]), "%s",
			    de->d_name);
		l->n++;
	}
	closedir(d);
	return 0;
}

static int
has_name(const char *const *names, const char *name)
{
	for (; *names != NULL; names++) {
		if (strcmp(*names, name) == 0)
			return 1;
	}
	return 0;
}

/* `dir` holds exactly `names` (NULL-terminated): no debris, nothing
 * missing. */
int
check_entries(const char *file, int line, const char *dir,
    const char *const *names)
{
	struct listing l;
	char have[1024] = "";
	int i, want = 0, ok = 1, r;

	if ((r = list_dir(dir, &l)) != 0)
		return test_fail(file, line, "opendir %s: %s", dir,
		    strerror(r));
	while (names[want] != NULL)
		want++;
	for (i = 0; i < l.n && i < MAX_ENTRIES; i++) {
		if (!has_name(names, l.name[i]))
			ok = 0;
		if (strlen(have) + strlen(l.name[i]) + 3 < sizeof(have)) {
			strcat(have, have[0] ? " " : "");
			strcat(have, l.name[i]);
		}
	}
	if (l.n != want)
		ok = 0;
	if (ok)
		return 1;
	return test_fail(file, line, "directory %s holds [%s] (%d entries), "
	    "want %d listed entries", dir, have, l.n, want);
}

int
check_content(const char *file, int line, const char *path,
    const void *want, size_t wantlen)
{
	char *got = NULL;
	size_t len, i;
	int r;

	if ((r = get_file(path, &got, &len)) != 0)
		return test_fail(file, line, "read %s: %s (want %zu bytes)",
		    path, strerror(r), wantlen);
	if (len != wantlen) {
		test_fail(file, line, "%s: size %zu, want %zu", path, len,
		    wantlen);
		free(got);
		return 0;
	}
	for (i = 0; i < len; i++) {
		if (got[i] != ((const char *)want)[i])
			break;
	}
	free(got);
	if (i == len)
		return 1;
	return test_fail(file, line, "%s: content differs at offset %zu",
	    path, i);
}

int
check_absent(const char *file, int line, const char *path)
{
	struct stat st;

	if (lstat(path, &st) != 0 && errno == ENOENT)
		return 1;
	return test_fail(file, line, "%s exists (size %lld), want absent",
	    path, (long long)st.st_size);
}

int
is_root(void)
{
	return geteuid() == 0;
}

int
test_scratch_setup(char *out, size_t len)
{
	const char *obj = getenv("OBJ");
	char base[PATH_MAX];
	int r;

	if (snprintf(base, sizeof(base), "%s/regress/work/unit",
	    obj != NULL && *obj != '\0' ? obj : ".") >= (int)sizeof(base))
		return ENAMETOOLONG;
	if ((r = mkdir_p(base, 0755)) != 0)
		return r;
	(void)chmod(base, 0755);
	join(scratch_dir, sizeof(scratch_dir), base, "run.XXXXXX");
	if (mkdtemp(scratch_dir) == NULL)
		return errno;
	/* Absolute, so it compares with what /proc reports. */
	if (realpath(scratch_dir, base) == NULL)
		return errno;
	snprintf(scratch_dir, sizeof(scratch_dir), "%s", base);
	if (chmod(scratch_dir, 0755) != 0)
		return errno;
	if (snprintf(out, len, "%s", scratch_dir) >= (int)len)
		return ENAMETOOLONG;
	return 0;
}

void
test_scratch_done(void)
{
	if (scratch_dir[0] == '\0')
		return;
	if (getenv("TEST_KEEP") == NULL)
		rm_rf(scratch_dir);
	else
		test_diag("kept %s", scratch_dir);
}
