#!/usr/bin/python3
"""Upload digests and the check-file extensions, for regress/t-digest.sh.

Raw SFTP packets (regress/sftp_raw.py's client) to server processes
started directly, or paramiko through the test's sshd.  Every mode prints
TAP lines ("ok - $tid: ...") and exits 1 if any check failed.

usage:
  digest_cases.py uploads DIR
      uploads in order, out of order, with a hole, modifying or appending
      to an existing file, truncated or extended through the handle, over
      a file carrying a stale user.sha256, empty, each staged as an
      O_TMPFILE, a named temporary file and in place (staging off);
      -m inplace; digests switched off, -x, ATOMIC_UPLOAD_XATTR: the
      commit line's sha256 and user.sha256 must be the SHA-256 of the
      published file, and the VERBOSE "read back" line must say when
      data was read back.  Ours only (SKIPped against stock).
  digest_cases.py checkfile DIR
      check-file-name, check-file-handle and "check-file": algorithms,
      ranges, blocks, limits, errors, staged data, -P/-p/-Q and the
      VERSION pair; stock's answers side by side (OP_UNSUPPORTED).
  digest_cases.py paramiko PORT KEY FILE
      SFTPFile.check through sshd on FILE (a file on this host, as root):
      whole file, ranges, blocks, against hashlib and coreutils; a write
      handle before close.
  digest_cases.py user DIR SECRET PUBLIC
      run as an unprivileged user: a 0444 upload with ours and with stock
      (owner and mode alike; ours adds user.sha256); check-file-name of
      SECRET, root's 0600 file, is PERMISSION_DENIED, of PUBLIC, root's
      0644 file, answered: the kernel decides.

Environment: SFTP_SERVER (ours, or stock to see the our-only checks
SKIPped), STOCK_SFTP_SERVER, tid.
"""
import hashlib
import os
import random
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sftp_raw import (  # noqa: E402
    FX_BAD_MESSAGE, FX_FAILURE, FX_NO_SUCH_FILE, FX_OK, FX_OP_UNSUPPORTED,
    FX_PERMISSION_DENIED, FXF_APPEND, FXF_CREAT, FXF_READ, FXF_TRUNC,
    FXF_WRITE, FXP_EXTENDED_REPLY, FXP_STATUS, STATUS_NAMES,
    Reader, Server, Tap, is_stock, ours_path, stock_path)

XATTR = "user.sha256"
# The algorithms, each with its IANA name.
ALGOS = [("md5", "md5"), ("sha1", "sha-1"), ("sha224", "sha-224"),
         ("sha256", "sha-256"), ("sha384", "sha-384"), ("sha512", "sha-512")]
ADVERTISED = "md5,sha1,sha224,sha256,sha384,sha512"
CHECK_NAMES = ("check-file-name", "check-file-handle", "check-file")


def H(alg, data):
    """hashlib digest of data under a check-file algorithm name."""
    return hashlib.new(alg.lower().replace("-", ""), data).digest()


def sha256hex(data):
    return hashlib.sha256(data).hexdigest()


def blocks(alg, data, block):
    """Concatenated per-block hashes, as check-file returns them."""
    return b"".join(H(alg, data[i:i + block])
                    for i in range(0, len(data), block))


def payload(n, seed):
    return random.Random(seed).randbytes(n)


def write_file(path, data, mode=0o644):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def getxattr(path):
    try:
        return os.getxattr(path, XATTR).decode()
    except OSError:
        return None


def st(r):
    """A reply's status name (or type), for messages."""
    return "%r" % (r,)


# --------------------------------------------------------------- requests

def check_file(srv, target, algs, start=0, length=0, block=0,
               name=None):
    """One check-file request: by name (str target) or by handle (bytes
    target, sent as check-file-handle unless name says otherwise)."""
    if name is None:
        name = "check-file-handle" if isinstance(target, bytes) \
            else "check-file-name"
    return srv.extended(name, lambda p: p.string(target).string(algs)
                        .u64(start).u64(length).u32(block))


def cf_result(r):
    """(algorithm as replied, hash bytes) of a check-file reply, or None
    for anything else (a status, a malformed reply)."""
    if r.type != FXP_EXTENDED_REPLY:
        return None
    rd = Reader(r.ext)
    try:
        if rd.string() != b"check-file":
            return None
        alg = rd.string().decode()
    except Exception:
        return None
    return alg, rd.rest()


def is_status(r, code):
    return r.type == FXP_STATUS and r.code == code


# ---------------------------------------------------------------- logs

COMMIT_RE = (r'commit "%s" bytes (\d+) seconds [0-9.]+ method \S+'
             r'( sha256 ([0-9a-f]{64}))?$')
REREAD_RE = r'digest "%s": (\d+) bytes read back'


def log_text(path):
    try:
        return read_file(path).decode("utf-8", "replace").splitlines()
    except OSError:
        return []


def last_match(lines, pattern, name, pick):
    """pick(match) of the last line matching pattern (a %s for the
    escaped name), or None."""
    rx = re.compile(pattern % re.escape(name))
    got = None
    for l in lines:
        m = rx.search(l)
        if m:
            got = pick(m)
    return got


def commit_line(lines, name):
    """(bytes, sha256 hex or None) of the last commit line of name."""
    return last_match(lines, COMMIT_RE, name,
                      lambda m: (int(m.group(1)), m.group(3)))


def reread(lines, name):
    """Bytes read back for name's digest, or None without such a line."""
    return last_match(lines, REREAD_RE, name, lambda m: int(m.group(1)))


# ------------------------------------------------------------- uploads

def upload_batch(tap, base, method, extra_env):
    """The uploads, staged by `method` (tmpfile, named or direct): each
    published file's commit line and user.sha256 checked."""
    ours = ours_path()
    root = os.path.join(base, "up-" + method)
    os.makedirs(root)
    logf = os.path.join(base, "uploads-%s.log" % method)
    env = dict(os.environ)
    env.update(extra_env)
    srv = Server([ours, "-e", "-l", "VERBOSE", "-x"], cwd=root,
                 stderr_path=logf, env=env)
    srv.init()

    def chk(desc, cond, why=None):
        return tap.check("%s: %s" % (method, desc), cond, why)

    def note(msg):
        tap.note("%s: %s" % (method, msg))

    # name -> (expected content, expect a read-back line: True/False/None
    # for "either")
    want = {}

    # In order: hashed on the way through, nothing read back.
    data = payload(300001, 1)
    r = srv.upload("inorder", data)
    chk("in order: close OK", r.code == FX_OK, st(r))
    want["inorder"] = (data, False)

    # Out of order: a 1000-byte tail first, then 32 KiB blocks backwards.
    blk = 32768
    data = payload(10 * blk + 1000, 2)
    h = srv.open("ooo", FXF_WRITE | FXF_CREAT | FXF_TRUNC).handle
    offs = list(range(0, len(data), blk))
    codes = [srv.write(h, o, data[o:o + blk]).code for o in reversed(offs)]
    r = srv.close(h)
    chk("out of order (last block first): writes and close OK",
        set(codes) == {FX_OK} and r.code == FX_OK, st(r))
    want["ooo"] = (data, True)

    # A hole: two pieces, zeros between them.
    h = srv.open("hole", FXF_WRITE | FXF_CREAT | FXF_TRUNC).handle
    a, b = payload(1000, 3), payload(1000, 4)
    srv.write(h, 200000, b)
    srv.write(h, 0, a)
    r = srv.close(h)
    chk("hole: close OK", r.code == FX_OK, st(r))
    want["hole"] = (a + bytes(199000) + b, True)

    # Modifying an existing file: no TRUNC, 1000 bytes in the middle.
    old = payload(100000, 5)
    write_file(os.path.join(root, "modified"), old)
    patch = payload(1000, 6)
    h = srv.open("modified", FXF_WRITE).handle
    srv.write(h, 50000, patch)
    r = srv.close(h)
    chk("modify in the middle: close OK", r.code == FX_OK, st(r))
    want["modified"] = (old[:50000] + patch + old[51000:], True)

    # Appending (FXF_APPEND: the offset is ignored).
    old = payload(5000, 7)
    write_file(os.path.join(root, "appended"), old)
    more = payload(3000, 8)
    h = srv.open("appended", FXF_WRITE | FXF_APPEND).handle
    srv.write(h, 0, more)
    r = srv.close(h)
    chk("append: close OK", r.code == FX_OK, st(r))
    want["appended"] = (old + more, None)

    # Truncated and extended through the handle after writing.
    data = payload(100000, 9)
    h = srv.open("shrunk", FXF_WRITE | FXF_CREAT | FXF_TRUNC).handle
    srv.write(h, 0, data)
    r1 = srv.fsetstat(h, {"size": 40000})
    r = srv.close(h)
    chk("truncated through the handle: fsetstat and close OK",
        r1.code == FX_OK and r.code == FX_OK, "%r %r" % (r1, r))
    want["shrunk"] = (data[:40000], None)
    data = payload(1000, 10)
    h = srv.open("grown", FXF_WRITE | FXF_CREAT | FXF_TRUNC).handle
    srv.write(h, 0, data)
    r1 = srv.fsetstat(h, {"size": 5000})
    r = srv.close(h)
    chk("extended through the handle: fsetstat and close OK",
        r1.code == FX_OK and r.code == FX_OK, "%r %r" % (r1, r))
    want["grown"] = (data + bytes(4000), None)

    # Hashed bytes overwritten: the whole file is read back.
    data = payload(70000, 11)
    h = srv.open("rewritten", FXF_WRITE | FXF_CREAT | FXF_TRUNC).handle
    srv.write(h, 0, data)
    fix = payload(100, 12)
    srv.write(h, 10, fix)
    r = srv.close(h)
    chk("bytes rewritten after hashing: close OK", r.code == FX_OK,
        st(r))
    want["rewritten"] = (data[:10] + fix + data[110:], True)

    # A replaced file's stale user.sha256 (copied with its other
    # attributes) is replaced by the new content's.
    p = os.path.join(root, "stale")
    write_file(p, b"old content\n")
    os.setxattr(p, XATTR, b"0" * 64)
    os.setxattr(p, "user.other", b"kept")
    data = payload(5000, 13)
    r = srv.upload("stale", data)
    chk("over a file with a stale user.sha256: close OK",
        r.code == FX_OK, st(r))
    want["stale"] = (data, False)

    r = srv.upload("empty", b"")
    chk("empty upload: close OK", r.code == FX_OK, st(r))
    want["empty"] = (b"", False)
    rc = srv.finish()
    chk("uploads: server exit 0 (got %r)" % rc, rc == 0)
    lines = log_text(logf)
    methods = set(re.findall(r'^commit "[^"]*" bytes \d+ seconds [0-9.]+ '
                             r'method (\S+)', "\n".join(lines), re.M))
    chk("staged by that method (commit lines say %s)" %
        ",".join(sorted(methods)), methods == {method})
    for name, (content, rb) in want.items():
        p = os.path.join(root, name)
        got = read_file(p) if os.path.exists(p) else None
        chk("%s: published content as written" % name,
            got == content, "got %r bytes" %
            (None if got is None else len(got)))
        hx = sha256hex(content)
        c = commit_line(lines, name)
        chk("%s: commit line bytes %d sha256 = SHA-256 of the file" %
            (name, len(content)), c == (len(content), hx),
            "commit line gives %r, want %r" % (c, (len(content), hx)))
        chk("%s: user.sha256 = SHA-256 of the file" % name,
            getxattr(p) == hx, "user.sha256 %r, want %r" %
            (getxattr(p), hx))
        n = reread(lines, name)
        if rb is True:
            chk("%s: VERBOSE line says data was read back (%r bytes)"
                % (name, n), n is not None and
                0 < n <= len(content))
        elif rb is False:
            chk("%s: hashed as it streamed, no read-back line" % name,
                n is None, "read back %r bytes" % (n,))
        else:
            note("%s: read back %r bytes" % (name, n))
    chk("stale: the replaced file's other attributes are kept",
        os.getxattr(os.path.join(root, "stale"), "user.other") ==
        b"kept")
    chk("no xattr error logged",
        not any("not stored as an extended attribute" in l
                for l in lines),
        "\n".join(l for l in lines if "extended attribute" in l))


def run_uploads(tap, base):
    ours = ours_path()
    if is_stock(ours):
        tap.skip("upload digests (commit line, user.sha256, read back)",
                 "stock has no digests")
        return
    upload_batch(tap, base, "tmpfile", {})
    upload_batch(tap, base, "named", {"ATOMIC_UPLOAD_TMPFILE": "off"})
    # Staging off: written in place, as stock does (a write-only
    # descriptor, read back through /proc where needed).
    upload_batch(tap, base, "direct", {"ATOMIC_UPLOAD_STAGING": "off"})

    # -m inplace: a modification written through a write-only descriptor
    # to the file itself, read back through /proc at the commit; and
    # check-file-handle on that write-only handle.
    root2 = os.path.join(base, "inplace")
    os.makedirs(root2)
    logf = os.path.join(base, "inplace.log")
    old = payload(80000, 14)
    write_file(os.path.join(root2, "inplace"), old)
    srv = Server([ours, "-e", "-l", "VERBOSE", "-x", "-m", "inplace"],
                 cwd=root2, stderr_path=logf)
    srv.init()
    patch = payload(2000, 15)
    h = srv.open("inplace", FXF_WRITE).handle
    srv.write(h, 30000, patch)
    new = old[:30000] + patch + old[32000:]
    got = cf_result(check_file(srv, h, "sha256"))
    tap.check("-m inplace: check-file-handle on the write-only handle "
              "hashes the modified file", got == ("sha256", H("sha256", new)),
              "got %r" % (got,))
    r = srv.close(h)
    tap.check("-m inplace: close OK", r.code == FX_OK, st(r))
    srv.finish()
    lines = log_text(logf)
    p = os.path.join(root2, "inplace")
    tap.check("-m inplace: content as written", read_file(p) == new)
    tap.check("-m inplace: commit line sha256 = SHA-256 of the file",
              commit_line(lines, "inplace") == (len(new), sha256hex(new)),
              "got %r" % (commit_line(lines, "inplace"),))
    tap.check("-m inplace: user.sha256 = SHA-256 of the file",
              getxattr(p) == sha256hex(new), "got %r" % getxattr(p))

    # Switches: ATOMIC_UPLOAD_DIGEST=off, -x (which needs the digest),
    # ATOMIC_UPLOAD_XATTR=on, and the default (digest, no attribute).
    def one(label, args, env, name):
        d = os.path.join(base, "sw-" + name)
        os.makedirs(d)
        lf = os.path.join(base, "sw-%s.log" % name)
        e = dict(os.environ)
        e.update(env)
        for k in ("ATOMIC_UPLOAD_DIGEST", "ATOMIC_UPLOAD_XATTR"):
            if k not in env:
                e.pop(k, None)
        s = Server([ours, "-e", "-l", "VERBOSE"] + args, cwd=d, env=e,
                   stderr_path=lf)
        s.init()
        content = payload(12345, name)
        r = s.upload(name, content)
        s.finish()
        tap.check("%s: upload OK" % label, r.code == FX_OK, st(r))
        return (commit_line(log_text(lf), name),
                getxattr(os.path.join(d, name)), content)

    c, x, content = one("ATOMIC_UPLOAD_DIGEST=off", [],
                        {"ATOMIC_UPLOAD_DIGEST": "off"}, "off")
    tap.check("ATOMIC_UPLOAD_DIGEST=off: commit line without sha256",
              c == (len(content), None), "got %r" % (c,))
    tap.check("ATOMIC_UPLOAD_DIGEST=off: no user.sha256", x is None,
              "got %r" % x)
    c, x, content = one("default", [], {}, "default")
    tap.check("default: commit line with the sha256",
              c == (len(content), sha256hex(content)), "got %r" % (c,))
    tap.check("default: no user.sha256 without -x", x is None, "got %r" % x)
    c, x, content = one("-x with ATOMIC_UPLOAD_DIGEST=off", ["-x"],
                        {"ATOMIC_UPLOAD_DIGEST": "off"}, "xoff")
    tap.check("-x with ATOMIC_UPLOAD_DIGEST=off: the digest is still "
              "computed and stored", c == (len(content), sha256hex(content))
              and x == sha256hex(content), "got %r, xattr %r" % (c, x))
    c, x, content = one("ATOMIC_UPLOAD_XATTR=on", [],
                        {"ATOMIC_UPLOAD_XATTR": "on"}, "xenv")
    tap.check("ATOMIC_UPLOAD_XATTR=on (no -x): user.sha256 stored",
              x == sha256hex(content), "got %r" % x)


# ----------------------------------------------------------- checkfile

def run_checkfile(tap, base):
    ours = ours_path()
    stock = stock_path()
    have_ours = not is_stock(ours)
    why = "stock has no check-file"
    root = os.path.join(base, "cf")
    os.makedirs(os.path.join(root, "sub"))
    data = payload(2 * 1024 * 1024 + 333, 20)
    small = payload(2000, 21)
    write_file(os.path.join(root, "data"), data)
    write_file(os.path.join(root, "small"), small)
    write_file(os.path.join(root, "empty"), b"")
    old, new = b"old content, longer than the new one\n", b"new content"
    write_file(os.path.join(root, "staged"), old)

    # Stock, side by side: none of the three is known.
    s = Server([stock, "-e"], cwd=root)
    v = s.init()
    tap.check("stock: VERSION advertises no check-file",
              not any(k == "check-file" for k, _ in v.extensions),
              "got %r" % v.extensions)
    r = check_file(s, "data", "sha256")
    tap.check("stock: check-file-name answered OP_UNSUPPORTED",
              is_status(r, FX_OP_UNSUPPORTED), st(r))
    h = s.open("data", FXF_READ).handle
    for n in ("check-file-handle", "check-file"):
        r = check_file(s, h, "sha256", name=n)
        tap.check("stock: %s answered OP_UNSUPPORTED" % n,
                  is_status(r, FX_OP_UNSUPPORTED), st(r))
    s.finish()

    if not have_ours:
        tap.skip("check-file (ours)", why)
        return

    q = subprocess.run([ours, "-Q", "requests"], capture_output=True)
    listed = q.stdout.decode().split()
    tap.check("-Q requests lists check-file-name, check-file-handle, "
              "check-file", all(n in listed for n in CHECK_NAMES),
              "got %r" % listed)

    logf = os.path.join(base, "checkfile.log")
    a = Server([ours, "-e", "-l", "INFO"], cwd=root, stderr_path=logf)
    v = a.init()
    pairs = [(k, val) for k, val in v.extensions if k == "check-file"]
    tap.check("VERSION advertises one pair check-file = %s" % ADVERTISED,
              pairs == [("check-file", ADVERTISED)], "got %r" % pairs)

    # Whole file, every algorithm, under both of its names.
    for name, iana in ALGOS:
        for spelled in sorted({name, iana}):
            got = cf_result(check_file(a, "data", spelled))
            tap.check("check-file-name %s: whole file" % spelled,
                      got == (spelled, H(name, data)),
                      "got %r" % (got,))
    got = cf_result(check_file(a, "data", "SHA-512"))
    tap.check("algorithm names in any case; reply in the client's spelling",
              got == ("SHA-512", H("sha512", data)), "got %r" % (got,))
    got = cf_result(check_file(a, "data", "crc32,sha-256,md5"))
    tap.check("list crc32,sha-256,md5: sha-256 picked, reply says sha-256",
              got == ("sha-256", H("sha256", data)), "got %r" % (got,))
    for lst in ("crc32", "", "crc32,,adler32"):
        r = check_file(a, "data", lst)
        tap.check("list %r: OP_UNSUPPORTED" % lst,
                  is_status(r, FX_OP_UNSUPPORTED), st(r))

    # Ranges.
    got = cf_result(check_file(a, "data", "sha1", 12345, 100000))
    tap.check("range 12345+100000", got == ("sha1",
              H("sha1", data[12345:112345])), "got %r" % (got,))
    got = cf_result(check_file(a, "data", "md5", 1000000, 0))
    tap.check("start 1000000, length 0: to the end",
              got == ("md5", H("md5", data[1000000:])), "got %r" % (got,))
    tail = len(data) - 100
    got = cf_result(check_file(a, "data", "sha256", tail, 5000))
    tap.check("range past the end: clamped (hash of the last 100 bytes)",
              got == ("sha256", H("sha256", data[tail:])), "got %r" % (got,))
    got = cf_result(check_file(a, "data", "sha256", len(data) + 10, 0))
    tap.check("start beyond the end: hash of no bytes",
              got == ("sha256", H("sha256", b"")), "got %r" % (got,))
    for alg in ("md5", "sha256"):
        got = cf_result(check_file(a, "empty", alg))
        tap.check("0-byte file, %s: hash of empty input" % alg,
                  got == (alg, H(alg, b"")), "got %r" % (got,))
    # Per block there is one hash per block of data: none for no data.
    got = cf_result(check_file(a, "empty", "md5", 0, 0, 256))
    tap.check("0-byte file, block 256: no hashes", got == ("md5", b""),
              "got %r" % (got,))
    got = cf_result(check_file(a, "data", "md5", len(data), 0, 256))
    tap.check("start at the end, block 256: no hashes",
              got == ("md5", b""), "got %r" % (got,))
    # An unknown handle in a request cut short: the request is parsed
    # before the handle is judged, as for READ (BAD_MESSAGE).
    r = a.extended("check-file-handle", lambda p: p.string(b"xx")
                   .string("md5").u64(0))
    tap.check("unknown handle, request cut short: BAD_MESSAGE",
              is_status(r, FX_BAD_MESSAGE), st(r))
    for label, start, length in (("start 2^63", 1 << 63, 0),
                                 ("start 1, length 2^63-1", 1,
                                  (1 << 63) - 1),
                                 ("length 2^64-1", 0, (1 << 64) - 1)):
        r = check_file(a, "data", "sha256", start, length)
        tap.check("%s: FAILURE" % label, is_status(r, FX_FAILURE), st(r))

    # Blocks.
    for b in (1, 100, 255):
        r = check_file(a, "small", "sha256", 0, 0, b)
        tap.check("block size %d over 2000 bytes: FAILURE" % b,
                  is_status(r, FX_FAILURE), st(r))
    got = cf_result(check_file(a, "small", "sha256", 0, 0, 256))
    tap.check("block 256 over 2000 bytes: 8 hashes, the last of 208 bytes",
              got == ("sha256", blocks("sha256", small, 256)),
              "got %r" % (got,))
    got = cf_result(check_file(a, "data", "sha256", 0, 0, 65536))
    tap.check("block 65536 over 2 MiB + 333: 33 hashes, a short last one",
              got == ("sha256", blocks("sha256", data, 65536)),
              "got %r" % ((got[0], len(got[1])) if got else got,))
    got = cf_result(check_file(a, "data", "sha1", 777, 300000, 4096))
    tap.check("range 777+300000 in blocks of 4096",
              got == ("sha1", blocks("sha1", data[777:300777], 4096)),
              "got %r" % ((got[0], len(got[1])) if got else got,))
    got = cf_result(check_file(a, "data", "md5", 0, 0, 256))
    tap.check("block 256 md5 over 2 MiB + 333: 8194 hashes in one reply",
              got == ("md5", blocks("md5", data, 256)),
              "got %r" % ((got[0], len(got[1])) if got else got,))
    # One reply holds at most 256 KiB: 4000 SHA-512 hashes fit, 4100 not.
    got = cf_result(check_file(a, "data", "sha512", 0, 4000 * 256, 256))
    tap.check("block 256 sha512 over 4000 blocks (250 KiB of hashes): "
              "answered", got == ("sha512",
                                  blocks("sha512", data[:4000 * 256], 256)),
              "got %r" % ((got[0], len(got[1])) if got else got,))
    r = check_file(a, "data", "sha512", 0, 4100 * 256, 256)
    tap.check("block 256 sha512 over 4100 blocks (over 256 KiB): FAILURE",
              is_status(r, FX_FAILURE), st(r))
    r = check_file(a, "data", "sha512", 0, 0, 256)
    tap.check("block 256 sha512 over 2 MiB (8194 x 64 bytes): FAILURE "
              "Too many blocks", is_status(r, FX_FAILURE) and
              "Too many blocks" in (r.msg or ""), st(r))

    # Not a regular file, missing.
    r = check_file(a, "sub", "sha256")
    tap.check("a directory: FAILURE", is_status(r, FX_FAILURE), st(r))
    r = check_file(a, "missing", "sha256")
    tap.check("a missing file: NO_SUCH_FILE",
              is_status(r, FX_NO_SUCH_FILE), st(r))

    # Through a handle, under both names.
    h = a.open("data", FXF_READ).handle
    for n in ("check-file-handle", "check-file"):
        got = cf_result(check_file(a, h, "sha384", 5, 70000, 0, name=n))
        tap.check("%s on a read handle, range 5+70000" % n,
                  got == ("sha384", H("sha384", data[5:70005])),
                  "got %r" % (got,))
    a.close(h)
    r = check_file(a, b"no such handle", "sha256")
    tap.check("check-file-handle with an unknown handle: FAILURE",
              is_status(r, FX_FAILURE), st(r))

    # A staged upload: its own session hashes the staged data (by handle
    # and by name, however spelled); another session, the old file.
    b = Server([ours, "-e"], cwd=root)
    b.init()
    hw = a.open("staged", FXF_WRITE | FXF_CREAT | FXF_TRUNC).handle
    a.write(hw, 0, new)
    for label, target in (("check-file-handle on the write handle", hw),
                          ("check-file-name of the path", "staged"),
                          ("check-file-name of ./staged", "./staged"),
                          ("check-file-name of sub/../staged",
                           "sub/../staged")):
        got = cf_result(check_file(a, target, "sha256"))
        tap.check("before CLOSE, same session: %s = hash of the new data"
                  % label, got == ("sha256", H("sha256", new)),
                  "got %r" % (got,))
    got = cf_result(check_file(a, hw, "md5", 4, 0, 256, name="check-file"))
    tap.check("before CLOSE: \"check-file\" on the write handle, range 4+",
              got == ("md5", blocks("md5", new[4:], 256)), "got %r" % (got,))
    got = cf_result(check_file(b, "staged", "sha256"))
    tap.check("before CLOSE, another session: hash of the old content",
              got == ("sha256", H("sha256", old)), "got %r" % (got,))
    r = a.close(hw)
    tap.check("staged upload: close OK", r.code == FX_OK, st(r))
    ga = cf_result(check_file(a, "staged", "sha256"))
    gb = cf_result(check_file(b, "staged", "sha256"))
    tap.check("after CLOSE: both sessions hash the new content",
              ga == gb == ("sha256", H("sha256", new)),
              "got %r and %r" % (ga, gb))
    # A modification (no TRUNC) staged as a copy: the whole new content.
    hw = a.open("small", FXF_WRITE).handle
    a.write(hw, 1000, b"M" * 10)
    mod = small[:1000] + b"M" * 10 + small[1010:]
    got = cf_result(check_file(a, hw, "sha256"))
    tap.check("modification before CLOSE: check-file-handle hashes the "
              "whole new content", got == ("sha256", H("sha256", mod)),
              "got %r" % (got,))
    got = cf_result(check_file(b, "small", "sha256"))
    tap.check("modification before CLOSE: another session, the old",
              got == ("sha256", H("sha256", small)), "got %r" % (got,))
    a.close(hw)
    write_file(os.path.join(root, "small"), small)
    b.finish()
    a.finish()
    lines = log_text(logf)
    tap.check("INFO log line for check-file",
              any(re.search(r'check-file "data" algorithms "crc32,sha-256,'
                            r'md5" start 0 length 0 block 0$', l)
                  for l in lines), "no such line")

    # ATOMIC_UPLOAD_CHECK_FILE_MAX: bytes per request.
    env = dict(os.environ, ATOMIC_UPLOAD_CHECK_FILE_MAX="1000")
    c = Server([ours, "-e"], cwd=root, env=env)
    c.init()
    r = check_file(c, "small", "sha256")
    tap.check("CHECK_FILE_MAX=1000, 2000 bytes: FAILURE Range too large",
              is_status(r, FX_FAILURE) and "Range too large" in
              (r.msg or ""), st(r))
    r = check_file(c, "small", "sha256", 0, 0, 256)
    tap.check("CHECK_FILE_MAX=1000, 2000 bytes in blocks: FAILURE",
              is_status(r, FX_FAILURE), st(r))
    got = cf_result(check_file(c, "small", "sha256", 500, 1000))
    tap.check("CHECK_FILE_MAX=1000, range of 1000: answered",
              got == ("sha256", H("sha256", small[500:1500])),
              "got %r" % (got,))
    got = cf_result(check_file(c, "small", "sha256", 1500, 0))
    tap.check("CHECK_FILE_MAX=1000, start 1500 to the end (500): answered",
              got == ("sha256", H("sha256", small[1500:])),
              "got %r" % (got,))
    c.finish()

    # -P, -p and -R.
    c = Server([ours, "-e", "-P", "check-file-name"], cwd=root)
    v = c.init()
    r = check_file(c, "small", "sha256")
    tap.check("-P check-file-name: PERMISSION_DENIED",
              is_status(r, FX_PERMISSION_DENIED), st(r))
    h = c.open("small", FXF_READ).handle
    got = cf_result(check_file(c, h, "sha256"))
    tap.check("-P check-file-name: check-file-handle still answers",
              got == ("sha256", H("sha256", small)), "got %r" % (got,))
    tap.check("-P check-file-name: check-file still advertised",
              ("check-file", ADVERTISED) in v.extensions,
              "got %r" % v.extensions)
    c.finish()
    c = Server([ours, "-e", "-P", ",".join(CHECK_NAMES)], cwd=root)
    v = c.init()
    tap.check("-P all three: check-file not advertised",
              not any(k == "check-file" for k, _ in v.extensions),
              "got %r" % v.extensions)
    h = c.open("small", FXF_READ).handle
    codes = [check_file(c, "small", "sha256").code] + \
        [check_file(c, h, "sha256", name=n).code for n in CHECK_NAMES[1:]]
    tap.check("-P all three: each PERMISSION_DENIED",
              codes == [FX_PERMISSION_DENIED] * 3,
              "got %r" % [STATUS_NAMES.get(x, x) for x in codes])
    c.finish()
    c = Server([ours, "-e", "-p", "open,close,read,check-file"], cwd=root)
    v = c.init()
    tap.check("-p with only check-file of the three: still advertised",
              ("check-file", ADVERTISED) in v.extensions,
              "got %r" % v.extensions)
    r = check_file(c, "small", "sha256")
    h = c.open("small", FXF_READ).handle
    got = cf_result(check_file(c, h, "sha256", name="check-file"))
    tap.check("-p ...,check-file: check-file-name PERMISSION_DENIED, "
              "check-file answers", is_status(r, FX_PERMISSION_DENIED) and
              got == ("sha256", H("sha256", small)),
              "got %r and %r" % (r, got))
    c.finish()
    c = Server([ours, "-e", "-R"], cwd=root)
    c.init()
    got = cf_result(check_file(c, "small", "sha256"))
    tap.check("-R (read-only): check-file-name answers",
              got == ("sha256", H("sha256", small)), "got %r" % (got,))
    c.finish()


# ------------------------------------------------------------ paramiko

def run_paramiko(tap, port, key, path):
    import paramiko
    data = read_file(path)
    ours = not is_stock(ours_path())
    pkey = paramiko.Ed25519Key.from_private_key_file(key)
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect("127.0.0.1", port=port, username="root", pkey=pkey,
                   allow_agent=False, look_for_keys=False, timeout=20)
    sftp = client.open_sftp()
    f = sftp.open(path, "rb")
    if not ours:
        try:
            f.check("sha256")
            got = "an answer"
        except IOError as e:
            got = str(e)
        tap.check("stock: paramiko check() fails (%s)" % got,
                  got != "an answer")
        tap.skip("paramiko check-file (ours)", "stock has no check-file")
        f.close()
        client.close()
        return

    def call(*a):
        try:
            return f.check(*a)
        except IOError as e:
            return "IOError %s" % e

    tools = {"md5": "md5sum", "sha1": "sha1sum", "sha256": "sha256sum",
             "sha512": "sha512sum"}
    for alg, tool in tools.items():
        got = call(alg)
        out = subprocess.run([tool, path], capture_output=True).stdout
        coreutils = out.split()[0].decode() if out else None
        tap.check("paramiko check(%s), whole file: = hashlib and %s" %
                  (alg, tool), isinstance(got, bytes) and
                  got == H(alg, data) and got.hex() == coreutils,
                  "got %r, %s says %r" % (got, tool, coreutils))
        got = call(alg, 54321, 1000000)
        tap.check("paramiko check(%s, 54321, 1000000): the range" % alg,
                  got == H(alg, data[54321:1054321]), "got %r" % (got,))
    for alg, off, length, bs in (("sha256", 1000, 10000, 256),
                                 ("md5", 0, 0, 65536),
                                 ("sha512", 3, 200003, 65536),
                                 ("sha1", 0, 0, 1 << 20)):
        end = len(data) if length == 0 else off + length
        got = call(alg, off, length, bs)
        tap.check("paramiko check(%s, %d, %d, block %d): %d hashes, a short "
                  "last one" % (alg, off, length, bs,
                                -(-(end - off) // bs)),
                  got == blocks(alg, data[off:end], bs),
                  "got %r" % ((len(got), got[:8]) if isinstance(got, bytes)
                               else got,))
    got = call("sha256", 0, 2000, 100)
    tap.check("paramiko check with block 100: refused (IOError)",
              isinstance(got, str), "got %r" % (got,))
    f.close()
    # A write handle before close: the staged data.
    wpath = path + ".w"
    w = sftp.open(wpath, "wb")
    w.write(data[:300000])
    got = w.check("sha256")
    tap.check("paramiko check on a write handle before close: the staged "
              "data", got == H("sha256", data[:300000]))
    tap.check("paramiko write handle before close: nothing published",
              not os.path.exists(wpath))
    w.close()
    tap.check("paramiko write handle: published after close",
              os.path.exists(wpath) and read_file(wpath) == data[:300000])
    client.close()


# ---------------------------------------------------------------- user

def run_user(tap, base, secret, public):
    ours, stock = ours_path(), stock_path()
    have_ours = not is_stock(ours)
    data = payload(40000, 30)
    res = {}
    for label, path in (("ours", ours), ("stock", stock)):
        if label == "ours" and not have_ours:
            continue
        d = os.path.join(base, label)
        os.makedirs(d, exist_ok=True)
        s = Server([path, "-e", "-l", "VERBOSE"] +
                   (["-x"] if label == "ours" else []), cwd=d,
                   stderr_path=os.path.join(base, label + ".log"))
        s.init()
        r = s.upload("ro", data, attrs={"perm": 0o444})
        tap.check("as uid %d, %s: OPEN with mode 0444, write, close OK" %
                  (os.getuid(), label), r.code == FX_OK, st(r))
        r2 = s.upload("rw", data, attrs={"perm": 0o640})
        tap.check("as uid %d, %s: OPEN with mode 0640, write, close OK" %
                  (os.getuid(), label), r2.code == FX_OK, st(r2))
        if label == "ours":
            r = check_file(s, secret, "sha256")
            tap.check("check-file-name of root's 0600 file: "
                      "PERMISSION_DENIED", is_status(r,
                                                     FX_PERMISSION_DENIED),
                      st(r))
            got = cf_result(check_file(s, public, "sha256"))
            tap.check("check-file-name of root's 0644 file: answered",
                      got == ("sha256", H("sha256", read_file(public))),
                      "got %r" % (got,))
        s.finish()
        for n in ("ro", "rw"):
            p = os.path.join(d, n)
            try:
                sb = os.stat(p)
                res[(label, n)] = (sb.st_uid, sb.st_gid,
                                   "%04o" % (sb.st_mode & 0o7777),
                                   read_file(p))
            except OSError as e:
                res[(label, n)] = str(e)
    if not have_ours:
        tap.skip("0444 upload keeps mode 0444 and gets user.sha256",
                 "stock has no digests")
        return
    want = (os.getuid(), os.getgid(), "0444", data)
    tap.check("ours: the 0444 upload is ours, mode 0444, content intact",
              res.get(("ours", "ro")) == want,
              "got %r" % (res.get(("ours", "ro"), "")[:3],))
    p = os.path.join(base, "ours", "ro")
    tap.check("ours: the 0444 upload has user.sha256 = its SHA-256",
              getxattr(p) == sha256hex(data), "got %r" % getxattr(p))
    lines = log_text(os.path.join(base, "ours.log"))
    tap.check("ours: commit line for the 0444 upload carries the sha256",
              commit_line(lines, "ro") == (len(data), sha256hex(data)),
              "got %r" % (commit_line(lines, "ro"),))
    tap.check("ours: no xattr error logged for the 0444 upload",
              not any("not stored" in l for l in lines))
    for n in ("ro", "rw"):
        tap.check("%s: owner, group, mode as stock's (%r)" %
                  (n, res.get(("stock", n), "")[:3]),
                  res.get(("ours", n)) == res.get(("stock", n)),
                  "ours %r" % (res.get(("ours", n), "")[:3],))
    p = os.path.join(base, "stock", "ro")
    tap.note("stock's 0444 upload has user.sha256: %r" % getxattr(p))


def main(argv):
    tap = Tap()
    try:
        if len(argv) == 3 and argv[1] == "uploads":
            run_uploads(tap, os.path.abspath(argv[2]))
        elif len(argv) == 3 and argv[1] == "checkfile":
            run_checkfile(tap, os.path.abspath(argv[2]))
        elif len(argv) == 5 and argv[1] == "paramiko":
            run_paramiko(tap, int(argv[2]), argv[3], argv[4])
        elif len(argv) == 5 and argv[1] == "user":
            run_user(tap, os.path.abspath(argv[2]), argv[3], argv[4])
        else:
            sys.stderr.write(__doc__)
            return 2
    except Exception:
        import traceback
        tap.notok("%s did not complete" % argv[1], traceback.format_exc())
    return 1 if tap.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
