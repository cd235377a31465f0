/*
 * SFTP wire format: a checked byte buffer, packet framing and the file
 * attribute record of protocol version 3.
 *
 * Every get/put returns 0 or an errno value and writes its result through
 * a pointer, so a parser reads as a chain of calls joined by `||` and can
 * never read past the end of what it was given:
 *
 *	if ((r = sftp_get_u32(b, &id)) != 0 ||
 *	    (r = sftp_get_string(b, &p, &len)) != 0)
 *		goto out;
 *
 * Errors: EBADMSG for input that is short or malformed, ENAMETOOLONG for a
 * string too long for the caller's buffer, ENOBUFS when a buffer would grow
 * past its limit, ENOMEM when allocation fails.  A failed get consumes
 * nothing; a failed put appends nothing.
 */
#ifndef SFTP_CODEC_H
#define SFTP_CODEC_H

#include <sys/types.h>
#include <sys/stat.h>
#include <stddef.h>
#include <stdint.h>

/* Packet types (draft-ietf-secsh-filexfer-02). */
#define SSH2_FXP_INIT			1
#define SSH2_FXP_VERSION		2
#define SSH2_FXP_OPEN			3
#define SSH2_FXP_CLOSE			4
#define SSH2_FXP_READ			5
#define SSH2_FXP_WRITE			6
#define SSH2_FXP_LSTAT			7
#define SSH2_FXP_FSTAT			8
#define SSH2_FXP_SETSTAT		9
#define SSH2_FXP_FSETSTAT		10
#define SSH2_FXP_OPENDIR		11
#define SSH2_FXP_READDIR		12
#define SSH2_FXP_REMOVE			13
#define SSH2_FXP_MKDIR			14
#define SSH2_FXP_RMDIR			15
#define SSH2_FXP_REALPATH		16
#define SSH2_FXP_STAT			17
#define SSH2_FXP_RENAME			18
#define SSH2_FXP_READLINK		19
#define SSH2_FXP_SYMLINK		20
#define SSH2_FXP_STATUS			101
#define SSH2_FXP_HANDLE			102
#define SSH2_FXP_DATA			103
#define SSH2_FXP_NAME			104
#define SSH2_FXP_ATTRS			105
#define SSH2_FXP_EXTENDED		200
#define SSH2_FXP_EXTENDED_REPLY		201

/* Attribute flags. */
#define SSH2_FILEXFER_ATTR_SIZE		0x00000001
#define SSH2_FILEXFER_ATTR_UIDGID	0x00000002
#define SSH2_FILEXFER_ATTR_PERMISSIONS	0x00000004
#define SSH2_FILEXFER_ATTR_ACMODTIME	0x00000008
#define SSH2_FILEXFER_ATTR_EXTENDED	0x80000000

/* OPEN flags. */
#define SSH2_FXF_READ			0x00000001
#define SSH2_FXF_WRITE			0x00000002
#define SSH2_FXF_APPEND			0x00000004
#define SSH2_FXF_CREAT			0x00000008
#define SSH2_FXF_TRUNC			0x00000010
#define SSH2_FXF_EXCL			0x00000020

/* Status codes. */
#define SSH2_FX_OK			0
#define SSH2_FX_EOF			1
#define SSH2_FX_NO_SUCH_FILE		2
#define SSH2_FX_PERMISSION_DENIED	3
#define SSH2_FX_FAILURE			4
#define SSH2_FX_BAD_MESSAGE		5
#define SSH2_FX_NO_CONNECTION		6
#define SSH2_FX_CONNECTION_LOST		7
#define SSH2_FX_OP_UNSUPPORTED		8

/* statvfs@openssh.com f_flag bits. */
#define SSH2_FXE_STATVFS_ST_RDONLY	0x00000001
#define SSH2_FXE_STATVFS_ST_NOSUID	0x00000002

#define SFTP_PROTOCOL_VERSION		3
/* Largest packet we promise to accept and never exceed (limits@openssh.com). */
#define SFTP_MAX_MSG			(256 * 1024)

/*
 * A byte buffer with a read position.  Either it owns growing storage
 * (sftp_buf_init) or it is a read-only view of caller memory
 * (sftp_buf_view), which is how packets are parsed in place.
 */
struct sftp_buf {
	u_char *data;
	size_t alloc;		/* bytes allocated; 0 for a view */
	size_t rpos;		/* next byte to read */
	size_t wpos;		/* end of the data */
	size_t max;		/* growth limit */
	int readonly;		/* a view: puts fail */
};

void	sftp_buf_init(struct sftp_buf *b, size_t max);
void	sftp_buf_view(struct sftp_buf *b, const u_char *p, size_t len);
void	sftp_buf_free(struct sftp_buf *b);
/* Forget the contents, keep the allocation. */
void	sftp_buf_reset(struct sftp_buf *b);
/* Unread bytes and where they start. */
size_t	sftp_buf_len(const struct sftp_buf *b);
const u_char *sftp_buf_ptr(const struct sftp_buf *b);
/* Drop `len` unread bytes (EBADMSG if fewer are there). */
int	sftp_buf_consume(struct sftp_buf *b, size_t len);
/* Room for `len` more bytes at the end, appended uninitialised; the caller
 * fills *p and may give back what it did not use with sftp_buf_unput. */
int	sftp_buf_reserve(struct sftp_buf *b, size_t len, u_char **p);
int	sftp_buf_unput(struct sftp_buf *b, size_t len);
/* Zero-copy filling (reading a socket straight into the buffer): make at
 * least min(want, room left under max) contiguous bytes free after the
 * data, moving or growing it, and report where and how many; then record
 * how many were written there.  Nothing else may touch the buffer between
 * the two calls. */
int	sftp_buf_space(struct sftp_buf *b, size_t want, u_char **p,
	    size_t *avail);
int	sftp_buf_added(struct sftp_buf *b, size_t len);
/* Release storage beyond `keep` bytes when the buffer is empty again
 * (after a burst of large replies). */
void	sftp_buf_trim(struct sftp_buf *b, size_t keep);

int	sftp_get_u8(struct sftp_buf *b, u_char *v);
int	sftp_get_u32(struct sftp_buf *b, uint32_t *v);
int	sftp_get_u64(struct sftp_buf *b, uint64_t *v);
/* A string in place: *p points into the buffer, not NUL-terminated. */
int	sftp_get_string(struct sftp_buf *b, const u_char **p, size_t *len);
/* A string copied to `dst` and NUL-terminated: EBADMSG if it contains a
 * NUL, ENAMETOOLONG if it does not fit in `dstlen` (nothing consumed). */
int	sftp_get_cstring(struct sftp_buf *b, char *dst, size_t dstlen);

int	sftp_put_u8(struct sftp_buf *b, u_char v);
int	sftp_put_u32(struct sftp_buf *b, uint32_t v);
int	sftp_put_u64(struct sftp_buf *b, uint64_t v);
int	sftp_put_string(struct sftp_buf *b, const void *p, size_t len);
int	sftp_put_cstring(struct sftp_buf *b, const char *s);

/*
 * Length-prefixed regions (a packet, or a string built piecewise):
 * sftp_put_mark reserves the u32 length and returns its offset;
 * sftp_put_mark_end fills in the length of everything put since, failing
 * with EMSGSIZE (and removing the region) if it exceeds `limit`;
 * sftp_put_mark_cancel removes the region.
 */
int	sftp_put_mark(struct sftp_buf *b, size_t *mark);
int	sftp_put_mark_end(struct sftp_buf *b, size_t mark, size_t limit);
void	sftp_put_mark_cancel(struct sftp_buf *b, size_t mark);
/* Store a u32 (say, a count known only at the end) in a marked slot. */
int	sftp_put_mark_value(struct sftp_buf *b, size_t mark, uint32_t v);

/*
 * Framing of the input stream.  Given the bytes at the front of the
 * stream, report the length of the first packet's body: 0 and *msglen
 * when the whole packet is there, EAGAIN when more bytes are needed,
 * EMSGSIZE when the announced length exceeds `maxlen` (framing is lost).
 */
int	sftp_frame_check(const u_char *p, size_t avail, size_t maxlen,
	    size_t *msglen);

/* File attributes as protocol version 3 carries them. */
struct sftp_attrs {
	uint32_t flags;
	uint64_t size;
	uint32_t uid;
	uint32_t gid;
	uint32_t perm;
	uint32_t atime;
	uint32_t mtime;
};

void	sftp_attrs_clear(struct sftp_attrs *a);
void	sftp_attrs_from_stat(struct sftp_attrs *a, const struct stat *st);
/* Extended attribute pairs are checked for framing and skipped. */
int	sftp_get_attrs(struct sftp_buf *b, struct sftp_attrs *a);
int	sftp_put_attrs(struct sftp_buf *b, const struct sftp_attrs *a);

#endif /* SFTP_CODEC_H */
