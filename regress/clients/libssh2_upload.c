/*
 * libssh2_upload: an SFTP upload client built on libssh2, for the
 * regression tests.  libssh2 pipelines a write: one libssh2_sftp_write()
 * call with a large buffer sends many WRITE requests before it waits for
 * the first reply, so a server sees dozens to hundreds of requests in
 * flight.
 *
 * usage: libssh2_upload -p PORT -u USER -k PRIVKEY [-K PUBKEY]
 *            [-m put|scatter|vanish|hang] [-b BLOCK] LOCAL REMOTE
 *
 *   put      write LOCAL in pieces of BLOCK bytes (default 4 MiB), each
 *            one pipelined call; close; exit 0 if every step succeeded.
 *   scatter  write LOCAL block by block in a shuffled order (the second
 *            half backwards, then the first half), skipping blocks that
 *            are all zero bytes except the last, so the server gets
 *            out-of-order offsets and a hole; close.
 *   vanish   write the first half of LOCAL, then exit without CLOSE and
 *            without closing the session: the server just sees EOF.
 *   hang     write the first half, print "written" on stdout, then
 *            sleep until killed (the test sends SIGKILL).
 *
 * Only 127.0.0.1 is ever contacted.  Messages go to stderr; the exit
 * status is 0 on success, 1 on any failure, 2 on usage errors.
 */
#include "includes.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libssh2.h>
#include <libssh2_sftp.h>

enum mode { MODE_PUT, MODE_SCATTER, MODE_VANISH, MODE_HANG };

struct options {
	int port;
	const char *user;
	const char *privkey;
	const char *pubkey;
	enum mode mode;
	size_t block;
	const char *local;
	const char *remote;
};

static void
usage(void)
{
	fprintf(stderr, "usage: libssh2_upload -p PORT -u USER -k PRIVKEY "
	    "[-K PUBKEY] [-m put|scatter|vanish|hang] [-b BLOCK] "
	    "LOCAL REMOTE\n");
	exit(2);
}

static int
parse_mode(const char *s, enum mode *out)
{
	if (strcmp(s, "put") == 0)
		*out = MODE_PUT;
	else if (strcmp(s, "scatter") == 0)
		*out = MODE_SCATTER;
	else if (strcmp(s, "vanish") == 0)
		*out = MODE_VANISH;
	else if (strcmp(s, "hang") == 0)
		*out = MODE_HANG;
	else
		return -1;
	return 0;
}

static int
parse_options(int argc, char **argv, struct options *o)
{
	int ch;
	char *end;
	unsigned long v;

	memset(o, 0, sizeof(*o));
	o->mode = MODE_PUT;
	o->block = 4 << 20;
	while ((ch = getopt(argc, argv, "p:u:k:K:m:b:")) != -1) {
		switch (ch) {
		case 'p':
			o->port = atoi(optarg);
			break;
		case 'u':
			o->user = optarg;
			break;
		case 'k':
			o->privkey = optarg;
			break;
		case 'K':
			o->pubkey = optarg;
			break;
		case 'm':
			if (parse_mode(optarg, &o->mode) != 0)
				return -1;
			break;
		case 'b':
			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || v == 0 ||
			    v > (64UL << 20))
				return -1;
			o->block = v;
			break;
		default:
			return -1;
		}
	}
	if (argc - optind != 2 || o->port <= 0 || o->port > 65535 ||
	    o->user == NULL || o->privkey == NULL)
		return -1;
	o->local = argv[optind];
	o->remote = argv[optind + 1];
	return 0;
}

/* The whole local file in memory: the tests use a few MiB at most. */
static int
load_file(const char *path, unsigned char **datap, size_t *lenp)
{
	struct stat st;
	unsigned char *data = NULL;
	size_t got = 0;
	ssize_t n;
	int fd, r = -1;

	if ((fd = open(path, O_RDONLY)) < 0 || fstat(fd, &st) != 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		goto out;
	}
	if ((data = malloc((size_t)st.st_size + 1)) == NULL)
		goto out;
	while (got < (size_t)st.st_size) {
		n = read(fd, data + got, (size_t)st.st_size - got);
		if (n <= 0) {
			fprintf(stderr, "%s: short read\n", path);
			goto out;
		}
		got += (size_t)n;
	}
	*datap = data;
	*lenp = got;
	data = NULL;
	r = 0;
 out:
	free(data);
	if (fd >= 0)
		close(fd);
	return r;
}

static int
connect_loopback(int port)
{
	struct sockaddr_in sin;
	int fd;

	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
		return -1;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((unsigned short)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
		fprintf(stderr, "connect 127.0.0.1:%d: %s\n", port,
		    strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static void
report_sftp_error(LIBSSH2_SESSION *ssh, LIBSSH2_SFTP *sftp, const char *what)
{
	char *msg = NULL;

	libssh2_session_last_error(ssh, &msg, NULL, 0);
	fprintf(stderr, "%s failed: %s (sftp status %lu)\n", what,
	    msg != NULL ? msg : "?",
	    sftp != NULL ? libssh2_sftp_last_error(sftp) : 0UL);
}

/*
 * Write len bytes at offset off.  libssh2 may acknowledge less than asked
 * for; the rest is passed again, unchanged, as its API requires.
 */
static int
write_at(LIBSSH2_SFTP_HANDLE *h, const unsigned char *buf, size_t len,
    libssh2_uint64_t off)
{
	ssize_t n;

	libssh2_sftp_seek64(h, off);
	while (len > 0) {
		n = libssh2_sftp_write(h, (const char *)buf, len);
		if (n < 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
all_zero(const unsigned char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i] != 0)
			return 0;
	return 1;
}

/* Blocks of the second half backwards, then of the first half forwards. */
static int
write_scattered(LIBSSH2_SFTP_HANDLE *h, const unsigned char *data,
    size_t len, size_t block)
{
	size_t nblocks = (len + block - 1) / block, half = nblocks / 2, i, b;
	size_t off, n;

	for (i = 0; i < nblocks; i++) {
		b = i < nblocks - half ? nblocks - 1 - i : i - (nblocks - half);
		off = b * block;
		n = len - off < block ? len - off : block;
		if (b != nblocks - 1 && all_zero(data + off, n))
			continue;	/* leave a hole */
		if (write_at(h, data + off, n, off) != 0)
			return -1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	struct options o;
	LIBSSH2_SESSION *ssh = NULL;
	LIBSSH2_SFTP *sftp = NULL;
	LIBSSH2_SFTP_HANDLE *h = NULL;
	unsigned char *data = NULL;
	size_t len = 0, off;
	int sock = -1, r = 1;

	if (parse_options(argc, argv, &o) != 0)
		usage();
	if (load_file(o.local, &data, &len) != 0)
		goto out;
	if (libssh2_init(0) != 0 || (sock = connect_loopback(o.port)) < 0)
		goto out;
	if ((ssh = libssh2_session_init()) == NULL)
		goto out;
	libssh2_session_set_blocking(ssh, 1);
	if (libssh2_session_handshake(ssh, sock) != 0) {
		report_sftp_error(ssh, NULL, "handshake");
		goto out;
	}
	if (libssh2_userauth_publickey_fromfile(ssh, o.user, o.pubkey,
	    o.privkey, NULL) != 0) {
		report_sftp_error(ssh, NULL, "public key authentication");
		goto out;
	}
	if ((sftp = libssh2_sftp_init(ssh)) == NULL) {
		report_sftp_error(ssh, NULL, "sftp subsystem");
		goto out;
	}
	h = libssh2_sftp_open(sftp, o.remote, LIBSSH2_FXF_WRITE |
	    LIBSSH2_FXF_CREAT | LIBSSH2_FXF_TRUNC, 0644);
	if (h == NULL) {
		report_sftp_error(ssh, sftp, "open");
		goto out;
	}
	switch (o.mode) {
	case MODE_PUT:
		for (off = 0; off < len; off += o.block) {
			if (write_at(h, data + off, len - off < o.block ?
			    len - off : o.block, off) != 0) {
				report_sftp_error(ssh, sftp, "write");
				goto out;
			}
		}
		break;
	case MODE_SCATTER:
		if (write_scattered(h, data, len, o.block) != 0) {
			report_sftp_error(ssh, sftp, "write");
			goto out;
		}
		break;
	case MODE_VANISH:
	case MODE_HANG:
		if (write_at(h, data, len / 2, 0) != 0) {
			report_sftp_error(ssh, sftp, "write");
			goto out;
		}
		if (o.mode == MODE_HANG) {
			printf("written\n");
			fflush(stdout);
			for (;;)
				pause();
		}
		/* Gone without CLOSE or disconnect: the server sees EOF. */
		_exit(0);
	}
	if (libssh2_sftp_close(h) != 0) {
		h = NULL;
		report_sftp_error(ssh, sftp, "close");
		goto out;
	}
	h = NULL;
	r = 0;
 out:
	if (h != NULL)
		libssh2_sftp_close(h);
	if (sftp != NULL)
		libssh2_sftp_shutdown(sftp);
	if (ssh != NULL) {
		libssh2_session_disconnect(ssh, "done");
		libssh2_session_free(ssh);
	}
	if (sock >= 0)
		close(sock);
	libssh2_exit();
	free(data);
	return r;
}
