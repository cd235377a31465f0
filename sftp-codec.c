/* SFTP wire format; see sftp-codec.h. */
#include "includes.h"

#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sftp-codec.h"

#define BUF_MIN_ALLOC	4096

void
sftp_buf_init(struct sftp_buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

void
sftp_buf_view(struct sftp_buf *b, const u_char *p, size_t len)
{
	memset(b, 0, sizeof(*b));
	/* The view never writes through data: puts fail on readonly. */
	b->data = (u_char *)(uintptr_t)p;
	b->wpos = len;
	b->max = len;
	b->readonly = 1;
}

void
sftp_buf_free(struct sftp_buf *b)
{
	if (!b->readonly)
		free(b->data);
	memset(b, 0, sizeof(*b));
}

void
sftp_buf_reset(struct sftp_buf *b)
{
	b->rpos = b->wpos = 0;
}

size_t
sftp_buf_len(const struct sftp_buf *b)
{
	return b->wpos - b->rpos;
}

const u_char *
sftp_buf_ptr(const struct sftp_buf *b)
{
	return b->data == NULL ? (const u_char *)"" : b->data + b->rpos;
}

int
sftp_buf_consume(struct sftp_buf *b, size_t len)
{
	if (len > b->wpos - b->rpos)
		return EBADMSG;
	b->rpos += len;
	/* An emptied owned buffer starts again at the front: appends never
	 * need to move data in the common request/reply rhythm. */
	if (b->rpos == b->wpos && !b->readonly)
		b->rpos = b->wpos = 0;
	return 0;
}

int
sftp_buf_reserve(struct sftp_buf *b, size_t len, u_char **p)
{
	size_t used, need, nalloc;
	u_char *n;

	if (b->readonly)
		return ENOBUFS;
	used = b->wpos - b->rpos;
	if (len > b->max || used > b->max - len)
		return ENOBUFS;
	need = used + len;
	if (b->wpos + len > b->alloc && b->rpos > 0) {
		/* Marks are kept relative to the unread data (see
		 * sftp_put_mark), so moving it to the front is safe. */
		memmove(b->data, b->data + b->rpos, used);
		b->wpos = used;
		b->rpos = 0;
	}
	if (need > b->alloc) {
		nalloc = b->alloc < BUF_MIN_ALLOC ? BUF_MIN_ALLOC : b->alloc;
		while (nalloc < need)
			nalloc = nalloc > SIZE_MAX / 2 ? need : nalloc * 2;
		if (nalloc > b->max)
			nalloc = b->max;
		if ((n = realloc(b->data, nalloc)) == NULL)
			return ENOMEM;
		b->data = n;
		b->alloc = nalloc;
	}
	*p = b->data + b->wpos;
	b->wpos += len;
	return 0;
}

int
sftp_buf_unput(struct sftp_buf *b, size_t len)
{
	if (b->readonly || len > b->wpos - b->rpos)
		return EINVAL;
	b->wpos -= len;
	return 0;
}

int
sftp_buf_space(struct sftp_buf *b, size_t want, u_char **p, size_t *avail)
{
	u_char *q;
	size_t used, room;
	int r;

	if (b->readonly)
		return ENOBUFS;
	used = b->wpos - b->rpos;
	room = b->max - used;
	if (want > room)
		want = room;
	if (want == 0)
		return ENOBUFS;
	if (b->alloc - b->wpos < want) {
		/* Let reserve compact or grow, then give the bytes back. */
		if ((r = sftp_buf_reserve(b, want, &q)) != 0)
			return r;
		b->wpos -= want;
	}
	*p = b->data + b->wpos;
	*avail = b->alloc - b->wpos;
	if (*avail > room)
		*avail = room;
	return 0;
}

int
sftp_buf_added(struct sftp_buf *b, size_t len)
{
	if (b->readonly || len > b->alloc - b->wpos ||
	    len > b->max - (b->wpos - b->rpos))
		return EINVAL;
	b->wpos += len;
	return 0;
}

void
sftp_buf_trim(struct sftp_buf *b, size_t keep)
{
	if (b->readonly || b->rpos != b->wpos || b->alloc <= keep)
		return;
	free(b->data);
	b->data = NULL;
	b->alloc = 0;
	b->rpos = b->wpos = 0;
}

static int
need(const struct sftp_buf *b, size_t len)
{
	return b->wpos - b->rpos < len ? EBADMSG : 0;
}

int
sftp_get_u8(struct sftp_buf *b, u_char *v)
{
	if (need(b, 1) != 0)
		return EBADMSG;
	*v = b->data[b->rpos];
	b->rpos++;
	return 0;
}

int
sftp_get_u32(struct sftp_buf *b, uint32_t *v)
{
	const u_char *p;

	if (need(b, 4) != 0)
		return EBADMSG;
	p = b->data + b->rpos;
	*v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | (uint32_t)p[3];
	b->rpos += 4;
	return 0;
}

int
sftp_get_u64(struct sftp_buf *b, uint64_t *v)
{
	const u_char *p;
	uint64_t x = 0;
	int i;

	if (need(b, 8) != 0)
		return EBADMSG;
	p = b->data + b->rpos;
	for (i = 0; i < 8; i++)
		x = x << 8 | p[i];
	*v = x;
	b->rpos += 8;
	return 0;
}

int
sftp_get_string(struct sftp_buf *b, const u_char **p, size_t *len)
{
	const u_char *q;
	uint32_t n;

	if (need(b, 4) != 0)
		return EBADMSG;
	q = b->data + b->rpos;
	n = (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 |
	    (uint32_t)q[2] << 8 | (uint32_t)q[3];
	/* Checked against what is there, never against a sum that could
	 * wrap: the length is the peer's. */
	if (b->wpos - b->rpos - 4 < n)
		return EBADMSG;
	*p = q + 4;
	*len = n;
	b->rpos += 4 + (size_t)n;
	return 0;
}

int
sftp_get_cstring(struct sftp_buf *b, char *dst, size_t dstlen)
{
	struct sftp_buf save = *b;
	const u_char *p;
	size_t len;
	int r;

	if ((r = sftp_get_string(b, &p, &len)) != 0)
		return r;
	if (memchr(p, '\0', len) != NULL) {
		*b = save;
		return EBADMSG;
	}
	if (dstlen == 0 || len > dstlen - 1) {
		*b = save;
		return ENAMETOOLONG;
	}
	memcpy(dst, p, len);
	dst[len] = '\0';
	return 0;
}

int
sftp_put_u8(struct sftp_buf *b, u_char v)
{
	u_char *p;
	int r;

	if ((r = sftp_buf_reserve(b, 1, &p)) != 0)
		return r;
	p[0] = v;
	return 0;
}

static void
store_u32(u_char *p, uint32_t v)
{
	p[0] = (u_char)(v >> 24);
	p[1] = (u_char)(v >> 16);
	p[2] = (u_char)(v >> 8);
	p[3] = (u_char)v;
}

int
sftp_put_u32(struct sftp_buf *b, uint32_t v)
{
	u_char *p;
	int r;

	if ((r = sftp_buf_reserve(b, 4, &p)) != 0)
		return r;
	store_u32(p, v);
	return 0;
}

int
sftp_put_u64(struct sftp_buf *b, uint64_t v)
{
	u_char *p;
	int r, i;

	if ((r = sftp_buf_reserve(b, 8, &p)) != 0)
		return r;
	for (i = 7; i >= 0; i--) {
		p[i] = (u_char)v;
		v >>= 8;
	}
	return 0;
}

int
sftp_put_string(struct sftp_buf *b, const void *s, size_t len)
{
	u_char *p;
	int r;

	if (len > UINT32_MAX || len > SIZE_MAX - 4)
		return ENOBUFS;
	if ((r = sftp_buf_reserve(b, 4 + len, &p)) != 0)
		return r;
	store_u32(p, (uint32_t)len);
	if (len > 0)
		memcpy(p + 4, s, len);
	return 0;
}

int
sftp_put_cstring(struct sftp_buf *b, const char *s)
{
	return sftp_put_string(b, s, s == NULL ? 0 : strlen(s));
}

int
sftp_put_mark(struct sftp_buf *b, size_t *mark)
{
	size_t before = b->wpos - b->rpos;
	int r;

	if ((r = sftp_put_u32(b, 0)) != 0)
		return r;
	/* wpos - rpos may have been rebased by a compaction in reserve. */
	*mark = before;
	return 0;
}

int
sftp_put_mark_end(struct sftp_buf *b, size_t mark, size_t limit)
{
	size_t at = b->rpos + mark, len;

	if (b->readonly || at + 4 > b->wpos)
		return EINVAL;
	len = b->wpos - at - 4;
	if (len > limit || len > UINT32_MAX) {
		b->wpos = at;
		return EMSGSIZE;
	}
	store_u32(b->data + at, (uint32_t)len);
	return 0;
}

int
sftp_put_mark_value(struct sftp_buf *b, size_t mark, uint32_t v)
{
	size_t at = b->rpos + mark;

	if (b->readonly || at + 4 > b->wpos)
		return EINVAL;
	store_u32(b->data + at, v);
	return 0;
}

void
sftp_put_mark_cancel(struct sftp_buf *b, size_t mark)
{
	size_t at = b->rpos + mark;

	if (!b->readonly && at <= b->wpos)
		b->wpos = at;
}

int
sftp_frame_check(const u_char *p, size_t avail, size_t maxlen, size_t *msglen)
{
	uint32_t n;

	if (avail < 4)
		return EAGAIN;
	n = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | (uint32_t)p[3];
	if (n > maxlen)
		return EMSGSIZE;
	if (avail - 4 < n)
		return EAGAIN;
	*msglen = n;
	return 0;
}

void
sftp_attrs_clear(struct sftp_attrs *a)
{
	memset(a, 0, sizeof(*a));
}

void
sftp_attrs_from_stat(struct sftp_attrs *a, const struct stat *st)
{
	sftp_attrs_clear(a);
	a->flags = SSH2_FILEXFER_ATTR_SIZE | SSH2_FILEXFER_ATTR_UIDGID |
	    SSH2_FILEXFER_ATTR_PERMISSIONS | SSH2_FILEXFER_ATTR_ACMODTIME;
	a->size = (uint64_t)st->st_size;
	a->uid = (uint32_t)st->st_uid;
	a->gid = (uint32_t)st->st_gid;
	a->perm = (uint32_t)st->st_mode;
	/* Version 3 has 32-bit times: truncation is the format's. */
	a->atime = (uint32_t)st->st_atime;
	a->mtime = (uint32_t)st->st_mtime;
}

int
sftp_get_attrs(struct sftp_buf *b, struct sftp_attrs *a)
{
	struct sftp_buf save = *b;
	const u_char *p;
	size_t len;
	uint32_t count, i;
	int r;

	sftp_attrs_clear(a);
	if ((r = sftp_get_u32(b, &a->flags)) != 0)
		goto out;
	if ((a->flags & SSH2_FILEXFER_ATTR_SIZE) &&
	    (r = sftp_get_u64(b, &a->size)) != 0)
		goto out;
	if ((a->flags & SSH2_FILEXFER_ATTR_UIDGID) &&
	    ((r = sftp_get_u32(b, &a->uid)) != 0 ||
	    (r = sftp_get_u32(b, &a->gid)) != 0))
		goto out;
	if ((a->flags & SSH2_FILEXFER_ATTR_PERMISSIONS) &&
	    (r = sftp_get_u32(b, &a->perm)) != 0)
		goto out;
	if ((a->flags & SSH2_FILEXFER_ATTR_ACMODTIME) &&
	    ((r = sftp_get_u32(b, &a->atime)) != 0 ||
	    (r = sftp_get_u32(b, &a->mtime)) != 0))
		goto out;
	if (a->flags & SSH2_FILEXFER_ATTR_EXTENDED) {
		if ((r = sftp_get_u32(b, &count)) != 0)
			goto out;
		/* Each pair is two strings: at least 8 bytes, so a huge count
		 * fails on the data, not by looping for ever. */
		for (i = 0; i < count; i++) {
			if ((r = sftp_get_string(b, &p, &len)) != 0 ||
			    (r = sftp_get_string(b, &p, &len)) != 0)
				goto out;
		}
	}
 out:
	if (r != 0)
		*b = save;
	return r;
}

int
sftp_put_attrs(struct sftp_buf *b, const struct sftp_attrs *a)
{
	size_t before = b->wpos - b->rpos;
	uint32_t flags = a->flags & ~SSH2_FILEXFER_ATTR_EXTENDED;
	int r;

	if ((r = sftp_put_u32(b, flags)) != 0)
		goto out;
	if ((flags & SSH2_FILEXFER_ATTR_SIZE) &&
	    (r = sftp_put_u64(b, a->size)) != 0)
		goto out;
	if ((flags & SSH2_FILEXFER_ATTR_UIDGID) &&
	    ((r = sftp_put_u32(b, a->uid)) != 0 ||
	    (r = sftp_put_u32(b, a->gid)) != 0))
		goto out;
	if ((flags & SSH2_FILEXFER_ATTR_PERMISSIONS) &&
	    (r = sftp_put_u32(b, a->perm)) != 0)
		goto out;
	if ((flags & SSH2_FILEXFER_ATTR_ACMODTIME) &&
	    ((r = sftp_put_u32(b, a->atime)) != 0 ||
	    (r = sftp_put_u32(b, a->mtime)) != 0))
		goto out;
 out:
	if (r != 0)
		b->wpos = b->rpos + before;
	return r;
}
