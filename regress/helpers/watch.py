#!/usr/bin/python3
"""Read upload directories the way a processing script would, and complain
about every file that is not complete.

usage: watch.py [options] DIR...
  --interval MS   poll every MS milliseconds (default 3); 0 = no polling
  --no-inotify    poll only
  --all           also check names beginning with "." or "#" (staging
                  debris is named so; by default it is ignored, as the
                  contract lets a processing script ignore it)
  --allow REGEX   names that may appear; any other (checked) name seen is
                  an offence ("unexpected name")
  --ready FILE    create FILE once the watches are set and a first scan
                  is done
  --stop FILE     stop when FILE exists (SIGTERM and SIGINT stop too)
  --quiet         no per-name summary
  --events LIST   look at a name only on these inotify events (comma-
                  separated: create,moved_to,modify,close_write,attrib),
                  as a processing script waiting for, say,
                  "close_write,moved_to" does; default: all of them
  --empty REGEX   names matching REGEX are uploads of empty files: they
                  are complete when 0 bytes long (anything else there
                  is checked as usual)

Every visible regular file must be self-describing (regress/helpers/
mkpayload.py): a header line with the payload length and its sha256,
then exactly that payload.  A file that is shorter, longer, has no
header yet, or whose payload does not hash to the header's digest is a
partial file: an offence.

It looks at a name when inotify reports it (IN_CREATE, IN_MOVED_TO,
IN_MODIFY, IN_CLOSE_WRITE, IN_ATTRIB) and on every poll of the whole
directory.  Content is read through one open descriptor, so a rename over
the name while it is being read cannot mix two files.  A complete file's
digest is computed once per (inode, size, mtime, ctime).

On stop it prints, as "# " lines, one summary per name (events seen,
checks, offences) and exits 1 if there was any offence, else 0.
"""
import ctypes
import ctypes.util
import errno
import hashlib
import os
import re
import select
import signal
import stat
import struct
import sys
import time

MAGIC = b"AUPL"
HEADER_LEN = len(MAGIC) + 1 + 20 + 1 + 64 + 1
HEADER_RE = re.compile(rb"^AUPL ([0-9]{20}) ([0-9a-f]{64})\n$")

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_Q_OVERFLOW = 0x00004000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

EVENT_NAMES = [
    (IN_CREATE, "create"), (IN_MOVED_TO, "moved_to"),
    (IN_MODIFY, "modify"), (IN_CLOSE_WRITE, "close_write"),
    (IN_ATTRIB, "attrib"), (IN_MOVED_FROM, "moved_from"),
    (IN_DELETE, "delete"),
]
WATCH_MASK = (IN_CREATE | IN_MOVED_TO | IN_MODIFY | IN_CLOSE_WRITE |
              IN_ATTRIB | IN_MOVED_FROM | IN_DELETE)


class Inotify:
    def __init__(self):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6",
                           use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.dirs = {}

    def add(self, path):
        wd = self._add(self.fd, os.fsencode(path), WATCH_MASK)
        if wd < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch " + path)
        self.dirs[wd] = path

    def read(self):
        """Yield (dir, name, mask) for every queued event."""
        try:
            buf = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return
        off = 0
        while off + 16 <= len(buf):
            wd, mask, _cookie, namelen = struct.unpack_from("iIII", buf, off)
            name = buf[off + 16:off + 16 + namelen].split(b"\0", 1)[0]
            off += 16 + namelen
            yield self.dirs.get(wd), os.fsdecode(name), mask


class Watcher:
    def __init__(self, dirs, check_all, allow, empty=None):
        self.dirs = dirs
        self.check_all = check_all
        self.allow = re.compile(allow) if allow else None
        self.empty = re.compile(empty) if empty else None
        self.good_keys = set()      # (dev, ino, size, mtime, ctime)
        self.names = {}             # "dir/name" -> stats dict
        self.offences = []          # (path, why), first per path and why
        self.checks = 0
        self.overflows = 0

    def stats(self, path):
        s = self.names.get(path)
        if s is None:
            s = {"events": {}, "checks": 0, "complete": 0, "bad": 0,
                 "pending": 0, "overlaps": 0}
            self.names[path] = s
        return s

    def offend(self, path, why):
        """Count every offence; print the first few of each name."""
        s = self.stats(path)
        s["bad"] += 1
        if s["bad"] <= 3:
            self.offences.append((path, why))
            sys.stdout.write("# OFFENCE %s: %s\n" % (path, why))
            sys.stdout.flush()

    def wanted(self, name):
        if not self.check_all and name[:1] in (".", "#"):
            return False
        return True

    def check(self, d, name):
        if not name or not self.wanted(name):
            return
        path = os.path.join(d, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ELOOP):
                return      # gone already, or a symlink: nothing to read
            if e.errno == errno.EACCES:
                self.offend(path, "unreadable (mode 0000 staging?)")
                return
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return
            self.checks += 1
            s = self.stats(path)
            s["checks"] += 1
            if self.allow and not self.allow.search(name):
                self.offend(path, "unexpected name")
                return
            if (st.st_size == 0 and self.empty is not None and
                    self.empty.search(name)):
                why = None
            else:
                why = self.verify(fd, st)
            if why is None:
                s["complete"] += 1
            else:
                self.offend(path, why)
        finally:
            os.close(fd)

    def verify(self, fd, st):
        """None if the file behind fd is complete, else why not."""
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
               st.st_ctime_ns)
        if key in self.good_keys:
            return None
        head = os.pread(fd, HEADER_LEN, 0)
        m = HEADER_RE.match(head)
        if m is None:
            return "no complete header (size %d)" % st.st_size
        want_len = int(m.group(1))
        if st.st_size != HEADER_LEN + want_len:
            return "size %d, header says %d" % (st.st_size,
                                               HEADER_LEN + want_len)
        digest = hashlib.sha256()
        off = HEADER_LEN
        while True:
            block = os.pread(fd, 1 << 20, off)
            if not block:
                break
            digest.update(block)
            off += len(block)
        if off != HEADER_LEN + want_len:
            return "read %d bytes, header says %d" % (off,
                                                     HEADER_LEN + want_len)
        if digest.hexdigest().encode() != m.group(2):
            return "payload does not match its sha256"
        # Only a file that did not change while we read it is known good.
        st2 = os.fstat(fd)
        if (st2.st_size, st2.st_mtime_ns) == (st.st_size, st.st_mtime_ns):
            self.good_keys.add(key)
        return None

    def scan(self):
        for d in self.dirs:
            try:
                names = os.listdir(d)
            except FileNotFoundError:
                continue
            for name in names:
                self.check(d, name)

    def note_event(self, d, name, mask):
        if not name or not self.wanted(name):
            return
        s = self.stats(os.path.join(d, name))
        ev = s["events"]
        for bit, label in EVENT_NAMES:
            if mask & bit:
                ev[label] = ev.get(label, 0) + 1
        # The kernel merges an event into the one queued just before it
        # when both are alike (same watch, mask and name) and unread.
        # Two commits of one name whose publish events come before their
        # IN_CLOSE_WRITEs can so yield one IN_CLOSE_WRITE: count the
        # publishes that arrived while another was still unanswered, the
        # most IN_CLOSE_WRITEs such merging can have taken.
        if mask & (IN_CREATE | IN_MOVED_TO):
            if s["pending"] > 0:
                s["overlaps"] += 1
            s["pending"] += 1
        if mask & IN_CLOSE_WRITE and s["pending"] > 0:
            s["pending"] -= 1


def main(argv):
    interval_ms = 3.0
    use_inotify = True
    check_all = False
    allow = None
    ready = stop = None
    quiet = False
    empty = None
    trigger = (IN_CREATE | IN_MOVED_TO | IN_MODIFY | IN_CLOSE_WRITE |
               IN_ATTRIB)
    dirs = []
    args = list(argv[1:])
    while args:
        a = args.pop(0)
        if a == "--interval":
            interval_ms = float(args.pop(0))
        elif a == "--no-inotify":
            use_inotify = False
        elif a == "--all":
            check_all = True
        elif a == "--allow":
            allow = args.pop(0)
        elif a == "--ready":
            ready = args.pop(0)
        elif a == "--stop":
            stop = args.pop(0)
        elif a == "--quiet":
            quiet = True
        elif a == "--empty":
            empty = args.pop(0)
        elif a == "--events":
            bits = dict((label, bit) for bit, label in EVENT_NAMES)
            trigger = 0
            for label in args.pop(0).split(","):
                if label not in bits:
                    sys.stderr.write("unknown event %s\n" % label)
                    return 2
                trigger |= bits[label]
        elif a.startswith("-"):
            sys.stderr.write(__doc__)
            return 2
        else:
            dirs.append(a)
    if not dirs:
        sys.stderr.write(__doc__)
        return 2

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))

    w = Watcher(dirs, check_all, allow, empty)
    ino = None
    if use_inotify:
        ino = Inotify()
        for d in dirs:
            ino.add(d)
    w.scan()
    if ready:
        open(ready, "w").close()

    timeout = interval_ms / 1000.0 if interval_ms > 0 else 0.05
    next_scan = time.monotonic()
    while not stopping and not (stop and os.path.exists(stop)):
        if ino is not None:
            try:
                r, _, _ = select.select([ino.fd], [], [], timeout)
            except InterruptedError:
                r = []
            if r:
                todo = []
                for d, name, mask in ino.read():
                    if d is None:
                        continue
                    if mask & IN_Q_OVERFLOW:
                        w.overflows += 1
                        continue
                    w.note_event(d, name, mask)
                    if mask & trigger:
                        if (d, name) not in todo:
                            todo.append((d, name))
                for d, name in todo:
                    w.check(d, name)
        else:
            time.sleep(timeout)
        if interval_ms > 0 and time.monotonic() >= next_scan:
            w.scan()
            next_scan = time.monotonic() + interval_ms / 1000.0
    # Drain what is left, then one last look at everything.
    if ino is not None:
        for d, name, mask in ino.read():
            if d is not None:
                w.note_event(d, name, mask)
                if mask & trigger:
                    w.check(d, name)
    w.scan()

    if not quiet:
        for path in sorted(w.names):
            s = w.names[path]
            ev = ",".join("%s=%d" % kv for kv in sorted(s["events"].items()))
            sys.stdout.write("# name %s checks %d complete %d bad %d "
                             "events %s overlaps %d\n" %
                             (path, s["checks"], s["complete"], s["bad"],
                              ev or "-", s["overlaps"]))
    total = sum(s["bad"] for s in w.names.values())
    sys.stdout.write("# watch: %d checks, %d names, %d offences, "
                     "%d queue overflows\n" % (w.checks, len(w.names),
                                               total, w.overflows))
    for path in sorted(w.names):
        if w.names[path]["bad"]:
            sys.stdout.write("# partial or unexpected: %s (%d times)\n" %
                             (path, w.names[path]["bad"]))
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
