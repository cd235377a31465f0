/* Small helpers shared by sftp-server and scp. */
#ifndef MISC_H
#define MISC_H

#include <sys/types.h>
#include <dirent.h>
#include <grp.h>
#include <pwd.h>
#include <stddef.h>

/* Read or write exactly `len` bytes, retrying on EINTR and short counts.
 * Return 0, or an errno value (EPIPE for EOF on read, with *done set to the
 * bytes transferred when `done` is not NULL). */
int read_full(int fd, void *buf, size_t len, size_t *done);
int write_full(int fd, const void *buf, size_t len);

/*
 * A directory stream on a second descriptor of directory `fd` (which
 * stays open and unchanged), read from the start: for the *at() calls
 * to go on using `fd` while the entries are walked.  0 or an errno.
 */
int dir_stream(int fd, DIR **dp);

/* Monotonic clock in seconds. */
double monotime_double(void);

/* Parse a decimal unsigned 64-bit number that must fill the whole string;
 * 0 or EINVAL / ERANGE. */
int parse_u64(const char *s, unsigned long long *out);

/*
 * Split `path` into its directory part (copied to `dir`, "." when there is
 * none) and its last component (*basep points into `path`).  EISDIR when
 * there is no last component that open(2) could create ("dir/", ".",
 * ".."), ENAMETOOLONG when a part does not fit.
 */
int path_split(const char *path, char *dir, size_t dirlen,
    const char **basep);

/* Replace non-printable bytes with '?' so peer-supplied text is safe to
 * print or log; writes at most `len` bytes including the NUL. */
void sanitise_copy(char *dst, size_t len, const char *src);

/*
 * A descriptor that reads as end of file and takes no output: /dev/null,
 * or where a chroot jail has none, the read end of a pipe whose write end
 * is closed (writes to it fail).  -1 with errno on failure.
 */
int open_null(void);

/*
 * getpwuid, getpwnam and getgrgid.  A static build reads /etc/passwd and
 * /etc/group itself: glibc's static name service would load the shared
 * NSS modules nsswitch.conf names (it crashes in a lookup that falls
 * through to libnss_systemd), and a jail has none anyway.  Users known
 * only to LDAP or sssd are then shown by number.
 */
struct passwd *name_getpwuid(uid_t uid);
struct passwd *name_getpwnam(const char *name);
struct group *name_getgrgid(gid_t gid);

/*
 * The account this process runs as.  A chroot jail may have no
 * /etc/passwd (and a static build no other name service): then the user
 * is known by number, as a listing shows an owner without a name, with
 * the home directory sshd passed in HOME (or "/").  *numeric (if not
 * NULL) says which it was.  Never NULL; the result is static.
 */
struct passwd *session_passwd(int *numeric);

/* The client's address: the first word of sshd's SSH_CONNECTION,
 * sanitised, in `buf`; "UNKNOWN" without it. */
const char *ssh_client_address(char *buf, size_t len);

#endif /* MISC_H */
