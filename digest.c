/*
 * Hashing for uploads and check-file: see digest.h.
 */
#include "includes.h"

#include <sys/types.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#ifdef WITH_OPENSSL
# include <openssl/evp.h>
#endif

#include "digest.h"

/* Read-back buffer: below glibc's mmap threshold, so it is reused from
 * the heap rather than mapped and unmapped on every call. */
#define DIGEST_READ_CHUNK	(64 * 1024)

struct digest_algo {
	const char *name;	/* the filexfer draft's */
	const char *iana;	/* IANA's "Hash Function Textual Names" */
	size_t size;
#ifdef WITH_OPENSSL
	const EVP_MD *(*md)(void);
#endif
};

struct digest_ctx {
	const struct digest_algo *algo;
#ifdef WITH_OPENSSL
	EVP_MD_CTX *evp;
#endif
};

#ifdef WITH_OPENSSL
# define ALGO(n, i, s, f)	{ n, i, s, f }
#else
# define ALGO(n, i, s, f)	{ n, i, s }
#endif

/* The draft's order, which is also the VERSION packet's. */
static const struct digest_algo algos[] = {
	ALGO("md5", "md5", 16, EVP_md5),
	ALGO("sha1", "sha-1", 20, EVP_sha1),
	ALGO("sha224", "sha-224", 28, EVP_sha224),
	ALGO("sha256", "sha-256", 32, EVP_sha256),
	ALGO("sha384", "sha-384", 48, EVP_sha384),
	ALGO("sha512", "sha-512", 64, EVP_sha512),
};
#define NALGOS	(sizeof(algos) / sizeof(algos[0]))

int
digest_available(void)
{
#ifdef WITH_OPENSSL
	return 1;
#else
	return 0;
#endif
}

static int
name_is(const char *want, const char *name, size_t len)
{
	return strlen(want) == len && strncasecmp(want, name, len) == 0;
}

#ifdef WITH_OPENSSL
/* Can this OpenSSL hash with it?  A FIPS provider refuses MD5 at init. */
static int
algo_usable(const struct digest_algo *a)
{
	EVP_MD_CTX *c;
	int ok;

	if ((c = EVP_MD_CTX_new()) == NULL)
		return 0;
	ok = EVP_DigestInit_ex(c, a->md(), NULL) == 1;
	EVP_MD_CTX_free(c);
	return ok;
}
#endif

const struct digest_algo *
digest_algo_find(const char *name, size_t len)
{
#ifdef WITH_OPENSSL
	size_t i;

	for (i = 0; i < NALGOS; i++) {
		if ((name_is(algos[i].name, name, len) ||
		    name_is(algos[i].iana, name, len)) &&
		    algo_usable(&algos[i]))
			return &algos[i];
	}
#else
	(void)name;
	(void)len;
	(void)name_is;
#endif
	return NULL;
}

const struct digest_algo *
digest_sha256(void)
{
	return digest_algo_find("sha256", 6);
}

const char *
digest_algo_name(const struct digest_algo *a)
{
	return a->name;
}

size_t
digest_algo_size(const struct digest_algo *a)
{
	return a->size;
}

void
digest_algo_list(char *buf, size_t len)
{
	size_t n = 0;
#ifdef WITH_OPENSSL
	size_t i;
	int w;

	for (i = 0; i < NALGOS && len > 0; i++) {
		if (!algo_usable(&algos[i]))
			continue;
		w = snprintf(buf + n, len - n, "%s%s", n > 0 ? "," : "",
		    algos[i].name);
		if (w < 0 || (size_t)w >= len - n)
			break;		/* the caller's buffer is too small */
		n += (size_t)w;
	}
#endif
	if (len > 0)
		buf[n] = '\0';
}

int
digest_start(const struct digest_algo *a, struct digest_ctx **cp)
{
#ifdef WITH_OPENSSL
	struct digest_ctx *c;
	int r = 0;

	*cp = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return ENOMEM;
	c->algo = a;
	if ((c->evp = EVP_MD_CTX_new()) == NULL) {
		r = ENOMEM;
		goto out;
	}
	if (EVP_DigestInit_ex(c->evp, a->md(), NULL) != 1) {
		r = ENOTSUP;
		goto out;
	}
	*cp = c;
	c = NULL;
 out:
	digest_free(c);
	return r;
#else
	(void)a;
	*cp = NULL;
	return ENOTSUP;
#endif
}

int
digest_update(struct digest_ctx *c, const void *buf, size_t len)
{
#ifdef WITH_OPENSSL
	if (len == 0)
		return 0;
	return EVP_DigestUpdate(c->evp, buf, len) == 1 ? 0 : EIO;
#else
	(void)c;
	(void)buf;
	(void)len;
	return ENOTSUP;
#endif
}

int
digest_finish(struct digest_ctx *c, unsigned char *out)
{
#ifdef WITH_OPENSSL
	unsigned int n = 0;

	if (EVP_DigestFinal_ex(c->evp, out, &n) != 1 || n != c->algo->size)
		return EIO;
	return EVP_DigestInit_ex(c->evp, c->algo->md(), NULL) == 1 ? 0 : EIO;
#else
	(void)c;
	(void)out;
	return ENOTSUP;
#endif
}

void
digest_free(struct digest_ctx *c)
{
	if (c == NULL)
		return;
#ifdef WITH_OPENSSL
	EVP_MD_CTX_free(c->evp);
#endif
	free(c);
}

int
digest_fd(struct digest_ctx *c, int fd, off_t off, off_t len, off_t *done)
{
	unsigned char *buf;
	size_t want;
	ssize_t n;
	int r = 0;

	*done = 0;
	if (off < 0 || len < 0)
		return EINVAL;
	if (len == 0)
		return 0;
	if ((buf = malloc(DIGEST_READ_CHUNK)) == NULL)
		return ENOMEM;
	while (*done < len) {
		want = DIGEST_READ_CHUNK;
		if (len - *done < (off_t)want)
			want = (size_t)(len - *done);
		n = pread(fd, buf, want, off + *done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = errno;
			break;
		}
		if (n == 0)
			break;
		if ((r = digest_update(c, buf, (size_t)n)) != 0)
			break;
		*done += n;
	}
	free(buf);
	return r;
}

void
digest_hex(const unsigned char *bin, size_t len, char *out)
{
	static const char hexdigits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < len; i++) {
		out[2 * i] = hexdigits[bin[i] >> 4];
		out[2 * i + 1] = hexdigits[bin[i] & 0xf];
	}
	out[2 * len] = '\0';
}

/* The upload's running SHA-256 */

int
stream_digest_start(struct stream_digest *sd)
{
	const struct digest_algo *a;

	memset(sd, 0, sizeof(*sd));
	if ((a = digest_sha256()) == NULL)
		return ENOTSUP;
	return digest_start(a, &sd->ctx);
}

/* The order the data came in, whatever is hashed when. */
static void
track(struct stream_digest *sd, off_t off, size_t len)
{
	if (off == sd->in_order)
		sd->in_order += (off_t)len;
	else if (off < sd->in_order)
		sd->disordered = 1;
}

void
stream_digest_write(struct stream_digest *sd, const void *buf, size_t len,
    off_t off)
{
	if (sd->ctx == NULL || len == 0)
		return;
	track(sd, off, len);
	if (sd->stale)
		return;
	if (off == sd->hashed) {
		/* In order: hashed on the way through.  A failure here only
		 * means the end reads everything back. */
		if (digest_update(sd->ctx, buf, len) == 0)
			sd->hashed += (off_t)len;
		else
			sd->stale = 1;
	} else if (off < sd->hashed)
		sd->stale = 1;		/* hashed bytes overwritten */
	/* Beyond the prefix: read back at the end, unless the gap is
	 * filled first, in which case these bytes are read back then. */
}

void
stream_digest_note(struct stream_digest *sd, off_t off, size_t len)
{
	if (sd->ctx == NULL || len == 0)
		return;
	track(sd, off, len);
	if (off < sd->hashed)
		sd->stale = 1;
}

int
stream_digest_catch_up(struct stream_digest *sd, int fd, off_t size,
    size_t budget, off_t *done)
{
	unsigned char md[DIGEST_MAX_SIZE];
	off_t want;
	int r;

	*done = 0;
	if (sd->ctx == NULL)
		return ENOTSUP;
	if (sd->stale || sd->hashed > size) {
		if ((r = digest_finish(sd->ctx, md)) != 0)
			return r;
		sd->hashed = 0;
		sd->stale = 0;
	}
	want = size - sd->hashed;
	if (want > (off_t)budget)
		want = (off_t)budget;
	if (want <= 0)
		return 0;
	r = digest_fd(sd->ctx, fd, sd->hashed, want, done);
	sd->hashed += *done;
	return r;
}

void
stream_digest_unknown(struct stream_digest *sd)
{
	sd->stale = 1;
	sd->disordered = 1;
}

void
stream_digest_truncate(struct stream_digest *sd, off_t size)
{
	if (size < sd->in_order)
		sd->disordered = 1;
	if (size < sd->hashed)
		sd->stale = 1;
}

off_t
stream_digest_pending(const struct stream_digest *sd, off_t size)
{
	if (sd->ctx == NULL)
		return 0;
	if (sd->stale || sd->hashed > size)
		return size;
	return size - sd->hashed;
}

int
stream_digest_finish(struct stream_digest *sd, int fd, off_t size,
    char *hex, off_t *reread)
{
	unsigned char md[DIGEST_MAX_SIZE];
	off_t done = 0, from;
	int r;

	*reread = 0;
	hex[0] = '\0';
	if (sd->ctx == NULL)
		return ENOTSUP;
	if (sd->stale || sd->hashed > size) {
		/* Start over: discard what was hashed so far. */
		if ((r = digest_finish(sd->ctx, md)) != 0)
			return r;
		sd->hashed = 0;
		sd->stale = 0;
	}
	from = sd->hashed;
	if (from < size) {
		if ((r = digest_fd(sd->ctx, fd, from, size - from, &done)) != 0)
			return r;
		if (done != size - from)
			return EIO;	/* the file shrank under us */
	}
	*reread = sd->disordered ? size :
	    (size > sd->in_order ? size - sd->in_order : 0);
	if ((r = digest_finish(sd->ctx, md)) != 0)
		return r;
	digest_hex(md, sd->ctx->algo->size, hex);
	sd->hashed = 0;
	sd->in_order = 0;
	sd->disordered = 0;
	return 0;
}

void
stream_digest_free(struct stream_digest *sd)
{
	digest_free(sd->ctx);
	sd->ctx = NULL;
}
