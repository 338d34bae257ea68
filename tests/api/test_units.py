"""Small pure functions of the API and the webhook sender, checked without servers."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from services.api.mailbox.downloads import byte_range, disposition, safe_content_type
from services.api.pagination import decode_cursor, encode_cursor
from services.api.problems import Problem
from services.matcher.webhooks import TargetNotAllowed, backoff_seconds, check_target
from shared.events import WebhookSettings, sign


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-4", 10, (0, 4)),
        ("bytes=5-", 10, (5, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=8-100", 10, (8, 9)),
        ("bytes=10-", 10, False),
        ("bytes=5-2", 10, None),  # last before first: an invalid range, so the header is ignored
        ("bytes=-0", 10, False),
        ("bytes=0-99999999999999999999", 10, (0, 9)),
        ("bytes=0-" + "9" * 5000, 10, (0, 9)),  # longer than CPython will parse as an int
        ("bytes=" + "9" * 5000 + "-", 10, False),
        ("bytes=-" + "9" * 5000, 10, (0, 9)),
        ("bytes=" + "0" * 5000 + "3-4", 10, (3, 4)),
        ("bytes=-3", 0, False),
        ("bytes=0-", 0, False),
        ("Bytes=2-3", 10, (2, 3)),  # range units are case-insensitive
        ("bytes=\u0663-\u0665", 10, None),  # digits of other scripts are not digits here
        ("bytes=1-2-3", 10, None),
        (",".join(f"bytes={n}-{n}" for n in range(1000)), 10, None),
        ("bytes=0-1,4-5", 10, None),  # several ranges: the whole content
        ("items=0-1", 10, None),
        ("bytes=-", 10, None),
    ],
)
def test_byte_ranges(header: str | None, size: int, expected: object) -> None:
    assert byte_range(header, size) == expected


def test_content_types_and_dispositions() -> None:
    assert safe_content_type("IMAGE/PNG; name=x") == "image/png"
    assert safe_content_type("image/svg+xml") == "application/octet-stream"  # SVG can carry scripts
    assert safe_content_type("text/html") == "application/octet-stream"
    assert disposition('a"b\r\n.txt', inline=False) == "attachment; filename=\"a_b.txt\"; filename*=UTF-8''a%22b.txt"


def test_cursors_round_trip_and_reject_forgeries() -> None:
    from datetime import UTC, datetime
    from uuid import uuid4

    position = (datetime(2026, 1, 1, tzinfo=UTC), uuid4())
    assert decode_cursor(encode_cursor(*position)) == position
    for forged in ("", "!!!", "WyJ4Il0", "WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwgIngiXQ"):
        with pytest.raises(Problem):
            decode_cursor(forged)


def test_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    body = b'{"type":"person.created"}'
    expected = hmac.new(b"whsec_x", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("whsec_x", 1700000000, body) == f"t=1700000000,v1={expected}"


def test_webhook_targets_in_private_networks_are_refused() -> None:
    for url in (
        "http://127.0.0.1/x",
        "http://10.1.2.3/",
        "http://[::1]/",
        "http://169.254.169.254/latest",
        "ftp://a.example/",
    ):
        with pytest.raises(TargetNotAllowed):
            check_target(url, allow_private=False)
    check_target("http://127.0.0.1:9/x", allow_private=True)


def test_backoff_grows_and_is_capped() -> None:
    settings = WebhookSettings(backoff_seconds=30, max_backoff_seconds=300)
    assert [backoff_seconds(settings, n) for n in (1, 2, 3, 4, 5, 6)] == [30, 60, 120, 240, 300, 300]
