/*
 * atomic-upload: staged receiving of files; see atomic-upload.h.
 *
 * The kernel decides.  The destination is opened for real, with the
 * client's access mode, so every rule open(2) applies to stock (symlink
 * protection, nosymfollow, sticky directories, permissions and ACLs,
 * immutable and append-only files) applies to us in the same call on the
 * same name.  That descriptor is the identity of the file being replaced:
 * its owner, group, mode and extended attributes are taken from it, never
 * from whatever is at the name later.  A new file is created in the
 * destination directory with the mode the client asked for, so the umask,
 * a default ACL and a setgid directory's group come from the kernel too.
 *
 * A staged file is an anonymous O_TMPFILE in the destination directory
 * wherever the filesystem allows it: nothing to clean up, nothing another
 * user can reach.  Elsewhere it is a file in a private directory (0700,
 * ours, unpredictable name) that we create for the one upload, in the
 * staging directory or beside the destination, and hold locked with
 * flock() so that stage_sweep() can tell a live staging from one whose
 * process died.  Replacing a file needs a name to rename from: the
 * anonymous file is linked into such a private directory just before the
 * rename, in the staging directory when there is one, so that nothing but
 * the final name ever appears in the destination directory.
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
#ifdef HAVE_SYS_STATVFS_H
# include <sys/statvfs.h>
#endif
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
#include "digest.h"
#include "misc.h"

#ifndef NAME_MAX
# define NAME_MAX 255
#endif
#ifndef O_CLOEXEC
# define O_CLOEXEC 0
#endif
#ifndef O_NOFOLLOW
# define O_NOFOLLOW 0
#endif
#if defined(HAVE_DECL_O_PATH) && HAVE_DECL_O_PATH
# define DIR_LOOKUP_FLAGS (O_PATH | O_DIRECTORY | O_CLOEXEC)
#else
# define DIR_LOOKUP_FLAGS (O_RDONLY | O_DIRECTORY | O_CLOEXEC)
#endif

/* Private staging directories (and the named temporaries of earlier
 * versions, which carried a prefix of the destination name in front):
 * "." + ".au-" + 16 random characters.  Nothing of the destination's name
 * appears, so a shared staging directory tells nobody what is uploaded,
 * and no pattern a processing script matches ("*.csv") matches it. */
#define TEMP_TAG	".au-"
#define TEMP_RANDOM	16
/* The staged file's name inside its private directory. */
#define INNER_NAME	"upload"

#define SYMLINK_MAX_DEPTH 40
/* Most bytes of holes a digest reads back (see finish_digest()). */
#define DIGEST_HOLES_MAX	((off_t)1 << 30)
#define SWEEP_MAX_DEPTH	64
/* Larger than any file: copy all of it. */
#define COPY_ALL ((off_t)(((unsigned long long)1 << \
    (sizeof(off_t) * CHAR_BIT - 1)) - 1))

struct staged_file {
	/* Registry of live stagings for stage_abort_all(). */
	struct staged_file *prev, *next;

	int fd;			/* staged data (or the file itself, DIRECT) */
	int oldfd;		/* the file being replaced, as the kernel opened
				 * it for the client: its identity; -1 if new */
	int srcfd;		/* readable descriptor of that file for a lazy
				 * copy (may be oldfd); -1 if none */
	int dirfd;		/* destination directory, held */
	int dir_readable;	/* dirfd can be fsync'ed (not O_PATH) */
	int stagedirfd;		/* usable staging directory, or -1 */
	int privparent;		/* directory holding privname */
	int privparent_owned;	/* ... a descriptor of its own (the upload
				 * was moved to another directory) */
	int privfd;		/* our private directory, locked; or -1 */
	enum stage_method method;
	int aborted;		/* set by stage_abort_all(): fds already closed */

	char path[PATH_MAX];	/* destination as given */
	char name[NAME_MAX + 1];	/* destination basename after symlinks */
	char privname[NAME_MAX + 1];	/* private directory's name, "" if none */
	int linkparent;		/* directory holding linkname (not owned) */
	char linkname[NAME_MAX + 1];	/* plain temporary name, "" if none */

	int excl;
	int existed;		/* destination existed at open */
	int lazy;		/* modification: old data not copied yet */
	int changed;		/* there is something to publish */
	int write_error;	/* first failed write: commit must fail */
	int copy_error;		/* the lazy copy failed: commit must fail */

	int have_expect;
	off_t expect_size;

	enum stage_sync sync;
	int no_close_event;
	int no_tmpfile;
	off_t wb_started;	/* write-back started up to here */
	off_t wb_waited;	/* ... and finished up to here */
	double start;
	const char *note;

	struct stream_digest dg;	/* SHA-256 as the data arrives */
	int digest_deferred;		/* ... hashed in idle moments */
	int digest_idle_failed;		/* ... which failed: left to the
					 * commit (no busy loop on it) */
	int digest_caught_up;		/* nothing to hash since the last
					 * look: no fstat per idle pass */
	const char *digest_xattr;	/* store it under this name, or NULL */
	int resolve_path;		/* report the absolute final path */
	char sha256[65];		/* at commit, "" if not known */
	off_t digest_reread;
	off_t digest_holes;
	int xattr_error;

	/* Resumable uploads (DESIGN.md 12, partial.h). */
	int resume;			/* stage_opts.resume */
	struct partial_limits plim;
	struct partial_key pkey;	/* the destination's key */
	struct partial_state pstate;	/* what was at the name when the
					 * upload (or the one it continues)
					 * began */
	int homefd;			/* the directory the staged file was
					 * made in (not owned): where it is
					 * kept, on its filesystem */
	int storefd;			/* the user's store in use, or -1 */
	int storebase;			/* ... the directory holding it */
	int recfd;			/* in-flight record, held locked */
	int no_partial;			/* renamed or removed: never kept */
	off_t resumed_from;		/* bytes of kept data continued */
	int pure;			/* all its data is the client's: a new
					 * file, a truncation, kept data; not
					 * the old file with changes */
	int kept;			/* keep_partial() kept it */
	int first_write_done;
	int resume_unchecked;		/* no write since, see write_data() */
	int old_unchecked;		/* the old file of a replacement that
					 * was interrupted (STAGE_E_REPLACED)
					 * or is in flight elsewhere
					 * (STAGE_E_INFLIGHT): no write since */
	int resume_mismatch;		/* the first write went past the kept
					 * data, or continued that old file:
					 * STAGE_E_RESUME_GAP or
					 * STAGE_E_REPLACED, 0 if neither */
};

static int rename_noreplace(int, const char *, int, const char *);
static int link_anonymous(int, int, const char *);

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
make_temp_name(char *out, size_t outlen)
{
	static const char alphabet[] =
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	unsigned char rnd[TEMP_RANDOM];
	char suffix[TEMP_RANDOM + 1];
	size_t i;
	int r;

	if ((r = fill_random(rnd, sizeof(rnd))) != 0)
		return r;
	/* 62 symbols; the slight modulo bias leaves > 90 bits of entropy. */
	for (i = 0; i < TEMP_RANDOM; i++)
		suffix[i] = alphabet[rnd[i] % (sizeof(alphabet) - 1)];
	suffix[TEMP_RANDOM] = '\0';
	if (snprintf(out, outlen, "%s%s", TEMP_TAG, suffix) >= (int)outlen)
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
	if (len < (sizeof(TEMP_TAG) - 1) + TEMP_RANDOM || len > NAME_MAX)
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

/*
 * Open a directory relative to `at`: for reading if we may (its fsync is
 * the durability of the rename), else only as a place to look names up in
 * (a write-only drop box, mode 1733, is still a place to upload to).
 */
static int
open_dir_at(int at, const char *dir, int *fdp, int *readablep)
{
	int fd;

	fd = openat(at, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		*readablep = 1;
		*fdp = fd;
		return 0;
	}
	if (errno != EACCES)
		return errno;
	if ((fd = openat(at, dir, DIR_LOOKUP_FLAGS)) < 0)
		return errno;
	*readablep = 0;
	*fdp = fd;
	return 0;
}

/*
 * Find the directory and the name that `path` stands for once symbolic
 * links at its end are followed (when `follow`).  This only locates: the
 * kernel has already decided whether the name may be followed and opened,
 * and for an existing file the caller checks that the name found is the
 * file the kernel opened.  A relative link target is resolved from the
 * link's own directory descriptor, so "..", and symbolic links inside the
 * target, mean what they mean to the kernel (which applies nosymfollow to
 * them in the openat).
 */
static int
locate(const char *path, int follow, int *dirfdp, int *readablep,
    char *name, size_t namelen, struct stat *st, int *existsp,
    int *followedp)
{
	char dir[PATH_MAX], link[PATH_MAX], base[NAME_MAX + 1];
	const char *b;
	ssize_t n;
	int depth, dfd = -1, ndfd, readable = 0, r;

	*dirfdp = -1;
	*existsp = 0;
	*followedp = 0;
	if ((r = path_split(path, dir, sizeof(dir), &b)) != 0)
		return r;
	snprintf(base, sizeof(base), "%s", b);
	if ((r = open_dir_at(AT_FDCWD, dir, &dfd, &readable)) != 0)
		return r;
	for (depth = 0; ; depth++) {
		if (fstatat(dfd, base, st, AT_SYMLINK_NOFOLLOW) != 0) {
			if (errno != ENOENT) {
				r = errno;
				goto out;
			}
			break;	/* does not exist (yet) */
		}
		if (!S_ISLNK(st->st_mode) || !follow) {
			*existsp = 1;
			break;
		}
		if (depth >= SYMLINK_MAX_DEPTH) {
			r = ELOOP;
			goto out;
		}
		if ((n = readlinkat(dfd, base, link, sizeof(link) - 1)) < 0) {
			r = errno;
			goto out;
		}
		link[n] = '\0';
		*followedp = 1;
		if ((r = path_split(link, dir, sizeof(dir), &b)) != 0)
			goto out;
		snprintf(base, sizeof(base), "%s", b);
		if ((r = open_dir_at(dfd, dir, &ndfd, &readable)) != 0)
			goto out;
		close(dfd);
		dfd = ndfd;
	}
	if (snprintf(name, namelen, "%s", base) >= (int)namelen) {
		r = ENAMETOOLONG;
		goto out;
	}
 out:
	if (r != 0) {
		close_keep_errno(dfd);
		return r;
	}
	*dirfdp = dfd;
	*readablep = readable;
	return 0;
}

/* A small integer sysctl, or `dflt` when it cannot be read. */
static int
read_sysctl(const char *path, int dflt)
{
	char buf[32];
	ssize_t n;
	int fd, v;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return dflt;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return dflt;
	buf[n] = '\0';
	if (sscanf(buf, "%d", &v) != 1)
		return dflt;
	return v;
}

/*
 * fs.protected_regular and fs.protected_fifos: open(2) with O_CREAT of an
 * existing regular file (FIFO) in a sticky directory is refused, to root
 * too, unless the caller or the directory's owner owns it: at level 1 in
 * world-writable directories, at level 2 in group-writable ones as well.
 * Stock opens with O_CREAT; we open an existing file without it (O_CREAT
 * could create the name at once if the file went away), so no kernel call
 * applies this rule for us.  It is the one rule of open(2) re-implemented
 * here, after the kernel's may_create_in_sticky().  Without /proc (a
 * chroot) the level is taken to be 2, the strictest any distribution
 * ships (Debian's).
 */
static int
sticky_create_refused(int dirfd, const struct stat *st)
{
	struct stat dst;
	int level;

	if ((!S_ISREG(st->st_mode) && !S_ISFIFO(st->st_mode)) ||
	    fstat(dirfd, &dst) != 0 || !(dst.st_mode & S_ISVTX) ||
	    st->st_uid == dst.st_uid || st->st_uid == geteuid())
		return 0;
	level = read_sysctl(S_ISREG(st->st_mode) ?
	    "/proc/sys/fs/protected_regular" : "/proc/sys/fs/protected_fifos",
	    2);
	if (level <= 0)
		return 0;
	if (dst.st_mode & S_IWOTH)
		return 1;
	return level >= 2 && (dst.st_mode & S_IWGRP);
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
 * *note why it is not used.  Its owner, and anyone else who may write it
 * without the sticky bit stopping them, could rename our private
 * directories, give them an ACL or read what is in them: so it must
 * belong to root or to us and be writable by others only if sticky.
 */
static int
open_staging_dir(const char *tmpdir, int dirfd, const char **note)
{
	struct stat st;
	int fd;

	/* No read permission needed: a shared staging directory may be
	 * 1733, so that users cannot list each other's private names. */
	fd = open(tmpdir, DIR_LOOKUP_FLAGS);
	if (fd < 0 || fstat(fd, &st) != 0) {
		close_keep_errno(fd);
		*note = "staging directory unusable; staging beside the "
		    "destination";
		return -1;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		close(fd);
		*note = "staging directory is owned by another user: refused; "
		    "staging beside the destination";
		return -1;
	}
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX)) {
		close(fd);
		*note = "staging directory is writable by others without the "
		    "sticky bit: refused; staging beside the destination";
		return -1;
	}
	if (!same_mount(fd, dirfd)) {
		close(fd);
		*note = "staging directory is on another filesystem; staging "
		    "beside the destination";
		return -1;
	}
	if (faccessat(fd, ".", W_OK | X_OK, AT_EACCESS) != 0) {
		close(fd);
		*note = "staging directory not writable; staging beside the "
		    "destination";
		return -1;
	}
	return fd;
}

static int
proc_fd_available(void)
{
	return access("/proc/self/fd", X_OK) == 0;
}

/*
 * Make a private directory (0700, ours, locked) in `parent` for one
 * staged name.  A sweep may take an unlocked directory between our mkdir
 * and our lock, and in a directory others may write somebody may put
 * something else at the name: either way, try another name.
 */
static int
make_private_dir(struct staged_file *sf, int parent)
{
	struct stat st, again;
	char name[NAME_MAX + 1];
	int fd, tries, r = EEXIST;

	for (tries = 0; tries < 100; tries++) {
		if ((r = make_temp_name(name, sizeof(name))) != 0)
			return r;
		if (mkdirat(parent, name, 0700) != 0) {
			if ((r = errno) == EEXIST)
				continue;
			return r;
		}
		fd = openat(parent, name,
		    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			r = errno;
			continue;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) != 0 || fstat(fd, &st) != 0 ||
		    st.st_uid != geteuid() ||
		    fstatat(parent, name, &again, AT_SYMLINK_NOFOLLOW) != 0 ||
		    again.st_dev != st.st_dev || again.st_ino != st.st_ino) {
			r = EAGAIN;
			close(fd);
			continue;
		}
		sf->privfd = fd;
		sf->privparent = parent;
		snprintf(sf->privname, sizeof(sf->privname), "%s", name);
		return 0;
	}
	return r;
}

/* Remove the private directory and drop its lock; the staged file is
 * unlinked first unless it was renamed out. */
static void
remove_private_dir(struct staged_file *sf, int has_inner)
{
	if (sf->privfd < 0)
		return;
	if (has_inner)
		(void)unlinkat(sf->privfd, INNER_NAME, 0);
	(void)unlinkat(sf->privparent, sf->privname, AT_REMOVEDIR);
	close(sf->privfd);
	sf->privfd = -1;
	sf->privname[0] = '\0';
}

#define ACL_DEFAULT_XATTR "system.posix_acl_default"

#ifdef HAVE_FGETXATTR
/*
 * Without /proc (a chroot jail) the directory is opened again for
 * reading, which a per-user staging directory allows; a shared 1733 one
 * does not, and then the answer stays "cannot tell".
 */
static ssize_t
dir_xattr_by_reopen(int fd)
{
	ssize_t n;
	int rfd, e;

	if ((rfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -1;
	n = fgetxattr(rfd, ACL_DEFAULT_XATTR, NULL, 0);
	e = errno;
	close(rfd);
	errno = e;
	return n;
}
#endif

/*
 * Does a file created in directory `fd` get something from it besides
 * the umask and the creator's ids: a setgid group or a default ACL?  When
 * it cannot tell, yes.
 */
static int
dir_gives_inheritance(int fd, int readable)
{
	struct stat st;

	if (fstat(fd, &st) != 0 || (st.st_mode & S_ISGID))
		return 1;
#ifdef HAVE_FGETXATTR
	{
		char proc[64];
		ssize_t n;

		if (readable)
			n = fgetxattr(fd, ACL_DEFAULT_XATTR, NULL, 0);
		else {
			/* A lookup-only (O_PATH) descriptor has no xattr
			 * calls of its own; its /proc link has. */
			snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
			n = getxattr(proc, ACL_DEFAULT_XATTR, NULL, 0);
			if (n < 0 && errno == ENOENT && !proc_fd_available())
				n = dir_xattr_by_reopen(fd);
		}
		if (n >= 0)
			return 1;
		return errno != ENODATA && errno != ENOTSUP &&
		    errno != EOPNOTSUPP;
	}
#else
	return 0;
#endif
}

/*
 * Where the staged file is created.  In the staging directory, if one is
 * usable and the file comes out of it as it would out of the destination
 * directory: a replacement takes the old file's metadata in any case; a
 * new file only when neither directory gives it a group or an ACL.  Then
 * the destination directory sees nothing of the upload, not even the
 * inotify events of an anonymous file ("#inode").  Otherwise the
 * destination directory, where the kernel gives the new file what open(2)
 * would give it.
 */
static int
creation_dir(const struct staged_file *sf)
{
	if (sf->stagedirfd < 0)
		return sf->dirfd;
	if (!sf->existed && (dir_gives_inheritance(sf->dirfd,
	    sf->dir_readable) || dir_gives_inheritance(sf->stagedirfd, 0)))
		return sf->dirfd;
	return sf->stagedirfd;
}

static int
tmpfile_unsupported(int e)
{
	/* Filesystems without O_TMPFILE say so in several ways. */
	return e == EOPNOTSUPP || e == EISDIR || e == EINVAL || e == ENOENT ||
	    e == ENOSYS;
}

/*
 * Create the staged file, with `mode` for the kernel to apply the umask
 * and default ACL to: an O_TMPFILE where the filesystem allows it, else a
 * file in a private directory; in the staging directory or beside the
 * destination (creation_dir()).
 */
static int
create_staged(struct staged_file *sf, mode_t mode)
{
	int fd, parent, r;

	parent = creation_dir(sf);
	/* The commit will put a name in the destination directory: the
	 * kernel checks that now where the creation does not. */
	if (parent != sf->dirfd &&
	    faccessat(sf->dirfd, ".", W_OK | X_OK, AT_EACCESS) != 0)
		return errno;
#if defined(HAVE_DECL_O_TMPFILE) && HAVE_DECL_O_TMPFILE
	if (!sf->no_tmpfile && proc_fd_available()) {
		fd = openat(parent, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
		if (fd < 0 && parent != sf->dirfd &&
		    !tmpfile_unsupported(errno)) {
			/* The staging directory refuses us after all. */
			sf->note = "cannot create in the staging directory; "
			    "staging beside the destination";
			parent = sf->dirfd;
			fd = openat(parent, ".", O_TMPFILE | O_RDWR | O_CLOEXEC,
			    mode);
		}
		if (fd >= 0) {
			sf->fd = fd;
			sf->method = STAGE_TMPFILE;
			sf->homefd = parent;
			return 0;
		}
		if (!tmpfile_unsupported(errno))
			return errno;	/* the kernel refuses the creation */
	}
#endif
	if ((r = make_private_dir(sf, parent)) != 0) {
		if (parent == sf->dirfd)
			return r;
		sf->note = "cannot create in the staging directory; staging "
		    "beside the destination";
		if ((r = make_private_dir(sf, sf->dirfd)) != 0)
			return r;
	}
	fd = openat(sf->privfd, INNER_NAME,
	    O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0) {
		r = errno;
		remove_private_dir(sf, 1);
		return r;
	}
	sf->fd = fd;
	sf->method = STAGE_NAMED;
	sf->homefd = sf->privparent;
	return 0;
}

#if defined(HAVE_FLISTXATTR) && defined(HAVE_FGETXATTR) && defined(HAVE_FSETXATTR)
static int
xattr_list(int fd, char **listp, ssize_t *lenp)
{
	char *list = NULL;
	ssize_t len;

	*listp = NULL;
	*lenp = 0;
	for (;;) {
		if ((len = flistxattr(fd, NULL, 0)) < 0)
			return errno;
		if (len == 0)
			return 0;
		free(list);
		if ((list = malloc((size_t)len)) == NULL)
			return ENOMEM;
		if ((len = flistxattr(fd, list, (size_t)len)) >= 0)
			break;
		if (errno != ERANGE) {	/* ERANGE: it grew meanwhile */
			free(list);
			return errno;
		}
	}
	*listp = list;
	*lenp = len;
	return 0;
}

static int
xattr_listed(const char *list, ssize_t len, const char *name)
{
	const char *p;

	for (p = list; p != NULL && p < list + len; p += strlen(p) + 1)
		if (strcmp(p, name) == 0)
			return 1;
	return 0;
}

/*
 * Make dst's extended attributes (POSIX ACLs among them) those of src:
 * copy each, and remove what dst has that src has not (a default ACL's
 * access ACL on a file created in the destination directory).  Best
 * effort, as a copy by the same user would be: security.* may be refused
 * to an unprivileged user.  security.capability is copied too; the kernel
 * removes it again on the write or truncation that follows, exactly as it
 * does from stock's file.
 */
static void
copy_xattrs(int src, int dst)
{
	char *slist = NULL, *dlist = NULL, *val = NULL, *p;
	ssize_t slen, dlen, vlen;

	if (xattr_list(src, &slist, &slen) != 0)
		goto out;
	for (p = slist; p != NULL && p < slist + slen; p += strlen(p) + 1) {
		if ((vlen = fgetxattr(src, p, NULL, 0)) < 0)
			continue;
		free(val);
		if ((val = malloc((size_t)vlen + 1)) == NULL)
			goto out;
		if ((vlen = fgetxattr(src, p, val, (size_t)vlen)) < 0)
			continue;
		(void)fsetxattr(dst, p, val, (size_t)vlen, 0);
	}
# ifdef HAVE_FREMOVEXATTR
	if (xattr_list(dst, &dlist, &dlen) != 0)
		goto out;
	for (p = dlist; p != NULL && p < dlist + dlen; p += strlen(p) + 1)
		if (!xattr_listed(slist, slen, p))
			(void)fremovexattr(dst, p);
# endif
 out:
	free(slist);
	free(dlist);
	free(val);
}
#endif

/*
 * Does the group of this file grant anyone anything?  Not when its group
 * permissions are a subset of the others' and no ACL names anyone: then
 * whichever group the file has, everybody has the same access.
 */
static int
group_grants_nothing(int fd, const struct stat *st)
{
	mode_t g = (st->st_mode >> 3) & 07, o = st->st_mode & 07;

	if ((g & ~o) != 0 || (st->st_mode & S_ISGID))
		return 0;
#ifdef HAVE_FGETXATTR
	if (fgetxattr(fd, "system.posix_acl_access", NULL, 0) >= 0 ||
	    (errno != ENODATA && errno != ENOTSUP && errno != EOPNOTSUPP))
		return 0;
#else
	(void)fd;
#endif
	return 1;
}

/*
 * Give the staged file what truncating the old file in place keeps: its
 * owner and group, extended attributes and mode, in the order the kernel
 * needs (a chown clears set-id bits; the mode comes last).  The kernel
 * refuses a chown we may not make: then we cannot stage and the caller
 * writes in place, as stock keeps them.  One exception: the uploader's own
 * file whose group (one he is not in) grants nothing that others do not
 * have; it keeps his group, since no one's access changes.
 */
static int
take_old_metadata(struct staged_file *sf, const struct stat *st,
    int *refusedp)
{
	*refusedp = 0;
	if (fchown(sf->fd, st->st_uid, st->st_gid) != 0) {
		if (errno != EPERM || st->st_uid != geteuid() ||
		    !group_grants_nothing(sf->oldfd, st)) {
			*refusedp = errno == EPERM;
			return errno;
		}
		if (fchown(sf->fd, st->st_uid, (gid_t)-1) != 0)
			return errno;
		sf->note = "the old file's group cannot be given to a new file "
		    "and grants nothing beyond what others have: the new file "
		    "has the uploader's group";
	}
#if defined(HAVE_FLISTXATTR) && defined(HAVE_FGETXATTR) && defined(HAVE_FSETXATTR)
	copy_xattrs(sf->oldfd, sf->fd);
#endif
	if (fchmod(sf->fd, st->st_mode & 07777) != 0)
		return errno;
	return 0;
}

static int
copy_range(int src, int dst, off_t off, off_t len)
{
	char buf[65536];
	ssize_t n, w;
	size_t done;

#ifdef HAVE_COPY_FILE_RANGE
	{
		loff_t in = off, out = off;

		while (len > 0) {
			n = copy_file_range(src, &in, dst, &out,
			    len > (1 << 30) ? (size_t)1 << 30 : (size_t)len, 0);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EXDEV || errno == EINVAL ||
				    errno == EOPNOTSUPP || errno == ENOSYS)
					break;	/* fall back to read/write */
				return errno;
			}
			if (n == 0)
				return 0;	/* the source shrank */
			len -= n;
		}
		if (len <= 0)
			return 0;
		off = in;
	}
#endif
	while (len > 0) {
		n = pread(src, buf, len > (off_t)sizeof(buf) ? sizeof(buf) :
		    (size_t)len, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (n == 0)
			return 0;
		for (done = 0; done < (size_t)n; done += (size_t)w) {
			w = pwrite(dst, buf + done, (size_t)n - done,
			    off + (off_t)done);
			if (w < 0) {
				if (errno == EINTR) {
					w = 0;
					continue;
				}
				return errno;
			}
		}
		off += n;
		len -= n;
	}
	return 0;
}

/*
 * Copy the first `limit` bytes of the old content into the staged file:
 * a reflink where the filesystem shares blocks, else only the data
 * extents (holes stay holes), and only if they fit in the free space:
 * a sparse file of any apparent size costs what it holds, and a copy that
 * cannot fit is refused before it fills the filesystem.
 */
static int
copy_existing(int src, int dst, off_t limit)
{
	struct stat st;
	off_t off, data, hole, end;
	int r;

	if (fstat(src, &st) != 0)
		return errno;
	end = st.st_size < limit ? st.st_size : limit;
#if defined(HAVE_DECL_FICLONE) && HAVE_DECL_FICLONE
	if (end == st.st_size && ioctl(dst, FICLONE, src) == 0)
		return 0;
#endif
#ifdef HAVE_SYS_STATVFS_H
	{
		struct statvfs vfs;
		unsigned long long need, avail;

		need = (unsigned long long)st.st_blocks * 512;
		if ((off_t)need > end)
			need = (unsigned long long)end;
		if (fstatvfs(dst, &vfs) == 0) {
			avail = (unsigned long long)vfs.f_bavail *
			    (unsigned long long)vfs.f_frsize;
			if (need > avail)
				return ENOSPC;
		}
	}
#endif
	for (off = 0; off < end; off = hole) {
#if defined(HAVE_DECL_SEEK_DATA) && HAVE_DECL_SEEK_DATA && defined(HAVE_DECL_SEEK_HOLE) && HAVE_DECL_SEEK_HOLE
		if ((data = lseek(src, off, SEEK_DATA)) < 0) {
			if (errno == ENXIO)
				break;		/* only a hole is left */
			data = off;		/* no hole support: copy all */
			hole = end;
		} else if ((hole = lseek(src, data, SEEK_HOLE)) < 0)
			hole = end;
#else
		data = off;
		hole = end;
#endif
		if (data >= end)
			break;
		if (hole > end)
			hole = end;
		if ((r = copy_range(src, dst, data, hole - data)) != 0)
			return r;
	}
	if (ftruncate(dst, end) != 0)
		return errno;
	return 0;
}

/*
 * A modification's first change: the staged file takes the old file's
 * metadata as it is now (a chmod through the handle went to the old file
 * until here, as with stock) and its data up to `limit`.
 */
static int
materialise(struct staged_file *sf, off_t limit)
{
	struct stat st;
	int r, refused;

	if (!sf->lazy)
		return 0;
	if (sf->copy_error != 0)
		return sf->copy_error;
	if (fstat(sf->oldfd, &st) != 0)
		r = errno;
	else if ((r = take_old_metadata(sf, &st, &refused)) == 0 &&
	    (r = copy_existing(sf->srcfd, sf->fd, limit)) == 0) {
		sf->lazy = 0;
		sf->changed = 1;
		sf->digest_caught_up = 0;
		return 0;
	}
	/* Give the space back at once; the commit will fail anyway, so a
	 * failure here changes nothing. */
	if (ftruncate(sf->fd, 0) != 0)
		sf->copy_error = r;
	sf->copy_error = r;
	return r;
}

/*
 * Write in place, with exactly the call stock makes, so the kernel decides
 * everything about it as it does for stock.
 */
static int
open_direct(struct staged_file *sf, int oflags, mode_t mode, const char *note)
{
	int fd;

	do {
		fd = open(sf->path, (oflags & (O_ACCMODE | O_CREAT | O_TRUNC |
		    O_EXCL | O_APPEND)) | O_NOCTTY | O_CLOEXEC, mode);
	} while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return errno;
	sf->fd = fd;
	sf->method = STAGE_DIRECT;
	sf->note = note;
	return 0;
}

/*
 * The kernel's decision about an existing destination: open the name as
 * stock would, with the client's access mode and O_APPEND, without
 * O_CREAT and O_TRUNC (they would change the name at once).  O_NONBLOCK
 * keeps a FIFO without a reader from hanging us here.
 */
static int
open_as_stock(const char *path, int oflags, int *fdp)
{
	int fd;

	do {
		fd = open(path, (oflags & (O_ACCMODE | O_APPEND)) |
		    O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	} while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return errno;
	*fdp = fd;
	return 0;
}

/* Inode flags that forbid replacing the file (or renaming in the
 * directory): append-only and immutable. */
static int
inode_pinned(int fd)
{
#if defined(HAVE_DECL_FS_IOC_GETFLAGS) && HAVE_DECL_FS_IOC_GETFLAGS
	int flags = 0;

	if (ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 &&
	    (flags & (FS_APPEND_FL | FS_IMMUTABLE_FL)))
		return 1;
#else
	(void)fd;
#endif
	return 0;
}

static void
free_staged(struct staged_file *sf)
{
	if (sf->recfd >= 0)
		close(sf->recfd);
	if (sf->storefd >= 0)
		close(sf->storefd);
	if (sf->storebase >= 0)
		close(sf->storebase);
	if (sf->srcfd >= 0 && sf->srcfd != sf->oldfd)
		close(sf->srcfd);
	if (sf->oldfd >= 0)
		close(sf->oldfd);
	if (sf->privfd >= 0)
		close(sf->privfd);
	if (sf->privparent_owned)
		close(sf->privparent);
	if (sf->stagedirfd >= 0)
		close(sf->stagedirfd);
	if (sf->dirfd >= 0)
		close(sf->dirfd);
	stream_digest_free(&sf->dg);
	free(sf);
}

/*
 * Write in place through the descriptor the kernel opened for the client
 * (O_CREAT and O_TRUNC were held back; the O_CREAT rule has been applied,
 * the truncation is done now), as stock writes the file.  Reusing it, not
 * opening the name again, also spares watchers a close of the old file.
 */
static int
write_in_place(struct staged_file *sf, int oflags, const char *note)
{
	int fl, fd = sf->oldfd;

	if (sf->srcfd >= 0 && sf->srcfd != sf->oldfd)
		close(sf->srcfd);
	sf->srcfd = -1;
	sf->oldfd = -1;
	sf->fd = fd;
	sf->method = STAGE_DIRECT;
	sf->note = note;
	if ((fl = fcntl(fd, F_GETFL)) < 0 ||
	    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0)
		return errno;
	if ((oflags & O_TRUNC) && ftruncate(fd, 0) != 0)
		return errno;
	return 0;
}

/* Discard the staged data (not the registry entry or memory). */
static void
discard(struct staged_file *sf)
{
	if (sf->aborted)
		return;
	if (sf->fd >= 0) {
		close(sf->fd);
		sf->fd = -1;
	}
	remove_private_dir(sf, 1);
}

static void close_store(int *, int *);
static int partial_lookup(int, int, const char *,
    const struct partial_limits *, struct partial_key *,
    struct partial_found *, int *, int *);

/* Is anything kept for the destination (data to continue, or a record
 * that refuses)?  Then it is staged, whatever the modify policy: written
 * in place, the old file would be continued. */
static int
partial_pending(struct staged_file *sf, const struct stage_opts *opts)
{
	struct partial_found found;
	struct partial_key k;
	int storefd, basefd;

	if (!opts->resume || partial_lookup(sf->dirfd, sf->stagedirfd,
	    sf->name, &opts->partial, &k, &found, &storefd, &basefd) != 0)
		return 0;
	close_store(&storefd, &basefd);
	return found.kind != PARTIAL_NONE;
}

/*
 * An existing regular file, opened by the kernel as `probe`: replace it
 * (O_TRUNC), or prepare a lazy copy-on-change, or write it in place where
 * it cannot be replaced as stock would keep it.
 */
static int
stage_existing(struct staged_file *sf, const struct stage_opts *opts,
    int oflags, int probe, const struct stat *st)
{
	int fd, r, refused;

	sf->oldfd = probe;
	/* Cannot be replaced: the kernel refuses to rename over it.  An
	 * immutable file was refused by the open already; an append-only
	 * one was opened because O_APPEND was asked for, and open(2) would
	 * refuse O_TRUNC with it (may_open): the one check of the file
	 * itself that the open without O_TRUNC could not make. */
	if (inode_pinned(probe)) {
		if (oflags & O_TRUNC)
			return EPERM;
		return write_in_place(sf, oflags, "append-only file: written "
		    "in place, as it cannot be replaced");
	}
	if (!(oflags & O_TRUNC) && opts->modify == STAGE_MODIFY_INPLACE &&
	    !partial_pending(sf, opts))
		return write_in_place(sf, oflags, "modify policy in-place");
	/* Staging needs to rename into the directory. */
	if (faccessat(sf->dirfd, ".", W_OK | X_OK, AT_EACCESS) != 0 ||
	    (sf->dir_readable && inode_pinned(sf->dirfd)))
		return write_in_place(sf, oflags, "directory not writable: "
		    "cannot stage, writing in place as stock does");
	if (!(oflags & O_TRUNC)) {
		/* The lazy copy reads the old data. */
		if ((oflags & O_ACCMODE) == O_RDWR)
			sf->srcfd = probe;
		else {
			struct stat again;

			fd = openat(sf->dirfd, sf->name, O_RDONLY | O_NOFOLLOW |
			    O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
			if (fd >= 0 && (fstat(fd, &again) != 0 ||
			    again.st_dev != st->st_dev ||
			    again.st_ino != st->st_ino)) {
				close(fd);
				fd = -1;
			}
			if (fd < 0)
				return write_in_place(sf, oflags, "existing "
				    "file not readable: cannot stage a copy, "
				    "writing in place as stock does");
			sf->srcfd = fd;
		}
	}
	sf->existed = 1;
	if ((r = create_staged(sf, 0600)) != 0)
		return r;
	if ((r = take_old_metadata(sf, st, &refused)) != 0) {
		if (!refused)
			return r;
		/* We may not give a file this owner and group: stock keeps
		 * them by writing in place, and so must we. */
		discard(sf);
		sf->existed = 0;
		return write_in_place(sf, oflags, "cannot give a new file the "
		    "old file's owner and group: writing in place as stock "
		    "does");
	}
	if (oflags & O_TRUNC) {
		/* What open's O_TRUNC does to the old file, the kernel does
		 * to ours: set-id bits and file capabilities go for a caller
		 * without CAP_FSETID. */
		if (ftruncate(sf->fd, 0) != 0)
			return errno;
		sf->changed = 1;
	} else
		sf->lazy = 1;
	return 0;
}

/* Resumable uploads (DESIGN.md 12) */

/*
 * What the user's stores hold for `name` in `dirfd`: the staging
 * directory's store first, then the destination directory's.  For any
 * kind but PARTIAL_NONE, *storefdp gets the store and *basefdp the
 * directory holding it (both owned by the caller).  The key is made in
 * any case.
 */
static int
partial_lookup(int dirfd, int stagedirfd, const char *name,
    const struct partial_limits *lim, struct partial_key *k,
    struct partial_found *found, int *storefdp, int *basefdp)
{
	struct partial_state now;
	struct stat dst;
	int bases[2], i, sfd, r;

	*storefdp = *basefdp = -1;
	memset(found, 0, sizeof(*found));
	found->kind = PARTIAL_NONE;
	if (fstat(dirfd, &dst) != 0)
		return errno;
	if ((r = partial_key_make(dst.st_dev, dst.st_ino, name, k)) != 0 ||
	    (r = partial_state_now(dirfd, name, &now)) != 0)
		return r;
	bases[0] = stagedirfd;
	bases[1] = dirfd;
	for (i = 0; i < 2; i++) {
		if (bases[i] < 0 || partial_store_open(bases[i], 0, &sfd) != 0)
			continue;
		r = partial_find(sfd, k, &now, lim, found);
		if (r == 0 && found->kind == PARTIAL_NONE)
			partial_store_tidy(bases[i], sfd);	/* if emptied */
		if (r == 0 && found->kind != PARTIAL_NONE) {
			if ((*basefdp = dup(bases[i])) < 0) {
				r = errno;
				close(sfd);
				found->kind = PARTIAL_NONE;
				return r;
			}
			*storefdp = sfd;
			return 0;
		}
		close(sfd);
	}
	found->kind = PARTIAL_NONE;
	return 0;
}

/* The same for a path, as a later session names it; *dirfdp (if not
 * NULL) gets the destination directory. */
static int
partial_at_path(const struct stage_opts *opts, const char *path, int follow,
    struct partial_key *k, struct partial_found *found, int *storefdp,
    int *basefdp, int *dirfdp)
{
	char name[NAME_MAX + 1];
	const char *note = NULL;
	struct stat st;
	int dfd = -1, sdfd = -1, readable, exists, followed, r;

	*storefdp = *basefdp = -1;
	if (dirfdp != NULL)
		*dirfdp = -1;
	found->kind = PARTIAL_NONE;
	if (opts == NULL || !opts->resume)
		return ENOENT;
	if ((r = locate(path, follow, &dfd, &readable, name, sizeof(name),
	    &st, &exists, &followed)) != 0)
		return r;
	/* A partial upload stands in for a regular file or for nothing:
	 * a directory, or a symbolic link that is not followed, is itself. */
	if (exists && !S_ISREG(st.st_mode)) {
		close(dfd);
		return ENOENT;
	}
	if (opts->tmpdir != NULL && opts->tmpdir[0] != '\0')
		sdfd = open_staging_dir(opts->tmpdir, dfd, &note);
	r = partial_lookup(dfd, sdfd, name, &opts->partial, k, found,
	    storefdp, basefdp);
	if (sdfd >= 0)
		close(sdfd);
	if (r == 0 && dirfdp != NULL)
		*dirfdp = dfd;
	else
		close(dfd);
	return r;
}

static void
close_store(int *storefd, int *basefd)
{
	if (*storefd >= 0)
		close(*storefd);
	if (*basefd >= 0)
		close(*basefd);
	*storefd = *basefd = -1;
}

/*
 * A truncating replacement is in flight: a locked record in the store
 * says so to the user's other sessions, and stays when the upload is
 * aborted, so that nothing continues the old file as if it were the
 * start of the new one.  Without a store (a directory we may not write)
 * there is no such record; the upload goes on.
 */
static void
hold_record(struct staged_file *sf)
{
	int storefd;

	if (sf->homefd < 0 || partial_store_open(sf->homefd, 1, &storefd) != 0)
		return;
	if (partial_record_put(storefd, &sf->pkey, &sf->pstate, 1,
	    &sf->recfd) != 0 || (sf->storebase = dup(sf->homefd)) < 0) {
		if (sf->recfd >= 0)
			partial_record_release(storefd, &sf->pkey, sf->recfd, 1);
		sf->recfd = -1;
		close(storefd);
		return;
	}
	sf->storefd = storefd;
}

/*
 * Continue the kept data: it becomes the staged file, moved out of the
 * store into a private directory of ours inside it (so no other session
 * continues it too).  The staging made for the open is dropped.  The
 * kernel decides the access against the kept file, which has the final
 * owner and mode: what it would decide for stock's half-written file.
 */
static int
adopt_partial(struct staged_file *sf, int oflags, int storefd, int basefd,
    const struct partial_found *found)
{
	char dname[NAME_MAX + 1];
	struct stat st;
	int fd = -1, rw, pfd, fl, r, acc = oflags & O_ACCMODE;

	discard(sf);
	if ((pfd = dup(storefd)) < 0) {
		r = errno;
		goto fail;
	}
	if ((r = make_private_dir(sf, pfd)) != 0) {
		close(pfd);
		goto fail;
	}
	sf->privparent_owned = 1;
	partial_data_name(&sf->pkey, dname, sizeof(dname));
	if (renameat(storefd, dname, sf->privfd, INNER_NAME) != 0) {
		/* Another session took it first. */
		r = errno == ENOENT ? STAGE_E_INFLIGHT : errno;
		remove_private_dir(sf, 0);
		goto fail;
	}
	fd = openat(sf->privfd, INNER_NAME, acc | O_NOFOLLOW | O_NOCTTY |
	    O_NONBLOCK | O_CLOEXEC);
	if (fd >= 0 && acc == O_WRONLY &&
	    (rw = openat(sf->privfd, INNER_NAME, O_RDWR | O_NOFOLLOW |
	    O_NOCTTY | O_NONBLOCK | O_CLOEXEC)) >= 0) {
		/* Readable too, for the digest, where the kernel allows. */
		close(fd);
		fd = rw;
	}
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    (fl = fcntl(fd, F_GETFL)) < 0 ||
	    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
		r = fd < 0 ? errno : EINVAL;
		if (fd >= 0)
			close(fd);
		/* Kept for another try (by a client with the access). */
		(void)renameat(sf->privfd, INNER_NAME, storefd, dname);
		remove_private_dir(sf, 1);
		goto fail;
	}
	if (sf->srcfd >= 0 && sf->srcfd != sf->oldfd)
		close(sf->srcfd);
	sf->srcfd = -1;
	sf->fd = fd;
	sf->method = STAGE_NAMED;
	sf->homefd = sf->privparent;
	sf->lazy = 0;
	sf->changed = 1;
	sf->pstate = found->state;
	sf->resumed_from = st.st_size;
	sf->resume_unchecked = 1;
	sf->pure = 1;
	sf->storefd = storefd;
	sf->storebase = basefd;
	/* Held while this session continues it: the others see a resume
	 * in flight, and nothing of theirs removes the record.  Without
	 * the lock, resume_finish() writes it again. */
	(void)partial_record_hold(storefd, &sf->pkey, &sf->recfd);
	return 0;
 fail:
	close_store(&storefd, &basefd);
	return r;
}

/*
 * An upload is opened: a truncating one discards what the user kept for
 * the name; one that continues the file continues the kept data, or is
 * refused where continuing the file would mix an old file with the
 * start of a new one.
 */
static int
resume_setup(struct staged_file *sf, const struct stage_opts *opts,
    int oflags)
{
	struct partial_found found;
	struct stat st;
	int storefd = -1, basefd = -1;

	sf->resume = 1;
	sf->plim = opts->partial;
	sf->pure = !sf->existed || (oflags & O_TRUNC);
	memset(&sf->pstate, 0, sizeof(sf->pstate));
	if (sf->existed && sf->oldfd >= 0 && fstat(sf->oldfd, &st) == 0)
		partial_state_of_stat(&st, &sf->pstate);
	if (partial_lookup(sf->dirfd, sf->stagedirfd, sf->name, &sf->plim,
	    &sf->pkey, &found, &storefd, &basefd) != 0) {
		/* No key (a name we cannot look at): nothing is kept. */
		sf->no_partial = 1;
		return 0;
	}
	if (oflags & O_TRUNC) {
		if (found.kind == PARTIAL_DATA || found.kind == PARTIAL_REPLACED)
			partial_forget(storefd, &sf->pkey, 1);
		if (storefd >= 0 && basefd >= 0)
			partial_store_tidy(basefd, storefd);
		close_store(&storefd, &basefd);
		if (sf->existed) {
			sf->pstate.replacing = 1;
			hold_record(sf);
		}
		return 0;
	}
	if (found.kind == PARTIAL_DATA)
		return adopt_partial(sf, oflags, storefd, basefd, &found);
	/*
	 * The file there is the old one of a replacement that was
	 * interrupted (its data gone) or is in flight in another session.
	 * Rewriting it from the start is an upload like any other (scp's
	 * SFTP mode opens without truncating, and truncates at the end);
	 * continuing it would append the rest of the new file to the old
	 * one.  The first write decides: see resume_check().
	 */
	if (found.kind == PARTIAL_REPLACED || found.kind == PARTIAL_BUSY) {
		sf->old_unchecked = found.kind == PARTIAL_BUSY ?
		    STAGE_E_INFLIGHT : STAGE_E_REPLACED;
		/* Its commit makes the record stale: resume_finish(). */
		sf->storefd = storefd;
		sf->storebase = basefd;
		return 0;
	}
	close_store(&storefd, &basefd);
	return 0;
}

/*
 * A file written in place (a directory the user may no longer write, an
 * append-only file, -m inplace) cannot continue kept data: the client,
 * shown the kept size, would write the rest of the new file into the old
 * one.  Refused, as is continuing an interrupted replacement.
 */
static int
direct_resume_check(struct staged_file *sf, const struct stage_opts *opts)
{
	struct partial_found found;
	struct partial_key k;
	int storefd = -1, basefd = -1, r = 0;

	if (sf->dirfd < 0 || partial_lookup(sf->dirfd, sf->stagedirfd,
	    sf->name, &opts->partial, &k, &found, &storefd, &basefd) != 0)
		return 0;
	if (found.kind == PARTIAL_DATA || found.kind == PARTIAL_REPLACED)
		r = STAGE_E_REPLACED;
	else if (found.kind == PARTIAL_BUSY)
		r = STAGE_E_INFLIGHT;
	close_store(&storefd, &basefd);
	return r;
}

/* The name will not be kept (renamed, removed): its record goes now. */
static void
resume_drop(struct staged_file *sf)
{
	sf->no_partial = 1;
	if (sf->recfd >= 0) {
		partial_record_release(sf->storefd, &sf->pkey, sf->recfd, 1);
		sf->recfd = -1;
	}
}

/*
 * The upload ends without keeping anything: committed (every record of
 * the name goes), or aborted (a replacement's record stays, its age
 * counting from now; kept data it continued is gone with the staging).
 */
static void
resume_finish(struct staged_file *sf, int committed)
{
	/* A record stays only to refuse continuing an old file. */
	int done = committed || sf->no_partial || !sf->pstate.replacing;

	if (sf->recfd >= 0) {
		partial_record_release(sf->storefd, &sf->pkey, sf->recfd, done);
		sf->recfd = -1;
	} else if (sf->storefd >= 0 && sf->resumed_from > 0) {
		if (done)
			partial_forget(sf->storefd, &sf->pkey, 1);
		else
			(void)partial_record_put(sf->storefd, &sf->pkey,
			    &sf->pstate, 0, NULL);
	} else if (sf->storefd >= 0 && committed) {
		/* The old file of an interrupted replacement, rewritten:
		 * its record (unless somebody holds it) is stale. */
		partial_forget(sf->storefd, &sf->pkey, 1);
	} else if (sf->storefd < 0 && !done && !sf->kept && sf->resume &&
	    sf->homefd >= 0 && sf->pstate.replacing) {
		/* A rewrite without truncation (or one whose record could
		 * not be held): recorded now that it was interrupted. */
		int storefd;

		if (partial_store_open(sf->homefd, 1, &storefd) == 0) {
			(void)partial_record_put(storefd, &sf->pkey,
			    &sf->pstate, 0, NULL);
			close(storefd);
		}
	}
	if (sf->storefd >= 0 && sf->storebase >= 0)
		partial_store_tidy(sf->storebase, sf->storefd);
	close_store(&sf->storefd, &sf->storebase);
}

/*
 * Keep the staged data in the user's store, beside the record that
 * makes it resumable: in the directory it was staged in, so on its
 * filesystem; a rename, never a copy.
 */
static int
keep_partial(struct staged_file *sf, off_t *kept, char *note, size_t len)
{
	char dname[NAME_MAX + 1], tmp[NAME_MAX + 1];
	struct stat st;
	int r, tries;

	if (fstat(sf->fd, &st) != 0) {
		r = errno;
		snprintf(note, len, "fstat: %s", strerror(r));
		return r;
	}
	if (st.st_size == 0) {
		snprintf(note, len, "no data arrived");
		return ENODATA;
	}
	if (sf->storefd < 0) {
		if ((r = partial_store_open(sf->homefd, 1, &sf->storefd)) != 0) {
			snprintf(note, len, "no store for partial uploads: %s",
			    r == EPERM ? "the name is taken by somebody else" :
			    strerror(r));
			return r;
		}
		if ((sf->storebase = dup(sf->homefd)) < 0) {
			r = errno;
			snprintf(note, len, "dup: %s", strerror(r));
			return r;
		}
	}
	if ((r = partial_make_room(sf->storefd, (off_t)st.st_blocks * 512,
	    &sf->plim)) != 0) {
		snprintf(note, len, "%s", r == ENOSPC ? "larger than the space "
		    "partial uploads may hold" : strerror(r));
		return r;
	}
	/* The record first: data without one is offered to nobody. */
	if (sf->recfd >= 0) {
		partial_record_release(sf->storefd, &sf->pkey, sf->recfd, 0);
		sf->recfd = -1;
	} else if ((r = partial_record_put(sf->storefd, &sf->pkey,
	    &sf->pstate, 0, NULL)) != 0) {
		snprintf(note, len, "%s", r == EBUSY ? "another session is "
		    "replacing the file" : strerror(r));
		return r;
	}
	partial_data_name(&sf->pkey, dname, sizeof(dname));
	if (sf->method == STAGE_TMPFILE) {
		/* Locked, so that a sweep leaves its temporary name alone. */
		(void)flock(sf->fd, LOCK_EX | LOCK_NB);
		for (tries = 0; tries < 100; tries++) {
			if ((r = make_temp_name(tmp, sizeof(tmp))) != 0)
				break;
			if ((r = link_anonymous(sf->fd, sf->storefd, tmp)) == 0 ||
			    r != EEXIST)
				break;
		}
		if (r == 0 && renameat(sf->storefd, tmp, sf->storefd,
		    dname) != 0) {
			r = errno;
			(void)unlinkat(sf->storefd, tmp, 0);
		}
	} else {
		r = renameat(sf->privfd, INNER_NAME, sf->storefd, dname) == 0 ?
		    0 : errno;
		if (r == 0)
			remove_private_dir(sf, 0);
	}
	if (r != 0) {
		snprintf(note, len, "keep the data: %s", strerror(r));
		if (!sf->pstate.replacing)
			partial_forget(sf->storefd, &sf->pkey, 1);
		return r;
	}
	close(sf->fd);
	sf->fd = -1;
	close_store(&sf->storefd, &sf->storebase);
	*kept = st.st_size;
	sf->kept = 1;
	return 0;
}

int
stage_open(const struct stage_opts *opts, const char *path, int oflags,
    mode_t mode, struct staged_file **sfp)
{
	static const struct stage_opts defaults;
	struct staged_file *sf = NULL;
	struct stat st, pst;
	int r = 0, exists = 0, followed = 0, probe = -1, tries;
	int partial_creat = 0;

	*sfp = NULL;
	if (opts == NULL)
		opts = &defaults;
	if ((oflags & O_ACCMODE) == O_RDONLY)
		return EINVAL;
	if ((sf = calloc(1, sizeof(*sf))) == NULL)
		return ENOMEM;
	sf->fd = sf->dirfd = sf->stagedirfd = sf->privfd = -1;
	sf->oldfd = sf->srcfd = sf->privparent = -1;
	sf->homefd = sf->storefd = sf->storebase = sf->recfd = -1;
	sf->start = now_seconds();
	sf->sync = opts->sync;
	sf->no_close_event = opts->no_close_event;
	sf->no_tmpfile = opts->no_tmpfile;
	sf->excl = (oflags & O_CREAT) && (oflags & O_EXCL);
	mode &= 07777;
	if (snprintf(sf->path, sizeof(sf->path), "%s", path) >=
	    (int)sizeof(sf->path)) {
		r = ENAMETOOLONG;
		goto out;
	}
	if (opts->disabled) {
		r = open_direct(sf, oflags, mode, "staging disabled");
		goto out;
	}

	for (tries = 0; ; tries++) {
		if (sf->dirfd >= 0)
			close(sf->dirfd);
		sf->dirfd = -1;
		if (tries == 3) {
			/* The name keeps changing under us (or names a file
			 * we cannot find again): stock's own call, then. */
			r = open_direct(sf, oflags, mode, "the name changed "
			    "while it was opened: writing in place as stock "
			    "does");
			goto out;
		}
		if (sf->excl) {
			/* O_CREAT|O_EXCL never follows a final symlink: the
			 * name must not exist; the kernel checks the rest
			 * when the staged file is created in the directory. */
			if ((r = locate(path, 0, &sf->dirfd, &sf->dir_readable,
			    sf->name, sizeof(sf->name), &st, &exists,
			    &followed)) != 0)
				goto out;
			/* A partial upload the user kept there is a file
			 * that exists, for him. */
			if (exists || (opts->resume &&
			    stage_partial_stat(opts, path, 0, &st) == 0)) {
				r = EEXIST;
				goto out;
			}
			break;
		}
		r = open_as_stock(path, oflags, &probe);
		if (r == ENXIO || r == EWOULDBLOCK) {
			/* A FIFO without a reader, a lease: stock's call
			 * waits, and so do we. */
			r = open_direct(sf, oflags, mode,
			    "not a regular file: writing in place");
			goto out;
		}
		if (r == ENOENT && !(oflags & O_CREAT)) {
			/* The user's kept partial upload is a file there for
			 * him (a resume that opens "r+"): staged as a new
			 * file, which the kernel must allow, then continued
			 * from the kept data. */
			if (!opts->resume ||
			    stage_partial_stat(opts, path, 1, &st) != 0)
				goto out;
			partial_creat = 1;
			oflags |= O_CREAT;
		}
		if (r != 0 && r != ENOENT)
			goto out;	/* the kernel's answer is stock's */
		if (r == 0) {
			if (fstat(probe, &pst) != 0) {
				r = errno;
				goto out;
			}
			if (!S_ISREG(pst.st_mode)) {
				/* Devices and FIFOs: in place, with the
				 * descriptor the kernel gave (a second open
				 * and close would be seen by a FIFO's
				 * reader). */
				if ((oflags & O_CREAT) && S_ISFIFO(pst.st_mode) &&
				    locate(path, 1, &sf->dirfd,
				    &sf->dir_readable, sf->name,
				    sizeof(sf->name), &st, &exists,
				    &followed) == 0 && exists &&
				    st.st_ino == pst.st_ino &&
				    st.st_dev == pst.st_dev &&
				    sticky_create_refused(sf->dirfd, &pst)) {
					r = EACCES;
					goto out;
				}
				if ((r = fcntl(probe, F_GETFL)) < 0 ||
				    fcntl(probe, F_SETFL, r & ~O_NONBLOCK) != 0) {
					r = errno;
					goto out;
				}
				sf->fd = probe;
				probe = -1;
				sf->method = STAGE_DIRECT;
				sf->note = "not a regular file: writing in place";
				r = 0;
				goto out;
			}
		}
		if ((r = locate(path, 1, &sf->dirfd, &sf->dir_readable,
		    sf->name, sizeof(sf->name), &st, &exists, &followed)) != 0)
			goto out;
		if (probe >= 0) {
			/* The name we found must be the file the kernel
			 * opened; else the name changed meanwhile. */
			if (exists && st.st_dev == pst.st_dev &&
			    st.st_ino == pst.st_ino)
				break;
			close(probe);
			probe = -1;
			continue;
		}
		if (exists)
			continue;	/* created meanwhile: ask again */
		if (followed) {
			/* A dangling symlink: the kernel allowed following
			 * it (it said ENOENT, not EACCES or ELOOP).  Ask it
			 * again about the link there now, so a link swapped
			 * in meanwhile is judged too. */
			r = open_as_stock(path, oflags, &probe);
			if (r != ENOENT) {
				if (r == 0) {
					close(probe);
					probe = -1;
					continue;
				}
				goto out;
			}
		}
		break;
	}

	if (opts->tmpdir != NULL && opts->tmpdir[0] != '\0')
		sf->stagedirfd = open_staging_dir(opts->tmpdir, sf->dirfd,
		    &sf->note);

	if (probe >= 0) {
		if ((oflags & O_CREAT) && sticky_create_refused(sf->dirfd,
		    &pst)) {
			r = EACCES;
			goto out;
		}
		r = stage_existing(sf, opts, oflags, probe, &pst);
		probe = -1;	/* sf owns it now */
		if (r != 0)
			goto out;
	} else {
		if ((r = create_staged(sf, mode)) != 0)
			goto out;
		sf->changed = 1;
	}
	if (opts->resume && sf->method != STAGE_DIRECT &&
	    (r = resume_setup(sf, opts, oflags)) != 0)
		goto out;
	if (opts->resume && sf->method == STAGE_DIRECT &&
	    !(oflags & O_TRUNC) && (r = direct_resume_check(sf, opts)) != 0)
		goto out;
	if (partial_creat && sf->resumed_from == 0)
		r = ENOENT;	/* gone meanwhile: there is no file */
 out:
	if (probe >= 0)
		close(probe);
	if (r != 0) {
		discard(sf);
		resume_finish(sf, 0);
		free_staged(sf);
		return r;
	}
	if (opts->digest && (sf->method != STAGE_DIRECT ||
	    (fstat(sf->fd, &st) == 0 && S_ISREG(st.st_mode)))) {
		/* Without OpenSSL (ENOTSUP) the upload simply has none. */
		(void)stream_digest_start(&sf->dg);
		sf->digest_xattr = opts->digest_xattr;
		/* A file written in place may not be readable through
		 * its descriptor: hashed on the way through. */
		sf->digest_deferred = opts->digest_deferred &&
		    sf->method != STAGE_DIRECT;
	}
	sf->resolve_path = opts->resolve_path;
	registry_add(sf);
	*sfp = sf;
	return 0;
}

/* The descriptor with the content a read through the handle sees. */
static int
content_fd(const struct staged_file *sf)
{
	if (sf->lazy)
		return sf->srcfd >= 0 ? sf->srcfd : sf->oldfd;
	return sf->fd;
}

int
stage_fd(const struct staged_file *sf)
{
	return content_fd(sf);
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
	off_t upto, drop;

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
		/* Clean now: no reason to keep an upload in the cache,
		 * except what a deferred digest has still to read. */
		drop = upto;
		if (sf->dg.ctx != NULL && sf->digest_deferred &&
		    sf->dg.hashed < drop)
			drop = sf->dg.hashed;
		if (drop > sf->wb_waited)
			(void)posix_fadvise(sf->fd, sf->wb_waited,
			    drop - sf->wb_waited, POSIX_FADV_DONTNEED);
# endif
		sf->wb_waited = upto;
	}
#else
	(void)sf;
	(void)end;
#endif
}


/*
 * The first write of an upload that continues kept data, or that opened
 * the old file of an interrupted replacement, shows what the client
 * believes the file is.  Continuing kept data from past its end means
 * the client was shown another size (the old file's, asked while another
 * session still had this data): it would leave a hole where new data
 * belongs.  Writing the old file anywhere but from its start continues
 * it with the new file's rest.  Either way nothing is written, later
 * writes are refused too, and the commit fails; kept data stays kept.
 */
static int
resume_check(struct staged_file *sf, off_t off, int at_end)
{
	struct stat st;

	if (sf->resume_mismatch != 0)
		return sf->resume_mismatch;
	if (sf->first_write_done || !sf->resume)
		return 0;
	sf->first_write_done = 1;
	if (at_end && sf->method != STAGE_DIRECT) {
		if (fstat(content_fd(sf), &st) != 0)
			return errno;
		off = st.st_size;
	}
	if (sf->resume_unchecked && off > sf->resumed_from)
		sf->resume_mismatch = STAGE_E_RESUME_GAP;
	if (sf->old_unchecked && off != 0)
		sf->resume_mismatch = sf->old_unchecked;
	sf->resume_unchecked = sf->old_unchecked = 0;
	return sf->resume_mismatch;
}

/* Write `len` bytes at `off`, or at the end (`at_end`). */
static int
write_data(struct staged_file *sf, const void *buf, size_t len, off_t off,
    int at_end)
{
	const char *p = buf;
	size_t done = 0;
	ssize_t n;
	int r;

	if (sf->aborted)
		return EBADF;
	if ((r = resume_check(sf, off, at_end)) != 0)
		return r;
	if (sf->lazy && (r = materialise(sf, COPY_ALL)) != 0) {
		if (sf->write_error == 0)
			sf->write_error = r;
		return r;
	}
	/* At the end: a staged file is ours alone, so its end is its size
	 * (it is never opened O_APPEND: Linux's pwrite would then append
	 * for every handle sharing it); a file written in place has the
	 * kernel's O_APPEND, as stock's has. */
	if (at_end && sf->method != STAGE_DIRECT) {
		struct stat st;

		if (fstat(sf->fd, &st) != 0) {
			r = errno;
			if (sf->write_error == 0)
				sf->write_error = r;
			return r;
		}
		off = st.st_size;
	}
	while (done < len) {
		/* The kernel clears set-id bits on this write as it would
		 * on stock's: the staged file already has the old mode. */
		if (at_end && sf->method == STAGE_DIRECT)
			n = write(sf->fd, p + done, len - done);
		else
			n = pwrite(sf->fd, p + done, len - done,
			    off + (off_t)done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			/* A hole in the data must never be published. */
			if (sf->write_error == 0 && sf->method != STAGE_DIRECT)
				sf->write_error = errno;
			return errno;
		}
		if (n == 0) {
			if (sf->write_error == 0 && sf->method != STAGE_DIRECT)
				sf->write_error = EIO;
			return EIO;
		}
		done += (size_t)n;
	}
	if (at_end && sf->method == STAGE_DIRECT)
		stream_digest_unknown(&sf->dg);	/* O_APPEND: where was it? */
	else if (sf->digest_deferred)
		stream_digest_note(&sf->dg, off, len);
	else
		stream_digest_write(&sf->dg, buf, len, off);
	sf->digest_caught_up = 0;
	write_behind(sf, off + (off_t)len);
	return 0;
}

int
stage_write(struct staged_file *sf, const void *buf, size_t len, off_t off)
{
	return write_data(sf, buf, len, off, 0);
}

int
stage_append(struct staged_file *sf, const void *buf, size_t len)
{
	return write_data(sf, buf, len, 0, 1);
}

void
stage_expect_size(struct staged_file *sf, off_t size)
{
	sf->have_expect = 1;
	sf->expect_size = size;
}

/* Where a change of attributes goes: the old file itself while a
 * modification has changed nothing (stock changes it in place), else the
 * staged file. */
static int
attr_fd(const struct staged_file *sf)
{
	return sf->lazy ? sf->oldfd : sf->fd;
}

int
stage_fchmod(struct staged_file *sf, mode_t mode)
{
	if (sf->aborted)
		return EBADF;
	return fchmod(attr_fd(sf), mode & 07777) == 0 ? 0 : errno;
}

int
stage_fchown(struct staged_file *sf, uid_t uid, gid_t gid)
{
	if (sf->aborted)
		return EBADF;
	return fchown(attr_fd(sf), uid, gid) == 0 ? 0 : errno;
}

int
stage_futimens(struct staged_file *sf, const struct timespec ts[2])
{
	if (sf->aborted)
		return EBADF;
	return futimens(attr_fd(sf), ts) == 0 ? 0 : errno;
}

int
stage_ftruncate(struct staged_file *sf, off_t size)
{
	int r;

	if (sf->aborted)
		return EBADF;
	if (size < 0)
		return EINVAL;
	/* Only what survives the truncation is copied. */
	if (sf->lazy && (r = materialise(sf, size)) != 0) {
		if (sf->write_error == 0)
			sf->write_error = r;
		return r;
	}
	if (ftruncate(sf->fd, size) != 0) {
		r = errno;
		if (sf->write_error == 0 && sf->method != STAGE_DIRECT)
			sf->write_error = r;
		return r;
	}
	stream_digest_truncate(&sf->dg, size);
	sf->digest_caught_up = 0;
	if (size == 0 && !sf->pure) {
		/* The old content is gone: what follows is all the
		 * client's, and the upload a replacement. */
		sf->pure = 1;
		sf->pstate.replacing = sf->existed;
	}
	return 0;
}

int
stage_fstat(const struct staged_file *sf, struct stat *st)
{
	if (sf->aborted)
		return EBADF;
	if (fstat(content_fd(sf), st) != 0)
		return errno;
	/* An anonymous staged file has no link yet; published, it has. */
	if (st->st_nlink == 0)
		st->st_nlink = 1;
	return 0;
}

int
stage_dest(const struct staged_file *sf, dev_t *dev, ino_t *ino,
    const char **name)
{
	struct stat st;

	if (sf->dirfd < 0)
		return ENOENT;	/* staging off: the name is the file */
	if (fstat(sf->dirfd, &st) != 0)
		return errno;
	*dev = st.st_dev;
	*ino = st.st_ino;
	*name = sf->name;
	return 0;
}

int
stage_access(const struct staged_file *sf, int amode)
{
	if (sf->aborted)
		return EBADF;
	return faccessat(content_fd(sf), "", amode,
	    AT_EMPTY_PATH | AT_EACCESS) == 0 ? 0 : errno;
}

/*
 * No /proc (a chroot jail): a duplicate of the descriptor we hold, when it
 * already grants the access asked for (callers read with pread, so the
 * shared offset does not matter; what a handle may do is the caller's
 * flag, not the descriptor's) and the file's permissions would grant it
 * to an open(2), as they do to the open of the /proc link.
 */
static int
reopen_by_dup(int fd, int oflags, int *fdp)
{
	int fl, want = oflags & O_ACCMODE, have, nfd, amode;

	if ((fl = fcntl(fd, F_GETFL)) < 0)
		return errno;
	have = fl & O_ACCMODE;
	if (have != O_RDWR && have != want)
		return EACCES;
	amode = want == O_RDONLY ? R_OK : want == O_WRONLY ? W_OK : R_OK | W_OK;
	if (faccessat(fd, "", amode, AT_EMPTY_PATH | AT_EACCESS) != 0)
		return errno;
	if ((nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0)
		return errno;
	*fdp = nfd;
	return 0;
}

/*
 * Without /proc (a jail): the content is a file with a name (an anonymous
 * one needs /proc to exist at all): the file being modified, or written
 * in place.  Open that name in its directory, so the kernel decides the
 * access, and make sure it is still the same inode; only where the name
 * has gone meanwhile does the kernel's faccessat() decide for a dup.
 */
static int
reopen_by_name(const struct staged_file *sf, int oflags, int *fdp)
{
	struct stat a, b;
	int fd, fl;

	if (sf->dirfd >= 0 && fstat(content_fd(sf), &a) == 0) {
		fd = openat(sf->dirfd, sf->name, oflags | O_NOFOLLOW |
		    O_NONBLOCK);
		if (fd < 0 && errno != ENOENT)
			return errno;
		if (fd >= 0) {
			if (fstat(fd, &b) == 0 && a.st_dev == b.st_dev &&
			    a.st_ino == b.st_ino &&
			    (fl = fcntl(fd, F_GETFL)) >= 0 &&
			    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == 0) {
				*fdp = fd;
				return 0;
			}
			close(fd);
		}
	}
	return reopen_by_dup(content_fd(sf), oflags, fdp);
}

int
stage_reopen(const struct staged_file *sf, int oflags, int *fdp)
{
	char proc[64];
	int fd;

	if (sf->aborted)
		return EBADF;
	oflags = (oflags & O_ACCMODE) | O_NOCTTY | O_CLOEXEC;
	if (!sf->lazy && sf->privfd >= 0)
		fd = openat(sf->privfd, INNER_NAME, oflags | O_NOFOLLOW);
	else {
		/* The kernel checks the access against the inode. */
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d",
		    content_fd(sf));
		fd = open(proc, oflags);
		if (fd < 0 && errno == ENOENT && !proc_fd_available())
			return reopen_by_name(sf, oflags, fdp);
	}
	if (fd < 0)
		return errno;
	*fdp = fd;
	return 0;
}

/* Remove the old file's name if it still names the old file. */
static int
unlink_old_name(struct staged_file *sf)
{
	struct stat a, b;

	if (!sf->existed || sf->oldfd < 0)
		return 0;
	if (fstat(sf->oldfd, &a) != 0)
		return errno;
	if (fstatat(sf->dirfd, sf->name, &b, AT_SYMLINK_NOFOLLOW) != 0)
		return errno == ENOENT ? 0 : errno;
	if (a.st_dev != b.st_dev || a.st_ino != b.st_ino)
		return 0;	/* somebody else's file by now */
	if (unlinkat(sf->dirfd, sf->name, 0) != 0)
		return errno;
	sf->existed = 0;
	return 0;
}

int
stage_unlink_old(struct staged_file *sf)
{
	if (sf->aborted)
		return EBADF;
	if (sf->method == STAGE_DIRECT)
		return EINVAL;
	resume_drop(sf);
	if (!sf->existed)
		/* Only ever in our hands: the kernel would let us unlink it
		 * where we may write the directory. */
		return faccessat(sf->dirfd, ".", W_OK | X_OK, AT_EACCESS) == 0 ?
		    0 : errno;
	return unlink_old_name(sf);
}

int
stage_retarget(struct staged_file *sf, const char *newpath, int replace)
{
	char name[NAME_MAX + 1];
	struct stat st;
	int dirfd = -1, readable = 0, exists = 0, followed = 0, r;

	if (sf->aborted)
		return EBADF;
	if (sf->method == STAGE_DIRECT)
		return EINVAL;
	/* rename(2) replaces a final symlink, it does not follow it. */
	if ((r = locate(newpath, 0, &dirfd, &readable, name, sizeof(name),
	    &st, &exists, &followed)) != 0)
		return r;
	if (exists && !replace) {
		r = EEXIST;
		goto out;
	}
	if (exists && S_ISDIR(st.st_mode)) {
		r = EISDIR;
		goto out;
	}
	if (!same_mount(dirfd, sf->fd)) {
		r = EXDEV;
		goto out;
	}
	if (faccessat(dirfd, ".", W_OK | X_OK, AT_EACCESS) != 0) {
		r = errno;
		goto out;
	}
	if (sf->lazy) {
		/* Nothing changed yet: the content is the old file, under
		 * its old name.  Rename it, as stock's rename would. */
		if (replace)
			r = renameat(sf->dirfd, sf->name, dirfd, name) == 0 ?
			    0 : errno;
		else
			r = rename_noreplace(sf->dirfd, sf->name, dirfd, name);
		if (r != 0)
			goto out;
	} else if ((r = unlink_old_name(sf)) != 0)
		goto out;
	/* Kept under another name, it would not be found again. */
	resume_drop(sf);
	/* A private directory beside the old destination stays there
	 * until the commit: keep its directory's descriptor for it. */
	if (sf->privfd >= 0 && sf->privparent == sf->dirfd &&
	    !sf->privparent_owned)
		sf->privparent_owned = 1;
	else
		close(sf->dirfd);
	sf->dirfd = dirfd;
	sf->dir_readable = readable;
	dirfd = -1;
	snprintf(sf->name, sizeof(sf->name), "%s", name);
	if (snprintf(sf->path, sizeof(sf->path), "%s", newpath) >=
	    (int)sizeof(sf->path))
		sf->path[sizeof(sf->path) - 1] = '\0';
	/* Published by replacing whatever is at the new name then; an
	 * exclusive open's promise was about the old name. */
	sf->excl = 0;
 out:
	if (dirfd >= 0)
		close(dirfd);
	return r;
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

/* The destination directory's entry to disk.  A write-only drop box
 * cannot be opened to fsync it: sync its filesystem instead. */
static int
sync_dir(const struct staged_file *sf)
{
	int fd = sf->fd >= 0 ? sf->fd : sf->oldfd;

	if (sf->dir_readable)
		return sync_all(sf->dirfd);
#ifdef HAVE_SYNCFS
	if (fd >= 0)
		return syncfs(fd) == 0 ? 0 : errno;
	sync();
	return 0;
#else
	sync();
	return 0;
#endif
}

/* The staged file's size if a deferred digest can read it back now;
 * -1 if not (no digest, a modification not copied yet, a file written in
 * place, a file that is mostly holes: see finish_digest()). */
static off_t
digest_readable_size(const struct staged_file *sf)
{
	struct stat st;

	if (sf->aborted || sf->dg.ctx == NULL || !sf->digest_deferred ||
	    sf->digest_idle_failed ||
	    sf->lazy || sf->method == STAGE_DIRECT || sf->fd < 0 ||
	    fstat(sf->fd, &st) != 0 ||
	    st.st_size - (off_t)st.st_blocks * 512 > DIGEST_HOLES_MAX)
		return -1;
	return st.st_size;
}

off_t
stage_digest_backlog(struct staged_file *sf)
{
	off_t size, pending;

	/* Every change of the data clears it (write_data(), truncation,
	 * the lazy copy, a resume's kept data). */
	if (sf->digest_caught_up)
		return 0;
	size = digest_readable_size(sf);
	pending = size < 0 ? 0 : stream_digest_pending(&sf->dg, size);
	if (pending == 0 && size >= 0)
		sf->digest_caught_up = 1;
	return pending;
}

int
stage_digest_work(struct staged_file *sf, size_t budget)
{
	off_t size = digest_readable_size(sf), done;
	int r;

	if (size < 0)
		return 0;
	r = stream_digest_catch_up(&sf->dg, sf->fd, size, budget, &done);
	if (r != 0 || (done == 0 && budget > 0))
		sf->digest_idle_failed = 1;
	return r;
}

int
stage_fsync(struct staged_file *sf)
{
	if (sf->aborted)
		return EBADF;
	return sync_all(sf->lazy ? sf->oldfd : sf->fd);
}

/*
 * Store `hex` under the attribute `name` on the file, or remove a stale
 * one (copied from the file it replaces) when there is no digest.  A
 * user.* attribute needs write permission to the inode, which the owner
 * of a read-only upload (mode 0444) lacks though the descriptor is open
 * for writing: the owner may lend it to himself for the call.
 */
static int
store_digest_xattr(int fd, const char *name, const char *hex)
{
#if defined(HAVE_FSETXATTR) && defined(HAVE_FREMOVEXATTR)
	struct stat st;
	int r;

	if (hex[0] == '\0') {
		if (fremovexattr(fd, name) == 0 || errno == ENODATA ||
		    errno == ENOTSUP)
			return 0;
		return errno;
	}
	if (fsetxattr(fd, name, hex, strlen(hex), 0) == 0)
		return 0;
	r = errno;
	/* Whether we may lend it is the kernel's fchmod decision (only
	 * the owner may); set-id files are left alone, since a chmod by
	 * their owner could clear what it did not set. */
	if ((r != EACCES && r != EPERM) || fstat(fd, &st) != 0 ||
	    (st.st_mode & S_IWUSR) || (st.st_mode & (S_ISUID | S_ISGID)))
		return r;
	if (fchmod(fd, (st.st_mode & 07777) | S_IWUSR) != 0)
		return r;
	r = fsetxattr(fd, name, hex, strlen(hex), 0) == 0 ? 0 : errno;
	if (fchmod(fd, st.st_mode & 07777) != 0 && r == 0)
		r = errno;
	return r;
#else
	(void)fd;
	(void)name;
	(void)hex;
	return ENOTSUP;
#endif
}

/*
 * The upload's SHA-256, completed from the file where the data did not
 * arrive in order, and stored as an extended attribute if asked: before
 * the fsync, so the attribute is as durable as the data.  A digest that
 * cannot be had is no reason to refuse the upload: the report says "".
 */
static void
finish_digest(struct staged_file *sf)
{
	struct stat st;
	int fd = sf->fd, rfd = -1, r;
	char proc[64];

	sf->sha256[0] = '\0';
	if (sf->dg.ctx == NULL)
		return;
	if (fstat(fd, &st) != 0)
		goto xattr;
	/*
	 * One WRITE far beyond the end makes a file of a terabyte that
	 * holds a few bytes; reading its holes back would hash zeros for
	 * hours.  Past DIGEST_HOLES_MAX of holes to read there is no digest,
	 * and the log says why.  Data that arrived in order has no holes.
	 */
	if (stream_digest_pending(&sf->dg, st.st_size) > 0 &&
	    st.st_size - (off_t)st.st_blocks * 512 > DIGEST_HOLES_MAX) {
		sf->digest_holes = st.st_size - (off_t)st.st_blocks * 512;
		goto xattr;
	}
	r = stream_digest_finish(&sf->dg, fd, st.st_size, sf->sha256,
	    &sf->digest_reread);
	if (r == EBADF && sf->method == STAGE_DIRECT) {
		/* Written in place through a write-only descriptor: read it
		 * back through a new one, if the kernel lets us. */
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		if ((rfd = open(proc, O_RDONLY | O_NOCTTY | O_NONBLOCK |
		    O_CLOEXEC)) >= 0) {
			/* The failed read hashed nothing: go on from the
			 * same place. */
			r = stream_digest_finish(&sf->dg, rfd, st.st_size,
			    sf->sha256, &sf->digest_reread);
			close(rfd);
		}
	}
	if (r != 0)
		sf->sha256[0] = '\0';
 xattr:
	if (sf->digest_xattr != NULL)
		sf->xattr_error = store_digest_xattr(fd, sf->digest_xattr,
		    sf->sha256);
}

/* Where the upload is (or was to be) published, absolute and with its
 * directory's symbolic links resolved, for the commit hook; "" if the
 * kernel cannot say (no /proc, as in a jail without it). */
static void
final_path(const struct staged_file *sf, char *out, size_t outlen)
{
	char proc[64], dir[PATH_MAX];
	ssize_t n;

	out[0] = '\0';
	if (sf->dirfd < 0)
		return;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", sf->dirfd);
	if ((n = readlink(proc, dir, sizeof(dir) - 1)) <= 0 || dir[0] != '/')
		return;
	dir[n] = '\0';
	if (snprintf(out, outlen, "%s%s%s", dir, strcmp(dir, "/") == 0 ?
	    "" : "/", sf->name) >= (int)outlen)
		out[0] = '\0';
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
	if (!sf->aborted && content_fd(sf) >= 0 &&
	    fstat(content_fd(sf), &st) == 0)
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
	memcpy(rep->sha256, sf->sha256, sizeof(rep->sha256));
	rep->digest_reread = sf->digest_reread;
	rep->digest_holes = sf->digest_holes;
	rep->xattr_error = sf->xattr_error;
	rep->partial_kept = -1;
	rep->resumed_from = sf->resumed_from;
	if (sf->resolve_path)
		final_path(sf, rep->final_path, sizeof(rep->final_path));
}

static int
link_anonymous(int fd, int dirfd, const char *target)
{
#ifdef HAVE_LINKAT
	char proc[64];
	int r;

# if defined(HAVE_DECL_AT_EMPTY_PATH) && HAVE_DECL_AT_EMPTY_PATH
	/*
	 * Linking the descriptor itself skips the /proc lookup, which costs
	 * more than the link (a proc inode per call).  The kernel allows it
	 * to callers with CAP_DAC_READ_SEARCH and says ENOENT to others;
	 * /proc works for everyone.
	 */
	if (linkat(fd, "", dirfd, target, AT_EMPTY_PATH) == 0)
		return 0;
	if (errno != ENOENT && errno != EPERM && errno != EINVAL)
		return errno;
# endif
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	r = linkat(AT_FDCWD, proc, dirfd, target, AT_SYMLINK_FOLLOW);
	return r == 0 ? 0 : errno;
#else
	(void)fd;
	(void)dirfd;
	(void)target;
	return ENOSYS;	/* unreachable: no O_TMPFILE without linkat */
#endif
}

static int
rename_noreplace(int fromfd, const char *from, int tofd, const char *to)
{
#if defined(HAVE_RENAMEAT2) && defined(HAVE_DECL_RENAME_NOREPLACE) && HAVE_DECL_RENAME_NOREPLACE
	if (renameat2(fromfd, from, tofd, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
		return errno;
#endif
	/* Portable no-replace: link fails if the name exists. */
#ifdef HAVE_LINKAT
	if (linkat(fromfd, from, tofd, to, 0) != 0)
		return errno;
	(void)unlinkat(fromfd, from, 0);
	return 0;
#else
	return ENOSYS;
#endif
}

/*
 * May the staged file get a plain hidden name in directory `dirfd` for
 * the instant before its rename, or must it sit in a private directory?
 * A plain name is safe where nobody but us (and root) may rename or
 * replace it: the directory is ours or root's and nobody else may write
 * it, or it is sticky and the file is ours.  This only chooses the
 * cheaper of two safe ways (a private directory costs a mkdir and an
 * rmdir per file); what is allowed is the kernel's decision as ever.
 */
static int
plain_name_safe(int dirfd, int fd)
{
	struct stat d, f;

	if (fstat(dirfd, &d) != 0 || fstat(fd, &f) != 0 ||
	    (d.st_uid != geteuid() && d.st_uid != 0))
		return 0;
	if (!(d.st_mode & (S_IWGRP | S_IWOTH)))
		return 1;
	return (d.st_mode & S_ISVTX) && f.st_uid == geteuid();
}

/*
 * Replace the destination with the anonymous staged file through a plain
 * hidden name in `parent`, locked (the file's lock) so that a sweep sees
 * it is live.
 */
static int
publish_via_name(struct staged_file *sf, int parent, const char **step)
{
	int r, tries;

	(void)flock(sf->fd, LOCK_EX | LOCK_NB);
	*step = "link under a temporary name";
	for (tries = 0; tries < 100; tries++) {
		if ((r = make_temp_name(sf->linkname,
		    sizeof(sf->linkname))) != 0)
			return r;
		sf->linkparent = parent;
		if ((r = link_anonymous(sf->fd, parent, sf->linkname)) == 0)
			break;
		sf->linkname[0] = '\0';
		if (r != EEXIST)
			return r;
	}
	if (r != 0)
		return r;
	*step = "rename into place";
	r = renameat(parent, sf->linkname, sf->dirfd, sf->name) == 0 ? 0 :
	    errno;
	if (r != 0)
		(void)unlinkat(parent, sf->linkname, 0);
	sf->linkname[0] = '\0';
	return r;
}

/* Publish under sf->name; the previous content stays until this succeeds. */
static int
publish(struct staged_file *sf, const char **step)
{
	int r, parent;

	if (sf->method == STAGE_TMPFILE) {
		if (sf->excl || !sf->existed) {
			*step = "link into place";
			r = link_anonymous(sf->fd, sf->dirfd, sf->name);
			/* EEXIST without O_EXCL: somebody created the name
			 * meanwhile; replace it like any existing file. */
			if (r != EEXIST || sf->excl)
				return r;
		}
		/* linkat cannot replace: give the file a name (in the
		 * staging directory if there is one, so the destination
		 * directory sees only the final name) and rename it over
		 * the destination: a plain hidden name where that is safe,
		 * else a name in a private directory. */
		parent = sf->stagedirfd >= 0 ? sf->stagedirfd : sf->dirfd;
		if (!sf->excl && plain_name_safe(parent, sf->fd) &&
		    (r = publish_via_name(sf, parent, step)) != EACCES &&
		    r != EPERM)
			return r;
		*step = "make a private directory";
		r = ENOENT;
		if (sf->stagedirfd >= 0)
			r = make_private_dir(sf, sf->stagedirfd);
		if (r != 0 && (r = make_private_dir(sf, sf->dirfd)) != 0)
			return r;
		*step = "link into a private directory";
		if ((r = link_anonymous(sf->fd, sf->privfd, INNER_NAME)) != 0)
			return r;
	}
	if (sf->excl) {
		*step = "rename into place (no replace)";
		if ((r = rename_noreplace(sf->privfd, INNER_NAME, sf->dirfd,
		    sf->name)) != 0)
			return r;
	} else {
		*step = "rename into place";
		if (renameat(sf->privfd, INNER_NAME, sf->dirfd, sf->name) != 0)
			return errno;
	}
	remove_private_dir(sf, 0);
	return 0;
}

int
stage_commit(struct staged_file *sf, struct stage_report *rep)
{
	const char *step = NULL;
	struct stat st;
	int r = 0, fd, published = 0;

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
	if (sf->copy_error != 0) {
		r = sf->copy_error;
		step = "stage a copy of the existing file";
		goto fail;
	}
	if (sf->resume_mismatch) {
		char note[sizeof(rep->partial_note)] = "";
		off_t kept = -1;

		/* The client continued the wrong size: nothing of it was
		 * written, kept data is as good as before. */
		r = sf->resume_mismatch;
		fill_report(sf, rep, r, r == STAGE_E_RESUME_GAP ?
		    "a resume wrote past the end of the kept data" :
		    r == STAGE_E_INFLIGHT ? "a write continued the old file "
		    "of a replacement in flight in another session" :
		    "a write continued the old file of an interrupted "
		    "replacement");
		if (sf->resumed_from == 0 ||
		    keep_partial(sf, &kept, note, sizeof(note)) != 0)
			discard(sf);
		if (rep != NULL) {
			rep->partial_kept = kept;
			snprintf(rep->partial_note, sizeof(rep->partial_note),
			    "%s", note);
		}
		goto done;
	}
	if (sf->have_expect) {
		step = "check declared size";
		if (fstat(content_fd(sf), &st) != 0) {
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
		finish_digest(sf);
		if (sf->sync != STAGE_SYNC_NONE) {
			step = "fsync";
			if ((r = sync_data(sf->fd)) != 0)
				goto fail;
		}
		fill_report(sf, rep, 0, NULL);
		published = 1;
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
	if (!sf->changed) {
		/* A modification that changed nothing: the file is as it
		 * was, same inode, links and all, as with stock. */
		fill_report(sf, rep, 0, NULL);
		if (rep != NULL)
			rep->unchanged = 1;
		discard(sf);
		goto done;
	}
	finish_digest(sf);
	/* Durability: data and metadata (owner, mode, ACL were set on the
	 * staged file before this) on disk before the name points at it. */
	if (sf->sync != STAGE_SYNC_NONE) {
		step = "fsync";
		if ((r = sync_all(sf->fd)) != 0)
			goto fail;
	}
	fill_report(sf, rep, 0, NULL);
	/* Watchers waiting for IN_CLOSE_WRITE get it from the close of the
	 * old file's descriptor (open for writing, as stock's was) once the
	 * new content has its name: a named staged file must not give one
	 * of its own, so it is closed while still in its private
	 * directory.  Without an old file, see below. */
	if (sf->method == STAGE_NAMED && sf->oldfd >= 0) {
		close(sf->fd);
		sf->fd = -1;
	}
	if ((r = publish(sf, &step)) != 0)
		goto fail;
	published = 1;
	if (rep != NULL)
		rep->published = 1;
	if (sf->sync == STAGE_SYNC_FULL) {
		/* Published: the old content is gone, so an error here is
		 * reported but cannot be undone. */
		if ((r = sync_dir(sf)) != 0) {
			if (rep != NULL) {
				rep->error = r;
				snprintf(rep->reason, sizeof(rep->reason),
				    "directory fsync after publishing: %s",
				    strerror(r));
			}
			if (sf->fd >= 0)
				close(sf->fd);
			sf->fd = -1;
			goto done;
		}
	}
	/* A new file: closing a renamed named file fires IN_CLOSE_WRITE on
	 * the final name; an O_TMPFILE's close reports only "#inode", so
	 * open and close the published name once to give watchers that
	 * event.  A replacement: free_staged() closes the old file. */
	if (sf->fd >= 0)
		close(sf->fd);
	sf->fd = -1;
	if (sf->method == STAGE_TMPFILE && sf->oldfd < 0 &&
	    !sf->no_close_event) {
		fd = openat(sf->dirfd, sf->name, O_WRONLY | O_NOFOLLOW |
		    O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
		if (fd >= 0)
			close(fd);
	}
	goto done;

 fail:
	if (rep != NULL)
		fill_report(sf, rep, r, step);
	discard(sf);
 done:
	/* Published (even if the directory fsync then failed): the name
	 * holds the new content, and no record of it is true any more. */
	resume_finish(sf, published);
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
	resume_finish(sf, 0);
	registry_remove(sf);
	free_staged(sf);
}

void
stage_interrupt(struct staged_file *sf, const char *reason,
    struct stage_report *rep)
{
	char note[sizeof(rep->partial_note)] = "";
	off_t kept = -1;

	if (sf == NULL)
		return;
	/* Only data that is all the client's: not a modification that
	 * changed nothing, not data a write or the copy failed to store. */
	if (sf->resume && !sf->aborted && sf->method != STAGE_DIRECT &&
	    !sf->no_partial && sf->changed && !sf->lazy && sf->pure &&
	    sf->write_error == 0 && sf->copy_error == 0 && sf->fd >= 0) {
		fill_report(sf, rep, 0, reason != NULL ? reason : "aborted");
		if (keep_partial(sf, &kept, note, sizeof(note)) == 0) {
			if (rep != NULL)
				rep->partial_kept = kept;
			resume_finish(sf, 0);
			registry_remove(sf);
			free_staged(sf);
			return;
		}
	}
	stage_abort(sf, reason, rep);
	if (rep != NULL)
		snprintf(rep->partial_note, sizeof(rep->partial_note), "%s",
		    note);
}

off_t
stage_resumed(const struct staged_file *sf)
{
	return sf->resumed_from;
}

int
stage_partial_stat(const struct stage_opts *opts, const char *path,
    int follow, struct stat *st)
{
	struct partial_found found;
	struct partial_key k;
	int storefd, basefd, r;

	if ((r = partial_at_path(opts, path, follow, &k, &found, &storefd,
	    &basefd, NULL)) != 0)
		return r;
	close_store(&storefd, &basefd);
	if (found.kind != PARTIAL_DATA)
		return ENOENT;
	*st = found.st;
	return 0;
}

int
stage_partial_open(const struct stage_opts *opts, const char *path,
    int oflags, int *fdp)
{
	struct partial_found found;
	struct partial_key k;
	int storefd, basefd, r;

	*fdp = -1;
	if ((r = partial_at_path(opts, path, 1, &k, &found, &storefd,
	    &basefd, NULL)) != 0)
		return r;
	r = found.kind == PARTIAL_DATA ?
	    partial_data_open(storefd, &k, oflags, fdp) : ENOENT;
	close_store(&storefd, &basefd);
	return r;
}

int
stage_partial_forget(const struct stage_opts *opts, const char *path)
{
	struct partial_found found;
	struct partial_key k;
	int storefd, basefd, dirfd, r;

	if ((r = partial_at_path(opts, path, 0, &k, &found, &storefd,
	    &basefd, &dirfd)) != 0)
		return r;
	r = ENOENT;
	/* Kept data of a name that is not on disk stands for a file in
	 * the directory: removing it is the kernel's decision about that
	 * directory, as for a staged new file (stage_unlink_old()). */
	if (found.kind == PARTIAL_DATA && !found.state.exists &&
	    faccessat(dirfd, ".", W_OK | X_OK, AT_EACCESS) != 0)
		r = errno;
	else if (found.kind == PARTIAL_DATA ||
	    found.kind == PARTIAL_REPLACED) {
		partial_forget(storefd, &k, 1);
		partial_store_tidy(basefd, storefd);
		r = found.kind == PARTIAL_DATA ? 0 : ENOENT;
	}
	if (dirfd >= 0)
		close(dirfd);
	close_store(&storefd, &basefd);
	return r;
}

struct partial_listing {
	int dirfd;
	int storefd;
	const struct partial_limits *lim;
	stage_partial_fn *fn;
	void *arg;
};

static int
list_one(void *arg, const char *name)
{
	struct partial_listing *pl = arg;
	struct partial_state now;
	struct partial_found found;
	struct partial_key k;
	struct stat dst;

	if (fstat(pl->dirfd, &dst) != 0 ||
	    partial_key_make(dst.st_dev, dst.st_ino, name, &k) != 0 ||
	    partial_state_now(pl->dirfd, name, &now) != 0 ||
	    (now.exists && fstatat(pl->dirfd, name, &dst,
	    AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(dst.st_mode)) ||
	    partial_find(pl->storefd, &k, &now, pl->lim, &found) != 0 ||
	    found.kind != PARTIAL_DATA)
		return 0;
	return pl->fn(pl->arg, name, &found.st);
}

int
stage_partial_list(const struct stage_opts *opts, int dirfd,
    stage_partial_fn *fn, void *arg)
{
	struct partial_listing pl;
	struct stat dst;
	const char *note = NULL;
	int bases[2], i, r = 0;

	if (opts == NULL || !opts->resume)
		return 0;
	if (fstat(dirfd, &dst) != 0)
		return errno;
	bases[0] = -1;
	if (opts->tmpdir != NULL && opts->tmpdir[0] != '\0')
		bases[0] = open_staging_dir(opts->tmpdir, dirfd, &note);
	bases[1] = dirfd;
	pl.dirfd = dirfd;
	pl.lim = &opts->partial;
	pl.fn = fn;
	pl.arg = arg;
	for (i = 0; i < 2 && r == 0; i++) {
		if (bases[i] < 0 ||
		    partial_store_open(bases[i], 0, &pl.storefd) != 0)
			continue;
		r = partial_list(pl.storefd, dst.st_dev, dst.st_ino, list_one,
		    &pl);
		close(pl.storefd);
	}
	if (bases[0] >= 0)
		close(bases[0]);
	return r;
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
		if (sf->linkname[0] != '\0')
			(void)unlinkat(sf->linkparent, sf->linkname, 0);
		if (sf->privfd >= 0) {
			(void)unlinkat(sf->privfd, INNER_NAME, 0);
			(void)unlinkat(sf->privparent, sf->privname,
			    AT_REMOVEDIR);
			close(sf->privfd);
			sf->privfd = -1;
		}
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

/*
 * One of our names in `dfd`: remove it if no live staging holds its lock.
 * A private directory is emptied first (it holds one file, or none).
 * The lock tells a live staging from a dead one; root removes a dead one
 * whoever made it (in a sticky 1733 directory too), a user only his own.
 */
static void
sweep_entry(int dfd, const char *name, unsigned int *count)
{
	struct stat st, again;
	struct dirent *de;
	DIR *d;
	int fd;

	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
	    O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return;
	/* Root's sweep (the cron job) takes anybody's; a user's only his. */
	if (fstat(fd, &st) != 0 || (!S_ISREG(st.st_mode) &&
	    !S_ISDIR(st.st_mode)) ||
	    (geteuid() != 0 && st.st_uid != geteuid()) ||
	    flock(fd, LOCK_EX | LOCK_NB) != 0)
		goto out;
	if (fstatat(dfd, name, &again, AT_SYMLINK_NOFOLLOW) != 0 ||
	    again.st_dev != st.st_dev || again.st_ino != st.st_ino)
		goto out;
	if (S_ISREG(st.st_mode)) {
		if (unlinkat(dfd, name, 0) == 0)
			(*count)++;
		goto out;
	}
	if (dir_stream(fd, &d) != 0)
		goto out;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		(void)unlinkat(fd, de->d_name, 0);
	}
	closedir(d);
	if (unlinkat(dfd, name, AT_REMOVEDIR) == 0)
		(*count)++;
 out:
	close(fd);
}

struct sweep_ctx {
	dev_t dev;
	int flags;
	const struct partial_limits *lim;	/* NULL: leave stores alone */
	unsigned int count;
	unsigned int expired;
};

static void sweep_dir(int, int, struct sweep_ctx *);

/*
 * A store of partial uploads: what expired goes, and the private
 * directories of resumes whose process died; then the store itself if
 * nothing is left.  Root's sweep takes everybody's, a user's only his.
 */
static void
sweep_store(int dfd, const char *name, uid_t uid, struct sweep_ctx *c)
{
	struct sweep_ctx inner = *c;
	struct stat st;
	unsigned int n = 0;
	int fd;

	/* Whose store we may enter is the kernel's answer (0700: its
	 * owner's and root's); whether we trust it is ours. */
	if ((fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) < 0)
		return;
	if (fstat(fd, &st) != 0 || st.st_uid != uid ||
	    (st.st_mode & 077) != 0 || st.st_dev != c->dev) {
		close(fd);
		return;
	}
	inner.flags = 0;
	inner.count = 0;
	sweep_dir(fd, SWEEP_MAX_DEPTH, &inner);
	c->count += inner.count;
	if (partial_expire(fd, c->lim, &n) == 0)
		c->expired += n;
	close(fd);
	(void)unlinkat(dfd, name, AT_REMOVEDIR);	/* if empty */
}

static void
sweep_dir(int dfd, int depth, struct sweep_ctx *c)
{
	struct dirent *de;
	struct stat st;
	uid_t uid;
	DIR *d;
	int sub;

	if (dir_stream(dfd, &d) != 0)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (stage_is_temp_name(de->d_name)) {
			sweep_entry(dfd, de->d_name, &c->count);
			continue;
		}
		if (partial_is_store_name(de->d_name, &uid)) {
			if (c->lim != NULL)
				sweep_store(dfd, de->d_name, uid, c);
			continue;
		}
		if (!(c->flags & STAGE_SWEEP_TREE) || depth >= SWEEP_MAX_DEPTH ||
		    (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN))
			continue;
		sub = openat(dfd, de->d_name, O_RDONLY | O_DIRECTORY |
		    O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0)
			continue;
		/* Stay on this filesystem: a mount below is another one's
		 * business. */
		if (fstat(sub, &st) == 0 && st.st_dev == c->dev)
			sweep_dir(sub, depth + 1, c);
		close(sub);
	}
	closedir(d);
}

int
stage_sweep_partial(const char *dir, int flags,
    const struct partial_limits *lim, unsigned int *removed,
    unsigned int *expired)
{
	struct sweep_ctx c;
	struct stat st;
	int dfd, readable;

	if (removed != NULL)
		*removed = 0;
	if (expired != NULL)
		*expired = 0;
	readable = 1;
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		/* A shared 1733 staging directory: not ours to list, but
		 * our own store in it is ours to look after. */
		if (errno != EACCES || lim == NULL ||
		    (dfd = open(dir, DIR_LOOKUP_FLAGS)) < 0)
			return errno;
		readable = 0;
	}
	if (fstat(dfd, &st) != 0) {
		close_keep_errno(dfd);
		return errno;
	}
	memset(&c, 0, sizeof(c));
	c.dev = st.st_dev;
	c.flags = flags;
	c.lim = lim;
	if (readable)
		sweep_dir(dfd, 0, &c);
	else {
		char own[64];

		snprintf(own, sizeof(own), "%s%lu", PARTIAL_STORE_PREFIX,
		    (unsigned long)geteuid());
		sweep_store(dfd, own, geteuid(), &c);
	}
	close(dfd);
	if (removed != NULL)
		*removed = c.count;
	if (expired != NULL)
		*expired = c.expired;
	return 0;
}

int
stage_sweep(const char *dir, int flags, unsigned int *removed)
{
	return stage_sweep_partial(dir, flags, NULL, removed, NULL);
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
