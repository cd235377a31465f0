/*
 * Hashes: the SHA-256 of every upload, kept as its data streams in, and
 * the algorithms check-file offers.  OpenSSL's EVP interface underneath;
 * a build without OpenSSL (--without-ssl) has the same calls, which say
 * ENOTSUP, and digest_available() is 0.
 *
 * Every function returns 0 or a positive errno value.
 */
#ifndef DIGEST_H
#define DIGEST_H

#include <sys/types.h>
#include <stddef.h>

/* The extended attribute -x stores each upload's SHA-256 under (hex). */
#define DIGEST_XATTR_NAME	"user.sha256"

#define DIGEST_MAX_SIZE		64	/* SHA-512 */
#define DIGEST_HEX_SIZE		(2 * DIGEST_MAX_SIZE + 1)

struct digest_algo;
struct digest_ctx;

/* Is there any hashing in this build? */
int digest_available(void);

/*
 * The algorithm named `name` (`len` bytes, not NUL-terminated): the
 * filexfer draft's names (md5, sha1, sha224, sha256, sha384, sha512) and
 * the IANA ones WinSCP sends (sha-1, sha-256, ...), any case.  NULL if
 * unknown or unusable here (no OpenSSL, or refused by its provider, as
 * MD5 is in FIPS mode).
 */
const struct digest_algo *digest_algo_find(const char *name, size_t len);
const struct digest_algo *digest_sha256(void);
const char *digest_algo_name(const struct digest_algo *a);
size_t digest_algo_size(const struct digest_algo *a);
/* The draft's names of every usable algorithm, comma-separated ("" with
 * none), for the VERSION packet; 64 bytes is enough. */
void digest_algo_list(char *buf, size_t len);

int digest_start(const struct digest_algo *a, struct digest_ctx **cp);
int digest_update(struct digest_ctx *c, const void *buf, size_t len);
/* The digest so far into `out` (digest_algo_size() bytes); the context
 * starts over, ready for the next block. */
int digest_finish(struct digest_ctx *c, unsigned char *out);
void digest_free(struct digest_ctx *c);

/*
 * Hash up to `len` bytes of `fd` from `off` (pread: the file offset is not
 * used), stopping early at the end of the file; *done gets the count.
 */
int digest_fd(struct digest_ctx *c, int fd, off_t off, off_t len,
    off_t *done);

/* Lowercase hex of `len` bytes into `out` (2 * len + 1 bytes). */
void digest_hex(const unsigned char *bin, size_t len, char *out);

/*
 * The SHA-256 of a file being written, fed by every write as it happens.
 * Data that arrives in order is hashed on the way through; what arrives
 * ahead of the hashed prefix is read back from the file at the end, and
 * a change below it (an overwrite, a truncation) makes the end start over
 * from the file.  `ctx` NULL: not computing (off, or no OpenSSL).
 */
struct stream_digest {
	struct digest_ctx *ctx;
	off_t hashed;		/* [0, hashed) is in ctx */
	int stale;		/* bytes below `hashed` changed since */
	off_t in_order;		/* [0, in_order) was written in order */
	int disordered;		/* a write or truncation went below it */
};

int stream_digest_start(struct stream_digest *sd);
void stream_digest_write(struct stream_digest *sd, const void *buf,
    size_t len, off_t off);
/* A write that is not hashed now (hashing is deferred): only a change
 * below the hashed prefix matters. */
void stream_digest_note(struct stream_digest *sd, off_t off, size_t len);
/* Hash up to `budget` more bytes of `fd` (readable, `size` bytes) after
 * the prefix; *done gets the count. */
int stream_digest_catch_up(struct stream_digest *sd, int fd, off_t size,
    size_t budget, off_t *done);
/* A write whose offset is not known (O_APPEND in place): start over. */
void stream_digest_unknown(struct stream_digest *sd);
void stream_digest_truncate(struct stream_digest *sd, off_t size);
/* How many bytes stream_digest_finish() would read back for a file of
 * `size` bytes. */
off_t stream_digest_pending(const struct stream_digest *sd, off_t size);
/* Complete it from `fd` (readable, `size` bytes): hex into `hex`
 * (65 bytes).  *reread gets the bytes that did not arrive in order, and
 * so had to be read back whatever the hashing strategy: all of them after
 * an overwrite or a truncation, else those past the in-order prefix (old
 * data of a modified file, data ahead of a gap). */
int stream_digest_finish(struct stream_digest *sd, int fd, off_t size,
    char *hex, off_t *reread);
void stream_digest_free(struct stream_digest *sd);

#endif /* DIGEST_H */
