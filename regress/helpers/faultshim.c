/*
 * faultshim.so: an LD_PRELOAD library that makes chosen libc calls fail,
 * and counts them, for the fault-injection tests (regress/t-faults.sh).
 *
 * Environment:
 *   FAULTSHIM=RULE[,RULE...]   RULE is FUNC:ACTION[:OPTION...]
 *       FUNC    a wrapped function (list below), or a prefix ending in
 *               '*' ("rename*" is rename, renameat and renameat2).
 *               open64/openat64/pwrite64 count as open/openat/pwrite.
 *       ACTION  an errno name (EIO, ENOSPC, EDQUOT, EMFILE, EINTR, ...):
 *               the call fails with it without being made;
 *               SHORT (write, pwrite): write at most half, at least 1;
 *               ZERO (getrandom): fill with zero bytes, so temporary
 *               names become predictable;
 *               DELAY: sleep ms=N milliseconds, then make the call (to
 *               widen a race window).
 *       OPTION  after=N   the first N matching calls succeed, later fail
 *               nth=N     only the Nth matching call fails (1-based)
 *               ms=N      the DELAY in milliseconds
 *               dir, file only calls on a directory / non-directory fd
 *               tmpfile   only opens with O_TMPFILE (open* rules): fail
 *                         them with EOPNOTSUPP to get named staging
 *   FAULTSHIM_DIR=DIR          only calls on files below DIR match (fds
 *               by their /proc/self/fd target, names resolved against
 *               their directory fd); unset: every call matches
 *   FAULTSHIM_COUNT=FILE       append "PID FUNC KIND RESULT NAME" for
 *               every matching call (KIND file, dir, path, tmpfile or -; RESULT ok,
 *               an errno name, or SHORT/ZERO; NAME the last path
 *               component), whether or not a rule fired
 *
 * Wrapped: open open64 openat openat64 read write pwrite pwrite64 close
 * flock fsync fdatasync sync_file_range ftruncate copy_file_range fchmod
 * fchown fsetxattr rename renameat renameat2 link linkat unlink unlinkat
 * getrandom.  Only calls through the dynamic symbol are seen: glibc's
 * internal calls (stdio's own write, say) and raw syscall() are not, which
 * is why t-faults.sh also injects with strace.
 */
/* The wrappers below replace libc's functions themselves: the fortified
 * inline versions (Debian's hardening flags) must not be used here. */
#undef _FORTIFY_SOURCE
#include "includes.h"

#include <sys/types.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#ifdef HAVE_SYS_XATTR_H
# include <sys/xattr.h>
#endif
#ifdef HAVE_SYS_RANDOM_H
# include <sys/random.h>
#endif

#include <sys/file.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_RULES	16

enum action { ACT_ERRNO, ACT_SHORT, ACT_ZERO, ACT_DELAY };
enum kind_filter { KIND_ANY, KIND_DIR, KIND_FILE, KIND_TMPFILE };

struct rule {
	char func[32];
	int prefix;		/* func ended in '*' */
	enum action action;
	int err;
	unsigned long after;	/* 0: no "after" */
	unsigned long nth;	/* 0: no "nth" */
	unsigned long ms;	/* DELAY: milliseconds */
	enum kind_filter kind;
	unsigned long seen;	/* matching calls so far */
};

static struct {
	int ready;
	struct rule rules[MAX_RULES];
	int nrules;
	char dir[PATH_MAX];	/* "" = everything */
	char count_path[PATH_MAX];
	int count_fd;
	dev_t count_dev;
	ino_t count_ino;
} shim = { .count_fd = -1 };

static const struct {
	const char *name;
	int err;
} errnos[] = {
	{ "EPERM", EPERM }, { "ENOENT", ENOENT }, { "EINTR", EINTR },
	{ "EIO", EIO }, { "EBADF", EBADF }, { "EAGAIN", EAGAIN },
	{ "ENOMEM", ENOMEM }, { "EACCES", EACCES }, { "EBUSY", EBUSY },
	{ "EEXIST", EEXIST }, { "EXDEV", EXDEV }, { "EINVAL", EINVAL },
	{ "ENFILE", ENFILE }, { "EMFILE", EMFILE }, { "EFBIG", EFBIG },
	{ "ENOSPC", ENOSPC }, { "EROFS", EROFS }, { "EMLINK", EMLINK },
	{ "ENOSYS", ENOSYS }, { "EOPNOTSUPP", EOPNOTSUPP },
	{ "EDQUOT", EDQUOT }, { "ENAMETOOLONG", ENAMETOOLONG },
	{ "ELOOP", ELOOP }, { "ENOTDIR", ENOTDIR }, { "EISDIR", EISDIR },
};

static const char *
err_name(int e)
{
	size_t i;

	for (i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++) {
		if (errnos[i].err == e)
			return errnos[i].name;
	}
	return "E?";
}

/* The next libc definition of `name`; abort if there is none, since a
 * test run without the real call would be meaningless. */
static void *
next_sym(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);

	if (p == NULL) {
		static const char msg[] = "faultshim: missing libc symbol\n";

		(void)syscall(SYS_write, 2, msg, sizeof(msg) - 1);
		abort();
	}
	return p;
}

#define REAL(name) \
	static __typeof__(name) *real_##name; \
	if (real_##name == NULL) \
		real_##name = (__typeof__(name) *)next_sym(#name)

static void
parse_rule(char *text)
{
	struct rule *r;
	char *field, *save = NULL;
	size_t i;
	int n = 0;

	if (shim.nrules >= MAX_RULES)
		return;
	r = &shim.rules[shim.nrules];
	memset(r, 0, sizeof(*r));
	for (field = strtok_r(text, ":", &save); field != NULL;
	    field = strtok_r(NULL, ":", &save), n++) {
		if (n == 0) {
			snprintf(r->func, sizeof(r->func), "%s", field);
			i = strlen(r->func);
			if (i > 0 && r->func[i - 1] == '*') {
				r->func[i - 1] = '\0';
				r->prefix = 1;
			}
		} else if (n == 1) {
			if (strcasecmp(field, "SHORT") == 0)
				r->action = ACT_SHORT;
			else if (strcasecmp(field, "ZERO") == 0)
				r->action = ACT_ZERO;
			else if (strcasecmp(field, "DELAY") == 0)
				r->action = ACT_DELAY;
			else {
				r->action = ACT_ERRNO;
				r->err = EIO;
				for (i = 0; i < sizeof(errnos) /
				    sizeof(errnos[0]); i++) {
					if (strcmp(errnos[i].name, field) == 0)
						r->err = errnos[i].err;
				}
			}
		} else if (strncmp(field, "after=", 6) == 0) {
			r->after = strtoul(field + 6, NULL, 10);
		} else if (strncmp(field, "nth=", 4) == 0) {
			r->nth = strtoul(field + 4, NULL, 10);
		} else if (strncmp(field, "ms=", 3) == 0) {
			r->ms = strtoul(field + 3, NULL, 10);
		} else if (strcmp(field, "dir") == 0) {
			r->kind = KIND_DIR;
		} else if (strcmp(field, "file") == 0) {
			r->kind = KIND_FILE;
		} else if (strcmp(field, "tmpfile") == 0) {
			r->kind = KIND_TMPFILE;
		}
	}
	if (n >= 2)
		shim.nrules++;
}

__attribute__((constructor))
static void
shim_init(void)
{
	char buf[1024], *rule, *save = NULL;
	const char *v;

	if ((v = getenv("FAULTSHIM")) != NULL) {
		snprintf(buf, sizeof(buf), "%s", v);
		for (rule = strtok_r(buf, ",", &save); rule != NULL;
		    rule = strtok_r(NULL, ",", &save))
			parse_rule(rule);
	}
	if ((v = getenv("FAULTSHIM_DIR")) != NULL && *v != '\0') {
		/* Canonical, to compare with /proc's answers. */
		if (realpath(v, shim.dir) == NULL)
			snprintf(shim.dir, sizeof(shim.dir), "%s", v);
	}
	if ((v = getenv("FAULTSHIM_COUNT")) != NULL && *v != '\0')
		snprintf(shim.count_path, sizeof(shim.count_path), "%s", v);
	shim.ready = 1;
}

static int
under_dir(const char *path)
{
	size_t n = strlen(shim.dir);

	if (shim.dir[0] == '\0')
		return 1;
	return strncmp(path, shim.dir, n) == 0 &&
	    (path[n] == '/' || path[n] == '\0');
}

static void
fd_target(int fd, char *out, size_t len)
{
	char proc[64];
	ssize_t n;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if ((n = readlink(proc, out, len - 1)) < 0)
		n = 0;
	out[n] = '\0';
	/* An unlinked file (O_TMPFILE, or a removed temporary): keep the
	 * log one word per field. */
	if ((size_t)n > 10 && strcmp(out + n - 10, " (deleted)") == 0)
		out[n - 10] = '\0';
}

/* `name` relative to `dirfd` as an absolute path (not canonicalised). */
static void
at_path(int dirfd, const char *name, char *out, size_t len)
{
	char dir[PATH_MAX];

	if (name == NULL) {
		out[0] = '\0';
		return;
	}
	if (name[0] == '/') {
		snprintf(out, len, "%s", name);
		return;
	}
	if (dirfd == AT_FDCWD) {
		if (getcwd(dir, sizeof(dir)) == NULL)
			dir[0] = '\0';
	} else {
		fd_target(dirfd, dir, sizeof(dir));
	}
	if (name[0] == '\0')
		snprintf(out, len, "%s", dir);
	else
		snprintf(out, len, "%s/%s", dir, name);
}

static const char *
base_name(const char *path)
{
	const char *s = strrchr(path, '/');

	if (s == NULL)
		return path[0] != '\0' ? path : "-";
	return s[1] != '\0' ? s + 1 : path;
}

static const char *
fd_kind(int fd)
{
	struct stat st;

	if (fstat(fd, &st) != 0)
		return "-";
	return S_ISDIR(st.st_mode) ? "dir" : "file";
}

/* One line to FAULTSHIM_COUNT; the fd is checked every time because a
 * program may close descriptors it did not open (closefrom). */
static void
count_line(const char *func, const char *kind, const char *result,
    const char *path)
{
	REAL(openat);
	REAL(write);
	REAL(close);
	char line[PATH_MAX + 128];
	struct stat st;
	int n, fd;

	if (shim.count_path[0] == '\0')
		return;
	if (shim.count_fd < 0 || fstat(shim.count_fd, &st) != 0 ||
	    st.st_dev != shim.count_dev || st.st_ino != shim.count_ino) {
		fd = real_openat(AT_FDCWD, shim.count_path,
		    O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd < 0)
			return;
		/* Out of the way of the descriptors the program uses, where
		 * the limit allows.  The real close: the log file may lie
		 * below FAULTSHIM_DIR, and logging its close would recurse. */
		shim.count_fd = fcntl(fd, F_DUPFD_CLOEXEC, 700);
		if (shim.count_fd < 0)
			shim.count_fd = fd;
		else
			real_close(fd);
		if (fstat(shim.count_fd, &st) != 0)
			return;
		shim.count_dev = st.st_dev;
		shim.count_ino = st.st_ino;
	}
	n = snprintf(line, sizeof(line), "%ld %s %s %s %s\n", (long)getpid(),
	    func, kind, result, base_name(path));
	if (n > 0)
		(void)real_write(shim.count_fd, line,
		    (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

/*
 * Decide one call: NULL if it is not ours to touch (outside the
 * directory), else the rule that fires (or a static "no fault" marker).
 */
static struct rule no_fault;

static struct rule *
decide(const char *func, const char *path, const char *kind)
{
	struct rule *r, *fire = &no_fault;
	unsigned long seen;
	int i;

	if (!shim.ready)
		return NULL;
	if (path != NULL && !under_dir(path))
		return NULL;
	for (i = 0; i < shim.nrules; i++) {
		r = &shim.rules[i];
		if (r->prefix ? strncmp(func, r->func, strlen(r->func)) != 0 :
		    strcmp(func, r->func) != 0)
			continue;
		if ((r->kind == KIND_DIR && strcmp(kind, "dir") != 0) ||
		    (r->kind == KIND_FILE && strcmp(kind, "file") != 0) ||
		    (r->kind == KIND_TMPFILE && strcmp(kind, "tmpfile") != 0))
			continue;
		seen = __atomic_add_fetch(&r->seen, 1, __ATOMIC_SEQ_CST);
		if (r->nth != 0 && seen != r->nth)
			continue;
		if (r->after != 0 && seen <= r->after)
			continue;
		if (fire == &no_fault)
			fire = r;
	}
	/* A delay widens a race window; the call itself then goes ahead. */
	if (fire != &no_fault && fire->action == ACT_DELAY) {
		struct timespec ts;

		ts.tv_sec = (time_t)(fire->ms / 1000);
		ts.tv_nsec = (long)(fire->ms % 1000) * 1000000L;
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
	}
	return fire;
}

static const char *
result_name(const struct rule *r, int ret_failed, int err)
{
	if (r != NULL && r != &no_fault && r->action == ACT_SHORT)
		return "SHORT";
	if (r != NULL && r != &no_fault && r->action == ACT_ZERO)
		return "ZERO";
	if (r != NULL && r != &no_fault && r->action == ACT_DELAY)
		return ret_failed ? err_name(err) : "DELAY";
	return ret_failed ? err_name(err) : "ok";
}

/* Fail with the rule's errno: the caller returns -1. */
static int
inject(const struct rule *r)
{
	errno = r->err;
	return -1;
}

static int
fires(const struct rule *r)
{
	return r != NULL && r != &no_fault && r->action == ACT_ERRNO;
}

/* Common tail of every wrapper: log, keep errno. */
static void
finish(const char *func, const char *kind, const char *path,
    const struct rule *r, long ret)
{
	int saved = errno;

	if (r != NULL)
		count_line(func, kind, result_name(r, ret < 0, saved), path);
	errno = saved;
}

/* ------------------------------------------------------------------ */
/* fd-based calls                                                      */

#define FD_CALL_BEGIN(fname, fd) \
	char path_[PATH_MAX]; \
	const char *kind_; \
	struct rule *rule_; \
	fd_target((fd), path_, sizeof(path_)); \
	kind_ = fd_kind(fd); \
	rule_ = decide((fname), path_, kind_)

int
fsync(int fd)
{
	REAL(fsync);
	FD_CALL_BEGIN("fsync", fd);
	int ret = fires(rule_) ? inject(rule_) : real_fsync(fd);

	finish("fsync", kind_, path_, rule_, ret);
	return ret;
}

int
fdatasync(int fd)
{
	REAL(fdatasync);
	FD_CALL_BEGIN("fdatasync", fd);
	int ret = fires(rule_) ? inject(rule_) : real_fdatasync(fd);

	finish("fdatasync", kind_, path_, rule_, ret);
	return ret;
}

int
sync_file_range(int fd, off64_t off, off64_t nbytes, unsigned int flags)
{
	REAL(sync_file_range);
	FD_CALL_BEGIN("sync_file_range", fd);
	int ret = fires(rule_) ? inject(rule_) :
	    real_sync_file_range(fd, off, nbytes, flags);

	finish("sync_file_range", kind_, path_, rule_, ret);
	return ret;
}

int
flock(int fd, int op)
{
	REAL(flock);
	FD_CALL_BEGIN("flock", fd);
	int ret = fires(rule_) ? inject(rule_) : real_flock(fd, op);

	finish("flock", kind_, path_, rule_, ret);
	return ret;
}

int
close(int fd)
{
	REAL(close);
	char path_[PATH_MAX];
	struct rule *rule_ = NULL;
	const char *kind_ = "-";
	int ret;

	/* Only decide for files below the directory: close() is called
	 * for everything, and before the constructor ran. */
	if (shim.ready && shim.dir[0] != '\0' && fd != shim.count_fd) {
		fd_target(fd, path_, sizeof(path_));
		kind_ = fd_kind(fd);
		rule_ = decide("close", path_, kind_);
	}
	if (fires(rule_)) {
		/* Like NFS: the descriptor is gone even though it failed. */
		(void)real_close(fd);
		ret = inject(rule_);
	} else {
		ret = real_close(fd);
	}
	if (rule_ != NULL)
		finish("close", kind_, path_, rule_, ret);
	return ret;
}

ssize_t
read(int fd, void *buf, size_t len)
{
	REAL(read);
	FD_CALL_BEGIN("read", fd);
	ssize_t ret = fires(rule_) ? inject(rule_) : real_read(fd, buf, len);

	finish("read", kind_, path_, rule_, ret);
	return ret;
}

static ssize_t
do_pread(int fd, void *buf, size_t len, off64_t off)
{
	REAL(pread64);
	FD_CALL_BEGIN("pread", fd);
	ssize_t ret = fires(rule_) ? inject(rule_) :
	    real_pread64(fd, buf, len, off);

	finish("pread", kind_, path_, rule_, ret);
	return ret;
}

ssize_t
pread(int fd, void *buf, size_t len, off_t off)
{
	return do_pread(fd, buf, len, (off64_t)off);
}

ssize_t
pread64(int fd, void *buf, size_t len, off64_t off)
{
	return do_pread(fd, buf, len, off);
}

static size_t
short_len(const struct rule *r, size_t len)
{
	if (r != NULL && r != &no_fault && r->action == ACT_SHORT && len > 1)
		return len / 2;
	return len;
}

ssize_t
write(int fd, const void *buf, size_t len)
{
	REAL(write);
	FD_CALL_BEGIN("write", fd);
	ssize_t ret = fires(rule_) ? inject(rule_) :
	    real_write(fd, buf, short_len(rule_, len));

	finish("write", kind_, path_, rule_, ret);
	return ret;
}

static ssize_t
do_pwrite(const char *func, int fd, const void *buf, size_t len, off64_t off)
{
	REAL(pwrite64);
	FD_CALL_BEGIN("pwrite", fd);
	ssize_t ret = fires(rule_) ? inject(rule_) :
	    real_pwrite64(fd, buf, short_len(rule_, len), off);

	(void)func;
	finish("pwrite", kind_, path_, rule_, ret);
	return ret;
}

ssize_t
pwrite(int fd, const void *buf, size_t len, off_t off)
{
	return do_pwrite("pwrite", fd, buf, len, (off64_t)off);
}

ssize_t
pwrite64(int fd, const void *buf, size_t len, off64_t off)
{
	return do_pwrite("pwrite64", fd, buf, len, off);
}

int
ftruncate(int fd, off_t len)
{
	REAL(ftruncate);
	FD_CALL_BEGIN("ftruncate", fd);
	int ret = fires(rule_) ? inject(rule_) : real_ftruncate(fd, len);

	finish("ftruncate", kind_, path_, rule_, ret);
	return ret;
}

ssize_t
copy_file_range(int infd, off64_t *inoff, int outfd, off64_t *outoff,
    size_t len, unsigned int flags)
{
	REAL(copy_file_range);
	FD_CALL_BEGIN("copy_file_range", outfd);
	ssize_t ret = fires(rule_) ? inject(rule_) :
	    real_copy_file_range(infd, inoff, outfd, outoff, len, flags);

	finish("copy_file_range", kind_, path_, rule_, ret);
	return ret;
}

int
fchmod(int fd, mode_t mode)
{
	REAL(fchmod);
	FD_CALL_BEGIN("fchmod", fd);
	int ret = fires(rule_) ? inject(rule_) : real_fchmod(fd, mode);

	finish("fchmod", kind_, path_, rule_, ret);
	return ret;
}

int
fchown(int fd, uid_t uid, gid_t gid)
{
	REAL(fchown);
	FD_CALL_BEGIN("fchown", fd);
	int ret = fires(rule_) ? inject(rule_) : real_fchown(fd, uid, gid);

	finish("fchown", kind_, path_, rule_, ret);
	return ret;
}

#ifdef HAVE_SYS_XATTR_H
int
fsetxattr(int fd, const char *name, const void *value, size_t size,
    int flags)
{
	REAL(fsetxattr);
	FD_CALL_BEGIN("fsetxattr", fd);
	int ret = fires(rule_) ? inject(rule_) :
	    real_fsetxattr(fd, name, value, size, flags);

	finish("fsetxattr", kind_, path_, rule_, ret);
	return ret;
}
#endif

/* ------------------------------------------------------------------ */
/* Name-based calls                                                    */

static int
do_openat(const char *func, int dirfd, const char *name, int flags,
    mode_t mode)
{
	REAL(openat);
	char path[PATH_MAX];
	const char *kind = "path";
	struct rule *r;
	int ret;

#ifdef O_TMPFILE
	if ((flags & O_TMPFILE) == O_TMPFILE)
		kind = "tmpfile";
#endif
	at_path(dirfd, name, path, sizeof(path));
	r = decide(func, path, kind);
	ret = fires(r) ? inject(r) : real_openat(dirfd, name, flags, mode);
	finish(func, kind, path, r, ret);
	return ret;
}

static mode_t
mode_arg(int flags, va_list ap)
{
#ifdef O_TMPFILE
	if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE)
#else
	if (flags & O_CREAT)
#endif
		return (mode_t)va_arg(ap, int);
	return 0;
}

int
open(const char *name, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	return do_openat("open", AT_FDCWD, name, flags, mode);
}

int
open64(const char *name, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	return do_openat("open", AT_FDCWD, name, flags, mode);
}

int
openat(int dirfd, const char *name, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	return do_openat("openat", dirfd, name, flags, mode);
}

int
openat64(int dirfd, const char *name, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	return do_openat("openat", dirfd, name, flags, mode);
}

/* Two names: ours if either is below the directory; logged by the new
 * name. */
static struct rule *
decide2(const char *func, int fd1, const char *n1, int fd2, const char *n2,
    char *newpath, size_t len)
{
	char oldpath[PATH_MAX];

	at_path(fd1, n1, oldpath, sizeof(oldpath));
	at_path(fd2, n2, newpath, len);
	if (shim.dir[0] != '\0' && !under_dir(oldpath) && !under_dir(newpath))
		return NULL;
	return decide(func, NULL, "path");
}

int
renameat2(int oldfd, const char *oldname, int newfd, const char *newname,
    unsigned int flags)
{
	REAL(renameat2);
	char path[PATH_MAX];
	struct rule *r = decide2("renameat2", oldfd, oldname, newfd, newname,
	    path, sizeof(path));
	int ret = fires(r) ? inject(r) :
	    real_renameat2(oldfd, oldname, newfd, newname, flags);

	finish("renameat2", "path", path, r, ret);
	return ret;
}

int
renameat(int oldfd, const char *oldname, int newfd, const char *newname)
{
	REAL(renameat);
	char path[PATH_MAX];
	struct rule *r = decide2("renameat", oldfd, oldname, newfd, newname,
	    path, sizeof(path));
	int ret = fires(r) ? inject(r) :
	    real_renameat(oldfd, oldname, newfd, newname);

	finish("renameat", "path", path, r, ret);
	return ret;
}

int
rename(const char *oldname, const char *newname)
{
	REAL(rename);
	char path[PATH_MAX];
	struct rule *r = decide2("rename", AT_FDCWD, oldname, AT_FDCWD,
	    newname, path, sizeof(path));
	int ret = fires(r) ? inject(r) : real_rename(oldname, newname);

	finish("rename", "path", path, r, ret);
	return ret;
}

int
linkat(int oldfd, const char *oldname, int newfd, const char *newname,
    int flags)
{
	REAL(linkat);
	char path[PATH_MAX];
	struct rule *r = decide2("linkat", oldfd, oldname, newfd, newname,
	    path, sizeof(path));
	int ret = fires(r) ? inject(r) :
	    real_linkat(oldfd, oldname, newfd, newname, flags);

	finish("linkat", "path", path, r, ret);
	return ret;
}

int
link(const char *oldname, const char *newname)
{
	REAL(link);
	char path[PATH_MAX];
	struct rule *r = decide2("link", AT_FDCWD, oldname, AT_FDCWD,
	    newname, path, sizeof(path));
	int ret = fires(r) ? inject(r) : real_link(oldname, newname);

	finish("link", "path", path, r, ret);
	return ret;
}

int
unlinkat(int dirfd, const char *name, int flags)
{
	REAL(unlinkat);
	char path[PATH_MAX];
	struct rule *r;
	int ret;

	at_path(dirfd, name, path, sizeof(path));
	r = decide("unlinkat", path, "path");
	ret = fires(r) ? inject(r) : real_unlinkat(dirfd, name, flags);
	finish("unlinkat", "path", path, r, ret);
	return ret;
}

int
unlink(const char *name)
{
	REAL(unlink);
	char path[PATH_MAX];
	struct rule *r;
	int ret;

	at_path(AT_FDCWD, name, path, sizeof(path));
	r = decide("unlink", path, "path");
	ret = fires(r) ? inject(r) : real_unlink(name);
	finish("unlink", "path", path, r, ret);
	return ret;
}

/* ------------------------------------------------------------------ */

ssize_t
getrandom(void *buf, size_t len, unsigned int flags)
{
	REAL(getrandom);
	struct rule *r = decide("getrandom", NULL, "-");
	ssize_t ret;

	if (fires(r)) {
		ret = inject(r);
	} else if (r != NULL && r != &no_fault && r->action == ACT_ZERO) {
		memset(buf, 0, len);
		ret = (ssize_t)len;
	} else {
		ret = real_getrandom(buf, len, flags);
	}
	finish("getrandom", "-", "-", r, ret);
	return ret;
}
