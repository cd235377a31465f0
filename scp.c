/*
 * scp: the legacy scp protocol, sink and source; see scp.h.
 *
 * Records, one per line (at most SCP_LINE_MAX bytes before the newline):
 *   C<mode> <size> <name>   a file follows: <size> bytes, then a status byte
 *   D<mode> 0 <name>        enter a directory (until the matching E)
 *   E                       leave it
 *   T<mtime> <usec> <atime> <usec>   times for the next C or D
 *   \1text / \2text         a warning / a fatal error from the peer
 * The receiver answers every record with \0, or with "\1scp: text\n".
 *
 * The sink's commit point: every byte of the file has arrived and the
 * sender's status byte after it is \0.  Only then is the staged file
 * published, and only after that is the \0 sent back.
 */
#include "includes.h"

#include <sys/types.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "atomic-upload.h"
#include "log.h"
#include "misc.h"
#include "scp.h"

#ifndef PATH_MAX
# define PATH_MAX 4096
#endif
#ifndef O_CLOEXEC
# define O_CLOEXEC 0
#endif

/* The source's read size, and how much of a file we move per step. */
#define SCP_CHUNK	(64 * 1024)

/* Times of a T record, waiting for the C or D it belongs to. */
struct scp_times {
	int set;
	struct timespec ts[2];	/* [0] access, [1] modification */
};

/* Peer I/O */

void
scp_peer_init(struct scp_peer *p, int in_fd, int out_fd,
    volatile sig_atomic_t *stop)
{
	memset(p, 0, sizeof(*p));
	p->in_fd = in_fd;
	p->out_fd = out_fd;
	p->stop = stop;
}

static int
peer_stopped(const struct scp_peer *p)
{
	return p->stop != NULL && *p->stop != 0;
}

/* -l: sleep until the bytes moved so far fit the rate. */
static void
peer_throttle(struct scp_peer *p, size_t n)
{
	double now, due;
	struct timespec ts;

	if (p->limit_bps == 0)
		return;
	now = monotime_double();
	if (p->limit_bytes == 0)
		p->limit_start = now;
	p->limit_bytes += n;
	due = p->limit_start + (double)p->limit_bytes / (double)p->limit_bps;
	if (due <= now)
		return;
	ts.tv_sec = (time_t)(due - now);
	ts.tv_nsec = (long)((due - now - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !peer_stopped(p))
		;
}

/*
 * Refill the read buffer once it is empty, with at least `want` bytes
 * (at most a buffer's worth).  Only ask for more than one byte when the
 * peer owes them: file data whose length it announced.  sshd hands the
 * data over in pieces of a few KiB, and gathering them here turns them
 * into one stage_write per buffer.  0, EPIPE at EOF, ECANCELED on a
 * signal.
 */
static int
peer_fill(struct scp_peer *p, size_t want)
{
	ssize_t n;

	if (p->rpos < p->rlen)
		return 0;
	p->rpos = p->rlen = 0;
	if (want > sizeof(p->rbuf))
		want = sizeof(p->rbuf);
	while (p->rlen < want) {
		if (peer_stopped(p))
			return ECANCELED;
		n = read(p->in_fd, p->rbuf + p->rlen,
		    sizeof(p->rbuf) - p->rlen);
		if (n > 0) {
			p->rlen += (size_t)n;
			continue;
		}
		/* What arrived before EOF or an error is still served. */
		if (n == 0)
			return p->rlen > 0 ? 0 : EPIPE;
		if (errno != EINTR && errno != EAGAIN)
			return p->rlen > 0 ? 0 : errno;
	}
	return 0;
}

static int
peer_getc(struct scp_peer *p, int *c)
{
	int r;

	if ((r = peer_fill(p, 1)) != 0)
		return r;
	*c = p->rbuf[p->rpos++];
	return 0;
}

/* Up to `want` bytes of input, in place; the caller consumes them all. */
static int
peer_take(struct scp_peer *p, size_t want, const unsigned char **data,
    size_t *n)
{
	int r;

	if ((r = peer_fill(p, want)) != 0)
		return r;
	*n = p->rlen - p->rpos < want ? p->rlen - p->rpos : want;
	*data = p->rbuf + p->rpos;
	p->rpos += *n;
	peer_throttle(p, *n);
	return 0;
}

static int
peer_write(struct scp_peer *p, const void *buf, size_t len)
{
	const char *cp = buf;
	ssize_t n;

	while (len > 0) {
		if (peer_stopped(p))
			return ECANCELED;
		n = write(p->out_fd, cp, len);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return errno;
		}
		if (n == 0)
			return EIO;
		cp += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
peer_ack(struct scp_peer *p)
{
	return peer_write(p, "", 1);
}

/*
 * One record line without its newline.  ENODATA: EOF before the first
 * byte (the peer is done); EPIPE: EOF inside the line; EMSGSIZE: longer
 * than the protocol allows; EILSEQ: a NUL byte in it.
 */
static int
read_line(struct scp_peer *p, char *line, size_t size, size_t *lenp)
{
	size_t len = 0;
	int c, r, nul = 0;

	for (;;) {
		if ((r = peer_getc(p, &c)) != 0) {
			if (r == EPIPE && len == 0)
				return ENODATA;
			return r;
		}
		if (c == '\n')
			break;
		if (len + 1 >= size)
			return EMSGSIZE;
		if (c == '\0')
			nul = 1;
		line[len++] = (char)c;
	}
	line[len] = '\0';
	*lenp = len;
	return nul ? EILSEQ : 0;
}

/* The text of a \1 or \2 message: the rest of its line, cut to fit. */
static int
read_message(struct scp_peer *p, char *buf, size_t size)
{
	size_t len = 0;
	int c, r;

	for (;;) {
		if ((r = peer_getc(p, &c)) != 0)
			break;
		if (c == '\n')
			break;
		if (len + 1 < size)
			buf[len++] = (char)c;
	}
	buf[len] = '\0';
	sanitise_copy(buf, size, buf);
	return r;
}

void
scp_warn(struct scp_peer *p, const struct scp_opts *o, const char *fmt, ...)
{
	char msg[SCP_LINE_MAX + 1], clean[SCP_LINE_MAX + 1];
	char line[SCP_LINE_MAX + 8];
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Names in the text may hold newlines: one would end the message
	 * early and the rest would be read as records. */
	sanitise_copy(clean, sizeof(clean), msg);
	p->errors++;
	if (o->client)
		fprintf(stderr, "scp: %s\n", clean);
	else
		verbose("sent warning: %s", clean);
	n = snprintf(line, sizeof(line), "\1scp: %s\n", clean);
	if (n > 0 && (size_t)n >= sizeof(line)) {
		n = (int)sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	if (n > 0)
		(void)peer_write(p, line, (size_t)n);
}

/* A protocol error ends the session: tell the peer why. */
static int
protocol_error(struct scp_peer *p, const struct scp_opts *o, const char *why)
{
	scp_warn(p, o, "protocol error: %s", why);
	if (!o->client)
		error("protocol error: %s", why);
	return SCP_FATAL;
}

/*
 * The peer's answer to something we sent: 0 for \0, 1 for a warning (the
 * thing was refused, go on), SCP_FATAL for a fatal error or EOF.
 */
static int
read_response(struct scp_peer *p, const struct scp_opts *o)
{
	char msg[SCP_LINE_MAX + 1];
	int c, r;

	if ((r = peer_getc(p, &c)) != 0) {
		if (r != ECANCELED && o->client)
			fprintf(stderr, "scp: lost connection\n");
		else if (r != ECANCELED)
			debug("lost connection waiting for a reply");
		return SCP_FATAL;
	}
	if (c == '\0')
		return 0;
	msg[0] = '\0';
	if (c != '\1' && c != '\2') {
		/* Not a status: text from the remote shell, say. */
		msg[0] = (char)c;
		(void)read_message(p, msg + 1, sizeof(msg) - 1);
		sanitise_copy(msg, sizeof(msg), msg);
	} else
		(void)read_message(p, msg, sizeof(msg));
	p->errors++;
	if (o->client)
		fprintf(stderr, "%s\n", msg);
	else
		verbose("peer: %s", msg);
	return c == '\1' ? 1 : SCP_FATAL;
}

/* Names */

int
scp_name_ok(const char *name)
{
	return name[0] != '\0' && strcmp(name, ".") != 0 &&
	    strcmp(name, "..") != 0 && strchr(name, '/') == NULL;
}

/* DIR/NAME in a new string; ENAMETOOLONG past PATH_MAX, as open would. */
static int
join_path(const char *dir, const char *name, char **out)
{
	size_t dl = strlen(dir), nl = strlen(name);
	int slash = dl > 0 && dir[dl - 1] == '/';

	*out = NULL;
	if (dl + nl + 2 > PATH_MAX)
		return ENAMETOOLONG;
	if ((*out = malloc(dl + nl + 2)) == NULL)
		return ENOMEM;
	snprintf(*out, dl + nl + 2, "%s%s%s", dir, slash ? "" : "/", name);
	return 0;
}

/* Sink: record parsing */

/* A decimal number at *cpp: at least one digit, at most `max`. */
static int
parse_decimal(char **cpp, unsigned long long max, unsigned long long *out)
{
	unsigned long long v = 0;
	char *cp = *cpp;
	int any = 0, over = 0;

	while (*cp >= '0' && *cp <= '9') {
		unsigned d = (unsigned)(*cp - '0');

		if (v > (max - d) / 10)
			over = 1;
		else
			v = v * 10 + d;
		any = 1;
		cp++;
	}
	*cpp = cp;
	if (!any)
		return EINVAL;
	if (over)
		return ERANGE;
	*out = v;
	return 0;
}

/*
 * "T<mtime> <usec> <atime> <usec>": NULL, or why the record is bad.  A
 * time too large for a time_t is not an error: the times are ignored and
 * the file is received, as stock's sink does.
 */
static const char *
parse_times(char *line, struct scp_times *t)
{
	unsigned long long sec, usec;
	char *cp = line + 1;
	int r, in_range = 1;

	if ((r = parse_decimal(&cp, INT64_MAX, &sec)) == EINVAL)
		return "mtime.sec not present";
	if (r == ERANGE)
		in_range = 0;
	if (*cp++ != ' ')
		return "mtime.sec not delimited";
	t->ts[1].tv_sec = r == 0 ? (time_t)sec : 0;
	if (parse_decimal(&cp, 999999, &usec) != 0 || *cp++ != ' ')
		return "mtime.usec not delimited";
	t->ts[1].tv_nsec = (long)usec * 1000;
	if ((r = parse_decimal(&cp, INT64_MAX, &sec)) == EINVAL)
		return "atime.sec not present";
	if (r == ERANGE)
		in_range = 0;
	if (*cp++ != ' ')
		return "atime.sec not delimited";
	t->ts[0].tv_sec = r == 0 ? (time_t)sec : 0;
	if (parse_decimal(&cp, 999999, &usec) != 0 || *cp != '\0')
		return "atime.usec not delimited";
	t->ts[0].tv_nsec = (long)usec * 1000;
	t->set = in_range;
	return NULL;
}

/* "C<mode> <size> <name>" or "D...": NULL, or why the record is bad.
 * *namep points into `line`. */
static const char *
parse_entry(char *line, mode_t *modep, off_t *sizep, char **namep)
{
	unsigned long long size;
	char *cp = line + 1;
	mode_t mode = 0;
	int i, r;

	for (i = 0; i < 4; i++, cp++) {
		if (*cp < '0' || *cp > '7')
			return "bad mode";
		mode = (mode << 3) | (mode_t)(*cp - '0');
	}
	if (*cp++ != ' ')
		return "mode not delimited";
	if ((r = parse_decimal(&cp, INT64_MAX, &size)) == EINVAL)
		return "size not present";
	if (r == ERANGE)
		return "size out of range";
	if (*cp++ != ' ')
		return "size not delimited";
	*modep = mode;
	*sizep = (off_t)size;
	*namep = cp;
	return NULL;
}

/* Sink: files and directories */

struct sink_state {
	char line[SCP_LINE_MAX + 2];
	char msg[SCP_LINE_MAX + 1];
};

static void
upload_report(const struct scp_opts *o, const struct stage_report *rep,
    int committed)
{
	log_stage(rep, committed);
	if (o->hook != NULL)
		hook_upload(o->hook, rep, committed);
}

static void
abort_logged(const struct scp_opts *o, struct staged_file *sf,
    const char *reason)
{
	struct stage_report rep;

	stage_abort(sf, reason, &rep);
	upload_report(o, &rep, 0);
}

/* Why input stopped, for the abort line. */
static const char *
input_failure(const struct scp_peer *p, int r, char *buf, size_t len)
{
	if (r == ECANCELED) {
		snprintf(buf, len, "killed by signal %d", (int)*p->stop);
		return buf;
	}
	if (r == EPIPE)
		return "connection lost";
	snprintf(buf, len, "read error: %s", strerror(r));
	return buf;
}

static int
sink_file(struct scp_peer *p, const struct scp_opts *o,
    struct sink_state *ss, const char *path, mode_t mode, off_t size,
    const struct scp_times *times)
{
	struct staged_file *sf = NULL;
	struct stage_report rep;
	const unsigned char *data;
	const char *note;
	char why[SCP_LINE_MAX + 64];
	off_t off = 0;
	size_t n;
	int r, c, werr = 0, terr = 0;

	r = stage_open(&o->stage, path, O_WRONLY | O_CREAT | O_TRUNC, mode,
	    &sf);
	if (r != 0) {
		/* The source skips this file's data on our warning. */
		scp_warn(p, o, "%s: %s", path, strerror(r));
		return 0;
	}
	if ((note = stage_note(sf)) != NULL)
		logit("stage \"%s\": %s", path, note);
	stage_expect_size(sf, size);
	if (o->preserve)
		werr = stage_fchmod(sf, mode & 07777);
	if ((r = peer_ack(p)) != 0) {
		abort_logged(o, sf, input_failure(p, r, why, sizeof(why)));
		return SCP_FATAL;
	}
	while (off < size) {
		uintmax_t left = (uintmax_t)(size - off);

		r = peer_take(p, left < SCP_CHUNK ? (size_t)left : SCP_CHUNK,
		    &data, &n);
		if (r != 0) {
			snprintf(why, sizeof(why), "%s after %lld of %lld bytes",
			    input_failure(p, r, ss->msg, sizeof(ss->msg)),
			    (long long)off, (long long)size);
			abort_logged(o, sf, why);
			if (r == EPIPE)
				protocol_error(p, o, "lost connection");
			return SCP_FATAL;
		}
		/* After a write error the data is still read, so that the
		 * stream stays in step and the error can be reported. */
		if (werr == 0)
			werr = stage_write(sf, data, n, off);
		off += (off_t)n;
	}
	if ((r = peer_getc(p, &c)) != 0) {
		snprintf(why, sizeof(why), "%s before the end-of-file status",
		    input_failure(p, r, ss->msg, sizeof(ss->msg)));
		abort_logged(o, sf, why);
		/* As in the data: the client's user hears why. */
		if (r == EPIPE)
			protocol_error(p, o, "lost connection");
		return SCP_FATAL;
	}
	if (c != '\0') {
		/* The sender could not read its file: what we have is not
		 * its content. */
		ss->msg[0] = '\0';
		if (c != '\1' && c != '\2') {
			ss->msg[0] = (char)c;
			(void)read_message(p, ss->msg + 1, sizeof(ss->msg) - 1);
		} else
			(void)read_message(p, ss->msg, sizeof(ss->msg));
		sanitise_copy(ss->msg, sizeof(ss->msg), ss->msg);
		snprintf(why, sizeof(why), "sender error: %s",
		    ss->msg[0] != '\0' ? ss->msg : "(no message)");
		abort_logged(o, sf, why);
		p->errors++;
		if (o->client && ss->msg[0] != '\0')
			fprintf(stderr, "%s\n", ss->msg);
		if (c != '\1')
			return SCP_FATAL;
		/* The sender waits for an answer; it knows what failed. */
		return peer_ack(p) == 0 ? 0 : SCP_FATAL;
	}
	if (werr != 0) {
		snprintf(why, sizeof(why), "write failed: %s", strerror(werr));
		abort_logged(o, sf, why);
		scp_warn(p, o, "%s: %s", path, strerror(werr));
		return 0;
	}
	if (times->set)
		terr = stage_futimens(sf, times->ts);
	r = stage_commit(sf, &rep);
	upload_report(o, &rep, r == 0);
	if (r != 0) {
		scp_warn(p, o, "%s: %s", path, strerror(r));
		return 0;
	}
	if (terr != 0) {
		scp_warn(p, o, "%s: set times: %s", path, strerror(terr));
		return 0;
	}
	return peer_ack(p) == 0 ? 0 : SCP_FATAL;
}

static int sink_records(struct scp_peer *, const struct scp_opts *,
    struct sink_state *, const char *, int, int);

static int
sink_dir(struct scp_peer *p, const struct scp_opts *o,
    struct sink_state *ss, const char *path, mode_t mode, int depth,
    const struct scp_times *times)
{
	struct stat st;
	int created = 0, r;

	if (stat(path, &st) == 0) {
		if (!S_ISDIR(st.st_mode)) {
			scp_warn(p, o, "%s: %s", path, strerror(ENOTDIR));
			return 0;
		}
		if (o->preserve && chmod(path, mode) != 0) {
			scp_warn(p, o, "%s: set mode: %s", path,
			    strerror(errno));
			return 0;
		}
	} else if (errno != ENOENT) {
		scp_warn(p, o, "%s: %s", path, strerror(errno));
		return 0;
	} else {
		/* Created at once (per-file atomicity, not per tree); we
		 * need to write into it whatever its final mode. */
		if (mkdir(path, mode | S_IRWXU) != 0) {
			scp_warn(p, o, "%s: %s", path, strerror(errno));
			return 0;
		}
		created = 1;
		logit("mkdir \"%s\" mode 0%o", path, (unsigned)mode);
	}
	if (peer_ack(p) != 0)
		return SCP_FATAL;
	if ((r = sink_records(p, o, ss, path, 1, depth + 1)) != 0)
		return r;
	if (times->set && utimensat(AT_FDCWD, path, times->ts, 0) != 0) {
		scp_warn(p, o, "%s: set times: %s", path, strerror(errno));
		return 0;
	}
	if (created && chmod(path, mode) != 0)
		scp_warn(p, o, "%s: set mode: %s", path, strerror(errno));
	return 0;
}

/*
 * Records until E (inside a directory) or EOF.  `target` is the directory
 * entries go into when `target_is_dir`, else the one name they are
 * written to.
 */
static int
sink_records(struct scp_peer *p, const struct scp_opts *o,
    struct sink_state *ss, const char *target, int target_is_dir, int depth)
{
	struct scp_times times;
	const char *bad;
	char *name, *path = NULL;
	mode_t mode;
	off_t size;
	size_t len;
	int first = depth == 0, r;

	memset(&times, 0, sizeof(times));
	for (;;) {
		r = read_line(p, ss->line, sizeof(ss->line), &len);
		if (r == ENODATA)
			return depth == 0 ? 0 : protocol_error(p, o,
			    "lost connection");
		if (r == EPIPE)
			return protocol_error(p, o, "lost connection");
		if (r == EMSGSIZE)
			return protocol_error(p, o, "record too long");
		if (r == EILSEQ)
			return protocol_error(p, o, "NUL byte in record");
		if (r != 0) {
			if (r != ECANCELED)
				error("read: %s", strerror(r));
			return SCP_FATAL;
		}
		if (o->verbose) {
			sanitise_copy(ss->msg, sizeof(ss->msg), ss->line);
			fprintf(stderr, "Sink: %s\n", ss->msg);
		}
		switch (ss->line[0]) {
		case '\1':
		case '\2':
			sanitise_copy(ss->msg, sizeof(ss->msg), ss->line + 1);
			p->errors++;
			if (o->client)
				fprintf(stderr, "%s\n", ss->msg);
			else
				verbose("peer: %s", ss->msg);
			if (ss->line[0] == '\2')
				return SCP_FATAL;
			continue;
		case 'E':
			if (len != 1)
				return protocol_error(p, o, "bad E record");
			if (peer_ack(p) != 0)
				return SCP_FATAL;
			return 0;
		case 'T':
			if ((bad = parse_times(ss->line, &times)) != NULL)
				return protocol_error(p, o, bad);
			if (peer_ack(p) != 0)
				return SCP_FATAL;
			continue;
		case 'C':
		case 'D':
			break;
		default:
			/* At the start this is usually a shell's complaint
			 * ("scp: command not found"): pass it on as it is. */
			if (first) {
				sanitise_copy(ss->msg, sizeof(ss->msg),
				    ss->line);
				scp_warn(p, o, "%s", ss->msg);
				return SCP_FATAL;
			}
			return protocol_error(p, o, "expected control record");
		}
		first = 0;
		if ((bad = parse_entry(ss->line, &mode, &size, &name)) != NULL)
			return protocol_error(p, o, bad);
		if (!scp_name_ok(name)) {
			sanitise_copy(ss->msg, sizeof(ss->msg), name);
			scp_warn(p, o, "error: unexpected filename: %s",
			    ss->msg);
			if (!o->client)
				error("unexpected filename: \"%s\"", ss->msg);
			return SCP_FATAL;
		}
		/* A client gets what it asked for, nothing else. */
		if (o->client && depth == 0 && o->pattern != NULL &&
		    !o->no_name_check && fnmatch(o->pattern, name, 0) != 0)
			return protocol_error(p, o,
			    "filename does not match request");
		if (ss->line[0] == 'D' && !o->recursive)
			return protocol_error(p, o,
			    "received directory without -r");
		mode &= o->preserve ? 07777 : (mode_t)~(o->umask | 07000);
		if (target_is_dir) {
			if ((r = join_path(target, name, &path)) != 0) {
				scp_warn(p, o, "%s/%s: %s", target, name,
				    strerror(r));
				if (r != ENAMETOOLONG)
					return SCP_FATAL;
				times.set = 0;
				continue;
			}
		} else if ((path = strdup(target)) == NULL) {
			scp_warn(p, o, "%s: %s", target, strerror(ENOMEM));
			return SCP_FATAL;
		}
		if (ss->line[0] == 'D')
			r = sink_dir(p, o, ss, path, mode, depth, &times);
		else
			r = sink_file(p, o, ss, path, mode, size, &times);
		free(path);
		path = NULL;
		times.set = 0;
		if (r != 0)
			return r;
	}
}

int
scp_sink(struct scp_peer *p, const struct scp_opts *o, const char *target)
{
	struct sink_state *ss;
	struct stat st;
	int is_dir, r;

	r = stat(target, &st) == 0 ? 0 : errno;
	is_dir = r == 0 && S_ISDIR(st.st_mode);
	if (o->target_dir && !is_dir) {
		scp_warn(p, o, "%s: %s", target, strerror(r != 0 ? r : ENOTDIR));
		return SCP_FATAL;
	}
	if ((ss = malloc(sizeof(*ss))) == NULL) {
		scp_warn(p, o, "%s", strerror(ENOMEM));
		return SCP_FATAL;
	}
	if (peer_ack(p) != 0)
		r = SCP_FATAL;
	else
		r = sink_records(p, o, ss, target, is_dir, 0);
	free(ss);
	return r;
}

/* Source */

/* A name for a C or D record.  A newline would end the record, so a name
 * holding one is sent escaped (backslash, ^J), as stock does. */
static int
encode_name(const char *name, char **out)
{
	size_t i, j, len = strlen(name);
	char *e;

	*out = NULL;
	if (strchr(name, '\n') == NULL)
		return (*out = strdup(name)) == NULL ? ENOMEM : 0;
	if ((e = malloc(len * 3 + 1)) == NULL)
		return ENOMEM;
	for (i = j = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c == '\\') {
			e[j++] = '\\';
			e[j++] = '\\';
		} else if ((c < 0x20 && c != '\t') || c == 0x7f) {
			e[j++] = '\\';
			e[j++] = '^';
			e[j++] = c == 0x7f ? '?' : (char)(c + '@');
		} else
			e[j++] = (char)c;
	}
	e[j] = '\0';
	*out = e;
	return 0;
}

/* The last component of a path, trailing slashes ignored. */
static int
last_component(const char *path, char **out)
{
	size_t len = strlen(path);
	const char *start;
	char *copy;
	int r;

	while (len > 1 && path[len - 1] == '/')
		len--;
	start = path + len;
	while (start > path && start[-1] != '/')
		start--;
	if ((copy = strndup(start, (size_t)(path + len - start))) == NULL)
		return ENOMEM;
	r = encode_name(copy, out);
	free(copy);
	return r;
}

static int
send_times(struct scp_peer *p, const struct scp_opts *o, const struct stat *st)
{
	char line[64];
	int n;

	n = snprintf(line, sizeof(line), "T%lld 0 %lld 0\n",
	    (long long)(st->st_mtime < 0 ? 0 : st->st_mtime),
	    (long long)(st->st_atime < 0 ? 0 : st->st_atime));
	if (o->verbose)
		fprintf(stderr, "Sending file timestamps: %.*s\n", n - 1, line);
	if (peer_write(p, line, (size_t)n) != 0)
		return SCP_FATAL;
	return read_response(p, o);
}

static int source_path(struct scp_peer *, const struct scp_opts *,
    const char *);

static int
source_dir(struct scp_peer *p, const struct scp_opts *o, const char *path,
    const struct stat *st)
{
	struct dirent *de;
	DIR *d;
	char *name = NULL, *child, *line = NULL;
	int r, n;

	if ((d = opendir(path)) == NULL) {
		scp_warn(p, o, "%s: %s", path, strerror(errno));
		return 0;
	}
	if ((r = last_component(path, &name)) != 0)
		goto out;
	if (o->preserve && (r = send_times(p, o, st)) != 0)
		goto out;
	if ((n = asprintf(&line, "D%04o 0 %s\n",
	    (unsigned)(st->st_mode & 07777), name)) < 0) {
		line = NULL;
		r = SCP_FATAL;
		goto out;
	}
	if (o->verbose)
		fprintf(stderr, "Entering directory: %.*s\n", n - 1, line);
	if (peer_write(p, line, (size_t)n) != 0) {
		r = SCP_FATAL;
		goto out;
	}
	if ((r = read_response(p, o)) != 0)
		goto out;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if ((r = join_path(path, de->d_name, &child)) != 0) {
			scp_warn(p, o, "%s/%s: %s", path, de->d_name,
			    strerror(r));
			r = 0;
			continue;
		}
		r = source_path(p, o, child);
		free(child);
		if (r == SCP_FATAL)
			goto out;
	}
	if (peer_write(p, "E\n", 2) != 0) {
		r = SCP_FATAL;
		goto out;
	}
	r = read_response(p, o);
 out:
	closedir(d);
	free(name);
	free(line);
	/* A refused record is a warning the peer already counted. */
	return r == SCP_FATAL ? SCP_FATAL : 0;
}

/* The file's bytes; on a read error zeros keep the stream in step and
 * *rerr says what happened. */
static int
send_data(struct scp_peer *p, int fd, off_t size, int *rerr)
{
	unsigned char *buf;
	off_t off = 0;
	ssize_t n;
	size_t want;
	int r = 0;

	*rerr = 0;
	if ((buf = malloc(SCP_CHUNK)) == NULL)
		return ENOMEM;
	while (off < size) {
		want = (uintmax_t)(size - off) < SCP_CHUNK ?
		    (size_t)(size - off) : SCP_CHUNK;
		if (*rerr == 0) {
			n = read(fd, buf, want);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				*rerr = errno;
			else if (n == 0)
				*rerr = EIO;	/* the file shrank */
			else
				want = (size_t)n;
		}
		if (*rerr != 0)
			memset(buf, 0, want);
		peer_throttle(p, want);
		if ((r = peer_write(p, buf, want)) != 0)
			break;
		off += (off_t)want;
	}
	free(buf);
	return r;
}

static int
source_path(struct scp_peer *p, const struct scp_opts *o, const char *path)
{
	struct stat st;
	char *name = NULL, *line = NULL;
	int fd, r = 0, rerr, n, flags;

	if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)) < 0) {
		scp_warn(p, o, "%s: %s", path, strerror(errno));
		return 0;
	}
	if (fstat(fd, &st) != 0) {
		scp_warn(p, o, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (S_ISDIR(st.st_mode) && o->recursive) {
		close(fd);
		return source_dir(p, o, path, &st);
	}
	if (!S_ISREG(st.st_mode)) {
		scp_warn(p, o, "%s: not a regular file", path);
		goto out;
	}
	if ((flags = fcntl(fd, F_GETFL)) != -1)
		(void)fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
	if (last_component(path, &name) != 0) {
		r = SCP_FATAL;
		goto out;
	}
	if (o->preserve && (r = send_times(p, o, &st)) != 0)
		goto out;
	if ((n = asprintf(&line, "C%04o %lld %s\n",
	    (unsigned)(st.st_mode & 06777), (long long)st.st_size, name)) < 0) {
		line = NULL;
		r = SCP_FATAL;
		goto out;
	}
	if (o->verbose)
		fprintf(stderr, "Sending file modes: %.*s\n", n - 1, line);
	if (peer_write(p, line, (size_t)n) != 0) {
		r = SCP_FATAL;
		goto out;
	}
	if ((r = read_response(p, o)) != 0)
		goto out;
	if (send_data(p, fd, st.st_size, &rerr) != 0) {
		r = SCP_FATAL;
		goto out;
	}
	if (rerr != 0) {
		/* Instead of the \0: the sink drops what it received. */
		scp_warn(p, o, "%s: %s", path, strerror(rerr));
	} else if (peer_ack(p) != 0) {
		r = SCP_FATAL;
		goto out;
	}
	r = read_response(p, o);
 out:
	close(fd);
	free(name);
	free(line);
	return r == SCP_FATAL ? SCP_FATAL : 0;
}

int
scp_source(struct scp_peer *p, const struct scp_opts *o, char *const *paths,
    int npaths)
{
	int i;

	/* The sink speaks first. */
	if (read_response(p, o) != 0)
		return SCP_FATAL;
	for (i = 0; i < npaths; i++) {
		if (source_path(p, o, paths[i]) == SCP_FATAL)
			return SCP_FATAL;
	}
	return 0;
}
