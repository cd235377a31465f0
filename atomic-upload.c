/*
 * atomic-upload: staged receiving of files; see atomic-upload.h.
 *
 * A staged file is either an anonymous O_TMPFILE (no name anywhere until
 * commit, so nothing can be left behind and nothing can be tampered with)
 * or, where that is impossible, a hidden file with an unpredictable name
 * created O_EXCL|O_NOFOLLOW, mode 0600, and locked with flock() for as long
 * as this process holds it so that stage_sweep() can tell a live staging
 * from one whose process died.
 *
 * All names are resolved relative to directory descriptors taken at
 * stage_open() and held until the end: a parent directory swapped for a
 * symlink halfway through an upload cannot redirect the commit.
 */
#include "includes.h"

#include <sys/types.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#ifdef HAVE_SYS_XATTR_H
# include <sys/xattr.h>
#endif
#ifdef HAVE_SYS_RANDOM_H
# include <sys/random.h>
#endif
#ifdef HAVE_LINUX_FS_H
# include <linux/fs.h>
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "atomic-upload.h"

#ifndef NAME_MAX
# define NAME_MAX 255
#endif
#ifndef O_CLOEXEC
# define O_CLOEXEC 0
#endif
#ifndef O_NOFOLLOW
# define O_NOFOLLOW 0
#endif

/* Named temporaries: "." + a prefix of the destination name + ".au-" + 16
 * random characters.  The random part comes last so that no pattern a
 * processing script matches on the destination name (say "*.csv") matches
 * a temporary, and the whole stays within NAME_MAX for any destination. */
#define TEMP_TAG	".au-"
#define TEMP_RANDOM	16
#define TEMP_PREFIX_MAX	(NAME_MAX - 1 - (sizeof(TEMP_TAG) - 1) - TEMP_RANDOM)

#define SYMLINK_MAX_DEPTH 40

struct staged_file {
	/* Registry of live stagings for stage_abort_all(). */
	struct staged_file *prev, *next;

	int fd;			/* the staged data (or the file, if DIRECT) */
	int dirfd;		/* destination directory, held */
	int tmpdirfd;		/* directory of the named temp; == dirfd or own */
	enum stage_method method;
	int aborted;		/* set by stage_abort_all(): fds already closed */

	char path[PATH_MAX];	/* destination as given */
	char name[NAME_MAX + 1];	/* destination basename after symlinks */
	char tmpname[NAME_MAX + 1];	/* named temp in tmpdirfd, "" if none */

	int excl;
	int existed;		/* destination existed at open */
	uid_t old_uid;
	gid_t old_gid;
	mode_t final_mode;	/* applied at commit */
	int chown_at_commit;	/* root: owner applied at commit, so the temp
				 * stays ours (sweepable, and not writable by
				 * the future owner before it is complete) */
	uid_t final_uid;
	gid_t final_gid;
	int wrote;		/* stage_write was called */
	int write_error;	/* first failed write: commit must fail */

	int have_expect;
	off_t expect_size;

	enum stage_sync sync;
	int no_close_event;
	off_t wb_started;	/* write-back started up to here */
	off_t wb_waited;	/* ... and finished up to here */
	double start;
	const char *note;
};

static struct staged_file *live_stagings;
static int live_count;

static double
now_seconds(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		return 0.0;
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
registry_add(struct staged_file *sf)
{
	sf->prev = NULL;
	sf->next = live_stagings;
	if (live_stagings != NULL)
		live_stagings->prev = sf;
	live_stagings = sf;
	live_count++;
}

static void
registry_remove(struct staged_file *sf)
{
	if (sf->prev != NULL)
		sf->prev->next = sf->next;
	else if (live_stagings == sf)
		live_stagings = sf->next;
	if (sf->next != NULL)
		sf->next->prev = sf->prev;
	sf->prev = sf->next = NULL;
	live_count--;
}

/* close() that keeps errno; Linux closes the fd even on EINTR, so no retry. */
static void
close_keep_errno(int fd)
{
	int saved = errno;

	if (fd >= 0)
		close(fd);
	errno = saved;
}

static int
fill_random(unsigned char *buf, size_t len)
{
	size_t off = 0;
	ssize_t n;
	int fd, r = 0;

#ifdef HAVE_GETRANDOM
	while (off < len) {
		n = getrandom(buf + off, len - off, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		off += (size_t)n;
	}
	if (off == len)
		return 0;
#endif
	if ((fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)) < 0)
		return errno;
	while (off < len) {
		n = read(fd, buf + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? errno : EIO;
			break;
		}
		off += (size_t)n;
	}
	close(fd);
	return r;
}

static int
make_temp_name(const char *dest, char *out, size_t outlen)
{
	static const char alphabet[] =
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	unsigned char rnd[TEMP_RANDOM];
	char suffix[TEMP_RANDOM + 1];
	size_t i, plen;
	int r;

	if ((r = fill_random(rnd, sizeof(rnd))) != 0)
		return r;
	/* 62 symbols; the slight modulo bias leaves > 90 bits of entropy. */
	for (i = 0; i < TEMP_RANDOM; i++)
		suffix[i] = alphabet[rnd[i] % (sizeof(alphabet) - 1)];
	suffix[TEMP_RANDOM] = '\0';
	plen = strlen(dest);
	if (plen > TEMP_PREFIX_MAX)
		plen = TEMP_PREFIX_MAX;
	if (snprintf(out, outlen, ".%.*s%s%s", (int)plen, dest, TEMP_TAG,
	    suffix) >= (int)outlen)
		return ENAMETOOLONG;
	return 0;
}

int
stage_is_temp_name(const char *name)
{
	size_t len, i;
	const char *tail;

	if (name == NULL || name[0] != '.')
		return 0;
	len = strlen(name);
	if (len < 1 + (sizeof(TEMP_TAG) - 1) + TEMP_RANDOM || len > NAME_MAX)
		return 0;
	tail = name + len - TEMP_RANDOM;
	if (strncmp(tail - (sizeof(TEMP_TAG) - 1), TEMP_TAG,
	    sizeof(TEMP_TAG) - 1) != 0)
		return 0;
	for (i = 0; i < TEMP_RANDOM; i++) {
		char c = tail[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9')))
			return 0;
	}
	return 1;
}

static mode_t
current_umask(void)
{
	mode_t m = umask(077);

	umask(m);
	return m;
}

/*
 * Split `path` into an opened directory and a basename, following a
 * symlink at the last component the way open(2) would, so that writing
 * through a symlink replaces the file it points to rather than the link.
 * With `nofollow` (O_EXCL) a symlink is reported as existing.
 */
static int
resolve_destination(const char *path, int nofollow, int *dirfdp,
    char *name, size_t namelen, struct stat *st, int *existsp)
{
	char cur[PATH_MAX], link[PATH_MAX], dir[PATH_MAX];
	const char *slash, *base;
	ssize_t n;
	int depth, dfd = -1, r = 0;

	*dirfdp = -1;
	*existsp = 0;
	if (path[0] == '\0')
		return ENOENT;
	if (snprintf(cur, sizeof(cur), "%s", path) >= (int)sizeof(cur))
		return ENAMETOOLONG;
	for (depth = 0; ; depth++) {
		if (depth > SYMLINK_MAX_DEPTH) {
			r = ELOOP;
			goto out;
		}
		slash = strrchr(cur, '/');
		if (slash == NULL) {
			snprintf(dir, sizeof(dir), ".");
			base = cur;
		} else {
			if (slash == cur)
				snprintf(dir, sizeof(dir), "/");
			else
				snprintf(dir, sizeof(dir), "%.*s",
				    (int)(slash - cur), cur);
			base = slash + 1;
		}
		/* "dir/" or "." or "..": names a directory, as open(2) says. */
		if (*base == '\0' || strcmp(base, ".") == 0 ||
		    strcmp(base, "..") == 0) {
			r = EISDIR;
			goto out;
		}
		if (strlen(base) > NAME_MAX) {
			r = ENAMETOOLONG;
			goto out;
		}
		close_keep_errno(dfd);
		dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0) {
			r = errno;
			goto out;
		}
		if (fstatat(dfd, base, st, AT_SYMLINK_NOFOLLOW) != 0) {
			if (errno != ENOENT) {
				r = errno;
				goto out;
			}
			break;	/* does not exist (yet) */
		}
		if (!S_ISLNK(st->st_mode) || nofollow) {
			*existsp = 1;
			break;
		}
		n = readlinkat(dfd, base, link, sizeof(link) - 1);
		if (n < 0) {
			r = errno;
			goto out;
		}
		link[n] = '\0';
		if (link[0] == '/') {
			snprintf(cur, sizeof(cur), "%s", link);
		} else if (snprintf(cur, sizeof(cur), "%s/%s", dir, link) >=
		    (int)sizeof(cur)) {
			r = ENAMETOOLONG;
			goto out;
		}
	}
	snprintf(name, namelen, "%s", base);
 out:
	if (r != 0) {
		close_keep_errno(dfd);
		return r;
	}
	*dirfdp = dfd;
	return 0;
}

/* Same mount (not only the same device: bind mounts refuse rename too). */
static int
same_mount(int fda, int fdb)
{
#if defined(HAVE_STATX) && defined(HAVE_DECL_STATX_MNT_ID) && HAVE_DECL_STATX_MNT_ID
	struct statx sa, sb;

	if (statx(fda, "", AT_EMPTY_PATH, STATX_MNT_ID, &sa) == 0 &&
	    statx(fdb, "", AT_EMPTY_PATH, STATX_MNT_ID, &sb) == 0 &&
	    (sa.stx_mask & STATX_MNT_ID) && (sb.stx_mask & STATX_MNT_ID))
		return sa.stx_mnt_id == sb.stx_mnt_id;
#endif
	{
		struct stat a, b;

		if (fstat(fda, &a) != 0 || fstat(fdb, &b) != 0)
			return 0;
		return a.st_dev == b.st_dev;
	}
}

/*
 * Open the configured staging directory for this upload, or explain in
 * *note why the destination directory is used instead.
 */
static int
open_staging_dir(const char *tmpdir, int dirfd, const char **note)
{
	struct stat st;
	int fd;

	/* O_PATH needs no read permission: a shared staging directory may
	 * be 1733, so that users cannot list each other's temp names. */
#ifdef O_PATH
	fd = open(tmpdir, O_PATH | O_DIRECTORY | O_CLOEXEC);
#else
	fd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
#endif
	if (fd < 0) {
		*note = "staging directory unusable; staging beside the "
		    "destination";
		return -1;
	}
	if (fstat(fd, &st) != 0) {
		close(fd);
		*note = "staging directory unusable; staging beside the "
		    "destination";
		return -1;
	}
	/* Anyone could swap our temp files out from under us. */
	if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX)) {
		close(fd);
		*note = "staging directory is world-writable without the "
		    "sticky bit: refused; staging beside the destination";
		return -1;
	}
	if (!same_mount(fd, dirfd)) {
		close(fd);
		*note = "staging directory is on another filesystem; staging "
		    "beside the destination";
		return -1;
	}
	return fd;
}

static int
proc_fd_available(void)
{
	return access("/proc/self/fd", X_OK) == 0;
}

static int
name_is_fd(int dirfd, const char *name, int fd)
{
	struct stat a, b;

	return fstat(fd, &a) == 0 &&
	    fstatat(dirfd, name, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
	    a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Create the staged file in `tmpdirfd`: O_TMPFILE if we may, else named. */
static int
create_staged(struct staged_file *sf, int tmpdirfd, int allow_tmpfile)
{
	int fd, tries, r;

#if defined(HAVE_DECL_O_TMPFILE) && HAVE_DECL_O_TMPFILE
	if (allow_tmpfile && proc_fd_available()) {
		fd = openat(tmpdirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC,
		    0600);
		if (fd >= 0) {
			/* The lock marks a link made at commit as live. */
			(void)flock(fd, LOCK_EX | LOCK_NB);
			sf->fd = fd;
			sf->method = STAGE_TMPFILE;
			sf->tmpname[0] = '\0';
			return 0;
		}
		/* Filesystems without O_TMPFILE say so in several ways. */
		if (errno != EOPNOTSUPP && errno != EISDIR &&
		    errno != EINVAL && errno != ENOENT && errno != ENOSYS)
			return errno;
	}
#endif
	for (tries = 0; tries < 100; tries++) {
		if ((r = make_temp_name(sf->name, sf->tmpname,
		    sizeof(sf->tmpname))) != 0)
			return r;
		fd = openat(tmpdirfd, sf->tmpname,
		    O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0) {
			if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
				/* Cannot happen to a file we just created. */
				r = errno;
				unlinkat(tmpdirfd, sf->tmpname, 0);
				close(fd);
				sf->tmpname[0] = '\0';
				return r;
			}
			/* A sweep between create and flock may have taken
			 * the name: make sure it is still ours. */
			if (!name_is_fd(tmpdirfd, sf->tmpname, fd)) {
				close(fd);
				continue;
			}
			sf->fd = fd;
			sf->method = STAGE_NAMED;
			return 0;
		}
		if (errno != EEXIST)
			break;
	}
	r = errno;
	sf->tmpname[0] = '\0';
	return r;
}

/* Copy the existing content into the staged file: reflink, then
 * copy_file_range, then plain read/write. */
static int
copy_existing(int src, int dst)
{
	char buf[65536];
	ssize_t n, w;
	size_t off;

#if defined(HAVE_DECL_FICLONE) && HAVE_DECL_FICLONE
	if (ioctl(dst, FICLONE, src) == 0)
		return 0;
#endif
#ifdef HAVE_COPY_FILE_RANGE
	for (;;) {
		n = copy_file_range(src, NULL, dst, NULL, 1 << 30, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EXDEV || errno == EINVAL ||
			    errno == EOPNOTSUPP || errno == ENOSYS)
				break;	/* fall back to read/write */
			return errno;
		}
		if (n == 0)
			return 0;
	}
	/* Start again from the beginning for the fallback. */
	if (ftruncate(dst, 0) != 0 || lseek(src, 0, SEEK_SET) < 0 ||
	    lseek(dst, 0, SEEK_SET) < 0)
		return errno;
#endif
	for (;;) {
		n = read(src, buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (n == 0)
			return 0;
		for (off = 0; off < (size_t)n; off += (size_t)w) {
			w = write(dst, buf + off, (size_t)n - off);
			if (w < 0) {
				if (errno == EINTR) {
					w = 0;
					continue;
				}
				return errno;
			}
		}
	}
}

static void discard(struct staged_file *sf);

/*
 * A write or truncation by someone without CAP_FSETID clears set-user-id,
 * and set-group-id on a group-executable file.  Replacing the inode would
 * keep them, so do to the recorded mode what stock's write to the old inode
 * would have done; a later stage_fchmod() may set them again, as with stock.
 */
static void
kill_setid(struct staged_file *sf)
{
	if (!sf->existed || geteuid() == 0)
		return;
	sf->final_mode &= ~(mode_t)S_ISUID;
	if (sf->final_mode & S_IXGRP)
		sf->final_mode &= ~(mode_t)S_ISGID;
}

static int
open_direct(struct staged_file *sf, int oflags, mode_t mode)
{
	int fd;

	do {
		fd = openat(sf->dirfd, sf->name,
		    (oflags & (O_ACCMODE | O_CREAT | O_TRUNC | O_EXCL |
		    O_APPEND)) | O_NOCTTY | O_CLOEXEC, mode);
	} while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return errno;
	sf->fd = fd;
	sf->method = STAGE_DIRECT;
	return 0;
}

static void
free_staged(struct staged_file *sf)
{
	if (sf->tmpdirfd >= 0 && sf->tmpdirfd != sf->dirfd)
		close(sf->tmpdirfd);
	if (sf->dirfd >= 0)
		close(sf->dirfd);
	free(sf);
}

int
stage_open(const struct stage_opts *opts, const char *path, int oflags,
    mode_t mode, struct staged_file **sfp)
{
	static const struct stage_opts defaults;
	struct staged_file *sf = NULL;
	struct stat st;
	int r = 0, exists = 0, tmpdirfd = -1, srcfd = -1;

	*sfp = NULL;
	if (opts == NULL)
		opts = &defaults;
	if ((oflags & O_ACCMODE) == O_RDONLY)
		return EINVAL;
	if ((sf = calloc(1, sizeof(*sf))) == NULL)
		return ENOMEM;
	sf->fd = sf->dirfd = sf->tmpdirfd = -1;
	sf->start = now_seconds();
	sf->sync = opts->sync;
	sf->no_close_event = opts->no_close_event;
	sf->excl = (oflags & O_CREAT) && (oflags & O_EXCL);
	if (snprintf(sf->path, sizeof(sf->path), "%s", path) >=
	    (int)sizeof(sf->path)) {
		r = ENAMETOOLONG;
		goto out;
	}
	if ((r = resolve_destination(path, sf->excl, &sf->dirfd, sf->name,
	    sizeof(sf->name), &st, &exists)) != 0)
		goto out;
	sf->tmpdirfd = sf->dirfd;

	if (exists && sf->excl) {
		r = EEXIST;
		goto out;
	}
	if (!exists && !(oflags & O_CREAT)) {
		r = ENOENT;
		goto out;
	}
	if (exists && S_ISDIR(st.st_mode)) {
		r = EISDIR;
		goto out;
	}
	if (opts->disabled) {
		sf->note = "staging disabled";
		r = open_direct(sf, oflags, mode);
		goto out;
	}
	if (exists && !S_ISREG(st.st_mode)) {
		sf->note = "not a regular file: writing in place";
		r = open_direct(sf, oflags, mode);
		goto out;
	}
	/* open(2) would refuse a file we may not write: so do we. */
	if (exists && faccessat(sf->dirfd, sf->name, W_OK, AT_EACCESS) != 0) {
		r = errno;
		goto out;
	}
	/* Staging needs to create a name in (or rename into) the directory. */
	if (faccessat(sf->dirfd, ".", W_OK | X_OK, AT_EACCESS) != 0) {
		if (!exists) {
			/* open(2) gives the same error stock would see. */
			r = open_direct(sf, oflags, mode);
			goto out;
		}
		sf->note = "directory not writable: cannot stage, writing in "
		    "place as stock does";
		r = open_direct(sf, oflags, mode);
		goto out;
	}
	if (exists && geteuid() != 0 && st.st_uid != geteuid()) {
		struct stat dst;

		/* In a sticky directory (/tmp-like) only the owner of a name
		 * may replace it: the rename at commit would fail. */
		if (fstat(sf->dirfd, &dst) == 0 && (dst.st_mode & S_ISVTX) &&
		    dst.st_uid != geteuid()) {
			sf->note = "sticky directory and another user's file: "
			    "writing in place as stock does";
			r = open_direct(sf, oflags, mode);
			goto out;
		}
	}
	if (exists && !(oflags & O_TRUNC)) {
		if (opts->modify == STAGE_MODIFY_INPLACE) {
			sf->note = "modify policy in-place";
			r = open_direct(sf, oflags, mode);
			goto out;
		}
		srcfd = openat(sf->dirfd, sf->name,
		    O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
		if (srcfd < 0) {
			sf->note = "existing file not readable: cannot stage a "
			    "copy, writing in place as stock does";
			r = open_direct(sf, oflags, mode);
			goto out;
		}
	}

	if (opts->tmpdir != NULL && opts->tmpdir[0] != '\0') {
		tmpdirfd = open_staging_dir(opts->tmpdir, sf->dirfd, &sf->note);
		if (tmpdirfd >= 0)
			sf->tmpdirfd = tmpdirfd;
	}
	r = create_staged(sf, sf->tmpdirfd, !opts->no_tmpfile);
	if (r == 0 && !exists && sf->tmpdirfd != sf->dirfd) {
		struct stat dst;

		/* A file created elsewhere misses the destination directory's
		 * setgid group inheritance; if we cannot give it that group,
		 * create it where the kernel does so. */
		if (fstat(sf->dirfd, &dst) == 0 && (dst.st_mode & S_ISGID) &&
		    fchown(sf->fd, (uid_t)-1, dst.st_gid) != 0) {
			discard(sf);
			r = EPERM;
		}
	}
	if (r != 0 && sf->tmpdirfd != sf->dirfd) {
		/* A staging directory we may not use: stage beside. */
		close(sf->tmpdirfd);
		sf->tmpdirfd = sf->dirfd;
		sf->note = "cannot create in staging directory; staging "
		    "beside the destination";
		r = create_staged(sf, sf->tmpdirfd, !opts->no_tmpfile);
	}
	if (r != 0)
		goto out;

	if (exists) {
		/* Keep what truncating in place keeps: mode, group, owner. */
		sf->existed = 1;
		sf->old_uid = st.st_uid;
		sf->old_gid = st.st_gid;
		sf->final_mode = st.st_mode & 07777;
		if (geteuid() == 0) {
			sf->chown_at_commit = 1;
			sf->final_uid = st.st_uid;
			sf->final_gid = st.st_gid;
		} else if (st.st_gid != getegid())
			(void)fchown(sf->fd, (uid_t)-1, st.st_gid);
	} else {
		sf->final_mode = mode & 07777 & ~current_umask();
	}
	if (oflags & O_TRUNC)
		kill_setid(sf);
	if (srcfd >= 0) {
		if ((r = copy_existing(srcfd, sf->fd)) != 0)
			goto out;
		if (lseek(sf->fd, 0, SEEK_SET) < 0) {
			r = errno;
			goto out;
		}
	}
	if (oflags & O_APPEND) {
		int fl = fcntl(sf->fd, F_GETFL);

		if (fl < 0 || fcntl(sf->fd, F_SETFL, fl | O_APPEND) != 0) {
			r = errno;
			goto out;
		}
	}
 out:
	if (srcfd >= 0)
		close(srcfd);
	if (r != 0) {
		if (sf->fd >= 0)
			close(sf->fd);
		if (sf->tmpname[0] != '\0')
			unlinkat(sf->tmpdirfd, sf->tmpname, 0);
		free_staged(sf);
		return r;
	}
	registry_add(sf);
	*sfp = sf;
	return 0;
}

int
stage_fd(const struct staged_file *sf)
{
	return sf->fd;
}

enum stage_method
stage_method(const struct staged_file *sf)
{
	return sf->method;
}

const char *
stage_note(const struct staged_file *sf)
{
	return sf->note;
}

/*
 * Write-behind: start flushing every WB_CHUNK of new data as it arrives,
 * and wait only for what lies more than WB_LAG behind the newest byte, so
 * the disk writes while the network delivers.  Waiting for the window just
 * before the current one stalled this single-threaded server whenever the
 * disk was briefly slower than the client (shared disks): the client's
 * window filled, nothing arrived during the wait, and transfer and
 * write-back ran one after the other (libssh2 pipelined upload at
 * durability full: 1.66 x stock instead of 0.95 x).  The final fsync waits
 * for at most WB_LAG + WB_CHUNK of data.
 */
#define WB_CHUNK	(8 * 1024 * 1024)
#define WB_LAG		(32 * 1024 * 1024)

static void
write_behind(struct staged_file *sf, off_t end)
{
#if defined(HAVE_SYNC_FILE_RANGE)
	off_t upto;

	if (sf->sync == STAGE_SYNC_NONE || sf->method == STAGE_DIRECT ||
	    end < sf->wb_started + WB_CHUNK)
		return;
	(void)sync_file_range(sf->fd, sf->wb_started, end - sf->wb_started,
	    SYNC_FILE_RANGE_WRITE);
	sf->wb_started = end;
	upto = end - WB_LAG;
	if (upto >= sf->wb_waited + WB_CHUNK) {
		(void)sync_file_range(sf->fd, sf->wb_waited,
		    upto - sf->wb_waited, SYNC_FILE_RANGE_WAIT_BEFORE |
		    SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
# ifdef HAVE_POSIX_FADVISE
		/* Clean now: no reason to keep an upload in the cache. */
		(void)posix_fadvise(sf->fd, sf->wb_waited,
		    upto - sf->wb_waited, POSIX_FADV_DONTNEED);
# endif
		sf->wb_waited = upto;
	}
#else
	(void)sf;
	(void)end;
#endif
}

int
stage_write(struct staged_file *sf, const void *buf, size_t len, off_t off)
{
	const char *p = buf;
	size_t done = 0;
	ssize_t n;

	if (sf->aborted)
		return EBADF;
	if (!sf->wrote) {
		sf->wrote = 1;
		kill_setid(sf);
	}
	while (done < len) {
		n = pwrite(sf->fd, p + done, len - done, off + (off_t)done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			/* A hole in the data must never be published. */
			if (sf->write_error == 0)
				sf->write_error = errno;
			return errno;
		}
		if (n == 0) {
			if (sf->write_error == 0)
				sf->write_error = EIO;
			return EIO;
		}
		done += (size_t)n;
	}
	write_behind(sf, off + (off_t)len);
	return 0;
}

void
stage_expect_size(struct staged_file *sf, off_t size)
{
	sf->have_expect = 1;
	sf->expect_size = size;
}

int
stage_fchmod(struct staged_file *sf, mode_t mode)
{
	if (sf->aborted)
		return EBADF;
	if (sf->method == STAGE_DIRECT)
		return fchmod(sf->fd, mode & 07777) == 0 ? 0 : errno;
	/* Recorded: the temp stays 0600 until commit. */
	sf->final_mode = mode & 07777;
	return 0;
}

int
stage_fchown(struct staged_file *sf, uid_t uid, gid_t gid)
{
	if (sf->aborted)
		return EBADF;
	if (sf->chown_at_commit) {
		/* Root may give any owner: record it for the commit. */
		if (uid != (uid_t)-1)
			sf->final_uid = uid;
		if (gid != (gid_t)-1)
			sf->final_gid = gid;
		return 0;
	}
	return fchown(sf->fd, uid, gid) == 0 ? 0 : errno;
}

int
stage_fstat(const struct staged_file *sf, struct stat *st)
{
	if (sf->aborted)
		return EBADF;
	if (fstat(sf->fd, st) != 0)
		return errno;
	if (sf->method != STAGE_DIRECT)
		st->st_mode = (st->st_mode & S_IFMT) | sf->final_mode;
	if (sf->chown_at_commit) {
		st->st_uid = sf->final_uid;
		st->st_gid = sf->final_gid;
	}
	return 0;
}

static int
sync_data(int fd)
{
	int r;

	do {
#ifdef HAVE_FDATASYNC
		r = fdatasync(fd);
#else
		r = fsync(fd);
#endif
	} while (r != 0 && errno == EINTR);
	return r == 0 ? 0 : errno;
}

static int
sync_all(int fd)
{
	int r;

	do {
		r = fsync(fd);
	} while (r != 0 && errno == EINTR);
	return r == 0 ? 0 : errno;
}

int
stage_fsync(struct staged_file *sf)
{
	if (sf->aborted)
		return EBADF;
	return sync_all(sf->fd);
}

static void
fill_report(const struct staged_file *sf, struct stage_report *rep,
    int error, const char *reason)
{
	struct stat st;

	if (rep == NULL)
		return;
	memset(rep, 0, sizeof(*rep));
	snprintf(rep->path, sizeof(rep->path), "%s", sf->path);
	if (!sf->aborted && sf->fd >= 0 && fstat(sf->fd, &st) == 0)
		rep->bytes = st.st_size;
	rep->seconds = now_seconds() - sf->start;
	if (rep->seconds < 0)
		rep->seconds = 0;
	rep->method = sf->method;
	rep->error = error;
	if (reason != NULL && error != 0)
		snprintf(rep->reason, sizeof(rep->reason), "%s: %s", reason,
		    strerror(error));
	else if (reason != NULL)
		snprintf(rep->reason, sizeof(rep->reason), "%s", reason);
}

/* Discard the staged data (not the registry entry or memory). */
static void
discard(struct staged_file *sf)
{
	if (sf->aborted)
		return;
	if (sf->tmpname[0] != '\0') {
		unlinkat(sf->tmpdirfd, sf->tmpname, 0);
		sf->tmpname[0] = '\0';
	}
	if (sf->fd >= 0) {
		close(sf->fd);
		sf->fd = -1;
	}
}

#if defined(HAVE_FLISTXATTR) && defined(HAVE_FGETXATTR) && defined(HAVE_FSETXATTR)
/* Extended attributes (and so POSIX ACLs) of the file being replaced. */
static void
copy_xattrs(int dirfd, const char *name, int dst)
{
	char *list = NULL, *val = NULL, *p;
	ssize_t llen, vlen;
	int src;

	src = openat(dirfd, name,
	    O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
	if (src < 0)
		return;
	if ((llen = flistxattr(src, NULL, 0)) <= 0)
		goto out;
	if ((list = malloc((size_t)llen)) == NULL ||
	    (llen = flistxattr(src, list, (size_t)llen)) <= 0)
		goto out;
	for (p = list; p < list + llen; p += strlen(p) + 1) {
		/* The kernel drops file capabilities on any write; new
		 * content must not inherit the old content's privileges. */
		if (strcmp(p, "security.capability") == 0)
			continue;
		if ((vlen = fgetxattr(src, p, NULL, 0)) < 0)
			continue;
		free(val);
		if ((val = malloc((size_t)vlen + 1)) == NULL)
			goto out;
		if ((vlen = fgetxattr(src, p, val, (size_t)vlen)) < 0)
			continue;
		/* Best effort, as "where possible" says: security.* may be
		 * refused to an unprivileged user. */
		(void)fsetxattr(dst, p, val, (size_t)vlen, 0);
	}
 out:
	free(list);
	free(val);
	close(src);
}
#endif

static int
link_anonymous(struct staged_file *sf, const char *target)
{
#ifdef HAVE_LINKAT
	char proc[64];
	int r;

# if defined(HAVE_DECL_AT_EMPTY_PATH) && HAVE_DECL_AT_EMPTY_PATH
	/*
	 * Linking the descriptor itself skips the /proc lookup, which costs
	 * more than the link (a proc inode per call).  Linux before 6.10
	 * allows it only with CAP_DAC_READ_SEARCH and says ENOENT; later
	 * ones also to the opener of the file.  /proc works for everyone.
	 */
	if (linkat(sf->fd, "", sf->dirfd, target, AT_EMPTY_PATH) == 0)
		return 0;
	if (errno != ENOENT && errno != EPERM && errno != EINVAL)
		return errno;
# endif
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", sf->fd);
	r = linkat(AT_FDCWD, proc, sf->dirfd, target, AT_SYMLINK_FOLLOW);
	return r == 0 ? 0 : errno;
#else
	(void)sf;
	(void)target;
	return ENOSYS;	/* unreachable: no O_TMPFILE without linkat */
#endif
}

/* Publish under sf->name; the previous content stays until this succeeds. */
static int
publish(struct staged_file *sf, const char **step)
{
	char tmp[NAME_MAX + 1];
	int r, tries;

	if (sf->method == STAGE_TMPFILE) {
		if (sf->excl || !sf->existed) {
			*step = "link into place";
			r = link_anonymous(sf, sf->name);
			/* EEXIST without O_EXCL: somebody created the name
			 * meanwhile; replace it like any existing file. */
			if (r != EEXIST || sf->excl)
				return r;
		}
		/* linkat cannot replace: link to a hidden name, rename over. */
		for (tries = 0; tries < 100; tries++) {
			*step = "link temporary name";
			if ((r = make_temp_name(sf->name, tmp, sizeof(tmp))) != 0)
				return r;
			if ((r = link_anonymous(sf, tmp)) != EEXIST)
				break;
		}
		if (r != 0)
			return r;
		*step = "rename into place";
		if (renameat(sf->dirfd, tmp, sf->dirfd, sf->name) != 0) {
			r = errno;
			unlinkat(sf->dirfd, tmp, 0);
			return r;
		}
		return 0;
	}

	/* STAGE_NAMED */
	if (sf->excl) {
		*step = "rename into place (no replace)";
#if defined(HAVE_RENAMEAT2) && defined(HAVE_DECL_RENAME_NOREPLACE) && HAVE_DECL_RENAME_NOREPLACE
		if (renameat2(sf->tmpdirfd, sf->tmpname, sf->dirfd, sf->name,
		    RENAME_NOREPLACE) == 0) {
			sf->tmpname[0] = '\0';
			return 0;
		}
		if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
			return errno;
#endif
		/* Portable no-replace: link fails if the name exists. */
		*step = "link into place";
#ifdef HAVE_LINKAT
		if (linkat(sf->tmpdirfd, sf->tmpname, sf->dirfd, sf->name,
		    0) != 0)
			return errno;
#else
		return ENOSYS;
#endif
		unlinkat(sf->tmpdirfd, sf->tmpname, 0);
		sf->tmpname[0] = '\0';
		return 0;
	}
	*step = "rename into place";
	if (renameat(sf->tmpdirfd, sf->tmpname, sf->dirfd, sf->name) != 0)
		return errno;
	sf->tmpname[0] = '\0';
	return 0;
}

int
stage_commit(struct staged_file *sf, struct stage_report *rep)
{
	const char *step = NULL;
	struct stat st;
	int r = 0, fd;

	if (sf->aborted) {
		r = ECANCELED;
		step = "aborted";
		goto fail;
	}
	if (sf->write_error != 0) {
		r = sf->write_error;
		step = "earlier write";
		goto fail;
	}
	if (sf->have_expect) {
		step = "check declared size";
		if (fstat(sf->fd, &st) != 0) {
			r = errno;
			goto fail;
		}
		if (st.st_size != sf->expect_size) {
			r = ECANCELED;
			fill_report(sf, rep, 0, NULL);
			if (rep != NULL)
				snprintf(rep->reason, sizeof(rep->reason),
				    "declared size %lld, received %lld",
				    (long long)sf->expect_size,
				    (long long)st.st_size);
			discard(sf);
			if (rep != NULL)
				rep->error = r;
			goto done;
		}
	}
	if (sf->method == STAGE_DIRECT) {
		if (sf->sync != STAGE_SYNC_NONE) {
			step = "fsync";
			if ((r = sync_data(sf->fd)) != 0)
				goto fail;
		}
		fill_report(sf, rep, 0, NULL);
		if (rep != NULL)
			rep->published = 1;
		step = "close";
		if (close(sf->fd) != 0 && errno != EINTR) {
			r = errno;
			sf->fd = -1;
			goto fail;
		}
		sf->fd = -1;
		goto done;
	}
	/* Durability: the data must be on disk before the name points at it. */
	if (sf->sync != STAGE_SYNC_NONE) {
		step = "fsync";
		if ((r = sync_data(sf->fd)) != 0)
			goto fail;
	}
#if defined(HAVE_FLISTXATTR) && defined(HAVE_FGETXATTR) && defined(HAVE_FSETXATTR)
	if (sf->existed)
		copy_xattrs(sf->dirfd, sf->name, sf->fd);
#endif
	if (sf->chown_at_commit) {
		step = "set owner";
		if (fchown(sf->fd, sf->final_uid, sf->final_gid) != 0) {
			r = errno;
			goto fail;
		}
	}
	/* After ownership is settled (chown clears setuid bits). */
	step = "set mode";
	if (fchmod(sf->fd, sf->final_mode) != 0) {
		r = errno;
		goto fail;
	}
	fill_report(sf, rep, 0, NULL);
	if ((r = publish(sf, &step)) != 0)
		goto fail;
	if (rep != NULL)
		rep->published = 1;
	if (sf->sync == STAGE_SYNC_FULL) {
		/* Published: the old content is gone, so an error here is
		 * reported but cannot be undone. */
		if ((r = sync_all(sf->dirfd)) != 0) {
			if (rep != NULL) {
				rep->error = r;
				snprintf(rep->reason, sizeof(rep->reason),
				    "directory fsync after publishing: %s",
				    strerror(r));
			}
			close(sf->fd);
			sf->fd = -1;
			goto done;
		}
	}
	/* Closing a renamed named temp fires IN_CLOSE_WRITE on the final
	 * name; an O_TMPFILE's close reports only "#inode", so open and
	 * close the published name once to give watchers that event. */
	close(sf->fd);
	sf->fd = -1;
	if (sf->method == STAGE_TMPFILE && !sf->no_close_event) {
		fd = openat(sf->dirfd, sf->name, O_WRONLY | O_NOFOLLOW |
		    O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
		if (fd >= 0)
			close(fd);
	}
	goto done;

 fail:
	if (rep != NULL) {
		fill_report(sf, rep, r, step);
	}
	discard(sf);
 done:
	registry_remove(sf);
	free_staged(sf);
	return r;
}

void
stage_abort(struct staged_file *sf, const char *reason,
    struct stage_report *rep)
{
	if (sf == NULL)
		return;
	fill_report(sf, rep, 0, reason != NULL ? reason : "aborted");
	if (sf->method == STAGE_DIRECT && !sf->aborted) {
		/* Nothing to undo: the file was written in place. */
		close(sf->fd);
		sf->fd = -1;
	} else {
		discard(sf);
	}
	registry_remove(sf);
	free_staged(sf);
}

int
stage_abort_all(void)
{
	struct staged_file *sf;
	int n = 0;

	/* Async-signal-safe: only close() and unlinkat(), no allocation;
	 * the entries stay registered until their owner frees them. */
	for (sf = live_stagings; sf != NULL; sf = sf->next) {
		if (sf->aborted)
			continue;
		if (sf->tmpname[0] != '\0')
			unlinkat(sf->tmpdirfd, sf->tmpname, 0);
		if (sf->fd >= 0)
			close(sf->fd);
		sf->fd = -1;
		sf->aborted = 1;
		n++;
	}
	return n;
}

int
stage_count(void)
{
	return live_count;
}

int
stage_sweep(const char *dir, unsigned int *removed)
{
	struct dirent *de;
	struct stat st, again;
	DIR *d = NULL;
	int dfd = -1, fd, r = 0;
	unsigned int count = 0;

	if (removed != NULL)
		*removed = 0;
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return errno;
	if ((d = fdopendir(dfd)) == NULL) {
		r = errno;
		close(dfd);
		return r;
	}
	while ((de = readdir(d)) != NULL) {
		if (!stage_is_temp_name(de->d_name))
			continue;
		fd = openat(dfd, de->d_name, O_RDONLY | O_NOFOLLOW |
		    O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
		if (fd < 0)
			continue;
		/* Only our own regular files whose staging process is gone
		 * (a live staging holds the lock). */
		if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
		    st.st_uid != geteuid() ||
		    flock(fd, LOCK_EX | LOCK_NB) != 0) {
			close(fd);
			continue;
		}
		if (fstatat(dfd, de->d_name, &again, AT_SYMLINK_NOFOLLOW) == 0 &&
		    again.st_dev == st.st_dev && again.st_ino == st.st_ino &&
		    unlinkat(dfd, de->d_name, 0) == 0)
			count++;
		close(fd);
	}
	closedir(d);
	if (removed != NULL)
		*removed = count;
	return r;
}

int
stage_expand_dir(const char *tmpl, const char *user, const char *home,
    uid_t uid, char **out)
{
	char *buf = NULL;
	size_t len = 0, cap = 0, add;
	const char *p, *piece;
	char num[32];
	int r = 0;

	*out = NULL;
	if (tmpl == NULL)
		return EINVAL;
	for (p = tmpl; *p != '\0'; p++) {
		piece = NULL;
		add = 1;
		if (p == tmpl && p[0] == '~' && (p[1] == '/' || p[1] == '\0')) {
			if (home == NULL) {
				r = EINVAL;
				goto out;
			}
			piece = home;
		} else if (*p == '%') {
			p++;
			switch (*p) {
			case 'u':
				piece = user;
				break;
			case 'd':
				piece = home;
				break;
			case 'U':
				snprintf(num, sizeof(num), "%lu",
				    (unsigned long)uid);
				piece = num;
				break;
			case '%':
				piece = "%";
				break;
			default:	/* unknown escape, or '%' at the end */
				r = EINVAL;
				goto out;
			}
			if (piece == NULL) {
				r = EINVAL;
				goto out;
			}
		}
		if (piece != NULL)
			add = strlen(piece);
		if (len + add + 1 > cap) {
			char *nbuf;

			cap = (len + add + 1) * 2;
			if ((nbuf = realloc(buf, cap)) == NULL) {
				r = ENOMEM;
				goto out;
			}
			buf = nbuf;
		}
		if (piece != NULL)
			memcpy(buf + len, piece, add);
		else
			buf[len] = *p;
		len += add;
	}
	if (buf == NULL && (buf = strdup("")) == NULL) {
		r = ENOMEM;
		goto out;
	}
	buf[len] = '\0';
	*out = buf;
	buf = NULL;
 out:
	free(buf);
	return r;
}

int
stage_parse_sync(const char *s, enum stage_sync *out)
{
	if (s == NULL)
		return EINVAL;
	if (strcasecmp(s, "full") == 0)
		*out = STAGE_SYNC_FULL;
	else if (strcasecmp(s, "data") == 0)
		*out = STAGE_SYNC_DATA;
	else if (strcasecmp(s, "none") == 0)
		*out = STAGE_SYNC_NONE;
	else
		return EINVAL;
	return 0;
}

const char *
stage_sync_name(enum stage_sync s)
{
	switch (s) {
	case STAGE_SYNC_FULL:
		return "full";
	case STAGE_SYNC_DATA:
		return "data";
	case STAGE_SYNC_NONE:
		return "none";
	}
	return "unknown";
}

const char *
stage_method_name(enum stage_method m)
{
	switch (m) {
	case STAGE_TMPFILE:
		return "tmpfile";
	case STAGE_NAMED:
		return "named";
	case STAGE_DIRECT:
		return "direct";
	}
	return "unknown";
}
