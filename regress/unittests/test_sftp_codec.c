/*
 * Unit tests for sftp-codec.c (the checked buffer, framing, attributes)
 * and, through the session interface of sftp-server.h, the guarantees a
 * fuzzer relies on: malformed input is answered and skipped, output stays
 * bounded, nothing is read past a packet.
 */
#include "includes.h"

#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "sftp-codec.h"
#include "sftp-server.h"
#include "test_helper.h"

static void
test_roundtrip(void)
{
	struct sftp_buf b;
	const u_char *p;
	size_t len;
	uint64_t v64;
	uint32_t v32;
	u_char v8;
	char s[16];

	TEST_START("sftp_buf: put then get every type");
	sftp_buf_init(&b, 1024);
	ASSERT_INT_EQ(sftp_put_u8(&b, 0xab), 0);
	ASSERT_INT_EQ(sftp_put_u32(&b, 0x01020304), 0);
	ASSERT_INT_EQ(sftp_put_u64(&b, 0x1122334455667788ULL), 0);
	ASSERT_INT_EQ(sftp_put_string(&b, "ab\0c", 4), 0);
	ASSERT_INT_EQ(sftp_put_cstring(&b, "hello"), 0);
	ASSERT_INT_EQ(sftp_buf_len(&b), 1 + 4 + 8 + 8 + 9);
	/* Big-endian on the wire. */
	ASSERT_MEM_EQ(sftp_buf_ptr(&b), "\xab\x01\x02\x03\x04\x11\x22", 7);

	ASSERT_INT_EQ(sftp_get_u8(&b, &v8), 0);
	ASSERT_INT_EQ(v8, 0xab);
	ASSERT_INT_EQ(sftp_get_u32(&b, &v32), 0);
	ASSERT_INT_EQ(v32, 0x01020304);
	ASSERT_INT_EQ(sftp_get_u64(&b, &v64), 0);
	ASSERT_TRUE(v64 == 0x1122334455667788ULL);
	ASSERT_INT_EQ(sftp_get_string(&b, &p, &len), 0);
	ASSERT_INT_EQ(len, 4);
	ASSERT_MEM_EQ(p, "ab\0c", 4);
	ASSERT_INT_EQ(sftp_get_cstring(&b, s, sizeof(s)), 0);
	ASSERT_STR_EQ(s, "hello");
	ASSERT_INT_EQ(sftp_buf_len(&b), 0);
	ASSERT_INT_EQ(sftp_get_u8(&b, &v8), EBADMSG);
	sftp_buf_free(&b);
	TEST_DONE();
}

/* Every prefix of a valid message must fail cleanly, consuming nothing. */
static void
test_truncation(void)
{
	struct sftp_buf b, v;
	struct sftp_attrs a;
	const u_char *p;
	size_t len, cut, left;
	uint32_t v32;
	uint64_t v64;
	char s[64];
	int r, complete = 0;

	TEST_START("sftp_buf: every truncation fails without consuming");
	sftp_buf_init(&b, 4096);
	sftp_attrs_clear(&a);
	a.flags = SSH2_FILEXFER_ATTR_SIZE | SSH2_FILEXFER_ATTR_UIDGID |
	    SSH2_FILEXFER_ATTR_PERMISSIONS | SSH2_FILEXFER_ATTR_ACMODTIME;
	a.size = 12345;
	ASSERT_INT_EQ(sftp_put_u32(&b, 7), 0);
	ASSERT_INT_EQ(sftp_put_cstring(&b, "some/path"), 0);
	ASSERT_INT_EQ(sftp_put_u64(&b, 99), 0);
	ASSERT_INT_EQ(sftp_put_attrs(&b, &a), 0);
	for (cut = 0; cut <= sftp_buf_len(&b); cut++) {
		sftp_buf_view(&v, sftp_buf_ptr(&b), cut);
		r = 0;
		if ((r = sftp_get_u32(&v, &v32)) != 0 ||
		    (r = sftp_get_cstring(&v, s, sizeof(s))) != 0 ||
		    (r = sftp_get_u64(&v, &v64)) != 0 ||
		    (r = sftp_get_attrs(&v, &a)) != 0) {
			left = sftp_buf_len(&v);
			/* The failing get left its bytes in place. */
			if (!ASSERT_INT_EQ(r, EBADMSG) ||
			    !ASSERT_INT_LE(left, cut))
				break;
			/* Whatever is read from what is left stays inside
			 * the view. */
			if (sftp_get_string(&v, &p, &len) == 0)
				ASSERT_INT_LE(p + len - sftp_buf_ptr(&b), cut);
			continue;
		}
		complete++;
		ASSERT_INT_EQ(cut, sftp_buf_len(&b));
		ASSERT_STR_EQ(s, "some/path");
		ASSERT_INT_EQ(a.size, 12345);
	}
	ASSERT_INT_EQ(complete, 1);
	sftp_buf_free(&b);
	TEST_DONE();
}

static void
test_strings(void)
{
	static const u_char huge[] = { 0xff, 0xff, 0xff, 0xf0, 'a', 'b' };
	static const u_char nul[] = { 0, 0, 0, 3, 'a', 0, 'b' };
	static const u_char ok[] = { 0, 0, 0, 3, 'a', 'b', 'c' };
	struct sftp_buf v;
	const u_char *p;
	size_t len;
	char s[4];

	TEST_START("sftp_buf: string lengths from the wire are checked");
	sftp_buf_view(&v, huge, sizeof(huge));
	ASSERT_INT_EQ(sftp_get_string(&v, &p, &len), EBADMSG);
	ASSERT_INT_EQ(sftp_buf_len(&v), sizeof(huge));
	ASSERT_INT_EQ(sftp_get_cstring(&v, s, sizeof(s)), EBADMSG);

	sftp_buf_view(&v, nul, sizeof(nul));
	ASSERT_INT_EQ(sftp_get_cstring(&v, s, sizeof(s)), EBADMSG);
	ASSERT_INT_EQ(sftp_buf_len(&v), sizeof(nul));
	/* As bytes it is fine. */
	ASSERT_INT_EQ(sftp_get_string(&v, &p, &len), 0);
	ASSERT_INT_EQ(len, 3);

	sftp_buf_view(&v, ok, sizeof(ok));
	ASSERT_INT_EQ(sftp_get_cstring(&v, s, 3), ENAMETOOLONG);
	ASSERT_INT_EQ(sftp_buf_len(&v), sizeof(ok));
	ASSERT_INT_EQ(sftp_get_cstring(&v, s, sizeof(s)), 0);
	ASSERT_STR_EQ(s, "abc");
	TEST_DONE();
}

static void
test_limits(void)
{
	struct sftp_buf b, v;
	u_char *p;
	size_t i;

	TEST_START("sftp_buf: growth stops at max; views are read-only");
	sftp_buf_init(&b, 10);
	ASSERT_INT_EQ(sftp_put_u64(&b, 1), 0);
	ASSERT_INT_EQ(sftp_put_u32(&b, 1), ENOBUFS);
	ASSERT_INT_EQ(sftp_buf_len(&b), 8);
	ASSERT_INT_EQ(sftp_put_string(&b, "xx", 2), ENOBUFS);
	ASSERT_INT_EQ(sftp_buf_len(&b), 8);
	ASSERT_INT_EQ(sftp_buf_reserve(&b, SIZE_MAX, &p), ENOBUFS);
	/* Reading from the front makes room again. */
	ASSERT_INT_EQ(sftp_buf_consume(&b, 4), 0);
	ASSERT_INT_EQ(sftp_put_u32(&b, 0x41424344), 0);
	ASSERT_INT_EQ(sftp_buf_len(&b), 8);
	ASSERT_MEM_EQ(sftp_buf_ptr(&b) + 4, "ABCD", 4);
	ASSERT_INT_EQ(sftp_buf_consume(&b, 9), EBADMSG);
	sftp_buf_free(&b);

	sftp_buf_view(&v, (const u_char *)"abcd", 4);
	ASSERT_INT_EQ(sftp_put_u8(&v, 1), ENOBUFS);
	ASSERT_INT_EQ(sftp_buf_unput(&v, 1), EINVAL);
	ASSERT_INT_EQ(sftp_buf_len(&v), 4);

	/* Many small puts through reallocation keep the content. */
	sftp_buf_init(&b, 1 << 20);
	for (i = 0; i < 100000; i++) {
		if (!ASSERT_INT_EQ(sftp_put_u8(&b, (u_char)i), 0))
			break;
	}
	for (i = 0; i < 100000; i++) {
		if (sftp_buf_ptr(&b)[i] != (u_char)i) {
			TEST_FAIL("byte %zu changed", i);
			break;
		}
	}
	sftp_buf_trim(&b, 0);	/* not empty: keeps everything */
	ASSERT_INT_EQ(sftp_buf_len(&b), 100000);
	sftp_buf_reset(&b);
	sftp_buf_trim(&b, 0);
	ASSERT_INT_EQ(sftp_buf_len(&b), 0);
	ASSERT_INT_EQ(sftp_put_u8(&b, 7), 0);
	sftp_buf_free(&b);
	TEST_DONE();
}

static void
test_marks(void)
{
	struct sftp_buf b;
	size_t mark, inner;
	uint32_t v32;
	u_char *p;

	TEST_START("sftp_buf: length marks, limits and cancel");
	sftp_buf_init(&b, 1 << 16);
	ASSERT_INT_EQ(sftp_put_mark(&b, &mark), 0);
	ASSERT_INT_EQ(sftp_put_u8(&b, 101), 0);
	ASSERT_INT_EQ(sftp_put_mark(&b, &inner), 0);
	ASSERT_INT_EQ(sftp_put_cstring(&b, "x"), 0);
	ASSERT_INT_EQ(sftp_put_mark_end(&b, inner, 100), 0);
	ASSERT_INT_EQ(sftp_put_mark_end(&b, mark, 100), 0);
	ASSERT_INT_EQ(sftp_get_u32(&b, &v32), 0);
	ASSERT_INT_EQ(v32, 1 + 4 + 5);
	ASSERT_INT_EQ(sftp_buf_len(&b), v32);
	ASSERT_MEM_EQ(sftp_buf_ptr(&b), "\x65\0\0\0\x05\0\0\0\x01x", 10);
	sftp_buf_reset(&b);

	/* Over the limit: the region is removed. */
	ASSERT_INT_EQ(sftp_put_u8(&b, 1), 0);
	ASSERT_INT_EQ(sftp_put_mark(&b, &mark), 0);
	ASSERT_INT_EQ(sftp_put_string(&b, "0123456789", 10), 0);
	ASSERT_INT_EQ(sftp_put_mark_end(&b, mark, 13), EMSGSIZE);
	ASSERT_INT_EQ(sftp_buf_len(&b), 1);
	ASSERT_INT_EQ(sftp_put_mark(&b, &mark), 0);
	ASSERT_INT_EQ(sftp_put_u32(&b, 5), 0);
	sftp_put_mark_cancel(&b, mark);
	ASSERT_INT_EQ(sftp_buf_len(&b), 1);

	/* A mark survives the data moving to the front of the buffer. */
	sftp_buf_free(&b);
	sftp_buf_init(&b, 64);
	ASSERT_INT_EQ(sftp_buf_reserve(&b, 40, &p), 0);
	memset(p, 'z', 40);
	ASSERT_INT_EQ(sftp_buf_consume(&b, 38), 0);
	ASSERT_INT_EQ(sftp_put_mark(&b, &mark), 0);
	ASSERT_INT_EQ(sftp_buf_reserve(&b, 50, &p), 0);
	memset(p, 'y', 50);
	ASSERT_INT_EQ(sftp_put_mark_value(&b, mark, 0x01020304), 0);
	ASSERT_MEM_EQ(sftp_buf_ptr(&b), "zz\x01\x02\x03\x04yy", 8);
	sftp_buf_free(&b);
	TEST_DONE();
}

static void
test_space(void)
{
	struct sftp_buf b;
	u_char *p;
	size_t avail;

	TEST_START("sftp_buf: zero-copy filling respects max");
	sftp_buf_init(&b, 100);
	ASSERT_INT_EQ(sftp_buf_space(&b, 1000, &p, &avail), 0);
	ASSERT_INT_EQ(avail, 100);
	memcpy(p, "abcdef", 6);
	ASSERT_INT_EQ(sftp_buf_added(&b, 6), 0);
	ASSERT_INT_EQ(sftp_buf_added(&b, 95), EINVAL);
	ASSERT_INT_EQ(sftp_buf_consume(&b, 2), 0);
	ASSERT_INT_EQ(sftp_buf_space(&b, 1000, &p, &avail), 0);
	ASSERT_INT_EQ(avail, 96);
	ASSERT_MEM_EQ(sftp_buf_ptr(&b), "cdef", 4);
	ASSERT_INT_EQ(sftp_buf_added(&b, 96), 0);
	ASSERT_INT_EQ(sftp_buf_space(&b, 1, &p, &avail), ENOBUFS);
	sftp_buf_free(&b);
	TEST_DONE();
}

static void
test_frame(void)
{
	u_char pkt[8] = { 0, 0, 0, 4, 1, 2, 3, 4 };
	size_t len = 0;

	TEST_START("sftp_frame_check: complete, partial, oversized");
	ASSERT_INT_EQ(sftp_frame_check(pkt, 0, 100, &len), EAGAIN);
	ASSERT_INT_EQ(sftp_frame_check(pkt, 3, 100, &len), EAGAIN);
	ASSERT_INT_EQ(sftp_frame_check(pkt, 7, 100, &len), EAGAIN);
	ASSERT_INT_EQ(sftp_frame_check(pkt, 8, 100, &len), 0);
	ASSERT_INT_EQ(len, 4);
	ASSERT_INT_EQ(sftp_frame_check(pkt, 8, 3, &len), EMSGSIZE);
	pkt[0] = 0xff;
	ASSERT_INT_EQ(sftp_frame_check(pkt, 8, SFTP_MAX_MSG, &len), EMSGSIZE);
	/* Oversize is known from the header alone. */
	ASSERT_INT_EQ(sftp_frame_check(pkt, 4, SFTP_MAX_MSG, &len), EMSGSIZE);
	TEST_DONE();
}

static void
test_attrs(void)
{
	struct sftp_attrs a, c;
	struct sftp_buf b;
	struct stat st;

	TEST_START("sftp_attrs: encode, decode, extended pairs skipped");
	memset(&st, 0, sizeof(st));
	st.st_size = 5000000000LL;
	st.st_uid = 1000;
	st.st_gid = 100;
	st.st_mode = S_IFREG | 0640;
	st.st_atime = 1700000000;
	st.st_mtime = 1600000000;
	sftp_attrs_from_stat(&a, &st);
	ASSERT_INT_EQ(a.flags, 0xf);
	sftp_buf_init(&b, 1024);
	ASSERT_INT_EQ(sftp_put_attrs(&b, &a), 0);
	ASSERT_INT_EQ(sftp_buf_len(&b), 4 + 8 + 8 + 4 + 8);
	ASSERT_INT_EQ(sftp_get_attrs(&b, &c), 0);
	ASSERT_INT_EQ(memcmp(&a, &c, sizeof(a)), 0);
	ASSERT_INT_EQ(c.size, 5000000000LL);
	ASSERT_INT_EQ(c.perm, S_IFREG | 0640);

	/* Permissions plus two extended pairs, then a trailing byte. */
	sftp_buf_reset(&b);
	ASSERT_INT_EQ(sftp_put_u32(&b, SSH2_FILEXFER_ATTR_PERMISSIONS |
	    SSH2_FILEXFER_ATTR_EXTENDED), 0);
	ASSERT_INT_EQ(sftp_put_u32(&b, 0755), 0);
	ASSERT_INT_EQ(sftp_put_u32(&b, 2), 0);
	ASSERT_INT_EQ(sftp_put_cstring(&b, "a"), 0);
	ASSERT_INT_EQ(sftp_put_cstring(&b, "b"), 0);
	ASSERT_INT_EQ(sftp_put_cstring(&b, "c"), 0);
	ASSERT_INT_EQ(sftp_put_cstring(&b, ""), 0);
	ASSERT_INT_EQ(sftp_put_u8(&b, 9), 0);
	ASSERT_INT_EQ(sftp_get_attrs(&b, &c), 0);
	ASSERT_INT_EQ(c.perm, 0755);
	ASSERT_INT_EQ(sftp_buf_len(&b), 1);

	/* A count far beyond the data fails on the data. */
	sftp_buf_reset(&b);
	ASSERT_INT_EQ(sftp_put_u32(&b, SSH2_FILEXFER_ATTR_EXTENDED), 0);
	ASSERT_INT_EQ(sftp_put_u32(&b, 0xffffffff), 0);
	ASSERT_INT_EQ(sftp_put_cstring(&b, "a"), 0);
	ASSERT_INT_EQ(sftp_get_attrs(&b, &c), EBADMSG);
	ASSERT_INT_EQ(sftp_buf_len(&b), 4 + 4 + 5);
	/* Replies never carry the extended flag. */
	sftp_buf_reset(&b);
	c.flags = SSH2_FILEXFER_ATTR_EXTENDED;
	ASSERT_INT_EQ(sftp_put_attrs(&b, &c), 0);
	ASSERT_INT_EQ(sftp_buf_len(&b), 4);
	sftp_buf_free(&b);
	TEST_DONE();
}

/* Session helpers: feed bytes, collect every reply packet. */

static int
feed(struct sftp_session *s, const struct sftp_buf *in, struct sftp_buf *out)
{
	const u_char *p, *data = sftp_buf_ptr(in);
	size_t len = sftp_buf_len(in), used, n;
	u_char *q;
	int r, stalls = 0;

	while (len > 0) {
		if ((r = sftp_session_input(s, data, len, &used)) != 0)
			return r;
		data += used;
		len -= used;
		sftp_session_output(s, &p, &n);
		if (used == 0 && n == 0 && ++stalls > 2)
			return EDEADLK;
		if (n > 0) {
			if ((r = sftp_buf_reserve(out, n, &q)) != 0)
				return r;
			memcpy(q, p, n);
			sftp_session_output_consume(s, n);
		}
	}
	for (;;) {
		if ((r = sftp_session_process(s)) != 0)
			return r;
		sftp_session_output(s, &p, &n);
		if (n == 0)
			return 0;
		if ((r = sftp_buf_reserve(out, n, &q)) != 0)
			return r;
		memcpy(q, p, n);
		sftp_session_output_consume(s, n);
	}
}

static void
put_packet(struct sftp_buf *b, u_char type, uint32_t id, const char *s1)
{
	size_t mark;

	sftp_put_mark(b, &mark);
	sftp_put_u8(b, type);
	sftp_put_u32(b, id);
	if (s1 != NULL)
		sftp_put_cstring(b, s1);
	sftp_put_mark_end(b, mark, SFTP_MAX_MSG);
}

/* Next reply: its type and id (0 for VERSION). */
static int
next_reply(struct sftp_buf *out, u_char *type, uint32_t *id, uint32_t *code)
{
	struct sftp_buf pkt;
	const u_char *p;
	size_t len;
	uint32_t n;
	int r;

	*code = 0xffffffff;
	if ((r = sftp_get_u32(out, &n)) != 0 || sftp_buf_len(out) < n)
		return EBADMSG;
	p = sftp_buf_ptr(out);
	len = n;
	sftp_buf_view(&pkt, p, len);
	if ((r = sftp_get_u8(&pkt, type)) != 0 ||
	    (r = sftp_get_u32(&pkt, id)) != 0)
		return r;
	if (*type == SSH2_FXP_STATUS && (r = sftp_get_u32(&pkt, code)) != 0)
		return r;
	return sftp_buf_consume(out, len);
}

static void
test_session_bad_input(void)
{
	struct sftp_server_opts opts;
	struct sftp_session *s = NULL;
	struct sftp_buf in, out;
	u_char type;
	uint32_t id, code;
	size_t mark;

	TEST_START("sftp_session: malformed requests answered, session lives");
	memset(&opts, 0, sizeof(opts));
	opts.user = "test";
	sftp_buf_init(&in, 1 << 20);
	sftp_buf_init(&out, 1 << 24);
	if (!ASSERT_INT_EQ(sftp_session_new(&opts, &s), 0))
		goto out;
	/* A request before INIT is refused, not fatal. */
	put_packet(&in, SSH2_FXP_STAT, 1, "/");
	sftp_put_mark(&in, &mark);
	sftp_put_u8(&in, SSH2_FXP_INIT);
	sftp_put_u32(&in, 3);
	sftp_put_mark_end(&in, mark, SFTP_MAX_MSG);
	/* A string longer than its packet. */
	sftp_put_mark(&in, &mark);
	sftp_put_u8(&in, SSH2_FXP_STAT);
	sftp_put_u32(&in, 2);
	sftp_put_u32(&in, 1000);
	sftp_put_string(&in, "abc", 3);
	sftp_put_mark_end(&in, mark, SFTP_MAX_MSG);
	/* An unknown type, an unknown extension, an empty packet, a
	 * packet with no id, a bad handle. */
	put_packet(&in, 77, 3, NULL);
	put_packet(&in, SSH2_FXP_EXTENDED, 4, "nosuch@example.com");
	sftp_put_u32(&in, 0);
	sftp_put_mark(&in, &mark);
	sftp_put_u8(&in, SSH2_FXP_READ);
	sftp_put_mark_end(&in, mark, SFTP_MAX_MSG);
	put_packet(&in, SSH2_FXP_CLOSE, 5, "xyz");
	put_packet(&in, SSH2_FXP_STAT, 6, "/");
	if (!ASSERT_INT_EQ(feed(s, &in, &out), 0))
		goto out;

	ASSERT_INT_EQ(next_reply(&out, &type, &id, &code), 0);
	ASSERT_INT_EQ(type, SSH2_FXP_STATUS);
	ASSERT_INT_EQ(id, 1);
	ASSERT_INT_EQ(code, SSH2_FX_FAILURE);
	ASSERT_INT_EQ(next_reply(&out, &type, &id, &code), 0);
	ASSERT_INT_EQ(type, SSH2_FXP_VERSION);
	ASSERT_INT_EQ(id, 3);	/* the version */
	ASSERT_INT_EQ(next_reply(&out, &type, &id, &code), 0);
	ASSERT_INT_EQ(id, 2);
	ASSERT_INT_EQ(code, SSH2_FX_BAD_MESSAGE);
	ASSERT_INT_EQ(next_reply(&out, &type, &id, &code), 0);
	ASSERT_INT_EQ(id, 3);
	ASSERT_INT_EQ(code, SSH2_FX_OP_UNSUPPORTED);
	ASSERT_INT_EQ(next_reply(&out, &type, &id, &code), 0);
	ASSERT_INT_EQ(id, 4);
	ASSERT_INT_EQ(code, SSH2_FX_OP_UNSUPPORTED);
	ASSERT_INT_EQ(next_reply(&out, &type, &id, &code), 0);
	ASSERT_INT_EQ(id, 5);
	ASSERT_INT_EQ(code, SSH2_FX_NO_SUCH_FILE);
	ASSERT_INT_EQ(next_reply(&out, &type, &id, &code), 0);
	ASSERT_INT_EQ(type, SSH2_FXP_ATTRS);
	ASSERT_INT_EQ(id, 6);
	ASSERT_INT_EQ(sftp_buf_len(&out), 0);

	/* An oversized packet loses framing: the only fatal input. */
	sftp_buf_reset(&in);
	sftp_put_u32(&in, 0x7fffffff);
	sftp_put_u32(&in, 0);
	ASSERT_INT_EQ(feed(s, &in, &out), EMSGSIZE);
 out:
	sftp_session_free(s, "test over");
	sftp_buf_free(&in);
	sftp_buf_free(&out);
	TEST_DONE();
}

/*
 * Many tiny READs of a big file, with nobody draining the output between
 * input calls: the session must stop taking input rather than queue
 * replies without bound.
 */
static void
test_session_backpressure(void)
{
	char path[] = "/tmp/test_sftp_codec.XXXXXX";
	struct sftp_server_opts opts;
	struct sftp_session *s = NULL;
	struct sftp_buf in;
	const u_char *p;
	size_t mark, used, total = 0, n, maxout = 0;
	int fd = -1, i;

	TEST_START("sftp_session: output bounded, input held back");
	memset(&opts, 0, sizeof(opts));
	opts.user = "test";
	sftp_buf_init(&in, 1 << 22);
	if (!ASSERT_INT_NE(fd = mkstemp(path), -1))
		goto out;
	if (!ASSERT_INT_EQ(ftruncate(fd, 300000), 0) ||
	    !ASSERT_INT_EQ(sftp_session_new(&opts, &s), 0))
		goto out;
	sftp_put_mark(&in, &mark);
	sftp_put_u8(&in, SSH2_FXP_INIT);
	sftp_put_u32(&in, 3);
	sftp_put_mark_end(&in, mark, SFTP_MAX_MSG);
	sftp_put_mark(&in, &mark);
	sftp_put_u8(&in, SSH2_FXP_OPEN);
	sftp_put_u32(&in, 1);
	sftp_put_cstring(&in, path);
	sftp_put_u32(&in, SSH2_FXF_READ);
	sftp_put_u32(&in, 0);
	sftp_put_mark_end(&in, mark, SFTP_MAX_MSG);
	for (i = 0; i < 50000; i++) {
		sftp_put_mark(&in, &mark);
		sftp_put_u8(&in, SSH2_FXP_READ);
		sftp_put_u32(&in, 100 + i);
		sftp_put_string(&in, "\0\0\0\0", 4);
		sftp_put_u64(&in, 0);
		sftp_put_u32(&in, 261120);
		sftp_put_mark_end(&in, mark, SFTP_MAX_MSG);
	}
	/* Offer everything at once, drain only when nothing is taken. */
	while (sftp_buf_len(&in) > 0) {
		if (!ASSERT_INT_EQ(sftp_session_input(s, sftp_buf_ptr(&in),
		    sftp_buf_len(&in), &used), 0))
			break;
		sftp_buf_consume(&in, used);
		sftp_session_output(s, &p, &n);
		if (n > maxout)
			maxout = n;
		if (used == 0) {
			total += n;
			sftp_session_output_consume(s, n);
		}
	}
	ASSERT_INT_EQ(sftp_session_process(s), 0);
	sftp_session_output(s, &p, &n);
	total += n;
	/* 50000 replies of 261 KiB were asked for; never more than a few
	 * MiB were held. */
	ASSERT_INT_LE(maxout, 4 * 1024 * 1024);
	ASSERT_INT_GT(total, 1000000000LL);
	ASSERT_INT_EQ(sftp_session_handles(s), 1);
 out:
	sftp_session_free(s, "test over");
	if (fd >= 0) {
		close(fd);
		unlink(path);
	}
	sftp_buf_free(&in);
	TEST_DONE();
}

int
main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_set_filter(argc - 1, argv + 1);
	/* Sessions log "session opened" and malformed requests. */
	log_init("test_sftp_codec", LOG_LEVEL_QUIET, 0, 1);
	if (test_wanted("sftp_buf")) {
		test_roundtrip();
		test_truncation();
		test_strings();
		test_limits();
		test_marks();
		test_space();
	}
	if (test_wanted("sftp_frame_check"))
		test_frame();
	if (test_wanted("sftp_attrs"))
		test_attrs();
	if (test_wanted("sftp_session")) {
		test_session_bad_input();
		test_session_backpressure();
	}
	return test_exit_status();
}
