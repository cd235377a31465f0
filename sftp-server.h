/*
 * The SFTP server as a session object: bytes from the client go in, reply
 * bytes come out.  It does no I/O on the connection itself, so the same
 * code serves stdin/stdout in sftp-server-main.c, a unit test or a fuzzer.
 *
 * Uploads go through atomic-upload.h: every OPEN with write access is a
 * staged file, committed at CLOSE before the reply is queued, aborted when
 * the session ends without a CLOSE.
 */
#ifndef SFTP_SERVER_H
#define SFTP_SERVER_H

#include <sys/types.h>
#include <stddef.h>

#include "atomic-upload.h"
#include "hook.h"

struct sftp_server_opts {
	const char *user;		/* session user, for logs and ~ */
	const char *home;		/* its home directory, or NULL */
	const char *client_addr;	/* for logs; NULL means "UNKNOWN" */
	int readonly;			/* -R */
	const char *allowed;		/* -p: comma list of requests */
	const char *denied;		/* -P: comma list, applied first */
	unsigned int max_handles;	/* 0: no limit of our own */
	struct stage_opts stage;	/* how uploads are staged */
	/* -H: the commit hook (hook.program NULL: none); the session fills
	 * in protocol, user, address and durability itself. */
	struct hook_opts hook;
	/* check-file: most bytes one request may hash; 0 means
	 * CHECK_FILE_MAX_DEFAULT. */
	unsigned long long check_file_max;
};

#define CHECK_FILE_MAX_DEFAULT	(64ULL << 30)	/* 64 GiB */

struct sftp_session;

/* Logs "session opened ...". */
int	sftp_session_new(const struct sftp_server_opts *opts,
	    struct sftp_session **sp);

/*
 * End the session: every handle still open is closed, every upload still
 * staged is aborted with `reason` (NULL: "connection lost") and logged,
 * with stock's "forced close" lines, then "session closed ...".
 */
void	sftp_session_free(struct sftp_session *s, const char *reason);
/* The same when the connection was lost (EOF, a hangup): uploads still
 * staged are kept for a resume where stage_opts.resume allows. */
void	sftp_session_lost(struct sftp_session *s, const char *reason);

/*
 * Zero-copy input: the free space at the end of the input buffer (at least
 * SFTP_READ_CHUNK bytes whenever sftp_session_wants_input() is true, or
 * exactly the missing part of a request already begun), then how many
 * bytes were stored there.
 */
#define SFTP_READ_CHUNK	(256 * 1024)
int	sftp_session_input_space(struct sftp_session *s, u_char **p,
	    size_t *len);
int	sftp_session_input_added(struct sftp_session *s, size_t len);

/*
 * Answer every complete request in the input buffer, in arrival order,
 * until the output buffer reaches its high-water mark (the caller must
 * then drain output and call again).  Returns 0, or EMSGSIZE when a packet
 * announces a length we do not accept: framing is lost and the session
 * must end (exit status 11, as stock).
 */
int	sftp_session_process(struct sftp_session *s);

/* Copying convenience for tests and fuzzers: stores as much of `data` as
 * fits, processes, and reports how much was taken in *used. */
int	sftp_session_input(struct sftp_session *s, const u_char *data,
	    size_t len, size_t *used);

/* True while the output is below its high-water mark: read more input.
 * False means: drain output first (backpressure). */
int	sftp_session_wants_input(const struct sftp_session *s);
/* Bytes of an incomplete request waiting for the rest (EOF here means the
 * client vanished mid-packet). */
size_t	sftp_session_input_pending(const struct sftp_session *s);

/* Queued reply bytes, and how many of them were sent. */
void	sftp_session_output(const struct sftp_session *s, const u_char **p,
	    size_t *len);
void	sftp_session_output_consume(struct sftp_session *s, size_t len);

/*
 * Work for idle moments: the SHA-256 of uploads, deferred so that no reply
 * waits for it (stage_opts.digest_deferred).  _pending says whether there
 * is any; _run does up to `budget` bytes of it.  A caller that never runs
 * it loses nothing: the commit hashes what is left.
 */
int	sftp_session_background_pending(const struct sftp_session *s);
void	sftp_session_background_run(struct sftp_session *s, size_t budget);

/* Open handles and staged uploads (tests, leak checks). */
unsigned int sftp_session_handles(const struct sftp_session *s);

/* Request names in stock's -Q order; NULL past the end. */
const char *sftp_request_name(size_t i);

#endif /* SFTP_SERVER_H */
