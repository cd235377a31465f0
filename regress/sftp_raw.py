#!/usr/bin/python3
"""Raw SFTP v3 packets over a pipe to an sftp-server: a small client
library, and the tests that use it.

Library:
    srv = Server([path, "-e"], cwd=dir)   # starts the server
    srv.init()                            # INIT / VERSION
    r = srv.open("f", FXF_WRITE | FXF_CREAT | FXF_TRUNC)
    srv.write(r.handle, 0, b"data"); srv.close(r.handle)
    srv.send_raw(bytes)                   # anything at all on the wire
    srv.finish()                          # EOF on stdin; exit status

Every request helper returns a Reply (type, id, code/msg, handle, data,
names, attrs, ext) after checking the reply's id.  Packets are built by
the Packet encoder, never with hand-counted lengths, except where a test
means to lie about a length.

Tests (TAP lines "ok - $tid: ..." on stdout):
    sftp_raw.py conformance DIR  -- the same well-formed requests to
        $SFTP_SERVER and $STOCK_SFTP_SERVER in lockstep, in two identical
        trees below DIR; statuses, attributes and names must agree.
    sftp_raw.py malformed DIR    -- bad packets to $SFTP_SERVER: nothing
        may die of a signal; ours must answer each with the right id and
        status and keep serving (SKIPped when $SFTP_SERVER is stock).
    sftp_raw.py logs DIR         -- ours' INFO commit/abort lines.
    sftp_raw.py atomic DIR       -- what other sessions see while an upload
        is open, killed, declared-size mismatched, raced (fails on stock).
"""
import os
import re
import select
import signal
import stat as statmod
import struct
import subprocess
import sys
import time

# Packet types.
FXP_INIT, FXP_VERSION, FXP_OPEN, FXP_CLOSE, FXP_READ, FXP_WRITE = 1, 2, 3, 4, 5, 6
FXP_LSTAT, FXP_FSTAT, FXP_SETSTAT, FXP_FSETSTAT, FXP_OPENDIR = 7, 8, 9, 10, 11
FXP_READDIR, FXP_REMOVE, FXP_MKDIR, FXP_RMDIR, FXP_REALPATH = 12, 13, 14, 15, 16
FXP_STAT, FXP_RENAME, FXP_READLINK, FXP_SYMLINK = 17, 18, 19, 20
FXP_STATUS, FXP_HANDLE, FXP_DATA, FXP_NAME, FXP_ATTRS = 101, 102, 103, 104, 105
FXP_EXTENDED, FXP_EXTENDED_REPLY = 200, 201

FXF_READ, FXF_WRITE, FXF_APPEND = 0x01, 0x02, 0x04
FXF_CREAT, FXF_TRUNC, FXF_EXCL = 0x08, 0x10, 0x20

ATTR_SIZE, ATTR_UIDGID, ATTR_PERM, ATTR_TIME = 0x1, 0x2, 0x4, 0x8
ATTR_EXTENDED = 0x80000000

FX_OK, FX_EOF, FX_NO_SUCH_FILE, FX_PERMISSION_DENIED = 0, 1, 2, 3
FX_FAILURE, FX_BAD_MESSAGE, FX_NO_CONNECTION = 4, 5, 6
FX_CONNECTION_LOST, FX_OP_UNSUPPORTED = 7, 8
STATUS_NAMES = {0: "OK", 1: "EOF", 2: "NO_SUCH_FILE", 3: "PERMISSION_DENIED",
                4: "FAILURE", 5: "BAD_MESSAGE", 6: "NO_CONNECTION",
                7: "CONNECTION_LOST", 8: "OP_UNSUPPORTED"}
TYPE_NAMES = {101: "STATUS", 102: "HANDLE", 103: "DATA", 104: "NAME",
              105: "ATTRS", 201: "EXTENDED_REPLY", 2: "VERSION"}

# The extensions OpenSSH advertises, in its order (a protocol fact).
OPENSSH_EXTENSIONS = [
    ("posix-rename@openssh.com", "1"), ("statvfs@openssh.com", "2"),
    ("fstatvfs@openssh.com", "2"), ("hardlink@openssh.com", "1"),
    ("fsync@openssh.com", "1"), ("lsetstat@openssh.com", "1"),
    ("limits@openssh.com", "1"), ("expand-path@openssh.com", "1"),
    ("copy-data", "1"), ("home-directory", "1"),
    ("users-groups-by-id@openssh.com", "1"),
]


# Slow servers (valgrind, regress/valgrind-check.sh) get longer to answer:
# every timeout is multiplied by $SFTP_RAW_TIMEOUT_SCALE.
TIMEOUT_SCALE = float(os.environ.get("SFTP_RAW_TIMEOUT_SCALE", "1") or 1)


class ParseError(Exception):
    pass


class ServerGone(Exception):
    pass


class Packet:
    """Encoder: chain u8/u32/u64/string/attrs, then bytes() frames it."""

    def __init__(self, ptype=None):
        self.body = bytearray()
        if ptype is not None:
            self.u8(ptype)

    def u8(self, v):
        self.body += struct.pack(">B", v)
        return self

    def u32(self, v):
        self.body += struct.pack(">I", v & 0xffffffff)
        return self

    def u64(self, v):
        self.body += struct.pack(">Q", v & 0xffffffffffffffff)
        return self

    def string(self, s):
        if isinstance(s, str):
            s = s.encode()
        self.u32(len(s))
        self.body += s
        return self

    def raw(self, b):
        self.body += b
        return self

    def attrs(self, a=None):
        a = a or {}
        flags = 0
        if "size" in a:
            flags |= ATTR_SIZE
        if "uid" in a:
            flags |= ATTR_UIDGID
        if "perm" in a:
            flags |= ATTR_PERM
        if "mtime" in a:
            flags |= ATTR_TIME
        if "ext" in a:
            flags |= ATTR_EXTENDED
        self.u32(flags)
        if "size" in a:
            self.u64(a["size"])
        if "uid" in a:
            self.u32(a["uid"]).u32(a["gid"])
        if "perm" in a:
            self.u32(a["perm"])
        if "mtime" in a:
            self.u32(a.get("atime", a["mtime"])).u32(a["mtime"])
        if "ext" in a:
            self.u32(len(a["ext"]))
            for k, v in a["ext"]:
                self.string(k).string(v)
        return self

    def framed(self):
        return struct.pack(">I", len(self.body)) + bytes(self.body)


class Reader:
    """Decoder with every length checked against what is there."""

    def __init__(self, data):
        self.data = data
        self.off = 0

    def need(self, n):
        if n > len(self.data) - self.off:
            raise ParseError("need %d bytes at %d of %d" %
                             (n, self.off, len(self.data)))

    def u8(self):
        self.need(1)
        self.off += 1
        return self.data[self.off - 1]

    def u32(self):
        self.need(4)
        self.off += 4
        return struct.unpack_from(">I", self.data, self.off - 4)[0]

    def u64(self):
        self.need(8)
        self.off += 8
        return struct.unpack_from(">Q", self.data, self.off - 8)[0]

    def string(self):
        n = self.u32()
        self.need(n)
        self.off += n
        return bytes(self.data[self.off - n:self.off])

    def attrs(self):
        flags = self.u32()
        a = {"flags": flags}
        if flags & ATTR_SIZE:
            a["size"] = self.u64()
        if flags & ATTR_UIDGID:
            a["uid"] = self.u32()
            a["gid"] = self.u32()
        if flags & ATTR_PERM:
            a["perm"] = self.u32()
        if flags & ATTR_TIME:
            a["atime"] = self.u32()
            a["mtime"] = self.u32()
        if flags & ATTR_EXTENDED:
            a["ext"] = [(self.string(), self.string())
                        for _ in range(self.u32())]
        return a

    def rest(self):
        r = bytes(self.data[self.off:])
        self.off = len(self.data)
        return r

    def at_end(self):
        return self.off == len(self.data)


class Reply:
    def __init__(self, ptype, body):
        self.type = ptype
        self.id = None
        self.code = self.msg = self.handle = self.data = None
        self.names = self.attrs = self.ext = None
        r = Reader(body)
        if ptype == FXP_VERSION:
            self.version = r.u32()
            self.extensions = []
            while not r.at_end():
                self.extensions.append((r.string().decode(),
                                        r.string().decode()))
            return
        self.id = r.u32()
        if ptype == FXP_STATUS:
            self.code = r.u32()
            # Version 3 servers should add message and language; tolerate
            # their absence but record it.
            self.msg = r.string().decode("utf-8", "replace") \
                if not r.at_end() else None
            if not r.at_end():
                r.string()
        elif ptype == FXP_HANDLE:
            self.handle = r.string()
        elif ptype == FXP_DATA:
            self.data = r.string()
        elif ptype == FXP_NAME:
            n = r.u32()
            self.names = [(r.string(), r.string(), r.attrs())
                          for _ in range(n)]
        elif ptype == FXP_ATTRS:
            self.attrs = r.attrs()
        elif ptype == FXP_EXTENDED_REPLY:
            self.ext = r.rest()
        if not r.at_end():
            raise ParseError("%d bytes of trailing junk in %s" %
                             (len(body) - r.off, TYPE_NAMES.get(ptype)))

    def __repr__(self):
        t = TYPE_NAMES.get(self.type, str(self.type))
        if self.type == FXP_STATUS:
            return "STATUS(id=%s %s %r)" % (self.id,
                                           STATUS_NAMES.get(self.code,
                                                            self.code),
                                           self.msg)
        return "%s(id=%s)" % (t, self.id)

    def status(self):
        """The status name, or the reply type for non-status replies."""
        if self.type == FXP_STATUS:
            return STATUS_NAMES.get(self.code, str(self.code))
        return TYPE_NAMES.get(self.type, str(self.type))


class Server:
    """One sftp-server process on a pair of pipes."""

    def __init__(self, argv, cwd=None, env=None, stderr_path=None,
                 umask=0o022):
        self.stderr_path = stderr_path
        self._err = open(stderr_path, "ab") if stderr_path else \
            subprocess.DEVNULL
        old = os.umask(umask)
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE,
                                         stderr=self._err, cwd=cwd, env=env)
        finally:
            os.umask(old)
        self.buf = bytearray()
        self.next_id = 1000
        self.pid = self.proc.pid

    # --- wire ---
    def send_raw(self, data):
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise ServerGone("server closed its input")

    def send(self, pkt):
        self.send_raw(pkt.framed())

    def _fill(self, want, deadline):
        fd = self.proc.stdout.fileno()
        while len(self.buf) < want:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                return False
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise ServerGone("EOF from server")
            self.buf += chunk
        return True

    def recv(self, timeout=10.0):
        """(type, body) of the next packet, or None after timeout."""
        deadline = time.monotonic() + timeout * TIMEOUT_SCALE
        if not self._fill(4, deadline):
            return None
        n = struct.unpack_from(">I", self.buf, 0)[0]
        if n < 1 or n > 1 << 20:
            raise ParseError("server sent a packet of length %d" % n)
        if not self._fill(4 + n, deadline):
            return None
        body = bytes(self.buf[4:4 + n])
        del self.buf[:4 + n]
        return body[0], body[1:]

    def reply(self, timeout=10.0):
        got = self.recv(timeout)
        if got is None:
            return None
        return Reply(*got)

    # --- requests ---
    def new_id(self):
        self.next_id += 1
        return self.next_id

    def init(self, version=3):
        self.send(Packet(FXP_INIT).u32(version))
        r = self.reply()
        if r is None or r.type != FXP_VERSION:
            raise ParseError("no VERSION reply: %r" % (r,))
        return r

    def call(self, ptype, build=None, timeout=10.0):
        """Send one request of ptype; build(pkt) adds the fields after the
        id.  Returns the Reply, which must carry the same id."""
        rid = self.new_id()
        pkt = Packet(ptype).u32(rid)
        if build:
            build(pkt)
        self.send(pkt)
        r = self.reply(timeout)
        if r is None:
            raise ParseError("no reply to type %d id %d" % (ptype, rid))
        if r.id != rid:
            raise ParseError("reply id %r to request id %d" % (r.id, rid))
        return r

    def open(self, path, pflags, attrs=None):
        return self.call(FXP_OPEN,
                         lambda p: p.string(path).u32(pflags).attrs(attrs))

    def close(self, h):
        return self.call(FXP_CLOSE, lambda p: p.string(h))

    def read(self, h, off, n):
        return self.call(FXP_READ, lambda p: p.string(h).u64(off).u32(n))

    def write(self, h, off, data):
        return self.call(FXP_WRITE, lambda p: p.string(h).u64(off).string(data))

    def stat(self, path):
        return self.call(FXP_STAT, lambda p: p.string(path))

    def lstat(self, path):
        return self.call(FXP_LSTAT, lambda p: p.string(path))

    def fstat(self, h):
        return self.call(FXP_FSTAT, lambda p: p.string(h))

    def setstat(self, path, attrs):
        return self.call(FXP_SETSTAT, lambda p: p.string(path).attrs(attrs))

    def fsetstat(self, h, attrs):
        return self.call(FXP_FSETSTAT, lambda p: p.string(h).attrs(attrs))

    def opendir(self, path):
        return self.call(FXP_OPENDIR, lambda p: p.string(path))

    def readdir(self, h):
        return self.call(FXP_READDIR, lambda p: p.string(h))

    def remove(self, path):
        return self.call(FXP_REMOVE, lambda p: p.string(path))

    def mkdir(self, path, attrs=None):
        return self.call(FXP_MKDIR, lambda p: p.string(path).attrs(attrs))

    def rmdir(self, path):
        return self.call(FXP_RMDIR, lambda p: p.string(path))

    def realpath(self, path):
        return self.call(FXP_REALPATH, lambda p: p.string(path))

    def rename(self, old, new):
        return self.call(FXP_RENAME, lambda p: p.string(old).string(new))

    def readlink(self, path):
        return self.call(FXP_READLINK, lambda p: p.string(path))

    def symlink(self, target, linkpath):
        # OpenSSH's order: target first (PROTOCOL 4.1).
        return self.call(FXP_SYMLINK,
                         lambda p: p.string(target).string(linkpath))

    def extended(self, name, build=None):
        def b(p):
            p.string(name)
            if build:
                build(p)
        return self.call(FXP_EXTENDED, b)

    def readdir_all(self, path):
        """(status of opendir, sorted entries, final status)"""
        r = self.opendir(path)
        if r.type != FXP_HANDLE:
            return r, [], None
        entries = []
        while True:
            d = self.readdir(r.handle)
            if d.type != FXP_NAME:
                break
            entries.extend(d.names)
        self.close(r.handle)
        return r, sorted(entries), d

    def upload(self, path, data, pflags=FXF_WRITE | FXF_CREAT | FXF_TRUNC,
               chunk=32768, attrs=None):
        r = self.open(path, pflags, attrs)
        if r.type != FXP_HANDLE:
            return r
        for off in range(0, len(data), chunk):
            w = self.write(r.handle, off, data[off:off + chunk])
            if w.code != FX_OK:
                return w
        return self.close(r.handle)

    def download(self, path):
        r = self.open(path, FXF_READ)
        if r.type != FXP_HANDLE:
            return None
        out = bytearray()
        while True:
            d = self.read(r.handle, len(out), 65536)
            if d.type != FXP_DATA:
                break
            out += d.data
        self.close(r.handle)
        return bytes(out)

    # --- end ---
    def alive(self):
        return self.proc.poll() is None

    def finish(self, timeout=10.0):
        """Close stdin and return the exit status (negative: signal)."""
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            return self.proc.wait(timeout * TIMEOUT_SCALE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "timeout"
        finally:
            if self._err is not subprocess.DEVNULL:
                self._err.close()

    def wait_exit(self, timeout=5.0):
        try:
            return self.proc.wait(timeout * TIMEOUT_SCALE)
        except subprocess.TimeoutExpired:
            return None


# ---------------------------------------------------------------- TAP

class Tap:
    def __init__(self):
        self.tid = os.environ.get("tid", "sftp_raw")
        self.failed = 0

    def ok(self, desc):
        print("ok - %s: %s" % (self.tid, desc), flush=True)

    def notok(self, desc, why=None):
        self.failed += 1
        print("not ok - %s: %s" % (self.tid, desc), flush=True)
        if why:
            for line in str(why).splitlines():
                print("#   " + line, flush=True)

    def skip(self, desc, why):
        print("ok - %s: %s # SKIP %s" % (self.tid, desc, why), flush=True)

    def check(self, desc, cond, why=None):
        if cond:
            self.ok(desc)
        else:
            self.notok(desc, why)
        return cond

    def note(self, msg):
        print("# " + msg, flush=True)


def server_argv(path, extra=()):
    return [path, "-e"] + list(extra)


def is_stock(path):
    stock = os.environ.get("STOCK_SFTP_SERVER", "/usr/lib/openssh/sftp-server")
    try:
        return os.path.samefile(path, stock)
    except OSError:
        return path == stock


def ours_path():
    return os.environ.get("SFTP_SERVER", "sftp-server")


def stock_path():
    return os.environ.get("STOCK_SFTP_SERVER", "/usr/lib/openssh/sftp-server")


# ------------------------------------------------------- conformance

DATE_RE = re.compile(rb"[A-Z][a-z]{2} [ 0-9][0-9] (?:[0-9]{2}:[0-9]{2}| [0-9]{4})")


def make_tree(root):
    """The starting tree for the side-by-side runs (identical twice)."""
    os.makedirs(root)
    os.chmod(root, 0o755)
    with open(os.path.join(root, "existing"), "wb") as f:
        f.write(b"existing data\n")
    os.chmod(os.path.join(root, "existing"), 0o644)
    os.mkdir(os.path.join(root, "sub"), 0o755)
    with open(os.path.join(root, "sub", "inner"), "wb") as f:
        f.write(b"x" * 1000)
    os.symlink("existing", os.path.join(root, "link"))
    with open(os.path.join(root, "ro"), "wb") as f:
        f.write(b"read only\n")
    os.chmod(os.path.join(root, "ro"), 0o444)
    old = 1500000000
    for n in ("existing", "sub/inner", "ro"):
        os.utime(os.path.join(root, n), (old, old))


class Normaliser:
    def __init__(self, root):
        self.root = os.fsencode(os.path.realpath(root))
        self.now = time.time()

    def path(self, b):
        if b.startswith(self.root):
            return b"ROOT" + b[len(self.root):]
        return b

    def time(self, t):
        return "recent" if abs(t - self.now) < 600 else t

    def attrs(self, a):
        out = dict(a)
        out.pop("atime", None)      # reads move it; relatime is erratic
        if "mtime" in out:
            out["mtime"] = self.time(out["mtime"])
        if "perm" in out and statmod.S_ISDIR(out["perm"]) and "size" in out:
            out["size"] = "dir"     # depends on the directory's history
        return out

    def longname(self, b):
        b = b.replace(self.root, b"ROOT")
        b = DATE_RE.sub(b"DATE", b)
        return b" ".join(b.split())

    def reply(self, r):
        if r is None:
            return ("no reply",)
        if r.type == FXP_STATUS:
            return ("STATUS", STATUS_NAMES.get(r.code, r.code), r.msg)
        if r.type == FXP_HANDLE:
            return ("HANDLE",)
        if r.type == FXP_DATA:
            return ("DATA", r.data)
        if r.type == FXP_ATTRS:
            return ("ATTRS", self.attrs(r.attrs))
        if r.type == FXP_NAME:
            return ("NAME", sorted((self.path(n), self.longname(l),
                                    sorted(self.attrs(a).items()))
                                   for n, l, a in r.names))
        if r.type == FXP_EXTENDED_REPLY:
            return ("EXT", r.ext)
        return ("type", r.type)


def statvfs_fields(r):
    """bsize, frsize, blocks, fsid, flag, namemax of a statvfs reply."""
    if r.type != FXP_EXTENDED_REPLY:
        return r.status()
    rd = Reader(r.ext)
    v = [rd.u64() for _ in range(11)]
    return (v[0], v[1], v[2], v[8], v[9], v[10])


def limits_fields(r):
    if r.type != FXP_EXTENDED_REPLY:
        return r.status()
    rd = Reader(r.ext)
    v = [rd.u64() for _ in range(4)]
    return (v[0], v[1], v[2], "open handles > 0" if v[3] > 0 else v[3])


def scenario(srv, root):
    """Well-formed requests; yields (label, normalised result).  Runs
    against two servers in lockstep, so handles live in locals."""
    nz = Normaliser(root)
    R = nz.reply

    def S(r):
        return r.status()

    for p in (".", "", "sub/../existing", "missing", "missing/x", "link",
              "sub/inner/..", "/"):
        yield "realpath %r" % p, R(srv.realpath(p))
    for p in ("existing", "link", "sub", "missing", "ro"):
        yield "stat %s" % p, R(srv.stat(p))
        yield "lstat %s" % p, R(srv.lstat(p))

    # A new file: writes with a hole, attributes through the handle.
    h = srv.open("new", FXF_WRITE | FXF_CREAT | FXF_TRUNC,
                 {"perm": 0o640})
    yield "open new for write", R(h)
    h = h.handle
    yield "write at 0", R(srv.write(h, 0, b"hello"))
    yield "write at 10 (hole)", R(srv.write(h, 10, b"world"))
    yield "write empty", R(srv.write(h, 15, b""))
    yield "fstat write handle", R(srv.fstat(h))
    yield "read write-only handle", S(srv.read(h, 0, 10))
    yield "fsetstat perm 0600", R(srv.fsetstat(h, {"perm": 0o600}))
    yield "fsync", R(srv.extended("fsync@openssh.com",
                                  lambda p: p.string(h)))
    yield "fstatvfs", statvfs_fields(srv.extended(
        "fstatvfs@openssh.com", lambda p: p.string(h)))
    yield "close write handle", R(srv.close(h))
    yield "stat new after close", R(srv.stat("new"))

    h = srv.open("new", FXF_READ)
    yield "open new for read", R(h)
    h = h.handle
    yield "read all", R(srv.read(h, 0, 100))
    yield "read inside hole", R(srv.read(h, 5, 3))
    yield "read at EOF", R(srv.read(h, 15, 100))
    yield "read past EOF", R(srv.read(h, 100000, 100))
    yield "read huge length", ("DATA length", len(srv.read(h, 0, 0xffffffff).data or b""))
    yield "write read-only handle", S(srv.write(h, 0, b"x"))
    yield "fstat read handle", R(srv.fstat(h))
    yield "close read handle", R(srv.close(h))
    yield "close closed handle", R(srv.close(h))
    yield "read closed handle", R(srv.read(h, 0, 1))

    h = srv.open("new", FXF_WRITE | FXF_APPEND).handle
    yield "append write ignores offset", R(srv.write(h, 0, b"++"))
    yield "close append handle", R(srv.close(h))
    yield "content after append", srv.download("new")

    h = srv.open("new", FXF_READ | FXF_WRITE).handle
    yield "rw write without trunc", R(srv.write(h, 0, b"HE"))
    yield "read through rw handle", R(srv.read(h, 0, 4))
    yield "close rw handle", R(srv.close(h))
    yield "content after rw edit", srv.download("new")

    yield "open excl on existing", R(srv.open(
        "existing", FXF_WRITE | FXF_CREAT | FXF_EXCL))
    yield "open missing for read", R(srv.open("missing", FXF_READ))
    yield "open missing for write without creat", R(srv.open(
        "missing", FXF_WRITE))
    yield "open in missing dir", R(srv.open(
        "missing/f", FXF_WRITE | FXF_CREAT))
    r = srv.open("sub", FXF_READ)
    yield "open directory for read", R(r)
    if r.type == FXP_HANDLE:
        yield "read directory handle", R(srv.read(r.handle, 0, 10))
        srv.close(r.handle)
    yield "open directory for write", R(srv.open("sub", FXF_WRITE))
    h = srv.open("trunc", FXF_WRITE | FXF_CREAT | FXF_TRUNC)
    srv.write(h.handle, 0, b"0123456789")
    yield "close trunc", R(srv.close(h.handle))
    h = srv.open("trunc", FXF_WRITE | FXF_TRUNC)
    srv.write(h.handle, 0, b"ab")
    yield "close re-trunc", R(srv.close(h.handle))
    yield "content after trunc", srv.download("trunc")
    h = srv.open("excl", FXF_WRITE | FXF_CREAT | FXF_EXCL, {"perm": 0o600})
    yield "open excl new", R(h)
    srv.write(h.handle, 0, b"exclusive")
    yield "close excl", R(srv.close(h.handle))
    yield "stat excl", R(srv.stat("excl"))

    yield "setstat size", R(srv.setstat("new", {"size": 3}))
    yield "setstat perm", R(srv.setstat("new", {"perm": 0o604}))
    yield "setstat times", R(srv.setstat(
        "new", {"atime": 1000000000, "mtime": 1000000001}))
    yield "stat after setstat", R(srv.stat("new"))
    yield "setstat uid/gid (same)", R(srv.setstat(
        "new", {"uid": os.getuid(), "gid": os.getgid()}))
    yield "setstat missing", R(srv.setstat("missing", {"perm": 0o600}))
    yield "setstat nothing", R(srv.setstat("new", {}))
    yield "lsetstat times on link", R(srv.extended(
        "lsetstat@openssh.com",
        lambda p: p.string("link").attrs({"mtime": 1100000000})))
    yield "lstat link after lsetstat", R(srv.lstat("link"))
    yield "lsetstat size", R(srv.extended(
        "lsetstat@openssh.com", lambda p: p.string("link").attrs(
            {"size": 1})))

    od, entries, last = srv.readdir_all(".")
    yield "opendir .", R(od)
    yield "readdir entries", [(nm, nz.longname(l), sorted(nz.attrs(a).items()))
                              for nm, l, a in entries]
    yield "readdir end", R(last)
    od, entries, last = srv.readdir_all("sub")
    yield "readdir sub", [(nm, nz.longname(l)) for nm, l, a in entries]
    yield "opendir missing", R(srv.opendir("missing"))
    yield "opendir file", R(srv.opendir("existing"))

    yield "mkdir", R(srv.mkdir("d1", {"perm": 0o750}))
    yield "stat new dir", R(srv.stat("d1"))
    yield "mkdir no attrs", R(srv.mkdir("d2"))
    yield "stat dir no attrs", R(srv.stat("d2"))
    yield "mkdir existing", R(srv.mkdir("d1"))
    yield "mkdir in missing", R(srv.mkdir("missing/x"))
    yield "rmdir", R(srv.rmdir("d1"))
    yield "rmdir non-empty", R(srv.rmdir("sub"))
    yield "rmdir missing", R(srv.rmdir("missing"))
    yield "rmdir file", R(srv.rmdir("existing"))
    yield "remove missing", R(srv.remove("missing"))
    yield "remove directory", R(srv.remove("d2"))

    yield "rename", R(srv.rename("new", "new2"))
    yield "rename onto existing", R(srv.rename("new2", "existing"))
    yield "rename missing", R(srv.rename("missing", "x"))
    yield "rename dir", R(srv.rename("d2", "d3"))
    yield "hardlink", R(srv.extended(
        "hardlink@openssh.com", lambda p: p.string("existing").string("hl")))
    yield "hardlink onto existing", R(srv.extended(
        "hardlink@openssh.com", lambda p: p.string("existing").string("hl")))
    yield "stat hardlinked", R(srv.stat("hl"))
    yield "posix-rename over existing", R(srv.extended(
        "posix-rename@openssh.com", lambda p: p.string("hl").string("new2")))
    yield "stat after posix-rename", R(srv.stat("new2"))
    yield "posix-rename missing", R(srv.extended(
        "posix-rename@openssh.com", lambda p: p.string("nope").string("x")))
    yield "symlink", R(srv.symlink("existing", "sl"))
    yield "symlink existing name", R(srv.symlink("existing", "sl"))
    yield "readlink", R(srv.readlink("sl"))
    yield "readlink non-link", R(srv.readlink("existing"))
    yield "readlink missing", R(srv.readlink("missing"))
    yield "remove file", R(srv.remove("new2"))
    yield "remove symlink", R(srv.remove("sl"))
    yield "stat removed", R(srv.stat("new2"))

    yield "statvfs", statvfs_fields(srv.extended(
        "statvfs@openssh.com", lambda p: p.string(".")))
    yield "statvfs missing", R(srv.extended(
        "statvfs@openssh.com", lambda p: p.string("missing")))
    yield "limits", limits_fields(srv.extended("limits@openssh.com"))
    for p in ("~", "~/sub", "sub/../existing", "~root", "~nosuchuser12345/x",
              "missing/x"):
        yield "expand-path %r" % p, R(srv.extended(
            "expand-path@openssh.com", lambda pk: pk.string(p)))
    yield "home-directory root", R(srv.extended(
        "home-directory", lambda p: p.string("root")))
    yield "home-directory unknown", R(srv.extended(
        "home-directory", lambda p: p.string("nosuchuser12345")))
    yield "users-groups-by-id", R(srv.extended(
        "users-groups-by-id@openssh.com",
        lambda p: p.string(struct.pack(">II", 0, 4294967000)).string(
            struct.pack(">I", 0))))
    yield "users-groups-by-id empty", R(srv.extended(
        "users-groups-by-id@openssh.com", lambda p: p.string(b"").string(b"")))

    rh = srv.open("existing", FXF_READ).handle
    wh = srv.open("copy", FXF_WRITE | FXF_CREAT | FXF_TRUNC).handle
    yield "copy-data to EOF", R(srv.extended(
        "copy-data", lambda p: p.string(rh).u64(0).u64(0).string(wh).u64(0)))
    yield "copy-data range", R(srv.extended(
        "copy-data", lambda p: p.string(rh).u64(2).u64(4).string(wh).u64(100)))
    yield "copy-data past EOF", R(srv.extended(
        "copy-data", lambda p: p.string(rh).u64(1000).u64(4).string(wh).u64(0)))
    yield "copy-data same handle", R(srv.extended(
        "copy-data", lambda p: p.string(rh).u64(0).u64(0).string(rh).u64(0)))
    yield "close copy target", R(srv.close(wh))
    srv.close(rh)
    yield "copy content", srv.download("copy")

    yield "unknown extension", R(srv.extended("nosuch@example.com",
                                              lambda p: p.string("x")))

    # Handles that were never issued, and handles of wrong lengths.
    for label, bad in (("unknown handle", b"\0\0\0\x63"),
                       ("empty handle", b""),
                       ("2-byte handle", b"\0\x01"),
                       ("8-byte handle", b"\0\0\0\0\0\0\0\0")):
        yield "read %s" % label, R(srv.read(bad, 0, 10))
        yield "write %s" % label, R(srv.write(bad, 0, b"x"))
        yield "fstat %s" % label, R(srv.fstat(bad))
        yield "fsetstat %s" % label, R(srv.fsetstat(bad, {"perm": 0o600}))
        yield "readdir %s" % label, R(srv.readdir(bad))
        yield "close %s" % label, R(srv.close(bad))
        yield "fsync %s" % label, R(srv.extended(
            "fsync@openssh.com", lambda p: p.string(bad)))
        yield "fstatvfs %s" % label, R(srv.extended(
            "fstatvfs@openssh.com", lambda p: p.string(bad)))

    # A directory handle used as a file handle and the other way round.
    dh = srv.opendir(".").handle
    yield "read dir handle", R(srv.read(dh, 0, 10))
    yield "fstat dir handle", R(srv.fstat(dh))
    yield "fsync dir handle", R(srv.extended("fsync@openssh.com",
                                             lambda p: p.string(dh)))
    srv.close(dh)
    fh = srv.open("existing", FXF_READ).handle
    yield "readdir file handle", R(srv.readdir(fh))
    srv.close(fh)


def run_conformance(tap, base):
    ours, stock = ours_path(), stock_path()
    a_root, b_root = os.path.join(base, "ours"), os.path.join(base, "stock")
    make_tree(a_root)
    make_tree(b_root)
    a = Server(server_argv(ours), cwd=a_root,
               stderr_path=os.path.join(base, "ours.err"))
    b = Server(server_argv(stock), cwd=b_root,
               stderr_path=os.path.join(base, "stock.err"))
    va, vb = a.init(), b.init()
    tap.check("VERSION 3", va.version == 3, "got %d" % va.version)
    # Ours adds one pair after OpenSSH's (issue 15): check-file and the
    # algorithms it offers; nothing else may differ.
    extra = va.extensions[len(OPENSSH_EXTENSIONS):]
    tap.check("extensions as OpenSSH advertises them, in order (then "
              "check-file: %s)" % (extra[0][1] if extra else "none"),
              va.extensions[:len(OPENSSH_EXTENSIONS)] == OPENSSH_EXTENSIONS
              and (extra == [] or extra == [
                  ("check-file", "md5,sha1,sha224,sha256,sha384,sha512")]),
              "got %r" % (va.extensions,))
    tap.check("stock agrees on the extension list",
              vb.extensions == OPENSSH_EXTENSIONS,
              "stock sent %r" % (vb.extensions,))
    same = differ = 0
    ga, gb = scenario(a, a_root), scenario(b, b_root)
    for (la, ra), (lb, rb) in zip(ga, gb):
        assert la == lb
        if ra == rb:
            same += 1
            tap.ok("as stock: %s" % la)
        else:
            differ += 1
            tap.notok("as stock: %s" % la, "ours:  %r\nstock: %r" % (ra, rb))
    tap.note("%d requests alike, %d differ" % (same, differ))
    tap.check("ours still alive after the scenario", a.alive())
    ra, rb = a.finish(), b.finish()
    tap.check("exit status 0 on EOF (stock %r)" % rb, ra == 0 and rb == 0,
              "ours %r, stock %r" % (ra, rb))
    # The trees must end up alike too (names, sizes, modes).
    def tree(root):
        out = []
        for dp, dns, fns in os.walk(root):
            for nm in sorted(dns + fns):
                p = os.path.join(dp, nm)
                st = os.lstat(p)
                out.append((os.path.relpath(p, root), st.st_mode,
                            st.st_size if not statmod.S_ISDIR(st.st_mode)
                            else 0))
        return sorted(out)
    ta, tb = tree(a_root), tree(b_root)
    tap.check("final trees alike", ta == tb,
              "ours:  %r\nstock: %r" % (ta, tb))


# --------------------------------------------------------- malformed

def m_probe(srv):
    """A well-formed request after the bad one: is the server still
    serving, and in step?"""
    rid = 777777
    srv.send(Packet(FXP_REALPATH).u32(rid).string("."))
    r = srv.reply(5)
    return r is not None and r.type == FXP_NAME and r.id == rid, r


MALFORMED = [
    # (label, bytes after INIT, expected reply: (id, {statuses}) or None
    #  for "no reply, skipped", needs INIT first?)
    ("truncated string in OPEN",
     Packet(FXP_OPEN).u32(11).u32(100).raw(b"abc").framed(),
     (11, {"BAD_MESSAGE"})),
    ("string length past end in REALPATH",
     Packet(FXP_REALPATH).u32(12).u32(16).raw(b"abc").framed(),
     (12, {"BAD_MESSAGE"})),
    ("huge string length in STAT",
     Packet(FXP_STAT).u32(13).u32(0xffffffff).raw(b"abcdef").framed(),
     (13, {"BAD_MESSAGE"})),
    ("unknown packet type 99",
     Packet(99).u32(14).string("whatever").framed(),
     (14, {"OP_UNSUPPORTED"})),
    ("unknown packet type 0",
     Packet(0).u32(15).framed(),
     (15, {"OP_UNSUPPORTED", "BAD_MESSAGE"})),
    ("reply type sent as a request (STATUS)",
     Packet(FXP_STATUS).u32(16).u32(0).string("").string("").framed(),
     (16, {"OP_UNSUPPORTED", "BAD_MESSAGE"})),
    ("OPEN without pflags",
     Packet(FXP_OPEN).u32(17).string("x").framed(),
     (17, {"BAD_MESSAGE"})),
    ("OPEN with truncated attrs",
     Packet(FXP_OPEN).u32(18).string("x").u32(FXF_WRITE | FXF_CREAT)
     .u32(ATTR_SIZE).u32(7).framed(),
     (18, {"BAD_MESSAGE"})),
    ("SETSTAT with huge extended count",
     Packet(FXP_SETSTAT).u32(19).string("x").u32(ATTR_EXTENDED)
     .u32(0xffffffff).string("a").framed(),
     (19, {"BAD_MESSAGE"})),
    ("WRITE data length past end",
     Packet(FXP_WRITE).u32(20).string(b"\0\0\0\0").u64(0).u32(5000)
     .raw(b"x" * 10).framed(),
     (20, {"BAD_MESSAGE"})),
    ("READ without length",
     Packet(FXP_READ).u32(21).string(b"\0\0\0\0").u64(0).framed(),
     (21, {"BAD_MESSAGE"})),
    ("RENAME with one path",
     Packet(FXP_RENAME).u32(22).string("a").framed(),
     (22, {"BAD_MESSAGE"})),
    ("path with a NUL byte",
     Packet(FXP_STAT).u32(23).string(b"exi\0sting").framed(),
     (23, {"BAD_MESSAGE"})),
    ("EXTENDED without a name",
     Packet(FXP_EXTENDED).u32(24).framed(),
     (24, {"BAD_MESSAGE"})),
    ("posix-rename with one path",
     Packet(FXP_EXTENDED).u32(25).string("posix-rename@openssh.com")
     .string("a").framed(),
     (25, {"BAD_MESSAGE"})),
    ("copy-data with a missing field",
     Packet(FXP_EXTENDED).u32(26).string("copy-data").string(b"\0\0\0\0")
     .u64(0).framed(),
     (26, {"BAD_MESSAGE"})),
    ("users-groups-by-id with a ragged uid list",
     Packet(FXP_EXTENDED).u32(27).string("users-groups-by-id@openssh.com")
     .string(b"\0\0\0").string(b"").framed(),
     (27, {"BAD_MESSAGE"})),
    ("lsetstat with truncated attrs",
     Packet(FXP_EXTENDED).u32(28).string("lsetstat@openssh.com")
     .string("x").u32(ATTR_TIME).u32(1).framed(),
     (28, {"BAD_MESSAGE"})),
    ("zero-length packet",
     struct.pack(">I", 0), None),
    ("packet of only a type byte",
     struct.pack(">IB", 1, FXP_REALPATH), None),
    ("packet too short for an id",
     struct.pack(">IBH", 3, FXP_STAT, 7), None),
]


def run_malformed(tap, base):
    path = ours_path()
    stock = is_stock(path)
    root = os.path.join(base, "m")
    make_tree(root)
    why_skip = "stock exits on malformed input (a known weak spot)"
    n = 0
    for label, data, expect in MALFORMED:
        n += 1
        srv = Server(server_argv(path), cwd=root,
                     stderr_path=os.path.join(base, "malformed.err"))
        srv.init()
        try:
            srv.send_raw(data)
            r = srv.reply(3) if expect is not None else None
            alive, probe = m_probe(srv)
        except (ServerGone, ParseError) as e:
            r, alive, probe = None, False, e
        if stock:
            tap.skip("%s: answered and still serving" % label, why_skip)
        else:
            if expect is not None:
                want_id, codes = expect
                tap.check("%s: answered %s with id %d" %
                          (label, "/".join(sorted(codes)), want_id),
                          r is not None and r.type == FXP_STATUS and
                          r.id == want_id and r.status() in codes,
                          "got %r" % (r,))
            tap.check("%s: still serving" % label, alive,
                      "probe got %r" % (probe,))
        rc = srv.finish()
        tap.check("%s: no death by signal (exit %r)" % (label, rc),
                  rc != "timeout" and rc >= 0, "exit %r" % rc)

    # Several requests in flight with bad ones between them: every good
    # one is answered, in order, and nothing stalls behind the bad ones.
    srv = Server(server_argv(path), cwd=root)
    srv.init()
    batch = b""
    ids = []
    for i in range(20):
        if i % 5 == 2:
            batch += Packet(99).u32(5000 + i).framed()
        elif i % 5 == 4:
            batch += Packet(FXP_STAT).u32(5000 + i).u32(999).framed()
        else:
            batch += Packet(FXP_STAT).u32(5000 + i).string("existing").framed()
        ids.append(5000 + i)
    try:
        srv.send_raw(batch)
        got = []
        while True:
            r = srv.reply(2)
            if r is None:
                break
            got.append((r.id, r.status()))
    except (ServerGone, ParseError):
        got = []
    if stock:
        tap.skip("pipelined bad requests all answered in order", why_skip)
    else:
        want = [(i, "OP_UNSUPPORTED" if (i - 5000) % 5 == 2 else
                 "BAD_MESSAGE" if (i - 5000) % 5 == 4 else "ATTRS")
                for i in ids]
        tap.check("pipelined bad requests all answered in order",
                  got == want, "got %r" % (got,))
    rc = srv.finish()
    tap.check("pipelined bad requests: no death by signal (exit %r)" % rc,
              rc != "timeout" and rc >= 0)

    # A request before INIT.
    srv = Server(server_argv(path), cwd=root)
    try:
        srv.send(Packet(FXP_REALPATH).u32(31).string("."))
        r = srv.reply(3)
        v = srv.init()
        alive, probe = m_probe(srv)
    except (ServerGone, ParseError) as e:
        r, v, alive, probe = None, None, False, e
    if stock:
        tap.skip("request before INIT: FAILURE, then INIT works", why_skip)
    else:
        tap.check("request before INIT answered FAILURE id 31",
                  r is not None and r.type == FXP_STATUS and r.id == 31 and
                  r.code == FX_FAILURE, "got %r" % (r,))
        tap.check("request before INIT: INIT afterwards works",
                  v is not None and v.version == 3 and alive,
                  "probe %r" % (probe,))
    rc = srv.finish()
    tap.check("request before INIT: no death by signal (exit %r)" % rc,
              rc != "timeout" and rc >= 0)

    # A second INIT.
    srv = Server(server_argv(path), cwd=root)
    srv.init()
    try:
        srv.send(Packet(FXP_INIT).u32(3))
        r = srv.reply(3)
        alive, probe = m_probe(srv)
    except (ServerGone, ParseError) as e:
        r, alive, probe = None, False, e
    if stock:
        tap.skip("second INIT answered with VERSION", why_skip)
    else:
        tap.check("second INIT answered with VERSION 3, still serving",
                  r is not None and r.type == FXP_VERSION and
                  r.version == 3 and alive, "got %r, probe %r" % (r, probe))
    rc = srv.finish()
    tap.check("second INIT: no death by signal (exit %r)" % rc,
              rc != "timeout" and rc >= 0)

    # INIT with an older version number still gets VERSION 3.
    srv = Server(server_argv(path), cwd=root)
    v = srv.init(version=2)
    tap.check("INIT 2 answered VERSION 3", v.version == 3,
              "got %d" % v.version)
    srv.finish()

    # Lost framing: a length far beyond the limit ends the session with
    # status 11, as stock does.  Both are checked.
    for label, hdr in (("1 MiB", struct.pack(">I", 1 << 20)),
                       ("2 GiB", struct.pack(">I", 0x7fffffff)),
                       ("4 GiB - 1", struct.pack(">I", 0xffffffff))):
        srv = Server(server_argv(path), cwd=root,
                     stderr_path=os.path.join(base, "oversize.err"))
        srv.init()
        try:
            srv.send_raw(hdr + bytes([FXP_WRITE]) + b"\0" * 64)
        except ServerGone:
            pass
        rc = srv.wait_exit(5)
        if rc is None:
            rc = srv.finish()
        else:
            srv.finish()
        tap.check("oversized packet (%s) ends the session with status 11 "
                  "(got %r)" % (label, rc), rc == 11)

    # Lost framing mid-packet: EOF in the middle of a packet.
    srv = Server(server_argv(path), cwd=root)
    srv.init()
    srv.send_raw(struct.pack(">I", 100) + bytes([FXP_STAT]) + b"\0\0")
    rc = srv.finish()
    tap.check("EOF inside a packet: clean exit, not a signal (exit %r)" % rc,
              rc != "timeout" and rc >= 0)


# -------------------------------------------------------------- logs

COMMIT_RE = (r'commit "%s" bytes %d seconds [0-9]+(\.[0-9]+)? '
             r'method (tmpfile|named|direct)( sha256 [0-9a-f]{64})?$')
ABORT_RE = (r'abort "%s" bytes %d seconds [0-9]+(\.[0-9]+)? '
            r'method (tmpfile|named|direct) reason "[^"]+"$')


def log_lines(path):
    with open(path, "rb") as f:
        return [l.decode("utf-8", "replace").rstrip("\n")
                for l in f.read().splitlines()]


def find_line(lines, pattern):
    rx = re.compile(pattern)
    for l in lines:
        # syslog-style prefixes may precede the message on stderr
        if rx.search(l):
            return l
    return None


def run_logs(tap, base):
    path = ours_path()
    root = os.path.realpath(os.path.join(base, "logs"))
    make_tree(root)
    if is_stock(path):
        tap.skip("commit/abort log lines", "stock has none")
        return
    err = os.path.join(base, "logs.err")
    srv = Server(server_argv(path, ["-l", "INFO"]), cwd=root,
                 stderr_path=err)
    srv.init()
    r = srv.upload("c1", b"c" * 1000)
    tap.check("upload c1 closed OK", r.code == FX_OK, r)
    r = srv.upload("existing", b"e" * 300)
    tap.check("replace existing closed OK", r.code == FX_OK, r)
    h = srv.open("c2", FXF_WRITE | FXF_CREAT | FXF_TRUNC).handle
    srv.write(h, 0, b"a" * 500)
    rc = srv.finish()
    tap.check("EOF with an open upload: exit 0 (got %r)" % rc, rc == 0)
    lines = log_lines(err)
    # Paths are logged as the client sent them (stock does the same).
    for desc, pat in (
            ("open line", r'open "c1" flags WRITE,CREATE,TRUNCATE mode 0666$'),
            ("close line", r'close "c1" bytes read 0 written 1000$'),
            ("commit line for a new file", COMMIT_RE % ("c1", 1000)),
            ("commit line for a replaced file", COMMIT_RE % ("existing", 300)),
            ("forced close line",
             r'forced close "c2" bytes read 0 written 500$'),
            ("abort line for the unclosed upload", ABORT_RE % ("c2", 500)),
            ("session closed line", r'session closed for local user \S+ '
             r'from \[UNKNOWN\]$')):
        l = find_line(lines, pat)
        tap.check("log: %s" % desc, l is not None,
                  "no line matching %s in:\n%s" % (pat, "\n".join(lines)))
    # The commit comes after the close line, the abort after the forced
    # close: a reader of the log learns the outcome of each transfer.
    def index(pat):
        rx = re.compile(pat)
        return next((i for i, l in enumerate(lines) if rx.search(l)), -1)
    tap.check("log: commit follows its close line",
              index(r'close "c1"') < index(r'commit "c1"'))
    tap.check("log: abort follows its forced close line",
              index(r'forced close "c2"') < index(r'abort "c2"'))
    tap.check("unclosed upload not published",
              not os.path.exists(os.path.join(root, "c2")))
    l = find_line(lines, ABORT_RE % ("c2", 500))
    if l:
        tap.note("abort line: " + l)


# ------------------------------------------------------------ atomic

def listing(d):
    return sorted(os.listdir(d))


def published(d):
    """The names in d but the stores of kept partial uploads (uploads
    whose connection was lost are resumable, DESIGN.md 12), after
    checking that those hold nothing but data and records."""
    names = []
    for n in os.listdir(d):
        if not n.startswith(".au-partial-"):
            names.append(n)
            continue
        for e in os.listdir(os.path.join(d, n)):
            if not (e.startswith("d.") or e.startswith("r.")):
                names.append(n + "/" + e)      # debris: shows in the diff
    return sorted(names)


def run_atomic(tap, base):
    """Checks that only an atomic server passes (stock must fail)."""
    path = ours_path()
    root = os.path.realpath(os.path.join(base, "atomic"))
    make_tree(root)
    before = listing(root)
    a = Server(server_argv(path), cwd=root,
               stderr_path=os.path.join(base, "atomic.err"))
    b = Server(server_argv(path), cwd=root,
               stderr_path=os.path.join(base, "atomic.err"))
    a.init()
    b.init()

    # 1. A new file is invisible to other sessions until CLOSE; its own
    #    session sees it (DESIGN.md 11).
    h = a.open("fresh", FXF_WRITE | FXF_CREAT | FXF_TRUNC).handle
    a.write(h, 0, b"f" * 100000)
    r = b.stat("fresh")
    tap.check("new file in flight: other session's stat says NO_SUCH_FILE",
              r.type == FXP_STATUS and r.code == FX_NO_SUCH_FILE,
              "got %r" % (r,))
    r = a.stat("fresh")
    tap.check("new file in flight: own session's stat shows it",
              r.type == FXP_ATTRS and r.attrs.get("size") == 100000,
              "got %r" % (r,))
    r = b.open("fresh", FXF_READ)
    tap.check("new file in flight: other session cannot open it",
              r.type == FXP_STATUS and r.code == FX_NO_SUCH_FILE,
              "got %r" % (r,))
    _, ents, _ = b.readdir_all(".")
    tap.check("new file in flight: not listed by READDIR",
              b"fresh" not in [e[0] for e in ents])
    tap.check("new file in flight: no new name in the directory",
              listing(root) == before, "got %r" % listing(root))
    r = a.close(h)
    tap.check("close publishes", r.code == FX_OK and
              os.path.getsize(os.path.join(root, "fresh")) == 100000)

    # 2. Replacing: the old content stays visible until CLOSE.
    h = a.open("existing", FXF_WRITE | FXF_CREAT | FXF_TRUNC).handle
    a.write(h, 0, b"N" * 5000)
    r = b.stat("existing")
    tap.check("replace in flight: other session sees the old size",
              r.type == FXP_ATTRS and r.attrs.get("size") == 14,
              "got %r %r" % (r, r.attrs))
    tap.check("replace in flight: old content on disk",
              open(os.path.join(root, "existing"), "rb").read() ==
              b"existing data\n")
    a.close(h)
    tap.check("replace: new content after close",
              open(os.path.join(root, "existing"), "rb").read() ==
              b"N" * 5000)

    # 3. Resume (write without TRUNC) is atomic too.
    h = a.open("existing", FXF_WRITE).handle
    a.write(h, 5000, b"M" * 100)
    r = b.stat("existing")
    tap.check("resume in flight: other session sees the old size",
              r.type == FXP_ATTRS and r.attrs.get("size") == 5000,
              "got %r" % (r.attrs,))
    a.close(h)
    tap.check("resume: appended after close",
              open(os.path.join(root, "existing"), "rb").read() ==
              b"N" * 5000 + b"M" * 100)

    # 4. Declared size (SIZE in OPEN attrs) not reached: nothing published.
    h = a.open("declared", FXF_WRITE | FXF_CREAT | FXF_TRUNC,
               {"size": 1000}).handle
    a.write(h, 0, b"d" * 400)
    r = a.close(h)
    tap.check("declared size 1000, 400 written: close fails",
              r.type == FXP_STATUS and r.code != FX_OK, "got %r" % (r,))
    tap.check("declared size not reached: nothing published",
              not os.path.exists(os.path.join(root, "declared")))
    h = a.open("declared2", FXF_WRITE | FXF_CREAT | FXF_TRUNC,
               {"size": 1000}).handle
    a.write(h, 0, b"d" * 1000)
    r = a.close(h)
    tap.check("declared size reached: close OK, published",
              r.code == FX_OK and
              os.path.getsize(os.path.join(root, "declared2")) == 1000)

    # 5. EXCL: a name created by someone else meanwhile is not clobbered.
    h = a.open("excl", FXF_WRITE | FXF_CREAT | FXF_EXCL).handle
    a.write(h, 0, b"sftp")
    try:
        fd = os.open(os.path.join(root, "excl"),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, b"other program")
        os.close(fd)
        created = True
    except FileExistsError:
        created = False
    tap.check("excl in flight: another program can still create the name",
              created)
    r = a.close(h)
    tap.check("excl: close fails when the name appeared meanwhile",
              r.type == FXP_STATUS and r.code != FX_OK, "got %r" % (r,))
    tap.check("excl: the other program's file is intact",
              created and open(os.path.join(root, "excl"), "rb").read() ==
              b"other program")

    # 6. Two sessions upload one name, interleaved: one whole upload wins.
    ha = a.open("race", FXF_WRITE | FXF_CREAT | FXF_TRUNC).handle
    a.write(ha, 0, b"A" * 65536)
    hb = b.open("race", FXF_WRITE | FXF_CREAT | FXF_TRUNC).handle
    b.write(hb, 0, b"B" * 32768)
    a.write(ha, 65536, b"A" * 65536)
    a.close(ha)
    b.close(hb)
    got = open(os.path.join(root, "race"), "rb").read()
    tap.check("concurrent uploads: result is exactly one of them",
              got in (b"A" * 131072, b"B" * 32768),
              "got %d bytes, starting %r" % (len(got), got[:8]))

    # 7. Session ends without CLOSE: nothing published, old content kept.
    h = a.open("existing", FXF_WRITE | FXF_TRUNC).handle
    a.write(h, 0, b"Z" * 7000)
    hn = a.open("vanish", FXF_WRITE | FXF_CREAT | FXF_TRUNC).handle
    a.write(hn, 0, b"V" * 7000)
    a.finish()
    tap.check("EOF without CLOSE: old content kept",
              open(os.path.join(root, "existing"), "rb").read() ==
              b"N" * 5000 + b"M" * 100)
    tap.check("EOF without CLOSE: new name not published",
              not os.path.exists(os.path.join(root, "vanish")))

    # 8. Server terminated (SIGTERM) mid-upload: same.
    c = Server(server_argv(path), cwd=root)
    c.init()
    h = c.open("existing", FXF_WRITE | FXF_TRUNC).handle
    c.write(h, 0, b"T" * 3000)
    h2 = c.open("termed", FXF_WRITE | FXF_CREAT | FXF_TRUNC).handle
    c.write(h2, 0, b"T" * 3000)
    c.proc.send_signal(signal.SIGTERM)
    c.wait_exit(5)
    c.finish()
    tap.check("SIGTERM mid-upload: old content kept",
              open(os.path.join(root, "existing"), "rb").read() ==
              b"N" * 5000 + b"M" * 100)
    tap.check("SIGTERM mid-upload: new name not published",
              not os.path.exists(os.path.join(root, "termed")))
    b.finish()
    want = sorted(before + ["fresh", "declared2", "excl", "race"])
    tap.check("no debris: directory holds exactly the published names "
              "(and kept partial uploads)",
              published(root) == want,
              "got %r\nwant %r" % (published(root), want))


def main(argv):
    if len(argv) != 3 or argv[1] not in ("conformance", "malformed", "logs",
                                         "atomic"):
        sys.stderr.write("usage: sftp_raw.py conformance|malformed|logs|"
                         "atomic DIR\n")
        return 2
    tap = Tap()
    base = os.path.abspath(argv[2])
    os.makedirs(base, exist_ok=True)
    fn = {"conformance": run_conformance, "malformed": run_malformed,
          "logs": run_logs, "atomic": run_atomic}[argv[1]]
    try:
        fn(tap, base)
    except Exception as e:        # a crash of the test is a failure
        import traceback
        tap.notok("%s did not complete" % argv[1], traceback.format_exc())
    return 1 if tap.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
