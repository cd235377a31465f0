#!/usr/bin/python3
"""Run one short SFTP session against a server and print what it sent to
syslog.  Meant to run in a private mount namespace whose /dev is a fresh
tmpfs (regress/t-sftp-flags.sh), so that this program, not the system,
owns /dev/log.

usage: syslog_session.py DEST SERVER [ARGS...]

The session: INIT, OPEN DEST for writing (create, truncate), WRITE 5
bytes, CLOSE, STAT of DEST.missing (fails), then end of input.  Each
datagram received is printed as "<PRI> TAG: MESSAGE", the time stamp
and the process id taken out, so two servers can be compared.
"""
import os
import re
import socket
import struct
import subprocess
import sys
import time


def packet(ptype, body):
    return struct.pack(">IB", len(body) + 1, ptype) + body


def sstring(b):
    return struct.pack(">I", len(b)) + b


def read_packet(f):
    head = f.read(4)
    if len(head) < 4:
        raise EOFError("server closed its output")
    (n,) = struct.unpack(">I", head)
    return f.read(n)


def session(argv, dest):
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    send = lambda b: (p.stdin.write(b), p.stdin.flush())
    send(packet(1, struct.pack(">I", 3)))
    read_packet(p.stdout)
    # OPEN: WRITE|CREAT|TRUNC, no attributes.
    send(packet(3, struct.pack(">I", 1) + sstring(dest.encode()) +
                struct.pack(">II", 0x02 | 0x08 | 0x10, 0)))
    reply = read_packet(p.stdout)
    if reply[0] != 102:
        raise RuntimeError("open failed: %r" % reply)
    (hlen,) = struct.unpack(">I", reply[5:9])
    handle = reply[9:9 + hlen]
    send(packet(6, struct.pack(">I", 2) + sstring(handle) +
                struct.pack(">Q", 0) + sstring(b"hello")))
    read_packet(p.stdout)
    send(packet(4, struct.pack(">I", 3) + sstring(handle)))
    read_packet(p.stdout)
    send(packet(17, struct.pack(">I", 4) +
                sstring((dest + ".missing").encode())))
    read_packet(p.stdout)
    p.stdin.close()
    p.wait()


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    dest = argv[1]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        os.unlink("/dev/log")
    except FileNotFoundError:
        pass
    sock.bind("/dev/log")
    sock.settimeout(0.3)
    session(argv[2:], dest)
    stamp = re.compile(r"^(<[0-9]+>)[A-Z][a-z]{2} [ 0-9]{2} [0-9:]{8} "
                       r"([^:\[]+)(\[[0-9]+\])?: ")
    while True:
        try:
            msg = sock.recv(65536).decode(errors="replace")
        except socket.timeout:
            break
        print(stamp.sub(r"\1 \2: ", msg.rstrip("\n")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
