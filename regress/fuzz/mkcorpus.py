#!/usr/bin/python3
"""Write the seed corpora of the SFTP harnesses: one small, valid session
per request type (and a few sequences), so the fuzzer starts past INIT
and past each handler's parser.

    regress/fuzz/mkcorpus.py [DIR]     (default: regress/fuzz/corpus)

The output is committed; rerun after adding a request type.  Files are
named after what they hold, so a diff shows what changed.

fuzz_scp_sink: see scp_seeds() below.
fuzz_sftp_server input: one byte of session options, then the stream.
The harness's scratch tree is f (33 bytes), d/g, l -> f, stg/; the first
handle a session hands out is index 0, then 1, ...
"""
import os
import struct
import sys

INIT, OPEN, CLOSE, READ, WRITE, LSTAT, FSTAT, SETSTAT = 1, 3, 4, 5, 6, 7, 8, 9
FSETSTAT, OPENDIR, READDIR, REMOVE, MKDIR, RMDIR = 10, 11, 12, 13, 14, 15
REALPATH, STAT, RENAME, READLINK, SYMLINK, EXTENDED = 16, 17, 18, 19, 20, 200
FXF_READ, FXF_WRITE, FXF_APPEND, FXF_CREAT, FXF_TRUNC, FXF_EXCL = (
    1, 2, 4, 8, 16, 32)
A_SIZE, A_UIDGID, A_PERM, A_TIME, A_EXT = 1, 2, 4, 8, 0x80000000

# Harness option bits (fuzz_sftp_server.c).
O_NAMED, O_TMPDIR, O_INPLACE, O_READONLY = 0x40, 0x80, 0x10, 0x01
O_RESUME = 0x0c


def u32(v):
    return struct.pack(">I", v)


def u64(v):
    return struct.pack(">Q", v)


def s(v):
    if isinstance(v, str):
        v = v.encode()
    return u32(len(v)) + v


def attrs(size=None, uidgid=None, perm=None, times=None, ext=None):
    flags, body = 0, b""
    if size is not None:
        flags |= A_SIZE
        body += u64(size)
    if uidgid is not None:
        flags |= A_UIDGID
        body += u32(uidgid[0]) + u32(uidgid[1])
    if perm is not None:
        flags |= A_PERM
        body += u32(perm)
    if times is not None:
        flags |= A_TIME
        body += u32(times[0]) + u32(times[1])
    if ext is not None:
        flags |= A_EXT
        body += u32(len(ext)) + b"".join(s(k) + s(v) for k, v in ext)
    return u32(flags) + body


class Stream:
    def __init__(self):
        self.out = b""
        self.id = 0

    def raw(self, body):
        self.out += u32(len(body)) + body
        return self

    def init(self):
        return self.raw(bytes([INIT]) + u32(3))

    def req(self, type_, *fields):
        self.id += 1
        return self.raw(bytes([type_]) + u32(self.id) + b"".join(fields))

    def ext(self, name, *fields):
        return self.req(EXTENDED, s(name), *fields)


H0, H1 = s(u32(0)), s(u32(1))


def server_seeds():
    def new():
        return Stream().init()
    seeds = {}
    wr = FXF_WRITE | FXF_CREAT | FXF_TRUNC
    seeds["init"] = new()
    seeds["open-write-close"] = (new().req(OPEN, s("new"), u32(wr),
                                           attrs(perm=0o644))
                                 .req(WRITE, H0, u64(0), s(b"hello\n"))
                                 .req(CLOSE, H0))
    seeds["open-declared-size"] = (new().req(OPEN, s("sized"), u32(wr),
                                             attrs(size=4))
                                   .req(WRITE, H0, u64(0), s(b"ab"))
                                   .req(CLOSE, H0))
    seeds["open-excl-append"] = (new().req(OPEN, s("f"), u32(FXF_WRITE |
                                                          FXF_APPEND),
                                           attrs())
                                 .req(WRITE, H0, u64(0), s(b"more"))
                                 .req(OPEN, s("x"), u32(wr | FXF_EXCL),
                                      attrs())
                                 .req(CLOSE, H0).req(CLOSE, H1))
    seeds["open-modify-no-close"] = (new().req(OPEN, s("d/g"),
                                               u32(FXF_READ | FXF_WRITE),
                                               attrs())
                                     .req(WRITE, H0, u64(100), s(b"hole")))
    seeds["open-read"] = (new().req(OPEN, s("f"), u32(FXF_READ), attrs())
                          .req(READ, H0, u64(0), u32(16))
                          .req(READ, H0, u64(16), u32(4096))
                          .req(READ, H0, u64(4096), u32(1))
                          .req(FSTAT, H0).req(CLOSE, H0))
    seeds["fsetstat"] = (new().req(OPEN, s("n"), u32(wr), attrs())
                         .req(FSETSTAT, H0, attrs(perm=0o600,
                                                  times=(1, 2)))
                         .req(FSETSTAT, H0, attrs(size=10,
                                                  uidgid=(0, 0)))
                         .req(CLOSE, H0))
    seeds["setstat"] = new().req(SETSTAT, s("f"), attrs(
        size=3, perm=0o640, times=(1000, 2000),
        ext=[("a@b", "c")]))
    seeds["stat-lstat"] = (new().req(STAT, s("l")).req(LSTAT, s("l"))
                           .req(STAT, s("nope"), u32(0)))
    seeds["dir"] = (new().req(OPENDIR, s(".")).req(READDIR, H0)
                    .req(READDIR, H0).req(CLOSE, H0))
    seeds["mkdir-rmdir"] = (new().req(MKDIR, s("m"), attrs(perm=0o755))
                            .req(RMDIR, s("m")).req(RMDIR, s("d")))
    seeds["remove"] = new().req(REMOVE, s("d/g")).req(REMOVE, s("l"))
    seeds["realpath"] = (new().req(REALPATH, s(".")).req(REALPATH, s(""))
                         .req(REALPATH, s("d/../l")))
    seeds["rename"] = (new().req(RENAME, s("f"), s("f2"))
                       .req(RENAME, s("d/g"), s("f2")))
    seeds["symlink-readlink"] = (new().req(SYMLINK, s("t"), s("s"))
                                 .req(READLINK, s("s"))
                                 .req(READLINK, s("l")))
    seeds["posix-rename"] = new().ext("posix-rename@openssh.com", s("f"),
                                      s("d/g"))
    seeds["statvfs"] = (new().ext("statvfs@openssh.com", s("."))
                        .req(OPEN, s("f"), u32(FXF_READ), attrs())
                        .ext("fstatvfs@openssh.com", H0))
    seeds["hardlink"] = new().ext("hardlink@openssh.com", s("f"), s("h"))
    seeds["fsync"] = (new().req(OPEN, s("y"), u32(wr), attrs())
                      .req(WRITE, H0, u64(0), s(b"z"))
                      .ext("fsync@openssh.com", H0).req(CLOSE, H0))
    seeds["lsetstat"] = new().ext("lsetstat@openssh.com", s("l"),
                                  attrs(times=(5, 6)))
    seeds["limits"] = new().ext("limits@openssh.com")
    seeds["expand-path"] = (new().ext("expand-path@openssh.com", s("~/d"))
                            .ext("expand-path@openssh.com", s("~fuzz")))
    seeds["copy-data"] = (new().req(OPEN, s("f"), u32(FXF_READ), attrs())
                          .req(OPEN, s("c"), u32(wr), attrs())
                          .ext("copy-data", H0, u64(2), u64(10), H1,
                               u64(0))
                          .req(CLOSE, H1).req(CLOSE, H0))
    seeds["home-directory"] = new().ext("home-directory", s("fuzz"))
    seeds["users-groups-by-id"] = new().ext(
        "users-groups-by-id@openssh.com", s(u32(0) + u32(1)),
        s(u32(0) + u32(65534)))
    seeds["check-file"] = (new().ext("check-file-name", s("f"),
                                     s("crc32,sha-256,md5"), u64(0), u64(0),
                                     u32(0))
                           .ext("check-file-name", s("f"), s("sha512"),
                                u64(1), u64(300), u32(256))
                           .req(OPEN, s("c"), u32(wr), attrs())
                           .req(WRITE, H0, u64(0), s(b"x" * 300))
                           .ext("check-file-handle", H0, s("sha1"), u64(0),
                                u64(0), u32(0))
                           .ext("check-file", H0, s("md5"), u64(0), u64(0),
                                u32(256))
                           .ext("check-file-name", s("c"), s("sha-224"),
                                u64(0), u64(0), u32(0))
                           .req(CLOSE, H0))
    seeds["unknown"] = new().req(99).ext("nope@example.com")
    seeds["before-init"] = Stream().req(STAT, s("f")).init()
    out = {}
    for name, st in seeds.items():
        out[name] = bytes([0]) + st.out
    # The same upload under the other staging methods.
    up = seeds["open-write-close"].out
    out["named-upload"] = bytes([O_NAMED]) + up
    out["tmpdir-upload"] = bytes([O_TMPDIR]) + up
    out["inplace-modify"] = bytes([O_INPLACE]) + seeds[
        "open-modify-no-close"].out
    out["readonly"] = bytes([O_READONLY]) + up
    # Resumable uploads: the stream runs twice, the first session lost.
    # An upload never closed is kept, then continued (no TRUNC), looked
    # at, and listed; a replacement is kept, then refused while another
    # is in flight, then replaced; a kept one is removed.
    resume_new = (new().req(STAT, s("r"))
                  .req(OPEN, s("r"), u32(FXF_WRITE | FXF_CREAT), attrs())
                  .req(WRITE, H0, u64(0), s(b"resumed "))
                  .req(OPENDIR, s(".")).req(READDIR, H1).req(CLOSE, H1))
    out["resume-new"] = bytes([O_RESUME]) + resume_new.out
    resume_replace = (new().req(OPEN, s("f"), u32(FXF_WRITE | FXF_APPEND),
                                attrs())
                      .req(WRITE, H0, u64(0), s(b"more"))
                      .req(OPEN, s("f"), u32(wr), attrs())
                      .req(WRITE, H1, u64(0), s(b"new"))
                      .req(OPEN, s("f"), u32(FXF_WRITE), attrs()))
    out["resume-replace"] = bytes([O_RESUME | O_NAMED]) + resume_replace.out
    resume_remove = (new().req(OPEN, s("d/k"), u32(FXF_WRITE | FXF_CREAT),
                               attrs())
                     .req(WRITE, H0, u64(0), s(b"kept"))
                     .req(REMOVE, s("d/k")).req(RENAME, s("d/k"), s("d/m"))
                     .req(OPEN, s("d/k"), u32(FXF_READ), attrs())
                     .req(READ, H1, u64(0), u32(16)))
    out["resume-tmpdir"] = bytes([O_RESUME | O_TMPDIR]) + resume_remove.out
    return out


def codec_seeds():
    # The codec harness takes the bare stream: the server seeds minus
    # their option byte, and some framing edge cases.
    out = {n: b[1:] for n, b in server_seeds().items()}
    out["frame-empty"] = u32(0)
    out["frame-short"] = u32(10) + b"\x11"
    out["frame-huge"] = u32(0xffffffff)
    return out


def scp_seeds():
    # fuzz_scp_sink input: one option byte (bit 0 -r, bit 1 -p, bit 2 -d,
    # bit 3 target t/one, bits 4-7 staging variations), then what the
    # sender sends; the target is t/, holding t/old.
    R, P, ONE, NAMED = 0x01, 0x02, 0x08, 0x10
    rp = R | P
    seeds = {
        "file": (0, b"C0644 5 a\nhello\0"),
        "file-empty": (0, b"C0644 0 e\n\0"),
        "file-replace": (0, b"C0600 3 old\nnew\0"),
        "file-times": (P, b"T1700000000 0 1700000001 0\nC0640 2 b\nhi\0"),
        "file-one-target": (ONE, b"C0644 3 x\nabc\0"),
        "file-named-temp": (NAMED, b"C0644 4 n\ndata\0"),
        "two-files": (0, b"C0644 1 a\na\0C0755 2 b\nbb\0"),
        "dir": (rp, b"T1 0 2 0\nD0755 0 sub\nC0644 2 x\nhi\0"
                    b"D0700 0 deeper\nC0600 1 y\ny\0E\nE\n"),
        "sender-warning": (0, b"\x01scp: warning from the sender\n"
                              b"C0644 1 w\nw\0"),
        "sender-fatal": (0, b"\x02scp: fatal from the sender\n"),
        "sender-bad-status": (0, b"C0644 2 y\nhi\x01scp: read error\n"),
        "truncated-data": (0, b"C0644 100 t\nonly some of it"),
        "bad-name": (0, b"C0644 1 ../x\nx\0"),
        "bad-mode": (0, b"C9999 1 m\nm\0"),
        "escaped-name": (0, b"C0644 1 a\\^Jb\nz\0"),
        "end-at-top": (rp, b"E\n"),
    }
    return {n: bytes([o]) + b for n, (o, b) in seeds.items()}


def write(dir_, seeds):
    os.makedirs(dir_, exist_ok=True)
    for name in os.listdir(dir_):
        os.unlink(os.path.join(dir_, name))
    for name, data in sorted(seeds.items()):
        with open(os.path.join(dir_, name), "wb") as f:
            f.write(data)


def main():
    top = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus")
    write(os.path.join(top, "sftp_server"), server_seeds())
    write(os.path.join(top, "sftp_codec"), codec_seeds())
    write(os.path.join(top, "scp_sink"), scp_seeds())


if __name__ == "__main__":
    main()
