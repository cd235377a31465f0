/*
 * Unit tests of the staging module (atomic-upload.h is the contract).
 *
 *	test_atomic_upload [NAME-SUBSTRING...]	run the tests (TAP)
 *	test_atomic_upload -x stage [opts] PATH	one staged upload, for the
 *						shell tests (t-unit-privs.sh,
 *						t-faults.sh); see tool_usage()
 *	test_atomic_upload -x sweep DIR		stage_sweep(DIR)
 *
 * Scratch directories live under $OBJ/regress/work/unit (or
 * ./regress/work/unit) in a mkdtemp directory removed at the end, unless
 * TEST_KEEP is set.  Some tests need root (chown, mount); they skip
 * without it.
 */
#include "includes.h"

#include <sys/types.h>
#include <sys/mount.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#ifdef HAVE_SYS_XATTR_H
# include <sys/xattr.h>
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "atomic-upload.h"
#include "test_helper.h"

#ifndef NAME_MAX
# define NAME_MAX 255
#endif

#define WCT	(O_WRONLY | O_CREAT | O_TRUNC)
#define KiB	1024
#define MiB	(1024 * 1024)

/* This run's scratch directory; everything the tests create is below. */
static char scratch[PATH_MAX];
static int tmpfile_supported;	/* O_TMPFILE works in the scratch fs */

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */

static const struct {
	int e;
	const char *name;
} errno_names[] = {
	{ 0, "OK" }, { EPERM, "EPERM" }, { ENOENT, "ENOENT" },
	{ EINTR, "EINTR" }, { EIO, "EIO" }, { EBADF, "EBADF" },
	{ ENOMEM, "ENOMEM" }, { EACCES, "EACCES" }, { EBUSY, "EBUSY" },
	{ EEXIST, "EEXIST" }, { EXDEV, "EXDEV" }, { ENOTDIR, "ENOTDIR" },
	{ EISDIR, "EISDIR" }, { EINVAL, "EINVAL" }, { ENFILE, "ENFILE" },
	{ EMFILE, "EMFILE" }, { ETXTBSY, "ETXTBSY" }, { EFBIG, "EFBIG" },
	{ ENOSPC, "ENOSPC" }, { EROFS, "EROFS" }, { EMLINK, "EMLINK" },
	{ ENAMETOOLONG, "ENAMETOOLONG" }, { ENOSYS, "ENOSYS" },
	{ ELOOP, "ELOOP" }, { EOPNOTSUPP, "EOPNOTSUPP" },
	{ EDQUOT, "EDQUOT" }, { ECANCELED, "ECANCELED" },
	{ EAGAIN, "EAGAIN" },
};

static const char *
errname(int e)
{
	static char buf[32];
	size_t i;

	for (i = 0; i < sizeof(errno_names) / sizeof(errno_names[0]); i++) {
		if (errno_names[i].e == e)
			return errno_names[i].name;
	}
	snprintf(buf, sizeof(buf), "E%d", e);
	return buf;
}

static int
errno_by_name(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(errno_names) / sizeof(errno_names[0]); i++) {
		if (strcmp(errno_names[i].name, name) == 0)
			return errno_names[i].e;
	}
	return -1;
}

/* Write `len` bytes through stage_write in 64 KiB pieces from `off`. */
/* Write it all at `off`, or appended when `off` is negative. */
static int
stage_put_at(struct staged_file *sf, const void *data, size_t len, off_t off)
{
	const char *p = data;
	size_t done, n;
	int r;

	for (done = 0; done < len; done += n) {
		n = len - done < 64 * KiB ? len - done : 64 * KiB;
		r = off < 0 ? stage_append(sf, p + done, n) :
		    stage_write(sf, p + done, n, off + (off_t)done);
		if (r != 0)
			return r;
	}
	return 0;
}

static int
stage_put(struct staged_file *sf, const void *data, size_t len)
{
	return stage_put_at(sf, data, len, 0);
}

/* The one entry of `dir` for which stage_is_temp_name() holds; returns
 * how many such entries there are. */
static int
find_temp(const char *dir, char *name, size_t len)
{
	struct listing l;
	int i, n = 0;

	if (name != NULL && len > 0)
		name[0] = '\0';
	if (list_dir(dir, &l) != 0)
		return -1;
	for (i = 0; i < l.n && i < MAX_ENTRIES; i++) {
		if (!stage_is_temp_name(l.name[i]))
			continue;
		if (n++ == 0 && name != NULL)
			snprintf(name, len, "%s", l.name[i]);
	}
	return n;
}

static void
opts_init(struct stage_opts *o, int no_tmpfile)
{
	memset(o, 0, sizeof(*o));
	o->no_tmpfile = no_tmpfile;
	o->sync = STAGE_SYNC_NONE;	/* speed; durability tested apart */
}

/* The method stage_open() should pick for plain staging. */
static enum stage_method
expected_method(int no_tmpfile)
{
	return (no_tmpfile || !tmpfile_supported) ? STAGE_NAMED :
	    STAGE_TMPFILE;
}

static const char *
variant(int no_tmpfile)
{
	return no_tmpfile ? "named" : "tmpfile";
}

static int
probe_tmpfile(const char *dir)
{
#ifdef O_TMPFILE
	int fd = open(dir, O_TMPFILE | O_RDWR, 0600);

	if (fd >= 0) {
		close(fd);
		return 1;
	}
#endif
	return 0;
}

/* Where the staged data lives, from /proc (O_TMPFILE: "DIR/#ino
 * (deleted)"). */
static int
fd_path(int fd, char *out, size_t len)
{
	char proc[64];
	ssize_t n;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if ((n = readlink(proc, out, len - 1)) < 0) {
		out[0] = '\0';
		return errno;
	}
	out[n] = '\0';
	return 0;
}

static int
starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ------------------------------------------------------------------ */
/* Pure functions                                                      */

static void
test_parse_sync(void)
{
	enum stage_sync s = STAGE_SYNC_NONE;
	enum stage_sync all[] = { STAGE_SYNC_FULL, STAGE_SYNC_DATA,
	    STAGE_SYNC_NONE };
	size_t i;

	TEST_START("stage_parse_sync / stage_sync_name / stage_method_name");
	ASSERT_INT_EQ(stage_parse_sync("full", &s), 0);
	ASSERT_INT_EQ(s, STAGE_SYNC_FULL);
	ASSERT_INT_EQ(stage_parse_sync("DATA", &s), 0);
	ASSERT_INT_EQ(s, STAGE_SYNC_DATA);
	ASSERT_INT_EQ(stage_parse_sync("None", &s), 0);
	ASSERT_INT_EQ(s, STAGE_SYNC_NONE);
	ASSERT_INT_EQ(stage_parse_sync("FuLl", &s), 0);
	ASSERT_INT_EQ(s, STAGE_SYNC_FULL);
	s = STAGE_SYNC_DATA;
	ASSERT_INT_NE(stage_parse_sync("fulll", &s), 0);
	ASSERT_INT_NE(stage_parse_sync("", &s), 0);
	ASSERT_INT_NE(stage_parse_sync(" full", &s), 0);
	ASSERT_INT_NE(stage_parse_sync("full ", &s), 0);
	ASSERT_INT_NE(stage_parse_sync("yes", &s), 0);
	ASSERT_INT_NE(stage_parse_sync(NULL, &s), 0);
	ASSERT_INT_EQ(s, STAGE_SYNC_DATA);	/* untouched on error */
	for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		ASSERT_INT_EQ(stage_parse_sync(stage_sync_name(all[i]), &s), 0);
		ASSERT_INT_EQ(s, all[i]);
	}
	ASSERT_STR_EQ(stage_sync_name(STAGE_SYNC_FULL), "full");
	ASSERT_STR_EQ(stage_sync_name(STAGE_SYNC_DATA), "data");
	ASSERT_STR_EQ(stage_sync_name(STAGE_SYNC_NONE), "none");
	/* Method names appear in log lines: distinct and non-empty. */
	ASSERT_TRUE(stage_method_name(STAGE_TMPFILE) != NULL &&
	    stage_method_name(STAGE_TMPFILE)[0] != '\0');
	ASSERT_TRUE(stage_method_name(STAGE_NAMED) != NULL &&
	    stage_method_name(STAGE_NAMED)[0] != '\0');
	ASSERT_TRUE(stage_method_name(STAGE_DIRECT) != NULL &&
	    stage_method_name(STAGE_DIRECT)[0] != '\0');
	ASSERT_STR_NE(stage_method_name(STAGE_TMPFILE),
	    stage_method_name(STAGE_NAMED));
	ASSERT_STR_NE(stage_method_name(STAGE_TMPFILE),
	    stage_method_name(STAGE_DIRECT));
	ASSERT_STR_NE(stage_method_name(STAGE_NAMED),
	    stage_method_name(STAGE_DIRECT));
	TEST_DONE();
}

static void
expect_expand(const char *file, int line, const char *tmpl,
    const char *want)
{
	char *out = NULL;
	int r;

	r = stage_expand_dir(tmpl, "alice", "/home/alice", 1001, &out);
	if (want == NULL) {
		if (r == 0)
			test_fail(file, line, "stage_expand_dir(\"%s\") "
			    "succeeded with \"%s\", want an error", tmpl,
			    out != NULL ? out : "(null)");
	} else if (r != 0) {
		test_fail(file, line, "stage_expand_dir(\"%s\") = %s, want "
		    "\"%s\"", tmpl, errname(r), want);
	} else if (out == NULL || strcmp(out, want) != 0) {
		test_fail(file, line, "stage_expand_dir(\"%s\") = \"%s\", "
		    "want \"%s\"", tmpl, out != NULL ? out : "(null)", want);
	}
	free(out);
}
#define EXPECT_EXPAND(tmpl, want) expect_expand(__FILE__, __LINE__, tmpl, want)

static void
test_expand_dir(void)
{
	TEST_START("stage_expand_dir: %u %d %U %%, unknown escapes refused");
	EXPECT_EXPAND("/srv/%u/incoming", "/srv/alice/incoming");
	EXPECT_EXPAND("%d/.staging", "/home/alice/.staging");
	EXPECT_EXPAND("/var/tmp/%U", "/var/tmp/1001");
	EXPECT_EXPAND("/data/100%%", "/data/100%");
	EXPECT_EXPAND("%u-%U-%d-%%%u", "alice-1001-/home/alice-%alice");
	EXPECT_EXPAND("/plain/dir", "/plain/dir");
	EXPECT_EXPAND("%%u", "%u");
	EXPECT_EXPAND("/x/%x", NULL);
	EXPECT_EXPAND("/x/%h", NULL);
	EXPECT_EXPAND("/x/%", NULL);
	EXPECT_EXPAND("%", NULL);
	TEST_DONE();
}

static void
test_temp_name_shape(void)
{
	TEST_START("stage_is_temp_name rejects ordinary names");
	ASSERT_FALSE(stage_is_temp_name("report.csv"));
	ASSERT_FALSE(stage_is_temp_name(""));
	ASSERT_FALSE(stage_is_temp_name("."));
	ASSERT_FALSE(stage_is_temp_name(".."));
	ASSERT_FALSE(stage_is_temp_name(".report.csv"));
	ASSERT_FALSE(stage_is_temp_name("report.csv.tmp"));
	ASSERT_FALSE(stage_is_temp_name(".bashrc"));
	ASSERT_FALSE(stage_is_temp_name(NULL));
	TEST_DONE();
}

/* ------------------------------------------------------------------ */
/* Staging a new file                                                  */

static void
test_new_file(int no_tmpfile)
{
	char name[128], dir[PATH_MAX], dest[PATH_MAX], temp[NAME_MAX + 1];
	char tpath[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	struct stage_report rep;
	struct stat st;
	size_t len = 300 * KiB;
	char *data = pattern(len, 1);
	int r;

	snprintf(name, sizeof(name), "new file staged (%s): destination "
	    "absent until commit, no visible entry", variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("new", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "report.csv");
	opts_init(&o, no_tmpfile);
	r = stage_open(&o, dest, WCT, 0644, &sf);
	if (!ASSERT_INT_EQ(r, 0) || !ASSERT_PTR_NE(sf, NULL))
		goto out;
	ASSERT_INT_EQ(stage_method(sf), expected_method(no_tmpfile));
	ASSERT_PTR_EQ(stage_note(sf), NULL);
	ASSERT_INT_EQ(stage_count(), 1);
	ASSERT_INT_GE(stage_fd(sf), 0);
	ASSERT_INT_EQ(stage_put(sf, data, len), 0);
	CHECK_ABSENT(dest);
	if (stage_method(sf) == STAGE_TMPFILE) {
		CHECK_ENTRIES(dir, NULL);
		ASSERT_INT_EQ(fstat(stage_fd(sf), &st), 0);
		ASSERT_INT_EQ(st.st_nlink, 0);
	} else {
		/* Only a hidden private directory, never a name a script
		 * matches; the file in it has the mode open(2) gives. */
		ASSERT_INT_EQ(find_temp(dir, temp, sizeof(temp)), 1);
		CHECK_ENTRIES(dir, temp);
		ASSERT_INT_EQ(temp[0], '.');
		ASSERT_TRUE(strlen(temp) <= NAME_MAX);
		ASSERT_TRUE(strstr(temp, "report") == NULL);
		join(tpath, sizeof(tpath), dir, temp);
		if (ASSERT_INT_EQ(lstat(tpath, &st), 0)) {
			ASSERT_TRUE(S_ISDIR(st.st_mode));
			ASSERT_INT_EQ(st.st_mode & 07777, 0700);
		}
		join(dest, sizeof(dest), tpath, "upload");
		if (ASSERT_INT_EQ(lstat(dest, &st), 0)) {
			ASSERT_TRUE(S_ISREG(st.st_mode));
			ASSERT_INT_EQ(st.st_mode & 07777, 0644);
			ASSERT_INT_EQ(st.st_size, len);
		}
		join(dest, sizeof(dest), dir, "report.csv");
	}
	memset(&rep, 0xa5, sizeof(rep));
	r = stage_commit(sf, &rep);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	CHECK_CONTENT(dest, data, len);
	CHECK_ENTRIES(dir, "report.csv");
	ASSERT_INT_EQ(stage_count(), 0);
	ASSERT_STR_EQ(rep.path, dest);
	ASSERT_INT_EQ(rep.bytes, len);
	ASSERT_INT_EQ(rep.method, expected_method(no_tmpfile));
	ASSERT_INT_EQ(rep.error, 0);
	ASSERT_STR_EQ(rep.reason, "");
	ASSERT_TRUE(rep.seconds >= 0.0 && rep.seconds < 60.0);
	if (ASSERT_INT_EQ(stat(dest, &st), 0))
		ASSERT_INT_EQ(st.st_mode & 07777, 0644);
 out:
	if (sf != NULL)
		stage_abort(sf, "test cleanup", NULL);
	free(data);
	TEST_DONE();
}

/* A 255-byte destination name still gets a temp name within NAME_MAX,
 * both for a new file and for the replace of an existing one. */
static void
test_long_name(int no_tmpfile)
{
	char name[128], dir[PATH_MAX], dest[PATH_MAX], base[NAME_MAX + 1];
	char temp[NAME_MAX + 1];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	size_t len = 10 * KiB;
	char *data = pattern(len, 2), *data2 = pattern(len, 3);
	int r;

	snprintf(name, sizeof(name), "255-byte destination name (%s)",
	    variant(no_tmpfile));
	TEST_START(name);
	memset(base, 'n', NAME_MAX);
	memcpy(base + NAME_MAX - 4, ".csv", 4);
	base[NAME_MAX] = '\0';
	if (!ASSERT_INT_EQ(fresh_dir("longname", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, base);
	opts_init(&o, no_tmpfile);
	r = stage_open(&o, dest, WCT, 0644, &sf);
	if (!ASSERT_INT_EQ(r, 0))
		goto out;
	ASSERT_INT_EQ(stage_method(sf), expected_method(no_tmpfile));
	ASSERT_INT_EQ(stage_put(sf, data, len), 0);
	if (stage_method(sf) == STAGE_NAMED) {
		ASSERT_INT_EQ(find_temp(dir, temp, sizeof(temp)), 1);
		ASSERT_TRUE(strlen(temp) <= NAME_MAX);
		ASSERT_TRUE(stage_is_temp_name(temp));
	}
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	CHECK_CONTENT(dest, data, len);
	CHECK_ENTRIES(dir, base);

	/* Replace: an O_TMPFILE needs a temporary name here too. */
	r = stage_open(&o, dest, WCT, 0644, &sf);
	if (!ASSERT_INT_EQ(r, 0))
		goto out;
	ASSERT_INT_EQ(stage_put(sf, data2, len), 0);
	CHECK_CONTENT(dest, data, len);
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	CHECK_CONTENT(dest, data2, len);
	CHECK_ENTRIES(dir, base);
 out:
	if (sf != NULL)
		stage_abort(sf, "test cleanup", NULL);
	free(data);
	free(data2);
	TEST_DONE();
}

/* Staging keeps the old content visible during an O_TRUNC upload. */
static void
test_trunc_keeps_old(int no_tmpfile)
{
	char name[128], dir[PATH_MAX], dest[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	size_t len = 200 * KiB;
	char *data = pattern(len, 4);
	int r;

	snprintf(name, sizeof(name), "O_TRUNC of an existing file keeps the "
	    "old content until commit (%s)", variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("trunc", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "in.dat");
	ASSERT_INT_EQ(put_str(dest, "previous content\n"), 0);
	opts_init(&o, no_tmpfile);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, WCT, 0644, &sf), 0))
		goto out;
	CHECK_STR(dest, "previous content\n");
	ASSERT_INT_EQ(stage_put(sf, data, len / 2), 0);
	CHECK_STR(dest, "previous content\n");
	ASSERT_INT_EQ(stage_put_at(sf, data + len / 2, len - len / 2,
	    (off_t)(len / 2)), 0);
	CHECK_STR(dest, "previous content\n");
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	CHECK_CONTENT(dest, data, len);
	CHECK_ENTRIES(dir, "in.dat");
 out:
	if (sf != NULL)
		stage_abort(sf, "test cleanup", NULL);
	free(data);
	TEST_DONE();
}

/* Writes out of order and with holes, reads back through the handle. */
static void
test_offsets_and_readback(int no_tmpfile)
{
	char name[128], dir[PATH_MAX], dest[PATH_MAX], buf[16];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	size_t len = MiB + 3;
	char *want = calloc(1, len);
	int r;

	snprintf(name, sizeof(name), "writes at offsets, holes, reads "
	    "through the handle (%s)", variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_PTR_NE(want, NULL) ||
	    !ASSERT_INT_EQ(fresh_dir("offsets", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "sparse.bin");
	opts_init(&o, no_tmpfile);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, O_RDWR | O_CREAT | O_TRUNC,
	    0644, &sf), 0))
		goto out;
	memcpy(want + MiB, "end", 3);
	memcpy(want, "start", 5);
	memcpy(want + 4096, "middle", 6);
	ASSERT_INT_EQ(stage_write(sf, "end", 3, MiB), 0);
	ASSERT_INT_EQ(stage_write(sf, "start", 5, 0), 0);
	ASSERT_INT_EQ(stage_write(sf, "middle", 6, 4096), 0);
	ASSERT_INT_EQ(stage_write(sf, "", 0, 10), 0);
	/* DESIGN 7: reads through a write handle see the staged data. */
	ASSERT_INT_EQ(pread(stage_fd(sf), buf, 6, 4096), 6);
	ASSERT_MEM_EQ(buf, "middle", 6);
	ASSERT_INT_EQ(pread(stage_fd(sf), buf, 8, MiB - 2), 5);
	ASSERT_MEM_EQ(buf, "\0\0end", 5);
	CHECK_ABSENT(dest);
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	CHECK_CONTENT(dest, want, len);
 out:
	if (sf != NULL)
		stage_abort(sf, "test cleanup", NULL);
	free(want);
	TEST_DONE();
}

/* ------------------------------------------------------------------ */
/* Abort                                                               */

static void
test_abort(int no_tmpfile)
{
	char name[128], dir[PATH_MAX], dnew[PATH_MAX], dold[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	struct stage_report rep;
	size_t len = 100 * KiB;
	char *data = pattern(len, 5);

	snprintf(name, sizeof(name), "stage_abort leaves the destination as "
	    "it was and no debris (%s)", variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("abort", dir, sizeof(dir)), 0))
		goto out;
	join(dnew, sizeof(dnew), dir, "new.dat");
	join(dold, sizeof(dold), dir, "old.dat");
	ASSERT_INT_EQ(put_str(dold, "old content"), 0);
	opts_init(&o, no_tmpfile);

	if (!ASSERT_INT_EQ(stage_open(&o, dnew, WCT, 0644, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_put(sf, data, len), 0);
	memset(&rep, 0xa5, sizeof(rep));
	stage_abort(sf, "client went away", &rep);
	sf = NULL;
	CHECK_ABSENT(dnew);
	CHECK_ENTRIES(dir, "old.dat");
	ASSERT_STR_EQ(rep.path, dnew);
	ASSERT_TRUE(strstr(rep.reason, "client went away") != NULL);
	ASSERT_INT_EQ(rep.bytes, len);
	ASSERT_INT_EQ(rep.error, 0);
	ASSERT_INT_EQ(rep.method, expected_method(no_tmpfile));

	if (!ASSERT_INT_EQ(stage_open(&o, dold, WCT, 0644, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_put(sf, data, len), 0);
	stage_abort(sf, NULL, NULL);	/* no reason, no report: no crash */
	sf = NULL;
	CHECK_STR(dold, "old content");
	CHECK_ENTRIES(dir, "old.dat");

	/* Copy-on-modify staging aborted: the original is unchanged. */
	if (!ASSERT_INT_EQ(stage_open(&o, dold, O_WRONLY, 0, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_write(sf, "NEW", 3, 0), 0);
	stage_abort(sf, "test", NULL);
	sf = NULL;
	CHECK_STR(dold, "old content");
	CHECK_ENTRIES(dir, "old.dat");
	ASSERT_INT_EQ(stage_count(), 0);
 out:
	if (sf != NULL)
		stage_abort(sf, "test cleanup", NULL);
	free(data);
	TEST_DONE();
}

/*
 * A process that stages `dest` in a child: it writes `len` bytes of
 * pattern `seed`, reports the result of stage_open+write on `ready`, then
 * waits for one byte on `go`: 'c' commits, 'a' aborts.
 */
struct stager {
	pid_t pid;
	int ready;		/* read end */
	int go;			/* write end */
};

static int
start_stager(const struct stage_opts *o, const char *dest, int oflags,
    size_t len, unsigned int seed, struct stager *st)
{
	int rp[2], gp[2], r;
	unsigned char res;
	char c;

	st->pid = -1;
	st->ready = st->go = -1;
	if (pipe(rp) != 0)
		return errno;
	if (pipe(gp) != 0) {
		r = errno;
		close(rp[0]);
		close(rp[1]);
		return r;
	}
	fflush(stdout);
	if ((st->pid = fork()) == 0) {
		struct staged_file *sf = NULL;
		char *data = pattern(len, seed);

		close(rp[0]);
		close(gp[1]);
		r = stage_open(o, dest, oflags, 0644, &sf);
		if (r == 0)
			r = stage_put(sf, data, len);
		res = (unsigned char)r;
		if (write(rp[1], &res, 1) != 1 || r != 0)
			_exit(1);
		if (read(gp[0], &c, 1) != 1)
			_exit(3);	/* leaves the staging as a crash would */
		if (c == 'c')
			_exit(stage_commit(sf, NULL) == 0 ? 0 : 2);
		stage_abort(sf, "told to", NULL);
		_exit(0);
	}
	r = st->pid < 0 ? errno : 0;
	close(rp[1]);
	close(gp[0]);
	st->ready = rp[0];
	st->go = gp[1];
	if (r != 0)
		return r;
	if (read(st->ready, &res, 1) != 1)
		return EPIPE;
	return res;
}

static int
finish_stager(struct stager *st, char what)
{
	int status = -1;

	if (st->go >= 0) {
		if (what != 0 && write(st->go, &what, 1) != 1)
			status = -2;
		close(st->go);
		st->go = -1;
	}
	if (st->ready >= 0) {
		close(st->ready);
		st->ready = -1;
	}
	if (st->pid > 0) {
		if (waitpid(st->pid, &status, 0) != st->pid)
			status = -1;
		st->pid = -1;
	}
	return status;
}

static void
kill_stager(struct stager *st)
{
	if (st->pid > 0)
		kill(st->pid, SIGKILL);
	(void)finish_stager(st, 0);
}

static void
test_killed_child(int no_tmpfile)
{
	char name[160], dir[PATH_MAX], dold[PATH_MAX], dnew[PATH_MAX];
	struct stager a = { -1, -1, -1 }, b = { -1, -1, -1 };
	struct stage_opts o;
	unsigned int removed = 99;

	snprintf(name, sizeof(name), "SIGKILL mid-staging leaves the "
	    "destination untouched; stage_sweep removes the rest (%s)",
	    variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("killed", dir, sizeof(dir)), 0))
		goto out;
	join(dold, sizeof(dold), dir, "old.dat");
	join(dnew, sizeof(dnew), dir, "new.dat");
	ASSERT_INT_EQ(put_str(dold, "old content"), 0);
	opts_init(&o, no_tmpfile);
	if (!ASSERT_INT_EQ(start_stager(&o, dold, WCT, MiB, 6, &a), 0) ||
	    !ASSERT_INT_EQ(start_stager(&o, dnew, WCT, MiB, 7, &b), 0))
		goto out;
	kill_stager(&a);
	kill_stager(&b);
	CHECK_STR(dold, "old content");
	CHECK_ABSENT(dnew);
	if (no_tmpfile || !tmpfile_supported) {
		/* Two stale temporaries, nothing a script would match. */
		ASSERT_INT_EQ(find_temp(dir, NULL, 0), 2);
	} else {
		CHECK_ENTRIES(dir, "old.dat");
	}
	ASSERT_INT_EQ(stage_sweep(dir, 0, &removed), 0);
	ASSERT_INT_EQ(removed, (no_tmpfile || !tmpfile_supported) ? 2 : 0);
	CHECK_ENTRIES(dir, "old.dat");
	CHECK_STR(dold, "old content");
	ASSERT_INT_EQ(stage_sweep(dir, 0, NULL), 0);
 out:
	kill_stager(&a);
	kill_stager(&b);
	TEST_DONE();
}

/* A live staging in another process holds its lock: sweep leaves it. */
static void
test_sweep_spares_live(void)
{
	char dir[PATH_MAX], dest[PATH_MAX], temp[NAME_MAX + 1];
	struct stager a = { -1, -1, -1 };
	struct stage_opts o;
	unsigned int removed = 99;
	char *data = pattern(MiB, 8);
	int status;

	TEST_START("stage_sweep spares a live named staging of another "
	    "process");
	if (!ASSERT_INT_EQ(fresh_dir("sweep-live", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "live.dat");
	opts_init(&o, 1);
	if (!ASSERT_INT_EQ(start_stager(&o, dest, WCT, MiB, 8, &a), 0))
		goto out;
	ASSERT_INT_EQ(find_temp(dir, temp, sizeof(temp)), 1);
	ASSERT_INT_EQ(stage_sweep(dir, 0, &removed), 0);
	ASSERT_INT_EQ(removed, 0);
	CHECK_ENTRIES(dir, temp);
	status = finish_stager(&a, 'c');
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_CONTENT(dest, data, MiB);
	CHECK_ENTRIES(dir, "live.dat");
 out:
	kill_stager(&a);
	free(data);
	TEST_DONE();
}

/*
 * DESIGN 11: stale temporaries of a crashed server are removed.  A root
 * server replacing another user's file must leave a temporary that root's
 * sweep still recognises as its own.
 */
static void
test_sweep_after_root_replace(void)
{
	char dir[PATH_MAX], dest[PATH_MAX];
	struct stager a = { -1, -1, -1 };
	struct stage_opts o;
	unsigned int removed = 99;

	TEST_START("stage_sweep (root) removes the stale temporary of a "
	    "killed replace of another user's file");
	if (!is_root()) {
		TEST_SKIP("needs root");
		goto out;
	}
	if (!ASSERT_INT_EQ(fresh_dir("sweep-owner", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "theirs.dat");
	ASSERT_INT_EQ(put_str(dest, "their content"), 0);
	ASSERT_INT_EQ(chown(dest, 1234, 1234), 0);
	opts_init(&o, 1);
	if (!ASSERT_INT_EQ(start_stager(&o, dest, WCT, MiB, 17, &a), 0))
		goto out;
	kill_stager(&a);
	CHECK_STR(dest, "their content");
	ASSERT_INT_EQ(find_temp(dir, NULL, 0), 1);
	ASSERT_INT_EQ(stage_sweep(dir, 0, &removed), 0);
	ASSERT_INT_EQ(removed, 1);
	CHECK_ENTRIES(dir, "theirs.dat");
 out:
	kill_stager(&a);
	TEST_DONE();
}

/* Sweep removes only our stale regular files, never what only looks
 * like one. */
static void
test_sweep_is_careful(void)
{
	char dir[PATH_MAX], other[PATH_MAX], dest[PATH_MAX], victim[PATH_MAX];
	char temp[NAME_MAX + 1], tpath[PATH_MAX], plain[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	unsigned int removed = 99;

	TEST_START("stage_sweep ignores symlinks and ordinary names, removes "
	    "stale private directories and (root) others' stale temporaries");
	if (!ASSERT_INT_EQ(fresh_dir("sweep-careful", dir, sizeof(dir)), 0) ||
	    !ASSERT_INT_EQ(fresh_dir("sweep-other", other, sizeof(other)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "x.dat");
	join(victim, sizeof(victim), other, "victim");
	ASSERT_INT_EQ(put_str(victim, "precious"), 0);
	/* Learn a real temporary name, then reuse it for impostors. */
	opts_init(&o, 1);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, WCT, 0644, &sf), 0))
		goto out;
	ASSERT_INT_EQ(find_temp(dir, temp, sizeof(temp)), 1);
	stage_abort(sf, "test", NULL);
	sf = NULL;
	if (!ASSERT_INT_NE(temp[0], '\0'))
		goto out;
	join(tpath, sizeof(tpath), dir, temp);
	join(plain, sizeof(plain), dir, ".plain.hidden");

	ASSERT_INT_EQ(symlink(victim, tpath), 0);
	ASSERT_INT_EQ(put_str(plain, "keep me"), 0);
	ASSERT_INT_EQ(stage_sweep(dir, 0, &removed), 0);
	ASSERT_INT_EQ(removed, 0);
	CHECK_ENTRIES(dir, temp, ".plain.hidden");
	CHECK_STR(victim, "precious");
	ASSERT_INT_EQ(unlink(tpath), 0);

	/* A private directory nobody holds: stale, emptied and removed;
	 * a symlink in it is removed, not followed. */
	ASSERT_INT_EQ(mkdir(tpath, 0700), 0);
	join(victim, sizeof(victim), tpath, "upload");
	ASSERT_INT_EQ(put_str(victim, "stale data"), 0);
	join(victim, sizeof(victim), tpath, "link");
	join(plain, sizeof(plain), other, "victim");
	ASSERT_INT_EQ(symlink(plain, victim), 0);
	ASSERT_INT_EQ(stage_sweep(dir, 0, &removed), 0);
	ASSERT_INT_EQ(removed, 1);
	CHECK_ENTRIES(dir, ".plain.hidden");
	CHECK_STR(plain, "precious");
	join(plain, sizeof(plain), dir, ".plain.hidden");

	if (is_root()) {
		/* Root's sweep (the cron job) removes a stale temporary
		 * whoever owns it: the lock says it is dead. */
		ASSERT_INT_EQ(put_str(tpath, "someone else's"), 0);
		ASSERT_INT_EQ(chown(tpath, 1234, 1234), 0);
		ASSERT_INT_EQ(stage_sweep(dir, 0, &removed), 0);
		ASSERT_INT_EQ(removed, 1);
		CHECK_ENTRIES(dir, ".plain.hidden");
	}

	/* Ours, regular, unlocked: stale, removed. */
	ASSERT_INT_EQ(put_str(tpath, "stale"), 0);
	ASSERT_INT_EQ(stage_sweep(dir, 0, &removed), 0);
	ASSERT_INT_EQ(removed, 1);
	CHECK_ENTRIES(dir, ".plain.hidden");
	ASSERT_INT_NE(stage_sweep("/nonexistent/dir", 0, &removed), 0);
 out:
	if (sf != NULL)
		stage_abort(sf, "test cleanup", NULL);
	TEST_DONE();
}

/* ------------------------------------------------------------------ */
/* Replacing: attributes, inode, links, readers                        */

static void
test_replace_attrs(int no_tmpfile)
{
	char name[160], dir[PATH_MAX], dest[PATH_MAX], hl[PATH_MAX];
	char xval[64], rbuf[64];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	struct stat before, after;
	size_t len = 64 * KiB;
	char *data = pattern(len, 9);
	int reader = -1, have_xattr = 0, r;
	ssize_t n;

	snprintf(name, sizeof(name), "replace keeps mode, owner, group, "
	    "xattr; new inode; links and readers keep old data (%s)",
	    variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("replace", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "file.txt");
	join(hl, sizeof(hl), dir, "hardlink.txt");
	ASSERT_INT_EQ(put_file(dest, "old content", 11, 0640), 0);
#ifdef HAVE_SYS_XATTR_H
	if (setxattr(dest, "user.test", "xattr-value", 11, 0) == 0)
		have_xattr = 1;
	else
		test_note("no user xattrs here: %s", strerror(errno));
#endif
	if (is_root())
		ASSERT_INT_EQ(chown(dest, 1234, 5678), 0);
	ASSERT_INT_EQ(link(dest, hl), 0);
	reader = open(dest, O_RDONLY);
	ASSERT_INT_GE(reader, 0);
	ASSERT_INT_EQ(stat(dest, &before), 0);

	opts_init(&o, no_tmpfile);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, WCT, 0666, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_method(sf), expected_method(no_tmpfile));
	ASSERT_INT_EQ(stage_put(sf, data, len), 0);
	CHECK_STR(dest, "old content");
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	CHECK_CONTENT(dest, data, len);
	if (ASSERT_INT_EQ(stat(dest, &after), 0)) {
		ASSERT_INT_EQ(after.st_mode & 07777, 0640);
		ASSERT_INT_EQ(after.st_gid, before.st_gid);
		if (is_root()) {
			ASSERT_INT_EQ(after.st_uid, 1234);
			ASSERT_INT_EQ(after.st_gid, 5678);
		}
		ASSERT_INT_NE(after.st_ino, before.st_ino);
		ASSERT_INT_EQ(after.st_nlink, 1);
	}
#ifdef HAVE_SYS_XATTR_H
	if (have_xattr) {
		memset(xval, 0, sizeof(xval));
		n = getxattr(dest, "user.test", xval, sizeof(xval) - 1);
		ASSERT_INT_EQ(n, 11);
		ASSERT_STR_EQ(xval, "xattr-value");
	}
#else
	(void)xval;
	(void)have_xattr;
#endif
	CHECK_STR(hl, "old content");
	if (reader >= 0) {
		memset(rbuf, 0, sizeof(rbuf));
		n = pread(reader, rbuf, sizeof(rbuf) - 1, 0);
		ASSERT_INT_EQ(n, 11);
		ASSERT_STR_EQ(rbuf, "old content");
	}
	CHECK_ENTRIES(dir, "file.txt", "hardlink.txt");
 out:
	if (reader >= 0)
		close(reader);
	if (sf != NULL)
		stage_abort(sf, "test cleanup", NULL);
	free(data);
	TEST_DONE();
}

/*
 * DESIGN 6: a replace keeps what stock's truncate-in-place keeps.  The
 * test does stock's operation (open O_TRUNC, write) on a twin file and
 * compares: mode bits (set-id), owner, group, and the file capability
 * (security.capability, which the kernel drops on any write).
 */
static int
set_file_capability(const char *path)
{
#ifdef HAVE_SYS_XATTR_H
	/* struct vfs_cap_data, revision 2, little-endian: effective,
	 * permitted CAP_NET_RAW (13). */
	unsigned char cap[20];

	memset(cap, 0, sizeof(cap));
	cap[0] = 0x01;	/* VFS_CAP_FLAGS_EFFECTIVE */
	cap[3] = 0x02;	/* VFS_CAP_REVISION_2 >> 24 */
	cap[4 + 1] = 1 << (13 - 8);	/* data[0].permitted bit 13 */
	return setxattr(path, "security.capability", cap, sizeof(cap), 0) == 0 ?
	    0 : errno;
#else
	(void)path;
	return ENOTSUP;
#endif
}

static int
has_xattr(const char *path, const char *name)
{
#ifdef HAVE_SYS_XATTR_H
	return getxattr(path, name, NULL, 0) >= 0;
#else
	(void)path;
	(void)name;
	return 0;
#endif
}

static void
test_replace_like_stock(int no_tmpfile)
{
	char name[160], dir[PATH_MAX], dest[PATH_MAX], twin[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	struct stat sd, st;
	int fd, r, i;

	snprintf(name, sizeof(name), "replace keeps what stock's truncate-"
	    "in-place keeps: set-id bits, file capabilities (%s)",
	    variant(no_tmpfile));
	TEST_START(name);
	if (!is_root()) {
		TEST_SKIP("needs root (file capabilities)");
		goto out;
	}
	if (!ASSERT_INT_EQ(fresh_dir("like-stock", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "tool");
	join(twin, sizeof(twin), dir, "twin");
	for (i = 0; i < 2; i++) {
		const char *p = i ? twin : dest;

		ASSERT_INT_EQ(put_file(p, "old", 3, 06755), 0);
		ASSERT_INT_EQ(chown(p, 1234, 1234), 0);
		ASSERT_INT_EQ(chmod(p, 06755), 0);
		if ((r = set_file_capability(p)) != 0) {
			test_note("security.capability: %s", strerror(r));
			TEST_SKIP("cannot set a file capability here");
			goto out;
		}
	}
	/* Stock: truncate and write in place. */
	if (!ASSERT_INT_GE(fd = open(twin, O_WRONLY | O_TRUNC), 0))
		goto out;
	ASSERT_INT_EQ(write(fd, "new", 3), 3);
	close(fd);
	opts_init(&o, no_tmpfile);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, WCT, 0644, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_write(sf, "new", 3, 0), 0);
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	if (!ASSERT_INT_EQ(stat(dest, &sd), 0) ||
	    !ASSERT_INT_EQ(stat(twin, &st), 0))
		goto out;
	test_note("stock: mode %o cap %d; staged: mode %o cap %d",
	    (unsigned)st.st_mode & 07777,
	    has_xattr(twin, "security.capability"),
	    (unsigned)sd.st_mode & 07777,
	    has_xattr(dest, "security.capability"));
	ASSERT_INT_EQ(sd.st_mode & 07777, st.st_mode & 07777);
	ASSERT_INT_EQ(sd.st_uid, st.st_uid);
	ASSERT_INT_EQ(sd.st_gid, st.st_gid);
	if (has_xattr(dest, "security.capability") !=
	    has_xattr(twin, "security.capability"))
		TEST_FAIL("security.capability %s after the staged replace, "
		    "%s after stock's write: the new content must not inherit "
		    "the old binary's capabilities",
		    has_xattr(dest, "security.capability") ? "present" :
		    "absent", has_xattr(twin, "security.capability") ?
		    "present" : "absent");
 out:
	if (sf != NULL)
		stage_abort(sf, "test cleanup", NULL);
	TEST_DONE();
}

/* Writing through a symlink replaces the file it points to, as open(2)
 * would write into it; the link stays a link. */
static void
test_symlink_destination(int no_tmpfile)
{
	char name[128], dir[PATH_MAX], link_[PATH_MAX], target[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	struct stat st;
	int r;

	snprintf(name, sizeof(name), "destination is a symlink: its target "
	    "is replaced, the link stays (%s)", variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("symdest", dir, sizeof(dir)), 0))
		goto out;
	join(link_, sizeof(link_), dir, "link");
	join(target, sizeof(target), dir, "target");
	ASSERT_INT_EQ(put_str(target, "old"), 0);
	ASSERT_INT_EQ(symlink("target", link_), 0);
	opts_init(&o, no_tmpfile);
	if (!ASSERT_INT_EQ(stage_open(&o, link_, WCT, 0644, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_write(sf, "new content", 11, 0), 0);
	CHECK_STR(target, "old");
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	if (ASSERT_INT_EQ(lstat(link_, &st), 0))
		ASSERT_TRUE(S_ISLNK(st.st_mode));
	CHECK_STR(target, "new content");
	CHECK_ENTRIES(dir, "link", "target");
 out:
	if (sf != NULL)
		stage_abort(sf, "test cleanup", NULL);
	TEST_DONE();
}

/* ------------------------------------------------------------------ */
/* Modes                                                               */

static void
test_modes(int no_tmpfile)
{
	char name[128], dir[PATH_MAX], dest[PATH_MAX], temp[NAME_MAX + 1];
	char tpath[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	struct stat st;
	mode_t old_umask = umask(022);
	int r;

	snprintf(name, sizeof(name), "new file mode = requested & ~umask, "
	    "set by the kernel at creation; fchmod applied (%s)",
	    variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("modes", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "m1");
	opts_init(&o, no_tmpfile);

	umask(022);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, WCT, 0666, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_write(sf, "x", 1, 0), 0);
	if (ASSERT_INT_EQ(stage_fstat(sf, &st), 0)) {
		ASSERT_INT_EQ(st.st_mode & 07777, 0644);
		ASSERT_TRUE(S_ISREG(st.st_mode));
		ASSERT_INT_EQ(st.st_size, 1);
	}
	if (ASSERT_INT_EQ(fstat(stage_fd(sf), &st), 0))
		ASSERT_INT_EQ(st.st_mode & 07777, 0644);
	if (stage_method(sf) == STAGE_NAMED &&
	    ASSERT_INT_EQ(find_temp(dir, temp, sizeof(temp)), 1)) {
		/* The private directory keeps everyone else out. */
		join(tpath, sizeof(tpath), dir, temp);
		if (ASSERT_INT_EQ(lstat(tpath, &st), 0))
			ASSERT_INT_EQ(st.st_mode & 07777, 0700);
	}
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	if (ASSERT_INT_EQ(stat(dest, &st), 0))
		ASSERT_INT_EQ(st.st_mode & 07777, 0644);

	umask(027);
	join(dest, sizeof(dest), dir, "m2");
	if (!ASSERT_INT_EQ(stage_open(&o, dest, WCT, 0777, &sf), 0))
		goto out;
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	if (ASSERT_INT_EQ(stat(dest, &st), 0))
		ASSERT_INT_EQ(st.st_mode & 07777, 0750);
	umask(022);

	/* fchmod through the handle: applied to the staged file without
	 * the umask, like fchmod(2). */
	join(dest, sizeof(dest), dir, "m3");
	if (!ASSERT_INT_EQ(stage_open(&o, dest, WCT, 0644, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_fchmod(sf, 0751), 0);
	if (ASSERT_INT_EQ(stage_fstat(sf, &st), 0))
		ASSERT_INT_EQ(st.st_mode & 07777, 0751);
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	if (ASSERT_INT_EQ(stat(dest, &st), 0))
		ASSERT_INT_EQ(st.st_mode & 07777, 0751);

	/* An explicit fchmod wins over the kept mode of a replaced file. */
	ASSERT_INT_EQ(chmod(dest, 0640), 0);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, WCT, 0644, &sf), 0))
		goto out;
	if (ASSERT_INT_EQ(stage_fstat(sf, &st), 0))
		ASSERT_INT_EQ(st.st_mode & 07777, 0640);
	ASSERT_INT_EQ(stage_fchmod(sf, 0604), 0);
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	if (ASSERT_INT_EQ(stat(dest, &st), 0))
		ASSERT_INT_EQ(st.st_mode & 07777, 0604);
 out:
	if (sf != NULL)
		stage_abort(sf, "test cleanup", NULL);
	umask(old_umask);
	TEST_DONE();
}

/* chown clears set-id bits: the module must apply the mode after it. */
static void
test_chown_setid(int no_tmpfile)
{
	char name[128], dir[PATH_MAX], dest[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	struct stat st;
	mode_t want;
	int r, order;

	snprintf(name, sizeof(name), "stage_fchown + set-id stage_fchmod, "
	    "either order (%s)", variant(no_tmpfile));
	TEST_START(name);
	if (!is_root()) {
		TEST_SKIP("needs root");
		goto out;
	}
	if (!ASSERT_INT_EQ(fresh_dir("chown", dir, sizeof(dir)), 0))
		goto out;
	opts_init(&o, no_tmpfile);
	for (order = 0; order < 2; order++) {
		join(dest, sizeof(dest), dir, order ? "b" : "a");
		if (!ASSERT_INT_EQ(stage_open(&o, dest, WCT, 0644, &sf), 0))
			goto out;
		if (order == 0) {
			ASSERT_INT_EQ(stage_fchmod(sf, 06755), 0);
			ASSERT_INT_EQ(stage_fchown(sf, 1234, 5678), 0);
		} else {
			ASSERT_INT_EQ(stage_fchown(sf, 1234, 5678), 0);
			ASSERT_INT_EQ(stage_fchmod(sf, 06755), 0);
		}
		/* What the same calls do to a plain file: a chown clears
		 * the set-id bits an earlier chmod set. */
		want = order == 0 ? 0755 : 06755;
		if (ASSERT_INT_EQ(stage_fstat(sf, &st), 0)) {
			ASSERT_INT_EQ(st.st_uid, 1234);
			ASSERT_INT_EQ(st.st_gid, 5678);
			ASSERT_INT_EQ(st.st_mode & 07777, want);
		}
		r = stage_commit(sf, NULL);
		sf = NULL;
		ASSERT_INT_EQ(r, 0);
		if (ASSERT_INT_EQ(stat(dest, &st), 0)) {
			ASSERT_INT_EQ(st.st_uid, 1234);
			ASSERT_INT_EQ(st.st_gid, 5678);
			ASSERT_INT_EQ(st.st_mode & 07777, want);
		}
		join(dest, sizeof(dest), dir, order ? "plain-b" : "plain-a");
		ASSERT_INT_EQ(put_str(dest, ""), 0);
		if (order == 0) {
			ASSERT_INT_EQ(chmod(dest, 06755), 0);
			ASSERT_INT_EQ(chown(dest, 1234, 5678), 0);
		} else {
			ASSERT_INT_EQ(chown(dest, 1234, 5678), 0);
			ASSERT_INT_EQ(chmod(dest, 06755), 0);
		}
		if (ASSERT_INT_EQ(stat(dest, &st), 0))
			ASSERT_INT_EQ(st.st_mode & 07777, want);
	}
 out:
	if (sf != NULL)
		stage_abort(sf, "test cleanup", NULL);
	TEST_DONE();
}

/* ------------------------------------------------------------------ */
/* O_EXCL                                                              */

static void
test_excl(int no_tmpfile)
{
	char name[128], dir[PATH_MAX], taken[PATH_MAX], fresh[PATH_MAX];
	char dangling[PATH_MAX], target[PATH_MAX], plain[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	struct stage_report rep;
	int r, fl = O_WRONLY | O_CREAT | O_EXCL;

	snprintf(name, sizeof(name), "O_EXCL: EEXIST at open; commit never "
	    "clobbers a file created meanwhile (%s)", variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("excl", dir, sizeof(dir)), 0))
		goto out;
	join(taken, sizeof(taken), dir, "taken");
	join(fresh, sizeof(fresh), dir, "fresh");
	join(dangling, sizeof(dangling), dir, "dangling");
	join(target, sizeof(target), dir, "nowhere");
	join(plain, sizeof(plain), dir, "plain");
	ASSERT_INT_EQ(put_str(taken, "first"), 0);
	ASSERT_INT_EQ(symlink("nowhere", dangling), 0);
	opts_init(&o, no_tmpfile);

	sf = (struct staged_file *)&sf;	/* must be reset on failure */
	r = stage_open(&o, taken, fl, 0644, &sf);
	ASSERT_INT_EQ(r, EEXIST);
	ASSERT_PTR_EQ(sf, NULL);
	sf = NULL;
	CHECK_STR(taken, "first");
	ASSERT_INT_EQ(stage_count(), 0);

	/* open(2) with O_CREAT|O_EXCL does not follow a final symlink. */
	r = stage_open(&o, dangling, fl, 0644, &sf);
	ASSERT_INT_EQ(r, EEXIST);
	if (r == 0) {
		stage_abort(sf, "test", NULL);
		sf = NULL;
	}
	CHECK_ABSENT(target);

	if (!ASSERT_INT_EQ(stage_open(&o, fresh, fl, 0644, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_write(sf, "mine", 4, 0), 0);
	ASSERT_INT_EQ(put_str(fresh, "intruder"), 0);
	memset(&rep, 0, sizeof(rep));
	r = stage_commit(sf, &rep);
	sf = NULL;
	ASSERT_INT_EQ(r, EEXIST);
	ASSERT_INT_EQ(rep.error, EEXIST);
	ASSERT_STR_NE(rep.reason, "");
	CHECK_STR(fresh, "intruder");
	CHECK_ENTRIES(dir, "taken", "fresh", "dangling");

	/* Undisturbed, EXCL commits. */
	if (!ASSERT_INT_EQ(stage_open(&o, plain, fl, 0644, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_write(sf, "mine", 4, 0), 0);
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	CHECK_STR(plain, "mine");

	/* Without EXCL a name created meanwhile is simply replaced. */
	ASSERT_INT_EQ(unlink(fresh), 0);
	if (!ASSERT_INT_EQ(stage_open(&o, fresh, WCT, 0644, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_write(sf, "mine", 4, 0), 0);
	ASSERT_INT_EQ(put_str(fresh, "intruder"), 0);
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	CHECK_STR(fresh, "mine");
	CHECK_ENTRIES(dir, "taken", "fresh", "dangling", "plain");
 out:
	if (sf != NULL)
		stage_abort(sf, "test cleanup", NULL);
	TEST_DONE();
}

/* ------------------------------------------------------------------ */
/* Writes that do not truncate an existing file                        */

static void
test_modify_copy(int no_tmpfile)
{
	char name[128], dir[PATH_MAX], dest[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	struct stat before, after;
	size_t len = 300 * KiB;
	char *old = pattern(len, 10), *want = NULL, *back = NULL;
	int r;

	snprintf(name, sizeof(name), "write without O_TRUNC stages a copy "
	    "(O_WRONLY, O_CREAT, O_APPEND) (%s)", variant(no_tmpfile));
	TEST_START(name);
	want = malloc(len + 4);
	back = malloc(len);
	if (!ASSERT_PTR_NE(want, NULL) || !ASSERT_PTR_NE(back, NULL) ||
	    !ASSERT_INT_EQ(fresh_dir("modify", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "edit.bin");
	ASSERT_INT_EQ(put_file(dest, old, len, 0640), 0);
	ASSERT_INT_EQ(stat(dest, &before), 0);
	opts_init(&o, no_tmpfile);

	/* O_WRONLY alone: resume / sshfs-style edit. */
	if (!ASSERT_INT_EQ(stage_open(&o, dest, O_WRONLY, 0, &sf), 0))
		goto out;
	ASSERT_INT_NE(stage_method(sf), STAGE_DIRECT);
	ASSERT_PTR_EQ(stage_note(sf), NULL);
	ASSERT_INT_EQ(pread(stage_fd(sf), back, len, 0), len);
	ASSERT_MEM_EQ(back, old, len);
	memcpy(want, old, len);
	memcpy(want + 1000, "XYZ", 3);
	memcpy(want + len - 2, "QQ", 2);
	ASSERT_INT_EQ(stage_write(sf, "XYZ", 3, 1000), 0);
	ASSERT_INT_EQ(stage_write(sf, "QQ", 2, (off_t)len - 2), 0);
	CHECK_CONTENT(dest, old, len);
	ASSERT_INT_EQ(pread(stage_fd(sf), back, len, 0), len);
	ASSERT_MEM_EQ(back, want, len);
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	CHECK_CONTENT(dest, want, len);
	if (ASSERT_INT_EQ(stat(dest, &after), 0)) {
		ASSERT_INT_NE(after.st_ino, before.st_ino);
		ASSERT_INT_EQ(after.st_mode & 07777, 0640);
	}
	CHECK_ENTRIES(dir, "edit.bin");

	/* O_WRONLY|O_CREAT on an existing file: the same. */
	ASSERT_INT_EQ(put_file(dest, old, len, 0640), 0);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, O_WRONLY | O_CREAT, 0644,
	    &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_write(sf, "ab", 2, 0), 0);
	CHECK_CONTENT(dest, old, len);
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	memcpy(want, old, len);
	memcpy(want, "ab", 2);
	CHECK_CONTENT(dest, want, len);

	/* O_APPEND: an append handle's writes land at the end; a write at
	 * an offset (another handle sharing the upload) lands there. */
	ASSERT_INT_EQ(put_file(dest, old, len, 0640), 0);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, O_RDWR | O_APPEND, 0, &sf),
	    0))
		goto out;
	ASSERT_INT_NE(stage_method(sf), STAGE_DIRECT);
	ASSERT_INT_EQ(stage_append(sf, "TA", 2), 0);
	ASSERT_INT_EQ(stage_write(sf, "o", 1, 1), 0);
	ASSERT_INT_EQ(stage_append(sf, "IL", 2), 0);
	CHECK_CONTENT(dest, old, len);
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	memcpy(want, old, len);
	want[1] = 'o';
	memcpy(want + len, "TAIL", 4);
	CHECK_CONTENT(dest, want, len + 4);
	CHECK_ENTRIES(dir, "edit.bin");

	/* Without O_CREAT a missing file is ENOENT, as open(2) says. */
	join(dest, sizeof(dest), dir, "missing");
	ASSERT_INT_EQ(stage_open(&o, dest, O_WRONLY, 0, &sf), ENOENT);
	ASSERT_PTR_EQ(sf, NULL);
	CHECK_ENTRIES(dir, "edit.bin");
 out:
	if (sf != NULL)
		stage_abort(sf, "test cleanup", NULL);
	free(old);
	free(want);
	free(back);
	TEST_DONE();
}

static void
test_modify_inplace(void)
{
	char dir[PATH_MAX], dest[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	struct stat before, after;
	int r;

	TEST_START("STAGE_MODIFY_INPLACE writes the existing file directly");
	if (!ASSERT_INT_EQ(fresh_dir("inplace", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "edit.txt");
	ASSERT_INT_EQ(put_str(dest, "0123456789"), 0);
	ASSERT_INT_EQ(stat(dest, &before), 0);
	opts_init(&o, 0);
	o.modify = STAGE_MODIFY_INPLACE;
	if (!ASSERT_INT_EQ(stage_open(&o, dest, O_WRONLY, 0, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_method(sf), STAGE_DIRECT);
	ASSERT_PTR_NE(stage_note(sf), NULL);
	ASSERT_INT_EQ(stage_write(sf, "AB", 2, 2), 0);
	CHECK_STR(dest, "01AB456789");
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	CHECK_STR(dest, "01AB456789");
	if (ASSERT_INT_EQ(stat(dest, &after), 0))
		ASSERT_INT_EQ(after.st_ino, before.st_ino);

	/* TRUNC is still staged under the in-place modify policy. */
	if (!ASSERT_INT_EQ(stage_open(&o, dest, WCT, 0644, &sf), 0))
		goto out;
	ASSERT_INT_NE(stage_method(sf), STAGE_DIRECT);
	ASSERT_INT_EQ(stage_write(sf, "new", 3, 0), 0);
	CHECK_STR(dest, "01AB456789");
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	CHECK_STR(dest, "new");
	CHECK_ENTRIES(dir, "edit.txt");
 out:
	if (sf != NULL)
		stage_abort(sf, "test cleanup", NULL);
	TEST_DONE();
}

static void
test_disabled(void)
{
	char dir[PATH_MAX], dest[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	int r;

	TEST_START("opts.disabled: stock behaviour, STAGE_DIRECT with a note");
	if (!ASSERT_INT_EQ(fresh_dir("disabled", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "f");
	ASSERT_INT_EQ(put_str(dest, "old content"), 0);
	opts_init(&o, 0);
	o.disabled = 1;
	if (!ASSERT_INT_EQ(stage_open(&o, dest, WCT, 0644, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_method(sf), STAGE_DIRECT);
	ASSERT_PTR_NE(stage_note(sf), NULL);
	CHECK_STR(dest, "");	/* truncated at open, as stock */
	ASSERT_INT_EQ(stage_write(sf, "abc", 3, 0), 0);
	CHECK_STR(dest, "abc");
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	CHECK_STR(dest, "abc");
	CHECK_ENTRIES(dir, "f");
 out:
	if (sf != NULL)
		stage_abort(sf, "test cleanup", NULL);
	TEST_DONE();
}

/* ------------------------------------------------------------------ */
/* Declared size                                                       */

static void
test_expect_size(int no_tmpfile)
{
	char name[128], dir[PATH_MAX], dnew[PATH_MAX], dold[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	struct stage_report rep;
	char *data = pattern(1500, 11);
	int r;

	snprintf(name, sizeof(name), "stage_expect_size: a short or long "
	    "upload is not published (%s)", variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("expect", dir, sizeof(dir)), 0))
		goto out;
	join(dnew, sizeof(dnew), dir, "new");
	join(dold, sizeof(dold), dir, "old");
	ASSERT_INT_EQ(put_str(dold, "old content"), 0);
	opts_init(&o, no_tmpfile);

	/* Short, new file. */
	if (!ASSERT_INT_EQ(stage_open(&o, dnew, WCT, 0644, &sf), 0))
		goto out;
	stage_expect_size(sf, 1000);
	ASSERT_INT_EQ(stage_put(sf, data, 500), 0);
	memset(&rep, 0, sizeof(rep));
	r = stage_commit(sf, &rep);
	sf = NULL;
	ASSERT_INT_NE(r, 0);
	ASSERT_INT_EQ(rep.error, r);
	ASSERT_STR_NE(rep.reason, "");
	ASSERT_INT_EQ(rep.bytes, 500);
	CHECK_ABSENT(dnew);
	CHECK_ENTRIES(dir, "old");

	/* Short, replacing. */
	if (!ASSERT_INT_EQ(stage_open(&o, dold, WCT, 0644, &sf), 0))
		goto out;
	stage_expect_size(sf, 1000);
	ASSERT_INT_EQ(stage_put(sf, data, 999), 0);
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_NE(r, 0);
	CHECK_STR(dold, "old content");
	CHECK_ENTRIES(dir, "old");

	/* Long. */
	if (!ASSERT_INT_EQ(stage_open(&o, dold, WCT, 0644, &sf), 0))
		goto out;
	stage_expect_size(sf, 1000);
	ASSERT_INT_EQ(stage_put(sf, data, 1500), 0);
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_NE(r, 0);
	CHECK_STR(dold, "old content");
	CHECK_ENTRIES(dir, "old");

	/* Exact. */
	if (!ASSERT_INT_EQ(stage_open(&o, dnew, WCT, 0644, &sf), 0))
		goto out;
	stage_expect_size(sf, 1000);
	ASSERT_INT_EQ(stage_put(sf, data, 1000), 0);
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	CHECK_CONTENT(dnew, data, 1000);

	/* Declared empty. */
	ASSERT_INT_EQ(unlink(dnew), 0);
	if (!ASSERT_INT_EQ(stage_open(&o, dnew, WCT, 0644, &sf), 0))
		goto out;
	stage_expect_size(sf, 0);
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	CHECK_STR(dnew, "");
	CHECK_ENTRIES(dir, "old", "new");
 out:
	if (sf != NULL)
		stage_abort(sf, "test cleanup", NULL);
	free(data);
	TEST_DONE();
}

/* ------------------------------------------------------------------ */
/* Staging directory                                                   */

/* The session renames or removes its upload (stage_retarget,
 * stage_unlink_old): published under the new name in another directory,
 * the old name gone, nothing left behind; or nothing published. */
static void
test_retarget(int no_tmpfile)
{
	char name[128], dir[PATH_MAX], a[PATH_MAX], b[PATH_MAX];
	char sub[PATH_MAX], old[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	int r;

	snprintf(name, sizeof(name), "stage_retarget moves an upload, "
	    "stage_unlink_old drops one (%s)", variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("retarget", dir, sizeof(dir)), 0))
		goto out;
	join(sub, sizeof(sub), dir, "sub");
	ASSERT_INT_EQ(mkdir(sub, 0755), 0);
	opts_init(&o, no_tmpfile);

	/* A new file, moved to another directory. */
	join(a, sizeof(a), dir, "a.tmp");
	join(b, sizeof(b), sub, "a");
	if (!ASSERT_INT_EQ(stage_open(&o, a, WCT, 0644, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_write(sf, "new a", 5, 0), 0);
	ASSERT_INT_EQ(stage_retarget(sf, b, 0), 0);
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	CHECK_STR(b, "new a");
	CHECK_ENTRIES(dir, "sub");
	CHECK_ENTRIES(sub, "a");

	/* A replacement: its old name goes at the rename; an existing
	 * target needs replace. */
	join(old, sizeof(old), dir, "old");
	ASSERT_INT_EQ(put_str(old, "old content"), 0);
	if (!ASSERT_INT_EQ(stage_open(&o, old, WCT, 0644, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_write(sf, "replaced", 8, 0), 0);
	ASSERT_INT_EQ(stage_retarget(sf, b, 0), EEXIST);
	ASSERT_INT_EQ(stage_retarget(sf, b, 1), 0);
	CHECK_ABSENT(old);
	CHECK_STR(b, "new a");
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	CHECK_STR(b, "replaced");
	CHECK_ENTRIES(dir, "sub");
	CHECK_ENTRIES(sub, "a");

	/* Removed by its session: nothing published, the replaced file
	 * gone with its name. */
	if (!ASSERT_INT_EQ(stage_open(&o, b, WCT, 0644, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_write(sf, "never", 5, 0), 0);
	ASSERT_INT_EQ(stage_unlink_old(sf), 0);
	CHECK_ABSENT(b);
	stage_abort(sf, "removed", NULL);
	sf = NULL;
	CHECK_ENTRIES(sub, NULL);
	CHECK_ENTRIES(dir, "sub");
 out:
	if (sf != NULL)
		stage_abort(sf, "test cleanup", NULL);
	TEST_DONE();
}

static void
test_tmpdir_same_fs(int no_tmpfile)
{
	char name[128], dir[PATH_MAX], stg[PATH_MAX], dest[PATH_MAX];
	char where[PATH_MAX], prefix[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	struct stat st;
	size_t len = 100 * KiB;
	char *data = pattern(len, 12);
	int r;

	snprintf(name, sizeof(name), "opts.tmpdir on the same filesystem is "
	    "used (%s)", variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("tmpdir-dest", dir, sizeof(dir)), 0) ||
	    !ASSERT_INT_EQ(fresh_dir("tmpdir-stage", stg, sizeof(stg)), 0))
		goto out;
	ASSERT_INT_EQ(chmod(stg, 0700), 0);
	join(dest, sizeof(dest), dir, "up.dat");
	join(prefix, sizeof(prefix), stg, "");
	opts_init(&o, no_tmpfile);
	o.tmpdir = stg;

	if (!ASSERT_INT_EQ(stage_open(&o, dest, WCT, 0644, &sf), 0))
		goto out;
	ASSERT_PTR_EQ(stage_note(sf), NULL);
	ASSERT_INT_EQ(stage_method(sf), expected_method(no_tmpfile));
	ASSERT_INT_EQ(stage_put(sf, data, len), 0);
	CHECK_ENTRIES(dir, NULL);
	if (stage_method(sf) == STAGE_NAMED)
		ASSERT_INT_EQ(find_temp(stg, NULL, 0), 1);
	else
		CHECK_ENTRIES(stg, NULL);
	ASSERT_INT_EQ(fd_path(stage_fd(sf), where, sizeof(where)), 0);
	/* An O_TMPFILE is made in the destination directory, where the
	 * kernel gives a new file its mode, group and ACL; it has no name
	 * there.  A named staged file lives in the staging directory. */
	if (stage_method(sf) == STAGE_NAMED && !starts_with(where, prefix))
		TEST_FAIL("staged data is at %s, not in %s", where, stg);
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	CHECK_CONTENT(dest, data, len);
	CHECK_ENTRIES(dir, "up.dat");
	CHECK_ENTRIES(stg, NULL);

	/* Replacing through the staging directory keeps the mode. */
	ASSERT_INT_EQ(chmod(dest, 0604), 0);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, WCT, 0644, &sf), 0))
		goto out;
	ASSERT_PTR_EQ(stage_note(sf), NULL);
	ASSERT_INT_EQ(stage_write(sf, "second", 6, 0), 0);
	CHECK_CONTENT(dest, data, len);
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	CHECK_STR(dest, "second");
	if (ASSERT_INT_EQ(stat(dest, &st), 0))
		ASSERT_INT_EQ(st.st_mode & 07777, 0604);
	CHECK_ENTRIES(dir, "up.dat");
	CHECK_ENTRIES(stg, NULL);

	/* A staging directory that does not exist: fall back, say why. */
	o.tmpdir = "/nonexistent/staging/dir";
	if (!ASSERT_INT_EQ(stage_open(&o, dest, WCT, 0644, &sf), 0))
		goto out;
	ASSERT_PTR_NE(stage_note(sf), NULL);
	ASSERT_INT_EQ(stage_write(sf, "third", 5, 0), 0);
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	CHECK_STR(dest, "third");
	CHECK_ENTRIES(dir, "up.dat");
 out:
	if (sf != NULL)
		stage_abort(sf, "test cleanup", NULL);
	free(data);
	TEST_DONE();
}

/* Stage with tmpdir `stg` and check that it was not used: the note says
 * why and the temporary is beside the destination. */
static void
expect_fallback(const char *file, int line, int no_tmpfile,
    const char *stg, const char *dir, const char *dest)
{
	char where[PATH_MAX], prefix[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	int r;

	opts_init(&o, no_tmpfile);
	o.tmpdir = stg;
	if ((r = stage_open(&o, dest, WCT, 0644, &sf)) != 0) {
		test_fail(file, line, "stage_open with tmpdir %s: %s", stg,
		    errname(r));
		return;
	}
	if (stage_note(sf) == NULL)
		test_fail(file, line, "tmpdir %s: no note for the fallback",
		    stg);
	else
		test_note("fallback note: %s", stage_note(sf));
	if (stage_method(sf) != expected_method(no_tmpfile))
		test_fail(file, line, "method %s", stage_method_name(
		    stage_method(sf)));
	if ((r = stage_write(sf, "fallback", 8, 0)) != 0)
		test_fail(file, line, "stage_write: %s", errname(r));
	if (find_temp(stg, NULL, 0) != 0)
		test_fail(file, line, "a temporary appeared in %s", stg);
	if (stage_method(sf) == STAGE_NAMED && find_temp(dir, NULL, 0) != 1)
		test_fail(file, line, "no temporary beside the destination");
	join(prefix, sizeof(prefix), dir, "");
	if (fd_path(stage_fd(sf), where, sizeof(where)) == 0 &&
	    !starts_with(where, prefix))
		test_fail(file, line, "staged data at %s, not in %s", where,
		    dir);
	r = stage_commit(sf, NULL);
	if (r != 0)
		test_fail(file, line, "commit: %s", errname(r));
	check_content(file, line, dest, "fallback", 8);
	check_entries(file, line, dir, (const char *const[]){ "up.dat",
	    NULL });
	(void)unlink(dest);
}
#define EXPECT_FALLBACK(nt, stg, dir, dest) \
	expect_fallback(__FILE__, __LINE__, nt, stg, dir, dest)

static void
test_tmpdir_other_fs(int no_tmpfile)
{
	char name[128], dir[PATH_MAX], mnt[PATH_MAX], dest[PATH_MAX];
	struct stat a, b;
	int mounted = 0;

	snprintf(name, sizeof(name), "opts.tmpdir on another filesystem: "
	    "staged beside the destination, with a note (%s)",
	    variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("xfs-dest", dir, sizeof(dir)), 0) ||
	    !ASSERT_INT_EQ(fresh_dir("xfs-mnt", mnt, sizeof(mnt)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "up.dat");
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=4m,mode=0700") != 0) {
		test_note("mount tmpfs: %s", strerror(errno));
		TEST_SKIP("cannot mount a tmpfs (needs root)");
		goto out;
	}
	mounted = 1;
	if (!ASSERT_INT_EQ(stat(mnt, &a), 0) ||
	    !ASSERT_INT_EQ(stat(dir, &b), 0) ||
	    !ASSERT_INT_NE(a.st_dev, b.st_dev))
		goto out;
	EXPECT_FALLBACK(no_tmpfile, mnt, dir, dest);
 out:
	if (mounted && umount2(mnt, MNT_DETACH) != 0)
		TEST_FAIL("umount %s: %s", mnt, strerror(errno));
	TEST_DONE();
}

static void
test_tmpdir_world_writable(int no_tmpfile)
{
	char name[128], dir[PATH_MAX], stg[PATH_MAX], dest[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	int r;

	snprintf(name, sizeof(name), "world-writable tmpdir without sticky "
	    "bit refused; with it used (%s)", variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("ww-dest", dir, sizeof(dir)), 0) ||
	    !ASSERT_INT_EQ(fresh_dir("ww-stage", stg, sizeof(stg)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "up.dat");
	ASSERT_INT_EQ(chmod(stg, 0777), 0);
	EXPECT_FALLBACK(no_tmpfile, stg, dir, dest);
	ASSERT_INT_EQ(chmod(stg, 0773), 0);	/* -wx for others is enough */
	EXPECT_FALLBACK(no_tmpfile, stg, dir, dest);

	ASSERT_INT_EQ(chmod(stg, 01777), 0);
	opts_init(&o, no_tmpfile);
	o.tmpdir = stg;
	if (!ASSERT_INT_EQ(stage_open(&o, dest, WCT, 0644, &sf), 0))
		goto out;
	ASSERT_PTR_EQ(stage_note(sf), NULL);
	if (stage_method(sf) == STAGE_NAMED)
		ASSERT_INT_EQ(find_temp(stg, NULL, 0), 1);
	CHECK_ENTRIES(dir, NULL);
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	CHECK_ENTRIES(stg, NULL);
	CHECK_ENTRIES(dir, "up.dat");
 out:
	if (sf != NULL)
		stage_abort(sf, "test cleanup", NULL);
	TEST_DONE();
}

/* Names an attacker sharing a staging directory might pre-create. */
static void
plant_symlinks(const char *stg, const char *base, const char *victim,
    int random_count)
{
	static const char alnum[] = "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	static const char *const fixed[] = {
		"%s", ".%s", "%s.tmp", ".%s.tmp", "%s.part", ".%s.part",
		"#%s#", "%s~", ".~%s", ".%s.swp", "%s.new", ".%s.new",
		"%s.filepart", ".%s.au", ".%s.au-", NULL
	};
	char name[NAME_MAX + 1], path[PATH_MAX], rnd[17];
	int i, j;

	for (i = 0; fixed[i] != NULL; i++) {
		/* The templates hold one %s each; build without a
		 * non-literal format. */
		const char *t = fixed[i], *s = strstr(t, "%s");

		snprintf(name, sizeof(name), "%.*s%s%s", (int)(s - t), t,
		    base, s + 2);
		join(path, sizeof(path), stg, name);
		if (symlink(victim, path) != 0 && errno != EEXIST)
			test_diag("symlink %s: %s", path, strerror(errno));
	}
	for (i = 0; i < random_count; i++) {
		for (j = 0; j < 16; j++)
			rnd[j] = alnum[(unsigned)rand() % (sizeof(alnum) - 1)];
		rnd[16] = '\0';
		snprintf(name, sizeof(name), ".%s.%s", base,
		    i % 2 ? rnd : rnd + 10);
		join(path, sizeof(path), stg, name);
		if (symlink(victim, path) != 0 && errno != EEXIST)
			test_diag("symlink %s: %s", path, strerror(errno));
		snprintf(name, sizeof(name), ".%s.au-%s", base, rnd);
		join(path, sizeof(path), stg, name);
		if (symlink(victim, path) != 0 && errno != EEXIST)
			test_diag("symlink %s: %s", path, strerror(errno));
	}
}

static void
test_tmpdir_symlinks(int no_tmpfile)
{
	char name[160], dir[PATH_MAX], stg[PATH_MAX], dest[PATH_MAX];
	char other[PATH_MAX], victim[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	struct stat vbefore, vafter;
	char *data = pattern(64 * KiB, 13);
	int i, r, pass;

	snprintf(name, sizeof(name), "pre-created symlinks in a shared "
	    "staging directory are never followed (%s)", variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("sym-dest", dir, sizeof(dir)), 0) ||
	    !ASSERT_INT_EQ(fresh_dir("sym-stage", stg, sizeof(stg)), 0) ||
	    !ASSERT_INT_EQ(fresh_dir("sym-victim", other, sizeof(other)), 0))
		goto out;
	ASSERT_INT_EQ(chmod(stg, 01777), 0);
	join(dest, sizeof(dest), dir, "upload.csv");
	join(victim, sizeof(victim), other, "victim");
	ASSERT_INT_EQ(put_str(victim, "precious"), 0);
	ASSERT_INT_EQ(chmod(victim, 0666), 0);
	ASSERT_INT_EQ(stat(victim, &vbefore), 0);
	srand(4242);
	plant_symlinks(stg, "upload.csv", victim, 1000);
	/* Also beside the destination, the default staging place. */
	plant_symlinks(dir, "upload.csv", victim, 200);
	(void)unlink(dest);	/* the "%s" template planted it there */
	opts_init(&o, no_tmpfile);
	for (pass = 0; pass < 2; pass++) {
		o.tmpdir = pass == 0 ? stg : NULL;
		for (i = 0; i < 10; i++) {
			r = stage_open(&o, dest, WCT, 0644, &sf);
			if (!ASSERT_INT_EQ(r, 0))
				goto out;
			ASSERT_INT_EQ(stage_put(sf, data, 64 * KiB), 0);
			r = stage_commit(sf, NULL);
			sf = NULL;
			ASSERT_INT_EQ(r, 0);
		}
	}
	CHECK_CONTENT(dest, data, 64 * KiB);
	CHECK_STR(victim, "precious");
	ASSERT_INT_EQ(stat(victim, &vafter), 0);
	ASSERT_INT_EQ(vafter.st_mode & 07777, 0666);
	ASSERT_INT_EQ(vafter.st_nlink, 1);
	ASSERT_TRUE(vafter.st_mtim.tv_sec == vbefore.st_mtim.tv_sec &&
	    vafter.st_mtim.tv_nsec == vbefore.st_mtim.tv_nsec);
	CHECK_ENTRIES(other, "victim");
 out:
	if (sf != NULL)
		stage_abort(sf, "test cleanup", NULL);
	free(data);
	TEST_DONE();
}

/* ------------------------------------------------------------------ */
/* Durability settings (the syscalls are counted in t-faults.sh)       */

static void
test_sync_levels(int no_tmpfile)
{
	static const enum stage_sync levels[] = { STAGE_SYNC_FULL,
	    STAGE_SYNC_DATA, STAGE_SYNC_NONE };
	char name[128], dir[PATH_MAX], dest[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	size_t len = 256 * KiB, i;
	char *data = pattern(len, 14);
	int r;

	snprintf(name, sizeof(name), "commit with sync full/data/none, "
	    "stage_fsync (%s)", variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("sync", dir, sizeof(dir)), 0))
		goto out;
	opts_init(&o, no_tmpfile);
	for (i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		join(dest, sizeof(dest), dir, stage_sync_name(levels[i]));
		o.sync = levels[i];
		if (!ASSERT_INT_EQ(stage_open(&o, dest, WCT, 0644, &sf), 0))
			goto out;
		ASSERT_INT_EQ(stage_put(sf, data, len / 2), 0);
		ASSERT_INT_EQ(stage_fsync(sf), 0);
		CHECK_ABSENT(dest);
		ASSERT_INT_EQ(stage_put_at(sf, data + len / 2, len / 2,
		    (off_t)(len / 2)), 0);
		r = stage_commit(sf, NULL);
		sf = NULL;
		ASSERT_INT_EQ(r, 0);
		CHECK_CONTENT(dest, data, len);
	}
	CHECK_ENTRIES(dir, "full", "data", "none");
 out:
	if (sf != NULL)
		stage_abort(sf, "test cleanup", NULL);
	free(data);
	TEST_DONE();
}

/* ------------------------------------------------------------------ */
/* Concurrency                                                         */

#define CONC_PROCS	8
#define CONC_ROUNDS	4
#define CONC_SIZE	MiB

/* A complete version: CONC_SIZE bytes, all equal to the first, nonzero. */
static int
complete_version(const char *buf, size_t len)
{
	size_t i;

	if (len != CONC_SIZE || buf[0] == 0)
		return 0;
	for (i = 1; i < len; i++) {
		if (buf[i] != buf[0])
			return 0;
	}
	return 1;
}

static void
test_concurrent(int no_tmpfile)
{
	char name[128], dir[PATH_MAX], dest[PATH_MAX];
	pid_t pids[CONC_PROCS];
	struct stage_opts o;
	int gate[2] = { -1, -1 }, i, status, running, bad = 0, reads = 0;
	char *buf = NULL;
	size_t len;

	snprintf(name, sizeof(name), "%d processes commit 1 MiB versions of "
	    "one name: readers only ever see one whole version (%s)",
	    CONC_PROCS, variant(no_tmpfile));
	TEST_START(name);
	for (i = 0; i < CONC_PROCS; i++)
		pids[i] = -1;
	if (!ASSERT_INT_EQ(fresh_dir("concurrent", dir, sizeof(dir)), 0) ||
	    !ASSERT_INT_EQ(pipe(gate), 0))
		goto out;
	join(dest, sizeof(dest), dir, "shared.bin");
	if ((buf = malloc(CONC_SIZE)) == NULL)
		goto out;
	memset(buf, 0xff, CONC_SIZE);
	ASSERT_INT_EQ(put_file(dest, buf, CONC_SIZE, 0644), 0);
	opts_init(&o, no_tmpfile);
	o.sync = STAGE_SYNC_DATA;
	fflush(stdout);
	for (i = 0; i < CONC_PROCS; i++) {
		if ((pids[i] = fork()) == 0) {
			struct staged_file *sf;
			int round, r = 0;
			char c;

			close(gate[1]);
			/* Start together: the gate opens on EOF. */
			if (read(gate[0], &c, 1) < 0)
				_exit(9);
			for (round = 0; round < CONC_ROUNDS && r == 0; round++) {
				memset(buf, 1 + i * CONC_ROUNDS + round,
				    CONC_SIZE);
				if ((r = stage_open(&o, dest, WCT, 0644,
				    &sf)) != 0)
					break;
				if ((r = stage_put(sf, buf, CONC_SIZE)) != 0) {
					stage_abort(sf, "write", NULL);
					break;
				}
				r = stage_commit(sf, NULL);
			}
			_exit(r == 0 ? 0 : 10 + (r & 0x7f));
		}
		if (!ASSERT_INT_GT(pids[i], 0))
			goto out;
	}
	close(gate[1]);
	gate[1] = -1;
	/* Read like a processing script while the writers race. */
	for (running = CONC_PROCS; running > 0; ) {
		char *got;

		if (get_file(dest, &got, &len) == 0) {
			reads++;
			if (!complete_version(got, len)) {
				if (bad++ == 0)
					TEST_FAIL("reader saw a partial or "
					    "mixed file (%zu bytes)", len);
			}
			free(got);
		} else if (bad++ == 0) {
			TEST_FAIL("destination vanished during the race");
		}
		for (i = 0; i < CONC_PROCS; i++) {
			if (pids[i] > 0 &&
			    waitpid(pids[i], &status, WNOHANG) == pids[i]) {
				if (!WIFEXITED(status) ||
				    WEXITSTATUS(status) != 0)
					TEST_FAIL("writer %d: status 0x%x", i,
					    status);
				pids[i] = -1;
				running--;
			}
		}
	}
	test_note("%d reads during the race", reads);
	free(buf);
	buf = NULL;
	if (get_file(dest, &buf, &len) == 0) {
		ASSERT_TRUE(complete_version(buf, len));
		/* The winner is one of the last rounds' versions. */
		ASSERT_INT_EQ((unsigned char)buf[0] % CONC_ROUNDS, 0);
	}
	CHECK_ENTRIES(dir, "shared.bin");
 out:
	for (i = 0; i < CONC_PROCS; i++) {
		if (pids[i] > 0) {
			kill(pids[i], SIGKILL);
			waitpid(pids[i], NULL, 0);
		}
	}
	if (gate[0] >= 0)
		close(gate[0]);
	if (gate[1] >= 0)
		close(gate[1]);
	free(buf);
	TEST_DONE();
}

/* ------------------------------------------------------------------ */
/* stage_abort_all / stage_count                                       */

static void
test_abort_all(void)
{
	char dir[PATH_MAX], a[PATH_MAX], b[PATH_MAX], c[PATH_MAX];
	struct staged_file *sa = NULL, *sb = NULL, *sc = NULL;
	struct stage_opts ot, on;
	int r, n;

	TEST_START("stage_count and stage_abort_all");
	if (!ASSERT_INT_EQ(fresh_dir("abortall", dir, sizeof(dir)), 0))
		goto out;
	join(a, sizeof(a), dir, "a");
	join(b, sizeof(b), dir, "b");
	join(c, sizeof(c), dir, "c");
	ASSERT_INT_EQ(put_str(c, "old c"), 0);
	opts_init(&ot, 0);
	opts_init(&on, 1);
	ASSERT_INT_EQ(stage_count(), 0);
	if (!ASSERT_INT_EQ(stage_open(&ot, a, WCT, 0644, &sa), 0) ||
	    !ASSERT_INT_EQ(stage_open(&on, b, WCT, 0644, &sb), 0) ||
	    !ASSERT_INT_EQ(stage_open(&on, c, WCT, 0644, &sc), 0))
		goto out;
	ASSERT_INT_EQ(stage_count(), 3);
	ASSERT_INT_EQ(stage_write(sa, "A", 1, 0), 0);
	ASSERT_INT_EQ(stage_write(sb, "B", 1, 0), 0);
	ASSERT_INT_EQ(stage_write(sc, "C", 1, 0), 0);
	ASSERT_INT_EQ(find_temp(dir, NULL, 0), 2);
	n = stage_abort_all();
	ASSERT_INT_EQ(n, 3);
	/* Nothing is left even before the handles are freed. */
	CHECK_ENTRIES(dir, "c");
	CHECK_STR(c, "old c");
	ASSERT_INT_EQ(stage_abort_all(), 0);
	/* What a caller still does with an aborted handle must fail
	 * cleanly, never publish. */
	r = stage_commit(sa, NULL);
	sa = NULL;
	ASSERT_INT_NE(r, 0);
	CHECK_ABSENT(a);
	stage_abort(sb, "after abort_all", NULL);
	sb = NULL;
	r = stage_commit(sc, NULL);
	sc = NULL;
	ASSERT_INT_NE(r, 0);
	CHECK_STR(c, "old c");
	CHECK_ENTRIES(dir, "c");
	ASSERT_INT_EQ(stage_count(), 0);
	ASSERT_INT_EQ(stage_abort_all(), 0);
 out:
	if (sa != NULL)
		stage_abort(sa, "test cleanup", NULL);
	if (sb != NULL)
		stage_abort(sb, "test cleanup", NULL);
	if (sc != NULL)
		stage_abort(sc, "test cleanup", NULL);
	TEST_DONE();
}

static void
abort_all_and_exit(int sig)
{
	(void)sig;
	_exit(stage_abort_all() == 2 ? 0 : 1);
}

static void
test_abort_all_in_signal_handler(void)
{
	char dir[PATH_MAX], a[PATH_MAX], c[PATH_MAX];
	int rp[2] = { -1, -1 }, status = -1;
	pid_t pid = -1;
	char res = 1;

	TEST_START("stage_abort_all from a signal handler removes named "
	    "temporaries");
	if (!ASSERT_INT_EQ(fresh_dir("abortsig", dir, sizeof(dir)), 0) ||
	    !ASSERT_INT_EQ(pipe(rp), 0))
		goto out;
	join(a, sizeof(a), dir, "a");
	join(c, sizeof(c), dir, "c");
	ASSERT_INT_EQ(put_str(c, "old c"), 0);
	fflush(stdout);
	if ((pid = fork()) == 0) {
		struct staged_file *sa, *sc;
		struct stage_opts on;
		char *data = pattern(MiB, 15);

		close(rp[0]);
		signal(SIGTERM, abort_all_and_exit);
		opts_init(&on, 1);
		res = stage_open(&on, a, WCT, 0644, &sa) == 0 &&
		    stage_open(&on, c, WCT, 0644, &sc) == 0 &&
		    stage_put(sa, data, MiB) == 0 &&
		    stage_put(sc, data, MiB) == 0 ? 0 : 1;
		if (write(rp[1], &res, 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	if (!ASSERT_INT_GT(pid, 0))
		goto out;
	close(rp[1]);
	rp[1] = -1;
	ASSERT_INT_EQ(read(rp[0], &res, 1), 1);
	ASSERT_INT_EQ(res, 0);
	ASSERT_INT_EQ(find_temp(dir, NULL, 0), 2);
	kill(pid, SIGTERM);
	ASSERT_INT_EQ(waitpid(pid, &status, 0), pid);
	pid = -1;
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_ENTRIES(dir, "c");
	CHECK_STR(c, "old c");
 out:
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	if (rp[0] >= 0)
		close(rp[0]);
	if (rp[1] >= 0)
		close(rp[1]);
	TEST_DONE();
}

/* ------------------------------------------------------------------ */
/* Errors as open(2) gives them                                        */

struct open_case {
	const char *what;
	const char *path;	/* relative to the case directory */
	int oflags;
};

static void
test_open_errors(void)
{
	static const struct open_case cases[] = {
		{ "directory", "adir", WCT },
		{ "directory, no O_TRUNC", "adir", O_WRONLY | O_CREAT },
		{ "missing parent", "nodir/x", WCT },
		{ "parent is a file", "afile/x", WCT },
		{ "missing, no O_CREAT", "missing", O_WRONLY | O_TRUNC },
		{ "missing, no O_CREAT, no O_TRUNC", "missing", O_RDWR },
		{ "exists, O_EXCL", "afile", O_WRONLY | O_CREAT | O_EXCL },
		{ "dangling symlink, O_EXCL", "dangling",
		    O_WRONLY | O_CREAT | O_EXCL },
		{ "symlink loop", "loop", WCT },
		{ "trailing slash", "newdir/", WCT },
		{ "name too long", NULL, WCT },
		{ "dangling symlink into missing dir", "baddangle", WCT },
	};
	char dir[PATH_MAX], path[PATH_MAX], longname[NAME_MAX + 2];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	struct listing before, after;
	size_t i;
	int want, got, fd;

	TEST_START("stage_open errors are those of open(2)");
	if (!ASSERT_INT_EQ(fresh_dir("openerr", dir, sizeof(dir)), 0))
		goto out;
	memset(longname, 'L', NAME_MAX + 1);
	longname[NAME_MAX + 1] = '\0';
	join(path, sizeof(path), dir, "adir");
	ASSERT_INT_EQ(mkdir(path, 0755), 0);
	join(path, sizeof(path), dir, "afile");
	ASSERT_INT_EQ(put_str(path, "a file"), 0);
	join(path, sizeof(path), dir, "dangling");
	ASSERT_INT_EQ(symlink("nowhere", path), 0);
	join(path, sizeof(path), dir, "loop");
	ASSERT_INT_EQ(symlink("loop", path), 0);
	join(path, sizeof(path), dir, "baddangle");
	ASSERT_INT_EQ(symlink("nodir/x", path), 0);
	opts_init(&o, 0);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		join(path, sizeof(path), dir,
		    cases[i].path != NULL ? cases[i].path : longname);
		ASSERT_INT_EQ(list_dir(dir, &before), 0);
		fd = open(path, cases[i].oflags, 0644);
		want = fd < 0 ? errno : 0;
		if (fd >= 0) {
			close(fd);
			TEST_FAIL("case \"%s\": open(2) succeeded",
			    cases[i].what);
			continue;
		}
		sf = NULL;
		got = stage_open(&o, path, cases[i].oflags, 0644, &sf);
		if (got != want)
			TEST_FAIL("case \"%s\": stage_open = %s, open(2) "
			    "gives %s", cases[i].what, errname(got),
			    errname(want));
		if (got == 0 && sf != NULL) {
			stage_abort(sf, "test", NULL);
			sf = NULL;
		}
		ASSERT_INT_EQ(list_dir(dir, &after), 0);
		ASSERT_INT_EQ(after.n, before.n);
	}
	ASSERT_INT_EQ(stage_count(), 0);
 out:
	TEST_DONE();
}

/* ------------------------------------------------------------------ */
/* EINTR                                                               */

static volatile sig_atomic_t alarms;

static void
count_alarm(int sig)
{
	(void)sig;
	alarms++;
}

static void
test_eintr(int no_tmpfile)
{
	char name[128], dir[PATH_MAX], dest[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	struct sigaction sa, oldsa;
	struct itimerval it, oldit;
	size_t len = 32 * MiB;
	char *data = pattern(len, 16);
	int r, armed = 0;

	snprintf(name, sizeof(name), "an interval timer (SIGALRM, no "
	    "SA_RESTART) causes no errors (%s)", variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("eintr", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "big");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = count_alarm;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;	/* interrupted calls fail with EINTR */
	if (!ASSERT_INT_EQ(sigaction(SIGALRM, &sa, &oldsa), 0))
		goto out;
	memset(&it, 0, sizeof(it));
	it.it_interval.tv_usec = 200;
	it.it_value.tv_usec = 200;
	alarms = 0;
	if (!ASSERT_INT_EQ(setitimer(ITIMER_REAL, &it, &oldit), 0))
		goto out;
	armed = 1;
	opts_init(&o, no_tmpfile);
	o.sync = STAGE_SYNC_FULL;
	if (!ASSERT_INT_EQ(stage_open(&o, dest, WCT, 0644, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_write(sf, data, len, 0), 0);
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	/* A copy-on-modify of the big file under the same storm. */
	if (!ASSERT_INT_EQ(stage_open(&o, dest, O_WRONLY, 0, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_write(sf, "edit", 4, 1000), 0);
	r = stage_commit(sf, NULL);
	sf = NULL;
	ASSERT_INT_EQ(r, 0);
	memcpy(data + 1000, "edit", 4);
	memset(&it, 0, sizeof(it));
	setitimer(ITIMER_REAL, &it, NULL);
	armed = 0;
	test_note("%d alarms", (int)alarms);
	ASSERT_INT_GT(alarms, 0);
	CHECK_CONTENT(dest, data, len);
	CHECK_ENTRIES(dir, "big");
 out:
	if (armed) {
		memset(&it, 0, sizeof(it));
		setitimer(ITIMER_REAL, &it, NULL);
	}
	sigaction(SIGALRM, &oldsa, NULL);
	if (sf != NULL)
		stage_abort(sf, "test cleanup", NULL);
	free(data);
	TEST_DONE();
}

/* ------------------------------------------------------------------ */
/* Tool mode for the shell tests                                       */

static void
tool_usage(void)
{
	fprintf(stderr,
	    "usage: test_atomic_upload -x stage [-ADEILnq] [-b bytes] "
	    "[-c char] [-f input]\n"
	    "           [-F wrctea] [-m mode] [-M fchmod-mode] [-o offset] "
	    "[-s full|data|none]\n"
	    "           [-S declared-size] [-t tmpdir] [-u umask] [-w "
	    "seconds] PATH\n"
	    "       test_atomic_upload -x sweep DIR\n"
	    "Prints one line: open=E method=M note=\"...\" write=E "
	    "commit=E (E is OK or an errno name).\n"
	    "  -A abort instead of commit   -D opts.disabled   -E "
	    "opts.no_close_event\n"
	    "  -I modify in place   -L list the staging places before "
	    "commit   -n no O_TMPFILE\n"
	    "  -w N: after writing, print \"staged\" and wait N seconds or "
	    "until a line arrives on stdin\n");
}

static void
tool_list(const char *label, const char *dir)
{
	struct listing l;
	int i;

	if (list_dir(dir, &l) != 0)
		return;
	for (i = 0; i < l.n && i < MAX_ENTRIES; i++)
		printf("%s %s%s\n", label, l.name[i],
		    stage_is_temp_name(l.name[i]) ? " temp" : "");
}

static int
tool_stage(int argc, char **argv)
{
	struct stage_opts o;
	struct stage_report rep;
	struct staged_file *sf = NULL;
	const char *flags = "wct", *input = NULL, *p;
	char *data = NULL, dirbuf[PATH_MAX], *slash;
	size_t len = 0;
	long long declared = -1, offset = 0, bytes = 0;
	long mode = 0644, chmod_mode = -1, um = -1, wait_s = -1;
	int ch, oflags = 0, rw = O_WRONLY, fill = 'x', abort_ = 0, list = 0;
	int r, rw_ = 0, rc = 0;

	memset(&o, 0, sizeof(o));
	optind = 1;
	while ((ch = getopt(argc, argv, "ADEF:ILM:S:b:c:f:m:no:s:t:u:w:")) !=
	    -1) {
		switch (ch) {
		case 'A': abort_ = 1; break;
		case 'D': o.disabled = 1; break;
		case 'E': o.no_close_event = 1; break;
		case 'F': flags = optarg; break;
		case 'I': o.modify = STAGE_MODIFY_INPLACE; break;
		case 'L': list = 1; break;
		case 'M': chmod_mode = strtol(optarg, NULL, 8); break;
		case 'S': declared = strtoll(optarg, NULL, 10); break;
		case 'b': bytes = strtoll(optarg, NULL, 10); break;
		case 'c': fill = (unsigned char)optarg[0]; break;
		case 'f': input = optarg; break;
		case 'm': mode = strtol(optarg, NULL, 8); break;
		case 'n': o.no_tmpfile = 1; break;
		case 'o': offset = strtoll(optarg, NULL, 10); break;
		case 's':
			if (stage_parse_sync(optarg, &o.sync) != 0) {
				tool_usage();
				return 2;
			}
			break;
		case 't': o.tmpdir = optarg; break;
		case 'u': um = strtol(optarg, NULL, 8); break;
		case 'w': wait_s = strtol(optarg, NULL, 10); break;
		default:
			tool_usage();
			return 2;
		}
	}
	if (optind != argc - 1) {
		tool_usage();
		return 2;
	}
	for (p = flags; *p != '\0'; p++) {
		switch (*p) {
		case 'w': rw = O_WRONLY; break;
		case 'r': rw = O_RDWR; rw_ = 1; break;
		case 'c': oflags |= O_CREAT; break;
		case 't': oflags |= O_TRUNC; break;
		case 'e': oflags |= O_EXCL; break;
		case 'a': oflags |= O_APPEND; break;
		default:
			tool_usage();
			return 2;
		}
	}
	(void)rw_;
	oflags |= rw;
	if (um >= 0)
		umask((mode_t)um);
	if (input != NULL) {
		if ((r = get_file(input, &data, &len)) != 0) {
			fprintf(stderr, "%s: %s\n", input, strerror(r));
			return 2;
		}
	} else {
		len = (size_t)bytes;
		if ((data = malloc(len ? len : 1)) == NULL)
			return 2;
		memset(data, fill, len);
	}
	r = stage_open(&o, argv[optind], oflags, (mode_t)mode, &sf);
	printf("open=%s", errname(r));
	if (r != 0) {
		printf("\n");
		rc = 1;
		goto out;
	}
	printf(" method=%s", stage_method_name(stage_method(sf)));
	if (stage_note(sf) != NULL)
		printf(" note=\"%s\"", stage_note(sf));
	else
		printf(" note=-");
	if (declared >= 0)
		stage_expect_size(sf, (off_t)declared);
	if (chmod_mode >= 0 &&
	    (r = stage_fchmod(sf, (mode_t)chmod_mode)) != 0) {
		printf(" fchmod=%s", errname(r));
		rc = 1;
	}
	/* An O_APPEND handle appends (offset -1 to stage_put_at). */
	r = stage_put_at(sf, data, len, (oflags & O_APPEND) ? -1 :
	    (off_t)offset);
	printf(" write=%s", errname(r));
	if (r != 0)
		rc = 1;
	fflush(stdout);
	if (list) {
		printf("\n");
		snprintf(dirbuf, sizeof(dirbuf), "%s", argv[optind]);
		if ((slash = strrchr(dirbuf, '/')) != NULL)
			*slash = '\0';
		else
			snprintf(dirbuf, sizeof(dirbuf), ".");
		tool_list("dest-dir", dirbuf);
		if (o.tmpdir != NULL)
			tool_list("tmpdir", o.tmpdir);
	}
	if (wait_s >= 0) {
		char line[16];
		fd_set rfds;
		struct timeval tv;

		printf("%sstaged pid=%ld\n", list ? "" : "\n", (long)getpid());
		fflush(stdout);
		FD_ZERO(&rfds);
		FD_SET(STDIN_FILENO, &rfds);
		tv.tv_sec = wait_s;
		tv.tv_usec = 0;
		if (select(STDIN_FILENO + 1, &rfds, NULL, NULL, &tv) > 0) {
			/* EOF (stdin is /dev/null): wait out the rest, so a
			 * shell test can kill us while staged. */
			if (read(STDIN_FILENO, line, sizeof(line)) == 0)
				(void)select(0, NULL, NULL, NULL, &tv);
		}
		list = 1;	/* the result goes on its own line */
	}
	if (list)
		printf("result");
	if (abort_) {
		stage_abort(sf, "tool -A", &rep);
		printf(" abort=OK");
	} else {
		r = stage_commit(sf, &rep);
		printf(" commit=%s", errname(r));
		if (r != 0) {
			printf(" reason=\"%s\"", rep.reason);
			rc = 1;
		}
	}
	printf(" bytes=%lld\n", (long long)rep.bytes);
	sf = NULL;
 out:
	fflush(stdout);
	free(data);
	return rc;
}

static int
tool_main(int argc, char **argv)
{
	unsigned int removed = 0;
	int r;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && strcmp(argv[1], "stage") == 0)
		return tool_stage(argc - 1, argv + 1);
	if (argc == 3 && strcmp(argv[1], "sweep") == 0) {
		r = stage_sweep(argv[2], STAGE_SWEEP_TREE, &removed);
		printf("sweep=%s removed=%u\n", errname(r), removed);
		return r == 0 ? 0 : 1;
	}
	if (argc == 3 && strcmp(argv[1], "errno") == 0) {
		/* For shell tests: the number of an errno name. */
		printf("%d\n", errno_by_name(argv[2]));
		return 0;
	}
	tool_usage();
	return 2;
}

/* ------------------------------------------------------------------ */

static int
setup_scratch(void)
{
	int r;

	if ((r = test_scratch_setup(scratch, sizeof(scratch))) != 0)
		return r;
	tmpfile_supported = probe_tmpfile(scratch);
	return 0;
}

int
main(int argc, char **argv)
{
	int nt, r;

	if (argc > 1 && strcmp(argv[1], "-x") == 0)
		return tool_main(argc - 1, argv + 1);
	setvbuf(stdout, NULL, _IOLBF, 0);
	umask(022);
	if ((r = setup_scratch()) != 0) {
		printf("not ok - test_atomic_upload: scratch directory: %s\n",
		    strerror(r));
		return 1;
	}
	test_note("scratch %s, O_TMPFILE %s", scratch,
	    tmpfile_supported ? "yes" : "no");
	test_set_filter(argc - 1, argv + 1);

#define RUN(fn) do { if (test_wanted(#fn)) fn(); } while (0)
#define RUN2(fn) do { if (test_wanted(#fn)) \
	for (nt = 0; nt < 2; nt++) fn(nt); } while (0)
	RUN(test_parse_sync);
	RUN(test_expand_dir);
	RUN(test_temp_name_shape);
	RUN2(test_new_file);
	RUN2(test_long_name);
	RUN2(test_trunc_keeps_old);
	RUN2(test_offsets_and_readback);
	RUN2(test_abort);
	RUN2(test_killed_child);
	RUN(test_sweep_spares_live);
	RUN(test_sweep_after_root_replace);
	RUN(test_sweep_is_careful);
	RUN2(test_replace_attrs);
	RUN2(test_replace_like_stock);
	RUN2(test_symlink_destination);
	RUN2(test_modes);
	RUN2(test_chown_setid);
	RUN2(test_excl);
	RUN2(test_modify_copy);
	RUN(test_modify_inplace);
	RUN(test_disabled);
	RUN2(test_expect_size);
	RUN2(test_tmpdir_same_fs);
	RUN2(test_retarget);
	RUN2(test_tmpdir_other_fs);
	RUN2(test_tmpdir_world_writable);
	RUN2(test_tmpdir_symlinks);
	RUN2(test_sync_levels);
	RUN2(test_concurrent);
	RUN(test_abort_all);
	RUN(test_abort_all_in_signal_handler);
	RUN(test_open_errors);
	RUN2(test_eintr);
#undef RUN
#undef RUN2

	test_scratch_done();
	return test_exit_status();
}
