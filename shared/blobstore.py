"""Attachment bytes, content-addressed by SHA-256 and kept per account.

Everything goes through `BlobStore`, so an S3-compatible store can replace the local directory without the
matcher or the API noticing.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
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
        sha256 = hashlib.sha256(content).hexdigest()
        path = self._path(account_id, sha256)
        if path.exists():
            return sha256
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write-then-rename: a reader never sees half a file, and two workers writing the same blob both succeed.
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as partial:
            partial.write(content)
            partial.flush()
            os.fsync(partial.fileno())
        Path(partial.name).replace(path)
        return sha256

    def get(self, account_id: uuid.UUID, sha256: str) -> bytes:
        try:
            return self._path(account_id, sha256).read_bytes()
        except FileNotFoundError:
            raise KeyError(sha256) from None
