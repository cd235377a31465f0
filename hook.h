/*
 * The commit hook: an operator's program run after each commit (and, if
 * asked, each abort) of an upload, with the facts in its environment.
 *
 * The session never waits for it.  The first event starts one runner
 * process, detached from the session (its own session id, reparented to
 * init, holding none of the session's descriptors: not the connection,
 * not a staged file), which reads events from a pipe, runs at most
 * `max_running` hooks at once, kills one that outlives `timeout` (its
 * whole process group), reaps every child, and logs each hook's exit
 * status and output lines.  When the session ends it closes the pipe;
 * the runner finishes what is queued and exits.  An event that cannot
 * be handed over at once (the runner's queue is full) is dropped with an
 * error line: the client's reply is never delayed by a hook.
 *
 * The hook is run as the session's user, as
 *     PROGRAM FINAL_PATH
 * with stdin from /dev/null, stdout and stderr logged line by line, in
 * the session's environment plus:
 *     UPLOAD_EVENT       commit | abort
 *     UPLOAD_PATH        absolute path published (symbolic links resolved)
 *     UPLOAD_CLIENT_PATH the path as the client named it
 *     UPLOAD_SIZE        bytes
 *     UPLOAD_SHA256      lowercase hex, when known (absent otherwise)
 *     UPLOAD_USER        session user
 *     UPLOAD_CLIENT      client address ("UNKNOWN" without SSH_CONNECTION)
 *     UPLOAD_PROTOCOL    sftp | scp
 *     UPLOAD_DURABILITY  full | data | none
 *     UPLOAD_METHOD      tmpfile | named | direct
 *     UPLOAD_SECONDS     time from open to commit or abort
 *     UPLOAD_REASON      abort reason, or a commit's warning (absent else)
 */
#ifndef HOOK_H
#define HOOK_H

#include "atomic-upload.h"

#define HOOK_TIMEOUT_DEFAULT	60	/* seconds */
#define HOOK_MAX_RUNNING_DEFAULT	4
#define HOOK_MAX_QUEUED		1000	/* events waiting in the runner */

struct hook_opts {
	const char *program;	/* absolute path of the hook */
	int on_abort;		/* run after aborts too */
	unsigned int timeout;	/* seconds; 0: HOOK_TIMEOUT_DEFAULT */
	unsigned int max_running; /* 0: HOOK_MAX_RUNNING_DEFAULT */
	const char *protocol;	/* "sftp" or "scp" */
	const char *user;
	const char *client_addr;	/* NULL: "UNKNOWN" */
	enum stage_sync sync;
};

struct hook;

/* Copies what it needs from `o`; starts nothing yet.  EINVAL for a
 * program that is not an absolute path. */
int hook_new(const struct hook_opts *o, struct hook **hp);

/* One upload ended (`committed` as for log_stage()).  Never blocks;
 * does nothing for an unchanged file, or an abort without on_abort. */
void hook_upload(struct hook *h, const struct stage_report *rep,
    int committed);

/* The session ends: hand-over closed, `h` freed.  Never waits for hooks.
 * NULL is allowed. */
void hook_free(struct hook *h);

/* Read ATOMIC_UPLOAD_HOOK_ABORTS, _TIMEOUT, _MAX_RUNNING into `o`
 * (bad values are logged and the defaults kept). */
void hook_settings_from_env(struct hook_opts *o);

#endif /* HOOK_H */
