/*
 * atomic-upload: receive a file so that readers of its destination name
 * see either the previous content or the complete new content, never a
 * mix and never a prefix.
 *
 * This is the only code in the project that knows about temporary files.
 * It has no SFTP or SCP knowledge: callers open a staged file for a
 * destination path, write through the returned descriptor, and then either
 * commit (publish the data under the destination name in one rename or
 * link) or abort (nothing is published, nothing is left behind).
 *
 * Every function returns 0 on success or a positive errno value; results
 * are written through pointers.  errno itself is not relied upon by callers.
 */
#ifndef ATOMIC_UPLOAD_H
#define ATOMIC_UPLOAD_H

#include <sys/types.h>
#include <sys/stat.h>
#include <stddef.h>

#include "partial.h"

/* How much a successful commit promises about power loss (DESIGN.md 4). */
enum stage_sync {
	STAGE_SYNC_FULL = 0,	/* fsync file, publish, fsync directory */
	STAGE_SYNC_DATA,	/* fsync file before publishing only */
	STAGE_SYNC_NONE		/* visibility atomicity only */
};

/* What to do with a write that does not truncate an existing file. */
enum stage_modify {
	STAGE_MODIFY_COPY = 0,	/* stage a copy (reflink first), commit on close */
	STAGE_MODIFY_INPLACE	/* write the existing file in place, as stock */
};

/* How a staged file is held until commit. */
enum stage_method {
	STAGE_TMPFILE = 0,	/* anonymous O_TMPFILE, linked at commit */
	STAGE_NAMED,		/* hidden, unpredictable name, renamed at commit */
	STAGE_DIRECT		/* no staging: the destination itself (stock) */
};

/*
 * Settings for one stage_open().  Zero-initialised means: stage in the
 * destination directory, durability full, copy-on-modify, O_TMPFILE allowed.
 */
struct stage_opts {
	const char *tmpdir;	/* staging directory (already %-expanded) or NULL */
	enum stage_sync sync;
	enum stage_modify modify;
	int disabled;		/* never stage: write in place like stock */
	int no_tmpfile;		/* never use O_TMPFILE (tests, odd filesystems) */
	int no_close_event;	/* skip the post-commit open+close that makes
				 * IN_CLOSE_WRITE fire on the final name */
	int digest;		/* compute the SHA-256 of each upload (needs
				 * OpenSSL; ignored without it) */
	const char *digest_xattr; /* store it on the published file under
				 * this extended attribute name, or NULL */
	int resolve_path;	/* fill stage_report.final_path */
	int digest_deferred;	/* hash in stage_digest_work() (idle
				 * moments) and at the commit, not in each
				 * stage_write(): a request's reply does not
				 * wait for its hashing */
	/* Resumable uploads (DESIGN.md 12, partial.h): stage_interrupt()
	 * keeps the data of an upload that lost its connection, later
	 * opens of the name by the same user see it and continue it. */
	int resume;
	struct partial_limits partial;
};

/* What happened to one upload, for the caller's commit/abort log line. */
struct stage_report {
	char path[4096];	/* destination as given to stage_open */
	off_t bytes;		/* size of the staged file at commit/abort */
	double seconds;		/* since stage_open */
	enum stage_method method;
	int error;		/* 0, or the errno of the step that failed */
	int published;		/* the new content is under the name (also
				 * when a later directory fsync failed) */
	int unchanged;		/* a modification that changed nothing:
				 * nothing was published, the file is as it
				 * was (a success) */
	char reason[256];	/* failed step or abort reason, "" on success */
	/* SHA-256 of the published content, lowercase hex; "" when not
	 * computed (digests off, no OpenSSL, an abort, a file written in
	 * place that cannot be read back). */
	char sha256[65];
	off_t digest_reread;	/* bytes read back to finish it (data that
				 * arrived out of order or was modified) */
	int xattr_error;	/* storing it as an xattr failed (errno) */
	off_t digest_holes;	/* not computed: the file is this many bytes
				 * of holes (one write far past the end, or a
				 * truncation that extends), too many to hash */
	/* With stage_opts.resolve_path: the absolute path the content was
	 * published under (symbolic links resolved), "" if unknown. */
	char final_path[4096];
	/* stage_interrupt(): the bytes kept for a resume (-1: none kept),
	 * or why nothing was kept ("" when there was nothing to keep). */
	off_t partial_kept;
	char partial_note[128];
	/* The upload continued this many bytes an interrupted one had
	 * kept (0: it did not continue anything). */
	off_t resumed_from;
};

struct staged_file;

/*
 * Open a staged file for writing to `path`.  `oflags` are open(2) flags:
 * O_WRONLY or O_RDWR, plus any of O_CREAT, O_TRUNC, O_EXCL, O_APPEND.
 * `mode` is the permission for a new file.
 *
 * The permission model: an upload is allowed exactly when open(path,
 * oflags, mode) would be, because the name is opened for real with the
 * same access mode (only O_CREAT and O_TRUNC are held back, since they
 * would change the name at once), so the kernel applies its symlink,
 * sticky, permission, ACL and immutable/append-only rules; the one rule
 * that depends on O_CREAT (fs.protected_regular) is applied explicitly.
 * A new file is created in the destination directory with `mode`, so the
 * umask, default ACL and setgid group apply as open(2) would apply them.
 * Errors are those open(2) gives (ENOENT, EEXIST, EACCES, ELOOP, EPERM,
 * EISDIR, ...).
 */
int stage_open(const struct stage_opts *opts, const char *path, int oflags,
    mode_t mode, struct staged_file **sfp);

/* The descriptor that holds the upload's current content, for reading
 * and fstatvfs only: the staged file, or the file being modified until its
 * first change (a modification is copied lazily), or the file itself when
 * written in place (STAGE_DIRECT).  Every change goes through the stage_*
 * calls below, never through this descriptor. */
int stage_fd(const struct staged_file *sf);

enum stage_method stage_method(const struct staged_file *sf);

/* Why a file is written in place (STAGE_DIRECT), or NULL if staged.  Also
 * set when a configured staging directory was not used, even though the
 * file is staged in its destination directory instead. */
const char *stage_note(const struct staged_file *sf);

/*
 * Write `len` bytes at `off`,
 * retrying short writes and EINTR.  Prefer this to pwrite(stage_fd()):
 * with durability on it starts write-back of completed ranges while the
 * transfer goes on, so the fsync at commit has little left to do and the
 * page cache does not fill with dirty upload data.
 */
int stage_write(struct staged_file *sf, const void *buf, size_t len,
    off_t off);

/* The same at the end of the file: an O_APPEND handle's write. */
int stage_append(struct staged_file *sf, const void *buf, size_t len);

/* The client declared the final size: commit only if the staged length
 * equals it, else abort (a cancelled upload must not publish a prefix). */
void stage_expect_size(struct staged_file *sf, off_t size);

/*
 * Attribute changes through the handle.  They act on the staged file,
 * which already carries the owner, group, mode and extended attributes the
 * published file will have, so the kernel applies its own rules to them
 * (a chown clears set-user-id, a write or truncation by an unprivileged
 * user clears set-id bits).  On a modification that has not changed any
 * data yet they act on the file itself, as stock's would.
 */
int stage_fchmod(struct staged_file *sf, mode_t mode);
int stage_fchown(struct staged_file *sf, uid_t uid, gid_t gid);
int stage_futimens(struct staged_file *sf, const struct timespec ts[2]);
/* A change of size is a change of data: it makes a modification stage. */
int stage_ftruncate(struct staged_file *sf, off_t size);
int stage_fstat(const struct staged_file *sf, struct stat *st);

/*
 * The upload as its own session sees it (DESIGN.md 11): the destination's
 * identity (its directory's device and inode, and its name there once
 * final symlinks were followed), for matching the names of later
 * requests against it.
 */
int stage_dest(const struct staged_file *sf, dev_t *dev, ino_t *ino,
    const char **name);

/* May the caller open the staged file with this access (R_OK, W_OK)?  The
 * kernel's answer for the staged file, which has the final owner and
 * mode: what it would answer for stock's file. */
int stage_access(const struct staged_file *sf, int amode);

/* Another descriptor on the staged data, opened `oflags` (O_RDONLY), for
 * a reader in the same session; the kernel checks the access. */
int stage_reopen(const struct staged_file *sf, int oflags, int *fdp);

/*
 * The session renames its upload (an editor's or rsync's temporary name,
 * renamed over the real one): the upload will be published at `newpath`
 * instead.  With `replace` 0, EEXIST if that name exists now.  EXDEV to
 * another filesystem, and the kernel's EACCES where the new directory may
 * not be written, as rename(2).  A file being replaced loses its old name
 * now, as a rename would take it away.
 */
int stage_retarget(struct staged_file *sf, const char *newpath, int replace);

/*
 * The session removes the name of its upload: the file being replaced, if
 * any, is unlinked now, as stock's would be (the kernel decides whether
 * it may); the caller then aborts the staging instead of committing it.
 */
int stage_unlink_old(struct staged_file *sf);

/*
 * Deferred digests (stage_opts.digest_deferred): how many bytes of the
 * staged file wait to be hashed, and hashing up to `budget` of them now,
 * read back from the page cache.  What is left at the commit is hashed
 * then.
 */
off_t stage_digest_backlog(struct staged_file *sf);
int stage_digest_work(struct staged_file *sf, size_t budget);

/* fsync the staged data now (fsync@openssh.com on a staged handle). */
int stage_fsync(struct staged_file *sf);

/*
 * Publish the staged data under the destination name and free `sf`.
 * On failure the destination is untouched and the staged data removed;
 * `sf` is freed either way.  `rep` may be NULL.  A failed stage_write()
 * makes the commit fail.  One exception: with STAGE_SYNC_FULL, when the
 * directory fsync after the rename fails, the new content is already
 * published (it cannot be taken back); the error is still returned so the
 * client is not told the upload is durable.
 */
int stage_commit(struct staged_file *sf, struct stage_report *rep);

/* Discard the staged data and free `sf`.  `reason` goes into the report. */
void stage_abort(struct staged_file *sf, const char *reason,
    struct stage_report *rep);

/*
 * The connection was lost: with stage_opts.resume, keep what arrived as
 * a partial upload that the same user's later sessions can continue
 * (rep->partial_kept), else as stage_abort().  Nothing is published
 * either way.
 */
void stage_interrupt(struct staged_file *sf, const char *reason,
    struct stage_report *rep);

/* The bytes of kept partial data this upload continues (0: none). */
off_t stage_resumed(const struct staged_file *sf);

/*
 * Errors of stage_open() with stage_opts.resume for a write-open without
 * O_TRUNC: an interrupted replacement of the file whose partial data is
 * gone (continuing the old file would build a mix of the old file and
 * the new one); a replacement of it in flight in another session.
 */
#define STAGE_E_REPLACED	ENOTRECOVERABLE
#define STAGE_E_INFLIGHT	EALREADY
/* stage_write(): a resumed upload's first write starts past the end of
 * the kept data (see stage_resumed()); nothing is written, and the commit
 * will fail, keeping the data for another try. */
#define STAGE_E_RESUME_GAP	ESPIPE

/*
 * The same user's later sessions see a kept partial upload at its name
 * (DESIGN.md 12).  With `follow` 0 a final symbolic link is the link,
 * not a partial.  ENOENT when there is none.  _stat gives its
 * attributes, _open a descriptor to read it (the kernel checks the
 * access against the kept file, which has the final owner and mode),
 * _forget removes it (a REMOVE or RENAME of the name), _list calls `fn`
 * for each one in the directory open as `dirfd`.
 */
int stage_partial_stat(const struct stage_opts *opts, const char *path,
    int follow, struct stat *st);
int stage_partial_open(const struct stage_opts *opts, const char *path,
    int oflags, int *fdp);
int stage_partial_forget(const struct stage_opts *opts, const char *path);
typedef int stage_partial_fn(void *arg, const char *name,
    const struct stat *st);
int stage_partial_list(const struct stage_opts *opts, int dirfd,
    stage_partial_fn *fn, void *arg);

/*
 * Abort every staging this process still has open, without logging or
 * allocating: for fatal paths and signal handlers (async-signal-safe).
 * Returns the number aborted.
 */
int stage_abort_all(void);

/* Number of stagings currently open (tests and leak checks). */
int stage_count(void);

/*
 * Remove stale named temporaries in `dir` left by a process that died: our
 * name pattern, and not locked by a live staging.  Root removes them
 * whoever owns them (the cron job for shared 1733 staging directories);
 * others only their own.  With
 * STAGE_SWEEP_TREE every directory below `dir` on the same filesystem is
 * swept too (destination directories, where temporaries are made on
 * filesystems without O_TMPFILE); symbolic links are never followed.
 * `removed` (may be NULL) gets the count.
 */
#define STAGE_SWEEP_TREE	0x1
int stage_sweep(const char *dir, int flags, unsigned int *removed);
/* The same, and with `lim` partial uploads that expired are removed from
 * the stores found (root: everybody's, others: their own); *expired
 * counts them. */
int stage_sweep_partial(const char *dir, int flags,
    const struct partial_limits *lim, unsigned int *removed,
    unsigned int *expired);

/* Does `name` look like one of our named temporaries? (watchers, sweep) */
int stage_is_temp_name(const char *name);

/* Expand %u (user), %d (home), %U (uid), %% in a directory template. */
int stage_expand_dir(const char *tmpl, const char *user, const char *home,
    uid_t uid, char **out);

/* Parse "full", "data", "none" (case-insensitive). */
int stage_parse_sync(const char *s, enum stage_sync *out);
const char *stage_sync_name(enum stage_sync s);
const char *stage_method_name(enum stage_method m);

#endif /* ATOMIC_UPLOAD_H */
