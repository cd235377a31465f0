/* Small helpers shared by sftp-server and scp; see misc.h. */
#include "includes.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "misc.h"

#ifndef NAME_MAX
# define NAME_MAX 255
#endif

int
read_full(int fd, void *buf, size_t len, size_t *done)
{
	size_t off = 0;
	ssize_t n;
	int r = 0;

	while (off < len) {
		n = read(fd, (char *)buf + off, len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = errno;
			goto out;
		}
		if (n == 0) {
			r = EPIPE;
			goto out;
		}
		off += (size_t)n;
	}
 out:
	if (done != NULL)
		*done = off;
	return r;
}

int
write_full(int fd, const void *buf, size_t len)
{
	size_t off = 0;
	ssize_t n;

	while (off < len) {
		n = write(fd, (const char *)buf + off, len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (n == 0)
			return EIO;
		off += (size_t)n;
	}
	return 0;
}

int
dir_stream(int fd, DIR **dp)
{
	DIR *d;
	int nfd, e;

	*dp = NULL;
	if ((nfd = dup(fd)) < 0)
		return errno;
	if ((d = fdopendir(nfd)) == NULL) {
		e = errno;
		close(nfd);
		return e;
	}
	/* A dup shares the file offset: start from the first entry. */
	rewinddir(d);
	*dp = d;
	return 0;
}

double
monotime_double(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		return 0.0;
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
parse_u64(const char *s, unsigned long long *out)
{
	unsigned long long v = 0;
	const char *p;

	if (s == NULL || *s == '\0')
		return EINVAL;
	for (p = s; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return EINVAL;
		if (v > (~0ULL - (unsigned)(*p - '0')) / 10)
			return ERANGE;
		v = v * 10 + (unsigned)(*p - '0');
	}
	*out = v;
	return 0;
}

void
sanitise_copy(char *dst, size_t len, const char *src)
{
	size_t i;

	if (len == 0)
		return;
	for (i = 0; i + 1 < len && src[i] != '\0'; i++) {
		unsigned char c = (unsigned char)src[i];

		dst[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	dst[i] = '\0';
}

int
path_split(const char *path, char *dir, size_t dirlen, const char **basep)
{
	const char *slash, *base;
	size_t dlen;

	if (path[0] == '\0')
		return ENOENT;
	slash = strrchr(path, '/');
	base = slash == NULL ? path : slash + 1;
	if (*base == '\0' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
		return EISDIR;
	if (strlen(base) > NAME_MAX)
		return ENAMETOOLONG;
	if (slash == NULL)
		dlen = 0;
	else if (slash == path)
		dlen = 1;
	else
		dlen = (size_t)(slash - path);
	if (dlen + 2 > dirlen)
		return ENAMETOOLONG;
	if (dlen == 0)
		memcpy(dir, ".", 2);
	else {
		memcpy(dir, path, dlen);
		dir[dlen] = '\0';
	}
	*basep = base;
	return 0;
}

struct passwd *
session_passwd(int *numeric)
{
	static struct passwd jailed;
	static char name[32], home[PATH_MAX], empty[1];
	struct passwd *pw;
	const char *env;

	if (numeric != NULL)
		*numeric = 0;
	if ((pw = name_getpwuid(getuid())) != NULL)
		return pw;
	snprintf(name, sizeof(name), "%lu", (unsigned long)getuid());
	/* sshd sets HOME to the account's directory, the one it changed to
	 * inside the jail; it is only a default for -d and %d. */
	env = getenv("HOME");
	if (env == NULL || env[0] != '/' ||
	    snprintf(home, sizeof(home), "%s", env) >= (int)sizeof(home))
		snprintf(home, sizeof(home), "/");
	memset(&jailed, 0, sizeof(jailed));
	jailed.pw_name = name;
	jailed.pw_passwd = empty;
	jailed.pw_uid = getuid();
	jailed.pw_gid = getgid();
	jailed.pw_gecos = empty;
	jailed.pw_dir = home;
	jailed.pw_shell = empty;
	if (numeric != NULL)
		*numeric = 1;
	return &jailed;
}

int
open_null(void)
{
	int fd, p[2];

	if ((fd = open("/dev/null", O_RDWR)) >= 0)
		return fd;
	if (pipe(p) != 0)
		return -1;
	close(p[1]);
	return p[0];
}

#ifdef STATIC_NAME_LOOKUP
/* One pass over a file; the entry returned is fgetpwent's (fgetgrent's)
 * static one, as getpwuid's would be. */
static struct passwd *
files_passwd(const char *name, uid_t uid)
{
	struct passwd *pw;
	FILE *f;

	if ((f = fopen("/etc/passwd", "re")) == NULL)
		return NULL;
	while ((pw = fgetpwent(f)) != NULL &&
	    (name != NULL ? strcmp(pw->pw_name, name) != 0 : pw->pw_uid != uid))
		;
	fclose(f);
	return pw;
}

struct passwd *
name_getpwuid(uid_t uid)
{
	return files_passwd(NULL, uid);
}

struct passwd *
name_getpwnam(const char *name)
{
	return files_passwd(name, 0);
}

struct group *
name_getgrgid(gid_t gid)
{
	struct group *gr;
	FILE *f;

	if ((f = fopen("/etc/group", "re")) == NULL)
		return NULL;
	while ((gr = fgetgrent(f)) != NULL && gr->gr_gid != gid)
		;
	fclose(f);
	return gr;
}
#else
struct passwd *
name_getpwuid(uid_t uid)
{
	return getpwuid(uid);
}

struct passwd *
name_getpwnam(const char *name)
{
	return getpwnam(name);
}

struct group *
name_getgrgid(gid_t gid)
{
	return getgrgid(gid);
}
#endif

const char *
ssh_client_address(char *buf, size_t len)
{
	const char *conn = getenv("SSH_CONNECTION");
	size_t n;

	if (conn == NULL || *conn == '\0')
		return "UNKNOWN";
	n = strcspn(conn, " ");
	if (n >= len)
		n = len - 1;
	memcpy(buf, conn, n);
	buf[n] = '\0';
	sanitise_copy(buf, len, buf);
	return buf;
}
