#!/usr/bin/python3
"""Drive one upload into a server program over pipes, for the server-level
fault tests (regress/t-faults-server.sh), and print what the client heard.

usage: faultdrive.py sftp NAME SIZE -- SERVER-COMMAND...
       faultdrive.py scp NAME SIZE -- SINK-COMMAND...

sftp: SSH_FXP_INIT, OPEN(NAME, WRITE|CREAT|TRUNC), WRITEs of 32 KiB
      covering SIZE bytes (each answered before the next, so a failing
      write is seen at its own request), CLOSE.  Prints one line:
          open=STATUS write=STATUS close=STATUS msg="..." exit=N
      where write is the first non-OK write status (OK if none), close is
      "-" when no handle was obtained, msg the first error message.
sftp-many: the same with SIZE bytes to each of the names NAME.0, NAME.1,
      ... until OPEN fails or 64 names (for descriptor exhaustion).
scp:  the source side of the legacy protocol to a sink ("scp -t DIR"):
      wait for the sink's \\0, send "C0644 SIZE NAME", the data and the
      trailing \\0.  Prints one line:
          ready=OK header=OK|ERR data=OK|EPIPE end=OK|ERR msg="..." exit=N
      msg is the text of the first \\1 or \\2 message.

The data is SIZE bytes of "y".  The command's environment is inherited:
put LD_PRELOAD and FAULTSHIM in the command (env VAR=... prog), not in
this program's environment, or the shim would act on this program too.
"""
import os
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                ".."))
import sftp_raw as sr  # noqa: E402

CHUNK = 32768


def drive_sftp(names, size, argv):
    srv = sr.Server(argv, stderr_path="/dev/stderr")
    fields = {"open": "-", "write": "OK", "close": "-"}
    msg = ""
    opened = 0
    try:
        srv.init()
        for name in names:
            r = srv.open(name, sr.FXF_WRITE | sr.FXF_CREAT | sr.FXF_TRUNC)
            fields["open"] = r.status()
            if r.type != sr.FXP_HANDLE:
                msg = msg or (r.msg or "")
                break
            opened += 1
            h = r.handle
            off = 0
            while off < size:
                n = min(CHUNK, size - off)
                w = srv.write(h, off, b"y" * n)
                if w.code != sr.FX_OK and fields["write"] == "OK":
                    fields["write"] = w.status()
                    msg = msg or (w.msg or "")
                off += n
            c = srv.close(h)
            if fields["close"] in ("-", "OK"):
                fields["close"] = c.status()
            if c.code != sr.FX_OK:
                msg = msg or (c.msg or "")
    except (sr.ServerGone, sr.ParseError) as e:
        msg = msg or ("server gone: %s" % e)
    status = srv.finish()
    out = "open=%s write=%s close=%s" % (fields["open"], fields["write"],
                                         fields["close"])
    if len(names) > 1:
        out += " opened=%d" % opened
    print('%s msg="%s" exit=%s' % (out, msg, status))


def read_reply(proc, timeout=20.0):
    """The sink's answer: ("OK", "") or ("ERR", text); ("EOF", "")."""
    fd = proc.stdout.fileno()
    r, _, _ = select.select([fd], [], [], timeout)
    if not r:
        return "TIMEOUT", ""
    b = os.read(fd, 1)
    if not b:
        return "EOF", ""
    if b == b"\0":
        return "OK", ""
    text = bytearray()
    deadline = time.monotonic() + timeout
    while not text.endswith(b"\n") and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 1.0)
        if r:
            c = os.read(fd, 1)
            if not c:
                break
            text += c
    return "ERR", text.decode("utf-8", "replace").strip()


def drive_scp(name, size, argv):
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    f = {"ready": "-", "header": "-", "data": "-", "end": "-"}
    msg = ""
    try:
        f["ready"], m = read_reply(proc)
        msg = msg or m
        if f["ready"] == "OK":
            proc.stdin.write(b"C0644 %d %s\n" % (size, name.encode()))
            proc.stdin.flush()
            f["header"], m = read_reply(proc)
            msg = msg or m
        if f["header"] == "OK":
            f["data"] = "OK"
            off = 0
            try:
                while off < size:
                    n = min(CHUNK, size - off)
                    proc.stdin.write(b"y" * n)
                    off += n
                proc.stdin.write(b"\0")
                proc.stdin.flush()
            except BrokenPipeError:
                f["data"] = "EPIPE"
            f["end"], m = read_reply(proc)
            msg = msg or m
    except BrokenPipeError:
        msg = msg or "sink gone"
    try:
        proc.stdin.close()
    except BrokenPipeError:
        pass
    try:
        status = proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        status = proc.wait()
    print('ready=%s header=%s data=%s end=%s msg="%s" exit=%s' %
          (f["ready"], f["header"], f["data"], f["end"], msg, status))


def main(argv):
    if len(argv) < 6 or argv[4] != "--":
        sys.stderr.write(__doc__)
        return 2
    what, name, size, cmd = argv[1], argv[2], int(argv[3]), argv[5:]
    if what == "sftp":
        drive_sftp([name], size, cmd)
    elif what == "sftp-many":
        drive_sftp(["%s.%d" % (name, i) for i in range(64)], size, cmd)
    elif what == "scp":
        drive_scp(name, size, cmd)
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
