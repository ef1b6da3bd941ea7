"""Random identifiers: version-4 UUIDs, never repeated, not shared with a forked child."""

from __future__ import annotations

import os
import threading
import uuid

from authgate.ids import new_uuid, random_uuid


def test_identifiers_are_version_4_uuids_in_their_text_form():
    for _ in range(600):  # more than one 4 KiB chunk of randomness
        text = new_uuid()
        parsed = uuid.UUID(text)
        assert str(parsed) == text and len(text) == 36
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_no_identifier_repeats_within_or_across_threads():
    seen: list[str] = []
    lock = threading.Lock()

    def make():
        mine = [new_uuid() for _ in range(2000)]
        with lock:
            seen.extend(mine)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 16_000 == len(set(seen))


def test_a_forked_child_does_not_cut_the_parents_next_identifiers():
    random_uuid()  # the parent's buffer now holds unused randomness
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its next identifier and leave at once
        os.write(write, new_uuid().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert uuid.UUID(child).version == 4
    assert child != new_uuid()
