"""Attachment bytes, content-addressed by SHA-256 and kept per account.

Everything goes through `BlobStore`, so an S3-compatible store can replace the local directory without the
matcher or the API noticing.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Protocol


class BlobStore(Protocol):
    def put(self, account_id: uuid.UUID, content: bytes) -> str:
        """Store the bytes (idempotently) and return their SHA-256 hex digest."""

    def get(self, account_id: uuid.UUID, sha256: str) -> bytes:
        """The stored bytes; `KeyError` when there are none."""


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self._root = root

    def _path(self, account_id: uuid.UUID, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise KeyError(sha256)
        return self._root / str(account_id) / sha256[:2] / sha256

    def put(self, account_id: uuid.UUID, content: bytes) -> str:
        """Returns only once the bytes are durable, so the caller may then commit the row that points at them.

        Write-then-rename: a reader never sees half a file, and two workers writing the same blob both succeed.
        Durable means surviving a power cut, not only a crash: the file is fsynced before the rename (or the
        rename could land with no data behind it), and the directories are fsynced after it (or the new name
        itself could be lost). Without this a committed attachment row could point at a missing or empty file.
        """
        sha256 = hashlib.sha256(content).hexdigest()
        path = self._path(account_id, sha256)
        if path.exists():
            return sha256
        created = _make_dirs(path.parent)
        partial = path.parent / f".partial-{uuid.uuid4().hex}"
        try:
            _write_durably(partial, content)
            partial.replace(path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        for directory in (path.parent, *created):
            _fsync_directory(directory)
        return sha256

    def get(self, account_id: uuid.UUID, sha256: str) -> bytes:
        try:
            return self._path(account_id, sha256).read_bytes()
        except FileNotFoundError:
            raise KeyError(sha256) from None


def _make_dirs(directory: Path) -> list[Path]:
    """Create the directory and its missing parents; returns the parents whose entries changed (to fsync)."""
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    directory.mkdir(parents=True, exist_ok=True)
    return [path.parent for path in missing]


def _write_durably(path: Path, content: bytes) -> None:
    """A new file (private to this user, as `tempfile` makes them) with these bytes, fsynced. Plain descriptor
    calls: a `NamedTemporaryFile`, whose wrapper re-wraps a method on every attribute access, cost a fifth of a
    blob's CPU (the fsyncs cost most of the rest)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        unwritten = memoryview(content)
        while unwritten:
            unwritten = unwritten[os.write(descriptor, unwritten) :]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
