"""Hostile `Range` headers on attachment downloads, over real HTTP: each is answered per RFC 9110 §14 (a part
with 206, 416 with `Content-Range: bytes */length`, or the whole content when the header is not a valid range
request), never a 500, and the download works normally right after."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from shared.blobstore import LocalBlobStore
from tests.api.conftest import MailStore
from tests.conftest import Tenant

CONTENT = bytes(range(256)) * 40  # 10240 bytes
SIZE = len(CONTENT)


@pytest.fixture
def content_url(api: httpx.Client, sessions: sessionmaker[Session], blob_dir: Path, tenant: Tenant) -> str:
    mail = MailStore(sessions, LocalBlobStore(blob_dir), tenant)
    message_id = mail.message(mail.thread(), attachments=[("data.bin", "application/octet-stream", CONTENT)])
    (attachment,) = api.get(f"/v1/messages/{message_id}").json()["attachments"]
    return f"/v1/attachments/{attachment['id']}/content"


HUGE = "9" * 5000  # CPython will not parse a number this long with int()


@pytest.mark.parametrize(
    ("range_header", "status", "first", "last"),
    [
        ("bytes=0-99999999999999999999", 206, 0, SIZE - 1),  # a last position past the end is clamped
        (f"bytes=0-{HUGE}", 206, 0, SIZE - 1),
        (f"bytes=-{HUGE}", 206, 0, SIZE - 1),  # a suffix longer than the content is all of it
        (f"bytes=0000000000000000000000000000000000000100-{'0' * 40}199", 206, 100, 199),
        ("bytes=100-199", 206, 100, 199),
        ("bytes=-10", 206, SIZE - 10, SIZE - 1),
        (f"bytes={HUGE}-", 416, None, None),  # starts past the end
        ("bytes=99999999999999999999-", 416, None, None),
        (f"bytes={SIZE}-", 416, None, None),
        ("bytes=-0", 416, None, None),  # a zero-length suffix cannot be satisfied
        ("bytes=5-1", 200, None, None),  # last before first: not a valid range, so the header is ignored
        ("bytes=1-2-3", 200, None, None),
        ("bytes=abc", 200, None, None),
        ("bytes=", 200, None, None),
        ("items=0-10", 200, None, None),  # a unit we do not know
        (",".join(f"{n}-{n}" for n in range(2000)).join(("bytes=", "")), 200, None, None),  # many ranges
        ("bytes=0-0,-1", 200, None, None),
    ],
)
def test_hostile_ranges_get_a_standard_answer(
    api: httpx.Client, content_url: str, range_header: str, status: int, first: int | None, last: int | None
) -> None:
    response = api.get(content_url, headers={"Range": range_header})
    assert response.status_code == status, response.text[:300]
    if status == 206:
        assert response.headers["content-range"] == f"bytes {first}-{last}/{SIZE}"
        assert response.content == CONTENT[first : (last or 0) + 1]
    elif status == 416:
        assert response.headers["content-range"] == f"bytes */{SIZE}"
        assert response.content == b""
    else:
        assert response.content == CONTENT
        assert "content-range" not in response.headers
    ordinary = api.get(content_url, headers={"Range": "bytes=0-9"})
    assert ordinary.status_code == 206
    assert ordinary.content == CONTENT[:10]
