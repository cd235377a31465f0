/*
 * scp: the legacy scp/rcp protocol, both ends.
 *
 * A sink (scp -t, and our client when it receives) reads records from a
 * peer and stages every file through atomic-upload, publishing it only
 * once all of its bytes and the sender's status byte have arrived.  A
 * source (scp -f, and our client when it sends) reads local files and
 * writes records.  Neither knows whether the peer is sshd's pipe, an ssh
 * child or another process of ours: they talk to two descriptors.
 */
#ifndef SCP_H
#define SCP_H

#include <sys/types.h>
#include <signal.h>
#include <stddef.h>

#include "atomic-upload.h"
#include "hook.h"

/* The longest record line the protocol allows, without its newline. */
#define SCP_LINE_MAX	2047

/* Returned when the session cannot go on (stock exits 1 there). */
#define SCP_FATAL	(-1)

struct scp_opts {
	int recursive;		/* -r: D and E records */
	int preserve;		/* -p: T records, modes as sent */
	int target_dir;		/* -d: the target must be a directory */
	int verbose;		/* -v: print each record to stderr */
	int client;		/* we are the user's scp: print messages,
				 * check received names against the request */
	int no_name_check;	/* -T: only the basic name checks */
	const char *pattern;	/* client sink: the basename asked for (a
				 * glob), or NULL */
	mode_t umask;		/* the process umask (stock masks modes) */
	struct stage_opts stage;
	struct hook *hook;	/* server sink: the commit hook, or NULL */
};

struct scp_peer {
	int in_fd;		/* records from the peer */
	int out_fd;		/* records and replies to the peer */
	unsigned int errors;	/* warnings sent or received (exit 1) */
	/* Set by the caller's signal handler: stop, abort, exit. */
	volatile sig_atomic_t *stop;
	/* -l: bytes per second, 0 for no limit. */
	unsigned long long limit_bps;
	double limit_start;
	unsigned long long limit_bytes;
	size_t rpos, rlen;
	unsigned char rbuf[64 * 1024];
};

void scp_peer_init(struct scp_peer *p, int in_fd, int out_fd,
    volatile sig_atomic_t *stop);

/*
 * Receive into `target` (a directory, or with a single file a file name).
 * Returns 0 when the peer ended the session (EOF or a top-level E), or
 * SCP_FATAL after a protocol error or a lost connection, once any staged
 * file has been aborted.  Warnings are counted in p->errors.
 */
int scp_sink(struct scp_peer *p, const struct scp_opts *o,
    const char *target);

/* Send each of `paths`.  Same return convention as scp_sink(). */
int scp_source(struct scp_peer *p, const struct scp_opts *o,
    char *const *paths, int npaths);

/* Is `name` one a sink may create: not empty, ".", ".." nor with '/'? */
int scp_name_ok(const char *name);

/* Send "\1scp: TEXT\n" to the peer (and print it when we are the
 * client); counts an error. */
void scp_warn(struct scp_peer *p, const struct scp_opts *o,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif /* SCP_H */
