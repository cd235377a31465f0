/*
 * The store of partial uploads; see partial.h.
 *
 * Everything here happens inside a directory that only its owner (and
 * root) may enter, so the names in it are not hostile the way a shared
 * staging directory's are: they are still opened with O_NOFOLLOW and
 * checked to be regular files, since the owner may have put anything
 * there, and a resume must never publish something that is not the
 * owner's own upload.
 */
#include "includes.h"

#include <sys/types.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "misc.h"
#include "partial.h"

#ifndef O_CLOEXEC
# define O_CLOEXEC 0
#endif
#ifndef O_NOFOLLOW
# define O_NOFOLLOW 0
#endif

#define RECORD_MAGIC	"atomic-upload-partial-1"
#define RECORD_MAX	1024
/* A temporary record ("t.") older than this was left by a dead process. */
#define TEMP_RECORD_AGE	60
#define ENTRY_OPEN_FLAGS (O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)

/* Two 64-bit FNV-1a hashes with different offsets: the key of a name
 * too long to be part of a file name.  The record holds the full name,
 * so a collision would only make two names share a record, which the
 * name check in partial_find() turns into "nothing here". */
static void
name_hash(const char *name, char *out, size_t outlen)
{
	uint64_t a = 0xcbf29ce484222325ULL, b = 0x84222325cbf29ce4ULL;
	const unsigned char *p;

	for (p = (const unsigned char *)name; *p != '\0'; p++) {
		a = (a ^ *p) * 0x100000001b3ULL;
		b = (b ^ *p) * 0x100000001b3ULL;
		b ^= b >> 29;
	}
	snprintf(out, outlen, "#%016" PRIx64 "%016" PRIx64, a, b);
}

int
partial_key_make(dev_t dirdev, ino_t dirino, const char *name,
    struct partial_key *k)
{
	char hash[40];
	int n;

	memset(k, 0, sizeof(*k));
	if (name[0] == '\0' || strchr(name, '/') != NULL)
		return EINVAL;
	if (snprintf(k->name, sizeof(k->name), "%s", name) >=
	    (int)sizeof(k->name))
		return ENAMETOOLONG;
	k->dirdev = dirdev;
	k->dirino = dirino;
	/* Room for the "d." in front. */
	n = snprintf(k->file, sizeof(k->file), "%llx.%llx.%s",
	    (unsigned long long)dirdev, (unsigned long long)dirino, name);
	if (n < 0 || n + 2 > NAME_MAX || name[0] == '#') {
		name_hash(name, hash, sizeof(hash));
		snprintf(k->file, sizeof(k->file), "%llx.%llx.%s",
		    (unsigned long long)dirdev, (unsigned long long)dirino,
		    hash);
	}
	return 0;
}

static void
entry_name(char kind, const struct partial_key *k, char *out, size_t len)
{
	snprintf(out, len, "%c.%s", kind, k->file);
}

void
partial_data_name(const struct partial_key *k, char *out, size_t len)
{
	entry_name('d', k, out, len);
}

void
partial_state_of_stat(const struct stat *st, struct partial_state *ps)
{
	memset(ps, 0, sizeof(*ps));
	ps->exists = 1;
	ps->dev = st->st_dev;
	ps->ino = st->st_ino;
	ps->size = st->st_size;
	ps->mtime = st->st_mtim;
	ps->ctime = st->st_ctim;
}

int
partial_state_now(int dirfd, const char *name, struct partial_state *ps)
{
	struct stat st;

	memset(ps, 0, sizeof(*ps));
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return errno == ENOENT ? 0 : errno;
	partial_state_of_stat(&st, ps);
	return 0;
}

/* The same destination, untouched since: nothing was created at an
 * absent name, and the file there is the same inode with the same data
 * and metadata (any write, truncation, chmod or rename changes ctime). */
int
partial_state_same(const struct partial_state *a,
    const struct partial_state *b)
{
	if (a->exists != b->exists)
		return 0;
	if (!a->exists)
		return 1;
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	    a->mtime.tv_sec == b->mtime.tv_sec &&
	    a->mtime.tv_nsec == b->mtime.tv_nsec &&
	    a->ctime.tv_sec == b->ctime.tv_sec &&
	    a->ctime.tv_nsec == b->ctime.tv_nsec;
}

int
partial_is_store_name(const char *name, uid_t *uid)
{
	unsigned long long v;
	const char *p;

	if (strncmp(name, PARTIAL_STORE_PREFIX,
	    sizeof(PARTIAL_STORE_PREFIX) - 1) != 0)
		return 0;
	p = name + sizeof(PARTIAL_STORE_PREFIX) - 1;
	if (*p < '0' || *p > '9' || parse_u64(p, &v) != 0 ||
	    v != (unsigned long long)(uid_t)v)
		return 0;
	if (uid != NULL)
		*uid = (uid_t)v;
	return 1;
}

static void
store_name(uid_t uid, char *out, size_t len)
{
	snprintf(out, len, "%s%lu", PARTIAL_STORE_PREFIX, (unsigned long)uid);
}

int
partial_store_open(int basefd, int create, int *storefdp)
{
	char name[64];
	struct stat st;
	int fd;

	*storefdp = -1;
	store_name(geteuid(), name, sizeof(name));
	if (create && mkdirat(basefd, name, 0700) != 0 && errno != EEXIST)
		return errno;
	if ((fd = openat(basefd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) < 0)
		return errno == ELOOP || errno == ENOTDIR ? EPERM : errno;
	/* Somebody else's directory under our name, or one others may
	 * enter: not ours to keep anything in. */
	if (fstat(fd, &st) != 0 || st.st_uid != geteuid() ||
	    (st.st_mode & 077) != 0) {
		close(fd);
		return EPERM;
	}
	*storefdp = fd;
	return 0;
}

void
partial_store_tidy(int basefd, int storefd)
{
	char name[64];
	struct stat a, b;

	store_name(geteuid(), name, sizeof(name));
	/* rmdir fails while anything is left in it, which is the point;
	 * only our store is ever removed. */
	if (fstat(storefd, &a) == 0 &&
	    fstatat(basefd, name, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
	    a.st_dev == b.st_dev && a.st_ino == b.st_ino)
		(void)unlinkat(basefd, name, AT_REMOVEDIR);
}

/* Record text: magic, flags, the state, the key's directory, the name in
 * hex (any byte but '/' and NUL may be in a name). */
static int
record_format(const struct partial_key *k, const struct partial_state *ps,
    char *buf, size_t len)
{
	size_t used, i;
	int n;

	n = snprintf(buf, len, "%s %d %d %llu %llu %lld %lld %ld %lld %ld "
	    "%llu %llu ", RECORD_MAGIC, ps->replacing, ps->exists,
	    (unsigned long long)ps->dev, (unsigned long long)ps->ino,
	    (long long)ps->size, (long long)ps->mtime.tv_sec,
	    (long)ps->mtime.tv_nsec, (long long)ps->ctime.tv_sec,
	    (long)ps->ctime.tv_nsec, (unsigned long long)k->dirdev,
	    (unsigned long long)k->dirino);
	if (n < 0 || (size_t)n >= len)
		return ENAMETOOLONG;
	used = (size_t)n;
	for (i = 0; k->name[i] != '\0'; i++) {
		if (used + 3 >= len)
			return ENAMETOOLONG;
		snprintf(buf + used, len - used, "%02x",
		    (unsigned char)k->name[i]);
		used += 2;
	}
	buf[used++] = '\n';
	buf[used] = '\0';
	return 0;
}

static int
record_parse(const char *buf, const struct partial_key *k,
    struct partial_state *ps, char *nameout)
{
	char magic[32], hex[2 * (NAME_MAX + 1) + 1], name[NAME_MAX + 1];
	unsigned long long dev, ino, ddev, dino;
	long long size, msec, csec;
	long mnsec, cnsec;
	size_t i, hl;
	int repl, ex;

	memset(ps, 0, sizeof(*ps));
	if (sscanf(buf, "%31s %d %d %llu %llu %lld %lld %ld %lld %ld %llu "
	    "%llu %511s", magic, &repl, &ex, &dev, &ino, &size, &msec, &mnsec,
	    &csec, &cnsec, &ddev, &dino, hex) != 13 ||
	    strcmp(magic, RECORD_MAGIC) != 0)
		return EINVAL;
	hl = strlen(hex);
	if (hl % 2 != 0 || hl / 2 > NAME_MAX)
		return EINVAL;
	for (i = 0; i < hl / 2; i++) {
		unsigned int c;

		if (sscanf(hex + 2 * i, "%2x", &c) != 1 || c == 0 || c == '/')
			return EINVAL;
		name[i] = (char)c;
	}
	name[hl / 2] = '\0';
	/* The record must be about this destination (a hashed key could
	 * be another name's). */
	if (k != NULL && (strcmp(name, k->name) != 0 ||
	    ddev != (unsigned long long)k->dirdev ||
	    dino != (unsigned long long)k->dirino))
		return EINVAL;
	if (nameout != NULL)
		memcpy(nameout, name, hl / 2 + 1);
	ps->replacing = repl != 0;
	ps->exists = ex != 0;
	ps->dev = (dev_t)dev;
	ps->ino = (ino_t)ino;
	ps->size = (off_t)size;
	ps->mtime.tv_sec = (time_t)msec;
	ps->mtime.tv_nsec = mnsec;
	ps->ctime.tv_sec = (time_t)csec;
	ps->ctime.tv_nsec = cnsec;
	return 0;
}

/* Read the record from `fd`. */
static int
record_read_fd(int fd, const struct partial_key *k, struct partial_state *ps)
{
	char buf[RECORD_MAX];
	ssize_t n;

	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return n < 0 ? errno : EINVAL;
	buf[n] = '\0';
	return record_parse(buf, k, ps, NULL);
}

/* Held by a replacement in flight (an exclusive lock)?  Readers take a
 * shared one, so two lookups never mistake each other for one. */
static int
record_busy(int fd)
{
	if (flock(fd, LOCK_SH | LOCK_NB) == 0)
		return 0;
	return errno == EWOULDBLOCK || errno == EAGAIN;
}

static time_t
record_age_limit(const struct partial_limits *lim)
{
	if (lim->record_age > 0)
		return lim->record_age;
	return lim->age * PARTIAL_RECORD_FACTOR;
}

static int
data_stat(int storefd, const struct partial_key *k, struct stat *st)
{
	char name[NAME_MAX + 1];

	entry_name('d', k, name, sizeof(name));
	if (fstatat(storefd, name, st, AT_SYMLINK_NOFOLLOW) != 0)
		return errno;
	return S_ISREG(st->st_mode) ? 0 : ENOENT;
}

void
partial_forget(int storefd, const struct partial_key *k, int record)
{
	char name[NAME_MAX + 1];
	int fd;

	entry_name('d', k, name, sizeof(name));
	(void)unlinkat(storefd, name, 0);
	if (!record)
		return;
	entry_name('r', k, name, sizeof(name));
	if ((fd = openat(storefd, name, O_RDONLY | ENTRY_OPEN_FLAGS)) < 0)
		return;
	if (!record_busy(fd))
		(void)unlinkat(storefd, name, 0);
	close(fd);
}

int
partial_find(int storefd, const struct partial_key *k,
    const struct partial_state *now, const struct partial_limits *lim,
    struct partial_found *out)
{
	char name[NAME_MAX + 1];
	struct stat rst;
	time_t age;
	int fd, r = 0;

	memset(out, 0, sizeof(*out));
	out->kind = PARTIAL_NONE;
	entry_name('r', k, name, sizeof(name));
	if ((fd = openat(storefd, name, O_RDONLY | ENTRY_OPEN_FLAGS)) < 0)
		return errno == ENOENT ? 0 : errno;
	if (fstat(fd, &rst) != 0) {
		r = errno;
		goto out;
	}
	if (!S_ISREG(rst.st_mode))
		goto out;
	if (record_busy(fd)) {
		/* A replacement in flight in another session, or a resume
		 * of its kept data: nothing to continue here, and nothing
		 * to remove. */
		if (record_read_fd(fd, k, &out->state) == 0)
			out->kind = PARTIAL_BUSY;
		goto out;
	}
	if (record_read_fd(fd, k, &out->state) != 0) {
		partial_forget(storefd, k, 1);
		goto out;
	}
	age = time(NULL) - rst.st_mtime;
	if (age > record_age_limit(lim) ||
	    !partial_state_same(&out->state, now)) {
		/* Expired, or the destination changed since: somebody
		 * uploaded, removed or touched it, and a resume would
		 * continue something that is no longer there. */
		partial_forget(storefd, k, 1);
		goto out;
	}
	if (data_stat(storefd, k, &out->st) == 0) {
		if (age <= lim->age) {
			out->kind = PARTIAL_DATA;
			goto out;
		}
		partial_forget(storefd, k, 0);
	}
	if (out->state.replacing)
		out->kind = PARTIAL_REPLACED;
	else
		partial_forget(storefd, k, 1);
 out:
	close(fd);
	return r;
}

static int
temp_record_name(char *out, size_t len)
{
	unsigned char rnd[8];
	size_t i;
	int n;

	if (getentropy(rnd, sizeof(rnd)) != 0)
		return errno;
	n = snprintf(out, len, "t.");
	for (i = 0; i < sizeof(rnd); i++)
		n += snprintf(out + n, len - (size_t)n, "%02x", rnd[i]);
	return 0;
}

int
partial_record_put(int storefd, const struct partial_key *k,
    const struct partial_state *ps, int hold, int *fdp)
{
	char name[NAME_MAX + 1], tmp[32], text[RECORD_MAX];
	int fd, r, tries;

	if (fdp != NULL)
		*fdp = -1;
	if ((r = record_format(k, ps, text, sizeof(text))) != 0)
		return r;
	entry_name('r', k, name, sizeof(name));
	if ((fd = openat(storefd, name, O_RDONLY | ENTRY_OPEN_FLAGS)) >= 0) {
		r = record_busy(fd) ? EBUSY : 0;
		close(fd);
		if (r != 0)
			return r;
	}
	/* Written under a temporary name and renamed: a reader sees the
	 * old record or the new one, whole. */
	for (tries = 0; ; tries++) {
		if ((r = temp_record_name(tmp, sizeof(tmp))) != 0)
			return r;
		fd = openat(storefd, tmp, O_RDWR | O_CREAT | O_EXCL |
		    ENTRY_OPEN_FLAGS, 0600);
		if (fd >= 0)
			break;
		if (errno != EEXIST || tries >= 10)
			return errno;
	}
	if ((hold && flock(fd, LOCK_EX | LOCK_NB) != 0) ||
	    (r = write_full(fd, text, strlen(text))) != 0 ||
	    renameat(storefd, tmp, storefd, name) != 0) {
		if (r == 0)
			r = errno;
		(void)unlinkat(storefd, tmp, 0);
		close(fd);
		return r;
	}
	if (hold && fdp != NULL)
		*fdp = fd;
	else
		close(fd);
	return 0;
}

int
partial_record_hold(int storefd, const struct partial_key *k, int *fdp)
{
	char name[NAME_MAX + 1];
	int fd, tries;

	*fdp = -1;
	entry_name('r', k, name, sizeof(name));
	if ((fd = openat(storefd, name, O_RDONLY | ENTRY_OPEN_FLAGS)) < 0)
		return errno;
	/* A lookup holds a shared lock for a moment: try again then. */
	for (tries = 0; flock(fd, LOCK_EX | LOCK_NB) != 0; tries++) {
		if ((errno != EWOULDBLOCK && errno != EAGAIN) || tries >= 20) {
			close(fd);
			return EBUSY;
		}
		(void)usleep(1000);
	}
	*fdp = fd;
	return 0;
}

void
partial_record_release(int storefd, const struct partial_key *k, int recfd,
    int done)
{
	char name[NAME_MAX + 1];
	struct stat a, b;

	if (recfd < 0)
		return;
	entry_name('r', k, name, sizeof(name));
	if (fstat(recfd, &a) == 0 &&
	    fstatat(storefd, name, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
	    a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
		if (done)
			(void)unlinkat(storefd, name, 0);
		else
			(void)futimens(recfd, NULL);	/* kept from now */
	}
	close(recfd);
}

int
partial_data_open(int storefd, const struct partial_key *k, int oflags,
    int *fdp)
{
	char name[NAME_MAX + 1];
	struct stat st;
	int fd, fl;

	*fdp = -1;
	entry_name('d', k, name, sizeof(name));
	if ((fd = openat(storefd, name, oflags | ENTRY_OPEN_FLAGS)) < 0)
		return errno;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    (fl = fcntl(fd, F_GETFL)) < 0 ||
	    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
		close(fd);
		return ENOENT;
	}
	*fdp = fd;
	return 0;
}

struct data_entry {
	char name[NAME_MAX + 1];
	time_t mtime;
	off_t bytes;
};

static int
by_mtime(const void *a, const void *b)
{
	const struct data_entry *x = a, *y = b;

	return x->mtime < y->mtime ? -1 : x->mtime > y->mtime;
}

int
partial_make_room(int storefd, off_t bytes, const struct partial_limits *lim)
{
	struct data_entry *ents = NULL, *n;
	struct dirent *de;
	struct stat st;
	size_t count = 0, cap = 0, i;
	off_t used = 0;
	DIR *d;
	int r = 0;

	if (lim->max_bytes <= 0)
		return 0;
	if (bytes > lim->max_bytes)
		return ENOSPC;
	if ((r = dir_stream(storefd, &d)) != 0)
		return r;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, "d.", 2) != 0 ||
		    fstatat(storefd, de->d_name, &st,
		    AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
			continue;
		if (count == cap) {
			cap = cap ? cap * 2 : 16;
			if ((n = realloc(ents, cap * sizeof(*ents))) == NULL) {
				r = ENOMEM;
				goto out;
			}
			ents = n;
		}
		snprintf(ents[count].name, sizeof(ents[count].name), "%s",
		    de->d_name);
		ents[count].mtime = st.st_mtime;
		ents[count].bytes = (off_t)st.st_blocks * 512;
		used += ents[count].bytes;
		count++;
	}
	if (count > 0)
		qsort(ents, count, sizeof(*ents), by_mtime);
	/* The oldest first: the one least likely to be resumed.  A record
	 * stays, so an interrupted replacement is still refused. */
	for (i = 0; i < count && used + bytes > lim->max_bytes; i++) {
		if (unlinkat(storefd, ents[i].name, 0) == 0)
			used -= ents[i].bytes;
	}
 out:
	closedir(d);
	free(ents);
	return r;
}

int
partial_list(int storefd, dev_t dirdev, ino_t dirino, partial_list_fn *fn,
    void *arg)
{
	char prefix[64];
	struct partial_state ps;
	struct dirent *de;
	size_t plen;
	DIR *d;
	int rfd, r = 0;
	char buf[RECORD_MAX];
	ssize_t n;

	snprintf(prefix, sizeof(prefix), "r.%llx.%llx.",
	    (unsigned long long)dirdev, (unsigned long long)dirino);
	plen = strlen(prefix);
	if ((r = dir_stream(storefd, &d)) != 0)
		return r;
	while (r == 0 && (de = readdir(d)) != NULL) {
		char name[NAME_MAX + 1];
		struct partial_key k;

		if (strncmp(de->d_name, prefix, plen) != 0)
			continue;
		if ((rfd = openat(storefd, de->d_name,
		    O_RDONLY | ENTRY_OPEN_FLAGS)) < 0)
			continue;
		n = pread(rfd, buf, sizeof(buf) - 1, 0);
		close(rfd);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		/* The name from the record, checked against the key it is
		 * filed under. */
		if (record_parse(buf, NULL, &ps, name) != 0)
			continue;
		if (partial_key_make(dirdev, dirino, name, &k) != 0 ||
		    strcmp(de->d_name + 2, k.file) != 0)
			continue;
		r = fn(arg, name);
	}
	closedir(d);
	return r;
}

/* A record entry "r.KEY": remove it and its data when expired, its data
 * alone when that expired.  Held records are live uploads. */
static void
expire_record(int storefd, const char *ent, time_t now,
    const struct partial_limits *lim, unsigned int *removed)
{
	char data[NAME_MAX + 1];
	struct partial_state ps;
	struct stat st, dst;
	int fd, have_data, bad;

	if ((fd = openat(storefd, ent, O_RDONLY | ENTRY_OPEN_FLAGS)) < 0)
		return;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || record_busy(fd)) {
		close(fd);
		return;
	}
	bad = record_read_fd(fd, NULL, &ps) != 0;
	snprintf(data, sizeof(data), "d.%s", ent + 2);
	have_data = fstatat(storefd, data, &dst, AT_SYMLINK_NOFOLLOW) == 0;
	if (bad || now - st.st_mtime > record_age_limit(lim) ||
	    (now - st.st_mtime > lim->age && !ps.replacing) ||
	    (!have_data && !ps.replacing)) {
		if (have_data && unlinkat(storefd, data, 0) == 0)
			(*removed)++;
		(void)unlinkat(storefd, ent, 0);
	} else if (have_data && now - st.st_mtime > lim->age) {
		if (unlinkat(storefd, data, 0) == 0)
			(*removed)++;
	}
	close(fd);
}

int
partial_expire(int storefd, const struct partial_limits *lim,
    unsigned int *removed)
{
	char rec[NAME_MAX + 1];
	struct dirent *de;
	struct stat st;
	time_t now = time(NULL);
	DIR *d;
	int r;

	*removed = 0;
	if ((r = dir_stream(storefd, &d)) != 0)
		return r;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, "r.", 2) == 0)
			expire_record(storefd, de->d_name, now, lim, removed);
	}
	/* What no record speaks for: data whose record went (a crash
	 * between the two unlinks), temporary records of dead processes. */
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, "d.", 2) == 0) {
			snprintf(rec, sizeof(rec), "r.%s", de->d_name + 2);
			if (fstatat(storefd, rec, &st,
			    AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT &&
			    unlinkat(storefd, de->d_name, 0) == 0)
				(*removed)++;
		} else if (strncmp(de->d_name, "t.", 2) == 0 &&
		    fstatat(storefd, de->d_name, &st,
		    AT_SYMLINK_NOFOLLOW) == 0 &&
		    now - st.st_mtime > TEMP_RECORD_AGE)
			(void)unlinkat(storefd, de->d_name, 0);
	}
	closedir(d);
	return 0;
}

static int
parse_scaled(const char *s, const char *units, const unsigned long long *mul,
    unsigned long long *out)
{
	char num[32];
	const char *u;
	size_t len = strlen(s);
	unsigned long long v, m = 1;

	if (len == 0 || len >= sizeof(num))
		return EINVAL;
	memcpy(num, s, len + 1);
	if ((u = strchr(units, num[len - 1])) != NULL && num[len - 1] != '\0') {
		m = mul[u - units];
		num[len - 1] = '\0';
	}
	if (parse_u64(num, &v) != 0)
		return EINVAL;
	if (m != 0 && v > ULLONG_MAX / m)
		return ERANGE;
	*out = v * m;
	return 0;
}

int
partial_parse_age(const char *s, time_t *out)
{
	static const unsigned long long mul[] = { 1, 60, 3600, 86400 };
	unsigned long long v;
	int r;

	if ((r = parse_scaled(s, "smhd", mul, &v)) != 0)
		return r;
	if (v == 0 || v > (unsigned long long)INT32_MAX)
		return ERANGE;
	*out = (time_t)v;
	return 0;
}

int
partial_parse_size(const char *s, off_t *out)
{
	static const unsigned long long mul[] = { 1ULL << 10, 1ULL << 10,
	    1ULL << 20, 1ULL << 20, 1ULL << 30, 1ULL << 30, 1ULL << 40,
	    1ULL << 40 };
	unsigned long long v;
	int r;

	if ((r = parse_scaled(s, "kKmMgGtT", mul, &v)) != 0)
		return r;
	if (v > (unsigned long long)INT64_MAX)
		return ERANGE;
	*out = (off_t)v;
	return 0;
}
