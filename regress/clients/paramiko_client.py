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
                        LOCAL in CHUNK-byte pieces; before close: stat of
                        the name shows the previous file, stat of the
                        handle the staged size, then chmod 0640 and utime
                        (MTIME, MTIME) through the handle, then close
  readback REMOTE       open "w+", write, seek back and read through the
                        same handle: the staged data
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


def mode_chunks(sftp, local, remote, chunk, mtime):
    data = open(local, "rb").read()
    try:
        before = sftp.stat(remote).st_size
    except IOError:
        before = None
    f = sftp.open(remote, "wb")
    f.set_pipelined(True)
    for off in range(0, len(data), chunk):
        f.write(data[off:off + chunk])
    f.flush()
    # While the upload is in flight the name shows the previous file.
    try:
        now = sftp.stat(remote).st_size
    except IOError:
        now = None
    expect("name shows the previous file while in flight", now, before)
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
            mode_chunks(sftp, args[1], args[2], int(args[3]), int(args[4]))
        elif mode == "readback":
            mode_readback(sftp, args[1])
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
