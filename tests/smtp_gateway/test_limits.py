"""The gateway's bookkeeping of clients, sessions and rates (what the hostile suite attacks over real sockets)."""

from __future__ import annotations

import ipaddress

import pytest

from services.smtp_gateway.limits import (
    CONNECTING_TOO_OFTEN,
    SERVER_BUSY,
    TOO_MANY_SESSIONS,
    TOO_MUCH_MAIL,
    Anvil,
    Limits,
    client_key,
)


@pytest.mark.parametrize(
    ("host", "client"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),  # same /64: same client
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),  # the next /64: another client
        ("::ffff:192.0.2.7", "192.0.2.7"),  # IPv4 on a dual-stack socket
        ("fe80::1%eth0", "fe80::/64"),
        ("/run/mailroom.sock", "/run/mailroom.sock"),
    ],
)
def test_a_client_is_an_ipv4_address_or_an_ipv6_slash_64(host: str, client: str) -> None:
    assert client_key(host) == client


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limits(**overrides: object) -> Limits:
    values: dict[str, object] = {
        "max_sessions": 0,
        "max_sessions_per_client": 0,
        "connection_rate_per_minute": 0,
        "message_rate_per_minute": 0,
        "hard_error_limit": 0,
        "max_recipients": 0,
        "exempt_networks": (),
    }
    values.update(overrides)
    return Limits(**values)  # type: ignore[arg-type]


def test_sessions_of_one_ipv6_slash_64_share_one_cap_and_come_back_when_released() -> None:
    anvil = Anvil(limits(max_sessions_per_client=2))
    first, second = client_key("2001:db8::1"), client_key("2001:db8::2")
    assert anvil.admit_session(first) is None
    assert anvil.admit_session(second) is None
    assert anvil.admit_session(client_key("2001:db8::3")) == TOO_MANY_SESSIONS
    assert anvil.admit_session(client_key("2001:db8:0:1::1")) is None  # another /64
    anvil.release_session(first)
    assert anvil.admit_session(first) is None


def test_the_global_cap_counts_every_client() -> None:
    anvil = Anvil(limits(max_sessions=2))
    assert anvil.admit_session("192.0.2.1") is None
    assert anvil.admit_session("192.0.2.2") is None
    assert anvil.admit_session("192.0.2.3") == SERVER_BUSY
    anvil.release_session("192.0.2.1")
    assert anvil.open_sessions == 1
    assert anvil.admit_session("192.0.2.3") is None


def test_rates_count_per_minute_and_start_over_after_it() -> None:
    clock = Clock()
    anvil = Anvil(limits(connection_rate_per_minute=2, message_rate_per_minute=1), clock=clock)
    for _ in range(2):
        assert anvil.admit_session("192.0.2.1") is None
        anvil.release_session("192.0.2.1")
    assert anvil.admit_session("192.0.2.1") == CONNECTING_TOO_OFTEN
    assert anvil.admit_session("192.0.2.2") is None
    assert anvil.admit_message("192.0.2.1") is None
    assert anvil.admit_message("192.0.2.1") == TOO_MUCH_MAIL
    clock.now += 60
    assert anvil.admit_session("192.0.2.1") is None
    assert anvil.admit_message("192.0.2.1") is None


def test_exempt_networks_skip_the_per_client_limits_but_not_the_global_cap() -> None:
    exempt = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("2001:db8::/32"))
    anvil = Anvil(limits(max_sessions=3, max_sessions_per_client=1, message_rate_per_minute=1, exempt_networks=exempt))
    assert anvil.admit_session("127.0.0.1") is None
    assert anvil.admit_session("127.0.0.1") is None
    assert anvil.admit_session(client_key("2001:db8::1")) is None
    assert anvil.admit_session("127.0.0.1") == SERVER_BUSY
    assert anvil.admit_message("127.0.0.1") is None
    assert anvil.admit_message("127.0.0.1") is None
