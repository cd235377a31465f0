/*
 * libFuzzer harness: SFTP packet framing and the request field parsers of
 * sftp-codec.c, without the server.
 *
 * The input is a client byte stream.  It is poured into an owned buffer
 * in uneven chunks (sftp_buf_space/added, as the I/O loop reads), framed
 * with sftp_frame_check, and each packet is parsed field by field in the
 * shape its type has in protocol version 3.  Besides the sanitizers, a
 * run fails (abort) when the codec breaks its own contract:
 *   - a failed get consumed something;
 *   - a string or cstring points outside the packet;
 *   - attributes do not survive put then get unchanged;
 *   - a marked region's length is not what was put.
 */
#include "includes.h"

#include <sys/types.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sftp-codec.h"

#define STREAM_MAX	(64 * 1024)
#define FRAME_MAX	(32 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *) __attribute__((noreturn));

static void
die(const char *what)
{
	fprintf(stderr, "fuzz_sftp_codec: %s\n", what);
	abort();
}

/* A failed get must leave the read position where it was. */
static int
checked(struct sftp_buf *b, size_t before, int r)
{
	if (r != 0 && b->rpos != before)
		die("failed get consumed input");
	return r;
}

static int
get_u32(struct sftp_buf *b, uint32_t *v)
{
	return checked(b, b->rpos, sftp_get_u32(b, v));
}

static int
get_u64(struct sftp_buf *b, uint64_t *v)
{
	return checked(b, b->rpos, sftp_get_u64(b, v));
}

static int
get_string(struct sftp_buf *b)
{
	const u_char *start = b->data, *p;
	size_t before = b->rpos, len;
	int r;

	if ((r = checked(b, before, sftp_get_string(b, &p, &len))) != 0)
		return r;
	if (p < start + before + 4 || len > b->wpos - before - 4 ||
	    p + len != start + b->rpos)
		die("string outside the packet");
	return 0;
}

/* Into a buffer of `room` bytes: the short ones meet ENAMETOOLONG. */
static int
get_cstring(struct sftp_buf *b, size_t room)
{
	char dst[4096];
	size_t before = b->rpos;
	int r;

	if (room > sizeof(dst))
		room = sizeof(dst);
	memset(dst, 'X', sizeof(dst));
	if ((r = checked(b, before, sftp_get_cstring(b, dst, room))) != 0)
		return r;
	if (strlen(dst) >= room || strlen(dst) != b->rpos - before - 4)
		die("cstring not terminated where it ends");
	return 0;
}

static int
get_attrs(struct sftp_buf *b)
{
	struct sftp_attrs a, back;
	struct sftp_buf out, in;
	size_t before = b->rpos;
	int r;

	if ((r = checked(b, before, sftp_get_attrs(b, &a))) != 0)
		return r;
	/* Extended pairs are skipped, so they do not come back. */
	a.flags &= ~SSH2_FILEXFER_ATTR_EXTENDED;
	sftp_buf_init(&out, 256);
	if (sftp_put_attrs(&out, &a) != 0)
		die("put_attrs");
	sftp_buf_view(&in, sftp_buf_ptr(&out), sftp_buf_len(&out));
	if (sftp_get_attrs(&in, &back) != 0 || sftp_buf_len(&in) != 0)
		die("attrs put by us not read back");
	if ((back.flags != a.flags) ||
	    ((a.flags & SSH2_FILEXFER_ATTR_SIZE) && back.size != a.size) ||
	    ((a.flags & SSH2_FILEXFER_ATTR_UIDGID) &&
	    (back.uid != a.uid || back.gid != a.gid)) ||
	    ((a.flags & SSH2_FILEXFER_ATTR_PERMISSIONS) &&
	    back.perm != a.perm) ||
	    ((a.flags & SSH2_FILEXFER_ATTR_ACMODTIME) &&
	    (back.atime != a.atime || back.mtime != a.mtime)))
		die("attrs changed in a round trip");
	sftp_buf_free(&out);
	return 0;
}

/* The fields of one request, in its type's order; stops at the first
 * that does not parse, as a handler does. */
static void
parse_request(const u_char *p, size_t len)
{
	struct sftp_buf b;
	uint64_t u64;
	uint32_t id, u32;
	u_char type;

	sftp_buf_view(&b, p, len);
	if (checked(&b, 0, sftp_get_u8(&b, &type)) != 0)
		return;
	if (type == SSH2_FXP_INIT) {
		if (get_u32(&b, &u32) != 0)
			return;
		while (get_string(&b) == 0 && get_string(&b) == 0)
			;
		return;
	}
	if (get_u32(&b, &id) != 0)
		return;
	switch (type) {
	case SSH2_FXP_OPEN:
		(void)(get_cstring(&b, 4096) || get_u32(&b, &u32) ||
		    get_attrs(&b));
		break;
	case SSH2_FXP_CLOSE:
	case SSH2_FXP_FSTAT:
	case SSH2_FXP_READDIR:
		(void)get_string(&b);
		break;
	case SSH2_FXP_READ:
		(void)(get_string(&b) || get_u64(&b, &u64) ||
		    get_u32(&b, &u32));
		break;
	case SSH2_FXP_WRITE:
		(void)(get_string(&b) || get_u64(&b, &u64) ||
		    get_string(&b));
		break;
	case SSH2_FXP_LSTAT:
	case SSH2_FXP_STAT:
		(void)(get_cstring(&b, 4096) || get_u32(&b, &u32));
		break;
	case SSH2_FXP_OPENDIR:
	case SSH2_FXP_REMOVE:
	case SSH2_FXP_RMDIR:
	case SSH2_FXP_REALPATH:
	case SSH2_FXP_READLINK:
		(void)get_cstring(&b, 16 + (id & 0xff));
		break;
	case SSH2_FXP_SETSTAT:
	case SSH2_FXP_MKDIR:
		(void)(get_cstring(&b, 4096) || get_attrs(&b));
		break;
	case SSH2_FXP_FSETSTAT:
		(void)(get_string(&b) || get_attrs(&b));
		break;
	case SSH2_FXP_RENAME:
	case SSH2_FXP_SYMLINK:
		(void)(get_cstring(&b, 4096) || get_cstring(&b, 4096));
		break;
	case SSH2_FXP_EXTENDED:
		/* Name, then whatever strings and numbers follow. */
		if (get_string(&b) != 0)
			return;
		while (get_string(&b) == 0 || get_u64(&b, &u64) == 0 ||
		    get_u32(&b, &u32) == 0 || get_attrs(&b) == 0)
			;
		break;
	default:
		(void)get_attrs(&b);
		break;
	}
}

/* A reply built around the packet: the mark must hold its length. */
static void
echo_reply(const u_char *p, size_t len)
{
	struct sftp_buf out;
	size_t mark;
	int r;

	sftp_buf_init(&out, FRAME_MAX);
	if (sftp_put_mark(&out, &mark) != 0)
		die("put_mark");
	r = sftp_put_u8(&out, SSH2_FXP_DATA);
	if (r == 0)
		r = sftp_put_string(&out, p, len);
	if (r == 0) {
		r = sftp_put_mark_end(&out, mark, FRAME_MAX - 4);
		if (r == 0 && (sftp_buf_len(&out) != 4 + 1 + 4 + len ||
		    memcmp(sftp_buf_ptr(&out) + 9, p, len) != 0))
			die("marked reply length or content wrong");
	} else if (r != ENOBUFS)
		die("put failed with an unexpected error");
	if (r != 0 && r != EMSGSIZE && r != ENOBUFS)
		die("mark_end failed with an unexpected error");
	sftp_buf_free(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sftp_buf in;
	uint32_t rnd = (uint32_t)size * 2654435761u;
	size_t off = 0, avail, n, msglen;
	u_char *p;
	int r;

	sftp_buf_init(&in, STREAM_MAX);
	while (off < size) {
		if ((r = sftp_buf_space(&in, 4096, &p, &avail)) != 0)
			break;	/* full of an unfinished packet */
		rnd = rnd * 1103515245u + 12345u;
		n = 1 + (rnd >> 16) % 700;
		if (n > avail)
			n = avail;
		if (n > size - off)
			n = size - off;
		memcpy(p, data + off, n);
		if (sftp_buf_added(&in, n) != 0)
			die("added what space gave");
		off += n;
		for (;;) {
			r = sftp_frame_check(sftp_buf_ptr(&in),
			    sftp_buf_len(&in), FRAME_MAX, &msglen);
			if (r == EAGAIN)
				break;
			if (r != 0)
				goto out;	/* framing lost */
			parse_request(sftp_buf_ptr(&in) + 4, msglen);
			echo_reply(sftp_buf_ptr(&in) + 4, msglen);
			if (sftp_buf_consume(&in, 4 + msglen) != 0)
				die("consume of a framed packet");
		}
		sftp_buf_trim(&in, 8192);
	}
 out:
	sftp_buf_free(&in);
	return 0;
}
