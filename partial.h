/*
 * The store of partial uploads (DESIGN.md 12): the staged data of an
 * upload that lost its connection, kept so that a later session of the
 * same user can continue it, and a small record of what the destination
 * was when the upload began.
 *
 * A store is a directory ".au-partial-UID" (0700, the user's) inside a
 * directory on the destination's filesystem: the staging directory when
 * there is one, else the destination directory.  In it, per destination
 * (its directory's device and inode, and its name):
 *
 *	r.KEY	the record: the destination's state when the upload began
 *		(absent, or the file it replaces: device, inode, size, times)
 *		and whether it truncated that file; locked (flock) while a
 *		replacement is in flight, its mtime the time it was kept
 *	d.KEY	the partial data: the staged file itself, with the owner,
 *		mode and extended attributes it would have been published
 *		with
 *
 * The record decides: data without a record is not offered to anybody,
 * and a record whose destination changed since (somebody else uploaded
 * it, removed it, touched it) is stale, and goes with its data.
 *
 * This module knows names and records, nothing of staging; its callers
 * (atomic-upload.c) move the staged files.  Every function returns 0 or
 * a positive errno value.
 */
#ifndef PARTIAL_H
#define PARTIAL_H

#include <sys/types.h>
#include <sys/stat.h>
#include <limits.h>
#include <time.h>

#ifndef NAME_MAX
# define NAME_MAX 255
#endif

#define PARTIAL_STORE_PREFIX	".au-partial-"

/* How long partial data and records are kept, and how much data. */
struct partial_limits {
	time_t age;		/* partial data, seconds after it was kept */
	time_t record_age;	/* records of interrupted replacements */
	off_t max_bytes;	/* per user and store; 0: no cap */
};

#define PARTIAL_AGE_DEFAULT	(24 * 60 * 60)
/* A record outlives its data this many times over: a resume after the
 * data expired must still be refused. */
#define PARTIAL_RECORD_FACTOR	7

/* What was at the destination's name when the upload began. */
struct partial_state {
	int exists;
	int replacing;		/* the upload truncated that file */
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	struct timespec ctime;
};

/* One destination: directory identity and name, and the store key. */
struct partial_key {
	dev_t dirdev;
	ino_t dirino;
	char name[NAME_MAX + 1];
	char file[NAME_MAX - 1];	/* "d." or "r." + this, in the store */
};

/* The answer of partial_find(). */
enum partial_kind {
	PARTIAL_NONE = 0,	/* nothing for this name (stale ones removed) */
	PARTIAL_DATA,		/* partial data to continue from */
	PARTIAL_REPLACED,	/* an interrupted replacement whose data is
				 * gone: the old file must not be continued */
	PARTIAL_BUSY		/* a replacement of it in flight elsewhere */
};

struct partial_found {
	enum partial_kind kind;
	struct partial_state state;	/* from the record */
	struct stat st;			/* PARTIAL_DATA: the data file */
};

int partial_key_make(dev_t dirdev, ino_t dirino, const char *name,
    struct partial_key *k);

/* The state of `name` in directory `dirfd` now (final symlinks not
 * followed: the caller passes the name they lead to). */
int partial_state_now(int dirfd, const char *name, struct partial_state *ps);
void partial_state_of_stat(const struct stat *st, struct partial_state *ps);
int partial_state_same(const struct partial_state *a,
    const struct partial_state *b);

/*
 * The caller's store in directory `basefd`: ENOENT if there is none
 * (with `create` 0).  A store that is not a directory of ours, or that
 * others may enter, is refused (EPERM) and never used.
 */
int partial_store_open(int basefd, int create, int *storefdp);
/* Remove the store if it is empty (after the last partial went). */
void partial_store_tidy(int basefd, int storefd);
/* Is `name` a store's name?  *uid gets its owner's uid. */
int partial_is_store_name(const char *name, uid_t *uid);

/* Look a destination up, `now` being its state now: see enum
 * partial_kind.  Expired and stale entries are removed on the way. */
int partial_find(int storefd, const struct partial_key *k,
    const struct partial_state *now, const struct partial_limits *lim,
    struct partial_found *out);

/*
 * Write the record for `k` (replacing any that nobody holds).  With
 * `hold`, *fdp gets its descriptor, locked: the replacement is in flight
 * until partial_record_release().  EBUSY if another process holds it.
 */
int partial_record_put(int storefd, const struct partial_key *k,
    const struct partial_state *ps, int hold, int *fdp);
/* Hold the existing record of `k` (a resume of its data is in flight):
 * EBUSY if somebody else holds it. */
int partial_record_hold(int storefd, const struct partial_key *k, int *fdp);
/* An in-flight record: the upload was committed (`done`: remove the
 * record) or aborted (keep it, its age counting from now). */
void partial_record_release(int storefd, const struct partial_key *k,
    int recfd, int done);

/* Remove the data (and with `record` the record, unless it is held). */
void partial_forget(int storefd, const struct partial_key *k, int record);

/* Open the data for a reader (O_RDONLY) or to continue it (O_RDWR). */
int partial_data_open(int storefd, const struct partial_key *k, int oflags,
    int *fdp);
/* The data's name in the store, for renaming it out or in. */
void partial_data_name(const struct partial_key *k, char *out, size_t len);

/*
 * Make room for `bytes` more under the cap: the oldest data of the store
 * goes first.  ENOSPC if `bytes` alone exceeds it.
 */
int partial_make_room(int storefd, off_t bytes,
    const struct partial_limits *lim);

/* Every destination in directory (dirdev, dirino) the store has a record
 * for: `fn` gets its name (partial_find() says what there is). */
typedef int partial_list_fn(void *arg, const char *name);
int partial_list(int storefd, dev_t dirdev, ino_t dirino, partial_list_fn *fn,
    void *arg);

/* Remove what expired, and leftovers (data without a record, temporary
 * records); *removed counts the partial data files removed. */
int partial_expire(int storefd, const struct partial_limits *lim,
    unsigned int *removed);

/* "24h", "90m", "3600", "2d": seconds. */
int partial_parse_age(const char *s, time_t *out);
/* "10G", "512M", "1048576": bytes. */
int partial_parse_size(const char *s, off_t *out);

#endif /* PARTIAL_H */
