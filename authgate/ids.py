"""Random identifiers (row ids, ``jti``, audit event ids) without a system call each.

``uuid.uuid4()`` reads 16 bytes with ``os.urandom``: a ``getrandom`` system
call that releases the GIL.  On a busy server every release hands the GIL to
one of the other waitress threads and waits to get it back, and a token
request makes three of them (row id, ``jti``, audit event id).  Here each
thread reads the kernel's random bytes 4 KiB at a time and cuts its UUIDs
from them: the same source and the same randomness, one system call per 256
identifiers.

Identifiers only: secrets (tokens, device codes, client secrets) still come
from :mod:`secrets` directly, so no secret ever sits in this buffer.
"""

from __future__ import annotations

import os
import threading
import uuid

_CHUNK = 4096


class _Pool(threading.local):
    def __init__(self) -> None:
        self.data = b""
        self.pos = 0


_pool = _Pool()


def _forget_in_child() -> None:
    # A forked child must not cut the same identifiers as its parent.
    global _pool
    _pool = _Pool()


os.register_at_fork(after_in_child=_forget_in_child)


def random_uuid() -> uuid.UUID:
    """A version-4 UUID from the kernel's CSPRNG, like ``uuid.uuid4()``."""
    pool = _pool
    pos = pool.pos
    if pos + 16 > len(pool.data):
        pool.data, pos = os.urandom(_CHUNK), 0
    pool.pos = pos + 16
    return uuid.UUID(bytes=pool.data[pos:pos + 16], version=4)


# The version (4) and variant (RFC 4122) bits, set as uuid.UUID(version=4) sets them.
_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_SET = (4 << 76) | (0x8000 << 48)


def new_uuid() -> str:
    """A random UUID as text (the 36-character form stored in id columns): the text of
    :func:`random_uuid`, formatted without building a ``uuid.UUID`` (three of these per
    token request)."""
    pool = _pool
    pos = pool.pos
    if pos + 16 > len(pool.data):
        pool.data, pos = os.urandom(_CHUNK), 0
    pool.pos = pos + 16
    h = "%032x" % ((int.from_bytes(pool.data[pos:pos + 16], "big") & _CLEAR) | _SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
