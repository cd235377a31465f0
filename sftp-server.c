/*
 * SFTP protocol version 3 server with OpenSSH's extensions: session state,
 * table-driven dispatch and the request handlers.  See sftp-server.h.
 *
 * Requests are parsed in place from the input buffer through the checked
 * reader of sftp-codec.h; replies are built in the output buffer in arrival
 * order.  A request that cannot be parsed is answered SSH2_FX_BAD_MESSAGE
 * (when its id could be read) and the rest of its packet skipped: only an
 * oversized packet, which loses the framing, ends the session.
 *
 * Files opened for writing are staged through atomic-upload.h and published
 * at CLOSE; this file never names, renames or unlinks a temporary itself.
 */
#include "includes.h"

#include <sys/types.h>
#include <sys/stat.h>
#ifdef HAVE_SYS_STATVFS_H
# include <sys/statvfs.h>
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "atomic-upload.h"
#include "digest.h"
#include "hook.h"
#include "log.h"
#include "misc.h"
#include "sftp-codec.h"
#include "sftp-server.h"

#ifndef O_CLOEXEC
# define O_CLOEXEC 0
#endif
#ifndef PATH_MAX
# define PATH_MAX 4096
#endif

/* A packet may exceed the advertised maximum by a little (clients that
 * send a full 256 KiB of data plus the WRITE header); more loses framing. */
#define MAX_MSG_ACCEPT		(SFTP_MAX_MSG + 1024)
/* READ and WRITE lengths we advertise; longer READs are shortened. */
#define MAX_IO_LEN		(SFTP_MAX_MSG - 1024)
#define IN_BUF_MAX		(1024 * 1024)
/* Stop answering requests while this much output waits to be sent: a
 * client that sends many small READs and never reads replies must not
 * make us queue without bound. */
#define OUT_HIGH_WATER		(1024 * 1024)
#define OUT_BUF_MAX		(OUT_HIGH_WATER + 4 * SFTP_MAX_MSG)
#define READDIR_BATCH		100
#define COPY_CHUNK		(64 * 1024)
#define SYMLINK_MAX_FOLLOW	40
#define NAME_CACHE_SIZE		64
/* Sizes of files the client asked about lately, for resumes. */
#define LOOKS			16
/* An mtime older than this shows the year in long names, as ls does. */
#define SIX_MONTHS		(365 * 24 * 60 * 60 / 2)

/*
 * errno values for outcomes no system call reported, chosen for the status
 * they map to: an invalid handle is FAILURE for most requests and
 * NO_SUCH_FILE for a few, as in the stock server.
 */
#define ERR_FAILURE		EIO
#define ERR_NO_SUCH_FILE	ENOENT

enum handle_kind {
	HANDLE_UNUSED = 0,
	HANDLE_FILE,
	HANDLE_DIR
};

struct handle {
	enum handle_kind kind;
	char *path;			/* as the client named it */
	int fd;				/* plain file, -1 when staged */
	DIR *dir;
	struct staged_file *sf;		/* opened for writing: staged */
	struct upload *up;		/* ... the upload it shares */
	int can_read;
	int can_write;
	int append;
	int dir_listed_uploads;		/* HANDLE_DIR: uploads listed */
	struct dir_partial *partials;	/* HANDLE_DIR: the user's kept
					 * partial uploads in it */
	size_t npartials;
	uint64_t bytes_read;
	uint64_t bytes_written;
	unsigned int next_free;
};

/*
 * An upload in flight: one staging, shared by every handle of this
 * session that opened its destination for writing, and published at the
 * last CLOSE (DESIGN.md 11).  The session sees its own upload: STAT,
 * OPEN, listings, SETSTAT, RENAME and REMOVE of the name act on it, not on
 * the file it will replace.  Other sessions see the previous file or
 * nothing until the commit.
 */
struct upload {
	struct staged_file *sf;
	unsigned int refs;		/* handles sharing it */
	int removed;			/* its name was removed: publish
					 * nothing */
	/* A write failed (its errno): the data is incomplete and must
	 * never be published, whatever CLOSE says. */
	int write_error;
	struct upload *next;
};

/* A kept partial upload in a listed directory (DESIGN.md 12). */
struct dir_partial {
	char *name;
	struct stat st;
	int listed;
};

/* A file's size as this session showed it to the client (-1: absent). */
struct look {
	char *path;
	off_t size;
};

struct name_cache_entry {
	int valid;
	int found;
	uint32_t id;
	char name[64];
};

struct sftp_session {
	char *user;
	char *home;
	char *client_addr;
	char *tmpdir;
	struct stage_opts stage;
	int readonly;
	int allowlist;		/* -p was given */
	unsigned int max_handles;
	unsigned long long check_file_max;
	int initialised;
	struct hook *hook;		/* -H, or NULL */

	/* Why each request type is refused (enum refusal), by table index. */
	unsigned char *refused;

	struct sftp_buf in;
	struct sftp_buf out;

	struct handle *handles;
	unsigned int nslots;		/* allocated entries */
	unsigned int nopen;		/* in use */
	struct upload *uploads;		/* in flight */
	unsigned int free_head;	/* free slots, LIFO; nslots: none */

	u_char *copybuf;
	struct look looks[LOOKS];
	unsigned int look_next;
	struct name_cache_entry users[NAME_CACHE_SIZE];
	struct name_cache_entry groups[NAME_CACHE_SIZE];

	/* Request arguments: one path or two, never longer than PATH_MAX. */
	char path1[PATH_MAX];
	char path2[PATH_MAX];
	char scratch[PATH_MAX];
};

enum refusal {
	REFUSE_NONE = 0,
	REFUSE_DENYLIST,
	REFUSE_NOT_ALLOWLISTED,
	REFUSE_READONLY
};

typedef int request_handler(struct sftp_session *, uint32_t,
    struct sftp_buf *);

struct request_type {
	const char *name;		/* for -p, -P and -Q */
	const char *ext_name;		/* extension name, or NULL */
	const char *ext_version;
	u_int type;			/* packet type of a core request */
	int does_write;			/* refused by -R */
	request_handler *handler;
};

static request_handler process_open, process_close, process_read,
    process_write, process_lstat, process_fstat, process_setstat,
    process_fsetstat, process_opendir, process_readdir, process_remove,
    process_mkdir, process_rmdir, process_realpath, process_stat,
    process_rename, process_readlink, process_symlink,
    process_posix_rename, process_statvfs, process_fstatvfs,
    process_hardlink, process_fsync, process_lsetstat, process_limits,
    process_expand_path, process_copy_data, process_home_directory,
    process_users_groups_by_id, process_check_file_name,
    process_check_file_handle;

/*
 * Every request, in the order stock lists them for -Q and advertises the
 * extensions.  A new extension is one row.  OPEN is not marked does_write:
 * -R refuses only the opens that write (checked in process_open).
 */
static const struct request_type request_types[] = {
	{ "open", NULL, NULL, SSH2_FXP_OPEN, 0, process_open },
	{ "close", NULL, NULL, SSH2_FXP_CLOSE, 0, process_close },
	{ "read", NULL, NULL, SSH2_FXP_READ, 0, process_read },
	{ "write", NULL, NULL, SSH2_FXP_WRITE, 1, process_write },
	{ "lstat", NULL, NULL, SSH2_FXP_LSTAT, 0, process_lstat },
	{ "fstat", NULL, NULL, SSH2_FXP_FSTAT, 0, process_fstat },
	{ "setstat", NULL, NULL, SSH2_FXP_SETSTAT, 1, process_setstat },
	{ "fsetstat", NULL, NULL, SSH2_FXP_FSETSTAT, 1, process_fsetstat },
	{ "opendir", NULL, NULL, SSH2_FXP_OPENDIR, 0, process_opendir },
	{ "readdir", NULL, NULL, SSH2_FXP_READDIR, 0, process_readdir },
	{ "remove", NULL, NULL, SSH2_FXP_REMOVE, 1, process_remove },
	{ "mkdir", NULL, NULL, SSH2_FXP_MKDIR, 1, process_mkdir },
	{ "rmdir", NULL, NULL, SSH2_FXP_RMDIR, 1, process_rmdir },
	{ "realpath", NULL, NULL, SSH2_FXP_REALPATH, 0, process_realpath },
	{ "stat", NULL, NULL, SSH2_FXP_STAT, 0, process_stat },
	{ "rename", NULL, NULL, SSH2_FXP_RENAME, 1, process_rename },
	{ "readlink", NULL, NULL, SSH2_FXP_READLINK, 0, process_readlink },
	{ "symlink", NULL, NULL, SSH2_FXP_SYMLINK, 1, process_symlink },
	{ "posix-rename", "posix-rename@openssh.com", "1", 0, 1,
	    process_posix_rename },
	{ "statvfs", "statvfs@openssh.com", "2", 0, 0, process_statvfs },
	{ "fstatvfs", "fstatvfs@openssh.com", "2", 0, 0, process_fstatvfs },
	{ "hardlink", "hardlink@openssh.com", "1", 0, 1, process_hardlink },
	{ "fsync", "fsync@openssh.com", "1", 0, 1, process_fsync },
	{ "lsetstat", "lsetstat@openssh.com", "1", 0, 1, process_lsetstat },
	{ "limits", "limits@openssh.com", "1", 0, 0, process_limits },
	{ "expand-path", "expand-path@openssh.com", "1", 0, 0,
	    process_expand_path },
	{ "copy-data", "copy-data", "1", 0, 1, process_copy_data },
	{ "home-directory", "home-directory", "1", 0, 0,
	    process_home_directory },
	{ "users-groups-by-id", "users-groups-by-id@openssh.com", "1", 0, 0,
	    process_users_groups_by_id },
	/* Ours: draft-ietf-secsh-filexfer-extensions' check-file, advertised
	 * as one "check-file" pair listing the algorithms (process_init);
	 * paramiko sends the handle form under the bare name. */
	{ "check-file-name", "check-file-name", NULL, 0, 0,
	    process_check_file_name },
	{ "check-file-handle", "check-file-handle", NULL, 0, 0,
	    process_check_file_handle },
	{ "check-file", "check-file", NULL, 0, 0,
	    process_check_file_handle },
};

#define NREQUEST_TYPES	(sizeof(request_types) / sizeof(request_types[0]))

const char *
sftp_request_name(size_t i)
{
	return i < NREQUEST_TYPES ? request_types[i].name : NULL;
}

/* Status replies */

static const char *
status_text(uint32_t code)
{
	static const char *const texts[] = {
		"Success",
		"End of file",
		"No such file",
		"Permission denied",
		"Failure",
		"Bad message",
		"No connection",
		"Connection lost",
		"Operation unsupported",
	};

	return code < sizeof(texts) / sizeof(texts[0]) ? texts[code] :
	    "Unknown error";
}

/* The stock server's mapping, plus EBADMSG for requests we could not
 * parse (stock exits on those instead). */
static uint32_t
errno_to_status(int e)
{
	switch (e) {
	case 0:
		return SSH2_FX_OK;
	case ENOENT:
	case ENOTDIR:
	case EBADF:
	case ELOOP:
		return SSH2_FX_NO_SUCH_FILE;
	case EPERM:
	case EACCES:
	case EFAULT:
		return SSH2_FX_PERMISSION_DENIED;
	case ENAMETOOLONG:
	case EINVAL:
	case EBADMSG:
		return SSH2_FX_BAD_MESSAGE;
	case ENOSYS:
		return SSH2_FX_OP_UNSUPPORTED;
	default:
		return SSH2_FX_FAILURE;
	}
}

/* Reply framing: length, type, id ... then the length filled in. */
static int
reply_begin(struct sftp_session *s, u_char type, uint32_t id, size_t *mark)
{
	int r;

	if ((r = sftp_put_mark(&s->out, mark)) != 0)
		return r;
	if ((r = sftp_put_u8(&s->out, type)) != 0 ||
	    (r = sftp_put_u32(&s->out, id)) != 0) {
		sftp_put_mark_cancel(&s->out, *mark);
		return r;
	}
	return 0;
}

static int send_status_msg(struct sftp_session *, uint32_t, uint32_t,
    const char *);

/*
 * Finish a reply.  One that would exceed the packet size clients accept
 * (a huge users-groups-by-id answer) is replaced by FAILURE.
 */
static int
reply_end(struct sftp_session *s, uint32_t id, size_t mark)
{
	int r;

	if ((r = sftp_put_mark_end(&s->out, mark, SFTP_MAX_MSG)) == EMSGSIZE) {
		error("reply to request %u too long: sent failure instead", id);
		return send_status_msg(s, id, SSH2_FX_FAILURE, NULL);
	}
	return r;
}

static int
send_status_msg(struct sftp_session *s, uint32_t id, uint32_t code,
    const char *msg)
{
	size_t mark;
	int r;

	debug3("request %u: sent status %u", id, code);
	if (log_get_level() >= LOG_LEVEL_DEBUG1 ||
	    (code != SSH2_FX_OK && code != SSH2_FX_EOF))
		logit("sent status %s", status_text(code));
	if ((r = reply_begin(s, SSH2_FXP_STATUS, id, &mark)) != 0)
		return r;
	if ((r = sftp_put_u32(&s->out, code)) != 0 ||
	    (r = sftp_put_cstring(&s->out,
	    msg != NULL ? msg : status_text(code))) != 0 ||
	    (r = sftp_put_cstring(&s->out, "")) != 0) {
		sftp_put_mark_cancel(&s->out, mark);
		return r;
	}
	return reply_end(s, id, mark);
}

static int
send_status(struct sftp_session *s, uint32_t id, int e)
{
	return send_status_msg(s, id, errno_to_status(e), NULL);
}

static int
send_handle(struct sftp_session *s, uint32_t id, unsigned int idx)
{
	u_char h[4];
	size_t mark;
	int r;

	debug("request %u: sent handle handle %u", id, idx);
	h[0] = (u_char)(idx >> 24);
	h[1] = (u_char)(idx >> 16);
	h[2] = (u_char)(idx >> 8);
	h[3] = (u_char)idx;
	if ((r = reply_begin(s, SSH2_FXP_HANDLE, id, &mark)) != 0)
		return r;
	if ((r = sftp_put_string(&s->out, h, sizeof(h))) != 0) {
		sftp_put_mark_cancel(&s->out, mark);
		return r;
	}
	return reply_end(s, id, mark);
}

static int
send_attrs(struct sftp_session *s, uint32_t id, const struct stat *st)
{
	struct sftp_attrs a;
	size_t mark;
	int r;

	sftp_attrs_from_stat(&a, st);
	debug("request %u: sent attrib have 0x%x", id, (u_int)a.flags);
	if ((r = reply_begin(s, SSH2_FXP_ATTRS, id, &mark)) != 0)
		return r;
	if ((r = sftp_put_attrs(&s->out, &a)) != 0) {
		sftp_put_mark_cancel(&s->out, mark);
		return r;
	}
	return reply_end(s, id, mark);
}

/* A NAME reply with one entry whose long name is the name itself and
 * no attributes, as REALPATH, READLINK and their kin answer. */
static int
send_one_name(struct sftp_session *s, uint32_t id, const char *name)
{
	struct sftp_attrs a;
	size_t mark;
	int r;

	debug("request %u: sent names count 1", id);
	sftp_attrs_clear(&a);
	if ((r = reply_begin(s, SSH2_FXP_NAME, id, &mark)) != 0)
		return r;
	if ((r = sftp_put_u32(&s->out, 1)) != 0 ||
	    (r = sftp_put_cstring(&s->out, name)) != 0 ||
	    (r = sftp_put_cstring(&s->out, name)) != 0 ||
	    (r = sftp_put_attrs(&s->out, &a)) != 0) {
		sftp_put_mark_cancel(&s->out, mark);
		return r;
	}
	return reply_end(s, id, mark);
}

/* Handles */

static int
handle_alloc(struct sftp_session *s, unsigned int *idxp)
{
	struct handle *n;
	unsigned int i, nslots;

	if (s->max_handles != 0 && s->nopen >= s->max_handles)
		return EMFILE;
	if (s->free_head == s->nslots) {
		nslots = s->nslots == 0 ? 16 : s->nslots * 2;
		/* Far above any descriptor limit: a bound for the
		 * arithmetic, not a policy (max_handles is that). */
		if (nslots > (1U << 24))
			return EMFILE;
		if ((n = realloc(s->handles, (size_t)nslots * sizeof(*n))) ==
		    NULL)
			return ENOMEM;
		/* Only an empty free list grows, so no entry still holds
		 * the old "none" (the old slot count). */
		memset(n + s->nslots, 0, (nslots - s->nslots) * sizeof(*n));
		for (i = s->nslots; i < nslots; i++)
			n[i].next_free = i + 1;
		s->free_head = s->nslots;
		s->handles = n;
		s->nslots = nslots;
	}
	*idxp = s->free_head;
	s->free_head = s->handles[*idxp].next_free;
	memset(&s->handles[*idxp], 0, sizeof(s->handles[*idxp]));
	s->handles[*idxp].fd = -1;
	s->nopen++;
	return 0;
}

static void
handle_release(struct sftp_session *s, unsigned int idx)
{
	struct handle *h = &s->handles[idx];
	size_t i;

	free(h->path);
	for (i = 0; i < h->npartials; i++)
		free(h->partials[i].name);
	free(h->partials);
	memset(h, 0, sizeof(*h));
	h->fd = -1;
	h->next_free = s->free_head;
	s->free_head = idx;
	s->nopen--;
}

/*
 * Read a handle string and find it.  EBADMSG if the request is short;
 * ENOENT if the handle is not one of ours of the wanted kind (callers turn
 * that into the status stock gives for their request).
 */
static int
get_handle(struct sftp_session *s, struct sftp_buf *msg,
    enum handle_kind kind, unsigned int *idxp, struct handle **hp)
{
	const u_char *p;
	size_t len;
	uint32_t idx;
	int r;

	*hp = NULL;
	if ((r = sftp_get_string(msg, &p, &len)) != 0)
		return r;
	if (len != 4)
		return ENOENT;
	idx = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | (uint32_t)p[3];
	if (idx >= s->nslots || s->handles[idx].kind == HANDLE_UNUSED ||
	    (kind != HANDLE_UNUSED && s->handles[idx].kind != kind))
		return ENOENT;
	if (idxp != NULL)
		*idxp = idx;
	*hp = &s->handles[idx];
	return 0;
}

static int
handle_fd(const struct handle *h)
{
	return h->sf != NULL ? stage_fd(h->sf) : h->fd;
}

/*
 * Split a path into its parent directory's identity and its last
 * component.  ENOENT when there is no usable last component ("dir/", "..").
 */
static int
dest_identity(const char *path, char *buf, size_t buflen, dev_t *dev,
    ino_t *ino, const char **base)
{
	struct stat st;
	int r;

	*dev = 0;
	*ino = 0;
	if ((r = path_split(path, buf, buflen, base)) != 0)
		return r == EISDIR ? ENOENT : r;
	if (stat(buf, &st) != 0)
		return errno;
	*dev = st.st_dev;
	*ino = st.st_ino;
	return 0;
}

/* Logging helpers */

static void
log_set_lines(const char *path, const struct sftp_attrs *a)
{
	char tbuf[64];
	struct tm *tm;
	time_t t;

	if (a->flags & SSH2_FILEXFER_ATTR_SIZE)
		logit("set \"%s\" size %llu", path,
		    (unsigned long long)a->size);
	if (a->flags & SSH2_FILEXFER_ATTR_PERMISSIONS)
		logit("set \"%s\" mode %04o", path, (u_int)(a->perm & 07777));
	if (a->flags & SSH2_FILEXFER_ATTR_ACMODTIME) {
		t = (time_t)a->mtime;
		tm = localtime(&t);
		if (tm == NULL ||
		    strftime(tbuf, sizeof(tbuf), "%Y%m%d-%H:%M:%S", tm) == 0)
			snprintf(tbuf, sizeof(tbuf), "%lu",
			    (unsigned long)a->mtime);
		logit("set \"%s\" modtime %s", path, tbuf);
	}
	if (a->flags & SSH2_FILEXFER_ATTR_UIDGID)
		logit("set \"%s\" owner %lu group %lu", path,
		    (unsigned long)a->uid, (unsigned long)a->gid);
}

static void
open_flags_string(uint32_t pflags, char *buf, size_t len)
{
	static const struct {
		uint32_t flag;
		const char *name;
	} names[] = {
		{ SSH2_FXF_READ, "READ" },
		{ SSH2_FXF_WRITE, "WRITE" },
		{ SSH2_FXF_APPEND, "APPEND" },
		{ SSH2_FXF_CREAT, "CREATE" },
		{ SSH2_FXF_TRUNC, "TRUNCATE" },
		{ SSH2_FXF_EXCL, "EXCL" },
	};
	size_t i, used = 0;
	int n;

	buf[0] = '\0';
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!(pflags & names[i].flag))
			continue;
		n = snprintf(buf + used, len - used, "%s%s",
		    used == 0 ? "" : ",", names[i].name);
		if (n < 0 || (size_t)n >= len - used)
			break;
		used += (size_t)n;
	}
}

/* Staged uploads */

static const char *
staged_failure_text(const struct stage_report *rep, char *buf, size_t len)
{
	if (rep->reason[0] == '\0')
		return NULL;
	snprintf(buf, len, "Commit failed: %s", rep->reason);
	return buf;
}

/* Uploads in flight */

/* The one log line per commit or abort, and the hook's event. */
static void
upload_report(struct sftp_session *s, const struct stage_report *rep,
    int committed)
{
	log_stage(rep, committed);
	if (rep->partial_kept >= 0)
		logit("partial \"%s\" kept: %lld bytes, resumable for %lld s",
		    rep->path, (long long)rep->partial_kept,
		    (long long)s->stage.partial.age);
	else if (rep->partial_note[0] != '\0')
		logit("partial \"%s\" not kept: %s", rep->path,
		    rep->partial_note);
	if (s->hook != NULL)
		hook_upload(s->hook, rep, committed);
}

/* The session's upload whose destination is directory (dev, ino), name
 * `name`; NULL if none.  A removed one has no name any more. */
static struct upload *
upload_at(const struct sftp_session *s, dev_t dev, ino_t ino,
    const char *name)
{
	struct upload *up;
	const char *uname;
	dev_t udev;
	ino_t uino;

	for (up = s->uploads; up != NULL; up = up->next) {
		if (up->removed || stage_method(up->sf) == STAGE_DIRECT)
			continue;
		if (stage_dest(up->sf, &udev, &uino, &uname) == 0 &&
		    udev == dev && uino == ino && strcmp(uname, name) == 0)
			return up;
	}
	return NULL;
}

/* The session's upload that `path` names, or NULL. */
static struct upload *
upload_find(const struct sftp_session *s, const char *path)
{
	char dir[PATH_MAX];
	const char *base;
	dev_t dev;
	ino_t ino;

	if (s->uploads == NULL ||
	    dest_identity(path, dir, sizeof(dir), &dev, &ino, &base) != 0)
		return NULL;
	return upload_at(s, dev, ino, base);
}

static int
upload_new(struct sftp_session *s, struct staged_file *sf,
    struct upload **upp)
{
	struct upload *up;

	if ((up = calloc(1, sizeof(*up))) == NULL)
		return ENOMEM;
	up->sf = sf;
	up->refs = 1;
	up->next = s->uploads;
	s->uploads = up;
	*upp = up;
	return 0;
}

/*
 * A handle lets go of its upload.  The last one publishes it, or abandons
 * it: with `reason` (a forced close), when its name was removed, when a
 * write failed.  Returns 0 or the errno for the CLOSE's status, with a
 * message in `text` for a failed commit (*msgp).
 */
static int
upload_drop(struct sftp_session *s, struct handle *h, const char *reason,
    int keep, char *text, size_t textlen, const char **msgp)
{
	struct upload *up = h->up, **pp;
	struct stage_report rep;
	int r = 0;

	h->up = NULL;
	h->sf = NULL;
	if (up == NULL || --up->refs > 0)
		return 0;
	for (pp = &s->uploads; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == up) {
			*pp = up->next;
			break;
		}
	}
	if (reason != NULL) {
		if (keep && !up->removed && up->write_error == 0)
			stage_interrupt(up->sf, reason, &rep);
		else
			stage_abort(up->sf, reason, &rep);
		upload_report(s, &rep, 0);
	} else if (up->removed) {
		/* As stock's file, unlinked while open: gone at close. */
		stage_abort(up->sf, "its name was removed before the close",
		    &rep);
		upload_report(s, &rep, 0);
	} else if (up->write_error != 0) {
		snprintf(text, textlen, "write failed: %s",
		    strerror(up->write_error));
		stage_abort(up->sf, text, &rep);
		upload_report(s, &rep, 0);
		r = ERR_FAILURE;
	} else {
		r = stage_commit(up->sf, &rep);
		upload_report(s, &rep, r == 0);
		if (r != 0)
			*msgp = staged_failure_text(&rep, text, textlen);
	}
	free(up);
	return r;
}

/*
 * A second OPEN for writing of a name this session is uploading shares
 * the upload, as a second open(2) of stock's file shares its inode.  The
 * kernel decides the access against the staged file, which has the final
 * owner and mode.
 */
static int
upload_share(struct upload *up, int oflags)
{
	int r;

	if ((oflags & O_CREAT) && (oflags & O_EXCL))
		return EEXIST;
	if ((r = stage_access(up->sf, (oflags & O_ACCMODE) == O_RDWR ?
	    R_OK | W_OK : W_OK)) != 0)
		return r;
	if ((oflags & O_TRUNC) && (r = stage_ftruncate(up->sf, 0)) != 0)
		return r;
	up->refs++;
	return 0;
}

/* Close a handle at the end of the session, as stock's "forced close". */
static void
handle_force_close(struct sftp_session *s, unsigned int idx,
    const char *reason, int keep)
{
	struct handle *h = &s->handles[idx];
	const char *msg = NULL;
	char text[320];

	if (h->kind == HANDLE_DIR) {
		logit("forced closedir \"%s\"", h->path);
		closedir(h->dir);
	} else if (h->kind == HANDLE_FILE) {
		logit("forced close \"%s\" bytes read %llu written %llu",
		    h->path, (unsigned long long)h->bytes_read,
		    (unsigned long long)h->bytes_written);
		if (h->up != NULL)
			(void)upload_drop(s, h, reason, keep, text,
			    sizeof(text), &msg);
		else if (h->fd >= 0)
			close(h->fd);
	}
	handle_release(s, idx);
}

/* Session */

static int
name_in_list(const char *list, const char *name)
{
	size_t n = strlen(name);
	const char *p = list, *e;

	while (p != NULL && *p != '\0') {
		e = strchr(p, ',');
		if ((e == NULL ? strlen(p) : (size_t)(e - p)) == n &&
		    strncmp(p, name, n) == 0)
			return 1;
		p = e == NULL ? NULL : e + 1;
	}
	return 0;
}

static char *
strdup_or_null(const char *s, int *r)
{
	char *d;

	if (s == NULL)
		return NULL;
	if ((d = strdup(s)) == NULL)
		*r = ENOMEM;
	return d;
}

int
sftp_session_new(const struct sftp_server_opts *opts,
    struct sftp_session **sp)
{
	struct sftp_session *s;
	size_t i;
	int r = 0;

	*sp = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return ENOMEM;
	s->user = strdup_or_null(opts->user != NULL ? opts->user : "unknown",
	    &r);
	s->home = strdup_or_null(opts->home, &r);
	s->client_addr = strdup_or_null(opts->client_addr != NULL ?
	    opts->client_addr : "UNKNOWN", &r);
	s->stage = opts->stage;
	s->tmpdir = strdup_or_null(opts->stage.tmpdir, &r);
	s->stage.tmpdir = s->tmpdir;
	s->readonly = opts->readonly;
	s->allowlist = opts->allowed != NULL;
	s->max_handles = opts->max_handles;
	s->check_file_max = opts->check_file_max != 0 ?
	    opts->check_file_max : CHECK_FILE_MAX_DEFAULT;
	if ((s->refused = calloc(NREQUEST_TYPES, 1)) == NULL)
		r = ENOMEM;
	if (r != 0)
		goto out;
	if (opts->hook.program != NULL) {
		struct hook_opts ho = opts->hook;

		ho.protocol = "sftp";
		ho.user = s->user;
		ho.client_addr = s->client_addr;
		ho.sync = s->stage.sync;
		if ((r = hook_new(&ho, &s->hook)) != 0)
			goto out;
		/* The hook is told the absolute path it was published at. */
		s->stage.resolve_path = 1;
	}
	for (i = 0; i < NREQUEST_TYPES; i++) {
		if (opts->denied != NULL &&
		    name_in_list(opts->denied, request_types[i].name))
			s->refused[i] = REFUSE_DENYLIST;
		else if (opts->allowed != NULL &&
		    !name_in_list(opts->allowed, request_types[i].name))
			s->refused[i] = REFUSE_NOT_ALLOWLISTED;
		else if (s->readonly && request_types[i].does_write)
			s->refused[i] = REFUSE_READONLY;
	}
	sftp_buf_init(&s->in, IN_BUF_MAX);
	sftp_buf_init(&s->out, OUT_BUF_MAX);
	logit("session opened for local user %s from [%s]", s->user,
	    s->client_addr);
 out:
	if (r != 0) {
		free(s->user);
		free(s->home);
		free(s->client_addr);
		free(s->tmpdir);
		free(s->refused);
		free(s);
		return r;
	}
	*sp = s;
	return 0;
}

static void
session_end(struct sftp_session *s, const char *reason, int keep)
{
	unsigned int i;

	if (s == NULL)
		return;
	for (i = 0; i < s->nslots; i++) {
		if (s->handles[i].kind != HANDLE_UNUSED)
			handle_force_close(s, i,
			    reason != NULL ? reason : "connection lost", keep);
	}
	/* Hooks still queued run on after us; we do not wait for them. */
	hook_free(s->hook);
	logit("session closed for local user %s from [%s]", s->user,
	    s->client_addr);
	sftp_buf_free(&s->in);
	sftp_buf_free(&s->out);
	free(s->handles);
	free(s->copybuf);
	free(s->user);
	free(s->home);
	free(s->client_addr);
	free(s->tmpdir);
	free(s->refused);
	for (i = 0; i < LOOKS; i++)
		free(s->looks[i].path);
	free(s);
}

void
sftp_session_free(struct sftp_session *s, const char *reason)
{
	session_end(s, reason, 0);
}

void
sftp_session_lost(struct sftp_session *s, const char *reason)
{
	session_end(s, reason, 1);
}

int
sftp_session_background_pending(const struct sftp_session *s)
{
	const struct upload *up;

	for (up = s->uploads; up != NULL; up = up->next) {
		if (!up->removed && up->write_error == 0 &&
		    stage_digest_backlog(up->sf) > 0)
			return 1;
	}
	return 0;
}

void
sftp_session_background_run(struct sftp_session *s, size_t budget)
{
	struct upload *up;

	/* The first upload with a backlog gets the budget; the others get
	 * theirs at the next idle moment. */
	for (up = s->uploads; up != NULL; up = up->next) {
		if (!up->removed && up->write_error == 0 &&
		    stage_digest_backlog(up->sf) > 0) {
			(void)stage_digest_work(up->sf, budget);
			return;
		}
	}
}

unsigned int
sftp_session_handles(const struct sftp_session *s)
{
	return s->nopen;
}

/* Names of users and groups, cached: a directory listing asks for the
 * same few over and over. */
static const struct name_cache_entry *
lookup_name(struct sftp_session *s, int group, uint32_t id)
{
	struct name_cache_entry *e;
	struct passwd *pw;
	struct group *gr;
	const char *name = NULL;

	e = group ? &s->groups[id % NAME_CACHE_SIZE] :
	    &s->users[id % NAME_CACHE_SIZE];
	if (e->valid && e->id == id)
		return e;
	if (group) {
		if ((gr = name_getgrgid((gid_t)id)) != NULL)
			name = gr->gr_name;
	} else {
		if ((pw = name_getpwuid((uid_t)id)) != NULL)
			name = pw->pw_name;
	}
	e->valid = 1;
	e->id = id;
	e->found = name != NULL && strlen(name) < sizeof(e->name);
	if (e->found)
		snprintf(e->name, sizeof(e->name), "%s", name);
	else
		snprintf(e->name, sizeof(e->name), "%lu", (unsigned long)id);
	return e;
}

/* The "ls -l" line stock sends as a READDIR long name. */
static void
long_name(struct sftp_session *s, const char *name, const struct stat *st,
    time_t now, char *buf, size_t len)
{
	char mode[11], date[32];
	struct tm *tm;
	size_t dlen;
	mode_t m = st->st_mode;
	time_t t = st->st_mtime;

	switch (m & S_IFMT) {
	case S_IFDIR:
		mode[0] = 'd';
		break;
	case S_IFLNK:
		mode[0] = 'l';
		break;
	case S_IFCHR:
		mode[0] = 'c';
		break;
	case S_IFBLK:
		mode[0] = 'b';
		break;
	case S_IFIFO:
		mode[0] = 'p';
		break;
	case S_IFSOCK:
		mode[0] = 's';
		break;
	case S_IFREG:
		mode[0] = '-';
		break;
	default:
		mode[0] = '?';
		break;
	}
	mode[1] = (m & S_IRUSR) ? 'r' : '-';
	mode[2] = (m & S_IWUSR) ? 'w' : '-';
	mode[3] = (m & S_ISUID) ? ((m & S_IXUSR) ? 's' : 'S') :
	    ((m & S_IXUSR) ? 'x' : '-');
	mode[4] = (m & S_IRGRP) ? 'r' : '-';
	mode[5] = (m & S_IWGRP) ? 'w' : '-';
	mode[6] = (m & S_ISGID) ? ((m & S_IXGRP) ? 's' : 'S') :
	    ((m & S_IXGRP) ? 'x' : '-');
	mode[7] = (m & S_IROTH) ? 'r' : '-';
	mode[8] = (m & S_IWOTH) ? 'w' : '-';
	mode[9] = (m & S_ISVTX) ? ((m & S_IXOTH) ? 't' : 'T') :
	    ((m & S_IXOTH) ? 'x' : '-');
	mode[10] = '\0';

	/* Recent past: time of day; future or older: the year. */
	tm = localtime(&t);
	if (tm == NULL)
		dlen = 0;
	else if (t <= now && t > now - SIX_MONTHS)
		dlen = strftime(date, sizeof(date), "%b %e %H:%M", tm);
	else
		dlen = strftime(date, sizeof(date), "%b %e  %Y", tm);
	if (dlen == 0)
		snprintf(date, sizeof(date), "?");
	snprintf(buf, len, "%s  %3lu %-8s %-8s %8llu %s %s", mode,
	    (unsigned long)st->st_nlink,
	    lookup_name(s, 0, (uint32_t)st->st_uid)->name,
	    lookup_name(s, 1, (uint32_t)st->st_gid)->name,
	    (unsigned long long)st->st_size, date, name);
}

/*
 * Canonicalise a path the way stock's REALPATH does: relative to the
 * current directory, ".", ".." and symlinks resolved, a missing last
 * component accepted (but not with a trailing slash), anything else
 * missing an error.
 */
static int
canonical_path(const struct sftp_session *s, const char *path, char *out,
    size_t outlen)
{
	char todo[PATH_MAX], target[PATH_MAX], next[PATH_MAX];
	const char *p, *q;
	struct stat st;
	size_t complen, olen;
	ssize_t n;
	int links = 0, more;

	if (outlen < 2)
		return ENAMETOOLONG;
	if (*path == '\0')
		path = ".";
	if (snprintf(todo, sizeof(todo), "%s", path) >= (int)sizeof(todo))
		return ENAMETOOLONG;
	if (todo[0] == '/')
		snprintf(out, outlen, "/");
	else if (getcwd(out, outlen) == NULL)
		return errno;

	p = todo;
	for (;;) {
		while (*p == '/')
			p++;
		if (*p == '\0')
			break;
		q = strchr(p, '/');
		if (q == NULL)
			q = p + strlen(p);
		complen = (size_t)(q - p);
		more = *q == '/';
		if (complen == 1 && p[0] == '.') {
			p = q;
			continue;
		}
		if (complen == 2 && p[0] == '.' && p[1] == '.') {
			char *slash = strrchr(out, '/');

			if (slash == out)
				out[1] = '\0';
			else if (slash != NULL)
				*slash = '\0';
			p = q;
			continue;
		}
		olen = strlen(out);
		if (olen + 1 + complen + 1 > sizeof(next))
			return ENAMETOOLONG;
		snprintf(next, sizeof(next), "%s%s%.*s",
		    strcmp(out, "/") == 0 ? "" : out, "/", (int)complen, p);
		if (lstat(next, &st) != 0) {
			if (errno != ENOENT)
				return errno;
			if (upload_find(s, next) != NULL)
				st.st_mode = S_IFREG;	/* the session's own */
			else if (!more) {
				if (strlen(next) >= outlen)
					return ENAMETOOLONG;
				snprintf(out, outlen, "%s", next);
				break;
			} else
				return ENOENT;
		}
		if (S_ISLNK(st.st_mode)) {
			if (++links > SYMLINK_MAX_FOLLOW)
				return ELOOP;
			n = readlink(next, target, sizeof(target) - 1);
			if (n < 0)
				return errno;
			if (n == 0)
				return ENOENT;
			target[n] = '\0';
			/* Resolve the target in place of the link, then go on
			 * with what followed it. */
			if (snprintf(next, sizeof(next), "%s%s", target, q) >=
			    (int)sizeof(next))
				return ENAMETOOLONG;
			memcpy(todo, next, sizeof(todo));
			if (target[0] == '/')
				snprintf(out, outlen, "/");
			p = todo;
			continue;
		}
		if (strlen(next) >= outlen)
			return ENAMETOOLONG;
		snprintf(out, outlen, "%s", next);
		p = q;
	}
	return 0;
}

/* Attribute changes */

static int
set_times_path(const char *path, const struct sftp_attrs *a, int flags)
{
	struct timespec ts[2];

	ts[0].tv_sec = (time_t)a->atime;
	ts[0].tv_nsec = 0;
	ts[1].tv_sec = (time_t)a->mtime;
	ts[1].tv_nsec = 0;
	return utimensat(AT_FDCWD, path, ts, flags) == 0 ? 0 : errno;
}

/* fsetstat and SETSTAT of an upload in flight: stock's order (size, mode,
 * times, owner), every change tried, the last error reported. */
static int
set_attrs_file(const char *path, struct staged_file *sf, int fd,
    const struct sftp_attrs *a)
{
	struct timespec ts[2];
	int r = 0, e;

	log_set_lines(path, a);
	if (a->flags & SSH2_FILEXFER_ATTR_SIZE) {
		if (a->size > INT64_MAX)
			r = EINVAL;
		else if (sf != NULL) {
			if ((e = stage_ftruncate(sf, (off_t)a->size)) != 0)
				r = e;
		} else if (ftruncate(fd, (off_t)a->size) != 0)
			r = errno;
	}
	if (a->flags & SSH2_FILEXFER_ATTR_PERMISSIONS) {
		if (sf != NULL) {
			if ((e = stage_fchmod(sf, a->perm & 07777)) != 0)
				r = e;
		} else if (fchmod(fd, a->perm & 07777) != 0)
			r = errno;
	}
	if (a->flags & SSH2_FILEXFER_ATTR_ACMODTIME) {
		ts[0].tv_sec = (time_t)a->atime;
		ts[0].tv_nsec = 0;
		ts[1].tv_sec = (time_t)a->mtime;
		ts[1].tv_nsec = 0;
		if (sf != NULL) {
			if ((e = stage_futimens(sf, ts)) != 0)
				r = e;
		} else if (futimens(fd, ts) != 0)
			r = errno;
	}
	if (a->flags & SSH2_FILEXFER_ATTR_UIDGID) {
		if (sf != NULL) {
			if ((e = stage_fchown(sf, (uid_t)a->uid,
			    (gid_t)a->gid)) != 0)
				r = e;
		} else if (fchown(fd, (uid_t)a->uid, (gid_t)a->gid) != 0)
			r = errno;
	}
	return r;
}

/*
 * A SETSTAT naming a file this session is uploading must change the upload
 * (which replaces the file at CLOSE), or the change is lost.  Returns 1 if
 * it applied to at least one upload, with *rp its result.
 */
static int
set_attrs_staged(struct sftp_session *s, const char *path,
    const struct sftp_attrs *a, int *rp)
{
	struct upload *up;

	*rp = 0;
	if ((up = upload_find(s, path)) == NULL)
		return 0;
	debug("setstat \"%s\": applied to the upload in flight", path);
	*rp = set_attrs_file(path, up->sf, -1, a);
	return 1;
}

/* fsetstat: of the file, or of the upload the handle shares. */
static int
set_attrs_handle(struct handle *h, const struct sftp_attrs *a)
{
	return set_attrs_file(h->path, h->sf, h->fd, a);
}

static int
set_attrs_path(const char *path, const struct sftp_attrs *a, int nofollow)
{
	int r = 0, atflags = nofollow ? AT_SYMLINK_NOFOLLOW : 0;

	log_set_lines(path, a);
	if (a->flags & SSH2_FILEXFER_ATTR_SIZE) {
		if (a->size > INT64_MAX)
			r = EINVAL;
		else if (truncate(path, (off_t)a->size) != 0)
			r = errno;
	}
	if ((a->flags & SSH2_FILEXFER_ATTR_PERMISSIONS) &&
	    fchmodat(AT_FDCWD, path, a->perm & 07777, atflags) != 0)
		r = errno;
	if (a->flags & SSH2_FILEXFER_ATTR_ACMODTIME) {
		int e = set_times_path(path, a, atflags);

		if (e != 0)
			r = e;
	}
	if ((a->flags & SSH2_FILEXFER_ATTR_UIDGID) &&
	    fchownat(AT_FDCWD, path, (uid_t)a->uid, (gid_t)a->gid,
	    atflags) != 0)
		r = errno;
	return r;
}

/* Request handlers.  Each returns 0 once it has queued its reply, or an
 * errno value for the dispatcher to answer with a status. */

/*
 * An OPEN or WRITE that would continue the wrong file: the old file of a
 * replacement that was interrupted (its kept data gone, or not to be
 * continued in place) or that another session is making now, or kept
 * data from past its end (the client was shown another size).  Either
 * would publish the old file's start with the new file's end.
 */
static int
refuse_resume(struct sftp_session *s, uint32_t id, const char *path, int r)
{
	const char *why;

	if (r == STAGE_E_RESUME_GAP)
		why = "resume past the end of the kept partial data: look at "
		    "the file's size again";
	else if (r == STAGE_E_INFLIGHT)
		why = "another session of this user is replacing this file "
		    "now: continuing the old file would mix it with the new "
		    "one";
	else
		why = "an interrupted upload was replacing this file: "
		    "continuing the old file would mix it with the new one; "
		    "upload the file again from the start";
	logit("resume \"%s\" refused: %s", path, why);
	return send_status_msg(s, id, SSH2_FX_FAILURE, why);
}

static struct look *look_find(struct sftp_session *, const char *);
static void look_forget(struct sftp_session *, const char *);

/*
 * An OPEN continues kept data: only if the client was shown its size, or
 * was shown nothing of the file (a client that asks the size of the open
 * file, or remembers what it sent).  Else the data goes back to be kept,
 * and the client is told to look again; -1 when that reply is sent.
 */
static int
resume_as_shown(struct sftp_session *s, uint32_t id, struct staged_file *sf)
{
	struct stage_report rep;
	struct look *l = look_find(s, s->path1);
	off_t kept = stage_resumed(sf);
	static const char why[] = "the file changed since its size was "
	    "asked: ask again";

	if (l == NULL || l->size == kept) {
		logit("resume \"%s\" from %lld bytes kept by an interrupted "
		    "upload", s->path1, (long long)kept);
		return 0;
	}
	logit("resume \"%s\" refused: the client was shown %lld bytes, "
	    "%lld are kept; %s", s->path1, (long long)l->size,
	    (long long)kept, why);
	look_forget(s, s->path1);
	stage_interrupt(sf, "resume refused", &rep);
	if (rep.partial_kept < 0)
		upload_report(s, &rep, 0);
	(void)send_status_msg(s, id, SSH2_FX_FAILURE, why);
	return -1;
}

static int
process_open(struct sftp_session *s, uint32_t id, struct sftp_buf *msg)
{
	struct sftp_attrs a;
	struct staged_file *sf = NULL;
	struct upload *shared;
	struct handle *h;
	struct stat pst;
	char flagstr[64];
	const char *note;
	unsigned int idx;
	uint32_t pflags;
	mode_t mode;
	int r, oflags, fd = -1;

	if ((r = sftp_get_cstring(msg, s->path1, sizeof(s->path1))) != 0 ||
	    (r = sftp_get_u32(msg, &pflags)) != 0 ||
	    (r = sftp_get_attrs(msg, &a)) != 0)
		return r;
	mode = (a.flags & SSH2_FILEXFER_ATTR_PERMISSIONS) ?
	    (mode_t)a.perm : 0666;
	debug3("request %u: open flags %u", id, pflags);
	open_flags_string(pflags, flagstr, sizeof(flagstr));
	logit("open \"%s\" flags %s mode 0%o", s->path1, flagstr,
	    (u_int)mode);
	if (s->readonly && (pflags & (SSH2_FXF_WRITE | SSH2_FXF_CREAT |
	    SSH2_FXF_TRUNC))) {
		verbose("Refusing open request in read-only mode");
		return EPERM;
	}
	if ((pflags & SSH2_FXF_READ) && (pflags & SSH2_FXF_WRITE))
		oflags = O_RDWR;
	else if (pflags & SSH2_FXF_WRITE)
		oflags = O_WRONLY;
	else
		oflags = O_RDONLY;
	if (pflags & SSH2_FXF_APPEND)
		oflags |= O_APPEND;
	if (pflags & SSH2_FXF_CREAT)
		oflags |= O_CREAT;
	if (pflags & SSH2_FXF_TRUNC)
		oflags |= O_TRUNC;
	if (pflags & SSH2_FXF_EXCL)
		oflags |= O_EXCL;
	if (s->max_handles != 0 && s->nopen >= s->max_handles)
		return EMFILE;

	shared = upload_find(s, s->path1);
	if ((pflags & SSH2_FXF_WRITE) && shared != NULL) {
		if ((r = upload_share(shared, oflags)) != 0)
			return r;
		debug("open \"%s\": shares the upload in flight", s->path1);
	} else if (pflags & SSH2_FXF_WRITE) {
		shared = NULL;
		if ((r = stage_open(&s->stage, s->path1, oflags, mode,
		    &sf)) != 0) {
			if (r == STAGE_E_REPLACED || r == STAGE_E_INFLIGHT)
				return refuse_resume(s, id, s->path1, r);
			return r;
		}
		if ((note = stage_note(sf)) != NULL)
			logit("stage \"%s\": %s", s->path1, note);
		if (stage_resumed(sf) > 0 &&
		    (r = resume_as_shown(s, id, sf)) != 0) {
			sf = NULL;	/* kept again */
			return r == -1 ? 0 : r;
		}
		if ((a.flags & SSH2_FILEXFER_ATTR_SIZE) &&
		    a.size <= INT64_MAX)
			stage_expect_size(sf, (off_t)a.size);
	} else if (shared != NULL) {
		/* A reader of the session's own upload reads the upload. */
		if ((r = stage_reopen(shared->sf, O_RDONLY, &fd)) != 0)
			return r;
		shared = NULL;
	} else if (s->stage.resume && (!(oflags & O_TRUNC) ||
	    (oflags & O_EXCL)) &&
	    stage_partial_stat(&s->stage, s->path1, 1, &pst) == 0) {
		/* The user's kept partial upload is a file there for him:
		 * an exclusive creation fails, a reader (with O_CREAT too:
		 * nothing to create) reads it. */
		if ((oflags & O_CREAT) && (oflags & O_EXCL))
			return EEXIST;
		if ((r = stage_partial_open(&s->stage, s->path1,
		    oflags & O_ACCMODE, &fd)) != 0)
			return r;
	} else {
		/* Without write access nothing is uploaded: an O_TRUNC or
		 * O_CREAT alone leaves an empty file at once, as stock. */
		if ((fd = open(s->path1, oflags | O_NOCTTY | O_CLOEXEC,
		    mode)) < 0)
			return errno;
		/* A truncation empties the name, as stock's does its
		 * half-written file: the kept data goes. */
		if (s->stage.resume && (oflags & O_TRUNC))
			(void)stage_partial_forget(&s->stage, s->path1);
	}
	if ((r = handle_alloc(s, &idx)) != 0)
		goto out;
	h = &s->handles[idx];
	if ((h->path = strdup(s->path1)) == NULL) {
		handle_release(s, idx);
		r = ENOMEM;
		goto out;
	}
	if (sf != NULL && (r = upload_new(s, sf, &shared)) != 0) {
		handle_release(s, idx);
		goto out;
	}
	h->kind = HANDLE_FILE;
	h->fd = fd;
	h->up = shared;
	h->sf = shared != NULL ? shared->sf : NULL;
	h->can_read = (pflags & SSH2_FXF_READ) || !(pflags & SSH2_FXF_WRITE);
	h->can_write = (pflags & SSH2_FXF_WRITE) != 0;
	h->append = (pflags & SSH2_FXF_APPEND) != 0;
	fd = -1;
	sf = NULL;
	shared = NULL;
	r = send_handle(s, id, idx);
 out:
	if (shared != NULL)
		shared->refs--;		/* the share that was not made */
	if (sf != NULL) {
		struct stage_report rep;

		stage_abort(sf, "open failed", &rep);
		upload_report(s, &rep, 0);
	}
	if (fd >= 0)
		close(fd);
	return r;
}

static int
process_close(struct sftp_session *s, uint32_t id, struct sftp_buf *msg)
{
	struct handle *h;
	char text[320];
	const char *msgtext = NULL;
	unsigned int idx;
	int r;

	if ((r = get_handle(s, msg, HANDLE_UNUSED, &idx, &h)) != 0)
		return r == ENOENT ? ERR_NO_SUCH_FILE : r;
	debug3("request %u: close handle %u", id, idx);
	if (h->kind == HANDLE_DIR) {
		logit("closedir \"%s\"", h->path);
		r = closedir(h->dir) == 0 ? 0 : errno;
		handle_release(s, idx);
		return send_status(s, id, r);
	}
	if (h->up != NULL) {
		/* The commit point, at the last handle's close: publish,
		 * then answer. */
		logit("close \"%s\" bytes read %llu written %llu", h->path,
		    (unsigned long long)h->bytes_read,
		    (unsigned long long)h->bytes_written);
		r = upload_drop(s, h, NULL, 0, text, sizeof(text), &msgtext);
	} else {
		logit("close \"%s\" bytes read %llu written %llu", h->path,
		    (unsigned long long)h->bytes_read,
		    (unsigned long long)h->bytes_written);
		r = close(h->fd) == 0 ? 0 : errno;
		h->fd = -1;
	}
	handle_release(s, idx);
	return send_status_msg(s, id, errno_to_status(r), msgtext);
}

static int
process_read(struct sftp_session *s, uint32_t id, struct sftp_buf *msg)
{
	struct handle *h;
	uint64_t off;
	uint32_t len;
	size_t mark, smark;
	u_char *p;
	ssize_t n;
	int r;

	if ((r = get_handle(s, msg, HANDLE_FILE, NULL, &h)) != 0 &&
	    r != ENOENT)
		return r;
	if ((r = sftp_get_u64(msg, &off)) != 0 ||
	    (r = sftp_get_u32(msg, &len)) != 0)
		return r;
	if (h == NULL)
		return ERR_FAILURE;
	debug("request %u: read \"%s\" (handle %d) off %llu len %u", id,
	    h->path, (int)(h - s->handles), (unsigned long long)off, len);
	if (len > MAX_IO_LEN) {
		debug2("read change len %u to %u", len, MAX_IO_LEN);
		len = MAX_IO_LEN;
	}
	if (!h->can_read) {
		/* What read(2) on a write-only descriptor says. */
		error("read \"%s\": %s", h->path, strerror(EBADF));
		return EBADF;
	}
	if (off > INT64_MAX)
		return EINVAL;
	if ((r = reply_begin(s, SSH2_FXP_DATA, id, &mark)) != 0)
		return r;
	/* Read straight into the reply. */
	if ((r = sftp_put_mark(&s->out, &smark)) != 0 ||
	    (r = sftp_buf_reserve(&s->out, len, &p)) != 0) {
		sftp_put_mark_cancel(&s->out, mark);
		return r;
	}
	do {
		n = len == 0 ? 0 : pread(handle_fd(h), p, len, (off_t)off);
	} while (n < 0 && errno == EINTR);
	if (n < 0 || (n == 0 && len > 0)) {
		r = n < 0 ? errno : 0;
		sftp_put_mark_cancel(&s->out, mark);
		if (n < 0) {
			error("read \"%s\": %s", h->path, strerror(r));
			return r;
		}
		return send_status_msg(s, id, SSH2_FX_EOF, NULL);
	}
	if ((r = sftp_buf_unput(&s->out, len - (size_t)n)) != 0 ||
	    (r = sftp_put_mark_end(&s->out, smark, len)) != 0) {
		sftp_put_mark_cancel(&s->out, mark);
		return r;
	}
	h->bytes_read += (uint64_t)n;
	debug("request %u: sent data len %zd", id, n);
	return reply_end(s, id, mark);
}

/* Write all of buf: at `off`, or at the end for an append handle. */
static int
handle_write(struct handle *h, const u_char *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	ssize_t n;

	if (h->sf != NULL)
		return h->append ? stage_append(h->sf, buf, len) :
		    stage_write(h->sf, buf, len, (off_t)off);
	while (done < len) {
		if (h->append)
			n = write(h->fd, buf + done, len - done);
		else
			n = pwrite(h->fd, buf + done, len - done,
			    (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (n == 0)
			return EIO;
		done += (size_t)n;
	}
	return 0;
}

static int
process_write(struct sftp_session *s, uint32_t id, struct sftp_buf *msg)
{
	struct handle *h;
	const u_char *data;
	size_t len;
	uint64_t off;
	int r;

	if ((r = get_handle(s, msg, HANDLE_FILE, NULL, &h)) != 0 &&
	    r != ENOENT)
		return r;
	if ((r = sftp_get_u64(msg, &off)) != 0 ||
	    (r = sftp_get_string(msg, &data, &len)) != 0)
		return r;
	if (h == NULL)
		return ERR_FAILURE;
	debug("request %u: write \"%s\" (handle %d) off %llu len %zu", id,
	    h->path, (int)(h - s->handles), (unsigned long long)off, len);
	if (!h->can_write) {
		error("write \"%s\": %s", h->path, strerror(EBADF));
		return EBADF;
	}
	if (h->up != NULL && h->up->write_error != 0)
		return ERR_FAILURE;
	if (off > INT64_MAX || len > INT64_MAX - off) {
		/* Refused data is missing data: the upload may not commit. */
		if (h->up != NULL)
			h->up->write_error = EINVAL;
		return EINVAL;
	}
	/* The data goes from the input buffer to the file: no copy. */
	if ((r = handle_write(h, data, len, off)) != 0) {
		if (r == STAGE_E_RESUME_GAP || r == STAGE_E_REPLACED ||
		    r == STAGE_E_INFLIGHT) {
			/* Nothing was written: the staging fails its commit
			 * itself (and keeps kept data for a proper resume). */
			return refuse_resume(s, id, h->path, r);
		}
		error("write \"%s\": %s", h->path, strerror(r));
		if (h->up != NULL)
			h->up->write_error = r;
		return r;
	}
	h->bytes_written += len;
	return send_status(s, id, 0);
}

/*
 * What the client was shown of a path lately: a resume continues from the
 * size it was shown, so kept data of another size (kept by a session that
 * ended between the client's STAT and its OPEN) must not be continued.
 */
static struct look *
look_find(struct sftp_session *s, const char *path)
{
	unsigned int i;

	for (i = 0; i < LOOKS; i++)
		if (s->looks[i].path != NULL &&
		    strcmp(s->looks[i].path, path) == 0)
			return &s->looks[i];
	return NULL;
}

static void
look_note(struct sftp_session *s, const char *path, off_t size)
{
	struct look *l;
	char *p;

	if (!s->stage.resume)
		return;
	if ((l = look_find(s, path)) == NULL) {
		if ((p = strdup(path)) == NULL)
			return;		/* then it is not known: no harm */
		l = &s->looks[s->look_next++ % LOOKS];
		free(l->path);
		l->path = p;
	}
	l->size = size;
}

static void
look_forget(struct sftp_session *s, const char *path)
{
	struct look *l;

	if ((l = look_find(s, path)) != NULL) {
		free(l->path);
		l->path = NULL;
	}
}

static int
do_stat(struct sftp_session *s, uint32_t id, struct sftp_buf *msg,
    int follow)
{
	struct upload *up;
	struct stat st, pst;
	int r;

	if ((r = sftp_get_cstring(msg, s->path1, sizeof(s->path1))) != 0)
		return r;
	debug3("request %u: %sstat", id, follow ? "" : "l");
	verbose("%sstat name \"%s\"", follow ? "" : "l", s->path1);
	if ((up = upload_find(s, s->path1)) != NULL) {
		if ((r = stage_fstat(up->sf, &st)) != 0)
			return r;
		return send_attrs(s, id, &st);
	}
	r = (follow ? stat(s->path1, &st) : lstat(s->path1, &st)) == 0 ?
	    0 : errno;
	/* The user's kept partial upload stands at its name for him, as
	 * stock's half-written file would (resuming clients ask its size). */
	if (s->stage.resume && (r == ENOENT || (r == 0 &&
	    S_ISREG(st.st_mode))) &&
	    stage_partial_stat(&s->stage, s->path1, follow, &pst) == 0) {
		st = pst;
		r = 0;
	}
	if (r == ENOENT)
		look_note(s, s->path1, -1);
	else if (r == 0 && S_ISREG(st.st_mode))
		look_note(s, s->path1, st.st_size);
	else
		look_forget(s, s->path1);
	if (r != 0)
		return r;
	return send_attrs(s, id, &st);
}

static int
process_stat(struct sftp_session *s, uint32_t id, struct sftp_buf *msg)
{
	return do_stat(s, id, msg, 1);
}

static int
process_lstat(struct sftp_session *s, uint32_t id, struct sftp_buf *msg)
{
	return do_stat(s, id, msg, 0);
}

static int
process_fstat(struct sftp_session *s, uint32_t id, struct sftp_buf *msg)
{
	struct handle *h;
	struct stat st;
	int r;

	if ((r = get_handle(s, msg, HANDLE_FILE, NULL, &h)) != 0)
		return r == ENOENT ? ERR_FAILURE : r;
	debug("request %u: fstat \"%s\"", id, h->path);
	if (h->sf != NULL)
		r = stage_fstat(h->sf, &st);
	else
		r = fstat(h->fd, &st) == 0 ? 0 : errno;
	if (r != 0)
		return r;
	return send_attrs(s, id, &st);
}

static int
process_setstat(struct sftp_session *s, uint32_t id, struct sftp_buf *msg)
{
	struct sftp_attrs a;
	int r;

	if ((r = sftp_get_cstring(msg, s->path1, sizeof(s->path1))) != 0 ||
	    (r = sftp_get_attrs(msg, &a)) != 0)
		return r;
	debug("request %u: setstat name \"%s\"", id, s->path1);
	if (!set_attrs_staged(s, s->path1, &a, &r))
		r = set_attrs_path(s->path1, &a, 0);
	return send_status(s, id, r);
}

static int
process_lsetstat(struct sftp_session *s, uint32_t id, struct sftp_buf *msg)
{
	struct sftp_attrs a;
	int r;

	if ((r = sftp_get_cstring(msg, s->path1, sizeof(s->path1))) != 0 ||
	    (r = sftp_get_attrs(msg, &a)) != 0)
		return r;
	debug("request %u: lsetstat name \"%s\"", id, s->path1);
	/* There is no truncate that does not follow symlinks. */
	if (a.flags & SSH2_FILEXFER_ATTR_SIZE)
		return EINVAL;
	if (!set_attrs_staged(s, s->path1, &a, &r))
		r = set_attrs_path(s->path1, &a, 1);
	return send_status(s, id, r);
}

static int
process_fsetstat(struct sftp_session *s, uint32_t id, struct sftp_buf *msg)
{
	struct sftp_attrs a;
	struct handle *h;
	int r;

	if ((r = get_handle(s, msg, HANDLE_FILE, NULL, &h)) != 0 &&
	    r != ENOENT)
		return r;
	if ((r = sftp_get_attrs(msg, &a)) != 0)
		return r;
	if (h == NULL)
		return ERR_FAILURE;
	debug("request %u: fsetstat \"%s\"", id, h->path);
	return send_status(s, id, set_attrs_handle(h, &a));
}

/* stage_partial_list(): one kept partial upload for a listing. */
static int
collect_partial(void *arg, const char *name, const struct stat *st)
{
	struct handle *h = arg;
	struct dir_partial *n;

	if ((n = reallocarray(h->partials, h->npartials + 1,
	    sizeof(*n))) == NULL)
		return ENOMEM;
	h->partials = n;
	n = &h->partials[h->npartials];
	memset(n, 0, sizeof(*n));
	if ((n->name = strdup(name)) == NULL)
		return ENOMEM;
	n->st = *st;
	h->npartials++;
	return 0;
}

static struct dir_partial *
dir_partial_find(struct handle *h, const char *name)
{
	size_t i;

	for (i = 0; i < h->npartials; i++)
		if (strcmp(h->partials[i].name, name) == 0)
			return &h->partials[i];
	return NULL;
}

static int
process_opendir(struct sftp_session *s, uint32_t id, struct sftp_buf *msg)
{
	struct handle *h;
	unsigned int idx;
	DIR *d;
	int r;

	if ((r = sftp_get_cstring(msg, s->path1, sizeof(s->path1))) != 0)
		return r;
	debug3("request %u: opendir", id);
	logit("opendir \"%s\"", s->path1);
	if (s->max_handles != 0 && s->nopen >= s->max_handles)
		return EMFILE;
	if (upload_find(s, s->path1) != NULL)
		return ENOTDIR;		/* the session's own file */
	if ((d = opendir(s->path1)) == NULL)
		return errno;
	if ((r = handle_alloc(s, &idx)) != 0) {
		closedir(d);
		return r;
	}
	h = &s->handles[idx];
	if ((h->path = strdup(s->path1)) == NULL) {
		closedir(d);
		handle_release(s, idx);
		return ENOMEM;
	}
	h->kind = HANDLE_DIR;
	h->dir = d;
	if (s->stage.resume)
		(void)stage_partial_list(&s->stage, dirfd(d), collect_partial,
		    h);
	return send_handle(s, id, idx);
}

/* One entry of a NAME reply to READDIR: name, long name, attributes. */
static int
put_dir_entry(struct sftp_session *s, const char *name, const struct stat *st,
    time_t now)
{
	struct sftp_attrs a;
	char *lname = s->scratch;
	int r;

	long_name(s, name, st, now, lname, sizeof(s->scratch));
	sftp_attrs_from_stat(&a, st);
	if ((r = sftp_put_cstring(&s->out, name)) != 0 ||
	    (r = sftp_put_cstring(&s->out, lname)) != 0 ||
	    (r = sftp_put_attrs(&s->out, &a)) != 0)
		return r;
	return 0;
}

/* The session's new uploads into the listed directory, which the
 * directory itself does not show yet. */
static int
put_new_uploads(struct sftp_session *s, int dfd, const struct stat *dst,
    time_t now, uint32_t *countp)
{
	struct upload *up;
	struct stat st;
	const char *name;
	dev_t dev;
	ino_t ino;
	int r;

	for (up = s->uploads; up != NULL; up = up->next) {
		if (up->removed || stage_method(up->sf) == STAGE_DIRECT ||
		    stage_dest(up->sf, &dev, &ino, &name) != 0 ||
		    dev != dst->st_dev || ino != dst->st_ino ||
		    fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 ||
		    stage_fstat(up->sf, &st) != 0)
			continue;
		if ((r = put_dir_entry(s, name, &st, now)) != 0)
			return r;
		(*countp)++;
	}
	return 0;
}

/* The user's kept partial uploads of new names in the listed directory,
 * which the directory does not show. */
static int
put_new_partials(struct sftp_session *s, struct handle *h, time_t now,
    uint32_t *countp)
{
	struct stat st;
	size_t i;
	int r, dfd = dirfd(h->dir);

	for (i = 0; i < h->npartials; i++) {
		if (h->partials[i].listed || fstatat(dfd, h->partials[i].name,
		    &st, AT_SYMLINK_NOFOLLOW) == 0)
			continue;
		if ((r = put_dir_entry(s, h->partials[i].name,
		    &h->partials[i].st, now)) != 0)
			return r;
		h->partials[i].listed = 1;
		(*countp)++;
	}
	return 0;
}

static int
process_readdir(struct sftp_session *s, uint32_t id, struct sftp_buf *msg)
{
	struct dir_partial *dp;
	struct upload *up;
	struct handle *h;
	struct dirent *de;
	struct stat st, dst;
	size_t mark, cmark;
	uint32_t count = 0;
	time_t now = time(NULL);
	int r, dfd, have_dir;

	if ((r = get_handle(s, msg, HANDLE_DIR, NULL, &h)) != 0)
		return r == ENOENT ? ERR_FAILURE : r;
	debug("request %u: readdir \"%s\" (handle %d)", id, h->path,
	    (int)(h - s->handles));
	if ((r = reply_begin(s, SSH2_FXP_NAME, id, &mark)) != 0)
		return r;
	if ((r = sftp_put_mark(&s->out, &cmark)) != 0)
		goto fail;
	dfd = dirfd(h->dir);
	/* The session's own uploads into this directory are listed as
	 * they are now, new ones too (at the end, as a file created after
	 * the listing began may be). */
	have_dir = s->uploads != NULL && fstat(dfd, &dst) == 0;
	while (count < READDIR_BATCH) {
		errno = 0;
		if ((de = readdir(h->dir)) == NULL) {
			r = errno;
			if (r == 0 && have_dir && !h->dir_listed_uploads) {
				h->dir_listed_uploads = 1;
				r = put_new_uploads(s, dfd, &dst, now, &count);
			}
			if (r == 0)
				r = put_new_partials(s, h, now, &count);
			break;
		}
		/* Our own bookkeeping is not the user's file. */
		if (partial_is_store_name(de->d_name, NULL))
			continue;
		up = have_dir ? upload_at(s, dst.st_dev, dst.st_ino,
		    de->d_name) : NULL;
		dp = up == NULL ? dir_partial_find(h, de->d_name) : NULL;
		/* Entries that vanished or cannot be looked at are left
		 * out, as stock does. */
		if (up != NULL) {
			if (stage_fstat(up->sf, &st) != 0)
				continue;
		} else if (dp != NULL && fstatat(dfd, de->d_name, &st,
		    AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
			st = dp->st;
			dp->listed = 1;
		} else if (fstatat(dfd, de->d_name, &st,
		    AT_SYMLINK_NOFOLLOW) != 0)
			continue;
		if ((r = put_dir_entry(s, de->d_name, &st, now)) != 0)
			goto fail;
		count++;
	}
	if (count == 0) {
		sftp_put_mark_cancel(&s->out, mark);
		if (r != 0)
			return r;
		return send_status_msg(s, id, SSH2_FX_EOF, NULL);
	}
	if ((r = sftp_put_mark_value(&s->out, cmark, count)) != 0)
		goto fail;
	debug("request %u: sent names count %u", id, count);
	return reply_end(s, id, mark);
 fail:
	sftp_put_mark_cancel(&s->out, mark);
	return r;
}

static int
process_remove(struct sftp_session *s, uint32_t id, struct sftp_buf *msg)
{
	struct upload *up;
	int r, f;

	if ((r = sftp_get_cstring(msg, s->path1, sizeof(s->path1))) != 0)
		return r;
	debug3("request %u: remove", id);
	logit("remove name \"%s\"", s->path1);
	if ((up = upload_find(s, s->path1)) != NULL) {
		/* As stock's unlink of its open file: the name goes now
		 * (the file being replaced with it), the data at the last
		 * close. */
		if ((r = stage_unlink_old(up->sf)) == 0)
			up->removed = 1;
		return send_status(s, id, r);
	}
	r = unlink(s->path1) == 0 ? 0 : errno;
	/* A kept partial upload goes with the name, as stock's half-written
	 * file would; where it was all there was, that is the removal. */
	if (s->stage.resume && (r == 0 || r == ENOENT) &&
	    (f = stage_partial_forget(&s->stage, s->path1)) != ENOENT)
		r = f;
	return send_status(s, id, r);
}

static int
process_mkdir(struct sftp_session *s, uint32_t id, struct sftp_buf *msg)
{
	struct sftp_attrs a;
	mode_t mode;
	int r;

	if ((r = sftp_get_cstring(msg, s->path1, sizeof(s->path1))) != 0 ||
	    (r = sftp_get_attrs(msg, &a)) != 0)
		return r;
	mode = (a.flags & SSH2_FILEXFER_ATTR_PERMISSIONS) ?
	    (mode_t)(a.perm & 07777) : 0777;
	debug3("request %u: mkdir", id);
	logit("mkdir name \"%s\" mode 0%o", s->path1, (u_int)mode);
	if (upload_find(s, s->path1) != NULL)
		return EEXIST;		/* the session's own file is there */
	return send_status(s, id, mkdir(s->path1, mode) == 0 ? 0 : errno);
}

/* Does one of this session's staged uploads go into directory DIR? */
static int
uploading_into(const struct sftp_session *s, const char *dir)
{
	const struct upload *up;
	const char *name;
	struct stat st;
	dev_t dev;
	ino_t ino;

	if (s->uploads == NULL || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		return 0;
	for (up = s->uploads; up != NULL; up = up->next) {
		if (!up->removed &&
		    stage_dest(up->sf, &dev, &ino, &name) == 0 &&
		    dev == st.st_dev && ino == st.st_ino)
			return 1;
	}
	return 0;
}

static int
process_rmdir(struct sftp_session *s, uint32_t id, struct sftp_buf *msg)
{
	int r;

	if ((r = sftp_get_cstring(msg, s->path1, sizeof(s->path1))) != 0)
		return r;
	debug3("request %u: rmdir", id);
	logit("rmdir name \"%s\"", s->path1);
	if (uploading_into(s, s->path1)) {
		/* Stock's file would be in the directory, keeping it from
		 * being removed; a staged one is not, and its commit would
		 * then fail. */
		verbose("rmdir \"%s\": an upload into it is in flight",
		    s->path1);
		return send_status(s, id, ENOTEMPTY);
	}
	if (upload_find(s, s->path1) != NULL)
		return send_status(s, id, ENOTDIR);
	return send_status(s, id, rmdir(s->path1) == 0 ? 0 : errno);
}

static int
process_realpath(struct sftp_session *s, uint32_t id, struct sftp_buf *msg)
{
	int r;

	if ((r = sftp_get_cstring(msg, s->path1, sizeof(s->path1))) != 0)
		return r;
	if (s->path1[0] == '\0')
		snprintf(s->path1, sizeof(s->path1), ".");
	debug3("request %u: realpath", id);
	verbose("realpath \"%s\"", s->path1);
	if ((r = canonical_path(s, s->path1, s->path2, sizeof(s->path2))) != 0)
		return r;
	return send_one_name(s, id, s->path2);
}

/*
 * RENAME and posix-rename where one of the names is the session's own
 * upload; returns 0 when neither is (the caller renames on disk), else 1
 * with the result in *rp.  Renaming an upload moves it: it is published
 * under the new name, and the old name never appears (editors and rsync
 * write a temporary name, then rename it over the real one).  Renaming
 * something over an upload's name replaces it, as stock's rename would
 * unlink its file: that upload publishes nothing.
 */
static int
rename_uploads(struct sftp_session *s, const char *from, const char *to,
    int replace, int *rp)
{
	struct upload *src, *dst;

	src = upload_find(s, from);
	dst = upload_find(s, to);
	if (src == NULL && dst == NULL)
		return 0;
	if (src != NULL && src == dst) {
		*rp = 0;		/* the same name */
		return 1;
	}
	if (dst != NULL && !replace) {
		*rp = EEXIST;		/* v3: never over an existing name */
		return 1;
	}
	if (src != NULL)
		*rp = stage_retarget(src->sf, to, replace);
	else
		*rp = rename(from, to) == 0 ? 0 : errno;
	if (*rp == 0 && dst != NULL)
		dst->removed = 1;
	return 1;
}

/* A kept partial upload is not renamed with the file, once the kernel
 * has answered the rename: it goes (a failed one leaves it). */
static void
rename_forget_partial(struct sftp_session *s, int r)
{
	if (s->stage.resume && (r == 0 || r == ENOENT))
		(void)stage_partial_forget(&s->stage, s->path1);
}

static int
process_rename(struct sftp_session *s, uint32_t id, struct sftp_buf *msg)
{
	struct stat st;
	int r;

	if ((r = sftp_get_cstring(msg, s->path1, sizeof(s->path1))) != 0 ||
	    (r = sftp_get_cstring(msg, s->path2, sizeof(s->path2))) != 0)
		return r;
	debug3("request %u: rename", id);
	logit("rename old \"%s\" new \"%s\"", s->path1, s->path2);
	if (s->uploads != NULL &&
	    rename_uploads(s, s->path1, s->path2, 0, &r))
		return send_status(s, id, r);
	/* Version 3 RENAME never replaces an existing name. */
	if (lstat(s->path1, &st) != 0)
		r = errno;
	else if (S_ISREG(st.st_mode)) {
		if (link(s->path1, s->path2) != 0) {
			r = errno;
			/* Where hard links are not to be had, rename if the
			 * new name is free (racy, as it always was). */
			if ((r == EOPNOTSUPP || r == ENOSYS || r == EXDEV ||
			    r == EPERM) && lstat(s->path2, &st) != 0)
				r = rename(s->path1, s->path2) == 0 ? 0 : errno;
		} else if (unlink(s->path1) != 0) {
			r = errno;
			unlink(s->path2);
		}
	} else if (lstat(s->path2, &st) != 0)
		r = rename(s->path1, s->path2) == 0 ? 0 : errno;
	else
		r = EEXIST;
	rename_forget_partial(s, r);
	return send_status(s, id, r);
}

static int
process_readlink(struct sftp_session *s, uint32_t id, struct sftp_buf *msg)
{
	ssize_t n;
	int r;

	if ((r = sftp_get_cstring(msg, s->path1, sizeof(s->path1))) != 0)
		return r;
	debug3("request %u: readlink", id);
	verbose("readlink \"%s\"", s->path1);
	if (upload_find(s, s->path1) != NULL)
		return EINVAL;		/* the session's own file, not a link */
	if ((n = readlink(s->path1, s->path2, sizeof(s->path2) - 1)) < 0)
		return errno;
	s->path2[n] = '\0';
	return send_one_name(s, id, s->path2);
}

static int
process_symlink(struct sftp_session *s, uint32_t id, struct sftp_buf *msg)
{
	int r;

	/* OpenSSH's order: target first, then the link to create. */
	if ((r = sftp_get_cstring(msg, s->path1, sizeof(s->path1))) != 0 ||
	    (r = sftp_get_cstring(msg, s->path2, sizeof(s->path2))) != 0)
		return r;
	debug3("request %u: symlink", id);
	logit("symlink old \"%s\" new \"%s\"", s->path1, s->path2);
	if (upload_find(s, s->path2) != NULL)
		return send_status(s, id, EEXIST);
	return send_status(s, id,
	    symlink(s->path1, s->path2) == 0 ? 0 : errno);
}

static int
process_posix_rename(struct sftp_session *s, uint32_t id,
    struct sftp_buf *msg)
{
	int r;

	if ((r = sftp_get_cstring(msg, s->path1, sizeof(s->path1))) != 0 ||
	    (r = sftp_get_cstring(msg, s->path2, sizeof(s->path2))) != 0)
		return r;
	debug3("request %u: posix-rename", id);
	logit("posix-rename old \"%s\" new \"%s\"", s->path1, s->path2);
	if (s->uploads != NULL &&
	    rename_uploads(s, s->path1, s->path2, 1, &r))
		return send_status(s, id, r);
	r = rename(s->path1, s->path2) == 0 ? 0 : errno;
	rename_forget_partial(s, r);
	return send_status(s, id, r);
}

static int
process_hardlink(struct sftp_session *s, uint32_t id, struct sftp_buf *msg)
{
	int r;

	if ((r = sftp_get_cstring(msg, s->path1, sizeof(s->path1))) != 0 ||
	    (r = sftp_get_cstring(msg, s->path2, sizeof(s->path2))) != 0)
		return r;
	debug3("request %u: hardlink", id);
	logit("hardlink old \"%s\" new \"%s\"", s->path1, s->path2);
	if (upload_find(s, s->path2) != NULL)
		return send_status(s, id, EEXIST);
	return send_status(s, id, link(s->path1, s->path2) == 0 ? 0 : errno);
}

#ifdef HAVE_SYS_STATVFS_H
static int
send_statvfs(struct sftp_session *s, uint32_t id, const struct statvfs *st)
{
	uint64_t flag = 0;
	size_t mark;
	int r;

	if (st->f_flag & ST_RDONLY)
		flag |= SSH2_FXE_STATVFS_ST_RDONLY;
	if (st->f_flag & ST_NOSUID)
		flag |= SSH2_FXE_STATVFS_ST_NOSUID;
	if ((r = reply_begin(s, SSH2_FXP_EXTENDED_REPLY, id, &mark)) != 0)
		return r;
	if ((r = sftp_put_u64(&s->out, st->f_bsize)) != 0 ||
	    (r = sftp_put_u64(&s->out, st->f_frsize)) != 0 ||
	    (r = sftp_put_u64(&s->out, st->f_blocks)) != 0 ||
	    (r = sftp_put_u64(&s->out, st->f_bfree)) != 0 ||
	    (r = sftp_put_u64(&s->out, st->f_bavail)) != 0 ||
	    (r = sftp_put_u64(&s->out, st->f_files)) != 0 ||
	    (r = sftp_put_u64(&s->out, st->f_ffree)) != 0 ||
	    (r = sftp_put_u64(&s->out, st->f_favail)) != 0 ||
	    (r = sftp_put_u64(&s->out, st->f_fsid)) != 0 ||
	    (r = sftp_put_u64(&s->out, flag)) != 0 ||
	    (r = sftp_put_u64(&s->out, st->f_namemax)) != 0) {
		sftp_put_mark_cancel(&s->out, mark);
		return r;
	}
	return reply_end(s, id, mark);
}
#endif

static int
process_statvfs(struct sftp_session *s, uint32_t id, struct sftp_buf *msg)
{
#ifdef HAVE_SYS_STATVFS_H
	struct statvfs st;
#endif
	int r;

	if ((r = sftp_get_cstring(msg, s->path1, sizeof(s->path1))) != 0)
		return r;
	debug3("request %u: statvfs", id);
	logit("statvfs \"%s\"", s->path1);
#ifdef HAVE_SYS_STATVFS_H
	if (statvfs(s->path1, &st) != 0)
		return errno;
	return send_statvfs(s, id, &st);
#else
	return ENOSYS;
#endif
}

static int
process_fstatvfs(struct sftp_session *s, uint32_t id, struct sftp_buf *msg)
{
#ifdef HAVE_SYS_STATVFS_H
	struct statvfs st;
#endif
	struct handle *h;
	int r;

	if ((r = get_handle(s, msg, HANDLE_FILE, NULL, &h)) != 0)
		return r == ENOENT ? ERR_FAILURE : r;
	debug("request %u: fstatvfs \"%s\"", id, h->path);
#ifdef HAVE_SYS_STATVFS_H
	if (fstatvfs(handle_fd(h), &st) != 0)
		return errno;
	return send_statvfs(s, id, &st);
#else
	return ENOSYS;
#endif
}

static int
process_fsync(struct sftp_session *s, uint32_t id, struct sftp_buf *msg)
{
	struct handle *h;
	int r;

	if ((r = get_handle(s, msg, HANDLE_FILE, NULL, &h)) != 0)
		return r == ENOENT ? ERR_NO_SUCH_FILE : r;
	debug3("request %u: fsync", id);
	verbose("fsync \"%s\"", h->path);
	if (h->sf != NULL)
		r = stage_fsync(h->sf);
	else
		r = fsync(h->fd) == 0 ? 0 : errno;
	return send_status(s, id, r);
}

static int
process_limits(struct sftp_session *s, uint32_t id, struct sftp_buf *msg)
{
	size_t mark;
	int r;

	debug("request %u: limits", id);
	if ((r = reply_begin(s, SSH2_FXP_EXTENDED_REPLY, id, &mark)) != 0)
		return r;
	if ((r = sftp_put_u64(&s->out, SFTP_MAX_MSG)) != 0 ||
	    (r = sftp_put_u64(&s->out, MAX_IO_LEN)) != 0 ||
	    (r = sftp_put_u64(&s->out, MAX_IO_LEN)) != 0 ||
	    (r = sftp_put_u64(&s->out, s->max_handles)) != 0) {
		sftp_put_mark_cancel(&s->out, mark);
		return r;
	}
	return reply_end(s, id, mark);
}

static int
process_expand_path(struct sftp_session *s, uint32_t id,
    struct sftp_buf *msg)
{
	struct passwd *pw;
	const char *rest, *slash;
	char user[256], cwd[PATH_MAX];
	size_t ulen;
	int r;

	if ((r = sftp_get_cstring(msg, s->path1, sizeof(s->path1))) != 0)
		return r;
	debug3("request %u: expand, original \"%s\"", id, s->path1);
	if (s->path1[0] == '\0')
		r = snprintf(s->path2, sizeof(s->path2), ".");
	else if (s->path1[0] == '~' && s->path1[1] != '/' &&
	    s->path1[1] != '\0') {
		slash = strchr(s->path1, '/');
		ulen = slash == NULL ? strlen(s->path1 + 1) :
		    (size_t)(slash - s->path1 - 1);
		rest = slash == NULL ? "" : slash + 1;
		if (ulen >= sizeof(user))
			return ENAMETOOLONG;
		memcpy(user, s->path1 + 1, ulen);
		user[ulen] = '\0';
		if ((pw = name_getpwnam(user)) == NULL) {
			error("expand-path: no such user \"%s\"", user);
			return send_status_msg(s, id, SSH2_FX_NO_SUCH_FILE,
			    "no such user");
		}
		r = snprintf(s->path2, sizeof(s->path2), "%s/%s", pw->pw_dir,
		    rest);
	} else if (s->path1[0] == '/')
		r = snprintf(s->path2, sizeof(s->path2), "%s", s->path1);
	else {
		/* Relative, and "~" itself: the directory the session
		 * started in, not necessarily the home directory. */
		if (getcwd(cwd, sizeof(cwd)) == NULL)
			return errno;
		r = snprintf(s->path2, sizeof(s->path2), "%s%s%s", cwd,
		    s->path1[0] == '~' ? "" : "/",
		    s->path1[0] == '~' ? s->path1 + 1 : s->path1);
	}
	if (r < 0 || (size_t)r >= sizeof(s->path2))
		return ENAMETOOLONG;
	verbose("expand \"%s\"", s->path2);
	if ((r = canonical_path(s, s->path2, s->path1, sizeof(s->path1))) != 0)
		return r;
	return send_one_name(s, id, s->path1);
}

static int
process_copy_data(struct sftp_session *s, uint32_t id, struct sftp_buf *msg)
{
	struct handle *rh, *wh;
	unsigned int ridx, widx;
	uint64_t roff, rlen, woff, copied = 0;
	size_t chunk;
	ssize_t n;
	int r, rr, wr;

	if ((rr = get_handle(s, msg, HANDLE_FILE, &ridx, &rh)) != 0 &&
	    rr != ENOENT)
		return rr;
	if ((r = sftp_get_u64(msg, &roff)) != 0 ||
	    (r = sftp_get_u64(msg, &rlen)) != 0)
		return r;
	if ((wr = get_handle(s, msg, HANDLE_FILE, &widx, &wh)) != 0 &&
	    wr != ENOENT)
		return wr;
	if ((r = sftp_get_u64(msg, &woff)) != 0)
		return r;
	if (rh == NULL || wh == NULL || ridx == widx)
		return ERR_FAILURE;
	debug("request %u: copy-data from \"%s\" off %llu len %llu to \"%s\" "
	    "off %llu", id, rh->path, (unsigned long long)roff,
	    (unsigned long long)rlen, wh->path, (unsigned long long)woff);
	if (!rh->can_read || !wh->can_write) {
		error("copy-data: %s \"%s\": %s", rh->can_read ? "write" :
		    "read", rh->can_read ? wh->path : rh->path,
		    strerror(EBADF));
		return EBADF;
	}
	if (wh->up != NULL && wh->up->write_error != 0)
		return ERR_FAILURE;
	if (roff > INT64_MAX || woff > INT64_MAX ||
	    (rlen != 0 && rlen > INT64_MAX - roff))
		return EINVAL;
	if (s->copybuf == NULL && (s->copybuf = malloc(COPY_CHUNK)) == NULL)
		return ENOMEM;
	r = 0;
	while (rlen == 0 || copied < rlen) {
		chunk = COPY_CHUNK;
		if (rlen != 0 && rlen - copied < chunk)
			chunk = (size_t)(rlen - copied);
		if (woff + copied > (uint64_t)INT64_MAX - chunk) {
			r = EINVAL;
			break;
		}
		n = pread(handle_fd(rh), s->copybuf, chunk,
		    (off_t)(roff + copied));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = errno;
			error("copy-data: read \"%s\": %s", rh->path,
			    strerror(r));
			break;
		}
		if (n == 0)
			break;
		rh->bytes_read += (uint64_t)n;
		if ((r = handle_write(wh, s->copybuf, (size_t)n,
		    woff + copied)) != 0) {
			error("copy-data: write \"%s\": %s", wh->path,
			    strerror(r));
			if (wh->up != NULL)
				wh->up->write_error = r;
			break;
		}
		wh->bytes_written += (uint64_t)n;
		copied += (uint64_t)n;
	}
	return send_status(s, id, r);
}

static int
process_home_directory(struct sftp_session *s, uint32_t id,
    struct sftp_buf *msg)
{
	struct passwd *pw;
	int r;

	if ((r = sftp_get_cstring(msg, s->path1, sizeof(s->path1))) != 0)
		return r;
	debug3("request %u: home-directory \"%s\"", id, s->path1);
	/* As the extension specifies: an empty name is the session user. */
	if ((pw = name_getpwnam(s->path1[0] != '\0' ? s->path1 : s->user)) == NULL)
		return ERR_FAILURE;
	verbose("home-directory \"%s\"", pw->pw_dir);
	if (snprintf(s->path2, sizeof(s->path2), "%s", pw->pw_dir) >=
	    (int)sizeof(s->path2))
		return ENAMETOOLONG;
	return send_one_name(s, id, s->path2);
}

/* One list of names for users-groups-by-id, as a string of strings. */
static int
put_id_names(struct sftp_session *s, const u_char *ids, size_t len,
    int group)
{
	const struct name_cache_entry *e;
	size_t mark, i;
	uint32_t id;
	int r;

	if ((r = sftp_put_mark(&s->out, &mark)) != 0)
		return r;
	for (i = 0; i + 4 <= len; i += 4) {
		id = (uint32_t)ids[i] << 24 | (uint32_t)ids[i + 1] << 16 |
		    (uint32_t)ids[i + 2] << 8 | (uint32_t)ids[i + 3];
		e = lookup_name(s, group, id);
		debug3("users-groups-by-id: %s %u => \"%s\"",
		    group ? "gid" : "uid", id, e->found ? e->name : "");
		if ((r = sftp_put_cstring(&s->out,
		    e->found ? e->name : "")) != 0)
			return r;
	}
	return sftp_put_mark_end(&s->out, mark, SFTP_MAX_MSG);
}

static int
process_users_groups_by_id(struct sftp_session *s, uint32_t id,
    struct sftp_buf *msg)
{
	const u_char *uids, *gids;
	size_t ulen, glen, mark;
	int r;

	if ((r = sftp_get_string(msg, &uids, &ulen)) != 0 ||
	    (r = sftp_get_string(msg, &gids, &glen)) != 0)
		return r;
	if (ulen % 4 != 0 || glen % 4 != 0)
		return EBADMSG;
	debug("request %u: users-groups-by-id: %zu uids, %zu gids", id,
	    ulen / 4, glen / 4);
	if ((r = reply_begin(s, SSH2_FXP_EXTENDED_REPLY, id, &mark)) != 0)
		return r;
	if ((r = put_id_names(s, uids, ulen, 0)) != 0 ||
	    (r = put_id_names(s, gids, glen, 1)) != 0) {
		sftp_put_mark_cancel(&s->out, mark);
		return r == EMSGSIZE ? ERR_FAILURE : r;
	}
	verbose("users-groups-by-id: %zu users, %zu groups", ulen / 4,
	    glen / 4);
	return reply_end(s, id, mark);
}

/*
 * check-file (draft-ietf-secsh-filexfer-extensions): hashes of a range of
 * a file, whole or per block, with the first algorithm of the client's
 * list that we have.  The reply is
 *	string "check-file", string algorithm, byte[] hashes
 * The range stops at the end of the file (a range beyond it hashes no
 * bytes).  Limits: block size 0 or at least 256 (the draft's minimum);
 * the hashes must fit one reply; at most s->check_file_max bytes per
 * request, so a short request cannot make the server read without end.
 */
#define CHECK_FILE_MIN_BLOCK	256
#define CHECK_FILE_MAX_REPLY	(SFTP_MAX_MSG - 1024)

/* The first algorithm of a comma list that we can use; *namep and
 * *namelenp give the client's spelling of it, for the reply. */
static const struct digest_algo *
pick_algorithm(const u_char *list, size_t len, const u_char **namep,
    size_t *namelenp)
{
	const struct digest_algo *a;
	size_t i = 0, j;

	while (i <= len) {
		for (j = i; j < len && list[j] != ','; j++)
			;
		if (j > i && (a = digest_algo_find((const char *)list + i,
		    j - i)) != NULL) {
			*namep = list + i;
			*namelenp = j - i;
			return a;
		}
		i = j + 1;
	}
	return NULL;
}

/* A check-file request's fields after its name or handle. */
struct check_file_req {
	const u_char *list;
	size_t listlen;
	uint64_t start;
	uint64_t length;
	uint32_t block;
};

static int
check_file_parse(struct sftp_buf *msg, struct check_file_req *cf)
{
	int r;

	if ((r = sftp_get_string(msg, &cf->list, &cf->listlen)) != 0 ||
	    (r = sftp_get_u64(msg, &cf->start)) != 0 ||
	    (r = sftp_get_u64(msg, &cf->length)) != 0 ||
	    (r = sftp_get_u32(msg, &cf->block)) != 0)
		return r;
	return 0;
}

static int
check_file(struct sftp_session *s, uint32_t id,
    const struct check_file_req *cf, const char *label, int fd)
{
	const struct digest_algo *algo;
	struct digest_ctx *ctx = NULL;
	const u_char *aname = NULL;
	u_char md[DIGEST_MAX_SIZE], *p;
	uint64_t start = cf->start, end, off, nblocks, n;
	uint32_t block = cf->block;
	size_t alen = 0, mark, dsize;
	struct stat st;
	off_t want, done;
	int r;

	logit("check-file \"%s\" algorithms \"%.*s\" start %llu length %llu "
	    "block %u", label, (int)(cf->listlen > 100 ? 100 : cf->listlen),
	    (const char *)cf->list, (unsigned long long)cf->start,
	    (unsigned long long)cf->length, block);
	if ((algo = pick_algorithm(cf->list, cf->listlen, &aname,
	    &alen)) == NULL)
		return send_status_msg(s, id, SSH2_FX_OP_UNSUPPORTED,
		    digest_available() ? "No supported hash algorithm" :
		    "Hashing not available in this build");
	if (block != 0 && block < CHECK_FILE_MIN_BLOCK)
		return send_status_msg(s, id, SSH2_FX_FAILURE,
		    "Block size below 256");
	if (cf->start > INT64_MAX || cf->length > INT64_MAX - cf->start)
		return send_status_msg(s, id, SSH2_FX_FAILURE,
		    "Range out of bounds");
	if (fstat(fd, &st) != 0)
		return errno;
	if (S_ISDIR(st.st_mode))
		return send_status_msg(s, id, SSH2_FX_FAILURE,
		    "Is a directory");
	if (!S_ISREG(st.st_mode))
		return send_status_msg(s, id, SSH2_FX_FAILURE,
		    "Not a regular file");
	end = cf->length == 0 ? (uint64_t)st.st_size : start + cf->length;
	if (end > (uint64_t)st.st_size)
		end = (uint64_t)st.st_size;
	if (start > end)
		start = end;
	if (end - start > s->check_file_max) {
		char text[128];

		snprintf(text, sizeof(text), "Range too large: at most %llu "
		    "bytes per request", s->check_file_max);
		return send_status_msg(s, id, SSH2_FX_FAILURE, text);
	}
	/* Whole range: one hash, of nothing if the range is empty.  Per
	 * block: one hash per block there is, none for an empty range. */
	dsize = digest_algo_size(algo);
	nblocks = block == 0 ? 1 : (end - start + block - 1) / block;
	if (nblocks > (CHECK_FILE_MAX_REPLY - 64 - alen) / dsize)
		return send_status_msg(s, id, SSH2_FX_FAILURE,
		    "Too many blocks for one reply");
	if ((r = digest_start(algo, &ctx)) != 0)
		return r;
	if ((r = reply_begin(s, SSH2_FXP_EXTENDED_REPLY, id, &mark)) != 0)
		goto out;
	if ((r = sftp_put_cstring(&s->out, "check-file")) != 0 ||
	    (r = sftp_put_string(&s->out, aname, alen)) != 0)
		goto cancel;
	for (n = 0, off = start; n < nblocks; n++) {
		want = (off_t)(block == 0 ? end - off :
		    (end - off < block ? end - off : block));
		if ((r = digest_fd(ctx, fd, (off_t)off, want, &done)) != 0) {
			error("check-file \"%s\": read: %s", label,
			    strerror(r));
			goto cancel;
		}
		if ((r = digest_finish(ctx, md)) != 0)
			goto cancel;
		/* Raw hashes, back to back: no length before them. */
		if ((r = sftp_buf_reserve(&s->out, dsize, &p)) != 0)
			goto cancel;
		memcpy(p, md, dsize);
		off += (uint64_t)want;
		if (done < want)
			break;		/* the file shrank meanwhile */
	}
	r = reply_end(s, id, mark);
	goto out;
 cancel:
	sftp_put_mark_cancel(&s->out, mark);
 out:
	digest_free(ctx);
	return r;
}

static int
process_check_file_name(struct sftp_session *s, uint32_t id,
    struct sftp_buf *msg)
{
	struct check_file_req cf;
	struct upload *up;
	int r, fd = -1;

	if ((r = sftp_get_cstring(msg, s->path1, sizeof(s->path1))) != 0 ||
	    (r = check_file_parse(msg, &cf)) != 0)
		return r;
	debug3("request %u: check-file-name \"%s\"", id, s->path1);
	/* The session's own upload: its staged data, read through a
	 * descriptor the kernel opens for reading. */
	if ((up = upload_find(s, s->path1)) != NULL)
		r = stage_reopen(up->sf, O_RDONLY, &fd);
	else if (s->stage.resume && (r = stage_partial_open(&s->stage,
	    s->path1, O_RDONLY, &fd)) != ENOENT)
		;	/* the user's kept partial upload, as a reader sees */
	else if ((fd = open(s->path1, O_RDONLY | O_NONBLOCK | O_NOCTTY |
	    O_CLOEXEC)) < 0)
		r = errno;
	else
		r = 0;
	if (r != 0)
		return r;
	r = check_file(s, id, &cf, s->path1, fd);
	close(fd);
	return r;
}

static int
process_check_file_handle(struct sftp_session *s, uint32_t id,
    struct sftp_buf *msg)
{
	struct check_file_req cf;
	struct handle *h;
	int r, fd, fl, own = -1;

	if ((r = get_handle(s, msg, HANDLE_FILE, NULL, &h)) != 0 &&
	    r != ENOENT)
		return r;
	if ((r = check_file_parse(msg, &cf)) != 0)
		return r;
	if (h == NULL)
		return ERR_FAILURE;
	debug3("request %u: check-file-handle \"%s\"", id, h->path);
	fd = handle_fd(h);
	/* An upload's data is hashed as it stands: through its readable
	 * descriptor, or one the kernel opens for reading (a file written
	 * in place through a write-only descriptor). */
	if ((fl = fcntl(fd, F_GETFL)) >= 0 && (fl & O_ACCMODE) == O_WRONLY) {
		if (h->sf == NULL || (r = stage_reopen(h->sf, O_RDONLY,
		    &own)) != 0)
			return r != 0 ? r : EBADF;
		fd = own;
	}
	r = check_file(s, id, &cf, h->path, fd);
	if (own >= 0)
		close(own);
	return r;
}

/* Dispatch */

static int
process_init(struct sftp_session *s, struct sftp_buf *msg)
{
	uint32_t version = 0;
	size_t mark, i;
	char algos[64];
	int r, check_file = 0;

	if (sftp_get_u32(msg, &version) != 0)
		error("INIT without a version: answering anyway");
	verbose("received client version %u", version);
	if ((r = sftp_put_mark(&s->out, &mark)) != 0)
		return r;
	if ((r = sftp_put_u8(&s->out, SSH2_FXP_VERSION)) != 0 ||
	    (r = sftp_put_u32(&s->out, SFTP_PROTOCOL_VERSION)) != 0)
		goto fail;
	for (i = 0; i < NREQUEST_TYPES; i++) {
		const struct request_type *rt = &request_types[i];

		if (rt->ext_name == NULL)
			continue;
		switch (s->refused[i]) {
		case REFUSE_DENYLIST:
			verbose("Refusing denylisted %s request", rt->name);
			break;
		case REFUSE_NOT_ALLOWLISTED:
			verbose("Refusing non-allowlisted %s request",
			    rt->name);
			break;
		case REFUSE_READONLY:
			verbose("Refusing %s request in read-only mode",
			    rt->name);
			break;
		default:
			break;
		}
		if (s->refused[i] == REFUSE_NONE && s->allowlist)
			debug2("Permitting allowlisted %s request", rt->name);
		if (s->refused[i] != REFUSE_NONE) {
			debug2("compose_extension: refusing to advertise "
			    "disallowed extension %s", rt->ext_name);
			continue;
		}
		if (rt->ext_version == NULL) {
			check_file = 1;
			continue;
		}
		if ((r = sftp_put_cstring(&s->out, rt->ext_name)) != 0 ||
		    (r = sftp_put_cstring(&s->out, rt->ext_version)) != 0)
			goto fail;
	}
	/* As ProFTPD and paramiko announce it: the algorithms offered. */
	digest_algo_list(algos, sizeof(algos));
	if (check_file && algos[0] != '\0' &&
	    ((r = sftp_put_cstring(&s->out, "check-file")) != 0 ||
	    (r = sftp_put_cstring(&s->out, algos)) != 0))
		goto fail;
	if ((r = sftp_put_mark_end(&s->out, mark, SFTP_MAX_MSG)) != 0)
		goto fail;
	s->initialised = 1;
	return 0;
 fail:
	sftp_put_mark_cancel(&s->out, mark);
	return r;
}

static const struct request_type *
find_request(u_int type, const u_char *ext, size_t extlen, size_t *idxp)
{
	size_t i;

	for (i = 0; i < NREQUEST_TYPES; i++) {
		const struct request_type *rt = &request_types[i];

		if (ext == NULL ? (rt->ext_name == NULL && rt->type == type) :
		    (rt->ext_name != NULL && strlen(rt->ext_name) == extlen &&
		    memcmp(rt->ext_name, ext, extlen) == 0)) {
			*idxp = i;
			return rt;
		}
	}
	return NULL;
}

/*
 * Answer one packet.  Returns 0 unless the reply could not be queued
 * (out of memory), which ends the session.
 */
static int
process_packet(struct sftp_session *s, const u_char *p, size_t len)
{
	const struct request_type *rt;
	struct sftp_buf msg;
	const u_char *ext = NULL;
	char extname[128];
	size_t extlen = 0, idx;
	uint32_t id;
	u_char type;
	int r;

	sftp_buf_view(&msg, p, len);
	if (sftp_get_u8(&msg, &type) != 0) {
		error("empty packet ignored");
		return 0;
	}
	if (type == SSH2_FXP_INIT)
		return process_init(s, &msg);
	if (sftp_get_u32(&msg, &id) != 0) {
		error("packet of type %u without a request id ignored", type);
		return 0;
	}
	if (!s->initialised) {
		/* Stock exits here; a status lets the client know why. */
		error("request %u (type %u) before INIT refused", id, type);
		return send_status_msg(s, id, SSH2_FX_FAILURE,
		    "Request before INIT");
	}
	if (type == SSH2_FXP_EXTENDED) {
		if (sftp_get_string(&msg, &ext, &extlen) != 0)
			return send_status(s, id, EBADMSG);
	}
	if ((rt = find_request(type, ext, extlen, &idx)) == NULL) {
		if (ext != NULL) {
			snprintf(extname, sizeof(extname), "%.*s",
			    (int)(extlen < sizeof(extname) ? extlen :
			    sizeof(extname) - 1), (const char *)ext);
			sanitise_copy(extname, sizeof(extname), extname);
			error("Unknown extended request \"%s\"", extname);
		} else
			error("Unknown message %u", type);
		return send_status_msg(s, id, SSH2_FX_OP_UNSUPPORTED, NULL);
	}
	/* Each handler logs its own "request N: ..." line, as stock's do. */
	switch (s->refused[idx]) {
	case REFUSE_DENYLIST:
		verbose("Refusing denylisted %s request", rt->name);
		return send_status(s, id, EPERM);
	case REFUSE_NOT_ALLOWLISTED:
		verbose("Refusing non-allowlisted %s request", rt->name);
		return send_status(s, id, EPERM);
	case REFUSE_READONLY:
		verbose("Refusing %s request in read-only mode", rt->name);
		return send_status(s, id, EPERM);
	default:
		if (s->allowlist)
			debug2("Permitting allowlisted %s request", rt->name);
		break;
	}
	if ((r = rt->handler(s, id, &msg)) == 0)
		return 0;
	if (r == EBADMSG)
		error("request %u (%s): malformed, answered bad message", id,
		    rt->name);
	return send_status(s, id, r);
}

int
sftp_session_process(struct sftp_session *s)
{
	const u_char *p;
	size_t avail, len;
	int r;

	while (sftp_buf_len(&s->out) < OUT_HIGH_WATER) {
		p = sftp_buf_ptr(&s->in);
		avail = sftp_buf_len(&s->in);
		if ((r = sftp_frame_check(p, avail, MAX_MSG_ACCEPT,
		    &len)) == EAGAIN)
			return 0;
		if (r != 0) {
			error("bad message from %s local user %s",
			    s->client_addr, s->user);
			return EMSGSIZE;
		}
		/* The packet is parsed where it lies; the buffer is not
		 * touched again until the handler has returned. */
		if ((r = process_packet(s, p + 4, len)) != 0)
			return r;
		if ((r = sftp_buf_consume(&s->in, 4 + len)) != 0)
			return r;
	}
	return 0;
}

/*
 * Where the next read goes.  A request already begun is completed by a
 * read of exactly its missing bytes, so the buffer empties when it has been
 * answered and the next read starts at the front again: the data of a
 * WRITE is never moved.  (Asking for the whole buffer instead made nearly
 * every read first move a partial 256 KiB WRITE to the front: a copy of
 * about half of every upload, 7% of the server's CPU.)  Otherwise, room for
 * a large read.
 */
int
sftp_session_input_space(struct sftp_session *s, u_char **p, size_t *len)
{
	const u_char *q = sftp_buf_ptr(&s->in);
	size_t have = sftp_buf_len(&s->in), want = SFTP_READ_CHUNK, need = 0;
	size_t total;
	int r;

	if (have >= 4) {
		total = 4 + (((size_t)q[0] << 24) | ((size_t)q[1] << 16) |
		    ((size_t)q[2] << 8) | (size_t)q[3]);
		if (total <= 4 + MAX_MSG_ACCEPT && total > have)
			want = need = total - have;
	}
	if ((r = sftp_buf_space(&s->in, want, p, len)) != 0)
		return r;
	if (need != 0 && *len > need)
		*len = need;
	return 0;
}

int
sftp_session_input_added(struct sftp_session *s, size_t len)
{
	return sftp_buf_added(&s->in, len);
}

int
sftp_session_input(struct sftp_session *s, const u_char *data, size_t len,
    size_t *used)
{
	u_char *p;
	size_t room, n;
	int r;

	*used = 0;
	if ((r = sftp_session_process(s)) != 0)
		return r;
	while (*used < len && sftp_session_wants_input(s)) {
		if ((r = sftp_session_input_space(s, &p, &room)) != 0)
			return r;
		n = len - *used < room ? len - *used : room;
		memcpy(p, data + *used, n);
		if ((r = sftp_session_input_added(s, n)) != 0)
			return r;
		*used += n;
		if ((r = sftp_session_process(s)) != 0)
			return r;
	}
	return 0;
}

int
sftp_session_wants_input(const struct sftp_session *s)
{
	return sftp_buf_len(&s->out) < OUT_HIGH_WATER;
}

size_t
sftp_session_input_pending(const struct sftp_session *s)
{
	return sftp_buf_len(&s->in);
}

void
sftp_session_output(const struct sftp_session *s, const u_char **p,
    size_t *len)
{
	*p = sftp_buf_ptr(&s->out);
	*len = sftp_buf_len(&s->out);
}

void
sftp_session_output_consume(struct sftp_session *s, size_t len)
{
	/* The buffer keeps its allocation: it is bounded by OUT_BUF_MAX,
	 * and a download refills it at once. */
	if (sftp_buf_consume(&s->out, len) != 0)
		sftp_buf_reset(&s->out);
}
