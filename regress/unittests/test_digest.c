/*
 * Unit tests for digest.c (algorithm names, known answers, the running
 * SHA-256 of an upload fed in order, out of order, overwritten and
 * truncated) and for the digest a staged upload reports at commit and
 * stores as an extended attribute.
 *
 * The reference for every running digest is a one-shot hash of the file
 * as it ends up, so a wrong shortcut in the running digest cannot agree
 * with it by construction.  Scratch files live under $OBJ/regress/work.
 */
#include "includes.h"

#include <sys/types.h>
#include <sys/stat.h>
#ifdef HAVE_SYS_XATTR_H
# include <sys/xattr.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomic-upload.h"
#include "digest.h"
#include "test_helper.h"

static char scratch[PATH_MAX - 64];

/* One-shot hex digest of a buffer. */
static int
hash_buf(const char *algo, const void *buf, size_t len, char *hex)
{
	const struct digest_algo *a;
	struct digest_ctx *c = NULL;
	unsigned char md[DIGEST_MAX_SIZE];
	int r;

	hex[0] = '\0';
	if ((a = digest_algo_find(algo, strlen(algo))) == NULL)
		return ENOTSUP;
	if ((r = digest_start(a, &c)) != 0)
		return r;
	if ((r = digest_update(c, buf, len)) == 0 &&
	    (r = digest_finish(c, md)) == 0)
		digest_hex(md, digest_algo_size(a), hex);
	digest_free(c);
	return r;
}

/* One-shot SHA-256 of a whole file, read independently of digest_fd. */
static int
hash_file(const char *path, char *hex)
{
	struct stat st;
	char *buf = NULL;
	int fd, r = 0;

	if ((fd = open(path, O_RDONLY)) < 0)
		return errno;
	if (fstat(fd, &st) != 0 ||
	    (buf = malloc((size_t)st.st_size + 1)) == NULL) {
		r = errno != 0 ? errno : ENOMEM;
		goto out;
	}
	if (read(fd, buf, (size_t)st.st_size) != st.st_size) {
		r = EIO;
		goto out;
	}
	r = hash_buf("sha256", buf, (size_t)st.st_size, hex);
 out:
	free(buf);
	close(fd);
	return r;
}

static void
fill(unsigned char *buf, size_t len, unsigned int seed)
{
	size_t i;

	for (i = 0; i < len; i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (unsigned char)(seed >> 16);
	}
}

static void
test_names(void)
{
	char list[64];
	static const char *good[] = { "md5", "MD5", "sha1", "sha-1", "SHA-1",
	    "sha224", "sha-224", "sha256", "sha-256", "Sha256", "sha384",
	    "sha-384", "sha512", "sha-512" };
	static const char *bad[] = { "", "sha", "sha2", "crc32", "sha-",
	    "sha256x", "md", "sha3-256" };
	size_t i;

	TEST_START("digest_algo_find: draft and IANA names, any case");
	if (!digest_available()) {
		TEST_SKIP("built without OpenSSL");
		TEST_DONE();
		return;
	}
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (!ASSERT_PTR_NE(digest_algo_find(good[i], strlen(good[i])),
		    NULL))
			test_diag("name %s", good[i]);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (!ASSERT_PTR_EQ(digest_algo_find(bad[i], strlen(bad[i])),
		    NULL))
			test_diag("name %s", bad[i]);
	}
	/* Not NUL-terminated: only `len` bytes count. */
	ASSERT_PTR_NE(digest_algo_find("sha256,md5", 6), NULL);
	ASSERT_STR_EQ(digest_algo_name(digest_algo_find("SHA-256", 7)),
	    "sha256");
	ASSERT_INT_EQ(digest_algo_size(digest_algo_find("sha-512", 7)), 64);
	digest_algo_list(list, sizeof(list));
	ASSERT_STR_EQ(list, "md5,sha1,sha224,sha256,sha384,sha512");
	digest_algo_list(list, 10);
	ASSERT_STR_EQ(list, "md5,sha1");
	TEST_DONE();
}

static void
test_known_answers(void)
{
	char hex[DIGEST_HEX_SIZE];

	TEST_START("digests of \"abc\" and of nothing: the published values");
	if (!digest_available()) {
		TEST_SKIP("built without OpenSSL");
		TEST_DONE();
		return;
	}
	ASSERT_INT_EQ(hash_buf("md5", "abc", 3, hex), 0);
	ASSERT_STR_EQ(hex, "900150983cd24fb0d6963f7d28e17f72");
	ASSERT_INT_EQ(hash_buf("sha1", "abc", 3, hex), 0);
	ASSERT_STR_EQ(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
	ASSERT_INT_EQ(hash_buf("sha256", "abc", 3, hex), 0);
	ASSERT_STR_EQ(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9c"
	    "b410ff61f20015ad");
	ASSERT_INT_EQ(hash_buf("sha256", "", 0, hex), 0);
	ASSERT_STR_EQ(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934c"
	    "a495991b7852b855");
	TEST_DONE();
}

/*
 * Drive a stream digest and a real file with the same writes, then
 * compare its result with a one-shot hash of the file.
 */
struct op {
	char kind;		/* 'w' write, 't' truncate */
	off_t off;		/* write offset or new size */
	size_t len;
};

static void
run_stream(const char *name, const struct op *ops, size_t nops,
    int want_reread)
{
	struct stream_digest sd;
	unsigned char buf[300000];
	char path[PATH_MAX], want[DIGEST_HEX_SIZE], got[DIGEST_HEX_SIZE];
	struct stat st;
	off_t reread = -1;
	size_t i;
	int fd = -1;

	TEST_START(name);
	if (!digest_available()) {
		TEST_SKIP("built without OpenSSL");
		TEST_DONE();
		return;
	}
	snprintf(path, sizeof(path), "%s/stream", scratch);
	(void)unlink(path);
	if (!ASSERT_INT_EQ(stream_digest_start(&sd), 0))
		goto out;
	if (!ASSERT_INT_GE(fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600),
	    0))
		goto out;
	for (i = 0; i < nops; i++) {
		if (ops[i].kind == 'w') {
			fill(buf, ops[i].len, (unsigned int)(i * 7 + 1));
			ASSERT_INT_EQ(pwrite(fd, buf, ops[i].len, ops[i].off),
			    (long long)ops[i].len);
			stream_digest_write(&sd, buf, ops[i].len, ops[i].off);
		} else {
			ASSERT_INT_EQ(ftruncate(fd, ops[i].off), 0);
			stream_digest_truncate(&sd, ops[i].off);
		}
	}
	ASSERT_INT_EQ(fstat(fd, &st), 0);
	ASSERT_INT_EQ(stream_digest_finish(&sd, fd, st.st_size, got, &reread),
	    0);
	ASSERT_INT_EQ(hash_file(path, want), 0);
	ASSERT_STR_EQ(got, want);
	if (want_reread >= 0)
		ASSERT_INT_EQ(reread, want_reread);
	else
		ASSERT_INT_GT(reread, 0);
 out:
	stream_digest_free(&sd);
	if (fd >= 0)
		close(fd);
	TEST_DONE();
}

static void
test_streams(void)
{
	static const struct op in_order[] = {
		{ 'w', 0, 32768 }, { 'w', 32768, 32768 }, { 'w', 65536, 100 },
	};
	static const struct op gap_filled[] = {
		{ 'w', 0, 1000 }, { 'w', 2000, 1000 }, { 'w', 1000, 1000 },
	};
	static const struct op ahead[] = {
		{ 'w', 0, 1000 }, { 'w', 5000, 1000 },
	};
	static const struct op overwrite[] = {
		{ 'w', 0, 4000 }, { 'w', 100, 10 }, { 'w', 4000, 4000 },
	};
	static const struct op shrink[] = {
		{ 'w', 0, 4000 }, { 't', 1000, 0 }, { 'w', 1000, 50 },
	};
	static const struct op grow[] = {
		{ 'w', 0, 4000 }, { 't', 9000, 0 },
	};
	static const struct op empty[] = {
		{ 't', 0, 0 },
	};
	static const struct op big_chunks[] = {
		{ 'w', 0, 262144 }, { 'w', 262144, 262144 },
		{ 'w', 524288, 1 },
	};

	run_stream("stream digest: in order, nothing read back", in_order,
	    3, 0);
	/* The third write fills the gap; the second is read back. */
	run_stream("stream digest: a gap filled later reads back only what "
	    "lay ahead", gap_filled, 3, 1000);
	/* The hole between 1000 and 5000 reads back as zeros. */
	run_stream("stream digest: data ahead of a hole is read back",
	    ahead, 2, 5000);
	run_stream("stream digest: an overwrite of hashed data starts over",
	    overwrite, 3, -1);
	run_stream("stream digest: a truncation below the hashed part starts "
	    "over", shrink, 3, -1);
	run_stream("stream digest: a truncation that extends reads back the "
	    "zeros", grow, 2, 5000);
	run_stream("stream digest: an empty file", empty, 1, 0);
	run_stream("stream digest: 256 KiB writes", big_chunks, 3, 0);
}

/* The digest a commit reports, and the attribute it stores. */
static void
test_commit(int use_tmpfile, int xattr)
{
	struct stage_opts so;
	struct staged_file *sf = NULL;
	struct stage_report rep;
	unsigned char buf[70000];
	char path[PATH_MAX], want[DIGEST_HEX_SIZE], attr[100], name[160];
	ssize_t n;

	snprintf(name, sizeof(name), "stage_commit: sha256 in the report%s "
	    "(%s)", xattr ? " and the user.sha256 attribute" : "",
	    use_tmpfile ? "O_TMPFILE" : "named");
	TEST_START(name);
	if (!digest_available()) {
		TEST_SKIP("built without OpenSSL");
		TEST_DONE();
		return;
	}
	memset(&so, 0, sizeof(so));
	so.sync = STAGE_SYNC_NONE;
	so.digest = 1;
	so.no_tmpfile = !use_tmpfile;
	so.digest_xattr = xattr ? DIGEST_XATTR_NAME : NULL;
	snprintf(path, sizeof(path), "%s/commit-%d-%d", scratch, use_tmpfile,
	    xattr);
	fill(buf, sizeof(buf), 99);
	if (!ASSERT_INT_EQ(stage_open(&so, path, O_WRONLY | O_CREAT | O_TRUNC,
	    0444, &sf), 0))
		goto out;
	/* Out of order: the second half first. */
	ASSERT_INT_EQ(stage_write(sf, buf + 35000, 35000, 35000), 0);
	ASSERT_INT_EQ(stage_write(sf, buf, 35000, 0), 0);
	ASSERT_INT_EQ(stage_commit(sf, &rep), 0);
	sf = NULL;
	ASSERT_INT_EQ(hash_buf("sha256", buf, sizeof(buf), want), 0);
	ASSERT_STR_EQ(rep.sha256, want);
	ASSERT_INT_EQ(rep.digest_reread, 35000);
	if (xattr) {
#ifdef HAVE_SYS_XATTR_H
		/* Mode 0444: stored all the same, and the mode kept. */
		struct stat st;

		n = getxattr(path, DIGEST_XATTR_NAME, attr, sizeof(attr) - 1);
		if (n < 0 && (errno == ENOTSUP || errno == EOPNOTSUPP)) {
			TEST_SKIP("no user xattrs here");
			goto out;
		}
		if (ASSERT_INT_EQ(n, 64)) {
			attr[n] = '\0';
			ASSERT_STR_EQ(attr, want);
		}
		ASSERT_INT_EQ(rep.xattr_error, 0);
		ASSERT_INT_EQ(stat(path, &st), 0);
		ASSERT_INT_EQ(st.st_mode & 07777, 0444 & ~(mode_t)umask(022));
#else
		(void)n;
		(void)attr;
#endif
	}
 out:
	if (sf != NULL)
		stage_abort(sf, "test", NULL);
	TEST_DONE();
}

/*
 * One write far past the end: the file is published, but its holes are
 * not read back to hash them (a fuzzer's 600 GiB file took hours).
 */
static void
test_commit_holes(void)
{
	struct stage_opts so;
	struct staged_file *sf = NULL;
	struct stage_report rep;
	char path[PATH_MAX];
	struct stat st;

	TEST_START("stage_commit: no digest for a file of mostly holes");
	if (!digest_available()) {
		TEST_SKIP("built without OpenSSL");
		TEST_DONE();
		return;
	}
	memset(&so, 0, sizeof(so));
	so.sync = STAGE_SYNC_NONE;
	so.digest = 1;
	snprintf(path, sizeof(path), "%s/holes", scratch);
	if (!ASSERT_INT_EQ(stage_open(&so, path, O_WRONLY | O_CREAT | O_TRUNC,
	    0644, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_write(sf, "head", 4, 0), 0);
	ASSERT_INT_EQ(stage_write(sf, "tail", 4, (off_t)3 << 30), 0);
	ASSERT_INT_EQ(stage_commit(sf, &rep), 0);
	sf = NULL;
	ASSERT_STR_EQ(rep.sha256, "");
	ASSERT_INT_GT(rep.digest_holes, (long long)1 << 30);
	ASSERT_INT_EQ(rep.digest_reread, 0);
	if (ASSERT_INT_EQ(stat(path, &st), 0))
		ASSERT_INT_EQ(st.st_size, ((long long)3 << 30) + 4);
	(void)unlink(path);
 out:
	if (sf != NULL)
		stage_abort(sf, "test", NULL);
	TEST_DONE();
}

/*
 * Deferred hashing (sftp-server): writes are only noted, idle moments
 * hash what is in the file, the commit the rest; an overwrite of hashed
 * data makes it start over.  The result must be the same.
 */
static void
test_deferred(int overwrite)
{
	struct stage_opts so;
	struct staged_file *sf = NULL;
	struct stage_report rep;
	unsigned char buf[3 * 1024 * 1024];
	char path[PATH_MAX], want[DIGEST_HEX_SIZE];
	off_t before;

	TEST_START(overwrite ? "deferred digest: an overwrite of hashed data "
	    "starts over" : "deferred digest: idle work, then the commit");
	if (!digest_available()) {
		TEST_SKIP("built without OpenSSL");
		TEST_DONE();
		return;
	}
	memset(&so, 0, sizeof(so));
	so.sync = STAGE_SYNC_FULL;
	so.digest = 1;
	so.digest_deferred = 1;
	snprintf(path, sizeof(path), "%s/deferred-%d", scratch, overwrite);
	fill(buf, sizeof(buf), 7);
	if (!ASSERT_INT_EQ(stage_open(&so, path, O_WRONLY | O_CREAT | O_TRUNC,
	    0644, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_write(sf, buf, 2 * 1024 * 1024, 0), 0);
	ASSERT_INT_EQ(stage_digest_backlog(sf), 2 * 1024 * 1024);
	ASSERT_INT_EQ(stage_digest_work(sf, 1024 * 1024), 0);
	before = stage_digest_backlog(sf);
	ASSERT_INT_EQ(before, 1024 * 1024);
	if (overwrite) {
		/* Below what was hashed: all of it again. */
		buf[10] ^= 0xff;
		ASSERT_INT_EQ(stage_write(sf, buf + 10, 1, 10), 0);
		ASSERT_INT_EQ(stage_digest_backlog(sf), 2 * 1024 * 1024);
	}
	ASSERT_INT_EQ(stage_write(sf, buf + 2 * 1024 * 1024, 1024 * 1024,
	    2 * 1024 * 1024), 0);
	ASSERT_INT_EQ(stage_digest_work(sf, 512 * 1024), 0);
	ASSERT_INT_EQ(stage_commit(sf, &rep), 0);
	sf = NULL;
	ASSERT_INT_EQ(hash_buf("sha256", buf, sizeof(buf), want), 0);
	ASSERT_STR_EQ(rep.sha256, want);
	/* In order: nothing counts as read back, however it was hashed. */
	ASSERT_INT_EQ(rep.digest_reread, overwrite ? (long long)sizeof(buf) : 0);
 out:
	if (sf != NULL)
		stage_abort(sf, "test", NULL);
	TEST_DONE();
}

/* Digests off: nothing computed, nothing stored. */
static void
test_commit_off(void)
{
	struct stage_opts so;
	struct staged_file *sf = NULL;
	struct stage_report rep;
	char path[PATH_MAX];

	TEST_START("stage_commit: digests off leave the report's sha256 empty");
	memset(&so, 0, sizeof(so));
	so.sync = STAGE_SYNC_NONE;
	snprintf(path, sizeof(path), "%s/off", scratch);
	if (!ASSERT_INT_EQ(stage_open(&so, path, O_WRONLY | O_CREAT | O_TRUNC,
	    0644, &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_write(sf, "data", 4, 0), 0);
	ASSERT_INT_EQ(stage_commit(sf, &rep), 0);
	sf = NULL;
	ASSERT_STR_EQ(rep.sha256, "");
 out:
	if (sf != NULL)
		stage_abort(sf, "test", NULL);
	TEST_DONE();
}

/*
 * A replacement whose old file carries a user.sha256 of its own: the new
 * file must carry the new digest, never the copied stale one.
 */
static void
test_stale_attribute(void)
{
#ifdef HAVE_SYS_XATTR_H
	struct stage_opts so;
	struct staged_file *sf = NULL;
	struct stage_report rep;
	char path[PATH_MAX], want[DIGEST_HEX_SIZE], attr[100];
	ssize_t n;
	int fd;

	TEST_START("stage_commit: a replacement's stale user.sha256 is "
	    "replaced");
	if (!digest_available()) {
		TEST_SKIP("built without OpenSSL");
		TEST_DONE();
		return;
	}
	memset(&so, 0, sizeof(so));
	so.sync = STAGE_SYNC_NONE;
	so.digest = 1;
	so.digest_xattr = DIGEST_XATTR_NAME;
	snprintf(path, sizeof(path), "%s/stale", scratch);
	if (!ASSERT_INT_GE(fd = open(path, O_WRONLY | O_CREAT | O_TRUNC,
	    0644), 0))
		goto out;
	ASSERT_INT_EQ(write(fd, "old", 3), 3);
	close(fd);
	if (setxattr(path, DIGEST_XATTR_NAME, "stale", 5, 0) != 0) {
		TEST_SKIP("no user xattrs here");
		goto out;
	}
	if (!ASSERT_INT_EQ(stage_open(&so, path, O_WRONLY | O_TRUNC, 0644,
	    &sf), 0))
		goto out;
	ASSERT_INT_EQ(stage_write(sf, "new!", 4, 0), 0);
	ASSERT_INT_EQ(stage_commit(sf, &rep), 0);
	sf = NULL;
	ASSERT_INT_EQ(hash_buf("sha256", "new!", 4, want), 0);
	n = getxattr(path, DIGEST_XATTR_NAME, attr, sizeof(attr) - 1);
	if (ASSERT_INT_EQ(n, 64)) {
		attr[n] = '\0';
		ASSERT_STR_EQ(attr, want);
	}
 out:
	if (sf != NULL)
		stage_abort(sf, "test", NULL);
	TEST_DONE();
#endif
}

static void
cleanup(void)
{
	char cmd[PATH_MAX + 16];

	if (scratch[0] != '\0' && getenv("TEST_KEEP") == NULL) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch);
		if (system(cmd) != 0)
			test_diag("could not remove %s", scratch);
	}
}

int
main(int argc, char **argv)
{
	const char *obj = getenv("OBJ");
	char base[PATH_MAX - 128];

	setvbuf(stdout, NULL, _IOLBF, 0);
	test_set_filter(argc - 1, argv + 1);
	snprintf(base, sizeof(base), "%s/regress/work", obj != NULL ? obj : ".");
	(void)mkdir(base, 0755);
	snprintf(scratch, sizeof(scratch), "%s/digest.XXXXXX", base);
	if (mkdtemp(scratch) == NULL) {
		printf("Bail out! mkdtemp %s: %s\n", scratch, strerror(errno));
		return 1;
	}
	if (test_wanted("digest_algo_find"))
		test_names();
	if (test_wanted("digests of"))
		test_known_answers();
	if (test_wanted("stream digest"))
		test_streams();
	if (test_wanted("stage_commit")) {
		test_commit(1, 0);
		test_commit(0, 0);
		test_commit(1, 1);
		test_commit(0, 1);
		test_commit_off();
		test_commit_holes();
		test_stale_attribute();
	}
	if (test_wanted("deferred digest")) {
		test_deferred(0);
		test_deferred(1);
	}
	cleanup();
	return test_exit_status();
}
