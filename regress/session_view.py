#!/usr/bin/python3
"""What one SFTP session sees of a name it is uploading (DESIGN.md 11,
issue 12), in raw packets (regress/sftp_raw.py's Server), side by side
with stock's sftp-server.

usage:
    session_view.py side DIR
        Every scenario runs twice, on two identical fresh trees below DIR:
        once against $SFTP_SERVER ("ours"), once against
        $STOCK_SFTP_SERVER.  The uploading session's requests (OPEN
        WRITE|CREAT|TRUNC, some WRITEs, not yet CLOSEd, then STAT, LSTAT,
        FSTAT, OPEN+READ, a second OPEN, SETSTAT, READDIR, REALPATH,
        RENAME, REMOVE, copy-data, ...) must get the same answers from
        both: "as stock: SCENARIO: STEP".  For stock the staged name is
        simply the file being written, so its answers are what a file
        system gives.  Each scenario ends with "as stock: SCENARIO: final
        tree" (names, modes, sizes, content).

        At chosen moments a SECOND session (another server process on the
        same tree) and the file system itself are asked about the name.
        Those checks are by design NOT as stock: the other session must
        see the previous file or nothing until the last CLOSE, and the
        new content after it ("by design, not as stock: ... other
        session: ...").  So must a handle of the session opened for
        reading before the upload began: it keeps the previous file, as
        any program that had it open ("... earlier reader: ...").  They
        run against $SFTP_SERVER only, and fail when it is stock (stock
        shows the partial file: printed as a note).

    session_view.py trace LOG [--strip PREFIX] -- SERVER [ARGS...]
        A relay for sshd's Subsystem line: runs SERVER on a pair of
        pipes, passes every byte both ways unchanged, and appends one
        line per request and per reply, decoded, to LOG ("> id TYPE
        args", "< id REPLY"), paths with PREFIX removed.  Used by
        regress/t-sshfs.sh to record what sshfs sends.

    session_view.py handles LOG
        How many handles the traced session holds open now (0 once
        sshfs has released every file: its CLOSEs come after cp
        returns).

    session_view.py treesig DIR [--mtime] [--nolink]
        One line per entry below DIR (path, type, mode; size and sha256
        of files, their mtime with --mtime; symlink targets unless
        --nolink), for regress/t-sshfs.sh's comparisons.

    session_view.py summarize LOG
        The trace, one line per request with its reply, consecutive
        READ/WRITEs of one handle folded into one line; lines of LOG
        beginning with "===" (step markers) are kept.  At the end, a
        count of the requests that named a path while the session held
        a write handle on it (what a staging server answers from the
        staged file).

Output: TAP lines "ok - $tid: ..." / "not ok - $tid: ..." with both
sides printed as "#" lines on a mismatch.
"""
import hashlib
import os
import re
import select
import shutil
import stat as statmod
import struct
import subprocess
import sys
import time
import traceback

sys.dont_write_bytecode = True     # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sftp_raw import (  # noqa: E402
    Server, Packet, Reader, Reply, Tap, Normaliser, make_tree, server_argv,
    ours_path, stock_path, is_stock,
    FXP_OPEN, FXP_CLOSE, FXP_READ, FXP_WRITE, FXP_LSTAT, FXP_FSTAT,
    FXP_SETSTAT, FXP_FSETSTAT, FXP_OPENDIR, FXP_READDIR, FXP_REMOVE,
    FXP_MKDIR, FXP_RMDIR, FXP_REALPATH, FXP_STAT, FXP_RENAME, FXP_READLINK,
    FXP_SYMLINK, FXP_STATUS, FXP_HANDLE, FXP_DATA, FXP_NAME, FXP_ATTRS,
    FXP_EXTENDED, FXP_INIT, FXP_VERSION,
    FXF_READ, FXF_WRITE, FXF_APPEND, FXF_CREAT, FXF_TRUNC, FXF_EXCL,
    FX_NO_SUCH_FILE,
)

W_NEW = FXF_WRITE | FXF_CREAT | FXF_TRUNC
RW_NEW = FXF_READ | FXF_WRITE | FXF_CREAT | FXF_TRUNC
BAD_HANDLE = b"\xff\xff\xff\xf0"      # what a failed OPEN leaves us with

DATA = b"".join(b"%05d:" % i for i in range(1000))[:5000]    # 5000 bytes


def brief(b):
    """Content as compared and printed: length, digest, first bytes."""
    if b is None:
        return None
    return (len(b), sha(b), b[:48])


def short(v, n=1500):
    s = repr(v)
    return s if len(s) <= n else s[:n] + "...(%d chars)" % len(s)


def sha(b):
    return hashlib.sha256(b).hexdigest()[:16] if b is not None else None


# ------------------------------------------------------------ context

class Side:
    """One side of a side-by-side run: a fresh tree, the uploading
    session A, and a second session B (another server process) on it."""

    def __init__(self, name, server, base, scen):
        self.name = name
        self.server = server
        self.root = os.path.realpath(os.path.join(base, scen, name))
        if os.path.exists(self.root):
            shutil.rmtree(self.root)
        os.makedirs(os.path.dirname(self.root), exist_ok=True)
        make_tree(self.root)
        with open(os.path.join(self.root, "log"), "wb") as f:
            f.write(b"start\n")
        with open(os.path.join(self.root, "big"), "wb") as f:
            f.write(b"o" * 10000)
        for n in ("log", "big"):
            os.chmod(os.path.join(self.root, n), 0o644)
            os.utime(os.path.join(self.root, n), (1500000000, 1500000000))
        self.err = os.path.join(base, scen, name + ".err")
        self.nz = Normaliser(self.root)
        self.a = self.start()
        self._b = None
        self.prev = {}          # name -> view before the scenario
        for n in os.listdir(self.root):
            self.prev[n] = self.disk(n)
        self.prev_listing = sorted(os.listdir(self.root))

    def start(self):
        s = Server(server_argv(self.server, ["-l", "INFO"]), cwd=self.root,
                   stderr_path=self.err)
        s.init()
        return s

    @property
    def b(self):
        if self._b is None:
            self._b = self.start()
        return self._b

    def R(self, r):
        return self.nz.reply(r)

    def disk(self, name):
        """The name as another process sees it on the file system."""
        p = os.path.join(self.root, name)
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            return ("absent",)
        if not statmod.S_ISREG(st.st_mode):
            return ("type", statmod.S_IFMT(st.st_mode))
        with open(p, "rb") as f:
            data = f.read()
        return ("file", st.st_size, oct(st.st_mode), sha(data))

    def view(self, srv, name):
        """The name as session srv sees it: STAT, then its content."""
        r = srv.stat(name)
        if r.type == FXP_STATUS:
            if r.code == FX_NO_SUCH_FILE:
                return ("absent",)
            return ("status", r.status())
        if r.type != FXP_ATTRS:
            return ("reply", r.status())
        a = r.attrs
        if not statmod.S_ISREG(a.get("perm", 0)):
            return ("type", statmod.S_IFMT(a.get("perm", 0)))
        data = srv.download(name)
        return ("file", a.get("size"), oct(a.get("perm", 0)), sha(data))

    def previous(self, name):
        return self.prev.get(name, ("absent",))

    def tree(self):
        out = []
        for dp, dns, fns in os.walk(self.root):
            for nm in sorted(dns + fns):
                p = os.path.join(dp, nm)
                st = os.lstat(p)
                rel = os.path.relpath(p, self.root)
                if statmod.S_ISREG(st.st_mode):
                    with open(p, "rb") as f:
                        out.append((rel, oct(st.st_mode), st.st_size,
                                    sha(f.read())))
                elif statmod.S_ISLNK(st.st_mode):
                    out.append((rel, "link", os.readlink(p)))
                else:
                    out.append((rel, oct(st.st_mode)))
        return sorted(out)

    def finish(self):
        rc = self.a.finish()
        if self._b is not None:
            self._b.finish()
        return rc


def read_lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []


def H(r):
    return r.handle if r is not None and r.type == FXP_HANDLE else BAD_HANDLE


class Steps:
    """Collects a scenario's results: ("same", label, value) to compare
    with stock, ("design", label, value, expected) for the other-session
    checks."""

    def __init__(self, side):
        self.s = side
        self.items = []

    def same(self, label, value):
        self.items.append(("same", label, value))
        return value

    def r(self, label, reply):
        """Record a reply (normalised) and hand the raw reply back."""
        self.items.append(("same", label, self.s.R(reply)))
        return reply

    def other(self, label, name, expect):
        """The second session's and the disk's view of name now."""
        self.items.append(("design", "other session: " + label,
                           self.s.view(self.s.b, name), expect))
        self.items.append(("design", "on disk: " + label,
                           self.s.disk(name), expect))

    def kept(self, label, value, expect):
        """By design: a handle opened for reading before the upload began
        keeps reading the previous file (the upload is a new inode)."""
        self.items.append(("design", "earlier reader: " + label,
                           self.s.R(value), self.s.R(expect)))

    def other_prev(self, label, name):
        self.other(label + " (previous file or nothing)", name,
                   self.s.previous(name))

    def logged(self, kind, name, n):
        """Ours only: exactly n INFO lines '<kind> "name"' (kind commit
        or abort) in the server's log of this scenario, checked after
        the session ended."""
        self.items.append(("log", kind, name, n))

    def content(self, label, name):
        self.same(label, brief(self.s.a.download(name)))


def listdir(srv, path):
    """READDIR entries of path but "." and ".." (whose link counts and
    sizes depend on the test's own directories), sorted."""
    od, ents, last = srv.readdir_all(path)
    return [e for e in ents if e[0] not in (b".", b"..")]


def copy_data(srv, rh, roff, rlen, wh, woff):
    return srv.extended("copy-data", lambda p: p.string(rh).u64(roff)
                        .u64(rlen).string(wh).u64(woff))


# ---------------------------------------------------------- scenarios
# Each takes a Steps (st.s is the Side, st.s.a the uploading session) and
# runs the same requests against either server.

def sc_new_file(st):
    """A new name: OPEN W|C|T, LSTAT at once (sshfs), WRITE; then every
    path request against the staged name; CLOSE."""
    a = st.s.a
    h = H(st.r("open new W|C|T perm 0640", a.open("new", W_NEW,
                                                  {"perm": 0o640})))
    st.r("lstat right after open (sshfs create)", a.lstat("new"))
    st.r("fstat right after open", a.fstat(h))
    st.r("write 5000", a.write(h, 0, DATA))
    st.other_prev("new file in flight", "new")
    st.r("stat", a.stat("new"))
    st.r("lstat", a.lstat("new"))
    st.r("fstat", a.fstat(h))
    st.r("stat ./new", a.stat("./new"))
    st.r("stat sub/../new", a.stat("sub/../new"))
    st.r("stat by absolute path", a.stat(os.path.join(st.s.root, "new")))
    st.r("realpath new", a.realpath("new"))
    st.r("realpath ./new", a.realpath("./new"))
    st.r("realpath new/.. (not a directory)", a.realpath("new/.."))
    st.same("readdir . lists new with its size",
            [(n, st.s.nz.longname(l), sorted(st.s.nz.attrs(x).items()))
             for n, l, x in listdir(a, ".")])
    rh = H(st.r("open for read", a.open("new", FXF_READ)))
    st.r("read through a read handle", a.read(rh, 0, 100000))
    st.r("read at 4990", a.read(rh, 4990, 100))
    st.r("read at EOF", a.read(rh, 5000, 100))
    st.r("fstat read handle", a.fstat(rh))
    st.r("close read handle", a.close(rh))
    st.r("open W|C|EXCL of the staged name", a.open(
        "new", FXF_WRITE | FXF_CREAT | FXF_EXCL))
    st.r("mkdir over the staged name", a.mkdir("new"))
    st.r("opendir of the staged name", a.opendir("new"))
    st.r("rmdir of the staged name", a.rmdir("new"))
    st.r("readlink of the staged name", a.readlink("new"))
    st.r("write 100 more at 5000", a.write(h, 5000, b"+" * 100))
    st.r("stat after more data", a.stat("new"))
    st.other_prev("new file, still in flight", "new")
    st.r("close", a.close(h))
    st.r("stat after close", a.stat("new"))
    st.content("content after close", "new")
    st.other("after close: the new file", "new", st.s.view(a, "new"))


def sc_replace(st):
    """An existing name truncated and rewritten: the session sees the new
    (partial) content, other sessions the old."""
    a = st.s.a
    h = H(st.r("open existing W|C|T", a.open("existing", W_NEW)))
    st.r("lstat right after open", a.lstat("existing"))
    st.r("write 3", a.write(h, 0, b"abc"))
    st.r("stat", a.stat("existing"))
    st.r("fstat", a.fstat(h))
    st.same("readdir . lists existing with its new size",
            [(n, sorted(st.s.nz.attrs(x).items()))
             for n, l, x in listdir(a, ".")])
    rh = H(st.r("open for read", a.open("existing", FXF_READ)))
    st.r("read", a.read(rh, 0, 1000))
    st.r("close read handle", a.close(rh))
    st.other_prev("replace in flight", "existing")
    st.r("close", a.close(h))
    st.content("content after close", "existing")
    st.other("after close: the new content", "existing",
             st.s.view(a, "existing"))


def sc_edit_in_place(st):
    """OPEN WRITE without TRUNC (sshfs edits, rsync --inplace): the
    session sees old and new bytes merged."""
    a = st.s.a
    h = H(st.r("open existing W (no trunc)", a.open("existing", FXF_WRITE)))
    st.r("write XY at 4", a.write(h, 4, b"XY"))
    st.r("stat", a.stat("existing"))
    rh = H(st.r("open for read", a.open("existing", FXF_READ)))
    st.r("read merged", a.read(rh, 0, 1000))
    st.r("write Z at 20 (past the end)", a.write(h, 20, b"Z"))
    st.r("stat after extending", a.stat("existing"))
    st.r("fstat read handle", a.fstat(rh))
    st.r("read with the hole", a.read(rh, 0, 1000))
    st.r("close read handle", a.close(rh))
    st.other_prev("edit in flight", "existing")
    st.r("close", a.close(h))
    st.content("content after close", "existing")


def sc_second_open(st, name):
    """A second OPEN (no TRUNC) of a name this session is uploading shares
    the staged file; the commit is at the last CLOSE."""
    a = st.s.a
    flags = RW_NEW
    h1 = H(st.r("open #1 R|W|C|T", a.open(name, flags)))
    st.r("write #1 'hello world'", a.write(h1, 0, b"hello world\n"))
    h2 = H(st.r("open #2 R|W (no trunc)", a.open(name, FXF_READ |
                                                  FXF_WRITE)))
    st.r("fstat #2", a.fstat(h2))
    st.r("read #2 sees #1's write", a.read(h2, 0, 100))
    st.r("write #2 'WORLD' at 6", a.write(h2, 6, b"WORLD"))
    st.r("read #1 sees #2's write", a.read(h1, 0, 100))
    st.r("fstat #1", a.fstat(h1))
    st.r("stat", a.stat(name))
    st.other_prev("two handles open", name)
    st.r("close #1", a.close(h1))
    st.r("stat after the first close", a.stat(name))
    st.other_prev("after the first of two closes", name)
    st.r("read #2 after #1 closed", a.read(h2, 0, 100))
    st.r("write #2 'more' at 12", a.write(h2, 12, b"more\n"))
    st.r("close #2", a.close(h2))
    st.content("content after the last close", name)
    st.other("after the last close: the new content", name,
             st.s.view(a, name))
    st.logged("commit", name, 1)


def sc_second_open_trunc(st):
    """A truncating second OPEN truncates the shared staged file."""
    a = st.s.a
    h1 = H(st.r("open #1 R|W|C|T", a.open("t", RW_NEW)))
    st.r("write #1 1000", a.write(h1, 0, b"1" * 1000))
    h2 = H(st.r("open #2 W|T", a.open("t", FXF_WRITE | FXF_TRUNC)))
    st.r("fstat #1 after the truncating open", a.fstat(h1))
    st.r("stat after the truncating open", a.stat("t"))
    st.r("write #2 'xy'", a.write(h2, 0, b"xy"))
    st.r("read #1", a.read(h1, 0, 2000))
    st.r("close #2", a.close(h2))
    st.other_prev("after the first close", "t")
    st.r("read #1 after #2 closed", a.read(h1, 0, 2000))
    st.r("close #1", a.close(h1))
    st.content("content after the last close", "t")
    st.other("after the last close", "t", st.s.view(a, "t"))
    st.logged("commit", "t", 1)


def sc_appenders(st):
    """Two APPEND handles on one existing file (the shell's
    exec 3>>log; echo a >&3; echo b >> log; exec 3>&-, as sshfs sends it:
    offsets are the size it believes, APPEND makes them moot)."""
    a = st.s.a
    h1 = H(st.r("open #1 W|APPEND", a.open("log", FXF_WRITE | FXF_APPEND)))
    st.r("write #1 'a' at 6", a.write(h1, 6, b"a\n"))
    st.r("stat after #1", a.stat("log"))
    h2 = H(st.r("open #2 W|APPEND", a.open("log", FXF_WRITE | FXF_APPEND)))
    st.r("write #2 'b' at 8", a.write(h2, 8, b"b\n"))
    st.r("close #2", a.close(h2))
    st.r("stat after #2 closed", a.stat("log"))
    st.other_prev("after the first close", "log")
    st.r("close #1", a.close(h1))
    st.content("content: start a b", "log")
    st.other("after the last close", "log", st.s.view(a, "log"))
    st.logged("commit", "log", 1)


def sc_two_offsets(st, first):
    """paramiko "r+" twice: two R|W handles (no TRUNC) on one existing
    file write different offsets; both writes survive whichever handle
    closes last."""
    a = st.s.a
    h1 = H(st.r("open #1 R|W", a.open("big", FXF_READ | FXF_WRITE)))
    h2 = H(st.r("open #2 R|W", a.open("big", FXF_READ | FXF_WRITE)))
    st.r("write #1 AAAA at 0", a.write(h1, 0, b"AAAA"))
    st.r("write #2 BBBB at 5000", a.write(h2, 5000, b"BBBB"))
    st.r("read #1 at 5000", a.read(h1, 5000, 4))
    st.r("read #2 at 0", a.read(h2, 0, 4))
    hs = {1: h1, 2: h2}
    second = 3 - first
    st.r("close #%d" % first, a.close(hs[first]))
    st.other_prev("after the first close", "big")
    st.r("read #%d after the other closed" % second,
         a.read(hs[second], 0, 4))
    st.r("close #%d" % second, a.close(hs[second]))
    st.content("content has both writes", "big")
    st.other("after the last close", "big", st.s.view(a, "big"))
    st.logged("commit", "big", 1)


def sc_reader_first(st):
    """A read handle opened BEFORE the write OPEN of the same name (rsync
    --inplace through sshfs opens its basis for reading, then the file
    for writing, and reads while it writes).  On stock it is one file, so
    the reader sees the writes.  Ours by design: the upload is a new
    inode, and a handle that had the file open keeps the previous
    content, as any program that had it open does (sftp-server.8); rsync's
    result is the same either way (t-sshfs)."""
    a = st.s.a
    rh = H(st.r("open big for read", a.open("big", FXF_READ)))
    at0 = st.r("read before the write open", a.read(rh, 0, 4))
    at10k = a.read(rh, 10000, 4)
    size = a.fstat(rh)
    h = H(st.r("open big W (no trunc)", a.open("big", FXF_WRITE)))
    st.r("write AAAA at 0", a.write(h, 0, b"AAAA"))
    st.r("write BBBB at 10000 (extends)", a.write(h, 10000, b"BBBB"))
    st.kept("reads at 0 the previous content", a.read(rh, 0, 4), at0)
    st.kept("reads at 10000 the previous content", a.read(rh, 10000, 4),
            at10k)
    st.kept("fstat shows the previous file", a.fstat(rh), size)
    st.r("close the writer", a.close(h))
    st.r("close the reader", a.close(rh))
    st.content("content of big", "big")
    rh = H(st.r("open existing for read", a.open("existing", FXF_READ)))
    size = a.fstat(rh)
    old = a.read(rh, 0, 100)
    h = H(st.r("open existing W|C|T", a.open("existing", W_NEW)))
    st.kept("fstat after the truncating open shows the previous file",
            a.fstat(rh), size)
    st.r("write 'new'", a.write(h, 0, b"new"))
    st.kept("reads the previous content", a.read(rh, 0, 100), old)
    st.r("close the writer", a.close(h))
    st.r("close the reader", a.close(rh))
    st.content("content of existing", "existing")


def sc_setstat(st):
    """SETSTAT (and lsetstat) by name of a staged file."""
    a = st.s.a
    h = H(st.r("open new W|C|T perm 0644", a.open("ss", W_NEW,
                                                  {"perm": 0o644})))
    st.r("write 5000", a.write(h, 0, DATA))
    st.r("setstat perm 0600", a.setstat("ss", {"perm": 0o600}))
    st.r("stat after chmod", a.stat("ss"))
    st.r("fstat after chmod", a.fstat(h))
    st.r("setstat size 10", a.setstat("ss", {"size": 10}))
    st.r("stat after truncate by name", a.stat("ss"))
    st.r("write at 10 after truncate", a.write(h, 10, b"tail"))
    st.r("lsetstat perm 0640", a.extended(
        "lsetstat@openssh.com", lambda p: p.string("ss").attrs(
            {"perm": 0o640})))
    st.r("setstat times", a.setstat("ss", {"atime": 1000000000,
                                          "mtime": 1000000001}))
    st.r("stat after utime", a.stat("ss"))
    st.other_prev("chmod'ed, truncated, utime'd in flight", "ss")
    st.r("close", a.close(h))
    st.r("stat after close: mode and mtime survive the commit",
         a.stat("ss"))
    st.content("content after close", "ss")


def sc_rename(st):
    """RENAME of a staged name (editors, rsync, sed -i): the staging
    moves; the commit publishes under the new name only."""
    a = st.s.a
    h = H(st.r("open .tmp1 W|C|T", a.open(".tmp1", W_NEW)))
    st.r("write 3000", a.write(h, 0, DATA[:3000]))
    st.r("rename .tmp1 -> final1", a.rename(".tmp1", "final1"))
    st.r("stat .tmp1", a.stat(".tmp1"))
    st.r("stat final1", a.stat("final1"))
    st.same("readdir after rename", [n for n, l, x in listdir(a, ".")])
    st.r("write 2000 more at 3000", a.write(h, 3000, DATA[3000:]))
    st.r("fstat", a.fstat(h))
    st.r("stat final1 after more data", a.stat("final1"))
    st.other_prev("renamed in flight: the old name", ".tmp1")
    st.other_prev("renamed in flight: the new name", "final1")
    st.r("close", a.close(h))
    st.r("stat .tmp1 after close", a.stat(".tmp1"))
    st.r("stat final1 after close", a.stat("final1"))
    st.content("content of final1", "final1")
    st.other("after close: final1", "final1", st.s.view(a, "final1"))
    st.other("after close: no .tmp1", ".tmp1", ("absent",))

    # posix-rename over an existing file (rsync, sed -i, editors).
    h = H(st.r("open .tmp2 W|C|T", a.open(".tmp2", W_NEW)))
    st.r("write .tmp2", a.write(h, 0, b"replacement\n"))
    st.r("posix-rename .tmp2 -> existing", a.extended(
        "posix-rename@openssh.com",
        lambda p: p.string(".tmp2").string("existing")))
    st.r("stat existing", a.stat("existing"))
    rh = H(st.r("open existing for read", a.open("existing", FXF_READ)))
    st.r("read existing", a.read(rh, 0, 100))
    st.r("close read handle", a.close(rh))
    st.other_prev("posix-renamed over existing, in flight", "existing")
    st.r("close", a.close(h))
    st.content("content of existing", "existing")
    st.other("after close: existing replaced", "existing",
             st.s.view(a, "existing"))

    # Plain RENAME onto an existing name fails, as on stock.
    h = H(st.r("open .tmp3 W|C|T", a.open(".tmp3", W_NEW)))
    st.r("write .tmp3", a.write(h, 0, b"three\n"))
    st.r("rename .tmp3 -> ro (exists)", a.rename(".tmp3", "ro"))
    st.r("close", a.close(h))
    st.content("content of .tmp3", ".tmp3")
    st.content("content of ro", "ro")

    # Into a subdirectory, then more data.
    h = H(st.r("open moved W|C|T", a.open("moved", W_NEW)))
    st.r("write moved", a.write(h, 0, b"moved\n"))
    st.r("rename moved -> sub/moved", a.rename("moved", "sub/moved"))
    st.r("write after the move", a.write(h, 6, b"again\n"))
    st.r("stat sub/moved", a.stat("sub/moved"))
    st.other_prev("moved to sub/ in flight", "sub/moved")
    st.r("close", a.close(h))
    st.content("content of sub/moved", "sub/moved")

    # The name of a replace in flight renamed away: stock moves the
    # (rewritten) file, so the old name is gone.
    h = H(st.r("open log W|C|T", a.open("log", W_NEW)))
    st.r("write log", a.write(h, 0, b"new log\n"))
    st.r("rename log -> log.1", a.rename("log", "log.1"))
    st.r("stat log", a.stat("log"))
    st.r("stat log.1", a.stat("log.1"))
    st.r("close", a.close(h))
    st.r("stat log after close", a.stat("log"))
    st.content("content of log.1", "log.1")


def sc_remove(st):
    """REMOVE of a staged name: nothing is published at CLOSE."""
    a = st.s.a
    h = H(st.r("open gone W|C|T", a.open("gone", W_NEW)))
    st.r("write", a.write(h, 0, DATA))
    st.r("remove gone", a.remove("gone"))
    st.r("stat gone", a.stat("gone"))
    st.r("open gone for read", a.open("gone", FXF_READ))
    st.r("write after remove", a.write(h, 5000, b"x"))
    st.r("fstat after remove", a.fstat(h))
    st.other("removed in flight", "gone", ("absent",))
    st.r("close", a.close(h))
    st.r("stat gone after close", a.stat("gone"))
    st.other("after close: nothing published", "gone", ("absent",))

    h = H(st.r("open existing W|C|T", a.open("existing", W_NEW)))
    st.r("write", a.write(h, 0, b"doomed"))
    st.r("remove existing", a.remove("existing"))
    st.r("stat existing", a.stat("existing"))
    st.r("close", a.close(h))
    st.r("stat existing after close", a.stat("existing"))
    st.other("replace removed, after close: gone", "existing", ("absent",))

    # Removed, then the name opened anew: a fresh upload of its own.
    h = H(st.r("open again W|C|T", a.open("again", W_NEW)))
    st.r("write", a.write(h, 0, b"first"))
    st.r("remove again", a.remove("again"))
    h2 = H(st.r("open again W|C|T a second time", a.open("again", W_NEW)))
    st.r("fstat the new handle", a.fstat(h2))
    st.r("write the new handle", a.write(h2, 0, b"second"))
    st.r("close the new handle", a.close(h2))
    st.r("close the removed one", a.close(h))
    st.content("content of again", "again")


def sc_copy_data(st):
    """copy-data from a staged file (its write handle, or a read handle
    opened by name) and into one."""
    a = st.s.a
    hs = H(st.r("open cs R|W|C|T", a.open("cs", RW_NEW)))
    st.r("write cs", a.write(hs, 0, DATA))
    hd = H(st.r("open cd W|C|T", a.open("cd", W_NEW)))
    st.r("copy-data cs(handle) -> cd", copy_data(a, hs, 0, 0, hd, 0))
    st.r("stat cd", a.stat("cd"))
    rh = H(st.r("open cs for read by name", a.open("cs", FXF_READ)))
    hd2 = H(st.r("open cd2 W|C|T", a.open("cd2", W_NEW)))
    st.r("copy-data cs(read handle) -> cd2", copy_data(a, rh, 100, 50,
                                                       hd2, 0))
    st.r("stat cd2", a.stat("cd2"))
    he = H(st.r("open existing for read", a.open("existing", FXF_READ)))
    st.r("copy-data existing -> cs at 5000", copy_data(a, he, 0, 0, hs,
                                                       5000))
    st.r("stat cs after copy into it", a.stat("cs"))
    st.r("read cs tail", a.read(rh, 4990, 100))
    st.other_prev("copy target in flight", "cd")
    for label, hh in (("read handle", rh), ("existing", he), ("cd2", hd2),
                      ("cd", hd), ("cs", hs)):
        st.r("close " + label, a.close(hh))
    for n in ("cs", "cd", "cd2"):
        st.content("content of " + n, n)


def sc_pipelined(st):
    """Many WRITEs in flight, then STAT/LSTAT/FSTAT/READDIR before any
    reply is read; and OPEN with the LSTAT sent before its reply (what
    sshfs does)."""
    a = st.s.a
    rid = 50000
    batch = b""
    batch += Packet(FXP_OPEN).u32(rid).string("pipe").u32(W_NEW).attrs(
        {}).framed()
    batch += Packet(FXP_LSTAT).u32(rid + 1).string("pipe").framed()
    a.send_raw(batch)
    r1, r2 = a.reply(), a.reply()
    st.same("OPEN and LSTAT pipelined: replies", [
        (r.id, st.s.R(r)) if r is not None else None for r in (r1, r2)])
    h = r1.handle if r1 is not None and r1.type == FXP_HANDLE else BAD_HANDLE
    chunk = bytes(range(256)) * 128          # 32 KiB
    batch = b""
    n = 64
    for i in range(n):
        batch += Packet(FXP_WRITE).u32(rid + 10 + i).string(h).u64(
            i * len(chunk)).string(chunk).framed()
    batch += Packet(FXP_STAT).u32(rid + 100).string("pipe").framed()
    batch += Packet(FXP_LSTAT).u32(rid + 101).string("pipe").framed()
    batch += Packet(FXP_FSTAT).u32(rid + 102).string(h).framed()
    a.send_raw(batch)
    got = []
    for _ in range(n + 3):
        r = a.reply()
        if r is None:
            break
        got.append(r)
    st.same("all %d WRITEs answered OK, in order" % n,
            [(r.id, r.status()) for r in got[:n]])
    for r, label in zip(got[n:], ("STAT", "LSTAT", "FSTAT")):
        st.same("%s after the WRITEs in flight" % label, (r.id, st.s.R(r)))
    st.same("readdir lists pipe with its size",
            [(nm, x.get("size")) for nm, l, x in listdir(a, ".")
             if nm == b"pipe"])
    st.other_prev("pipelined upload in flight", "pipe")
    st.r("close", a.close(h))
    st.same("content after close", sha(a.download("pipe")))


def sc_check_file(st, exts):
    """check-file-name / check-file-handle of a staged name, when the
    server advertises them (stock does not)."""
    a = st.s.a
    h = H(st.r("open new W|C|T", a.open("ck", RW_NEW)))
    st.r("write", a.write(h, 0, DATA))
    out = {}
    if "check-file-name" in exts or "check-file" in exts:
        r = a.extended("check-file-name", lambda p: p.string("ck").string(
            "sha256").u64(0).u64(0).u32(0))
        out["name"] = (r.status(), r.ext is not None and
                       hashlib.sha256(DATA).digest() in r.ext)
    if "check-file-handle" in exts or "check-file" in exts:
        r = a.extended("check-file-handle", lambda p: p.string(h).string(
            "sha256").u64(0).u64(0).u32(0))
        out["handle"] = (r.status(), r.ext is not None and
                         hashlib.sha256(DATA).digest() in r.ext)
    a.close(h)
    return out


def sc_abort(st):
    """The session ends (EOF) with two handles on one staged name and a
    replace in flight: nothing is published, once; stock leaves the
    partial files (by design, not compared)."""
    a = st.s.a
    h1 = H(st.r("open ab #1", a.open("ab", RW_NEW)))
    st.r("write #1", a.write(h1, 0, DATA))
    h2 = H(st.r("open ab #2", a.open("ab", FXF_WRITE)))
    st.r("write #2", a.write(h2, 100, b"two"))
    h3 = H(st.r("open existing W|T", a.open("existing", W_NEW)))
    st.r("write existing", a.write(h3, 0, b"partial"))
    st.r("close #1", a.close(h1))
    rc = a.finish()
    st.same("EOF with uploads open: exit status", rc)
    st.items.append(("design", "session ended: ab not published",
                     st.s.disk("ab"), ("absent",)))
    st.items.append(("design", "session ended: existing keeps its old "
                     "content", st.s.disk("existing"),
                     st.s.previous("existing")))
    # The uploads were interrupted by a lost connection: what arrived
    # is kept for a resume, in the user's store (DESIGN.md 12).
    st.items.append(("design", "session ended: no debris but kept "
                     "partial uploads",
                     sorted(n for n in os.listdir(st.s.root)
                            if not n.startswith(".au-partial-")),
                     st.s.prev_listing))
    st.logged("abort", "ab", 1)
    st.logged("commit", "ab", 0)
    st.s.a = st.s.start()           # for the final tree and finish()


SCENARIOS = [
    ("new file", sc_new_file, True),
    ("replace", sc_replace, True),
    ("edit in place", sc_edit_in_place, True),
    ("second open of a new name", lambda st: sc_second_open(st, "two"),
     True),
    ("second open of an existing name",
     lambda st: sc_second_open(st, "existing"), True),
    ("truncating second open", sc_second_open_trunc, True),
    ("two appenders", sc_appenders, True),
    ("two r+ handles, first closes first",
     lambda st: sc_two_offsets(st, 1), True),
    ("two r+ handles, second closes first",
     lambda st: sc_two_offsets(st, 2), True),
    ("reader opened first", sc_reader_first, True),
    ("setstat", sc_setstat, True),
    ("rename", sc_rename, True),
    ("remove", sc_remove, True),
    ("copy-data", sc_copy_data, True),
    ("pipelined", sc_pipelined, True),
    ("session abort", sc_abort, False),
]


def run_side_one(server, base, scen, fn):
    side = Side("ours" if server == "ours" else "stock",
                ours_path() if server == "ours" else stock_path(),
                base, scen.replace(" ", "_").replace(",", ""))
    st = Steps(side)
    try:
        fn(st)
    except Exception:
        st.items.append(("crash", "scenario did not complete",
                         traceback.format_exc()))
    try:
        side.finish()
    except Exception:
        pass
    return st, side


def run_side(tap, base):
    tap.note("ours: %s; stock: %s" % (ours_path(), stock_path()))
    if is_stock(ours_path()):
        tap.note("$SFTP_SERVER is stock: the side-by-side checks compare "
                 "stock with itself; the other-session checks must fail")
    for scen, fn, cmp_tree in SCENARIOS:
        so, sidea = run_side_one("ours", base, scen, fn)
        ss, sideb = run_side_one("stock", base, scen, fn)
        stock_design = dict((it[1], it[2]) for it in ss.items
                            if it[0] == "design")
        stock_same = [it for it in ss.items if it[0] == "same"]
        si = 0
        for it in so.items:
            if it[0] == "crash":
                tap.notok("%s: %s" % (scen, it[1]), it[2])
                continue
            if it[0] == "same":
                label, val = it[1], it[2]
                other = stock_same[si] if si < len(stock_same) else None
                si += 1
                if other is None or other[1] != label:
                    tap.notok("as stock: %s: %s" % (scen, label),
                              "stock's run has no such step (%r)" %
                              (other,))
                    continue
                tap.check("as stock: %s: %s" % (scen, label),
                          val == other[2],
                          "ours:  %s\nstock: %s" % (short(val), short(other[2])))
            elif it[0] == "design":
                label, val, want = it[1], it[2], it[3]
                tap.check("by design, not as stock: "
                          "%s: %s" % (scen, label), val == want,
                          "ours:  %s\nwant:  %s\n(stock shows %s)" %
                          (short(val), short(want),
                           short(stock_design.get(label))))
        for it in so.items:
            if it[0] != "log":
                continue
            kind, name, n = it[1], it[2], it[3]
            label = "ours only (log): %s: %d %s line%s for %s" % (
                scen, n, kind, "" if n == 1 else "s", name)
            if is_stock(ours_path()):
                tap.skip(label, "stock logs no commits")
                continue
            rx = re.compile(r'\b%s "%s" bytes ' % (kind, re.escape(name)))
            lines = [l for l in read_lines(sidea.err) if rx.search(l)]
            tap.check(label, len(lines) == n, "\n".join(lines) or
                      "no such line in %s" % sidea.err)
        for it in ss.items:
            if it[0] == "crash":
                tap.notok("%s: stock's run did not complete" % scen, it[2])
        if si < len(stock_same):
            tap.notok("as stock: %s: ours stopped before stock's step %r"
                      % (scen, stock_same[si][1]))
        if cmp_tree:
            ta, tb = sidea.tree(), sideb.tree()
            tap.check("as stock: %s: final tree" % scen, ta == tb,
                      "ours:  %s\nstock: %s" % (short(ta, 4000),
                                                   short(tb, 4000)))

    # check-file: only when the server advertises it.
    srv = Server(server_argv(ours_path()), cwd=base)
    v = srv.init()
    srv.finish()
    exts = [n for n, _ in v.extensions]
    if not any(n.startswith("check-file") for n in exts):
        tap.skip("check-file of a staged name",
                 "not advertised by %s" % ours_path())
        return
    so, side = run_side_one("ours", base, "check-file",
                            lambda st: st.same("out", sc_check_file(st,
                                                                    exts)))
    outs = [it[2] for it in so.items if it[0] == "same" and it[1] == "out"]
    out = outs[0] if outs else {}
    for k in ("name", "handle"):
        if k in out:
            tap.check("check-file-%s of a staged name hashes the staged "
                      "data (ours only)" % k, out[k] == ("EXTENDED_REPLY",
                                                         True),
                      "got %r" % (out[k],))


# -------------------------------------------------------------- trace

PFLAGS = [(FXF_READ, "READ"), (FXF_WRITE, "WRITE"), (FXF_APPEND, "APPEND"),
          (FXF_CREAT, "CREAT"), (FXF_TRUNC, "TRUNC"), (FXF_EXCL, "EXCL")]
REQ_NAMES = {3: "OPEN", 4: "CLOSE", 5: "READ", 6: "WRITE", 7: "LSTAT",
             8: "FSTAT", 9: "SETSTAT", 10: "FSETSTAT", 11: "OPENDIR",
             12: "READDIR", 13: "REMOVE", 14: "MKDIR", 15: "RMDIR",
             16: "REALPATH", 17: "STAT", 18: "RENAME", 19: "READLINK",
             20: "SYMLINK", 200: "EXTENDED", 1: "INIT"}


def fmt_attrs(a):
    out = []
    if "size" in a:
        out.append("size=%d" % a["size"])
    if "uid" in a:
        out.append("uid=%d gid=%d" % (a["uid"], a["gid"]))
    if "perm" in a:
        out.append("perm=%o" % a["perm"])
    if "mtime" in a:
        out.append("atime=%d mtime=%d" % (a["atime"], a["mtime"]))
    return "{" + " ".join(out) + "}"


class Tracer:
    def __init__(self, log, strip):
        self.fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                          0o666)
        self.strip = os.fsencode(strip.rstrip("/") + "/") if strip else None
        self.t0 = time.monotonic()
        self.handles = {}       # handle bytes -> path
        self.pending = {}       # id -> path of an OPEN/OPENDIR
        self.inbuf = bytearray()
        self.outbuf = bytearray()

    def p(self, b):
        if self.strip and b.startswith(self.strip):
            b = b[len(self.strip):]
        elif self.strip and b == self.strip[:-1]:
            b = b"."
        return '"%s"' % b.decode("utf-8", "replace")

    def h(self, b):
        return "%s(h%s)" % (self.handles.get(b, '"?"'), b.hex())

    def emit(self, s):
        line = "%.3f %s\n" % (time.monotonic() - self.t0, s)
        os.write(self.fd, line.encode("utf-8", "replace"))

    def request(self, body):
        t = body[0]
        r = Reader(body[1:])
        if t == FXP_INIT:
            return self.emit("> INIT %d" % r.u32())
        rid = r.u32()
        n = REQ_NAMES.get(t, "type%d" % t)
        args = ""
        if t == FXP_OPEN:
            path = r.string()
            fl = r.u32()
            a = r.attrs()
            self.pending[rid] = self.p(path)
            args = "%s %s %s" % (self.p(path), "|".join(
                nm for bit, nm in PFLAGS if fl & bit), fmt_attrs(a))
        elif t == FXP_OPENDIR:
            path = r.string()
            self.pending[rid] = self.p(path)
            args = self.p(path)
        elif t in (FXP_CLOSE, FXP_FSTAT, FXP_READDIR):
            args = self.h(r.string())
        elif t == FXP_READ:
            hd = r.string()
            args = "%s off %d len %d" % (self.h(hd), r.u64(), r.u32())
        elif t == FXP_WRITE:
            hd = r.string()
            off = r.u64()
            args = "%s off %d len %d" % (self.h(hd), off, len(r.string()))
        elif t == FXP_FSETSTAT:
            hd = r.string()
            args = "%s %s" % (self.h(hd), fmt_attrs(r.attrs()))
        elif t in (FXP_SETSTAT, FXP_MKDIR):
            path = r.string()
            args = "%s %s" % (self.p(path), fmt_attrs(r.attrs()))
        elif t in (FXP_RENAME, FXP_SYMLINK):
            args = "%s %s" % (self.p(r.string()), self.p(r.string()))
        elif t in (FXP_LSTAT, FXP_STAT, FXP_REMOVE, FXP_RMDIR,
                   FXP_REALPATH, FXP_READLINK):
            args = self.p(r.string())
        elif t == FXP_EXTENDED:
            en = r.string().decode("utf-8", "replace")
            n = en
            if en in ("posix-rename@openssh.com", "hardlink@openssh.com"):
                args = "%s %s" % (self.p(r.string()), self.p(r.string()))
            elif en in ("fsync@openssh.com", "fstatvfs@openssh.com"):
                args = self.h(r.string())
            elif en in ("statvfs@openssh.com", "expand-path@openssh.com"):
                args = self.p(r.string())
            elif en == "lsetstat@openssh.com":
                args = "%s %s" % (self.p(r.string()), fmt_attrs(r.attrs()))
            elif en == "copy-data":
                rh, ro, rl = r.string(), r.u64(), r.u64()
                wh, wo = r.string(), r.u64()
                args = "%s off %d len %d -> %s off %d" % (
                    self.h(rh), ro, rl, self.h(wh), wo)
        self.emit("> %d %s %s" % (rid, n, args))

    def reply(self, body):
        t = body[0]
        if t == FXP_VERSION:
            r = Reply(t, body[1:])
            return self.emit("< VERSION %d %s" % (r.version, ",".join(
                n for n, _ in r.extensions)))
        r = Reply(t, body[1:])
        if t == FXP_STATUS:
            s = r.status()
        elif t == FXP_HANDLE:
            path = self.pending.pop(r.id, '"?"')
            self.handles[r.handle] = path
            s = "HANDLE h%s" % r.handle.hex()
        elif t == FXP_ATTRS:
            s = "ATTRS %s" % fmt_attrs(r.attrs)
        elif t == FXP_NAME:
            s = "NAME %d: %s" % (len(r.names), " ".join(
                "%s%s" % (self.p(n), "(%d)" % x["size"] if "size" in x
                          else "") for n, _, x in r.names[:8]))
        elif t == FXP_DATA:
            s = "DATA %d" % len(r.data)
        else:
            s = r.status()
        self.pending.pop(r.id, None)
        self.emit("< %d %s" % (r.id, s))

    @staticmethod
    def packets(buf):
        while len(buf) >= 4:
            n = struct.unpack_from(">I", buf, 0)[0]
            if len(buf) < 4 + n:
                return
            body = bytes(buf[4:4 + n])
            del buf[:4 + n]
            if n:
                yield body

    def feed_in(self, data):
        self.inbuf += data
        for b in self.packets(self.inbuf):
            try:
                self.request(b)
            except Exception as e:
                self.emit("> undecodable request type %d: %s" % (b[0], e))

    def feed_out(self, data):
        self.outbuf += data
        for b in self.packets(self.outbuf):
            try:
                self.reply(b)
            except Exception as e:
                self.emit("< undecodable reply type %d: %s" % (b[0], e))


def run_trace(argv):
    strip = None
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    log = argv[0]
    rest = argv[1:]
    if rest[:1] == ["--strip"]:
        strip = rest[1]
        rest = rest[2:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    if not rest:
        sys.stderr.write(__doc__)
        return 2
    tr = Tracer(log, strip)
    tr.emit("=== session pid %d server %s" % (os.getpid(), rest[0]))
    child = subprocess.Popen(rest, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
    cin, cout = child.stdin.fileno(), child.stdout.fileno()
    for fd in (0, 1, cin, cout):
        os.set_blocking(fd, False)
    to_child = bytearray()
    to_client = bytearray()
    in_open = out_open = True
    client_gone = False
    while out_open or to_client:
        rd = []
        wr = []
        if in_open and len(to_child) < (1 << 22):
            rd.append(0)
        if out_open and len(to_client) < (1 << 22):
            rd.append(cout)
        if to_child:
            wr.append(cin)
        if to_client and not client_gone:
            wr.append(1)
        if client_gone and not out_open:
            break
        if not rd and not wr:
            break
        r, w, _ = select.select(rd, wr, [], 1.0)
        if 0 in r:
            try:
                d = os.read(0, 1 << 18)
            except BlockingIOError:
                d = None
            except OSError:
                d = b""
            if d is None:
                pass
            elif d:
                tr.feed_in(d)
                to_child += d
            else:
                in_open = False
                tr.emit("=== client EOF")
        if cout in r:
            try:
                d = os.read(cout, 1 << 18)
            except BlockingIOError:
                d = None
            except OSError:
                d = b""
            if d is None:
                pass
            elif d:
                tr.feed_out(d)
                to_client += d
            else:
                out_open = False
        if cin in w and to_child:
            try:
                n = os.write(cin, to_child)
                del to_child[:n]
            except BlockingIOError:
                pass
            except OSError:
                to_child.clear()
                in_open = False
        if 1 in w and to_client:
            try:
                n = os.write(1, to_client)
                del to_client[:n]
            except BlockingIOError:
                pass
            except OSError:
                to_client.clear()
                client_gone = True
                tr.emit("=== client gone")
        if not in_open and not to_child and cin is not None:
            child.stdin.close()
            cin = None
        if client_gone:
            to_client.clear()
    if cin is not None:
        child.stdin.close()
    rc = child.wait()
    tr.emit("=== server exit %d" % rc)
    return rc if rc >= 0 else 128 - rc


def run_summarize(argv):
    """Fold the trace: one line per request with its reply; runs of
    READ/WRITE of one handle become one line."""
    if len(argv) != 1:
        sys.stderr.write(__doc__)
        return 2
    reqs = {}           # id -> index in out
    out = []
    with open(argv[0], "rb") as f:
        lines = f.read().decode("utf-8", "replace").splitlines()
    for line in lines:
        if line.startswith("==="):
            out.append([line, None])
            continue
        parts = line.split(" ", 3)
        if len(parts) < 3:
            continue
        _, d, rest = parts[0], parts[1], " ".join(parts[2:])
        if d == ">":
            if rest.startswith("INIT"):
                continue
            rid, what = rest.split(" ", 1)
            out.append([what, None])
            reqs[rid] = len(out) - 1
        elif d == "<":
            rid, what = rest.split(" ", 1) if " " in rest else (rest, "")
            i = reqs.pop(rid, None)
            if i is not None:
                out[i][1] = what
    # Path requests naming a name this session holds open for writing
    # (what a staging server must answer from the staged file).
    held = {}           # handle -> path, of OPENs with WRITE
    pend = {}           # id -> path of such an OPEN not yet answered
    hits = {}
    step = ""
    for line in lines:
        if line.startswith("==="):
            step = line[4:70]
            continue
        w = line.split(" ", 3)
        if len(w) < 4:
            continue
        if w[1] == ">":
            rid, rest = w[2], w[3]
            typ = rest.split(" ", 1)[0]
            args = rest[len(typ) + 1:]
            if typ == "CLOSE":
                held.pop(args.rsplit("(h", 1)[-1].rstrip(")"), None)
                continue
            staged = set(held.values()) | set(
                v for k, v in pend.items() if k != rid)
            paths = [p for p in re.findall(r'("[^"]*")(?!\()', args)]
            if typ == "OPEN":
                fl = args[len(paths[0]):].split()[0] if paths else ""
                if "WRITE" in fl and paths:
                    pend[rid] = paths[0]
                typ = "OPEN " + fl
            for p in paths:
                if p in staged:
                    k = typ
                    hits.setdefault(k, [0, step])
                    hits[k][0] += 1
        elif w[1] == "<" and w[3].startswith("HANDLE ") and w[2] in pend:
            held[w[3].split(" ")[1][1:]] = pend.pop(w[2])
        elif w[1] == "<":
            pend.pop(w[2], None)
    folded = []
    for what, rep in out:
        w = what.split(" ")
        if (w[0] in ("READ", "WRITE") and folded and
                folded[-1]["kind"] == w[0] and folded[-1]["h"] == w[1] and
                (rep or "") == folded[-1]["rep"]):
            f = folded[-1]
            f["n"] += 1
            f["hi"] = max(f["hi"], int(w[3]) + int(w[5]))
            continue
        if w[0] in ("READ", "WRITE") and len(w) >= 6:
            folded.append({"kind": w[0], "h": w[1], "lo": int(w[3]),
                           "hi": int(w[3]) + int(w[5]), "n": 1,
                           "rep": rep or ""})
        else:
            folded.append({"kind": "line", "text": what, "rep": rep})
    for f in folded:
        if f["kind"] == "line":
            if f["rep"] is None and f["text"].startswith("==="):
                print(f["text"])
            else:
                print("  %s -> %s" % (f["text"], f["rep"]))
        else:
            h = f["h"].split("(h")[0]
            print("  %s %s x%d [%d..%d) -> %s" % (
                f["kind"], h, f["n"], f["lo"], f["hi"], f["rep"]))
    print("=== requests naming a path the session holds open for writing")
    for k, (n, st) in sorted(hits.items(), key=lambda kv: -kv[1][0]):
        print("  %5d %s (first in: %s)" % (n, k, st))
    return 0


def run_handles(argv):
    """How many file/directory handles the traced session holds open
    now (HANDLE replies not yet followed by a CLOSE of that handle)."""
    if len(argv) != 1:
        sys.stderr.write(__doc__)
        return 2
    held = set()
    try:
        with open(argv[0], "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        w = line.split(" ")
        if len(w) >= 5 and w[1] == "<" and w[3] == "HANDLE":
            held.add(w[4])
        elif len(w) >= 5 and w[1] == ">" and w[3] == "CLOSE":
            held.discard("h" + w[4].rsplit("(h", 1)[-1].rstrip(")"))
        elif "=== server exit" in line:
            held.clear()
    print(len(held))
    return 0


def run_treesig(argv):
    """One line per entry below DIR, sorted: path, type, mode, and for
    files size and sha256 (and mtime in seconds with --mtime); symlink
    targets (not with --nolink); directories: mode only."""
    mtime = "--mtime" in argv
    nolink = "--nolink" in argv
    args = [a for a in argv if not a.startswith("--")]
    if len(args) != 1:
        sys.stderr.write(__doc__)
        return 2
    top = args[0]
    out = []
    for dp, dns, fns in os.walk(top):
        for nm in dns + fns:
            p = os.path.join(dp, nm)
            rel = os.path.relpath(p, top)
            try:
                st = os.lstat(p)
                if statmod.S_ISREG(st.st_mode):
                    h = hashlib.sha256()
                    with open(p, "rb") as f:
                        for b in iter(lambda: f.read(1 << 20), b""):
                            h.update(b)
                    line = "%s f %o %d %s" % (rel, statmod.S_IMODE(
                        st.st_mode), st.st_size, h.hexdigest()[:16])
                    if mtime:
                        line += " mtime %d" % st.st_mtime
                elif statmod.S_ISDIR(st.st_mode):
                    line = "%s d %o" % (rel, statmod.S_IMODE(st.st_mode))
                elif statmod.S_ISLNK(st.st_mode):
                    line = "%s l -> %s" % (rel, "-" if nolink else
                                           os.readlink(p))
                else:
                    line = "%s type %o" % (rel, statmod.S_IFMT(st.st_mode))
            except OSError as e:
                line = "%s error %s" % (rel, e.strerror)
            out.append(line)
    for line in sorted(out):
        print(line)
    return 0


def main(argv):
    if len(argv) >= 2 and argv[1] == "treesig":
        return run_treesig(argv[2:])
    if len(argv) >= 2 and argv[1] == "handles":
        return run_handles(argv[2:])
    if len(argv) >= 2 and argv[1] == "trace":
        return run_trace(argv[2:])
    if len(argv) >= 2 and argv[1] == "summarize":
        return run_summarize(argv[2:])
    if len(argv) != 3 or argv[1] != "side":
        sys.stderr.write(__doc__)
        return 2
    tap = Tap()
    base = os.path.abspath(argv[2])
    os.makedirs(base, exist_ok=True)
    try:
        run_side(tap, base)
    except Exception:
        tap.notok("side did not complete", traceback.format_exc())
    return 1 if tap.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
