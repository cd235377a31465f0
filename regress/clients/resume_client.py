#!/usr/bin/python3
"""paramiko as regress/t-resume.sh drives it: uploads cut on purpose,
resumed the ways GUI clients and scripts resume, and the questions a
session asks about a name (stat, listing, read, exclusive create).

usage: resume_client.py PORT KEY USER MODE ARGS...

Modes (sizes in bytes; paths as the server sees them):
  part SRC DEST N     open DEST for writing (truncating), write the first
                      N bytes of SRC one acknowledged WRITE at a time,
                      print "ready", then wait until the connection is
                      cut (the test kills this client or its session)
  resume SRC DEST HOW continue DEST from its size as this user's session
                      sees it (0 if it does not exist): HOW "rplus" opens
                      it "r+" and seeks there, "append" opens it "a" (the
                      size then comes from the handle); prints "from N"
  put SRC DEST        a plain upload
  rename OLD NEW      SSH_FXP_RENAME
  remove PATH         SSH_FXP_REMOVE
  stat PATH           prints the size, or "ENOENT"
  list DIR NAME       prints NAME's size in a listing, or "absent"
  get PATH OUT        downloads PATH to the local file OUT
  excl PATH           exclusive create (WRITE|CREAT|EXCL), closed at
                      once: prints "refused" or "created"
  xmode PATH          the same with paramiko's open(PATH, "x"), which
                      sends CREAT|EXCL without WRITE
  malformed SRC DEST N  writes N bytes of SRC to DEST, then sends a
                      packet of an impossible length (lost framing)
  cancel SRC DEST N   declares the size of SRC in the OPEN's attributes,
                      writes N bytes of it, closes: prints "close ok" or
                      "close failed: WHY"
Exit status 0 unless the mode's operation failed; errors go to stderr.
"""
import os
import socket
import sys
import time

import paramiko
from paramiko.sftp import CMD_CLOSE, CMD_HANDLE, CMD_OPEN
from paramiko.sftp_attr import SFTPAttributes
from paramiko.sftp_client import (SFTP_FLAG_CREATE, SFTP_FLAG_EXCL,
                                  SFTP_FLAG_TRUNC, SFTP_FLAG_WRITE)
from paramiko.sftp_file import SFTPFile

CHUNK = 32768


def out(*words):
    print(*words, flush=True)


def send_from(f, g, start):
    """Write the local file f from offset start to the remote file g."""
    f.seek(start)
    while True:
        block = f.read(CHUNK)
        if not block:
            break
        g.write(block)


def main(argv):
    port, key, user, mode = argv[1:5]
    args = argv[5:]
    c = paramiko.SSHClient()
    c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    c.connect("127.0.0.1", port=int(port), username=user,
              pkey=paramiko.Ed25519Key.from_private_key_file(key),
              allow_agent=False, look_for_keys=False, timeout=30)
    # Without it each acknowledged WRITE waits for a delayed ACK.
    c.get_transport().sock.setsockopt(socket.IPPROTO_TCP,
                                      socket.TCP_NODELAY, 1)
    s = c.open_sftp()
    if mode == "part":
        src, dest, n = args[0], args[1], int(args[2])
        g = s.open(dest, "w")
        with open(src, "rb") as f:
            left = n
            while left > 0:
                block = f.read(min(CHUNK, left))
                g.write(block)
                left -= len(block)
        g.flush()
        out("ready")
        # Never closed: the test cuts the connection.
        t = c.get_transport()
        while t.is_active():
            time.sleep(0.1)
        os._exit(0)
    elif mode == "resume":
        src, dest, how = args
        try:
            n = s.stat(dest).st_size
        except FileNotFoundError:
            n = 0
        with open(src, "rb") as f:
            if how == "append":
                g = s.open(dest, "a")
                n = g.tell()
            elif n == 0:
                g = s.open(dest, "w")
            else:
                g = s.open(dest, "r+")
                g.seek(n)
            # Not pipelined: paramiko drops the status of a pipelined
            # WRITE, and a refusal may come at the first write.
            send_from(f, g, n)
            g.flush()
            # SFTPFile.close() would swallow the close's status.
            g._closed = True
            s._request(CMD_CLOSE, g.handle)
        out("from", n)
    elif mode == "put":
        s.put(args[0], args[1])
    elif mode == "rename":
        s.rename(args[0], args[1])
    elif mode == "remove":
        s.remove(args[0])
    elif mode == "stat":
        try:
            out(s.stat(args[0]).st_size)
        except FileNotFoundError:
            out("ENOENT")
    elif mode == "list":
        sizes = dict((a.filename, a.st_size) for a in s.listdir_attr(args[0]))
        out(sizes.get(args[1], "absent"))
    elif mode == "get":
        s.get(args[0], args[1])
    elif mode in ("excl", "xmode"):
        # excl: WRITE|CREAT|EXCL, as open(2) with O_WRONLY|O_CREAT|O_EXCL
        # sends it (sshfs); xmode: paramiko's "x", CREAT|EXCL alone.
        try:
            if mode == "xmode":
                s.open(args[0], "x").close()
            else:
                t, msg = s._request(CMD_OPEN, args[0], SFTP_FLAG_WRITE |
                                    SFTP_FLAG_CREATE | SFTP_FLAG_EXCL,
                                    SFTPAttributes())
                s._request(CMD_CLOSE, msg.get_binary())
        except IOError as e:
            out("refused", e)
        else:
            out("created")
    elif mode == "malformed":
        # N bytes written, then a packet longer than any server accepts:
        # the framing is lost and the server ends the session.
        src, dest, n = args[0], args[1], int(args[2])
        g = s.open(dest, "w")
        with open(src, "rb") as f:
            g.write(f.read(n))
        g.flush()
        s.sock.sendall(b"\x7f\xff\xff\xf0\x06" + b"\0" * 64)
        out("sent")
        t = c.get_transport()
        end = time.monotonic() + 10
        while t.is_active() and not s.sock.closed and \
                not s.sock.exit_status_ready() and time.monotonic() < end:
            time.sleep(0.1)
        os._exit(0)
    elif mode == "cancel":
        src, dest, n = args[0], args[1], int(args[2])
        attrs = SFTPAttributes()
        attrs.st_size = os.path.getsize(src)
        t, msg = s._request(CMD_OPEN, dest,
                            SFTP_FLAG_WRITE | SFTP_FLAG_CREATE |
                            SFTP_FLAG_TRUNC, attrs)
        if t != CMD_HANDLE:
            raise IOError("open: unexpected reply %d" % t)
        handle = msg.get_binary()
        g = SFTPFile(s, handle, "wb")
        with open(src, "rb") as f:
            g.write(f.read(n))
        g.flush()
        # SFTPFile.close() would swallow the close's status.
        g._closed = True
        try:
            s._request(CMD_CLOSE, handle)
        except IOError as e:
            out("close failed:", e)
        else:
            out("close ok")
    else:
        sys.stderr.write(__doc__)
        return 2
    c.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
