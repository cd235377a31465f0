#!/usr/bin/python3
"""One SFTP upload with paramiko, for the torture test.

usage: paramiko_up.py PORT USER KEY MODE LOCAL REMOTE

MODE
  put     SFTPClient.putfo (pipelined writes), then CLOSE; exit 0 when the
          server acknowledged everything
  vanish  open, write the first half pipelined, then leave without CLOSE
          and without closing the SSH session (os._exit): the server sees
          the connection drop with a write handle open
  hang    like vanish, but print "written" and wait to be killed
  resume  continue an interrupted upload as a resuming client does: STAT
          the remote name (for the same user the server shows the kept
          partial upload there), open it "r+" (no CREAT, no TRUNC), seek
          to its size and write the rest, then CLOSE; where there is
          nothing, upload the whole file ("wb").  Prints "from N" (N bytes
          were there) or "over" (started from nothing)
  append  like resume, but opens "a" (WRITE|CREAT|APPEND) and writes from
          the size paramiko finds on the handle (FSTAT), as "put -a" does

PARAMIKO_UP_PAUSE_MS: resume and append wait that long between the STAT
and the OPEN (a slow client, or a script that checks the local file's
start first).  "stat N" (or "stat none") is printed after the STAT.

Only 127.0.0.1 is contacted.  Exit status 0 on success, 1 on any error.
"""
import errno
import os
import sys
import time

import paramiko


def main(argv):
    if len(argv) != 7:
        sys.stderr.write(__doc__)
        return 2
    port, user, key, mode, local, remote = (int(argv[1]), argv[2], argv[3],
                                            argv[4], argv[5], argv[6])
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect("127.0.0.1", port=port, username=user, key_filename=key,
                   look_for_keys=False, allow_agent=False, timeout=20)
    sftp = client.open_sftp()
    if mode == "put":
        with open(local, "rb") as f:
            sftp.putfo(f, remote, confirm=True)
        sftp.close()
        client.close()
        return 0
    size = os.path.getsize(local)
    if mode in ("resume", "append"):
        return resume(sftp, client, mode, local, remote, size)
    remote_file = sftp.open(remote, "wb")
    remote_file.set_pipelined(True)
    with open(local, "rb") as f:
        remote_file.write(f.read(size // 2))
    remote_file.flush()
    if mode == "hang":
        sys.stdout.write("written\n")
        sys.stdout.flush()
        while True:
            time.sleep(60)
    # Gone without CLOSE: the kernel closes the socket.
    os._exit(0)


def resume(sftp, client, mode, local, remote, size):
    try:
        have = sftp.stat(remote).st_size
    except IOError as e:
        if getattr(e, "errno", None) != errno.ENOENT:
            raise
        have = None
    sys.stdout.write("stat %s\n" % ("none" if have is None else have))
    sys.stdout.flush()
    with open(local, "rb") as f:
        data = f.read()
    pause = int(os.environ.get("PARAMIKO_UP_PAUSE_MS", "0") or 0)
    if pause > 0:
        time.sleep(pause / 1000.0)
    if have is None:
        sys.stdout.write("over\n")
        sys.stdout.flush()
        remote_file = sftp.open(remote, "wb")
        off = 0
    else:
        if have > size:
            raise ValueError("remote %s has %d bytes, more than the %d of "
                             "%s" % (remote, have, size, local))
        remote_file = sftp.open(remote, "a" if mode == "append" else "r+")
        if mode == "append":
            off = remote_file.tell()  # paramiko's FSTAT of the handle
            if off > size:
                raise ValueError("handle of %s at %d, past %d" %
                                 (remote, off, size))
        else:
            off = have
            remote_file.seek(off)
        sys.stdout.write("from %d\n" % off)
        sys.stdout.flush()
    remote_file.set_pipelined(True)
    # In pieces, so that a kill can land in the middle.
    for i in range(off, size, 32768):
        remote_file.write(data[i:i + 32768])
    remote_file.close()  # raises if the server refused a write or CLOSE
    sftp.close()
    client.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Exception as e:  # any failure is the upload's failure
        sys.stderr.write("paramiko_up: %s: %s\n" % (type(e).__name__, e))
        sys.exit(1)
