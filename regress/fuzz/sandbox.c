/* The dispatcher harness's sandbox; see sandbox.h and README. */
#include "includes.h"

#include <sys/types.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sandbox.h"

#define MAX_WRITABLE	8
#define SCRATCH_OPTS	"size=16m,nr_inodes=4096,mode=0755"

/* Directories the fuzzed server may use as its scratch mount point, in
 * order of preference: ordinary empty places on Debian. */
static const char *const scratch_candidates[] = {
	"/srv", "/media", "/mnt", "/opt", NULL
};

static char writable[MAX_WRITABLE][PATH_MAX];
static size_t nwritable;
static const char *scratch;

static void
say(const char *what, int e)
{
	fprintf(stderr, "fuzz sandbox: %s%s%s\n", what, e ? ": " : "",
	    e ? strerror(e) : "");
}

/* Is `path` equal to `dir` or below it? */
static int
path_within(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	if (strcmp(dir, "/") == 0)
		return 1;
	return strncmp(path, dir, n) == 0 &&
	    (path[n] == '\0' || path[n] == '/');
}

static int
add_writable(const char *dir)
{
	char real[PATH_MAX];
	size_t i;

	if (realpath(dir, real) == NULL) {
		say(dir, errno);
		return errno;
	}
	if (strcmp(real, "/") == 0) {
		/* The fuzzed server could then reach everything. */
		say("refusing to keep / writable (run from a work directory "
		    "or give -artifact_prefix=DIR/)", 0);
		return EPERM;
	}
	for (i = 0; i < nwritable; i++)
		if (strcmp(writable[i], real) == 0)
			return 0;
	if (nwritable == MAX_WRITABLE) {
		say("too many corpus directories", 0);
		return E2BIG;
	}
	snprintf(writable[nwritable++], PATH_MAX, "%s", real);
	return 0;
}

/* libFuzzer writes new inputs to corpus directories (positional
 * arguments) and crash reports under -artifact_prefix (default: the
 * working directory) or -exact_artifact_path. */
static int
collect_writable(int argc, char **argv)
{
	char dir[PATH_MAX], *slash;
	const char *v;
	struct stat st;
	int i, have_artifacts = 0, r;

	for (i = 1; i < argc; i++) {
		v = argv[i];
		if (strncmp(v, "-artifact_prefix=", 17) == 0 ||
		    strncmp(v, "-exact_artifact_path=", 21) == 0) {
			snprintf(dir, sizeof(dir), "%s", strchr(v, '=') + 1);
			if ((slash = strrchr(dir, '/')) == NULL)
				snprintf(dir, sizeof(dir), ".");
			else if (slash == dir)
				dir[1] = '\0';
			else
				*slash = '\0';
			if ((r = add_writable(dir)) != 0)
				return r;
			have_artifacts = 1;
		} else if (v[0] != '-' && stat(v, &st) == 0 &&
		    S_ISDIR(st.st_mode)) {
			if ((r = add_writable(v)) != 0)
				return r;
		}
	}
	return have_artifacts ? 0 : add_writable(".");
}

static int
write_file(const char *path, const char *text)
{
	int fd, r = 0;
	size_t len = strlen(text);

	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) == -1)
		return errno;
	if (write(fd, text, len) != (ssize_t)len)
		r = errno ? errno : EIO;
	close(fd);
	return r;
}

static int
enter_namespace(void)
{
	char map[64];
	uid_t uid = getuid();
	gid_t gid = getgid();
	int r;

	if (uid == 0 && unshare(CLONE_NEWNS) == 0)
		return 0;
	/* Unprivileged: a user namespace gives the right to mount in a
	 * mount namespace of our own, and nothing outside it. */
	if (unshare(CLONE_NEWUSER | CLONE_NEWNS) == -1) {
		r = errno;
		say("unshare (needs root or user namespaces)", r);
		return r;
	}
	snprintf(map, sizeof(map), "%lu %lu 1\n", (unsigned long)uid,
	    (unsigned long)uid);
	if ((r = write_file("/proc/self/setgroups", "deny")) != 0 ||
	    (r = write_file("/proc/self/uid_map", map)) != 0)
		goto fail;
	snprintf(map, sizeof(map), "%lu %lu 1\n", (unsigned long)gid,
	    (unsigned long)gid);
	if ((r = write_file("/proc/self/gid_map", map)) != 0)
		goto fail;
	return 0;
 fail:
	say("user namespace id maps", r);
	return r;
}

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void
unescape(char *s)
{
	char *d = s;

	while (*s != '\0') {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' &&
		    s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*d++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 |
			    (s[3] - '0'));
			s += 4;
		} else
			*d++ = *s++;
	}
	*d = '\0';
}

/* The per-mount flags a remount must keep (a user namespace may not
 * drop them), from mountinfo's options field. */
static unsigned long
mount_flags(const char *opts, int *rdonly)
{
	unsigned long f = 0;
	char buf[256], *tok, *save = NULL;

	*rdonly = 0;
	snprintf(buf, sizeof(buf), "%s", opts);
	for (tok = strtok_r(buf, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save)) {
		if (strcmp(tok, "ro") == 0)
			*rdonly = 1;
		else if (strcmp(tok, "nosuid") == 0)
			f |= MS_NOSUID;
		else if (strcmp(tok, "nodev") == 0)
			f |= MS_NODEV;
		else if (strcmp(tok, "noexec") == 0)
			f |= MS_NOEXEC;
		else if (strcmp(tok, "noatime") == 0)
			f |= MS_NOATIME;
		else if (strcmp(tok, "nodiratime") == 0)
			f |= MS_NODIRATIME;
		else if (strcmp(tok, "relatime") == 0)
			f |= MS_RELATIME;
		else if (strcmp(tok, "strictatime") == 0)
			f |= MS_STRICTATIME;
	}
	return f;
}

static int
is_writable(const char *mp)
{
	size_t i;

	for (i = 0; i < nwritable; i++)
		if (strcmp(writable[i], mp) == 0)
			return 1;
	return 0;
}

/*
 * Every mount read-only, nodev (a read-only mount still lets one write
 * to a device node), nosuid; the writable directories (bind-mounted onto
 * themselves beforehand) read-write but still nodev and nosuid.  Also
 * picks the scratch mount point: a candidate with no mount at or below
 * it and no writable directory at or above it.
 */
static int
lock_mounts(void)
{
	FILE *f;
	char line[4096], *field[7], *p, *save;
	char busy[8] = { 0 };
	unsigned long flags;
	size_t i, n;
	int r = 0, rdonly, want_rw;

	if ((f = fopen("/proc/self/mountinfo", "re")) == NULL) {
		r = errno;
		say("/proc/self/mountinfo", r);
		return r;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		save = NULL;
		for (n = 0, p = strtok_r(line, " \n", &save); p != NULL &&
		    n < 7; p = strtok_r(NULL, " \n", &save))
			field[n++] = p;
		if (n < 6)
			continue;
		unescape(field[4]);
		for (i = 0; scratch_candidates[i] != NULL; i++)
			if (path_within(field[4], scratch_candidates[i]))
				busy[i] = 1;
		flags = mount_flags(field[5], &rdonly);
		want_rw = is_writable(field[4]);
		if (!want_rw && rdonly && (flags & MS_NODEV) &&
		    (flags & MS_NOSUID))
			continue;	/* nothing to tighten */
		flags |= MS_REMOUNT | MS_BIND | MS_NODEV | MS_NOSUID;
		if (!want_rw)
			flags |= MS_RDONLY;
		if (mount(NULL, field[4], NULL, flags, NULL) == -1) {
			if (errno == ENOENT)
				continue;	/* not reachable anyway */
			r = errno;
			say(field[4], r);
			break;
		}
	}
	fclose(f);
	if (r != 0)
		return r;
	for (i = 0; scratch_candidates[i] != NULL && scratch == NULL; i++) {
		struct stat st;
		size_t w;

		if (busy[i] || stat(scratch_candidates[i], &st) != 0 ||
		    !S_ISDIR(st.st_mode))
			continue;
		for (w = 0; w < nwritable; w++)
			if (path_within(scratch_candidates[i], writable[w]))
				break;
		if (w == nwritable)
			scratch = scratch_candidates[i];
	}
	if (scratch == NULL) {
		say("no mount point for the scratch directory", 0);
		return ENOENT;
	}
	return 0;
}

static int
mount_scratch(void)
{
	int r;

	if (mount("fuzz-scratch", scratch, "tmpfs", MS_NODEV | MS_NOSUID,
	    SCRATCH_OPTS) == -1) {
		r = errno;
		say("mount tmpfs", r);
		return r;
	}
	if (chdir(scratch) == -1) {
		r = errno;
		say(scratch, r);
		return r;
	}
	return 0;
}

/*
 * The working directory becomes the scratch directory, so libFuzzer's
 * relative paths (it reads them after LLVMFuzzerInitialize) are made
 * absolute: positional inputs, and every -flag=VALUE whose value names
 * an existing path, plus the artifact paths, which need not exist yet.
 */
static int
absolute_args(int argc, char ***argvp)
{
	char cwd[PATH_MAX], buf[2 * PATH_MAX], **nargv, *eq;
	const char *v;
	struct stat st;
	int i, prefix;

	if (getcwd(cwd, sizeof(cwd)) == NULL)
		return errno;
	if ((nargv = calloc((size_t)argc + 1, sizeof(*nargv))) == NULL)
		return ENOMEM;
	for (i = 0; i < argc; i++) {
		v = (*argvp)[i];
		eq = v[0] == '-' ? strchr(v, '=') : NULL;
		prefix = strncmp(v, "-artifact_prefix=", 17) == 0 ||
		    strncmp(v, "-exact_artifact_path=", 21) == 0;
		if (i > 0 && v[0] != '-' && v[0] != '/')
			snprintf(buf, sizeof(buf), "%s/%s", cwd, v);
		else if (eq != NULL && eq[1] != '/' && eq[1] != '\0' &&
		    (prefix || stat(eq + 1, &st) == 0))
			snprintf(buf, sizeof(buf), "%.*s%s/%s",
			    (int)(eq + 1 - v), v, cwd, eq + 1);
		else
			snprintf(buf, sizeof(buf), "%s", v);
		if ((nargv[i] = strdup(buf)) == NULL)
			return ENOMEM;
	}
	/* Kept for the life of the process, as argv is. */
	*argvp = nargv;
	return 0;
}

int
sandbox_enter(int *argcp, char ***argvp, const char **scratchp)
{
	size_t i;
	int r;

	if ((r = absolute_args(*argcp, argvp)) != 0 ||
	    (r = collect_writable(*argcp, *argvp)) != 0 ||
	    (r = enter_namespace()) != 0)
		return r;
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == -1) {
		r = errno;
		say("make mounts private", r);
		return r;
	}
	for (i = 0; i < nwritable; i++) {
		size_t j;

		/* Inside another: writable through that one's bind. */
		for (j = 0; j < nwritable; j++)
			if (j != i && path_within(writable[i], writable[j]) &&
			    strcmp(writable[i], writable[j]) != 0)
				break;
		if (j < nwritable)
			continue;
		/* Recursive, so mounts below stay reachable (and are
		 * remounted read-only below by their own paths). */
		if (mount(writable[i], writable[i], NULL, MS_BIND | MS_REC,
		    NULL) == -1) {
			r = errno;
			say(writable[i], r);
			return r;
		}
	}
	if ((r = lock_mounts()) != 0 || (r = mount_scratch()) != 0)
		return r;
	*scratchp = scratch;
	return 0;
}

static void
show_lines(const char *path)
{
	char line[4096];
	FILE *f;

	if ((f = fopen(path, "re")) == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strstr(line, scratch) != NULL)
			fprintf(stderr, "fuzz sandbox: %s: %s", path, line);
	fclose(f);
}

/* What holds the scratch directory busy, for the crash report. */
static void
show_open_files(void)
{
	char link[64], target[PATH_MAX];
	struct dirent *de;
	ssize_t n;
	DIR *d;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "/proc/self/fd/%s", de->d_name);
		if ((n = readlink(link, target, sizeof(target) - 1)) < 0)
			continue;
		target[n] = '\0';
		fprintf(stderr, "fuzz sandbox: fd %s -> %s\n", de->d_name,
		    target);
	}
	closedir(d);
	show_lines("/proc/self/maps");
	show_lines("/proc/self/mountinfo");
}

int
sandbox_reset(void)
{
	static unsigned long detached;
	int r, tries;

	if (chdir("/") == -1)
		return errno;
	/*
	 * Busy without a descriptor of ours there (the harnesses check for
	 * leaked descriptors themselves): another process holds our working
	 * directory through /proc/PID/cwd, as monitors and lsof do.  After
	 * a few tries the old tmpfs is detached, to vanish when they let
	 * go, and a fresh one mounted.
	 */
	for (tries = 0; umount2(scratch, 0) == -1; tries++) {
		r = errno;
		if (r == EBUSY && tries < 20) {
			usleep(1000);
			continue;
		}
		if (r == EBUSY && umount2(scratch, MNT_DETACH) == 0) {
			if (detached++ == 0)
				say("scratch busy from outside: detached (noted "
				    "once)", 0);
			break;
		}
		say("unmount scratch", r);
		show_open_files();
		return r;
	}
	return mount_scratch();
}
