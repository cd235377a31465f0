/*
 * Unit tests of resumable uploads (DESIGN.md 12): the store of partial
 * uploads (partial.h) and what the staging does with it (the resume
 * parts of atomic-upload.h: stage_interrupt, adopting kept data at a
 * non-truncating stage_open, the refusals after an interrupted
 * replacement, stage_partial_*, stage_sweep_partial).
 *
 *	test_partial [NAME-SUBSTRING...]	run the tests (TAP)
 *
 * Scratch directories as in test_atomic_upload (test_helper.h).  The
 * test of a store owned by somebody else needs root; it skips without.
 */
#include "includes.h"

#include <sys/types.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "atomic-upload.h"
#include "partial.h"
#include "test_helper.h"

#define WCT	(O_WRONLY | O_CREAT | O_TRUNC)
#define AGE	3600		/* partial data's lifetime in the stage tests */
#define NOBODY	65534

static char scratch[PATH_MAX];

/* ------------------------------------------------------------------ */
/* Helpers                                                             */

static void
lim_init(struct partial_limits *lim, time_t age)
{
	memset(lim, 0, sizeof(*lim));
	lim->age = age;
}

static void
opts_init(struct stage_opts *o, int no_tmpfile)
{
	memset(o, 0, sizeof(*o));
	o->no_tmpfile = no_tmpfile;
	o->sync = STAGE_SYNC_NONE;
	o->resume = 1;
	lim_init(&o->partial, AGE);
}

static const char *
variant(int no_tmpfile)
{
	return no_tmpfile ? "named" : "tmpfile";
}

static void
store_name(char *out, size_t len)
{
	snprintf(out, len, "%s%lu", PARTIAL_STORE_PREFIX,
	    (unsigned long)geteuid());
}

/* The path of the caller's store in `dir`. */
static void
store_path(const char *dir, char *out, size_t len)
{
	char name[64];

	store_name(name, sizeof(name));
	join(out, len, dir, name);
}

/* `dir` opened, and the key of `name` in it. */
static int
dir_key(const char *dir, const char *name, int *dfdp, struct partial_key *k)
{
	struct stat st;
	int dfd, r;

	*dfdp = -1;
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY)) < 0)
		return errno;
	if (fstat(dfd, &st) != 0) {
		r = errno;
		close(dfd);
		return r;
	}
	if ((r = partial_key_make(st.st_dev, st.st_ino, name, k)) != 0) {
		close(dfd);
		return r;
	}
	*dfdp = dfd;
	return 0;
}

static void
entry_of(char kind, const struct partial_key *k, char *out, size_t len)
{
	snprintf(out, len, "%c.%s", kind, k->file);
}

static int
has_entry(int storefd, char kind, const struct partial_key *k)
{
	char name[NAME_MAX + 1];
	struct stat st;

	entry_of(kind, k, name, sizeof(name));
	return fstatat(storefd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Set the times of `name` in `dfd` `secs` seconds into the past. */
static int
backdate(int dfd, const char *name, time_t secs)
{
	struct timespec ts[2];

	ts[0].tv_sec = ts[1].tv_sec = time(NULL) - secs;
	ts[0].tv_nsec = ts[1].tv_nsec = 0;
	return utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
}

static int
backdate_entry(int storefd, char kind, const struct partial_key *k,
    time_t secs)
{
	char name[NAME_MAX + 1];

	entry_of(kind, k, name, sizeof(name));
	return backdate(storefd, name, secs);
}

/* Write `s` as a whole new file `name` in `dfd`. */
static int
put_at(int dfd, const char *name, const char *s)
{
	int fd, r;

	(void)unlinkat(dfd, name, 0);
	if ((fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL, 0600)) < 0)
		return errno;
	r = write_all(fd, s, strlen(s));
	if (close(fd) != 0 && r == 0)
		r = errno;
	return r;
}

static int
put_data(int storefd, const struct partial_key *k, const char *s)
{
	char name[NAME_MAX + 1];

	entry_of('d', k, name, sizeof(name));
	return put_at(storefd, name, s);
}

/* Entries of directory `dir` whose names start with `prefix` (-1 if it
 * cannot be read). */
static int
count_prefix(const char *dir, const char *prefix)
{
	struct listing l;
	int i, n = 0;

	if (list_dir(dir, &l) != 0)
		return -1;
	for (i = 0; i < l.n && i < MAX_ENTRIES; i++) {
		if (strncmp(l.name[i], prefix, strlen(prefix)) == 0)
			n++;
	}
	return n;
}

/* Set back every entry of `dir` starting with `prefix`; returns how many. */
static int
backdate_prefix(const char *dir, const char *prefix, time_t secs)
{
	struct listing l;
	int i, dfd, n = 0;

	if (list_dir(dir, &l) != 0 ||
	    (dfd = open(dir, O_RDONLY | O_DIRECTORY)) < 0)
		return -1;
	for (i = 0; i < l.n && i < MAX_ENTRIES; i++) {
		if (strncmp(l.name[i], prefix, strlen(prefix)) == 0 &&
		    backdate(dfd, l.name[i], secs) == 0)
			n++;
	}
	close(dfd);
	return n;
}

/* A hashed key: "DEV.INO.#" and 32 hex digits. */
static int
is_hashed(const char *file, const char *dirpart)
{
	size_t i, n = strlen(dirpart);

	if (strncmp(file, dirpart, n) != 0 || file[n] != '#' ||
	    strlen(file + n + 1) != 32)
		return 0;
	for (i = n + 1; file[i] != '\0'; i++) {
		if (strchr("0123456789abcdef", file[i]) == NULL)
			return 0;
	}
	return 1;
}

static int
stat_mode_uid(const char *path, mode_t *mode, uid_t *uid)
{
	struct stat st;

	if (lstat(path, &st) != 0)
		return errno;
	*mode = st.st_mode;
	*uid = st.st_uid;
	return 0;
}

/* ------------------------------------------------------------------ */
/* partial.c: names and parsing                                        */

static void
test_key_make(void)
{
	char name[NAME_MAX + 2], other[NAME_MAX + 1];
	struct partial_key k, k2;
	size_t max_literal = NAME_MAX - strlen("d.") - strlen("801.1234.");

	TEST_START("partial_key_make: short names literal, long and '#' "
	    "names hashed, invalid names refused");
	ASSERT_INT_EQ(partial_key_make(0x801, 0x1234, "a.txt", &k), 0);
	ASSERT_STR_EQ(k.file, "801.1234.a.txt");
	ASSERT_STR_EQ(k.name, "a.txt");
	ASSERT_INT_EQ(k.dirdev, 0x801);
	ASSERT_INT_EQ(k.dirino, 0x1234);

	/* The longest literal name: "d." + key is exactly NAME_MAX. */
	memset(name, 'x', max_literal);
	name[max_literal] = '\0';
	ASSERT_INT_EQ(partial_key_make(0x801, 0x1234, name, &k), 0);
	ASSERT_INT_EQ(strlen(k.file) + 2, NAME_MAX);
	ASSERT_STR_EQ(k.file + strlen("801.1234."), name);
	/* One more and it is hashed; the record keeps the whole name. */
	name[max_literal] = 'x';
	name[max_literal + 1] = '\0';
	ASSERT_INT_EQ(partial_key_make(0x801, 0x1234, name, &k), 0);
	ASSERT_TRUE(is_hashed(k.file, "801.1234."));
	ASSERT_STR_EQ(k.name, name);

	/* 230 characters in a directory with a long device and inode. */
	memset(name, 'y', 230);
	name[230] = '\0';
	ASSERT_INT_EQ(partial_key_make((dev_t)0xfedcba9876543210ULL,
	    (ino_t)0x0123456789abcdefULL, name, &k), 0);
	ASSERT_TRUE(is_hashed(k.file, "fedcba9876543210.123456789abcdef."));
	ASSERT_INT_LE(strlen(k.file) + 2, NAME_MAX);

	/* NAME_MAX is allowed, one more is not. */
	memset(name, 'z', NAME_MAX);
	name[NAME_MAX] = '\0';
	ASSERT_INT_EQ(partial_key_make(1, 2, name, &k), 0);
	ASSERT_TRUE(is_hashed(k.file, "1.2."));
	ASSERT_STR_EQ(k.name, name);
	name[NAME_MAX] = 'z';
	name[NAME_MAX + 1] = '\0';
	ASSERT_INT_EQ(partial_key_make(1, 2, name, &k), ENAMETOOLONG);

	/* Deterministic; different names, directories: different keys. */
	memset(name, 'q', 240);
	name[240] = '\0';
	memcpy(other, name, 241);
	other[239] = 'r';
	ASSERT_INT_EQ(partial_key_make(1, 2, name, &k), 0);
	ASSERT_INT_EQ(partial_key_make(1, 2, name, &k2), 0);
	ASSERT_STR_EQ(k.file, k2.file);
	ASSERT_INT_EQ(partial_key_make(1, 2, other, &k2), 0);
	ASSERT_STR_NE(k.file, k2.file);
	ASSERT_INT_EQ(partial_key_make(1, 3, name, &k2), 0);
	ASSERT_STR_NE(k.file, k2.file);

	/* A name starting with '#' would look like a hash: hashed too. */
	ASSERT_INT_EQ(partial_key_make(1, 2, "#x", &k), 0);
	ASSERT_TRUE(is_hashed(k.file, "1.2."));
	ASSERT_STR_EQ(k.name, "#x");
	ASSERT_INT_EQ(partial_key_make(1, 2, "x", &k2), 0);
	ASSERT_STR_EQ(k2.file, "1.2.x");
	ASSERT_INT_EQ(partial_key_make(1, 2, "x#", &k2), 0);
	ASSERT_STR_EQ(k2.file, "1.2.x#");

	ASSERT_INT_EQ(partial_key_make(1, 2, "", &k), EINVAL);
	ASSERT_INT_EQ(partial_key_make(1, 2, "a/b", &k), EINVAL);
	ASSERT_INT_EQ(partial_key_make(1, 2, "/", &k), EINVAL);
	ASSERT_INT_EQ(partial_key_make(1, 2, "a/", &k), EINVAL);
	TEST_DONE();
}

static void
test_parse_age(void)
{
	static const struct {
		const char *s;
		long long want;
	} good[] = {
		{ "90", 90 }, { "30s", 30 }, { "5m", 300 }, { "24h", 86400 },
		{ "2d", 172800 }, { "1", 1 }, { "2147483647", 2147483647 },
		{ "24855d", 24855LL * 86400 },
	};
	static const struct {
		const char *s;
		int err;
	} bad[] = {
		{ "", EINVAL }, { "0", ERANGE }, { "0s", ERANGE },
		{ "x", EINVAL }, { "5y", EINVAL }, { "s", EINVAL },
		{ "-5", EINVAL }, { " 5", EINVAL }, { "5 ", EINVAL },
		{ "1.5h", EINVAL }, { "5mm", EINVAL }, { "5S", EINVAL },
		{ "2147483648", ERANGE }, { "24856d", ERANGE },
		{ "213503982334602d", ERANGE },
		{ "99999999999999999999", EINVAL },
		{ "1000000000000000000000000000000000000", EINVAL },
	};
	time_t t;
	size_t i;

	TEST_START("partial_parse_age: seconds, s, m, h, d; bad ones refused");
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		t = 0;
		if (!ASSERT_INT_EQ(partial_parse_age(good[i].s, &t), 0))
			test_diag("for \"%s\"", good[i].s);
		if (!ASSERT_INT_EQ(t, good[i].want))
			test_diag("for \"%s\"", good[i].s);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		t = 12345;
		if (!ASSERT_INT_EQ(partial_parse_age(bad[i].s, &t),
		    bad[i].err))
			test_diag("for \"%s\"", bad[i].s);
		if (!ASSERT_INT_EQ(t, 12345))
			test_diag("result written for \"%s\"", bad[i].s);
	}
	TEST_DONE();
}

static void
test_parse_size(void)
{
	static const struct {
		const char *s;
		long long want;
	} good[] = {
		{ "1024", 1024 }, { "0", 0 }, { "1K", 1024 }, { "1k", 1024 },
		{ "512M", 512LL << 20 }, { "512m", 512LL << 20 },
		{ "10G", 10LL << 30 }, { "2T", 2LL << 40 },
		{ "8388607T", (long long)(((1ULL << 63) - (1ULL << 40))) },
		{ "9223372036854775807", 9223372036854775807LL },
	};
	static const struct {
		const char *s;
		int err;
	} bad[] = {
		{ "", EINVAL }, { "K", EINVAL }, { "x", EINVAL },
		{ "5Q", EINVAL }, { "-1", EINVAL }, { "1.5G", EINVAL },
		{ "10GB", EINVAL }, { " 1K", EINVAL },
		{ "9223372036854775808", ERANGE }, { "8388608T", ERANGE },
		{ "17179869184G", ERANGE }, { "18446744073709551615K", ERANGE },
		{ "18446744073709551616", EINVAL },
	};
	off_t v;
	size_t i;

	TEST_START("partial_parse_size: bytes, K, M, G, T; bad ones refused");
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = -1;
		if (!ASSERT_INT_EQ(partial_parse_size(good[i].s, &v), 0))
			test_diag("for \"%s\"", good[i].s);
		if (!ASSERT_INT_EQ(v, good[i].want))
			test_diag("for \"%s\"", good[i].s);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 12345;
		if (!ASSERT_INT_EQ(partial_parse_size(bad[i].s, &v),
		    bad[i].err))
			test_diag("for \"%s\"", bad[i].s);
		if (!ASSERT_INT_EQ(v, 12345))
			test_diag("result written for \"%s\"", bad[i].s);
	}
	TEST_DONE();
}

static void
test_store_name(void)
{
	uid_t uid = 1;

	TEST_START("partial_is_store_name: the prefix and a uid, nothing else");
	ASSERT_TRUE(partial_is_store_name(".au-partial-0", &uid));
	ASSERT_INT_EQ(uid, 0);
	ASSERT_TRUE(partial_is_store_name(".au-partial-1000", &uid));
	ASSERT_INT_EQ(uid, 1000);
	ASSERT_TRUE(partial_is_store_name(".au-partial-4294967295", NULL));
	ASSERT_FALSE(partial_is_store_name(".au-partial-4294967296", NULL));
	ASSERT_FALSE(partial_is_store_name(".au-partial-", NULL));
	ASSERT_FALSE(partial_is_store_name(".au-partial-x", NULL));
	ASSERT_FALSE(partial_is_store_name(".au-partial-12a", NULL));
	ASSERT_FALSE(partial_is_store_name(".au-partial--1", NULL));
	ASSERT_FALSE(partial_is_store_name("au-partial-0", NULL));
	ASSERT_FALSE(partial_is_store_name(".au-partia-0", NULL));
	TEST_DONE();
}

/* ------------------------------------------------------------------ */
/* partial.c: the store                                                */

static void
test_store_open(void)
{
	char dir[PATH_MAX], store[PATH_MAX], other[PATH_MAX], sname[64];
	struct stat st;
	mode_t mode = 0;
	uid_t uid = 0;
	int dfd = -1, sfd = -1;

	TEST_START("partial_store_open: creates 0700; refuses a symlink, a "
	    "file, a mode others may enter");
	if (!ASSERT_INT_EQ(fresh_dir("store", dir, sizeof(dir)), 0) ||
	    !ASSERT_INT_NE(dfd = open(dir, O_RDONLY | O_DIRECTORY), -1))
		goto out;
	store_path(dir, store, sizeof(store));
	store_name(sname, sizeof(sname));
	join(other, sizeof(other), dir, "elsewhere");

	ASSERT_INT_EQ(partial_store_open(dfd, 0, &sfd), ENOENT);
	ASSERT_INT_EQ(sfd, -1);
	CHECK_ENTRIES(dir, NULL);
	/* Created whatever the umask lets through. */
	umask(0);
	if (!ASSERT_INT_EQ(partial_store_open(dfd, 1, &sfd), 0))
		goto out;
	umask(022);
	ASSERT_INT_EQ(fstat(sfd, &st), 0);
	ASSERT_TRUE(S_ISDIR(st.st_mode));
	ASSERT_INT_EQ(st.st_mode & 07777, 0700);
	ASSERT_INT_EQ(st.st_uid, geteuid());
	CHECK_ENTRIES(dir, sname);
	close(sfd);
	sfd = -1;
	ASSERT_INT_EQ(partial_store_open(dfd, 0, &sfd), 0);
	close(sfd);
	sfd = -1;
	ASSERT_INT_EQ(partial_store_open(dfd, 1, &sfd), 0);

	/* Tidy: only an empty one goes. */
	ASSERT_INT_EQ(put_at(sfd, "d.x", "data"), 0);
	partial_store_tidy(dfd, sfd);
	CHECK_ENTRIES(dir, sname);
	ASSERT_INT_EQ(unlinkat(sfd, "d.x", 0), 0);
	partial_store_tidy(dfd, sfd);
	CHECK_ENTRIES(dir, NULL);
	close(sfd);
	sfd = -1;

	/* A symbolic link to a directory of ours: refused, both ways. */
	ASSERT_INT_EQ(mkdir(other, 0700), 0);
	ASSERT_INT_EQ(symlink("elsewhere", store), 0);
	ASSERT_INT_EQ(partial_store_open(dfd, 0, &sfd), EPERM);
	ASSERT_INT_EQ(partial_store_open(dfd, 1, &sfd), EPERM);
	ASSERT_INT_EQ(sfd, -1);
	ASSERT_INT_EQ(unlink(store), 0);

	/* A file. */
	ASSERT_INT_EQ(put_str(store, "not a directory"), 0);
	ASSERT_INT_EQ(partial_store_open(dfd, 0, &sfd), EPERM);
	ASSERT_INT_EQ(partial_store_open(dfd, 1, &sfd), EPERM);
	ASSERT_INT_EQ(unlink(store), 0);

	/* Others may enter or list it. */
	ASSERT_INT_EQ(mkdir(store, 0700), 0);
	ASSERT_INT_EQ(chmod(store, 0755), 0);
	ASSERT_INT_EQ(partial_store_open(dfd, 0, &sfd), EPERM);
	ASSERT_INT_EQ(partial_store_open(dfd, 1, &sfd), EPERM);
	ASSERT_INT_EQ(chmod(store, 0701), 0);
	ASSERT_INT_EQ(partial_store_open(dfd, 1, &sfd), EPERM);
	ASSERT_INT_EQ(chmod(store, 0710), 0);
	ASSERT_INT_EQ(partial_store_open(dfd, 1, &sfd), EPERM);
	/* Refused, and left as it was. */
	ASSERT_INT_EQ(stat_mode_uid(store, &mode, &uid), 0);
	ASSERT_INT_EQ(mode & 07777, 0710);
	ASSERT_INT_EQ(chmod(store, 0700), 0);
	ASSERT_INT_EQ(partial_store_open(dfd, 0, &sfd), 0);
	if (sfd >= 0)
		close(sfd);
	sfd = -1;

	/* Somebody else's directory under our name. */
	if (is_root()) {
		ASSERT_INT_EQ(chown(store, NOBODY, NOBODY), 0);
		ASSERT_INT_EQ(partial_store_open(dfd, 0, &sfd), EPERM);
		ASSERT_INT_EQ(partial_store_open(dfd, 1, &sfd), EPERM);
		ASSERT_INT_EQ(stat_mode_uid(store, &mode, &uid), 0);
		ASSERT_INT_EQ(uid, NOBODY);
	} else
		TEST_SKIP("a store owned by another uid needs root");
 out:
	umask(022);
	if (sfd >= 0)
		close(sfd);
	if (dfd >= 0)
		close(dfd);
	TEST_DONE();
}

/* A scratch directory `name` with a store, and the key of "f" in it. */
struct fixture {
	char dir[PATH_MAX];
	char dest[PATH_MAX];
	int dfd;
	int sfd;
	struct partial_key k;
	struct partial_limits lim;
};

static int
fixture_open(struct fixture *fx, const char *name)
{
	int r;

	fx->dfd = fx->sfd = -1;
	lim_init(&fx->lim, 100);
	if ((r = fresh_dir(name, fx->dir, sizeof(fx->dir))) != 0 ||
	    (r = dir_key(fx->dir, "f", &fx->dfd, &fx->k)) != 0 ||
	    (r = partial_store_open(fx->dfd, 1, &fx->sfd)) != 0)
		return r;
	join(fx->dest, sizeof(fx->dest), fx->dir, "f");
	return 0;
}

static void
fixture_close(struct fixture *fx)
{
	if (fx->sfd >= 0)
		close(fx->sfd);
	if (fx->dfd >= 0)
		close(fx->dfd);
	fx->sfd = fx->dfd = -1;
}

/* Record the state of "f" now (`replacing` set as asked), and data. */
static int
fixture_keep(struct fixture *fx, int replacing, const char *data,
    struct partial_state *ps)
{
	int r;

	if ((r = partial_state_now(fx->dfd, "f", ps)) != 0)
		return r;
	ps->replacing = replacing;
	if ((r = partial_record_put(fx->sfd, &fx->k, ps, 0, NULL)) != 0)
		return r;
	return data == NULL ? 0 : put_data(fx->sfd, &fx->k, data);
}

static enum partial_kind
fixture_find(struct fixture *fx, struct partial_found *found)
{
	struct partial_state now;
	int r;

	memset(found, 0, sizeof(*found));
	if ((r = partial_state_now(fx->dfd, "f", &now)) != 0 ||
	    (r = partial_find(fx->sfd, &fx->k, &now, &fx->lim, found)) != 0) {
		test_fail(__FILE__, __LINE__, "partial_find: %s",
		    strerror(r));
		return (enum partial_kind)-1;
	}
	return found->kind;
}

static void
test_record_new_file(void)
{
	struct fixture fx;
	struct partial_state ps;
	struct partial_found found;

	TEST_START("record of a new file: data found; gone once the name "
	    "was created");
	if (!ASSERT_INT_EQ(fixture_open(&fx, "rec-new"), 0))
		goto out;
	/* Nothing yet. */
	ASSERT_INT_EQ(fixture_find(&fx, &found), PARTIAL_NONE);
	ASSERT_INT_EQ(fixture_keep(&fx, 0, "0123456789", &ps), 0);
	ASSERT_INT_EQ(ps.exists, 0);
	ASSERT_INT_EQ(fixture_find(&fx, &found), PARTIAL_DATA);
	ASSERT_INT_EQ(found.state.exists, 0);
	ASSERT_INT_EQ(found.state.replacing, 0);
	ASSERT_INT_EQ(found.st.st_size, 10);
	ASSERT_TRUE(S_ISREG(found.st.st_mode));
	/* Looking does not consume it. */
	ASSERT_INT_EQ(fixture_find(&fx, &found), PARTIAL_DATA);
	/* The partial data opens for reading and for continuing. */
	{
		char buf[16];
		int fd = -1;

		ASSERT_INT_EQ(partial_data_open(fx.sfd, &fx.k, O_RDONLY, &fd),
		    0);
		if (fd >= 0) {
			ASSERT_INT_EQ(pread(fd, buf, sizeof(buf), 0), 10);
			ASSERT_MEM_EQ(buf, "0123456789", 10);
			close(fd);
		}
	}
	/* Somebody else uploaded the name meanwhile: a resume would
	 * continue something that is not there any more. */
	ASSERT_INT_EQ(put_str(fx.dest, "theirs"), 0);
	ASSERT_INT_EQ(fixture_find(&fx, &found), PARTIAL_NONE);
	ASSERT_FALSE(has_entry(fx.sfd, 'r', &fx.k));
	ASSERT_FALSE(has_entry(fx.sfd, 'd', &fx.k));
	CHECK_STR(fx.dest, "theirs");
 out:
	fixture_close(&fx);
	TEST_DONE();
}

/* The old file is changed by `how`; the record must go stale. */
static void
stale_after(const char *label, int how)
{
	char name[128], tmp[PATH_MAX];
	struct fixture fx;
	struct partial_state ps;
	struct partial_found found;
	struct timespec ts[2];
	struct stat st;

	snprintf(name, sizeof(name), "record of a replacement: stale once the "
	    "old file is %s", label);
	TEST_START(name);
	if (!ASSERT_INT_EQ(fixture_open(&fx, "rec-stale"), 0))
		goto out;
	ASSERT_INT_EQ(put_str(fx.dest, "old content"), 0);
	ASSERT_INT_EQ(backdate(fx.dfd, "f", 1000), 0);
	ASSERT_INT_EQ(fixture_keep(&fx, 1, "new", &ps), 0);
	ASSERT_INT_EQ(ps.exists, 1);
	ASSERT_INT_EQ(fixture_find(&fx, &found), PARTIAL_DATA);
	ASSERT_INT_EQ(found.state.replacing, 1);
	ASSERT_INT_EQ(found.state.size, 11);
	ASSERT_INT_EQ(lstat(fx.dest, &st), 0);
	switch (how) {
	case 0:		/* touched: new times */
		ASSERT_INT_EQ(utimensat(fx.dfd, "f", NULL, 0), 0);
		break;
	case 1:		/* replaced by another file, same size and times */
		join(tmp, sizeof(tmp), fx.dir, "f.new");
		ASSERT_INT_EQ(put_str(tmp, "new content"), 0);
		ts[0] = st.st_atim;
		ts[1] = st.st_mtim;
		ASSERT_INT_EQ(utimensat(AT_FDCWD, tmp, ts, 0), 0);
		ASSERT_INT_EQ(rename(tmp, fx.dest), 0);
		break;
	case 2:		/* rewritten in place, same size, mtime put back */
		ASSERT_INT_EQ(put_file(fx.dest, "OLD CONTENT", 11, 0644), 0);
		ts[0] = st.st_atim;
		ts[1] = st.st_mtim;
		ASSERT_INT_EQ(utimensat(AT_FDCWD, fx.dest, ts, 0), 0);
		break;
	case 3:		/* removed */
		ASSERT_INT_EQ(unlink(fx.dest), 0);
		break;
	}
	ASSERT_INT_EQ(fixture_find(&fx, &found), PARTIAL_NONE);
	ASSERT_FALSE(has_entry(fx.sfd, 'r', &fx.k));
	ASSERT_FALSE(has_entry(fx.sfd, 'd', &fx.k));
 out:
	fixture_close(&fx);
	TEST_DONE();
}

static void
test_record_stale(void)
{
	stale_after("touched", 0);
	stale_after("replaced (same size and times, another inode)", 1);
	stale_after("rewritten in place (same size and mtime, new ctime)", 2);
	stale_after("removed", 3);
}

static void
test_record_expiry(void)
{
	struct fixture fx;
	struct partial_state ps;
	struct partial_found found;

	TEST_START("record expiry: data after lim.age, a replacement's "
	    "record after 7x (or record_age)");
	if (!ASSERT_INT_EQ(fixture_open(&fx, "rec-expiry"), 0))
		goto out;
	ASSERT_INT_EQ(put_str(fx.dest, "old"), 0);

	/* A replacement whose data is gone: refused, not forgotten. */
	ASSERT_INT_EQ(fixture_keep(&fx, 1, NULL, &ps), 0);
	ASSERT_INT_EQ(fixture_find(&fx, &found), PARTIAL_REPLACED);
	ASSERT_INT_EQ(found.state.replacing, 1);
	ASSERT_TRUE(has_entry(fx.sfd, 'r', &fx.k));

	/* Within lim.age: data. */
	ASSERT_INT_EQ(put_data(fx.sfd, &fx.k, "partial"), 0);
	ASSERT_INT_EQ(backdate_entry(fx.sfd, 'r', &fx.k, 50), 0);
	ASSERT_INT_EQ(fixture_find(&fx, &found), PARTIAL_DATA);
	/* Past it: the data goes, the record stays and refuses. */
	ASSERT_INT_EQ(backdate_entry(fx.sfd, 'r', &fx.k, 150), 0);
	ASSERT_INT_EQ(fixture_find(&fx, &found), PARTIAL_REPLACED);
	ASSERT_FALSE(has_entry(fx.sfd, 'd', &fx.k));
	ASSERT_TRUE(has_entry(fx.sfd, 'r', &fx.k));
	/* Still within 7 x lim.age. */
	ASSERT_INT_EQ(backdate_entry(fx.sfd, 'r', &fx.k, 650), 0);
	ASSERT_INT_EQ(fixture_find(&fx, &found), PARTIAL_REPLACED);
	/* Past that: gone. */
	ASSERT_INT_EQ(backdate_entry(fx.sfd, 'r', &fx.k, 750), 0);
	ASSERT_INT_EQ(fixture_find(&fx, &found), PARTIAL_NONE);
	ASSERT_FALSE(has_entry(fx.sfd, 'r', &fx.k));

	/* An explicit record_age. */
	fx.lim.record_age = 200;
	ASSERT_INT_EQ(fixture_keep(&fx, 1, NULL, &ps), 0);
	ASSERT_INT_EQ(backdate_entry(fx.sfd, 'r', &fx.k, 150), 0);
	ASSERT_INT_EQ(fixture_find(&fx, &found), PARTIAL_REPLACED);
	ASSERT_INT_EQ(backdate_entry(fx.sfd, 'r', &fx.k, 250), 0);
	ASSERT_INT_EQ(fixture_find(&fx, &found), PARTIAL_NONE);
	ASSERT_FALSE(has_entry(fx.sfd, 'r', &fx.k));
	fx.lim.record_age = 0;

	/* Not a replacement: record and data go together. */
	ASSERT_INT_EQ(fixture_keep(&fx, 0, "modified", &ps), 0);
	ASSERT_INT_EQ(fixture_find(&fx, &found), PARTIAL_DATA);
	ASSERT_INT_EQ(backdate_entry(fx.sfd, 'r', &fx.k, 150), 0);
	ASSERT_INT_EQ(fixture_find(&fx, &found), PARTIAL_NONE);
	ASSERT_FALSE(has_entry(fx.sfd, 'r', &fx.k));
	ASSERT_FALSE(has_entry(fx.sfd, 'd', &fx.k));
	/* ... and without data, the record alone is nothing. */
	ASSERT_INT_EQ(fixture_keep(&fx, 0, NULL, &ps), 0);
	ASSERT_INT_EQ(fixture_find(&fx, &found), PARTIAL_NONE);
	ASSERT_FALSE(has_entry(fx.sfd, 'r', &fx.k));
	CHECK_STR(fx.dest, "old");
 out:
	fixture_close(&fx);
	TEST_DONE();
}

static void
test_record_held(void)
{
	struct fixture fx;
	struct partial_state ps;
	struct partial_found found;
	struct stat st;
	char rname[NAME_MAX + 1];
	unsigned int removed = 0;
	int held = -1, held2 = -1, fd = -1;

	TEST_START("a held record: busy for others, EBUSY to replace; "
	    "release keeps or removes it");
	if (!ASSERT_INT_EQ(fixture_open(&fx, "rec-held"), 0))
		goto out;
	entry_of('r', &fx.k, rname, sizeof(rname));
	ASSERT_INT_EQ(put_str(fx.dest, "old"), 0);
	ASSERT_INT_EQ(partial_state_now(fx.dfd, "f", &ps), 0);
	ps.replacing = 1;
	if (!ASSERT_INT_EQ(partial_record_put(fx.sfd, &fx.k, &ps, 1, &held),
	    0) || !ASSERT_INT_NE(held, -1))
		goto out;
	/* flock locks belong to open file descriptions: every lookup
	 * opens the record again and sees it taken. */
	ASSERT_INT_EQ(fixture_find(&fx, &found), PARTIAL_BUSY);
	ASSERT_INT_EQ(found.state.replacing, 1);
	ASSERT_INT_EQ(partial_record_put(fx.sfd, &fx.k, &ps, 0, NULL), EBUSY);
	ASSERT_INT_EQ(partial_record_put(fx.sfd, &fx.k, &ps, 1, &fd), EBUSY);
	ASSERT_INT_EQ(fd, -1);
	/* Not forgotten, not expired while held, however old. */
	partial_forget(fx.sfd, &fx.k, 1);
	ASSERT_TRUE(has_entry(fx.sfd, 'r', &fx.k));
	ASSERT_INT_EQ(backdate_entry(fx.sfd, 'r', &fx.k, 10000), 0);
	ASSERT_INT_EQ(partial_expire(fx.sfd, &fx.lim, &removed), 0);
	ASSERT_TRUE(has_entry(fx.sfd, 'r', &fx.k));
	ASSERT_INT_EQ(fixture_find(&fx, &found), PARTIAL_BUSY);

	/* Aborted: kept, its age counting from now. */
	partial_record_release(fx.sfd, &fx.k, held, 0);
	held = -1;
	ASSERT_INT_EQ(fstatat(fx.sfd, rname, &st, AT_SYMLINK_NOFOLLOW), 0);
	ASSERT_INT_GE(st.st_mtime, time(NULL) - 5);
	ASSERT_INT_EQ(fixture_find(&fx, &found), PARTIAL_REPLACED);
	/* Not held any more: may be replaced. */
	if (!ASSERT_INT_EQ(partial_record_put(fx.sfd, &fx.k, &ps, 1, &held2),
	    0))
		goto out;
	ASSERT_INT_EQ(fixture_find(&fx, &found), PARTIAL_BUSY);
	/* Committed: removed. */
	partial_record_release(fx.sfd, &fx.k, held2, 1);
	held2 = -1;
	ASSERT_FALSE(has_entry(fx.sfd, 'r', &fx.k));
	ASSERT_INT_EQ(fixture_find(&fx, &found), PARTIAL_NONE);
	/* A temporary record is never left behind. */
	ASSERT_INT_EQ(count_prefix(fx.dir, "t."), 0);
 out:
	if (held >= 0)
		close(held);
	if (held2 >= 0)
		close(held2);
	if (fd >= 0)
		close(fd);
	fixture_close(&fx);
	TEST_DONE();
}

static void
test_record_corrupt(void)
{
	struct fixture fx;
	struct partial_state ps;
	struct partial_found found;
	struct partial_key k2;
	char rname[NAME_MAX + 1], r2[NAME_MAX + 1];
	int dfd2 = -1;

	TEST_START("a corrupt record, or one about another name, is removed "
	    "with its data");
	if (!ASSERT_INT_EQ(fixture_open(&fx, "rec-corrupt"), 0))
		goto out;
	entry_of('r', &fx.k, rname, sizeof(rname));
	ASSERT_INT_EQ(put_at(fx.sfd, rname, "garbage\n"), 0);
	ASSERT_INT_EQ(put_data(fx.sfd, &fx.k, "data"), 0);
	ASSERT_INT_EQ(fixture_find(&fx, &found), PARTIAL_NONE);
	ASSERT_FALSE(has_entry(fx.sfd, 'r', &fx.k));
	ASSERT_FALSE(has_entry(fx.sfd, 'd', &fx.k));

	/* Empty. */
	ASSERT_INT_EQ(put_at(fx.sfd, rname, ""), 0);
	ASSERT_INT_EQ(put_data(fx.sfd, &fx.k, "data"), 0);
	ASSERT_INT_EQ(fixture_find(&fx, &found), PARTIAL_NONE);
	ASSERT_FALSE(has_entry(fx.sfd, 'r', &fx.k));
	ASSERT_FALSE(has_entry(fx.sfd, 'd', &fx.k));

	/* A good record, but of "g", filed under the key of "f" (what a
	 * hash collision would look like). */
	ASSERT_INT_EQ(dir_key(fx.dir, "g", &dfd2, &k2), 0);
	ASSERT_INT_EQ(partial_state_now(fx.dfd, "f", &ps), 0);
	ASSERT_INT_EQ(partial_record_put(fx.sfd, &k2, &ps, 0, NULL), 0);
	entry_of('r', &k2, r2, sizeof(r2));
	ASSERT_INT_EQ(renameat(fx.sfd, r2, fx.sfd, rname), 0);
	ASSERT_INT_EQ(put_data(fx.sfd, &fx.k, "data"), 0);
	ASSERT_INT_EQ(fixture_find(&fx, &found), PARTIAL_NONE);
	ASSERT_FALSE(has_entry(fx.sfd, 'r', &fx.k));
	ASSERT_FALSE(has_entry(fx.sfd, 'd', &fx.k));
 out:
	if (dfd2 >= 0)
		close(dfd2);
	fixture_close(&fx);
	TEST_DONE();
}

static void
test_forget(void)
{
	struct fixture fx;
	struct partial_state ps;

	TEST_START("partial_forget: the data, and with `record` the record");
	if (!ASSERT_INT_EQ(fixture_open(&fx, "forget"), 0))
		goto out;
	ASSERT_INT_EQ(fixture_keep(&fx, 1, "data", &ps), 0);
	partial_forget(fx.sfd, &fx.k, 0);
	ASSERT_FALSE(has_entry(fx.sfd, 'd', &fx.k));
	ASSERT_TRUE(has_entry(fx.sfd, 'r', &fx.k));
	ASSERT_INT_EQ(put_data(fx.sfd, &fx.k, "data"), 0);
	partial_forget(fx.sfd, &fx.k, 1);
	ASSERT_FALSE(has_entry(fx.sfd, 'd', &fx.k));
	ASSERT_FALSE(has_entry(fx.sfd, 'r', &fx.k));
	/* Nothing there: nothing happens. */
	partial_forget(fx.sfd, &fx.k, 1);
 out:
	fixture_close(&fx);
	TEST_DONE();
}

/* A data file `name` of `len` bytes kept `age` seconds ago; *used gets
 * what it occupies. */
static int
room_file(int sfd, const char *name, size_t len, time_t age, off_t *used)
{
	struct stat st;
	char *data = pattern(len, 7);
	int fd, r;

	(void)unlinkat(sfd, name, 0);
	if ((fd = openat(sfd, name, O_WRONLY | O_CREAT | O_EXCL, 0600)) < 0) {
		free(data);
		return errno;
	}
	r = write_all(fd, data, len);
	free(data);
	if (r == 0 && fsync(fd) != 0)
		r = errno;
	if (r == 0 && fstat(fd, &st) != 0)
		r = errno;
	close(fd);
	if (r != 0)
		return r;
	*used = (off_t)st.st_blocks * 512;
	return backdate(sfd, name, age);
}

static void
test_make_room(void)
{
	struct fixture fx;
	off_t a = 0, b = 0, c = 0;

	TEST_START("partial_make_room: ENOSPC past the cap; the oldest data "
	    "goes first, records stay");
	if (!ASSERT_INT_EQ(fixture_open(&fx, "room"), 0))
		goto out;
	/* Written newest first, so the directory order is not the age. */
	ASSERT_INT_EQ(room_file(fx.sfd, "d.c", 8192, 100, &c), 0);
	ASSERT_INT_EQ(room_file(fx.sfd, "d.a", 8192, 300, &a), 0);
	ASSERT_INT_EQ(room_file(fx.sfd, "d.b", 8192, 200, &b), 0);
	ASSERT_INT_EQ(put_at(fx.sfd, "r.a", "record"), 0);
	ASSERT_INT_EQ(put_at(fx.sfd, "x.other", "not data"), 0);
	if (!ASSERT_INT_GT(a, 0) || !ASSERT_INT_GT(b, 0) ||
	    !ASSERT_INT_GT(c, 0))
		goto out;

	/* No cap. */
	fx.lim.max_bytes = 0;
	ASSERT_INT_EQ(partial_make_room(fx.sfd, (off_t)1 << 40, &fx.lim), 0);
	/* More than the cap alone: nothing removed. */
	fx.lim.max_bytes = a + b + c;
	ASSERT_INT_EQ(partial_make_room(fx.sfd, a + b + c + 1, &fx.lim),
	    ENOSPC);
	{
		char store[PATH_MAX];

		store_path(fx.dir, store, sizeof(store));
		ASSERT_INT_EQ(count_prefix(store, "d."), 3);
		/* Fits as it is. */
		ASSERT_INT_EQ(partial_make_room(fx.sfd, 0, &fx.lim), 0);
		ASSERT_INT_EQ(count_prefix(store, "d."), 3);
		/* Room for one more: the oldest goes, only it. */
		ASSERT_INT_EQ(partial_make_room(fx.sfd, a, &fx.lim), 0);
		CHECK_ENTRIES(store, "d.b", "d.c", "r.a", "x.other");
		/* Room for two: the next oldest. */
		ASSERT_INT_EQ(partial_make_room(fx.sfd, a + b, &fx.lim), 0);
		CHECK_ENTRIES(store, "d.c", "r.a", "x.other");
		/* All of it. */
		ASSERT_INT_EQ(partial_make_room(fx.sfd, a + b + c, &fx.lim),
		    0);
		CHECK_ENTRIES(store, "r.a", "x.other");
	}
 out:
	fixture_close(&fx);
	TEST_DONE();
}

struct names {
	int n;
	char name[8][NAME_MAX + 1];
	off_t size[8];
	int stop_after;		/* return 99 after this many (0: never) */
};

static int
collect_name(void *arg, const char *name)
{
	struct names *nm = arg;

	if (nm->n < 8)
		snprintf(nm->name[nm->n], sizeof(nm->name[0]), "%s", name);
	nm->n++;
	return nm->stop_after > 0 && nm->n >= nm->stop_after ? 99 : 0;
}

static int
names_have(const struct names *nm, const char *name)
{
	int i;

	for (i = 0; i < nm->n && i < 8; i++) {
		if (strcmp(nm->name[i], name) == 0)
			return i + 1;
	}
	return 0;
}

static void
test_list(void)
{
	char longname[241], rname[NAME_MAX + 1];
	struct fixture fx;
	struct partial_state ps;
	struct partial_key ka, kl, kh, kx, kother;
	struct names nm;
	struct stat st;

	TEST_START("partial_list: the names of one directory's records");
	if (!ASSERT_INT_EQ(fixture_open(&fx, "list"), 0))
		goto out;
	ASSERT_INT_EQ(fstat(fx.dfd, &st), 0);
	memset(longname, 'L', 240);
	longname[240] = '\0';
	memset(&ps, 0, sizeof(ps));
	ASSERT_INT_EQ(partial_key_make(st.st_dev, st.st_ino, "a", &ka), 0);
	ASSERT_INT_EQ(partial_key_make(st.st_dev, st.st_ino, longname, &kl),
	    0);
	ASSERT_INT_EQ(partial_key_make(st.st_dev, st.st_ino, "#h", &kh), 0);
	ASSERT_INT_EQ(partial_key_make(st.st_dev, st.st_ino, "x", &kx), 0);
	ASSERT_INT_EQ(partial_key_make(st.st_dev, st.st_ino + 1, "a",
	    &kother), 0);
	ASSERT_INT_EQ(partial_record_put(fx.sfd, &ka, &ps, 0, NULL), 0);
	ASSERT_INT_EQ(partial_record_put(fx.sfd, &kl, &ps, 0, NULL), 0);
	ASSERT_INT_EQ(partial_record_put(fx.sfd, &kh, &ps, 0, NULL), 0);
	/* Another directory's. */
	ASSERT_INT_EQ(partial_record_put(fx.sfd, &kother, &ps, 0, NULL), 0);
	/* A corrupt one, and one filed under another name's key. */
	entry_of('r', &kx, rname, sizeof(rname));
	ASSERT_INT_EQ(put_at(fx.sfd, rname, "garbage"), 0);
	{
		char from[NAME_MAX + 1], to[NAME_MAX + 1];
		struct partial_key ky;

		ASSERT_INT_EQ(partial_key_make(st.st_dev, st.st_ino, "y",
		    &ky), 0);
		ASSERT_INT_EQ(partial_record_put(fx.sfd, &ka, &ps, 0, NULL),
		    0);
		entry_of('r', &ka, from, sizeof(from));
		entry_of('r', &ky, to, sizeof(to));
		ASSERT_INT_EQ(linkat(fx.sfd, from, fx.sfd, to, 0), 0);
	}

	memset(&nm, 0, sizeof(nm));
	ASSERT_INT_EQ(partial_list(fx.sfd, st.st_dev, st.st_ino,
	    collect_name, &nm), 0);
	ASSERT_INT_EQ(nm.n, 3);
	ASSERT_TRUE(names_have(&nm, "a"));
	ASSERT_TRUE(names_have(&nm, longname));
	ASSERT_TRUE(names_have(&nm, "#h"));
	ASSERT_FALSE(names_have(&nm, "y"));
	ASSERT_FALSE(names_have(&nm, "x"));

	memset(&nm, 0, sizeof(nm));
	ASSERT_INT_EQ(partial_list(fx.sfd, st.st_dev, st.st_ino + 1,
	    collect_name, &nm), 0);
	ASSERT_INT_EQ(nm.n, 1);
	ASSERT_TRUE(names_have(&nm, "a"));

	/* The callback's error stops the listing. */
	memset(&nm, 0, sizeof(nm));
	nm.stop_after = 1;
	ASSERT_INT_EQ(partial_list(fx.sfd, st.st_dev, st.st_ino,
	    collect_name, &nm), 99);
	ASSERT_INT_EQ(nm.n, 1);
 out:
	fixture_close(&fx);
	TEST_DONE();
}

static void
test_expire(void)
{
	static const char *const names[] = { "A", "B", "C", "D", "E", "G",
	    "H" };
	struct partial_key k[7];
	struct fixture fx;
	struct partial_state ps, rep;
	struct stat st;
	char store[PATH_MAX], rname[NAME_MAX + 1];
	unsigned int removed = 99;
	size_t i;
	int held = -1;

	TEST_START("partial_expire: expired data and records, orphans, stale "
	    "temporary records");
	if (!ASSERT_INT_EQ(fixture_open(&fx, "expire"), 0))
		goto out;
	store_path(fx.dir, store, sizeof(store));
	ASSERT_INT_EQ(fstat(fx.dfd, &st), 0);
	for (i = 0; i < 7; i++)
		ASSERT_INT_EQ(partial_key_make(st.st_dev, st.st_ino, names[i],
		    &k[i]), 0);
	memset(&ps, 0, sizeof(ps));
	rep = ps;
	rep.replacing = 1;
	rep.exists = 1;
	/* A: fresh, kept. */
	ASSERT_INT_EQ(partial_record_put(fx.sfd, &k[0], &ps, 0, NULL), 0);
	ASSERT_INT_EQ(put_data(fx.sfd, &k[0], "a"), 0);
	/* B: expired, not a replacement: both go. */
	ASSERT_INT_EQ(partial_record_put(fx.sfd, &k[1], &ps, 0, NULL), 0);
	ASSERT_INT_EQ(put_data(fx.sfd, &k[1], "b"), 0);
	ASSERT_INT_EQ(backdate_entry(fx.sfd, 'r', &k[1], 150), 0);
	/* C: expired data of a replacement: the record stays. */
	ASSERT_INT_EQ(partial_record_put(fx.sfd, &k[2], &rep, 0, NULL), 0);
	ASSERT_INT_EQ(put_data(fx.sfd, &k[2], "c"), 0);
	ASSERT_INT_EQ(backdate_entry(fx.sfd, 'r', &k[2], 150), 0);
	/* D: a replacement's record past 7 x age. */
	ASSERT_INT_EQ(partial_record_put(fx.sfd, &k[3], &rep, 0, NULL), 0);
	ASSERT_INT_EQ(backdate_entry(fx.sfd, 'r', &k[3], 750), 0);
	/* E: a fresh record without data, not a replacement: nothing. */
	ASSERT_INT_EQ(partial_record_put(fx.sfd, &k[4], &ps, 0, NULL), 0);
	/* F: data without a record. */
	ASSERT_INT_EQ(put_at(fx.sfd, "d.orphan", "f"), 0);
	/* G: a corrupt record, with data. */
	entry_of('r', &k[5], rname, sizeof(rname));
	ASSERT_INT_EQ(put_at(fx.sfd, rname, "garbage"), 0);
	ASSERT_INT_EQ(put_data(fx.sfd, &k[5], "g"), 0);
	/* H: held (a replacement in flight), however old. */
	ASSERT_INT_EQ(partial_record_put(fx.sfd, &k[6], &rep, 1, &held), 0);
	ASSERT_INT_EQ(backdate_entry(fx.sfd, 'r', &k[6], 10000), 0);
	/* Temporary records: a dead process's, and a fresh one. */
	ASSERT_INT_EQ(put_at(fx.sfd, "t.0123456789abcdef", ""), 0);
	ASSERT_INT_EQ(backdate(fx.sfd, "t.0123456789abcdef", 120), 0);
	ASSERT_INT_EQ(put_at(fx.sfd, "t.fedcba9876543210", ""), 0);

	ASSERT_INT_EQ(partial_expire(fx.sfd, &fx.lim, &removed), 0);
	ASSERT_INT_EQ(removed, 4);	/* the data of B, C, G; F */
	ASSERT_TRUE(has_entry(fx.sfd, 'r', &k[0]));
	ASSERT_TRUE(has_entry(fx.sfd, 'd', &k[0]));
	ASSERT_FALSE(has_entry(fx.sfd, 'r', &k[1]));
	ASSERT_FALSE(has_entry(fx.sfd, 'd', &k[1]));
	ASSERT_TRUE(has_entry(fx.sfd, 'r', &k[2]));
	ASSERT_FALSE(has_entry(fx.sfd, 'd', &k[2]));
	ASSERT_FALSE(has_entry(fx.sfd, 'r', &k[3]));
	ASSERT_FALSE(has_entry(fx.sfd, 'r', &k[4]));
	ASSERT_FALSE(has_entry(fx.sfd, 'r', &k[5]));
	ASSERT_FALSE(has_entry(fx.sfd, 'd', &k[5]));
	ASSERT_TRUE(has_entry(fx.sfd, 'r', &k[6]));
	ASSERT_INT_EQ(count_prefix(store, "d."), 1);
	ASSERT_INT_EQ(count_prefix(store, "r."), 3);
	ASSERT_INT_EQ(count_prefix(store, "t."), 1);
	ASSERT_INT_EQ(faccessat(fx.sfd, "t.fedcba9876543210", F_OK, 0), 0);

	/* Again: nothing more to do. */
	ASSERT_INT_EQ(partial_expire(fx.sfd, &fx.lim, &removed), 0);
	ASSERT_INT_EQ(removed, 0);
	ASSERT_INT_EQ(count_prefix(store, "r."), 3);
 out:
	if (held >= 0)
		close(held);
	fixture_close(&fx);
	TEST_DONE();
}

/* ------------------------------------------------------------------ */
/* Staging: keeping, continuing, refusing                              */

/* An upload of `data` to `path` (opened `oflags`) whose connection is
 * lost; *kept gets what stage_interrupt() says it kept. */
static int
lost_upload(const struct stage_opts *o, const char *path, int oflags,
    const void *data, size_t len, off_t *kept)
{
	struct staged_file *sf = NULL;
	struct stage_report rep;
	int r;

	*kept = -2;
	if ((r = stage_open(o, path, oflags, 0644, &sf)) != 0)
		return r;
	if (len > 0 && (r = stage_write(sf, data, len, 0)) != 0) {
		stage_abort(sf, "test", NULL);
		return r;
	}
	memset(&rep, 0, sizeof(rep));
	stage_interrupt(sf, "connection lost", &rep);
	*kept = rep.partial_kept;
	return 0;
}

/*
 * A non-truncating open of the old file of an interrupted replacement (or
 * of one in flight elsewhere) is allowed: a rewrite from the start is an
 * upload like any other.  A write that continues the old file is refused
 * (STAGE_E_REPLACED, or STAGE_E_INFLIGHT while a replacement or a resume
 * is in flight), and the commit then fails.  Returns the open's
 * error, else the write's result; EPROTO if the commit of a refused
 * write succeeded.
 */
static int
continue_refused(const struct stage_opts *o, const char *dest, int oflags)
{
	struct staged_file *sf = NULL;
	int r;

	if ((r = stage_open(o, dest, oflags, 0644, &sf)) != 0)
		return r;
	r = (oflags & O_APPEND) ? stage_append(sf, "X", 1) :
	    stage_write(sf, "X", 1, 3);
	if (stage_commit(sf, NULL) == 0 && r != 0)
		return EPROTO;
	return r;
}

/* Read all of `fd` (at most `len`); returns the count or -1. */
static ssize_t
read_fd(int fd, char *buf, size_t len)
{
	size_t off = 0;
	ssize_t n;

	while (off < len) {
		if ((n = pread(fd, buf + off, len - off, (off_t)off)) < 0)
			return -1;
		if (n == 0)
			break;
		off += (size_t)n;
	}
	return (ssize_t)off;
}

/* The store in `base` holds `d` data files and `r` records, nothing else. */
static int
check_store(const char *file, int line, const char *base, int d, int r)
{
	char store[PATH_MAX];
	struct listing l;
	struct stat st;
	int nd, nr;

	store_path(base, store, sizeof(store));
	if (lstat(store, &st) != 0)
		return test_fail(file, line, "no store %s (want %d data, %d "
		    "records)", store, d, r);
	if (!S_ISDIR(st.st_mode) || (st.st_mode & 07777) != 0700 ||
	    st.st_uid != geteuid())
		return test_fail(file, line, "store %s: mode %o uid %u", store,
		    (unsigned int)st.st_mode, (unsigned int)st.st_uid);
	nd = count_prefix(store, "d.");
	nr = count_prefix(store, "r.");
	if (list_dir(store, &l) != 0 || nd != d || nr != r || l.n != d + r)
		return test_fail(file, line, "store %s: %d entries, %d data, "
		    "%d records (want %d data, %d records)", store, l.n, nd,
		    nr, d, r);
	return 1;
}
#define CHECK_STORE(base, d, r) check_store(__FILE__, __LINE__, (base), \
	(d), (r))

/* No store in `base` (gone, or never made). */
static int
check_no_store(const char *file, int line, const char *base)
{
	char store[PATH_MAX];
	struct listing l;
	struct stat st;

	store_path(base, store, sizeof(store));
	if (lstat(store, &st) != 0 && errno == ENOENT)
		return 1;
	if (list_dir(store, &l) != 0)
		l.n = -1;
	return test_fail(file, line, "store %s is still there (%d entries)",
	    store, l.n);
}
#define CHECK_NO_STORE(base) check_no_store(__FILE__, __LINE__, (base))

/* The store in `base` holds no data and no record (it may be there). */
static int
check_store_empty(const char *file, int line, const char *base)
{
	char store[PATH_MAX];
	struct listing l;

	store_path(base, store, sizeof(store));
	if (list_dir(store, &l) != 0 || l.n == 0)
		return 1;
	return test_fail(file, line, "store %s holds %d entries (first %s)",
	    store, l.n, l.name[0]);
}
#define CHECK_STORE_EMPTY(base) check_store_empty(__FILE__, __LINE__, \
	(base))

static void
test_interrupt_resume(int no_tmpfile, int creat)
{
	char name[160], dir[PATH_MAX], dest[PATH_MAX], sname[64], *buf = NULL;
	const size_t len1 = 100000, len2 = 54321;
	char *first = pattern(len1, 1), *rest = pattern(len2, 2), *full;
	struct staged_file *sf = NULL;
	struct stage_opts o, off;
	struct stage_report rep;
	struct stat st;
	off_t kept;
	int fd = -1;

	full = malloc(len1 + len2);
	buf = malloc(len1 + 1);
	snprintf(name, sizeof(name), "interrupt keeps the data, O_WRONLY%s "
	    "continues it, the commit tidies the store (%s)",
	    creat ? "|O_CREAT" : "", variant(no_tmpfile));
	TEST_START(name);
	if (full == NULL || buf == NULL ||
	    !ASSERT_INT_EQ(fresh_dir("resume", dir, sizeof(dir)), 0))
		goto out;
	memcpy(full, first, len1);
	memcpy(full + len1, rest, len2);
	join(dest, sizeof(dest), dir, "up.bin");
	store_name(sname, sizeof(sname));
	opts_init(&o, no_tmpfile);
	off = o;
	off.resume = 0;

	if (!ASSERT_INT_EQ(lost_upload(&o, dest, WCT, first, len1, &kept), 0))
		goto out;
	ASSERT_INT_EQ(kept, len1);
	ASSERT_INT_EQ(stage_count(), 0);
	CHECK_ABSENT(dest);
	CHECK_ENTRIES(dir, sname);
	CHECK_STORE(dir, 1, 1);

	/* The same user's later sessions see it at the name. */
	ASSERT_INT_EQ(stage_partial_stat(&o, dest, 1, &st), 0);
	ASSERT_INT_EQ(st.st_size, len1);
	ASSERT_TRUE(S_ISREG(st.st_mode));
	ASSERT_INT_EQ(st.st_mode & 07777, 0644);
	ASSERT_INT_EQ(stage_partial_stat(&o, dest, 0, &st), 0);
	ASSERT_INT_EQ(stage_partial_stat(&off, dest, 1, &st), ENOENT);
	ASSERT_INT_EQ(stage_partial_stat(NULL, dest, 1, &st), ENOENT);
	if (ASSERT_INT_EQ(stage_partial_open(&o, dest, O_RDONLY, &fd), 0)) {
		ASSERT_INT_EQ(read_fd(fd, buf, len1 + 1), len1);
		ASSERT_MEM_EQ(buf, first, len1);
		close(fd);
		fd = -1;
	}
	ASSERT_INT_EQ(stage_partial_open(&off, dest, O_RDONLY, &fd), ENOENT);

	/* A non-truncating write-open continues it. */
	if (!ASSERT_INT_EQ(stage_open(&o, dest, creat ? O_WRONLY | O_CREAT :
	    O_WRONLY, 0644, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_resumed(sf), len1);
	ASSERT_INT_EQ(stage_fstat(sf, &st), 0);
	ASSERT_INT_EQ(st.st_size, len1);
	/* Taken: nobody else continues it too, nothing is listed. */
	ASSERT_INT_EQ(stage_partial_stat(&o, dest, 1, &st), ENOENT);
	CHECK_ABSENT(dest);
	ASSERT_INT_EQ(stage_write(sf, rest, len2, (off_t)len1), 0);
	memset(&rep, 0, sizeof(rep));
	ASSERT_INT_EQ(stage_commit(sf, &rep), 0);
	sf = NULL;
	ASSERT_INT_EQ(rep.published, 1);
	ASSERT_INT_EQ(rep.resumed_from, len1);
	ASSERT_INT_EQ(rep.bytes, len1 + len2);
	CHECK_CONTENT(dest, full, len1 + len2);
	ASSERT_INT_EQ(lstat(dest, &st), 0);
	ASSERT_INT_EQ(st.st_mode & 07777, 0644);
	/* Nothing left: no data, no record, no store. */
	CHECK_ENTRIES(dir, "up.bin");
	ASSERT_INT_EQ(stage_partial_stat(&o, dest, 1, &st), ENOENT);
 out:
	if (sf != NULL)
		stage_abort(sf, "test", NULL);
	if (fd >= 0)
		close(fd);
	free(first);
	free(rest);
	free(full);
	free(buf);
	TEST_DONE();
}

static void
test_interrupt_resume_all(int no_tmpfile)
{
	test_interrupt_resume(no_tmpfile, 0);
	test_interrupt_resume(no_tmpfile, 1);
}

/* A resumed upload interrupted again is kept again, all of it. */
static void
test_resume_twice(int no_tmpfile)
{
	char name[128], dir[PATH_MAX], dest[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	struct stage_report rep;
	struct stat st;
	off_t kept;

	snprintf(name, sizeof(name), "a resumed upload interrupted again "
	    "keeps all it has (%s)", variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("resume-twice", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "f");
	opts_init(&o, no_tmpfile);
	ASSERT_INT_EQ(lost_upload(&o, dest, WCT, "one,", 4, &kept), 0);
	ASSERT_INT_EQ(kept, 4);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, O_WRONLY, 0, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_resumed(sf), 4);
	ASSERT_INT_EQ(stage_write(sf, "two,", 4, 4), 0);
	memset(&rep, 0, sizeof(rep));
	stage_interrupt(sf, "lost again", &rep);
	sf = NULL;
	ASSERT_INT_EQ(rep.partial_kept, 8);
	CHECK_STORE(dir, 1, 1);
	ASSERT_INT_EQ(stage_partial_stat(&o, dest, 1, &st), 0);
	ASSERT_INT_EQ(st.st_size, 8);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, O_RDWR, 0, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_resumed(sf), 8);
	ASSERT_INT_EQ(stage_write(sf, "three", 5, 8), 0);
	ASSERT_INT_EQ(stage_commit(sf, NULL), 0);
	sf = NULL;
	CHECK_STR(dest, "one,two,three");
	CHECK_ENTRIES(dir, "f");
 out:
	if (sf != NULL)
		stage_abort(sf, "test", NULL);
	TEST_DONE();
}

static void
test_trunc_discards(int no_tmpfile)
{
	char name[128], dir[PATH_MAX], dest[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	struct stat st;
	off_t kept;

	snprintf(name, sizeof(name), "a truncating open discards the kept "
	    "data (%s)", variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("trunc-discards", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "f");
	opts_init(&o, no_tmpfile);
	ASSERT_INT_EQ(lost_upload(&o, dest, WCT, "partial data", 12, &kept),
	    0);
	ASSERT_INT_EQ(kept, 12);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, WCT, 0644, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_resumed(sf), 0);
	ASSERT_INT_EQ(stage_fstat(sf, &st), 0);
	ASSERT_INT_EQ(st.st_size, 0);
	/* Gone at the open, not only at the commit. */
	ASSERT_INT_EQ(stage_partial_stat(&o, dest, 1, &st), ENOENT);
	CHECK_NO_STORE(dir);
	ASSERT_INT_EQ(stage_write(sf, "new", 3, 0), 0);
	ASSERT_INT_EQ(stage_commit(sf, NULL), 0);
	sf = NULL;
	CHECK_STR(dest, "new");
	CHECK_ENTRIES(dir, "f");
 out:
	if (sf != NULL)
		stage_abort(sf, "test", NULL);
	TEST_DONE();
}

static void
test_excl_and_forget(int no_tmpfile)
{
	char name[128], dir[PATH_MAX], dest[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	struct stat st;
	off_t kept;

	snprintf(name, sizeof(name), "O_EXCL: EEXIST while a partial exists; "
	    "stage_partial_forget removes it (%s)", variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("excl-forget", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "f");
	opts_init(&o, no_tmpfile);
	ASSERT_INT_EQ(lost_upload(&o, dest, WCT, "partial", 7, &kept), 0);
	ASSERT_INT_EQ(kept, 7);
	ASSERT_INT_EQ(stage_open(&o, dest, O_WRONLY | O_CREAT | O_EXCL, 0644,
	    &sf), EEXIST);
	ASSERT_PTR_EQ(sf, NULL);
	ASSERT_INT_EQ(stage_count(), 0);
	CHECK_ABSENT(dest);
	CHECK_STORE(dir, 1, 1);
	ASSERT_INT_EQ(stage_partial_stat(&o, dest, 1, &st), 0);

	ASSERT_INT_EQ(stage_partial_forget(&o, dest), 0);
	ASSERT_INT_EQ(stage_partial_stat(&o, dest, 1, &st), ENOENT);
	CHECK_ENTRIES(dir, NULL);
	ASSERT_INT_EQ(stage_partial_forget(&o, dest), ENOENT);
	/* A non-truncating open without O_CREAT: there is no file. */
	ASSERT_INT_EQ(stage_open(&o, dest, O_WRONLY, 0, &sf), ENOENT);
	ASSERT_INT_EQ(stage_count(), 0);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, O_WRONLY | O_CREAT | O_EXCL,
	    0644, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_resumed(sf), 0);
	ASSERT_INT_EQ(stage_write(sf, "x", 1, 0), 0);
	ASSERT_INT_EQ(stage_commit(sf, NULL), 0);
	sf = NULL;
	CHECK_STR(dest, "x");
	CHECK_ENTRIES(dir, "f");
 out:
	if (sf != NULL)
		stage_abort(sf, "test", NULL);
	TEST_DONE();
}

/* Somebody else changes the destination after the interruption: the
 * kept data is not continued, and goes. */
static void
test_destination_changed(int no_tmpfile)
{
	char name[128], dir[PATH_MAX], dest[PATH_MAX], old[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	struct stat st;
	off_t kept;

	snprintf(name, sizeof(name), "kept data is dropped once somebody "
	    "else changed the destination (%s)", variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("changed", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "new");
	join(old, sizeof(old), dir, "old");
	opts_init(&o, no_tmpfile);

	/* A new file's upload; then the name is created by another. */
	ASSERT_INT_EQ(lost_upload(&o, dest, WCT, "mine", 4, &kept), 0);
	ASSERT_INT_EQ(kept, 4);
	ASSERT_INT_EQ(put_str(dest, "theirs"), 0);
	ASSERT_INT_EQ(stage_partial_stat(&o, dest, 1, &st), ENOENT);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, O_WRONLY, 0, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_resumed(sf), 0);
	ASSERT_INT_EQ(stage_commit(sf, NULL), 0);
	sf = NULL;
	CHECK_STR(dest, "theirs");
	CHECK_STORE_EMPTY(dir);	/* (the store itself: test_stale_tidied) */

	/* A replacement's; then the old file is replaced by another. */
	ASSERT_INT_EQ(put_str(old, "old content"), 0);
	ASSERT_INT_EQ(lost_upload(&o, old, WCT, "NEW", 3, &kept), 0);
	ASSERT_INT_EQ(kept, 3);
	CHECK_STR(old, "old content");
	ASSERT_INT_EQ(stage_partial_stat(&o, old, 1, &st), 0);
	ASSERT_INT_EQ(st.st_size, 3);
	ASSERT_INT_EQ(put_str(dest, "other content"), 0);
	ASSERT_INT_EQ(rename(dest, old), 0);
	ASSERT_INT_EQ(stage_partial_stat(&o, old, 1, &st), ENOENT);
	if (!ASSERT_INT_EQ(stage_open(&o, old, O_WRONLY, 0, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_resumed(sf), 0);
	ASSERT_INT_EQ(stage_write(sf, "O", 1, 0), 0);
	ASSERT_INT_EQ(stage_commit(sf, NULL), 0);
	sf = NULL;
	CHECK_STR(old, "Other content");
	CHECK_STORE_EMPTY(dir);
 out:
	if (sf != NULL)
		stage_abort(sf, "test", NULL);
	TEST_DONE();
}

/*
 * Stale kept data (its destination changed) is dropped when it is looked
 * up; the store it leaves empty must go as well, as after a commit: a
 * hidden empty directory makes the user's RMDIR of the directory fail
 * (ENOTEMPTY) although a listing shows nothing in it.
 */
static void
test_stale_tidied(int no_tmpfile)
{
	char name[160], dir[PATH_MAX], dest[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	struct stat st;
	off_t kept;

	snprintf(name, sizeof(name), "stale kept data dropped at a lookup "
	    "leaves no empty store behind (%s)", variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("stale-tidy", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "f");
	opts_init(&o, no_tmpfile);

	/* A replacement is interrupted; the user then removes the file
	 * (unlink, then stage_partial_forget, as REMOVE does) and the
	 * directory. */
	ASSERT_INT_EQ(put_str(dest, "old content"), 0);
	ASSERT_INT_EQ(lost_upload(&o, dest, WCT, "new", 3, &kept), 0);
	ASSERT_INT_EQ(kept, 3);
	ASSERT_INT_EQ(unlink(dest), 0);
	(void)stage_partial_forget(&o, dest);
	CHECK_STORE_EMPTY(dir);
	CHECK_NO_STORE(dir);
	if (rmdir(dir) == 0)
		ASSERT_INT_EQ(mkdir(dir, 0755), 0);
	else
		test_diag("rmdir of the emptied directory: %s",
		    strerror(errno));

	/* A new file's partial; the name is made by somebody else, and a
	 * lookup drops it. */
	ASSERT_INT_EQ(lost_upload(&o, dest, WCT, "mine", 4, &kept), 0);
	ASSERT_INT_EQ(kept, 4);
	ASSERT_INT_EQ(put_str(dest, "theirs"), 0);
	ASSERT_INT_EQ(stage_partial_stat(&o, dest, 1, &st), ENOENT);
	CHECK_STORE_EMPTY(dir);
	CHECK_NO_STORE(dir);

	/* The same through a non-truncating open, and its commit. */
	ASSERT_INT_EQ(unlink(dest), 0);
	ASSERT_INT_EQ(lost_upload(&o, dest, WCT, "mine", 4, &kept), 0);
	ASSERT_INT_EQ(put_str(dest, "theirs"), 0);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, O_WRONLY, 0, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_resumed(sf), 0);
	ASSERT_INT_EQ(stage_commit(sf, NULL), 0);
	sf = NULL;
	CHECK_STR(dest, "theirs");
	CHECK_NO_STORE(dir);
 out:
	if (sf != NULL)
		stage_abort(sf, "test", NULL);
	TEST_DONE();
}

static void
test_replaced(int no_tmpfile)
{
	static const char old_content[] = "OLD CONTENT, a whole old file\n";
	char name[160], dir[PATH_MAX], dest[PATH_MAX], store[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	struct stat st;
	off_t kept;

	snprintf(name, sizeof(name), "an interrupted replacement whose data "
	    "expired is never continued onto the old file (%s)",
	    variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("replaced", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "f");
	store_path(dir, store, sizeof(store));
	opts_init(&o, no_tmpfile);
	ASSERT_INT_EQ(put_str(dest, old_content), 0);
	ASSERT_INT_EQ(lost_upload(&o, dest, WCT, "NEW PART", 8, &kept), 0);
	ASSERT_INT_EQ(kept, 8);
	CHECK_STR(dest, old_content);
	CHECK_STORE(dir, 1, 1);
	/* The partial stands in for the file, for this user. */
	ASSERT_INT_EQ(stage_partial_stat(&o, dest, 1, &st), 0);
	ASSERT_INT_EQ(st.st_size, 8);

	/* The data expires; the record outlives it. */
	ASSERT_INT_EQ(backdate_prefix(store, "r.", AGE + 60), 1);
	ASSERT_INT_EQ(stage_partial_stat(&o, dest, 1, &st), ENOENT);
	ASSERT_INT_EQ(continue_refused(&o, dest, O_WRONLY),
	    STAGE_E_REPLACED);
	ASSERT_INT_EQ(continue_refused(&o, dest, O_RDWR),
	    STAGE_E_REPLACED);
	ASSERT_INT_EQ(continue_refused(&o, dest, O_WRONLY | O_CREAT),
	    STAGE_E_REPLACED);
	ASSERT_INT_EQ(continue_refused(&o, dest, O_WRONLY | O_APPEND),
	    STAGE_E_REPLACED);
	ASSERT_PTR_EQ(sf, NULL);
	ASSERT_INT_EQ(stage_count(), 0);
	CHECK_STR(dest, old_content);
	CHECK_STORE(dir, 0, 1);
	/* Still refused later, until 7 x the age. */
	ASSERT_INT_EQ(backdate_prefix(store, "r.", 6 * AGE), 1);
	ASSERT_INT_EQ(continue_refused(&o, dest, O_WRONLY),
	    STAGE_E_REPLACED);
	CHECK_STR(dest, old_content);

	/* A truncating open is the way out, and its commit clears it. */
	if (!ASSERT_INT_EQ(stage_open(&o, dest, WCT, 0644, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_resumed(sf), 0);
	ASSERT_INT_EQ(stage_write(sf, "NEW CONTENT", 11, 0), 0);
	ASSERT_INT_EQ(stage_commit(sf, NULL), 0);
	sf = NULL;
	CHECK_STR(dest, "NEW CONTENT");
	CHECK_ENTRIES(dir, "f");
	/* Now a modification is allowed again. */
	if (!ASSERT_INT_EQ(stage_open(&o, dest, O_WRONLY, 0, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_write(sf, "n", 1, 0), 0);
	ASSERT_INT_EQ(stage_commit(sf, NULL), 0);
	sf = NULL;
	CHECK_STR(dest, "nEW CONTENT");
	CHECK_ENTRIES(dir, "f");

	/* Past 7 x the age the record goes too. */
	ASSERT_INT_EQ(lost_upload(&o, dest, WCT, "NEWER", 5, &kept), 0);
	ASSERT_INT_EQ(kept, 5);
	ASSERT_INT_EQ(backdate_prefix(store, "r.", 7 * AGE + 60), 1);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, O_WRONLY, 0, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_resumed(sf), 0);
	stage_abort(sf, "test", NULL);
	sf = NULL;
	CHECK_STR(dest, "nEW CONTENT");
 out:
	if (sf != NULL)
		stage_abort(sf, "test", NULL);
	TEST_DONE();
}

/* A kept replacement, resumed: the result is all new data. */
static void
test_replacement_resumed(int no_tmpfile)
{
	char name[128], dir[PATH_MAX], dest[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	off_t kept;

	snprintf(name, sizeof(name), "an interrupted replacement continues "
	    "from its kept data, not the old file (%s)", variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("repl-resumed", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "f");
	opts_init(&o, no_tmpfile);
	ASSERT_INT_EQ(put_str(dest, "0123456789old old old\n"), 0);
	ASSERT_INT_EQ(lost_upload(&o, dest, WCT, "abcde", 5, &kept), 0);
	ASSERT_INT_EQ(kept, 5);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, O_WRONLY, 0, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_resumed(sf), 5);
	ASSERT_INT_EQ(stage_write(sf, "fgh", 3, 5), 0);
	ASSERT_INT_EQ(stage_commit(sf, NULL), 0);
	sf = NULL;
	CHECK_STR(dest, "abcdefgh");
	CHECK_ENTRIES(dir, "f");

	/* Resumed, then aborted: the data went with the staging, but the
	 * record of the replacement stays and refuses. */
	ASSERT_INT_EQ(lost_upload(&o, dest, WCT, "ABCDE", 5, &kept), 0);
	ASSERT_INT_EQ(kept, 5);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, O_WRONLY, 0, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_resumed(sf), 5);
	ASSERT_INT_EQ(stage_write(sf, "F", 1, 5), 0);
	stage_abort(sf, "client gave up", NULL);
	sf = NULL;
	CHECK_STR(dest, "abcdefgh");
	CHECK_STORE(dir, 0, 1);
	ASSERT_INT_EQ(continue_refused(&o, dest, O_WRONLY),
	    STAGE_E_REPLACED);
	CHECK_STR(dest, "abcdefgh");
 out:
	if (sf != NULL)
		stage_abort(sf, "test", NULL);
	TEST_DONE();
}

/* A resumed new file, aborted: nothing is left. */
static void
test_resumed_new_aborted(int no_tmpfile)
{
	char name[128], dir[PATH_MAX], dest[PATH_MAX], longname[241];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	off_t kept;

	snprintf(name, sizeof(name), "a resumed new file (long name), "
	    "aborted, leaves nothing (%s)", variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("resumed-abort", dir, sizeof(dir)), 0))
		goto out;
	memset(longname, 'l', 240);
	longname[240] = '\0';
	join(dest, sizeof(dest), dir, longname);
	opts_init(&o, no_tmpfile);
	ASSERT_INT_EQ(lost_upload(&o, dest, WCT, "12345", 5, &kept), 0);
	ASSERT_INT_EQ(kept, 5);
	CHECK_STORE(dir, 1, 1);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, O_WRONLY, 0, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_resumed(sf), 5);
	stage_abort(sf, "client gave up", NULL);
	sf = NULL;
	CHECK_ENTRIES(dir, NULL);
	/* And a resume of the long name to the end. */
	ASSERT_INT_EQ(lost_upload(&o, dest, WCT, "12345", 5, &kept), 0);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, O_WRONLY, 0, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_resumed(sf), 5);
	ASSERT_INT_EQ(stage_write(sf, "678", 3, 5), 0);
	ASSERT_INT_EQ(stage_commit(sf, NULL), 0);
	sf = NULL;
	CHECK_STR(dest, "12345678");
	CHECK_NO_STORE(dir);
 out:
	if (sf != NULL)
		stage_abort(sf, "test", NULL);
	TEST_DONE();
}

/* Uploaded through a symbolic link: kept under the name it leads to. */
static void
test_symlink(int no_tmpfile)
{
	char name[128], dir[PATH_MAX], link[PATH_MAX], target[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	struct stat st;
	off_t kept;

	snprintf(name, sizeof(name), "through a symbolic link: kept at the "
	    "name it leads to (%s)", variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("symlink", dir, sizeof(dir)), 0))
		goto out;
	join(link, sizeof(link), dir, "l");
	join(target, sizeof(target), dir, "t");
	opts_init(&o, no_tmpfile);
	ASSERT_INT_EQ(symlink("t", link), 0);
	ASSERT_INT_EQ(lost_upload(&o, link, WCT, "abc", 3, &kept), 0);
	ASSERT_INT_EQ(kept, 3);
	CHECK_ABSENT(target);
	ASSERT_INT_EQ(stage_partial_stat(&o, target, 1, &st), 0);
	ASSERT_INT_EQ(stage_partial_stat(&o, link, 1, &st), 0);
	ASSERT_INT_EQ(st.st_size, 3);
	/* Not following it, the link is itself. */
	ASSERT_INT_EQ(stage_partial_stat(&o, link, 0, &st), ENOENT);
	ASSERT_INT_EQ(stage_partial_forget(&o, link), ENOENT);
	if (!ASSERT_INT_EQ(stage_open(&o, link, O_WRONLY, 0, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_resumed(sf), 3);
	ASSERT_INT_EQ(stage_write(sf, "def", 3, 3), 0);
	ASSERT_INT_EQ(stage_commit(sf, NULL), 0);
	sf = NULL;
	CHECK_STR(target, "abcdef");
	ASSERT_INT_EQ(lstat(link, &st), 0);
	ASSERT_TRUE(S_ISLNK(st.st_mode));
	CHECK_NO_STORE(dir);
 out:
	if (sf != NULL)
		stage_abort(sf, "test", NULL);
	TEST_DONE();
}

/* The cap on kept data (partial.max_bytes). */
static void
test_cap(int no_tmpfile)
{
	char name[128], dir[PATH_MAX], a[PATH_MAX], b[PATH_MAX], c[PATH_MAX];
	char store[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	struct stage_report rep;
	struct stat st;
	size_t len = 64 * 1024;
	char *data = pattern(len, 9);
	off_t kept;

	snprintf(name, sizeof(name), "partial.max_bytes: too large is not "
	    "kept, older data makes room (%s)", variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("cap", dir, sizeof(dir)), 0))
		goto out;
	join(a, sizeof(a), dir, "a");
	join(b, sizeof(b), dir, "b");
	join(c, sizeof(c), dir, "c");
	store_path(dir, store, sizeof(store));
	opts_init(&o, no_tmpfile);
	o.partial.max_bytes = 100 * 1024;

	/* Larger than the cap: not kept, and said why. */
	if (!ASSERT_INT_EQ(stage_open(&o, a, WCT, 0644, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_write(sf, data, len, 0), 0);
	ASSERT_INT_EQ(stage_write(sf, data, len, (off_t)len), 0);
	memset(&rep, 0, sizeof(rep));
	stage_interrupt(sf, "connection lost", &rep);
	sf = NULL;
	ASSERT_INT_EQ(rep.partial_kept, -1);
	ASSERT_STR_NE(rep.partial_note, "");
	CHECK_STORE_EMPTY(dir);
	CHECK_ABSENT(a);
	ASSERT_INT_EQ(stage_partial_stat(&o, a, 1, &st), ENOENT);

	/* Two fit one after the other: the older data goes for the
	 * newer. */
	ASSERT_INT_EQ(lost_upload(&o, b, WCT, data, len, &kept), 0);
	ASSERT_INT_EQ(kept, (off_t)len);
	ASSERT_INT_EQ(backdate_prefix(store, "d.", 60), 1);
	ASSERT_INT_EQ(lost_upload(&o, c, WCT, data, len, &kept), 0);
	ASSERT_INT_EQ(kept, (off_t)len);
	ASSERT_INT_EQ(stage_partial_stat(&o, b, 1, &st), ENOENT);
	ASSERT_INT_EQ(stage_partial_stat(&o, c, 1, &st), 0);
	ASSERT_INT_EQ(st.st_size, (off_t)len);
 out:
	if (sf != NULL)
		stage_abort(sf, "test", NULL);
	free(data);
	TEST_DONE();
}

static void
test_inflight(int no_tmpfile)
{
	char name[160], dir[PATH_MAX], dest[PATH_MAX];
	struct staged_file *sf = NULL, *sf2 = NULL;
	struct stage_opts o;
	struct stat st;

	snprintf(name, sizeof(name), "a replacement in flight: other "
	    "non-truncating opens get STAGE_E_INFLIGHT (%s)",
	    variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("inflight", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "f");
	opts_init(&o, no_tmpfile);
	ASSERT_INT_EQ(put_str(dest, "old content"), 0);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, WCT, 0644, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_write(sf, "new", 3, 0), 0);
	CHECK_STORE(dir, 0, 1);
	ASSERT_INT_EQ(continue_refused(&o, dest, O_WRONLY),
	    STAGE_E_INFLIGHT);
	ASSERT_INT_EQ(continue_refused(&o, dest, O_RDWR),
	    STAGE_E_INFLIGHT);
	ASSERT_INT_EQ(continue_refused(&o, dest, O_WRONLY | O_CREAT),
	    STAGE_E_INFLIGHT);
	ASSERT_PTR_EQ(sf2, NULL);
	ASSERT_INT_EQ(stage_count(), 1);
	ASSERT_INT_EQ(stage_partial_stat(&o, dest, 1, &st), ENOENT);
	CHECK_STR(dest, "old content");
	/* Another truncating one is allowed (the last commit wins). */
	if (ASSERT_INT_EQ(stage_open(&o, dest, WCT, 0644, &sf2), 0)) {
		stage_abort(sf2, "test", NULL);
		sf2 = NULL;
	}
	ASSERT_INT_EQ(stage_commit(sf, NULL), 0);
	sf = NULL;
	CHECK_STR(dest, "new");
	CHECK_ENTRIES(dir, "f");
	if (!ASSERT_INT_EQ(stage_open(&o, dest, O_WRONLY, 0, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_resumed(sf), 0);
 out:
	if (sf != NULL)
		stage_abort(sf, "test", NULL);
	if (sf2 != NULL)
		stage_abort(sf2, "test", NULL);
	TEST_DONE();
}

/*
 * A kept upload being continued in one session is an upload in flight
 * for the others: not a name with nothing at it.  A second resume of it
 * (a client that asked the size before the first one took it) would
 * otherwise start from an empty file and write at the kept size: a
 * published file whose start is a hole of zeros.
 */
static void
test_adopted_inflight(int no_tmpfile)
{
	char name[160], dir[PATH_MAX], dest[PATH_MAX], old[PATH_MAX];
	struct staged_file *sf = NULL, *sf2 = NULL;
	struct stage_opts o;
	off_t kept;

	snprintf(name, sizeof(name), "a kept upload being continued is in "
	    "flight for other sessions (%s)", variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("adopted", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "new");
	join(old, sizeof(old), dir, "old");
	opts_init(&o, no_tmpfile);

	/* A replacement being continued: refused. */
	ASSERT_INT_EQ(put_str(old, "old content"), 0);
	ASSERT_INT_EQ(lost_upload(&o, old, WCT, "NEW", 3, &kept), 0);
	if (!ASSERT_INT_EQ(stage_open(&o, old, O_WRONLY, 0, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_resumed(sf), 3);
	ASSERT_INT_EQ(continue_refused(&o, old, O_WRONLY), STAGE_E_INFLIGHT);
	ASSERT_INT_EQ(stage_write(sf, "-rest", 5, 3), 0);
	ASSERT_INT_EQ(stage_commit(sf, NULL), 0);
	sf = NULL;
	CHECK_STR(old, "NEW-rest");

	/* A new file being continued. */
	ASSERT_INT_EQ(lost_upload(&o, dest, WCT, "first", 5, &kept), 0);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, O_WRONLY, 0, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_resumed(sf), 5);
	/* The second client's resume writes the rest at the kept size it
	 * was shown: refused, it would publish a hole of zeros. */
	ASSERT_INT_EQ(continue_refused(&o, dest, O_WRONLY | O_CREAT),
	    STAGE_E_INFLIGHT);
	ASSERT_INT_EQ(stage_write(sf, "-rest", 5, 5), 0);
	ASSERT_INT_EQ(stage_commit(sf, NULL), 0);
	sf = NULL;
	CHECK_STR(dest, "first-rest");
 out:
	if (sf != NULL)
		stage_abort(sf, "test", NULL);
	if (sf2 != NULL)
		stage_abort(sf2, "test", NULL);
	TEST_DONE();
}

static void
test_abort_keeps_record(int no_tmpfile)
{
	char name[160], dir[PATH_MAX], dest[PATH_MAX], newf[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	struct stage_report rep;

	snprintf(name, sizeof(name), "stage_abort keeps no data, only a "
	    "replacement's record (%s)", variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("abort-record", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "f");
	join(newf, sizeof(newf), dir, "n");
	opts_init(&o, no_tmpfile);

	/* A new file: nothing at all. */
	if (!ASSERT_INT_EQ(stage_open(&o, newf, WCT, 0644, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_write(sf, "data", 4, 0), 0);
	memset(&rep, 0, sizeof(rep));
	stage_abort(sf, "client gave up", &rep);
	sf = NULL;
	ASSERT_INT_EQ(rep.partial_kept, -1);
	CHECK_ENTRIES(dir, NULL);

	/* A replacement: its record, no data. */
	ASSERT_INT_EQ(put_str(dest, "old content"), 0);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, WCT, 0644, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_write(sf, "data", 4, 0), 0);
	stage_abort(sf, "client gave up", NULL);
	sf = NULL;
	CHECK_STR(dest, "old content");
	CHECK_STORE(dir, 0, 1);
	ASSERT_INT_EQ(continue_refused(&o, dest, O_WRONLY),
	    STAGE_E_REPLACED);
	/* A REMOVE or RENAME of the name forgets it (nothing to see). */
	ASSERT_INT_EQ(stage_partial_forget(&o, dest), ENOENT);
	CHECK_ENTRIES(dir, "f");
	if (!ASSERT_INT_EQ(stage_open(&o, dest, O_WRONLY, 0, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_resumed(sf), 0);
	stage_abort(sf, "test", NULL);
	sf = NULL;
	/* A modification that was never a replacement leaves nothing. */
	CHECK_ENTRIES(dir, "f");
	CHECK_STR(dest, "old content");
 out:
	if (sf != NULL)
		stage_abort(sf, "test", NULL);
	TEST_DONE();
}

static void
test_nothing_kept(int no_tmpfile)
{
	char name[160], dir[PATH_MAX], dest[PATH_MAX], old[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	struct stage_report rep;
	off_t kept;

	snprintf(name, sizeof(name), "stage_interrupt keeps nothing without "
	    "opts.resume, without data, for a modification (%s)",
	    variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("nothing-kept", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "f");
	join(old, sizeof(old), dir, "old");
	opts_init(&o, no_tmpfile);
	o.resume = 0;
	ASSERT_INT_EQ(lost_upload(&o, dest, WCT, "data", 4, &kept), 0);
	ASSERT_INT_EQ(kept, -1);
	CHECK_ENTRIES(dir, NULL);
	ASSERT_INT_EQ(put_str(old, "old content"), 0);
	ASSERT_INT_EQ(lost_upload(&o, old, WCT, "data", 4, &kept), 0);
	ASSERT_INT_EQ(kept, -1);
	CHECK_ENTRIES(dir, "old");
	CHECK_STR(old, "old content");

	o.resume = 1;
	/* No data arrived. */
	if (!ASSERT_INT_EQ(stage_open(&o, dest, WCT, 0644, &sf), 0))
		goto out;
	memset(&rep, 0, sizeof(rep));
	stage_interrupt(sf, "connection lost", &rep);
	sf = NULL;
	ASSERT_INT_EQ(rep.partial_kept, -1);
	ASSERT_STR_NE(rep.partial_note, "");
	CHECK_ENTRIES(dir, "old");
	/* A modification that changed nothing. */
	if (!ASSERT_INT_EQ(stage_open(&o, old, O_WRONLY, 0, &sf), 0))
		goto out;
	memset(&rep, 0, sizeof(rep));
	stage_interrupt(sf, "connection lost", &rep);
	sf = NULL;
	ASSERT_INT_EQ(rep.partial_kept, -1);
	CHECK_ENTRIES(dir, "old");
	CHECK_STR(old, "old content");
 out:
	if (sf != NULL)
		stage_abort(sf, "test", NULL);
	TEST_DONE();
}

static void
test_tmpdir_store(int no_tmpfile)
{
	char name[160], dir[PATH_MAX], stg[PATH_MAX], dest[PATH_MAX];
	char sname[64];
	struct staged_file *sf = NULL;
	struct stage_opts o, plain;
	struct stat st;
	off_t kept;

	snprintf(name, sizeof(name), "with a staging directory the data is "
	    "kept in its store (%s)", variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("tmpdir-dest", dir, sizeof(dir)), 0) ||
	    !ASSERT_INT_EQ(fresh_dir("tmpdir-stg", stg, sizeof(stg)), 0))
		goto out;
	ASSERT_INT_EQ(chmod(stg, 0700), 0);
	join(dest, sizeof(dest), dir, "up.bin");
	store_name(sname, sizeof(sname));
	opts_init(&o, no_tmpfile);
	o.tmpdir = stg;
	plain = o;
	plain.tmpdir = NULL;

	ASSERT_INT_EQ(lost_upload(&o, dest, WCT, "first ", 6, &kept), 0);
	ASSERT_INT_EQ(kept, 6);
	CHECK_ENTRIES(dir, NULL);
	CHECK_ENTRIES(stg, sname);
	CHECK_STORE(stg, 1, 1);
	ASSERT_INT_EQ(stage_partial_stat(&o, dest, 1, &st), 0);
	ASSERT_INT_EQ(st.st_size, 6);
	/* Only where the staging directory is looked at. */
	ASSERT_INT_EQ(stage_partial_stat(&plain, dest, 1, &st), ENOENT);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, O_WRONLY, 0, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_resumed(sf), 6);
	ASSERT_INT_EQ(stage_write(sf, "second", 6, 6), 0);
	ASSERT_INT_EQ(stage_commit(sf, NULL), 0);
	sf = NULL;
	CHECK_STR(dest, "first second");
	CHECK_ENTRIES(dir, "up.bin");
	CHECK_ENTRIES(stg, NULL);

	/* A replacement's record goes there too. */
	ASSERT_INT_EQ(lost_upload(&o, dest, WCT, "third", 5, &kept), 0);
	ASSERT_INT_EQ(kept, 5);
	CHECK_ENTRIES(dir, "up.bin");
	CHECK_STORE(stg, 1, 1);
	{
		char store[PATH_MAX];

		store_path(stg, store, sizeof(store));
		ASSERT_INT_EQ(backdate_prefix(store, "r.", AGE + 60), 1);
	}
	ASSERT_INT_EQ(continue_refused(&o, dest, O_WRONLY),
	    STAGE_E_REPLACED);
	CHECK_STR(dest, "first second");
	if (!ASSERT_INT_EQ(stage_open(&o, dest, WCT, 0644, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_write(sf, "fourth", 6, 0), 0);
	ASSERT_INT_EQ(stage_commit(sf, NULL), 0);
	sf = NULL;
	CHECK_STR(dest, "fourth");
	CHECK_ENTRIES(stg, NULL);
	CHECK_ENTRIES(dir, "up.bin");
 out:
	if (sf != NULL)
		stage_abort(sf, "test", NULL);
	TEST_DONE();
}

static void
test_sweep(void)
{
	char dir[PATH_MAX], sub[PATH_MAX], a[PATH_MAX], b[PATH_MAX];
	char c[PATH_MAX], store[PATH_MAX], subrec[PATH_MAX];
	char sname[64];
	struct partial_key k;
	struct stage_opts o;
	struct stat st;
	unsigned int removed = 99, expired = 99;
	off_t kept;
	int dfd = -1;

	TEST_START("stage_sweep_partial removes expired data and counts it, "
	    "leaves fresh ones");
	if (!ASSERT_INT_EQ(fresh_dir("sweep", dir, sizeof(dir)), 0))
		goto out;
	join(sub, sizeof(sub), dir, "sub");
	ASSERT_INT_EQ(mkdir(sub, 0755), 0);
	join(a, sizeof(a), dir, "a");
	join(b, sizeof(b), dir, "b");
	join(c, sizeof(c), sub, "c");
	store_path(dir, store, sizeof(store));
	store_path(sub, subrec, sizeof(subrec));
	store_name(sname, sizeof(sname));
	opts_init(&o, 0);
	ASSERT_INT_EQ(lost_upload(&o, a, WCT, "aaaa", 4, &kept), 0);
	ASSERT_INT_EQ(kept, 4);
	ASSERT_INT_EQ(lost_upload(&o, b, WCT, "bbbb", 4, &kept), 0);
	ASSERT_INT_EQ(kept, 4);
	ASSERT_INT_EQ(lost_upload(&o, c, WCT, "cccc", 4, &kept), 0);
	ASSERT_INT_EQ(kept, 4);
	CHECK_STORE(dir, 2, 2);
	if (!ASSERT_INT_EQ(dir_key(dir, "a", &dfd, &k), 0))
		goto out;
	{
		int sfd = open(store, O_RDONLY | O_DIRECTORY);

		ASSERT_INT_NE(sfd, -1);
		if (sfd >= 0) {
			ASSERT_INT_EQ(backdate_entry(sfd, 'r', &k, AGE + 60),
			    0);
			close(sfd);
		}
	}
	ASSERT_INT_EQ(backdate_prefix(subrec, "r.", AGE + 60), 1);

	/* Without limits a sweep leaves stores alone. */
	ASSERT_INT_EQ(stage_sweep(dir, STAGE_SWEEP_TREE, &removed), 0);
	ASSERT_INT_EQ(removed, 0);
	CHECK_STORE(dir, 2, 2);
	CHECK_STORE(sub, 1, 1);

	ASSERT_INT_EQ(stage_sweep_partial(dir, 0, &o.partial, &removed,
	    &expired), 0);
	ASSERT_INT_EQ(removed, 0);
	ASSERT_INT_EQ(expired, 1);
	CHECK_STORE(dir, 1, 1);
	ASSERT_INT_EQ(stage_partial_stat(&o, a, 1, &st), ENOENT);
	ASSERT_INT_EQ(stage_partial_stat(&o, b, 1, &st), 0);
	/* Not the tree without STAGE_SWEEP_TREE. */
	CHECK_STORE(sub, 1, 1);
	ASSERT_INT_EQ(stage_sweep_partial(dir, STAGE_SWEEP_TREE, &o.partial,
	    &removed, &expired), 0);
	ASSERT_INT_EQ(expired, 1);
	/* An emptied store goes. */
	CHECK_ENTRIES(sub, NULL);
	CHECK_STORE(dir, 1, 1);

	/* Expired by the limits given (a shorter age). */
	o.partial.age = 10;
	ASSERT_INT_EQ(backdate_prefix(store, "r.", 60), 1);
	ASSERT_INT_EQ(stage_sweep_partial(dir, 0, &o.partial, &removed,
	    &expired), 0);
	ASSERT_INT_EQ(expired, 1);
	CHECK_ENTRIES(dir, "sub");
 out:
	if (dfd >= 0)
		close(dfd);
	TEST_DONE();
}

struct listed {
	int n;
	char name[8][NAME_MAX + 1];
	off_t size[8];
};

static int
collect_listed(void *arg, const char *name, const struct stat *st)
{
	struct listed *ls = arg;

	if (ls->n < 8) {
		snprintf(ls->name[ls->n], sizeof(ls->name[0]), "%s", name);
		ls->size[ls->n] = st->st_size;
	}
	ls->n++;
	return 0;
}

static off_t
listed_size(const struct listed *ls, const char *name)
{
	int i;

	for (i = 0; i < ls->n && i < 8; i++) {
		if (strcmp(ls->name[i], name) == 0)
			return ls->size[i];
	}
	return -1;
}

static void
test_partial_list(void)
{
	char dir[PATH_MAX], path[PATH_MAX], longname[241], old[PATH_MAX];
	struct stage_opts o, off;
	struct listed ls;
	off_t kept;
	int dfd = -1;

	TEST_START("stage_partial_list lists the kept names with their "
	    "stat");
	if (!ASSERT_INT_EQ(fresh_dir("plist", dir, sizeof(dir)), 0))
		goto out;
	opts_init(&o, 0);
	off = o;
	off.resume = 0;
	memset(longname, 'n', 240);
	longname[240] = '\0';
	join(path, sizeof(path), dir, "a");
	ASSERT_INT_EQ(lost_upload(&o, path, WCT, "0123456789", 10, &kept), 0);
	join(path, sizeof(path), dir, longname);
	ASSERT_INT_EQ(lost_upload(&o, path, WCT, "01234567890123456789", 20,
	    &kept), 0);
	ASSERT_INT_EQ(kept, 20);
	join(path, sizeof(path), dir, "#h");
	ASSERT_INT_EQ(lost_upload(&o, path, WCT, "01234", 5, &kept), 0);
	/* A replacement kept: listed too, with the partial's size. */
	join(old, sizeof(old), dir, "old");
	ASSERT_INT_EQ(put_str(old, "old content"), 0);
	ASSERT_INT_EQ(lost_upload(&o, old, WCT, "012", 3, &kept), 0);
	/* Gone stale: somebody else made the name. */
	join(path, sizeof(path), dir, "stale");
	ASSERT_INT_EQ(lost_upload(&o, path, WCT, "0", 1, &kept), 0);
	ASSERT_INT_EQ(put_str(path, "theirs"), 0);
	CHECK_STORE(dir, 5, 5);
	if (!ASSERT_INT_NE(dfd = open(dir, O_RDONLY | O_DIRECTORY), -1))
		goto out;

	memset(&ls, 0, sizeof(ls));
	ASSERT_INT_EQ(stage_partial_list(&o, dfd, collect_listed, &ls), 0);
	ASSERT_INT_EQ(ls.n, 4);
	ASSERT_INT_EQ(listed_size(&ls, "a"), 10);
	ASSERT_INT_EQ(listed_size(&ls, longname), 20);
	ASSERT_INT_EQ(listed_size(&ls, "#h"), 5);
	ASSERT_INT_EQ(listed_size(&ls, "old"), 3);
	ASSERT_INT_EQ(listed_size(&ls, "stale"), -1);
	CHECK_STORE(dir, 4, 4);

	memset(&ls, 0, sizeof(ls));
	ASSERT_INT_EQ(stage_partial_list(&off, dfd, collect_listed, &ls), 0);
	ASSERT_INT_EQ(ls.n, 0);
 out:
	if (dfd >= 0)
		close(dfd);
	TEST_DONE();
}

/*
 * With the in-place modify policy a non-truncating open of an existing
 * file writes it in place.  After an interrupted replacement of that file
 * it must still not continue the old file (DESIGN.md 12).
 */
static void
test_inplace_policy(int no_tmpfile)
{
	static const char old_content[] = "OLD CONTENT, a whole old file\n";
	char name[160], dir[PATH_MAX], dest[PATH_MAX], store[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	char *got = NULL;
	size_t len;
	off_t kept;
	int r;

	snprintf(name, sizeof(name), "modify in place: an interrupted "
	    "replacement is not continued onto the old file (%s)",
	    variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("inplace", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "f");
	store_path(dir, store, sizeof(store));
	opts_init(&o, no_tmpfile);
	o.modify = STAGE_MODIFY_INPLACE;
	ASSERT_INT_EQ(put_str(dest, old_content), 0);
	ASSERT_INT_EQ(lost_upload(&o, dest, WCT, "NEW PART", 8, &kept), 0);
	ASSERT_INT_EQ(kept, 8);
	CHECK_STORE(dir, 1, 1);

	/* The kept data is there: continued, or at least not the old
	 * file's. */
	r = stage_open(&o, dest, O_WRONLY, 0, &sf);
	if (r == 0) {
		ASSERT_INT_EQ(stage_resumed(sf), 8);
		stage_abort(sf, "test", NULL);
		sf = NULL;
	} else
		ASSERT_INT_EQ(r, STAGE_E_REPLACED);
	CHECK_STR(dest, old_content);

	/* The data expired: the old file is staged, not written in place,
	 * and what a client's resume would do (the rest at offset 8) is
	 * refused. */
	ASSERT_INT_EQ(backdate_prefix(store, "r.", AGE + 60), 1);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, O_WRONLY, 0, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_method(sf) == STAGE_DIRECT, 0);
	r = stage_write(sf, "+rest", 5, 8);
	ASSERT_INT_EQ(r, STAGE_E_REPLACED);
	if (stage_commit(sf, NULL) == 0 && get_file(dest, &got, &len) == 0)
		test_diag("the old file was continued: now \"%.*s\"",
		    (int)strcspn(got, "\n"), got);
	sf = NULL;
	free(got);
	CHECK_STR(dest, old_content);
 out:
	if (sf != NULL)
		stage_abort(sf, "test", NULL);
	TEST_DONE();
}

/*
 * scp's SFTP mode opens without truncating, writes the whole file from
 * its start and truncates at the end: over the old file of an
 * interrupted replacement that is an upload like any other, and its
 * commit clears the record.
 */
static void
test_rewrite_old(int no_tmpfile)
{
	char name[160], dir[PATH_MAX], dest[PATH_MAX], store[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_opts o;
	off_t kept;

	snprintf(name, sizeof(name), "the old file of an interrupted "
	    "replacement may be rewritten from its start (%s)",
	    variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("rewrite", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "f");
	store_path(dir, store, sizeof(store));
	opts_init(&o, no_tmpfile);
	ASSERT_INT_EQ(put_str(dest, "a long old content"), 0);
	ASSERT_INT_EQ(lost_upload(&o, dest, WCT, "NEW", 3, &kept), 0);
	ASSERT_INT_EQ(backdate_prefix(store, "r.", AGE + 60), 1);
	if (!ASSERT_INT_EQ(stage_open(&o, dest, O_WRONLY | O_CREAT, 0644,
	    &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_resumed(sf), 0);
	ASSERT_INT_EQ(stage_write(sf, "new whole", 9, 0), 0);
	ASSERT_INT_EQ(stage_write(sf, "!", 1, 9), 0);
	ASSERT_INT_EQ(stage_ftruncate(sf, 10), 0);
	ASSERT_INT_EQ(stage_commit(sf, NULL), 0);
	sf = NULL;
	CHECK_STR(dest, "new whole!");
	CHECK_ENTRIES(dir, "f");
 out:
	if (sf != NULL)
		stage_abort(sf, "test", NULL);
	TEST_DONE();
}

/*
 * A non-truncating upload over an existing file holds the old file with
 * changes, never a clean start of anything: interrupted, it keeps no
 * data.  One that rewrote the file from its start (scp's SFTP mode) was
 * a replacement: its record refuses a continuation of the old file.  One
 * that changed the middle of the file (an editor) leaves nothing.
 */
static void
test_modification_not_kept(int no_tmpfile)
{
	char name[160], dir[PATH_MAX], dest[PATH_MAX], edit[PATH_MAX];
	struct staged_file *sf = NULL;
	struct stage_report rep;
	struct stage_opts o;

	snprintf(name, sizeof(name), "an interrupted modification keeps no "
	    "data; one truncated to nothing is a replacement (%s)",
	    variant(no_tmpfile));
	TEST_START(name);
	if (!ASSERT_INT_EQ(fresh_dir("modify", dir, sizeof(dir)), 0))
		goto out;
	join(dest, sizeof(dest), dir, "f");
	join(edit, sizeof(edit), dir, "e");
	opts_init(&o, no_tmpfile);
	ASSERT_INT_EQ(put_str(dest, "a long old content"), 0);
	ASSERT_INT_EQ(put_str(edit, "an edited file"), 0);

	/* A rewrite from the start without truncating (scp's SFTP mode),
	 * interrupted: no data, nothing at all (an edit at offset 0 looks
	 * the same). */
	if (!ASSERT_INT_EQ(stage_open(&o, dest, O_WRONLY | O_CREAT, 0644,
	    &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_write(sf, "NEW", 3, 0), 0);
	memset(&rep, 0, sizeof(rep));
	stage_interrupt(sf, "connection lost", &rep);
	sf = NULL;
	ASSERT_INT_EQ(rep.partial_kept, -1);
	CHECK_STR(dest, "a long old content");
	CHECK_ENTRIES(dir, "e", "f");

	/* Truncated to nothing first: a replacement, whose interruption
	 * leaves its record. */
	if (!ASSERT_INT_EQ(stage_open(&o, dest, O_WRONLY | O_CREAT, 0644,
	    &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_ftruncate(sf, 0), 0);
	ASSERT_INT_EQ(stage_write(sf, "NEW", 3, 0), 0);
	memset(&rep, 0, sizeof(rep));
	stage_interrupt(sf, "connection lost", &rep);
	sf = NULL;
	ASSERT_INT_EQ(rep.partial_kept, 3);
	CHECK_STR(dest, "a long old content");
	CHECK_STORE(dir, 1, 1);

	/* The edit in the middle, interrupted: nothing at all. */
	if (!ASSERT_INT_EQ(stage_open(&o, edit, O_RDWR, 0, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_write(sf, "EDIT", 4, 3), 0);
	memset(&rep, 0, sizeof(rep));
	stage_interrupt(sf, "connection lost", &rep);
	sf = NULL;
	ASSERT_INT_EQ(rep.partial_kept, -1);
	CHECK_STR(edit, "an edited file");
	if (!ASSERT_INT_EQ(stage_open(&o, edit, O_RDWR, 0, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_resumed(sf), 0);
	ASSERT_INT_EQ(stage_write(sf, "EDIT", 4, 3), 0);
	ASSERT_INT_EQ(stage_commit(sf, NULL), 0);
	sf = NULL;
	CHECK_STR(edit, "an EDITed file");
 out:
	if (sf != NULL)
		stage_abort(sf, "test", NULL);
	TEST_DONE();
}

/* ------------------------------------------------------------------ */

int
main(int argc, char **argv)
{
	int nt, r;

	setvbuf(stdout, NULL, _IOLBF, 0);
	umask(022);
	if ((r = test_scratch_setup(scratch, sizeof(scratch))) != 0) {
		printf("not ok - test_partial: scratch directory: %s\n",
		    strerror(r));
		return 1;
	}
	test_note("scratch %s", scratch);
	test_set_filter(argc - 1, argv + 1);

#define RUN(fn) do { if (test_wanted(#fn)) fn(); } while (0)
#define RUN2(fn) do { if (test_wanted(#fn)) \
	for (nt = 0; nt < 2; nt++) fn(nt); } while (0)
	RUN(test_key_make);
	RUN(test_parse_age);
	RUN(test_parse_size);
	RUN(test_store_name);
	RUN(test_store_open);
	RUN(test_record_new_file);
	RUN(test_record_stale);
	RUN(test_record_expiry);
	RUN(test_record_held);
	RUN(test_record_corrupt);
	RUN(test_forget);
	RUN(test_make_room);
	RUN(test_list);
	RUN(test_expire);
	RUN2(test_interrupt_resume_all);
	RUN2(test_resume_twice);
	RUN2(test_trunc_discards);
	RUN2(test_excl_and_forget);
	RUN2(test_destination_changed);
	RUN2(test_stale_tidied);
	RUN2(test_replaced);
	RUN2(test_replacement_resumed);
	RUN2(test_resumed_new_aborted);
	RUN2(test_cap);
	RUN2(test_symlink);
	RUN2(test_inflight);
	RUN2(test_adopted_inflight);
	RUN2(test_abort_keeps_record);
	RUN2(test_nothing_kept);
	RUN2(test_tmpdir_store);
	RUN(test_sweep);
	RUN(test_partial_list);
	RUN2(test_inplace_policy);
	RUN2(test_rewrite_old);
	RUN2(test_modification_not_kept);
#undef RUN
#undef RUN2

	test_scratch_done();
	return test_exit_status();
}
