#!/usr/bin/python3
"""A proxy command that slows a client's uploads down: it connects to
HOST:PORT and relays standard input to the socket at most RATE bytes a
second, and the socket to standard output as it comes.  It ends when
either side does.  (psftp has no rate limit; regress/t-resume.sh gives
it this as -proxycmd so that an upload can be cut half-way.)

usage: slowpipe.py HOST PORT RATE [PIDFILE]

PIDFILE, if given, gets this process's PID appended (the test kills
what it started by PID at exit).
"""
import os
import select
import socket
import sys
import time

BLOCK = 16384


def main(argv):
    if len(argv) not in (4, 5):
        sys.stderr.write(__doc__)
        return 2
    host, port, rate = argv[1], int(argv[2]), float(argv[3])
    if len(argv) == 5:
        with open(argv[4], "a") as f:
            f.write("%d\n" % os.getpid())
    sock = socket.create_connection((host, port))
    # Small writes must not wait for the peer's delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    start = time.monotonic()
    sent = 0
    inputs = [0, sock]
    while inputs:
        r, _, _ = select.select(inputs, [], [])
        if sock in r:
            data = sock.recv(1 << 16)
            if not data:
                return 0
            # Acknowledge at once: the server's small replies otherwise
            # wait for a delayed ACK (Nagle's algorithm at sshd's end).
            if hasattr(socket, "TCP_QUICKACK"):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            os.write(1, data)
        if 0 in r:
            data = os.read(0, BLOCK)
            if not data:
                sock.shutdown(socket.SHUT_WR)
                inputs.remove(0)
                continue
            sock.sendall(data)
            sent += len(data)
            if rate > 0:
                ahead = sent / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
                elif ahead < -0.1:
                    # A slow spell earns no burst: at most 0.1 s of
                    # credit.
                    start = time.monotonic() - sent / rate - 0.1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (BrokenPipeError, ConnectionError):
        sys.exit(0)
