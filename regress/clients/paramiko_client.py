#!/usr/bin/python3
"""A paramiko SFTP client for regress/t-sftp-paramiko.sh.

usage: paramiko_client.py -p PORT -k KEY [-u USER] MODE ARGS...

Modes (every one prints "ok ..." lines on success and exits 0, or prints
the failure on stderr and exits 1):
  put LOCAL REMOTE      SFTPClient.put
  get REMOTE LOCAL      SFTPClient.get (paramiko prefetches: many READs
                        in flight)
  chunks LOCAL REMOTE CHUNK MTIME
                        open REMOTE "wb", set_pipelined(True), write
                        LOCAL in CHUNK-byte pieces; before close: stat and
                        read of the name show the previous file, stat of the
                        handle the staged size, then chmod 0640 and utime
                        (MTIME, MTIME) through the handle, then close
  readback REMOTE       open "w+", write, seek back and read through the
                        same handle: the staged data
  inflight DIR          names of uploads in flight changed by REMOVE,
                        RENAME, posix-rename, and their directory
                        renamed or removed; prints "SCENARIO STEP RESULT"
                        lines for the test to judge (RESULT is "ok" or
                        the error)
  vanish LOCAL REMOTE   write half of LOCAL to REMOTE and close the
                        transport without CLOSE; prints "written" first
  hang LOCAL REMOTE     write half, print "written", then sleep (to be
                        killed)
"""
import getopt
import os
import sys
import time

import paramiko


def connect(port, key, user):
    pkey = paramiko.Ed25519Key.from_private_key_file(key)
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect("127.0.0.1", port=port, username=user, pkey=pkey,
                   allow_agent=False, look_for_keys=False, timeout=20)
    return client, client.open_sftp()


def expect(what, got, want):
    if got != want:
        raise AssertionError("%s: got %r, want %r" % (what, got, want))
    print("ok %s" % what)


def mode_chunks(sftp, local, remote, chunk, mtime, other=None):
    data = open(local, "rb").read()
    try:
        before = sftp.stat(remote).st_size
        with sftp.open(remote, "rb") as r:
            before_data = r.read()
    except IOError:
        before = before_data = None
    f = sftp.open(remote, "wb")
    f.set_pipelined(True)
    for off in range(0, len(data), chunk):
        f.write(data[off:off + chunk])
    f.flush()
    # While the upload is in flight this session sees it at its name, as
    # it would see stock's file; other sessions see the previous file.
    try:
        now = sftp.stat(remote).st_size
    except IOError:
        now = None
    expect("this session's stat of the name shows the upload", now,
           len(data))
    try:
        with sftp.open(remote, "rb") as r:
            now_data = r.read()
    except IOError:
        now_data = None
    expect("this session's open for reading gets the upload", now_data,
           data)
    if other is not None:
        try:
            now = other.stat(remote).st_size
        except IOError:
            now = None
        expect("another session's stat shows the previous file", now,
               before)
        try:
            with other.open(remote, "rb") as r:
                now_data = r.read()
        except IOError:
            now_data = None
        expect("another session's open gets the previous content",
               now_data, before_data)
    expect("handle stat shows the staged size", f.stat().st_size,
           len(data))
    f.chmod(0o640)
    f.utime((mtime, mtime))
    st = f.stat()
    expect("handle stat shows the new mode", st.st_mode & 0o7777, 0o640)
    expect("handle stat shows the new mtime", st.st_mtime, mtime)
    f.close()
    st = sftp.stat(remote)
    expect("after close: size", st.st_size, len(data))
    expect("after close: mode", st.st_mode & 0o7777, 0o640)
    expect("after close: mtime", st.st_mtime, mtime)


def mode_readback(sftp, remote):
    f = sftp.open(remote, "w+")
    f.write(b"staged bytes, read back\n")
    f.flush()
    f.seek(7)
    got = f.read(5)
    expect("read through the write handle", got, b"bytes")
    f.close()


def outcome(fn):
    try:
        fn()
        return "ok"
    except IOError as e:
        return "error:%s" % (e.strerror or e.args[0] if e.args else e)


def checked_close(sftp, f):
    """Close f and report the server's status: SFTPFile.close() ignores
    a failed CLOSE (paramiko swallows the error)."""
    f.flush()
    f._closed = True
    sftp._request(paramiko.sftp.CMD_CLOSE, f.handle)


def mode_inflight(client, sftp, d):
    """Each scenario: open NAME for writing, write, act on the name while
    the handle is open, then close."""
    other = client.open_sftp()      # a second session (its own server)
    scenarios = [
        ("remove-new", "new-rm", lambda n: sftp.remove(n)),
        ("remove-old", "old-rm", lambda n: sftp.remove(n)),
        ("rename-new", "new-mv", lambda n: sftp.rename(n, n + ".moved")),
        ("rename-old", "old-mv", lambda n: sftp.rename(n, n + ".moved")),
        ("posix-rename-old", "old-pmv",
         lambda n: sftp.posix_rename(n, n + ".moved")),
        ("rename-dir", "dmv/f",
         lambda n: sftp.rename(d + "/dmv", d + "/dmv.moved")),
        ("rmdir-dir", "drm/f", lambda n: sftp.rmdir(d + "/drm")),
        ("rmdir-dir-other-session", "drm2/f",
         lambda n: other.rmdir(d + "/drm2")),
        ("remove-old-other-session", "old-rm2", lambda n: other.remove(n)),
    ]
    def other_writes(n):
        with other.open(n, "w") as g:
            g.write(b"written by the other session\n")
    scenarios += [
        # Exclusive create ("x": SSH_FXF_EXCL): another session creates
        # the name meanwhile; the commit must not replace it.
        ("excl-raced", "excl-new", other_writes),
    ]
    for label, name, act in scenarios:
        path = d + "/" + name
        f = sftp.open(path, "wbx" if label.startswith("excl") else "wb")
        f.write(("new content of %s\n" % name).encode())
        f.flush()
        print(label, "act", outcome(lambda: act(path)))
        print(label, "close", outcome(lambda: checked_close(sftp, f)),
              flush=True)
    # Exclusive create of a name that exists fails at open.
    print("excl-existing", "open",
          outcome(lambda: sftp.open(d + "/old-rm2", "wbx").close()))
    other.close()


def write_half(sftp, local, remote):
    data = open(local, "rb").read()
    f = sftp.open(remote, "wb")
    f.set_pipelined(True)
    half = data[:len(data) // 2]
    for off in range(0, len(half), 32768):
        f.write(half[off:off + 32768])
    f.flush()   # every WRITE answered
    print("written", flush=True)
    return f


def main(argv):
    opts, args = getopt.getopt(argv[1:], "p:k:u:")
    port, key, user = 22, None, "root"
    for o, v in opts:
        if o == "-p":
            port = int(v)
        elif o == "-k":
            key = v
        elif o == "-u":
            user = v
    if not args or key is None:
        sys.stderr.write(__doc__)
        return 2
    mode = args[0]
    client, sftp = connect(port, key, user)
    try:
        if mode == "put":
            sftp.put(args[1], args[2])
            print("ok put")
        elif mode == "get":
            sftp.get(args[1], args[2])
            print("ok get")
        elif mode == "chunks":
            other = client.open_sftp()  # a second session
            mode_chunks(sftp, args[1], args[2], int(args[3]), int(args[4]),
                        other)
            other.close()
        elif mode == "readback":
            mode_readback(sftp, args[1])
        elif mode == "inflight":
            mode_inflight(client, sftp, args[1])
        elif mode == "vanish":
            # Keep the file object: paramiko sends CLOSE when it is
            # garbage collected.
            f = write_half(sftp, args[1], args[2])
            # No CLOSE: the transport goes, the handle with it.
            client.get_transport().close()
            os._exit(0 if f else 1)
        elif mode == "hang":
            f = write_half(sftp, args[1], args[2])
            time.sleep(600)
            f.close()
        else:
            sys.stderr.write(__doc__)
            return 2
    except (AssertionError, IOError, paramiko.SSHException) as e:
        sys.stderr.write("%s: %s\n" % (mode, e))
        return 1
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
