/*
 * A place where fuzzed requests may do anything to files without reaching
 * a file that matters, for the dispatcher harness (README in this
 * directory explains the choice).
 *
 * sandbox_enter() moves the process into a private mount namespace (and
 * first into a user namespace when it is not root), remounts every mount
 * read-only, nodev and nosuid in that namespace only, keeps the
 * directories libFuzzer writes to (corpus and artifacts, from argv)
 * writable, and mounts a small tmpfs as the scratch directory.  Outside
 * the process nothing changes; when it exits, the namespace is gone.
 *
 * The working directory becomes the scratch directory, so *argvp is
 * replaced by a copy whose paths are absolute.
 *
 * sandbox_reset() empties the scratch directory (a fresh tmpfs) and makes
 * it the working directory again.  Both return 0 or an errno value and
 * print why they failed.
 */
#ifndef FUZZ_SANDBOX_H
#define FUZZ_SANDBOX_H

#include <stddef.h>

int	sandbox_enter(int *argcp, char ***argvp, const char **scratchp);
int	sandbox_reset(void);

#endif /* FUZZ_SANDBOX_H */
