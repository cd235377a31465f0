#!/usr/bin/python3
"""Hostile SFTP clients over raw packets, for regress/t-hostile.sh.  Each
prints "key=value" words on one line for the shell to check.

usage: hostile.py handles DIR COUNT -- SERVER-COMMAND...
    OPEN COUNT new files DIR/h.N for writing, pipelined 200 at a time,
    never closing one; then a WRITE and a STAT to see the server still
    serves; then EOF.  Prints the limits extension's open-handle figure,
    how many OPENs got a handle and how many a status (and which), the
    server's peak RSS (VmHWM, KiB) and its exit status.
usage: hostile.py flood FILE MIB INFLIGHT -- SERVER-COMMAND...
    One upload of MIB MiB in WRITEs of 255 KiB (the most a 256 KiB
    message carries), with up to INFLIGHT requests unanswered at any
    time, sent by a thread while another reads the replies.  Prints the
    statuses, the server's peak RSS and its exit status.
usage: hostile.py badoffset FILE -- SERVER-COMMAND...
    OPEN FILE, a good WRITE, a WRITE past the largest file offset (the
    server must refuse it), another good WRITE, CLOSE: prints the
    statuses.  Refused data is missing data: the CLOSE must not commit.
usage: hostile.py swap DIR -- SERVER-COMMAND...
    OPEN DIR/sub/f, write half, rename DIR/sub to DIR/sub.old and make
    DIR/sub a symlink to DIR/other (behind the server's back), write the
    rest, CLOSE.  Prints the CLOSE status and where the data landed.
"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                ".."))
import sftp_raw as sr  # noqa: E402


def vm_hwm(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def limits(srv):
    r = srv.extended("limits@openssh.com")
    if r.type != sr.FXP_EXTENDED_REPLY:
        return None
    rd = sr.Reader(r.ext)
    return [rd.u64() for _ in range(4)]


def request(srv, ptype, build):
    rid = srv.new_id()
    pkt = sr.Packet(ptype).u32(rid)
    build(pkt)
    return rid, pkt.framed()


def do_handles(d, count, argv):
    srv = sr.Server(argv, stderr_path="/dev/stderr")
    srv.init()
    lim = limits(srv)
    handles, statuses = [], {}
    batch = 200
    flags = sr.FXF_WRITE | sr.FXF_CREAT | sr.FXF_TRUNC
    for start in range(0, count, batch):
        n = min(batch, count - start)
        ids, data = [], bytearray()
        for i in range(start, start + n):
            path = os.path.join(d, "h.%d" % i)
            rid, b = request(srv, sr.FXP_OPEN,
                             lambda p, path=path: p.string(path).u32(flags)
                             .attrs(None))
            ids.append(rid)
            data += b
        srv.send_raw(bytes(data))
        for rid in ids:
            r = srv.reply(timeout=30)
            if r is None:
                raise sr.ParseError("no reply to OPEN %d" % rid)
            if r.id != rid:
                raise sr.ParseError("reply id %r, want %d" % (r.id, rid))
            if r.type == sr.FXP_HANDLE:
                handles.append(r.handle)
            else:
                k = r.status()
                statuses[k] = statuses.get(k, 0) + 1
    # Still serving: a write through the first handle, a stat.
    w = srv.write(handles[0], 0, b"x").status() if handles else "-"
    s = srv.stat(d).status()
    hwm = vm_hwm(srv.pid)
    status = srv.finish(timeout=60)
    print("limit=%s handles=%d refused=%d statuses=%s write=%s stat=%s "
          "hwm_kib=%d exit=%s" %
          (lim[3] if lim else "-", len(handles), sum(statuses.values()),
           ",".join("%s:%d" % kv for kv in sorted(statuses.items())) or "-",
           w, s, hwm, status))


def do_flood(path, mib, inflight, argv):
    srv = sr.Server(argv, stderr_path="/dev/stderr")
    srv.init()
    r = srv.open(path, sr.FXF_WRITE | sr.FXF_CREAT | sr.FXF_TRUNC)
    if r.type != sr.FXP_HANDLE:
        print("open=%s" % r.status())
        return
    h = r.handle
    chunk = 255 * 1024
    total = mib << 20
    offsets = list(range(0, total, chunk))
    sem = threading.Semaphore(inflight)
    sent_ids = []
    errors = []
    peak = [0]
    stop = [False]

    def sender():
        block = b"w" * chunk
        try:
            for off in offsets:
                sem.acquire()
                n = min(chunk, total - off)
                rid, b = request(srv, sr.FXP_WRITE,
                                 lambda p: p.string(h).u64(off)
                                 .string(block[:n]))
                sent_ids.append(rid)
                srv.send_raw(b)
        except sr.ServerGone as e:
            errors.append(str(e))

    def sampler():
        while not stop[0]:
            peak[0] = max(peak[0], vm_hwm(srv.pid))
            time.sleep(0.05)

    t = threading.Thread(target=sender)
    s = threading.Thread(target=sampler)
    t.start()
    s.start()
    statuses = {}
    got = 0
    t0 = time.monotonic()
    while got < len(offsets):
        rep = srv.reply(timeout=60)
        if rep is None:
            errors.append("no reply after %d" % got)
            break
        got += 1
        k = rep.status()
        statuses[k] = statuses.get(k, 0) + 1
        sem.release()
    t.join()
    secs = time.monotonic() - t0
    c = srv.close(h).status() if not errors else "-"
    stop[0] = True
    s.join()
    hwm = max(peak[0], vm_hwm(srv.pid))
    status = srv.finish(timeout=60)
    size = os.path.getsize(path) if os.path.exists(path) else -1
    print("writes=%d statuses=%s close=%s size=%d seconds=%.1f "
          "hwm_kib=%d errors=%d exit=%s" %
          (len(offsets), ",".join("%s:%d" % kv
                                  for kv in sorted(statuses.items())),
           c, size, secs, hwm, len(errors), status))


def do_swap(d, argv):
    sub, old, other = (os.path.join(d, n) for n in ("sub", "sub.old",
                                                    "other"))
    srv = sr.Server(argv, stderr_path="/dev/stderr")
    srv.init()
    data = b"S" * 200000
    r = srv.open(os.path.join(sub, "f"),
                 sr.FXF_WRITE | sr.FXF_CREAT | sr.FXF_TRUNC)
    if r.type != sr.FXP_HANDLE:
        print("open=%s" % r.status())
        return
    h = r.handle
    half = len(data) // 2
    w1 = srv.write(h, 0, data[:half]).status()
    os.rename(sub, old)
    os.symlink(other, sub)
    w2 = srv.write(h, half, data[half:]).status()
    c = srv.close(h)
    status = srv.finish()

    def where(p):
        if not os.path.exists(p):
            return "absent"
        with open(p, "rb") as f:
            got = f.read()
        return "complete" if got == data else "other(%d)" % len(got)
    print('write=%s,%s close=%s msg="%s" opened_dir=%s symlink_target=%s '
          "exit=%s" % (w1, w2, c.status(), c.msg or "",
                       where(os.path.join(old, "f")),
                       where(os.path.join(other, "f")), status))


def do_badoffset(path, argv):
    """A WRITE the server must refuse (offset + length past 2^63 - 1)
    between two good ones, then CLOSE."""
    srv = sr.Server(argv, stderr_path="/dev/stderr")
    srv.init()
    r = srv.open(path, sr.FXF_WRITE | sr.FXF_CREAT | sr.FXF_TRUNC)
    if r.type != sr.FXP_HANDLE:
        print("open=%s" % r.status())
        return
    w1 = srv.write(r.handle, 0, b"a" * 1000).status()
    w2 = srv.write(r.handle, (1 << 63) - 10, b"b" * 100).status()
    w3 = srv.write(r.handle, 1000, b"c" * 1000).status()
    c = srv.close(r.handle)
    print('write=%s,%s,%s close=%s msg="%s" exit=%s' %
          (w1, w2, w3, c.status(), c.msg or "", srv.finish()))


def main(argv):
    try:
        sep = argv.index("--")
    except ValueError:
        sys.stderr.write(__doc__)
        return 2
    args, cmd = argv[1:sep], argv[sep + 1:]
    if args[:1] == ["handles"] and len(args) == 3:
        do_handles(args[1], int(args[2]), cmd)
    elif args[:1] == ["flood"] and len(args) == 4:
        do_flood(args[1], int(args[2]), int(args[3]), cmd)
    elif args[:1] == ["badoffset"] and len(args) == 2:
        do_badoffset(args[1], cmd)
    elif args[:1] == ["swap"] and len(args) == 2:
        do_swap(args[1], cmd)
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
