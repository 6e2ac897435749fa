"""The prompt cache on a directory several instances share: concurrent writers never tear an entry.

Several ``ivr`` processes (instances on one host, or replicas mounting one volume) render the same
prompt at about the same time and write the same key. Real processes here: writers store the key over
and over, each with a payload of its own (so a torn file would be a mix, or cut short), while readers
read it as fast as they can. Every read must be one whole payload or nothing (not written yet), and no
temporary file may be left behind.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ivr.speech.cache import SUFFIX, PromptCache

KEY = "ab" + "0" * 62
SIZE = 256 * 1024
WRITES = 25
READS = 400

WRITER = """
import sys
from ivr.speech.cache import PromptCache
cache, key, me, size, writes = PromptCache(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
payload = bytes([me]) * size
for _ in range(writes):
    cache._write(key, payload)
"""

READER = """
import sys
from ivr.speech.cache import PromptCache
cache, key, size, reads = PromptCache(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
seen, bad = set(), 0
for _ in range(reads):
    data = cache._read(key)
    if data is None:
        continue
    if len(data) != size or data.count(data[:1]) != size:
        bad += 1
    else:
        seen.add(data[0])
print(bad, len(seen))
"""


def test_concurrent_writers_and_readers_of_one_key_see_whole_entries_only(tmp_path: Path) -> None:
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), KEY, str(me), str(SIZE), str(WRITES)])
        for me in range(1, 5)
    ]
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", READER, str(tmp_path), KEY, str(SIZE), str(READS)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for writer in writers:
        assert writer.wait(timeout=120) == 0
    results = []
    for reader in readers:
        out, _ = reader.communicate(timeout=120)
        assert reader.returncode == 0
        results.append(tuple(int(n) for n in out.split()))
    assert all(bad == 0 for bad, _ in results), f"torn reads (bad, distinct payloads seen): {results}"
    final = PromptCache(tmp_path)._read(KEY)
    assert final is not None
    assert final in {bytes([me]) * SIZE for me in range(1, 5)}
    left = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert left == [KEY + SUFFIX], f"temporary files left behind: {left}"
