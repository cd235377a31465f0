/*
 * libssh2_put: upload one file over SFTP with libssh2's pipelined writes.
 *
 *   libssh2_put -p PORT -k PRIVATE_KEY [-u USER] [-w WINDOW] SRC REMOTE
 *
 * Connects to 127.0.0.1:PORT (loopback only: this is a benchmark client),
 * authenticates with PRIVATE_KEY (no passphrase; PRIVATE_KEY.pub is used
 * when it exists), opens REMOTE with WRITE|CREAT|TRUNC and mode 0644 and
 * writes SRC through a sliding window of WINDOW bytes (default 2 MiB).
 *
 * libssh2 cuts each libssh2_sftp_write() buffer into many WRITE requests,
 * sends them all and returns as soon as the first is acknowledged; calling
 * again with the buffer starting at the first unacknowledged byte and
 * extended by what was acknowledged keeps about WINDOW bytes in flight, so
 * the server sees many requests outstanding at once, as with curl or any
 * client built on libssh2.  The upload counts only once CLOSE is answered
 * with success: that is the commit point of an atomic server.
 *
 * Prints one line: bytes=N seconds=T (open to close reply).  Exit 0, or 1
 * with a message.  The host key is not verified (loopback benchmark).
 */
#include "includes.h"

#include <sys/types.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libssh2.h>
#include <libssh2_sftp.h>

#define DEFAULT_WINDOW	(2UL * 1024 * 1024)
/* Blocking writes never legitimately return 0 many times in a row. */
#define MAX_ZERO_WRITES	1000

struct put_config {
	unsigned short port;
	const char *user;
	const char *private_key;
	size_t window;
	const char *src;
	const char *remote;
};

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
parse_number(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9')
		return EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0)
		return errno;
	if (*end != '\0' || v == 0 || v > max)
		return EINVAL;
	*out = v;
	return 0;
}

/* Print libssh2's last error for `what`. */
static void
report_session_error(LIBSSH2_SESSION *session, const char *what)
{
	char *msg = NULL;

	libssh2_session_last_error(session, &msg, NULL, 0);
	fprintf(stderr, "libssh2_put: %s: %s\n", what,
	    msg != NULL ? msg : "unknown error");
}

static int
connect_loopback(unsigned short port, int *sockp)
{
	struct sockaddr_in sin;
	int sock, r = 0;

	if ((sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		r = errno;
		goto out;
	}
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(sock, (struct sockaddr *)&sin, sizeof(sin)) == -1) {
		r = errno;
		goto out;
	}
	*sockp = sock;
	sock = -1;
 out:
	if (sock != -1)
		close(sock);
	if (r != 0)
		fprintf(stderr, "libssh2_put: connect 127.0.0.1:%u: %s\n",
		    port, strerror(r));
	return r;
}

/*
 * Send [data, data+size) through `handle`, about `window` bytes in flight.
 * Returns 0 or -1 (message printed).
 */
static int
write_pipelined(LIBSSH2_SESSION *session, LIBSSH2_SFTP_HANDLE *handle,
    const char *data, size_t size, size_t window)
{
	size_t acked = 0, len;
	ssize_t n;
	int zero_writes = 0;

	while (acked < size) {
		len = size - acked < window ? size - acked : window;
		n = libssh2_sftp_write(handle, data + acked, len);
		if (n < 0) {
			report_session_error(session, "write");
			return -1;
		}
		if (n == 0 && ++zero_writes > MAX_ZERO_WRITES) {
			fprintf(stderr, "libssh2_put: write makes no progress\n");
			return -1;
		}
		if (n > 0)
			zero_writes = 0;
		acked += (size_t)n;
	}
	return 0;
}

static int
run_put(const struct put_config *cfg)
{
	LIBSSH2_SESSION *session = NULL;
	LIBSSH2_SFTP *sftp = NULL;
	LIBSSH2_SFTP_HANDLE *handle = NULL;
	struct stat st;
	char *pubkey = NULL;
	void *map = MAP_FAILED;
	size_t size = 0;
	double started, seconds;
	int fd = -1, sock = -1, r = -1, lib_ready = 0;

	if ((fd = open(cfg->src, O_RDONLY | O_CLOEXEC)) == -1 ||
	    fstat(fd, &st) == -1) {
		fprintf(stderr, "libssh2_put: %s: %s\n", cfg->src,
		    strerror(errno));
		goto out;
	}
	size = (size_t)st.st_size;
	if (size > 0 && (map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd,
	    0)) == MAP_FAILED) {
		fprintf(stderr, "libssh2_put: mmap %s: %s\n", cfg->src,
		    strerror(errno));
		goto out;
	}
	if (asprintf(&pubkey, "%s.pub", cfg->private_key) == -1) {
		pubkey = NULL;
		fprintf(stderr, "libssh2_put: out of memory\n");
		goto out;
	}
	if (access(pubkey, R_OK) != 0) {
		/* libssh2 derives the public half from the private key. */
		free(pubkey);
		pubkey = NULL;
	}

	if (libssh2_init(0) != 0) {
		fprintf(stderr, "libssh2_put: libssh2_init failed\n");
		goto out;
	}
	lib_ready = 1;
	if (connect_loopback(cfg->port, &sock) != 0)
		goto out;
	if ((session = libssh2_session_init()) == NULL) {
		fprintf(stderr, "libssh2_put: libssh2_session_init failed\n");
		goto out;
	}
	libssh2_session_set_blocking(session, 1);
	if (libssh2_session_handshake(session, sock) != 0) {
		report_session_error(session, "handshake");
		goto out;
	}
	if (libssh2_userauth_publickey_fromfile_ex(session, cfg->user,
	    (unsigned int)strlen(cfg->user), pubkey, cfg->private_key,
	    "") != 0) {
		report_session_error(session, "public key authentication");
		goto out;
	}
	if ((sftp = libssh2_sftp_init(session)) == NULL) {
		report_session_error(session, "sftp subsystem");
		goto out;
	}

	started = now_seconds();
	if ((handle = libssh2_sftp_open_ex(sftp, cfg->remote,
	    (unsigned int)strlen(cfg->remote),
	    LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_TRUNC,
	    0644, LIBSSH2_SFTP_OPENFILE)) == NULL) {
		fprintf(stderr, "libssh2_put: open %s: sftp status %lu\n",
		    cfg->remote, libssh2_sftp_last_error(sftp));
		goto out;
	}
	if (size > 0 && write_pipelined(session, handle, map, size,
	    cfg->window) != 0)
		goto out;
	r = libssh2_sftp_close_handle(handle);
	handle = NULL;
	if (r != 0) {
		fprintf(stderr, "libssh2_put: close %s: sftp status %lu\n",
		    cfg->remote, libssh2_sftp_last_error(sftp));
		r = -1;
		goto out;
	}
	seconds = now_seconds() - started;
	printf("bytes=%zu seconds=%.6f\n", size, seconds);
	r = 0;
 out:
	if (handle != NULL)
		libssh2_sftp_close_handle(handle);
	if (sftp != NULL)
		libssh2_sftp_shutdown(sftp);
	if (session != NULL) {
		libssh2_session_disconnect(session, "done");
		libssh2_session_free(session);
	}
	if (sock != -1)
		close(sock);
	if (lib_ready)
		libssh2_exit();
	if (map != MAP_FAILED)
		munmap(map, size);
	if (fd != -1)
		close(fd);
	free(pubkey);
	return r;
}

static void
usage(void)
{
	fprintf(stderr, "usage: libssh2_put -p port -k private_key [-u user] "
	    "[-w window_bytes] src remote_path\n");
}

int
main(int argc, char **argv)
{
	struct put_config cfg;
	unsigned long v;
	int ch;

	memset(&cfg, 0, sizeof(cfg));
	cfg.user = "root";
	cfg.window = DEFAULT_WINDOW;
	while ((ch = getopt(argc, argv, "k:p:u:w:")) != -1) {
		switch (ch) {
		case 'k':
			cfg.private_key = optarg;
			break;
		case 'p':
			if (parse_number(optarg, 65535, &v) != 0) {
				usage();
				return 1;
			}
			cfg.port = (unsigned short)v;
			break;
		case 'u':
			cfg.user = optarg;
			break;
		case 'w':
			if (parse_number(optarg, 1UL << 30, &v) != 0) {
				usage();
				return 1;
			}
			cfg.window = v;
			break;
		default:
			usage();
			return 1;
		}
	}
	if (optind + 2 != argc || cfg.port == 0 || cfg.private_key == NULL) {
		usage();
		return 1;
	}
	cfg.src = argv[optind];
	cfg.remote = argv[optind + 1];
	return run_put(&cfg) == 0 ? 0 : 1;
}
