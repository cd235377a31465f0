#!/usr/bin/python3
"""How much an SFTP server has received of the upload it is writing: the
size of the largest regular file below ROOT that process PID holds open
for writing (found through /proc/PID/fd, deleted O_TMPFILE files
included), 0 if none; if some of those are staged files (anonymous,
hidden or below a hidden directory, or kept partial data "d.*"), the
largest of those.

usage: staged_size.py PID ROOT [BYTES [SECONDS]]

Without BYTES: print the size once.  With BYTES: wait (SECONDS, default
60, polling every 20 ms) until the size reaches BYTES, print it, exit 0;
exit 1 if the process ends first or time runs out (the size printed is
the last seen).
"""
import os
import sys
import time


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def staged_like(target, root):
    """A staged file: anonymous (O_TMPFILE), in a hidden directory or with
    a hidden name, or kept partial data (d.*), as opposed to the
    destination itself."""
    parts = target[len(root) + 1:].split("/")
    return (target.endswith(" (deleted)") or parts[-1].startswith("d.") or
            any(p.startswith((".", "#")) for p in parts))


def staged(pid, root):
    best = 0
    best_staged = -1
    base = "/proc/%d/fd" % pid
    try:
        fds = os.listdir(base)
    except OSError:
        return 0
    for fd in fds:
        try:
            target = os.readlink("%s/%s" % (base, fd))
            if not target.startswith(root + "/"):
                continue
            with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
                flags = 0
                for line in f:
                    if line.startswith("flags:"):
                        flags = int(line.split()[1], 8)
            if flags & 3 == 0:          # O_RDONLY: not what it writes
                continue
            st = os.stat("%s/%s" % (base, fd))
        except OSError:
            continue
        if st.st_size > best:
            best = st.st_size
        if staged_like(target, root) and st.st_size > best_staged:
            best_staged = st.st_size
    # A server that stages holds the destination open too (write access,
    # as its identity): the staged file is the upload then.  One that
    # writes in place (stock) has only the destination.
    return best_staged if best_staged >= 0 else best


def main(argv):
    if len(argv) not in (3, 4, 5):
        sys.stderr.write(__doc__)
        return 2
    pid, root = int(argv[1]), argv[2].rstrip("/")
    if len(argv) == 3:
        print(staged(pid, root))
        return 0
    want = int(argv[3])
    deadline = time.monotonic() + (float(argv[4]) if len(argv) == 5 else 60)
    last = 0
    while time.monotonic() < deadline:
        if not alive(pid):
            break
        last = staged(pid, root)
        if last >= want:
            print(last)
            return 0
        time.sleep(0.02)
    print(last)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
