"""glibc's mmap threshold stays fixed in a serving process (authgate.memory).

Observed through glibc's own accounting (``mallinfo2().hblks``: blocks served
by mmap) in a fresh interpreter: after a 4 MiB block is freed, glibc would
serve 512 KiB blocks from the heap (its threshold rose to 4 MiB); with the
threshold pinned they are still mmap'd, and so given back when freed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROBE = textwrap.dedent("""
    import ctypes, sys
    from authgate.memory import pin_mmap_threshold

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Mallinfo2
    malloc, free = libc.malloc, libc.free
    malloc.restype, malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
    free.argtypes = (ctypes.c_void_p,)

    if sys.argv[1] == "pinned":
        assert pin_mmap_threshold()
    free(malloc(4 << 20))  # a large block, mmap'd and freed
    before = libc.mallinfo2().hblks
    blocks = [malloc(512 << 10) for _ in range(4)]
    print(libc.mallinfo2().hblks - before)
    for block in blocks:
        free(block)
""")


def _mmapped_blocks(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


def test_large_blocks_stay_mmapped_once_the_threshold_is_pinned():
    assert _mmapped_blocks("default") == 0  # glibc raised its threshold: heap blocks
    assert _mmapped_blocks("pinned") == 4   # pinned: each one mmap'd, returned on free
