#!/usr/bin/python3
"""The cases of regress/t-security.sh (issue 11): an upload is allowed, and
its result owned and permitted, exactly as with the stock programs.

Usage (t-security.sh runs it as root inside a private mount namespace,
"unshare -m --propagation private", with Debian's fs.protected_* sysctls):

    security_cases.py WORKDIR

Environment: SFTP_SERVER, SCP (the programs under test, "ours"),
STOCK_SFTP_SERVER, STOCK_SCP (OpenSSH's), TEST_USER (autest), OTHER_USER
(auother, the other local user / attacker), TEAM_GROUP (auteam, a group
TEST_USER is in), FAULTSHIM_SO (regress/helpers/faultshim.so, optional),
SECURITY_CASES (optional: "1 2 14 x" runs only those case numbers).

Every side-by-side case builds the same fixture twice, from scratch, and
runs it once with the stock program and once with ours (SFTP over pipes
with regress/sftp_raw.py, and the scp -t sink protocol); the OUTCOME must
be equal:
    the status of each request (SFTP status / scp ack codes, exit status),
    and for each file that matters: content (a hole-blind digest),
    size, owner, group, mode with set-id bits, POSIX ACL, user.* and
    security.* xattrs, chattr flags, space used (<1MiB or MiB), whether
    the inode is the one that was there before, link count, and the
    names in the directory (no debris).
The only accepted differences are the ones atomicity needs, named in each
case's description ("accepted: ..."):
    - the inode changes when a file is replaced or modified (ours
      publishes a new file by rename);
    - a hard link to a replaced file keeps the old content;
    - case 4: a modification whose staged copy cannot fit may be refused
      with SSH_FX_FAILURE, the file left byte-identical, no debris;
    - case 7: ours publishes the upload at the name at CLOSE, where stock
      wrote into the inode it opened (which was renamed over); the
      metadata of the file that holds the uploaded data must be equal.
The cases marked "ours only" (6, 8, 13, x) check staging properties stock
does not have; they SKIP when the program under test is stock.

TAP lines "ok - t-security: ..." / "not ok - t-security: ..." on stdout;
a mismatch prints both outcomes in "#" lines, then ours' log.
"""
import errno
import fcntl
import fnmatch
import grp
import hashlib
import os
import pwd
import re
import select
import shutil
import stat as statmod
import struct
import subprocess
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sftp_raw import (Server, Tap,  # noqa: E402
                      FXF_READ, FXF_WRITE, FXF_APPEND, FXF_CREAT, FXF_TRUNC,
                      FXP_HANDLE, FXP_DATA)

E = os.environ
OURS_SFTP = E.get("SFTP_SERVER", "")
OURS_SCP = E.get("SCP", "")
STOCK_SFTP = E.get("STOCK_SFTP_SERVER", "/usr/lib/openssh/sftp-server")
STOCK_SCP = E.get("STOCK_SCP", "/usr/bin/scp")
USER = E.get("TEST_USER", "autest")
OTHER = E.get("OTHER_USER", "auother")
TEAM = E.get("TEAM_GROUP", "auteam")
SHIM = E.get("FAULTSHIM_SO", "")
ONLY = E.get("SECURITY_CASES", "").replace(",", " ").split()

WCT = FXF_WRITE | FXF_CREAT | FXF_TRUNC
# Our private directories (".au-" + 16) and older named temporaries
# ("." + a name prefix + ".au-" + 16).
TEMP_RE = re.compile(r"^\.(.*\.)?au-[A-Za-z0-9]{16}$")
MiB = 1 << 20
START = time.time()

tap = Tap()


def same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a == b


SFTP_IS_STOCK = same_file(OURS_SFTP, STOCK_SFTP)
SCP_IS_STOCK = same_file(OURS_SCP, STOCK_SCP)


# ------------------------------------------------------------ accounts

def uid(name):
    return pwd.getpwnam(name).pw_uid


def gid(name):
    return grp.getgrnam(name).gr_gid


def pgid(user):
    return pwd.getpwnam(user).pw_gid


def uname(u):
    try:
        return pwd.getpwuid(u).pw_name
    except KeyError:
        return str(u)


def gname(g):
    try:
        return grp.getgrgid(g).gr_name
    except KeyError:
        return str(g)


def priv(user):
    """argv prefix that runs a command as user (with its groups)."""
    if user == "root":
        return []
    return ["setpriv", "--reuid=" + user, "--regid=" + user,
            "--init-groups", "--"]


def base_env(user):
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C",
           "HOME": pwd.getpwnam(user).pw_dir, "USER": user,
           "LOGNAME": user}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if k in E:
            env[k] = E[k]
    return env


def run_as(user, argv, check=True):
    r = subprocess.run(priv(user) + argv, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=base_env(user))
    if check and r.returncode != 0:
        raise RuntimeError("%s as %s: %s" % (argv, user, r.stderr.decode()))
    return r


def as_user_rename(user, old, new):
    run_as(user, ["/usr/bin/python3", "-c",
                  "import os,sys; os.rename(sys.argv[1], sys.argv[2])",
                  old, new])


# ------------------------------------------------------------ fixtures

def mkdir(path, owner="root", group=None, mode=0o755):
    os.mkdir(path)
    os.chown(path, uid(owner), gid(group) if group else pgid(owner))
    os.chmod(path, mode)
    return path


def mkfile(path, data, owner="root", group=None, mode=0o644, acl=None,
           xattrs=None):
    with open(path, "wb") as f:
        f.write(data)
    os.chown(path, uid(owner), gid(group) if group else pgid(owner))
    os.chmod(path, mode)		# after chown, which clears set-id bits
    if acl:
        subprocess.run(["setfacl", "-m", acl, path], check=True)
    for k, v in (xattrs or {}).items():
        os.setxattr(path, k, v)
    return path


def symlink(target, path, owner):
    os.symlink(target, path)
    os.lchown(path, uid(owner), pgid(owner))
    return path


def sparse(path, size, owner, mode=0o644):
    with open(path, "wb") as f:
        f.truncate(size)
    os.chown(path, uid(owner), pgid(owner))
    os.chmod(path, mode)
    return path


def chattr(flags, path):
    subprocess.run(["chattr", flags, path], check=True)


# ------------------------------------------------------------ observing

BS = MiB
ZERO = bytes(BS)
CONTENT = {}		# digest -> label, for readable outcomes


def digest_bytes(data):
    h = hashlib.sha256()
    for pos in range(0, len(data), BS):
        blk = data[pos:pos + BS]
        if blk != ZERO[:len(blk)]:
            h.update(struct.pack("<Q", pos // BS))
            h.update(hashlib.sha256(blk).digest())
    h.update(struct.pack("<Q", len(data)))
    return h.hexdigest()


def digest_file(path):
    """The digest_bytes() of a file's content, reading only its data
    extents (a 64 GiB sparse file costs nothing); holes and written
    zeros give the same digest."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        size = os.fstat(fd).st_size
        pos = 0
        while pos < size:
            try:
                d = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:
                    break
                raise
            pos = d - d % BS
            end = min(size, os.lseek(fd, d, os.SEEK_HOLE))
            while pos < end:
                blk = os.pread(fd, BS, pos)
                if not blk:
                    break
                if blk != ZERO[:len(blk)]:
                    h.update(struct.pack("<Q", pos // BS))
                    h.update(hashlib.sha256(blk).digest())
                pos += BS
    finally:
        os.close(fd)
    h.update(struct.pack("<Q", size))
    return h.hexdigest()


def label(name, data):
    CONTENT[digest_bytes(data)] = name
    return data


def label_sparse(name, size, patches):
    """Label the content of a file of `size` bytes, zero except for
    `patches` {offset: bytes}, without building it in memory."""
    blocks = {}
    for off, b in patches.items():
        i = off // BS
        blk = bytearray(blocks.get(i, bytes(min(BS, size - i * BS))))
        blk[off % BS:off % BS + len(b)] = b
        blocks[i] = bytes(blk)
    h = hashlib.sha256()
    for i in sorted(blocks):
        if blocks[i] != ZERO[:len(blocks[i])]:
            h.update(struct.pack("<Q", i))
            h.update(hashlib.sha256(blocks[i]).digest())
    h.update(struct.pack("<Q", size))
    CONTENT[h.hexdigest()] = name


ACL_TAG = {1: "user", 2: "user", 4: "group", 8: "group", 0x10: "mask",
           0x20: "other"}


def rwx(p):
    return ("r" if p & 4 else "-") + ("w" if p & 2 else "-") + \
        ("x" if p & 1 else "-")


def acl_text(path, name="system.posix_acl_access"):
    try:
        b = os.getxattr(path, name, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return "-"
        raise
    out = []
    for off in range(4, len(b) - 7, 8):
        tag, perm, qid = struct.unpack_from("<HHI", b, off)
        q = uname(qid) if tag == 2 else gname(qid) if tag == 8 else ""
        out.append("%s:%s:%s" % (ACL_TAG.get(tag, tag), q, rwx(perm)))
    return ",".join(out)


def xattr_text(path):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return "?"
    out = []
    for n in sorted(names):
        if n.startswith("user.") or n.startswith("security."):
            v = os.getxattr(path, n, follow_symlinks=False)
            out.append("%s=%s" % (n, v.decode("utf-8", "replace")))
    return ",".join(out) or "-"


def flags_text(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return "?"
    try:
        buf = fcntl.ioctl(fd, 0x80086601, b"\0" * 8)	# FS_IOC_GETFLAGS
        v = struct.unpack("<i", buf[:4])[0]
    except OSError:
        return "?"
    finally:
        os.close(fd)
    return ("a" if v & 0x20 else "") + ("i" if v & 0x10 else "") or "-"


def space(nbytes):
    return "<1MiB" if nbytes < MiB else "%dMiB" % round(nbytes / MiB)


def mtime_class(t):
    return "now" if abs(t - time.time()) < 600 else "%d" % t


def state(path, ino=None, flags=False, times=False):
    """What a reader sees at path, as a dict of strings."""
    try:
        s = os.lstat(path)
    except FileNotFoundError:
        return {"exists": "no"}
    d = {}
    if statmod.S_ISLNK(s.st_mode):
        d["type"] = "symlink->" + os.readlink(path)
        d["owner"] = uname(s.st_uid)
        return d
    if statmod.S_ISREG(s.st_mode):
        dg = digest_file(path)
        d["content"] = CONTENT.get(dg, dg[:12])
        d["size"] = str(s.st_size)
    else:
        d["type"] = "dir" if statmod.S_ISDIR(s.st_mode) else \
            "fifo" if statmod.S_ISFIFO(s.st_mode) else "other"
    d["owner"] = uname(s.st_uid)
    d["group"] = gname(s.st_gid)
    d["mode"] = "%04o" % statmod.S_IMODE(s.st_mode)
    d["acl"] = acl_text(path)
    d["xattr"] = xattr_text(path)
    d["space"] = space(s.st_blocks * 512)
    d["nlink"] = str(s.st_nlink)
    if ino is not None:
        d["inode"] = "same" if s.st_ino == ino else "new"
    if flags:
        d["flags"] = flags_text(path)
    if times:
        d["mtime"] = mtime_class(s.st_mtime)
    return d


def put(out, prefix, st):
    for k, v in st.items():
        out[prefix + "." + k] = v


def ino(path):
    return os.lstat(path).st_ino


def ls(path):
    try:
        return " ".join(sorted(os.listdir(path))) or "(empty)"
    except OSError as e:
        return "error " + errno.errorcode.get(e.errno, str(e.errno))


def fs_used(path):
    v = os.statvfs(path)
    return (v.f_blocks - v.f_bfree) * v.f_frsize


def temps(path):
    try:
        return sorted(n for n in os.listdir(path) if TEMP_RE.match(n))
    except OSError:
        return []


# ------------------------------------------------------------ inotify

try:
    import ctypes
    _libc = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _libc = None

IN_NAMES = {0x1: "ACCESS", 0x2: "MODIFY", 0x4: "ATTRIB",
            0x8: "CLOSE_WRITE", 0x10: "CLOSE_NOWRITE", 0x20: "OPEN",
            0x40: "MOVED_FROM", 0x80: "MOVED_TO", 0x100: "CREATE",
            0x200: "DELETE", 0x400: "DELETE_SELF", 0x800: "MOVE_SELF"}


class Inotify:
    """Every event on one directory (names of its entries)."""

    def __init__(self, path):
        self.fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if _libc.inotify_add_watch(self.fd, os.fsencode(path), 0xfff) < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch " + path)
        self.got = []

    def poll(self):
        while True:
            try:
                b = os.read(self.fd, 65536)
            except BlockingIOError:
                return self.got
            off = 0
            while off + 16 <= len(b):
                _, mask, _, n = struct.unpack_from("iIII", b, off)
                name = b[off + 16:off + 16 + n].rstrip(b"\0")
                off += 16 + n
                what = "|".join(v for k, v in IN_NAMES.items() if mask & k)
                self.got.append((what, os.fsdecode(name)))

    def close(self):
        self.poll()
        os.close(self.fd)
        return self.got


def fds_below(pid, d):
    """The files below directory d that process pid holds open."""
    out = []
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if t.startswith(d + "/"):
                out.append(t[len(d) + 1:])
    except OSError:
        pass
    return out


# ------------------------------------------------------------ programs

class Scp:
    """One scp -t sink on a pair of pipes."""

    def __init__(self, argv, cwd, env, stderr_path):
        self._err = open(stderr_path, "ab")
        old = os.umask(0o022)
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE,
                                         stderr=self._err, cwd=cwd, env=env)
        finally:
            os.umask(old)
        self.pid = self.proc.pid
        self.buf = b""
        self.msgs = []

    def _byte(self, deadline):
        fd = self.proc.stdout.fileno()
        while not self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return b""
            self.buf += chunk
        c, self.buf = self.buf[:1], self.buf[1:]
        return c

    def ack(self, timeout=20.0):
        """OK, ERR (\\1 message), FATAL (\\2 message), EOF or TIMEOUT."""
        deadline = time.monotonic() + timeout
        c = self._byte(deadline)
        if c is None:
            return "TIMEOUT"
        if c == b"":
            return "EOF"
        if c == b"\0":
            return "OK"
        line = b""
        while True:
            x = self._byte(deadline)
            if not x or x == b"\n":
                break
            line += x
        self.msgs.append(line.decode("utf-8", "replace"))
        return {b"\1": "ERR", b"\2": "FATAL"}.get(c, "BYTE%d" % c[0])

    def send(self, data):
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, ValueError):
            return False

    def alive(self):
        return self.proc.poll() is None

    def finish(self, timeout=20.0):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "timeout"
        finally:
            self._err.close()


class Side:
    """One of the two runs of a case: the stock programs or ours."""

    def __init__(self, name, cid):
        self.name = name
        self.cid = cid
        self.ours = name == "ours"
        self.sftp_path = OURS_SFTP if self.ours else STOCK_SFTP
        self.scp_path = OURS_SCP if self.ours else STOCK_SCP
        # Options and environment only ours understands (-t, ...); not
        # given when "ours" is in fact the stock program.
        self.sftp_real = self.ours and not SFTP_IS_STOCK
        self.scp_real = self.ours and not SCP_IS_STOCK
        self.procs = []
        self.logs = []

    def _log(self, what):
        p = os.path.join(LOGS, "%s.%s.%d.%s.err" % (self.cid, self.name,
                                                    len(self.logs), what))
        self.logs.append(p)
        return p

    def _env(self, user, real, ours_env, named, shim_rules=()):
        env = base_env(user)
        if real:
            env["ATOMIC_UPLOAD_LOG"] = "stderr"
            env.update(ours_env or {})
            if named:
                # Named temporaries instead of O_TMPFILE: the switch
                # ATOMIC_UPLOAD_TMPFILE=no, and where faultshim.so is
                # built, O_TMPFILE refused (so a build that ignores the
                # switch makes named temporaries too).
                env["ATOMIC_UPLOAD_TMPFILE"] = "no"
                rules = ["open*:EOPNOTSUPP:tmpfile"] + list(shim_rules)
                if SHIM:
                    env["LD_PRELOAD"] = SHIM
                    env["FAULTSHIM"] = ",".join(rules)
        return env

    def sftp(self, user, cwd="/", ours_args=(), ours_env=None, named=False,
             shim_rules=()):
        argv = priv(user) + [self.sftp_path, "-e", "-l", "INFO"]
        if self.sftp_real:
            argv += list(ours_args)
        srv = Server(argv, cwd=cwd,
                     env=self._env(user, self.sftp_real, ours_env, named,
                                   shim_rules),
                     stderr_path=self._log("sftp"))
        self.procs.append(srv)
        srv.init()
        return srv

    def scp(self, user, args, cwd="/", ours_env=None, named=False,
            shim_rules=()):
        argv = priv(user) + [self.scp_path] + list(args)
        p = Scp(argv, cwd, self._env(user, self.scp_real, ours_env, named,
                                     shim_rules), self._log("scp"))
        self.procs.append(p)
        return p

    def log_text(self):
        out = []
        for p in self.logs:
            try:
                with open(p, errors="replace") as f:
                    out += [l.rstrip("\n") for l in f]
            except OSError:
                pass
        return out

    def cleanup(self):
        for p in self.procs:
            if p.proc.poll() is None:
                p.proc.kill()		# by PID, the one we started
            try:
                p.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
            for f in (p.proc.stdin, p.proc.stdout):
                try:
                    f.close()
                except (OSError, ValueError, AttributeError):
                    pass


def st_name(r):
    return r.status() if r is not None else "NO_REPLY"


def sftp_do(S, user, path, data=None, flags=WCT, attrs=None, cwd="/",
            offset=0, ours_args=(), ours_env=None, named=False, read=False,
            fsetstat=None):
    """One OPEN [READ] [FSETSTAT] [WRITE] CLOSE; the statuses."""
    out = {}
    srv = S.sftp(user, cwd, ours_args, ours_env, named)
    r = srv.open(path, flags, attrs)
    out["open"] = st_name(r)
    if r.type == FXP_HANDLE:
        if read:
            d = srv.read(r.handle, 0, 4096)
            out["read"] = "DATA" if d.type == FXP_DATA else st_name(d)
        if fsetstat is not None:
            out["fsetstat"] = st_name(srv.fsetstat(r.handle, fsetstat))
        if data is not None:
            w = None
            for off in range(0, len(data), 32768):
                w = srv.write(r.handle, offset + off, data[off:off + 32768])
                if w.status() != "OK":
                    break
            out["write"] = st_name(w)
        out["close"] = st_name(srv.close(r.handle))
    srv.finish()
    return out


def scp_do(S, user, target, name, data, mode="0644", args=("-t",), T=None,
           cwd="/", ours_env=None, named=False, between=None):
    """One file through scp -t: optional T record, C record, data, \\0.
    between(): called after half of the data is sent."""
    p = S.scp(user, list(args) + [target], cwd, ours_env, named)
    acks = []
    a = p.ack()
    acks.append("start:" + a)
    if a == "OK" and T is not None:
        p.send(T)
        a = p.ack()
        acks.append("T:" + a)
    if a == "OK":
        p.send(("C%s %d %s\n" % (mode, len(data), name)).encode())
        a = p.ack()
        acks.append("C:" + a)
        if a == "OK":
            half = len(data) // 2
            p.send(data[:half])
            if between:
                time.sleep(0.2)
                between()
            p.send(data[half:] + b"\0")
            acks.append("end:" + p.ack())
    rc = p.finish()
    return {"scp": " ".join(acks), "rc": str(rc), "_msgs": " | ".join(p.msgs)}


# ------------------------------------------------------------ filesystems

MOUNTS = []


def mount(fstype, opts, target, source=None):
    r = subprocess.run(["mount", "-t", fstype, "-o", opts,
                        source or fstype, target],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise RuntimeError("mount %s %s: %s" % (fstype, target,
                                                r.stderr.decode().strip()))
    MOUNTS.append(target)


def umount(target):
    r = subprocess.run(["umount", target], stderr=subprocess.DEVNULL)
    if r.returncode != 0:
        subprocess.run(["umount", "-l", target], stderr=subprocess.DEVNULL)
    if target in MOUNTS:
        MOUNTS.remove(target)


def new_root(cid, side, fs):
    """A fresh empty directory for one run: on the ext4 image, or a
    tmpfs of its own ("tmpfs:OPTIONS")."""
    if fs == "ext4":
        parent = os.path.join(EXT, cid)
        os.makedirs(parent, exist_ok=True)
        os.chmod(parent, 0o755)
        r = os.path.join(parent, side)
        shutil.rmtree(r, ignore_errors=True)
        os.mkdir(r)
        os.chmod(r, 0o755)
        return r
    opts = fs.split(":", 1)[1] if ":" in fs else "size=64m"
    parent = os.path.join(TMPBASE, cid)
    os.makedirs(parent, exist_ok=True)
    os.chmod(parent, 0o755)
    r = os.path.join(parent, side)
    os.makedirs(r, exist_ok=True)
    mount("tmpfs", "mode=0755," + opts, r)
    return r


def release_root(r, fs):
    if fs != "ext4":
        umount(r)


# ------------------------------------------------------------ comparing

def keys_of(a, b):
    out = list(a)
    out += [k for k in b if k not in a]
    return out


def informational(k):
    return k.startswith("_") or "._" in k


def show(o):
    """One outcome on a line: statuses first, then each file."""
    top = ["%s=%s" % (k, v) for k, v in o.items()
           if "." not in k and not k.startswith("_")]
    groups = {}
    for k, v in o.items():
        if "." in k and not informational(k):
            p, f = k.split(".", 1)
            groups.setdefault(p, []).append("%s=%s" % (f, v))
    top += ["%s=[%s]" % (p, " ".join(v)) for p, v in groups.items()]
    top += ["%s=%s" % (k, v) for k, v in o.items()
            if k.startswith("_") and v]
    return " ".join(top)


def summary(o):
    s = ["%s=%s" % (k, v) for k, v in o.items()
         if "." not in k and not k.startswith("_")]
    return " ".join(s)


def ignored(k, ignore):
    return any(fnmatch.fnmatchcase(k, p) for p in ignore)


def compare(desc, outs, sides, ignore=(), accepted=None, alt=None):
    """ok when ours' outcome equals stock's outside `ignore` (the
    accepted differences, named in `accepted`); `alt(stock, ours)` may
    return a reason to accept another outcome."""
    so, oo = outs["stock"], outs["ours"]
    diffs = [k for k in keys_of(so, oo)
             if not informational(k) and not ignored(k, ignore) and
             so.get(k) != oo.get(k)]
    used = [k for k in keys_of(so, oo)
            if not informational(k) and ignored(k, ignore) and
            so.get(k) != oo.get(k)]
    acc = "; accepted: %s" % accepted if accepted and used else ""
    if not diffs:
        tap.ok("%s: same as stock (%s)%s" % (desc, summary(so), acc))
        return True
    if alt:
        why = alt(so, oo)
        if why:
            tap.ok("%s: accepted difference: %s (stock: %s; ours: %s)" %
                   (desc, why, summary(so), summary(oo)))
            return True
    lines = ["differs: " + "; ".join("%s: stock=%s ours=%s" %
                                     (k, so.get(k, "(none)"),
                                      oo.get(k, "(none)")) for k in diffs),
             "stock: " + show(so), "ours:  " + show(oo)]
    log = sides["ours"].log_text()
    if log:
        lines.append("ours' log (last lines):")
        lines += ["  " + l for l in log[-6:]]
    tap.notok("%s: differs from stock in %s%s" % (desc, ", ".join(diffs),
                                                   acc), "\n".join(lines))
    return False


def sbs(cid, desc, run, fs="ext4", ignore=(), accepted=None, alt=None):
    """Side by side: run(S, R) builds the fixture in the empty directory
    R (identically on both sides) and returns the outcome."""
    outs, sides = {}, {}
    for name in ("stock", "ours"):
        S = Side(name, cid)
        sides[name] = S
        R = None
        try:
            R = new_root(cid, name, fs)
            outs[name] = run(S, R)
        except Exception as e:
            outs[name] = {"error": "%s: %s" % (type(e).__name__, e),
                          "_trace": traceback.format_exc().strip()
                          .splitlines()[-3:]}
        finally:
            S.cleanup()
            if R is not None:
                try:
                    release_root(R, fs)
                except Exception:
                    pass
    return compare(desc, outs, sides, ignore, accepted, alt)


def ours_only(cid, desc, run, fs="ext4", sftp=True, always=False):
    """run(S, R) -> list of (desc, ok, why) checks, of the program under
    test only; SKIPped when that is stock, unless `always`."""
    if not always and ((sftp and SFTP_IS_STOCK) or
                       (not sftp and SCP_IS_STOCK)):
        tap.skip("%s" % desc, "ours only: the program under test is stock")
        return
    S = Side("ours", cid)
    R = None
    try:
        R = new_root(cid, "ours", fs)
        checks = run(S, R)
    except Exception:
        checks = [("completes", False, traceback.format_exc())]
    finally:
        S.cleanup()
        if R is not None:
            try:
                release_root(R, fs)
            except Exception:
                pass
    log = S.log_text()
    for d, good, why in checks:
        if not good and log:
            why = (str(why or "") + "\nours' log (last lines):\n" +
                   "\n".join("  " + l for l in log[-8:]))
        tap.check("%s: %s" % (desc, d), good, why)


def want(n):
    return not ONLY or str(n) in ONLY


# ====================================================================
# The cases.  Contents get labels so that outcomes read as words.

OLD = label("old", b"old content, before the upload\n" * 8)
NEW = label("upload", b"uploaded content\n" * 200)
VICTIM = label("victim", b"the victim's content\n")
THEIRS = label("theirs", b"the other user's file\n")
ROOTDATA = label("rootdata", b"root's secret upload\n" * 300)
MINE = label("mine", b"auother's swapped-in file\n")
REPLACE_NOTE = "inode changes on replace (atomicity)"
HARDLINK_NOTE = "a hard link keeps the old content (atomicity)"


# 1. Destination symlinks: protected_symlinks and nosymfollow.
def case1():
    for user, vowner in (("root", "root"), (USER, USER), ("root", USER)):
        for via in ("sftp", "scp"):
            def run(S, R, user=user, vowner=vowner, via=via):
                stk = mkdir(R + "/stk", "root", "root", 0o1777)
                mkdir(R + "/priv", "root", "root", 0o755)
                v = mkfile(R + "/priv/victim", VICTIM, vowner, mode=0o644)
                symlink("../priv/victim", stk + "/link", OTHER)
                before = ino(v)
                if via == "sftp":
                    out = sftp_do(S, user, stk + "/link", NEW)
                else:
                    out = scp_do(S, user, stk, "link", NEW)
                put(out, "victim", state(v, before))
                put(out, "link", state(stk + "/link"))
                out["ls"] = ls(stk)
                return out
            if want(1):
                sbs("c1-%s-%s-%s" % (user, vowner, via),
                    "1 protected_symlinks: %s by %s through %s's symlink in "
                    "a 1777 dir to %s's file" % (via, user, OTHER, vowner),
                    run)
    for user in ("root", USER):
        for via in ("sftp", "scp"):
            def run(S, R, user=user, via=via):
                d = mkdir(R + "/d", user, None, 0o755)
                t = mkfile(d + "/target", VICTIM, user)
                symlink("target", d + "/ln", user)
                before = ino(t)
                if via == "sftp":
                    out = sftp_do(S, user, d + "/ln", NEW)
                else:
                    out = scp_do(S, user, d, "ln", NEW)
                put(out, "target", state(t, before))
                put(out, "ln", state(d + "/ln"))
                out["ls"] = ls(d)
                return out
            if want(1):
                sbs("c1-nosymfollow-%s-%s" % (user, via),
                    "1 nosymfollow mount: %s by %s through its own symlink"
                    % (via, user), run, fs="tmpfs:size=16m,nosymfollow")


# 2. protected_regular=2: O_CREAT on another user's file in a sticky dir.
def case2():
    dirs = (("1777", "root", "root", 0o1777), ("1770", "root", TEAM, 0o1770),
            ("1775", "root", TEAM, 0o1775))
    for dname, downer, dgroup, dmode in dirs:
        for user in ("root", USER):
            for how in ("sftp WRITE|CREAT|TRUNC", "sftp WRITE|TRUNC",
                        "scp"):
                def run(S, R, dname=dname, downer=downer, dgroup=dgroup,
                        dmode=dmode, user=user, how=how):
                    d = mkdir(R + "/d", downer, dgroup, dmode)
                    f = mkfile(d + "/f", THEIRS, OTHER,
                               TEAM if dgroup == TEAM else None, 0o666)
                    before = ino(f)
                    if how == "scp":
                        out = scp_do(S, user, d, "f", NEW)
                    elif "CREAT" in how:
                        out = sftp_do(S, user, f, NEW, WCT)
                    else:
                        out = sftp_do(S, user, f, NEW,
                                      FXF_WRITE | FXF_TRUNC)
                    put(out, "f", state(f, before))
                    out["ls"] = ls(d)
                    return out
                if want(2):
                    sbs("c2-%s-%s-%s" % (dname, user, how.split()[-1]
                                         .replace("|", "")),
                        "2 protected_regular=2: %s by %s over %s's 0666 "
                        "file in a %s dir" % (how, user, OTHER, dname),
                        run, ignore=("f.inode",), accepted=REPLACE_NOTE)


# 2b. protected_fifos=1: O_CREAT on another user's FIFO in a sticky dir.
def case2_fifo():
    for user in ("root", USER):
        for via in ("sftp", "scp"):
            def run(S, R, user=user, via=via):
                d = mkdir(R + "/d", "root", "root", 0o1777)
                f = d + "/fifo"
                os.mkfifo(f)
                os.chown(f, uid(OTHER), pgid(OTHER))
                os.chmod(f, 0o666)
                # A reader, so that a writer's open does not block.
                rfd = os.open(f, os.O_RDONLY | os.O_NONBLOCK)
                try:
                    if via == "sftp":
                        out = sftp_do(S, user, f, NEW, WCT)
                    else:
                        out = scp_do(S, user, d, "fifo", NEW)
                    try:
                        got = os.read(rfd, 1 << 20)
                    except BlockingIOError:
                        got = b""
                finally:
                    os.close(rfd)
                out["fifo_received"] = "%d bytes" % len(got)
                put(out, "fifo", state(f))
                out["ls"] = ls(d)
                return out
            if want(2):
                sbs("c2-fifo-%s-%s" % (user, via),
                    "2 protected_fifos=1: %s by %s into %s's 0666 FIFO in "
                    "a 1777 dir" % (via, user, OTHER), run)


# 3. setgid directory: a replace keeps the file's group; a new file
#    takes the directory's.
def case3():
    for user in (USER, "root"):
        for via in ("sftp", "scp"):
            for what in ("replace", "new"):
                def run(S, R, user=user, via=via, what=what):
                    d = mkdir(R + "/sg", "root", TEAM, 0o2775)
                    f = mkfile(d + "/f", OLD, USER, USER, 0o640)
                    os.link(f, R + "/hardlink")
                    name = "f" if what == "replace" else "n"
                    before = ino(f)
                    if via == "sftp":
                        out = sftp_do(S, user, d + "/" + name, NEW,
                                      attrs={"perm": 0o644})
                    else:
                        out = scp_do(S, user, d, name, NEW)
                    put(out, "f", state(f, before))
                    put(out, "hardlink", state(R + "/hardlink", before))
                    if what == "new":
                        put(out, "n", state(d + "/n"))
                    out["ls"] = ls(d)
                    return out
                if want(3):
                    sbs("c3-%s-%s-%s" % (user, via, what),
                        "3 setgid dir 2775 root:%s: %s by %s of %s" %
                        (TEAM, via, user,
                         "0640 %s:%s file (with a hard link)" % (USER, USER)
                         if what == "replace" else "a new file"),
                        run, ignore=("f.inode", "f.nlink", "hardlink.content",
                                     "hardlink.size", "hardlink.nlink"),
                        accepted=REPLACE_NOTE + "; " + HARDLINK_NOTE)


# 4. Copy-on-modify on a small tmpfs.
def case4():
    label_sparse("1GiB-holes", 1 << 30, {})
    label_sparse("1GiB-holes-X-at-0", 1 << 30, {0: b"X"})
    label_sparse("64GiB-holes", 64 << 30, {})
    for user in (USER, "root"):
        def run_sparse(S, R, user=user):
            d = mkdir(R + "/d", user, None, 0o755)
            f = sparse(d + "/sparse", 1 << 30, user)
            before = ino(f)
            out = sftp_do(S, user, f, b"X", FXF_WRITE)
            put(out, "f", state(f, before))
            out["fs_used"] = space(fs_used(R))
            out["ls"] = ls(d)
            return out
        if want(4):
            sbs("c4-sparse-%s" % user,
                "4 copy-on-modify: 1-byte WRITE (no TRUNC) at 0 of a 1 GiB "
                "sparse file on a 64 MiB tmpfs, by %s" % user, run_sparse,
                fs="tmpfs:size=64m", ignore=("f.inode",),
                accepted=REPLACE_NOTE)

        def run_full(S, R, user=user):
            d = mkdir(R + "/d", user, None, 0o755)
            blk = os.urandom(MiB)
            data = b"".join(struct.pack("<Q", i) + blk[8:]
                            for i in range(40))
            label("40MiB-orig", data)
            label("40MiB-modified", b"Y" + data[1:])
            f = mkfile(d + "/big", data, user)
            before = ino(f)
            base = fs_used(R)
            out = sftp_do(S, user, f, b"Y", FXF_WRITE)
            put(out, "f", state(f, before))
            out["fs_used_delta"] = space(max(0, fs_used(R) - base))
            out["ls"] = ls(d)
            out["_log"] = " | ".join(l for l in S.log_text()
                                     if "pace" in l or "copy" in l)[:300]
            return out

        def refused_cleanly(so, oo):
            # Accepted: ours refuses the modification because its staged
            # copy cannot fit, with SSH_FX_FAILURE, and leaves the file
            # byte-identical, on its inode, with no debris.
            if "FAILURE" not in (oo.get("open"), oo.get("write"),
                                 oo.get("close")):
                return None
            if (oo.get("f.content") == "40MiB-orig" and
                    oo.get("f.inode") == "same" and
                    oo.get("ls") == so.get("ls") and
                    oo.get("fs_used_delta") == "<1MiB"):
                return ("the copy cannot fit: refused with FAILURE, file "
                        "byte-identical, no debris")
            return None
        if want(4):
            sbs("c4-full-%s" % user,
                "4 copy-on-modify: 1-byte WRITE (no TRUNC) to a file with "
                "40 MiB of data on a 64 MiB tmpfs, by %s" % user, run_full,
                fs="tmpfs:size=64m", ignore=("f.inode",),
                accepted=REPLACE_NOTE, alt=refused_cleanly)

        def run_open(S, R, user=user):
            d = mkdir(R + "/d", user, None, 0o755)
            f = sparse(d + "/huge", 64 << 30, user)
            before = ino(f)
            base = fs_used(R)
            srv = S.sftp(user, "/")
            t0 = time.monotonic()
            r = srv.open(f, FXF_WRITE)
            dt = time.monotonic() - t0
            out = {"open": st_name(r),
                   "open_time": "<2s" if dt < 2 else "%.0fs" % dt,
                   "used_while_open": space(max(0, fs_used(R) - base))}
            if r.type == FXP_HANDLE:
                out["close"] = st_name(srv.close(r.handle))
            srv.finish()
            put(out, "f", state(f, before))
            out["ls"] = ls(d)
            return out
        if want(4):
            sbs("c4-open-%s" % user,
                "4 OPEN WRITE of a 64 GiB sparse file, CLOSE without "
                "writing, by %s: immediate, no copy, nothing published"
                % user, run_open, fs="tmpfs:size=64m")


# 5. Default ACLs on a new (and a replaced) file, with and without -t.
def case5():
    for user in (USER, "root"):
        for t in (False, True):
            for how, attrs, mode in (("sftp, no perm", None, None),
                                     ("sftp perm 0644", {"perm": 0o644},
                                      None),
                                     ("sftp perm 0600", {"perm": 0o600},
                                      None),
                                     ("scp C0644", None, "0644"),
                                     ("scp C0666", None, "0666"),
                                     ("sftp replace", None, None),
                                     ("scp replace", None, "0644")):
                def run(S, R, user=user, t=t, how=how, attrs=attrs,
                        mode=mode):
                    a = mkdir(R + "/acl", USER, TEAM, 0o2770)
                    subprocess.run(["setfacl", "-d", "-m",
                                    "u::rwx,g::rwx,g:%s:rw,m::rwx,o::-" %
                                    TEAM, a], check=True)
                    e = mkfile(a + "/e", OLD, USER, TEAM, 0o640,
                               acl="u:%s:r" % OTHER,
                               xattrs={"user.origin": b"e"})
                    before = ino(e)
                    stg = mkdir(R + "/stg", user, None, 0o700)
                    args = ["-t", stg] if t else []
                    env = {"ATOMIC_UPLOAD_TMPDIR": stg} if t else None
                    name = "e" if "replace" in how else "n"
                    if how.startswith("sftp"):
                        out = sftp_do(S, user, a + "/" + name, NEW,
                                      attrs=attrs, ours_args=args)
                    else:
                        out = scp_do(S, user, a, name, NEW, mode=mode,
                                     ours_env=env)
                    put(out, name, state(a + "/" + name,
                                         before if name == "e" else None))
                    out["ls"] = ls(a)
                    return out
                if want(5):
                    sbs("c5-%s-%s-%s" % (user, "t" if t else "not",
                                         re.sub(r"\W+", "", how)),
                        "5 default ACL g:%s:rw,o::- on the dir: %s by %s%s"
                        % (TEAM, how, user,
                           " (ours with -t / ATOMIC_UPLOAD_TMPDIR)"
                           if t else ""), run,
                        ignore=("e.inode",), accepted=REPLACE_NOTE
                        if "replace" in how else None)


# 6. (ours only) Untrusted staging directories are not used.
def case6():
    variants = (
        ("1777 owned by %s (squatted in a 1733 parent, -t .../%%u)" % OTHER,
         "squat"),
        ("group-writable 0770 without sticky", "gw"))
    for user in (USER, "root"):
        for vdesc, v in variants:
            for via in ("sftp", "scp"):
                def run(S, R, user=user, v=v, via=via):
                    checks = []
                    d = mkdir(R + "/d", user, None, 0o755)
                    mkfile(d + "/old", OLD, user)
                    parent = mkdir(R + "/stage", "root", "root", 0o1733)
                    if v == "squat":
                        # World-writable and sticky, so that only its
                        # owner makes it unsafe.
                        stg = mkdir(parent + "/" + user, OTHER, None,
                                    0o1777)
                        tmpl = parent + "/%u"
                    else:
                        stg = mkdir(parent + "/gw", user if user != "root"
                                    else "root", TEAM, 0o770)
                        tmpl = stg
                    for named in (False, True):
                        w = Inotify(stg)
                        seen = []
                        for name in ("new", "old"):
                            data = NEW + name.encode()
                            if via == "sftp":
                                srv = S.sftp(user, "/", ["-t", tmpl],
                                             named=named)
                                r = srv.open(d + "/" + name, WCT)
                                ok_ = r.type == FXP_HANDLE
                                if ok_:
                                    srv.write(r.handle, 0, data[:100])
                                    seen += fds_below(srv.pid, stg)
                                    srv.write(r.handle, 100, data[100:])
                                    c = srv.close(r.handle)
                                    ok_ = c.status() == "OK"
                                srv.finish()
                            else:
                                o = scp_do(S, user, d, name, data,
                                           ours_env={"ATOMIC_UPLOAD_TMPDIR":
                                                     tmpl}, named=named)
                                ok_ = o["scp"].endswith("end:OK")
                            got = digest_file(d + "/" + name)
                            checks.append((
                                "%s upload of %s succeeds%s" %
                                (via, name, " (named temps)" if named
                                 else ""),
                                ok_ and got == digest_bytes(data),
                                "status ok=%s, content %s" %
                                (ok_, "right" if got == digest_bytes(data)
                                 else "wrong")))
                        # Events on the directory itself (a listing)
                        # are not things appearing in it.
                        ev = [e for e in w.close() if e[1]]
                        checks.append((
                            "nothing appears in the staging dir%s" %
                            (" (named temps)" if named else ""),
                            not ev and not seen and
                            os.listdir(stg) == [],
                            "inotify events %r, open fds below it %r, "
                            "holds %r" % (ev[:8], seen, os.listdir(stg))))
                    log = "\n".join(S.log_text())
                    checks.append((
                        "a log line names the staging directory",
                        stg in log or "staging director" in log,
                        "no line mentions %s" % stg))
                    return checks
                if want(6):
                    ours_only("c6-%s-%s-%s" % (user, v, via),
                              "6 (ours only) %s by %s, staging dir %s" %
                              (via, user, vdesc), run, sftp=via == "sftp")


# 7. Metadata from the file opened at OPEN, never from a file swapped in.
def case7():
    for user in ("root", USER):
        for via in ("sftp", "scp"):
            def run(S, R, user=user, via=via):
                w = mkdir(R + "/w", OTHER, TEAM, 0o775)
                keep = mkdir(R + "/keep", "root", "root", 0o700)
                f = mkfile(w + "/f", OLD, user, None, 0o640,
                           acl="g:%s:r" % TEAM,
                           xattrs={"user.origin": b"a"})
                os.link(f, keep + "/orig")
                mkfile(w + "/mine", MINE, OTHER, None, 0o644,
                       acl="u:%s:rw" % OTHER,
                       xattrs={"user.origin": b"b"})

                def swap():
                    as_user_rename(OTHER, w + "/mine", w + "/f")
                if via == "sftp":
                    srv = S.sftp(user, "/")
                    r = srv.open(w + "/f", WCT)
                    out = {"open": st_name(r)}
                    if r.type == FXP_HANDLE:
                        out["write"] = st_name(srv.write(r.handle, 0,
                                                         ROOTDATA))
                        swap()
                        out["close"] = st_name(srv.close(r.handle))
                    srv.finish()
                else:
                    out = scp_do(S, user, w, "f", ROOTDATA, between=swap)
                carriers = []
                for dp, dn, fn in os.walk(R):
                    for n in fn:
                        p = os.path.join(dp, n)
                        if state(p).get("content") == "rootdata":
                            carriers.append(p)
                # The same inode may have two names (keep/orig): once.
                seen, uniq = set(), []
                for p in carriers:
                    if ino(p) not in seen:
                        seen.add(ino(p))
                        uniq.append(p)
                out["carriers"] = str(len(uniq))
                for i, p in enumerate(uniq):
                    s = state(p)
                    for k in ("owner", "group", "mode", "acl", "xattr"):
                        out["data%d.%s" % (i, k)] = s[k]
                    out["data%d._where" % i] = os.path.relpath(p, R)
                put(out, "at_name", state(w + "/f"))
                return out
            if want(7):
                sbs("c7-%s-%s" % (user, via),
                    "7 swap before commit: %s by %s, %s renames his file "
                    "(u:%s:rw, user.origin=b) over the name mid-upload: "
                    "the file holding the data has the opened file's "
                    "metadata" % (via, user, OTHER, OTHER), run,
                    ignore=("at_name.*",),
                    accepted="stock wrote into the inode it opened (moved "
                    "away), ours publishes at the name at CLOSE")

    # The must, as its own line (ours only): no file holding the upload
    # carries the other user's owner, ACL or xattr.
    if want(7):
        for user in ("root", USER):
            def run(S, R, user=user):
                w = mkdir(R + "/w", OTHER, TEAM, 0o775)
                f = mkfile(w + "/f", OLD, user, None, 0o640,
                           acl="g:%s:r" % TEAM,
                           xattrs={"user.origin": b"a"})
                mkfile(w + "/mine", MINE, OTHER, None, 0o644,
                       acl="u:%s:rw" % OTHER, xattrs={"user.origin": b"b"})
                srv = S.sftp(user, "/")
                r = srv.open(f, WCT)
                srv.write(r.handle, 0, ROOTDATA)
                as_user_rename(OTHER, w + "/mine", f)
                c = srv.close(r.handle)
                srv.finish()
                bad = []
                for dp, dn, fn in os.walk(R):
                    for n in fn:
                        s = state(os.path.join(dp, n))
                        if s.get("content") == "rootdata" and (
                                OTHER in s["acl"] or "origin=b" in s["xattr"]
                                or s["owner"] == OTHER):
                            bad.append("%s %s" % (n, s))
                return [("no file holding %s's upload carries %s's owner, "
                         "ACL or xattr (close %s)" % (user, OTHER,
                                                      c.status()),
                         not bad, "\n".join(bad))]
            ours_only("c7-leak-%s" % user, "7 swap before CLOSE (program "
                      "under test, stock passes too)", run, always=True)


# 8. (ours only) Named temps of killed servers are swept by -S.
def case8():
    def run(S, R):
        checks = []
        tree = mkdir(R + "/tree", "root", "root", 0o755)
        d = mkdir(tree + "/d", USER, None, 0o755)
        mkfile(d + "/exist", OLD, USER)
        stg = mkdir(tree + "/stg", "root", "root", 0o1733)
        sub = mkdir(tree + "/deep", "root", "root", 0o755)
        d2 = mkdir(sub + "/d2", USER, None, 0o755)
        outside = mkdir(R + "/outside", USER, None, 0o755)
        bait = mkfile(outside + "/.bait.au-AAAAAAAAAAAAAAAA", OLD, USER,
                      None, 0o600)
        symlink(outside, tree + "/link", "root")
        mnt = mkdir(tree + "/mnt", "root", "root", 0o755)
        mount("tmpfs", "size=1m,mode=0755", mnt)
        try:
            bait2 = mkfile(mnt + "/.bait.au-BBBBBBBBBBBBBBBB", OLD, USER,
                           None, 0o600)
            # Killed uploads: beside the destination, in a deeper dir,
            # in the 1733 staging dir; sftp and scp.
            for args, path in (([], d + "/new"), ([], d + "/exist"),
                               ([], d2 + "/deepnew"),
                               (["-t", stg], d + "/staged"),
                               (["-t", stg], d + "/exist")):
                srv = S.sftp(USER, "/", args, named=True)
                r = srv.open(path, WCT)
                if r.type == FXP_HANDLE:
                    srv.write(r.handle, 0, NEW)
                srv.proc.kill()
                srv.proc.wait()
            if not SCP_IS_STOCK:
                for env in (None, {"ATOMIC_UPLOAD_TMPDIR": stg}):
                    p = S.scp(USER, ["-t", d], "/", env, named=True)
                    p.ack()
                    p.send(b"C0644 %d scpkilled\n" % len(NEW))
                    p.ack()
                    p.send(NEW[:1000])
                    time.sleep(0.3)
                    p.proc.kill()
                    p.proc.wait()
            stale = {x: temps(x) for x in (d, d2, stg)}
            checks.append(("killed servers left named temporaries to sweep "
                           "(d: %d, deep: %d, 1733 staging: %d)" %
                           (len(stale[d]), len(stale[d2]), len(stale[stg])),
                           stale[d] and stale[d2] and stale[stg],
                           "ATOMIC_UPLOAD_TMPFILE=no not honoured? %r" %
                           stale))
            # Live uploads must survive the sweep.
            live = []
            for args, path in (([], d + "/live1"), (["-t", stg],
                                                     d + "/live2")):
                srv = S.sftp(USER, "/", args, named=True)
                r = srv.open(path, WCT)
                srv.write(r.handle, 0, NEW)
                live.append((srv, r.handle, path))
            live_t = {x: sorted(set(temps(x)) - set(stale[x]))
                      for x in (d, stg)}
            # The cron job, as root: no environment, cwd /.
            r = subprocess.run([OURS_SFTP, "-S", tree],
                               stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, cwd="/",
                               env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
            checks.append(("-S %s as root exits 0" % "TREE",
                           r.returncode == 0, r.stdout.decode()[-300:]))
            left = {x: sorted(set(temps(x)) & set(stale[x]))
                    for x in (d, d2, stg)}
            checks.append(("-S removed every stale temporary, of any owner, "
                           "recursively, in a 1733 dir too",
                           not any(left.values()),
                           "still there: %r (output: %s)" %
                           (left, r.stdout.decode().strip()[-300:])))
            still = {x: sorted(set(live_t[x]) & set(temps(x)))
                     for x in (d, stg)}
            checks.append(("-S left the live uploads' temporaries",
                           still == live_t, "live %r, after %r" %
                           (live_t, still)))
            checks.append(("-S did not follow a symlink out of the tree",
                           os.path.exists(bait), "removed " + bait))
            checks.append(("-S stayed on its filesystem",
                           os.path.exists(bait2), "removed " + bait2))
            for srv, h, path in live:
                c = srv.close(h)
                srv.finish()
                checks.append(("a live upload commits after the sweep",
                               c.status() == "OK" and
                               state(path).get("content") == "upload",
                               "close %s, %s" % (c.status(), state(path))))
        finally:
            umount(mnt)
        return checks
    if want(8):
        ours_only("c8", "8 (ours only) named temps of SIGKILLed sftp-server "
                  "and scp, swept by -S from cron as root", run)


# 9. Write-only drop box (root-owned 1733).
def case9():
    for via in ("sftp", "scp"):
        for what in ("new", "own existing"):
            def run(S, R, via=via, what=what):
                box = mkdir(R + "/box", "root", "root", 0o1733)
                if what != "new":
                    mkfile(box + "/f", OLD, USER, None, 0o640)
                before = ino(box + "/f") if what != "new" else None
                if via == "sftp":
                    out = sftp_do(S, USER, box + "/f", NEW,
                                  attrs={"perm": 0o644})
                else:
                    out = scp_do(S, USER, box, "f", NEW)
                put(out, "f", state(box + "/f", before))
                out["ls"] = ls(box)
                return out
            if want(9):
                sbs("c9-%s-%s" % (via, what.split()[0]),
                    "9 write-only drop box 1733 root: %s by %s of a %s file"
                    % (via, USER, what), run, ignore=("f.inode",),
                    accepted=REPLACE_NOTE if what != "new" else None)


# 10. OPEN with WRITE and CLOSE without writing: nothing published.
def case10():
    for user in (USER, "root"):
        for how, flags, read in (("READ|WRITE", FXF_READ | FXF_WRITE, False),
                                 ("READ|WRITE + READ", FXF_READ | FXF_WRITE,
                                  True),
                                 ("WRITE", FXF_WRITE, False)):
            def run(S, R, user=user, flags=flags, read=read):
                d = mkdir(R + "/sg", "root", TEAM, 0o2775)
                f = mkfile(d + "/f", OLD, USER, USER, 0o644)
                os.link(f, R + "/hardlink")
                before = ino(f)
                out = sftp_do(S, user, f, None, flags, read=read)
                put(out, "f", state(f, before))
                put(out, "hardlink", state(R + "/hardlink", before))
                out["ls"] = ls(d)
                return out
            if want(10):
                sbs("c10-%s-%s" % (user, re.sub(r"\W+", "", how)),
                    "10 OPEN %s then CLOSE without writing, by %s (file "
                    "with a hard link, setgid dir)" % (how, user), run)


# 11. chattr +a / +i.
def case11():
    cases = (("+a", "sftp WRITE|APPEND", FXF_WRITE | FXF_APPEND),
             ("+a", "sftp WRITE|TRUNC", FXF_WRITE | FXF_TRUNC),
             ("+a", "sftp WRITE|CREAT|TRUNC", WCT),
             ("+a", "sftp WRITE (modify)", FXF_WRITE),
             ("+a", "scp", None),
             ("+i", "sftp WRITE|APPEND", FXF_WRITE | FXF_APPEND),
             ("+i", "sftp WRITE|TRUNC", FXF_WRITE | FXF_TRUNC),
             ("+i", "sftp WRITE|CREAT|TRUNC", WCT),
             ("+i", "scp", None))
    for user in (USER, "root"):
        for attr, how, flags in cases:
            def run(S, R, user=user, attr=attr, how=how, flags=flags):
                d = mkdir(R + "/d", USER, None, 0o755)
                f = mkfile(d + "/f", OLD, USER, None, 0o644)
                chattr(attr, f)
                before = ino(f)
                try:
                    if flags is None:
                        out = scp_do(S, user, d, "f", NEW)
                    else:
                        out = sftp_do(S, user, f, b"more\n", flags)
                    put(out, "f", state(f, before, flags=True))
                    out["ls"] = ls(d)
                finally:
                    chattr("-ai", f)
                return out
            if want(11):
                sbs("c11-%s-%s-%s" % (user, attr[1], re.sub(r"\W+", "", how)),
                    "11 chattr %s file: %s by %s" % (attr, how, user), run,
                    ignore=("f.inode",), accepted=REPLACE_NOTE)


# 12. Set-id bits: cleared by an unprivileged write, kept by root's.
def case12():
    files = (("4755", USER, 0o4755), ("2775", TEAM, 0o2775),
             ("6775", TEAM, 0o6775), ("2765", TEAM, 0o2765))
    ops = (("APPEND write", "append"), ("FSETSTAT size", "fsetstat"),
           ("WRITE|CREAT|TRUNC upload", "trunc"), ("WRITE (modify)", "modify"),
           ("scp", "scp"))
    for user in (USER, "root"):
        for fm, fg, mode in files:
            for odesc, op in ops:
                def run(S, R, user=user, fg=fg, mode=mode, op=op):
                    d = mkdir(R + "/d", USER, None, 0o755)
                    f = mkfile(d + "/prog", OLD, USER, fg, mode)
                    before = ino(f)
                    if op == "append":
                        out = sftp_do(S, user, f, b"tail\n",
                                      FXF_WRITE | FXF_APPEND,
                                      offset=len(OLD))
                    elif op == "fsetstat":
                        out = sftp_do(S, user, f, None, FXF_WRITE,
                                      fsetstat={"size": 10})
                    elif op == "trunc":
                        out = sftp_do(S, user, f, NEW, WCT)
                    elif op == "modify":
                        out = sftp_do(S, user, f, b"X", FXF_WRITE)
                    else:
                        out = scp_do(S, user, d, "prog", NEW)
                    put(out, "f", state(f, before))
                    out["ls"] = ls(d)
                    return out
                if want(12):
                    sbs("c12-%s-%s-%s" % (user, fm, op),
                        "12 set-id file %s %s:%s: %s by %s" %
                        (fm, USER, fg, odesc, user), run,
                        ignore=("f.inode",), accepted=REPLACE_NOTE)


# 13. (ours only) A shared 1777 staging dir: temps reveal no name and are
#     never owned by the final owner while they have a name there.
def case13():
    for user in ("root", USER):
        for via, named in (("sftp", True), ("scp", True), ("sftp", False),
                           ("scp", False)):
            def run(S, R, user=user, via=via, named=named):
                d = mkdir(R + "/d", USER, None, 0o755)
                base = "quarterly-report-7F3A.csv"
                mkfile(d + "/" + base, OLD, USER, None, 0o644)
                stg = mkdir(R + "/shared", "root", "root", 0o1777)
                seen, bad = set(), []
                stop = threading.Event()

                def watch():
                    while not stop.is_set():
                        try:
                            names = os.listdir(stg)
                        except OSError:
                            names = []
                        for n in names:
                            try:
                                s = os.lstat(os.path.join(stg, n))
                            except OSError:
                                continue
                            seen.add(n)
                            if "quarterly" in n or "7F3A" in n or \
                                    base in n:
                                bad.append("name %s" % n)
                            if s.st_uid != uid(user):
                                bad.append("%s owned by %s" %
                                           (n, uname(s.st_uid)))
                        time.sleep(0.002)
                th = threading.Thread(target=watch)
                th.start()
                # Widen the window between metadata and rename.
                rules = ["rename*:DELAY:ms=400", "link*:DELAY:ms=400"]
                try:
                    if via == "sftp":
                        srv = S.sftp(user, "/", ["-t", stg], named=named,
                                     shim_rules=rules)
                        r = srv.open(d + "/" + base, WCT)
                        ok_ = r.type == FXP_HANDLE
                        if ok_:
                            for i in range(3):
                                srv.write(r.handle, i * 1000,
                                          NEW[i * 1000:(i + 1) * 1000])
                                time.sleep(0.3)
                            srv.write(r.handle, 3000, NEW[3000:])
                            ok_ = srv.close(r.handle).status() == "OK"
                        srv.finish()
                    else:
                        p = S.scp(user, ["-t", d], "/",
                                  {"ATOMIC_UPLOAD_TMPDIR": stg},
                                  named=named, shim_rules=rules)
                        p.ack()
                        p.send(b"C0644 %d %s\n" % (len(NEW), base.encode()))
                        ok_ = p.ack() == "OK"
                        for i in range(3):
                            p.send(NEW[i * 1000:(i + 1) * 1000])
                            time.sleep(0.3)
                        p.send(NEW[3000:] + b"\0")
                        ok_ = ok_ and p.ack() == "OK"
                        p.finish()
                finally:
                    stop.set()
                    th.join()
                st = state(d + "/" + base)
                checks = [
                    ("upload succeeds, owner kept (%s)" % st.get("owner"),
                     ok_ and st.get("content") == "upload" and
                     st.get("owner") == USER, repr(st))]
                if named:
                    checks.append((
                        "a named temporary was seen in the staging dir",
                        bool(seen), "none seen: did ours stage there? "
                        "(ATOMIC_UPLOAD_TMPFILE=no)"))
                checks.append((
                    "no entry there names the destination or is owned by "
                    "another user (seen: %d)" % len(seen), not bad,
                    "; ".join(sorted(set(bad))[:6])))
                return checks
            if want(13):
                ours_only("c13-%s-%s-%s" % (user, via,
                                            "named" if named else "tmpfile"),
                          "13 (ours only) %s by %s replacing %s's file via a "
                          "shared 1777 -t dir, %s" %
                          (via, user, USER, "named temps" if named
                           else "default (O_TMPFILE)"), run,
                          sftp=via == "sftp")


# 14. scp T record out of range.
def case14():
    recs = (("T99999999999999999999 0 99999999999999999999 0", "20 nines"),
            ("T18446744073709551615 0 18446744073709551615 0", "2^64-1"),
            ("T9223372036854775807 0 9223372036854775807 0", "2^63-1"),
            ("T9223372036854775808 0 9223372036854775808 0", "2^63"),
            ("T-1 0 -1 0", "negative"),
            ("T1000000000 0 1000000000 0", "in range"),
            ("T1000000000 1000000 1000000000 0", "usec out of range"))
    for user in (USER, "root"):
        for rec, rdesc in recs:
            for args in (("-p", "-t"), ("-t",)):
                def run(S, R, user=user, rec=rec, args=args):
                    d = mkdir(R + "/d", user, None, 0o755)
                    out = scp_do(S, user, d, "t", NEW, args=args,
                                 T=(rec + "\n").encode())
                    put(out, "t", state(d + "/t", times=True))
                    out["ls"] = ls(d)
                    return out
                if want(14):
                    sbs("c14-%s-%s-%s" % (user, re.sub(r"\W+", "", rdesc),
                                          "".join(args).replace("-", "")),
                        "14 scp %s T record %s (%s) by %s" %
                        (" ".join(args), rdesc, rec, user), run)


# x. (ours only) With -t on the destination's filesystem, a replace shows
#    nothing but the final name in the destination directory.
def casex():
    for user in (USER, "root"):
        for via in ("sftp", "scp"):
            def run(S, R, user=user, via=via):
                checks = []
                d = mkdir(R + "/d", user, None, 0o755)
                stg = mkdir(R + "/stg", user, None, 0o700)
                for named in (False, True):
                    for name in ("f", "new"):
                        if name == "f":
                            mkfile(d + "/f", OLD, user)
                        w = Inotify(d)
                        if via == "sftp":
                            o = sftp_do(S, user, d + "/" + name, NEW,
                                        ours_args=["-t", stg], named=named)
                            good = o.get("close") == "OK"
                        else:
                            o = scp_do(S, user, d, name, NEW,
                                       ours_env={"ATOMIC_UPLOAD_TMPDIR":
                                                 stg}, named=named)
                            good = o["scp"].endswith("end:OK")
                        ev = w.close()
                        other = sorted(set(n for _, n in ev
                                           if n and n != name))
                        checks.append((
                            "%s %s%s: only the final name appears in the "
                            "destination dir" % (
                                "replace" if name == "f" else "new file",
                                via, " (named temps)" if named else ""),
                            good and not other,
                            "status %s; other names: %r; events %r" %
                            (o, other, ev[:12])))
                return checks
            if want("x"):
                ours_only("cx-%s-%s" % (user, via),
                          "x (ours only) -t on the same filesystem, %s by %s"
                          % (via, user), run, sftp=via == "sftp")


# ====================================================================

def main(argv):
    global WORK, EXT, TMPBASE, LOGS
    if len(argv) != 2:
        sys.stderr.write("usage: security_cases.py WORKDIR\n")
        return 2
    os.umask(0o022)
    WORK = os.path.abspath(argv[1])
    EXT = os.path.join(WORK, "ext4")
    TMPBASE = os.path.join(WORK, "tmp")
    LOGS = os.path.join(WORK, "logs")
    for p in (EXT, TMPBASE, LOGS):
        os.makedirs(p, exist_ok=True)
        os.chmod(p, 0o755)
    tap.note("stock: %s, %s; ours: %s, %s%s" % (
        STOCK_SFTP, STOCK_SCP, OURS_SFTP, OURS_SCP,
        " (ours IS stock: side-by-side cases agree trivially, ours-only "
        "cases SKIP)" if SFTP_IS_STOCK and SCP_IS_STOCK else ""))
    tap.note("sysctls: " + " ".join(
        "%s=%s" % (n, open("/proc/sys/fs/" + n).read().strip())
        for n in ("protected_symlinks", "protected_regular",
                  "protected_fifos", "protected_hardlinks")))
    # The ext4 image: chattr +a/+i, ACLs, user xattrs.  A tmpfs
    # stands in where loop devices are not available.
    img = os.path.join(WORK, "ext4.img")
    try:
        with open(img, "wb") as f:
            f.truncate(256 * MiB)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-E",
                        "lazy_itable_init=1,lazy_journal_init=1", img],
                       check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
        mount("ext4", "loop", EXT, img)
    except Exception as e:
        tap.note("no ext4 loop image (%s): tmpfs instead" % e)
        mount("tmpfs", "size=256m,mode=0755", EXT)
    os.chmod(EXT, 0o755)
    try:
        for fn in (case1, case2, case2_fifo, case3, case4, case5, case6, case7, case8,
                   case9, case10, case11, case12, case13, case14, casex):
            t0 = time.monotonic()
            try:
                fn()
            except Exception:
                tap.notok("%s did not complete" % fn.__name__,
                          traceback.format_exc())
            tap.note("%s: %.1fs" % (fn.__name__, time.monotonic() - t0))
    finally:
        for m in reversed(list(MOUNTS)):
            umount(m)
        try:
            os.unlink(img)
        except OSError:
            pass
    return 1 if tap.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
