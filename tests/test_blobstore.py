"""The local blob store: content-addressed writes that are atomic and idempotent.

That `put` fsyncs the file and its directories before returning cannot be observed without cutting power; what
can be observed is the contract around it: a reader sees all of a blob or none of it, no temporary file is left
behind, and the same bytes stored any number of times, from any number of threads, are one file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shared.blobstore import LocalBlobStore


def _files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def test_same_bytes_stored_twice_are_one_file_and_nothing_else(tmp_path: Path) -> None:
    store, account = LocalBlobStore(tmp_path), uuid.uuid4()
    content = b"%PDF-1.4 proposal"
    first, second = store.put(account, content), store.put(account, content)
    assert first == second == hashlib.sha256(content).hexdigest()
    assert _files(tmp_path) == [tmp_path / str(account) / first[:2] / first]
    assert store.get(account, first) == content
    other = uuid.uuid4()
    assert store.put(other, content) == first  # per account: the other account gets its own copy
    assert len(_files(tmp_path)) == 2
    with pytest.raises(KeyError):
        store.get(uuid.uuid4(), first)


def test_concurrent_writers_of_one_blob_leave_one_complete_file(tmp_path: Path) -> None:
    store, account = LocalBlobStore(tmp_path), uuid.uuid4()
    content = os.urandom(4 * 1024 * 1024)
    with ThreadPoolExecutor(max_workers=8) as pool:
        digests = set(pool.map(lambda _: store.put(account, content), range(16)))
    assert len(digests) == 1
    (digest,) = digests
    assert [path.name for path in _files(tmp_path)] == [digest]
    assert store.get(account, digest) == content


def test_a_reader_sees_a_blob_whole_or_not_at_all(tmp_path: Path) -> None:
    store, account = LocalBlobStore(tmp_path), uuid.uuid4()
    blobs = [os.urandom(2 * 1024 * 1024) for _ in range(6)]
    digests = [hashlib.sha256(blob).hexdigest() for blob in blobs]
    done = threading.Event()
    seen: list[tuple[int, bytes]] = []

    def read_while_writing() -> None:
        while not done.is_set():
            for index, digest in enumerate(digests):
                with contextlib.suppress(KeyError):
                    seen.append((index, store.get(account, digest)))

    reader = threading.Thread(target=read_while_writing)
    reader.start()
    try:
        for blob in blobs:
            store.put(account, blob)
    finally:
        done.set()
        reader.join(timeout=60)
    assert all(content == blobs[index] for index, content in seen)
    assert not [path for path in _files(tmp_path) if path.name.startswith(".partial-")]


def test_names_that_are_not_digests_are_never_paths(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    for name in ("../../etc/passwd", "A" * 64, "0" * 63):
        with pytest.raises(KeyError):
            store.get(uuid.uuid4(), name)
