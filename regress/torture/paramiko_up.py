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

Only 127.0.0.1 is contacted.  Exit status 0 on success, 1 on any error.
"""
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


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Exception as e:  # any failure is the upload's failure
        sys.stderr.write("paramiko_up: %s: %s\n" % (type(e).__name__, e))
        sys.exit(1)
