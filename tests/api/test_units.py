"""Small pure functions of the API and the webhook sender, checked without servers."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from services.api.mailbox.downloads import byte_range, disposition, safe_content_type
from services.api.pagination import decode_cursor, encode_cursor
from services.api.problems import Problem
from services.matcher.webhooks import TargetNotAllowed, backoff_seconds, resolve_target
from shared.events import WebhookSettings, sign
from shared.public_addresses import refusal_reason, refusal_reason_of_text


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


@pytest.mark.parametrize(
    ("address", "refused_as"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "private"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("255.255.255.255", "private"),
        ("240.0.0.1", "private"),
        ("192.0.0.1", "private"),
        ("192.0.2.10", "private"),
        ("198.18.0.1", "private"),
        ("192.88.99.1", "6to4 relay"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback address (127.0.0.1) inside an IPv6 address"),
        ("::ffff:10.0.0.1", "private address (10.0.0.1) inside"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::127.0.0.1", "IPv4-compatible"),
        ("::8.8.8.8", "IPv4-compatible"),
        ("64:ff9b::7f00:1", "loopback address (127.0.0.1) inside"),
        ("64:ff9b::a9fe:a9fe", "link-local"),
        ("64:ff9b::c0a8:101", "private address (192.168.1.1) inside"),
        ("64:ff9b:1::808:808", "local-use NAT64"),
        ("2002:7f00:1::", "loopback address (127.0.0.1) inside"),
        ("2002:a00:1::1", "private address (10.0.0.1) inside"),
        ("2002:6440:1::", "carrier-grade NAT"),
        ("2001::1", "Teredo"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ("fc00::1", "unique local"),
        ("fd12:3456::1", "unique local"),
        ("fec0::1", "site-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("ff02::1", "multicast"),
        ("ff0e::1", "multicast"),
        ("2001:db8::1", "private"),
        ("100::1", "private"),
    ],
)
def test_non_public_addresses_are_refused_with_the_reason(address: str, refused_as: str) -> None:
    import ipaddress

    reason = refusal_reason(ipaddress.ip_address(address))
    assert reason is not None, address
    assert refused_as in reason


@pytest.mark.parametrize(
    "address",
    ["1.1.1.1", "8.8.8.8", "93.184.215.14", "2606:4700:4700::1111", "2001:4860:4860::8888", "::ffff:8.8.8.8",
     "64:ff9b::808:808", "2002:808:808::1"],
)  # fmt: skip
def test_public_addresses_pass(address: str) -> None:
    assert refusal_reason_of_text(address) is None


def test_webhook_targets_in_private_networks_are_refused() -> None:
    for url in (
        "http://127.0.0.1/x",
        "http://10.1.2.3/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://169.254.169.254/latest",
        "http://2130706433/",  # 127.0.0.1 as one decimal number: the resolver turns it into the address
        "http://0x7f.1/",
        "http://localhost:8080/",
        "ftp://a.example/",
        "http:///no-host",
        "http://no-such-host.invalid/",
    ):
        with pytest.raises(TargetNotAllowed):
            resolve_target(url, allow_private=False)


def test_a_webhook_target_is_pinned_to_the_address_it_was_checked_for() -> None:
    target = resolve_target("http://localhost:8080/hooks?a=1", allow_private=True)
    assert target.url.host in ("127.0.0.1", "::1")
    assert (target.url.port, target.url.path, target.url.query) == (8080, "/hooks", b"a=1")
    assert target.host_header == "localhost:8080"
    assert target.server_name == "localhost"
    literal = resolve_target("https://[::1]/x", allow_private=True)
    assert str(literal.url) == "https://[::1]/x"
    assert literal.server_name == "::1"


def test_backoff_grows_and_is_capped() -> None:
    settings = WebhookSettings(backoff_seconds=30, max_backoff_seconds=300)
    assert [backoff_seconds(settings, n) for n in (1, 2, 3, 4, 5, 6)] == [30, 60, 120, 240, 300, 300]
