#!/usr/bin/python3
"""Run a command with stdin from /dev/null and print what it did: its
exit status, its standard output and error, and every datagram it sent
to /dev/log.  Meant to run in a private mount namespace whose /dev is a
fresh tmpfs (regress/t-sftp-flags.sh), so that this program, not the
system, owns /dev/log.

usage: syslog_catch.py COMMAND [ARGS...]

Output lines: "exit N", then "stdout: ...", "stderr: ..." and
"syslog: <PRI> TAG: MESSAGE" (time stamp and process id taken out, so
that two programs' runs can be compared).  A usage message on stderr is
printed as one line "stderr: (usage)", since ours lists more options.
"""
import os
import re
import socket
import subprocess
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        os.unlink("/dev/log")
    except FileNotFoundError:
        pass
    sock.bind("/dev/log")
    os.chmod("/dev/log", 0o666)
    proc = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sock.setblocking(False)
    lines = ["exit %d" % proc.returncode]
    for l in proc.stdout.decode("utf-8", "replace").splitlines():
        lines.append("stdout: " + l)
    err = proc.stderr.decode("utf-8", "replace")
    if err.startswith("usage: "):
        lines.append("stderr: (usage)")
    else:
        for l in err.splitlines():
            lines.append("stderr: " + l.rstrip("\r"))
    while True:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            break
        text = data.decode("utf-8", "replace")
        text = re.sub(r"^(<\d+>)[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d ",
                      r"\1 ", text)
        text = re.sub(r"^(<\d+> [^:\[ ]*)\[\d+\]:", r"\1:", text)
        lines.append("syslog: " + text)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
