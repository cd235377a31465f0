#!/usr/bin/python3
"""Write a self-describing file that regress/helpers/watch.py can verify.

usage: mkpayload.py FILE SIZE [SEED]

FILE is SIZE bytes long: a fixed-width header line

    AUPL <payload length, 20 digits> <sha256 of the payload, hex>\\n

followed by the payload (pseudo-random bytes; SEED picks which, so two
files of one size can still differ).  Any prefix of such a file, or the
file with a hole not yet filled, fails the check: that is what makes a
partial upload recognisable by a reader that knows nothing of the upload.
SIZE may end in K, M or G (powers of 1024).
"""
import hashlib
import os
import random
import sys

MAGIC = b"AUPL"
HEADER_LEN = len(MAGIC) + 1 + 20 + 1 + 64 + 1
CHUNK = 1 << 20


def header(payload_len, digest_hex):
    h = b"%s %020d %s\n" % (MAGIC, payload_len, digest_hex.encode())
    assert len(h) == HEADER_LEN
    return h


def parse_size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    mult = units.get(text[-1:].upper(), 1)
    if mult != 1:
        text = text[:-1]
    return int(text) * mult


def write_payload(path, size, seed):
    if size < HEADER_LEN:
        raise ValueError("size %d is below the header length %d" %
                         (size, HEADER_LEN))
    payload_len = size - HEADER_LEN
    rng = random.Random(seed)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        # The header needs the digest: reserve its place, fill it last.
        f.write(b"\0" * HEADER_LEN)
        left = payload_len
        while left > 0:
            n = min(CHUNK, left)
            block = rng.randbytes(n)
            digest.update(block)
            f.write(block)
            left -= n
        f.seek(0)
        f.write(header(payload_len, digest.hexdigest()))


def main(argv):
    if len(argv) not in (3, 4):
        sys.stderr.write("usage: mkpayload.py FILE SIZE [SEED]\n")
        return 2
    seed = argv[3] if len(argv) == 4 else argv[1]
    write_payload(argv[1], parse_size(argv[2]), seed)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
