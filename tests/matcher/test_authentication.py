"""Sender authentication against a DNS server the test runs (no network): SPF, DKIM, DMARC alignment, the limits
that keep hostile mail cheap, and trusted relays."""

from __future__ import annotations

import ipaddress
import socket
import time
import uuid
from collections.abc import Iterator

import pytest

from services.matcher.authentication import (
    SenderAuthConfig,
    SenderAuthentication,
    aligned,
    authenticate,
    client_ip_of,
    nameserver,
)
from shared.models import AuthSummary
from tests.support.dns_zone import DnsServer, SigningKey, Zone, dns_server, new_signing_key
from tests.support.stack import make_mail, wire_bytes


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return new_signing_key("acme.example", selector="k1")


@pytest.fixture(scope="module")
def server(key: SigningKey) -> Iterator[DnsServer]:
    zone = Zone()
    key.publish(zone)
    zone.add("acme.example", "TXT", "v=spf1 ip4:192.0.2.10 include:_spf.provider.example -all")
    zone.add("_spf.provider.example", "TXT", "v=spf1 ip4:198.51.100.0/24 ~all")
    zone.add("_dmarc.acme.example", "TXT", "v=DMARC1; p=quarantine; adkim=r; aspf=r")
    zone.add("strict.example", "TXT", "v=spf1 ip4:192.0.2.20 -all")
    zone.add("_dmarc.strict.example", "TXT", "v=DMARC1; p=reject; aspf=s")
    with dns_server(zone) as running:
        yield running


def config(server: DnsServer, **overrides: object) -> SenderAuthConfig:
    values: dict[str, object] = {"authserv_id": "mx.test", "resolver": server.address, "timeout_seconds": 1.0}
    values.update(overrides)
    return SenderAuthConfig(**values)  # type: ignore[arg-type]


def mail_from(sender: str, subject: str = "Offer") -> bytes:
    return wire_bytes(
        make_mail(sender=sender, to=["jane@customer.example"], subject=subject, message_id=f"<{uuid.uuid4().hex}@test>")
    )


def test_a_valid_signature_of_the_from_domain_passes_dmarc(server: DnsServer, key: SigningKey) -> None:
    raw = key.sign(mail_from("sam@acme.example"))
    result = authenticate(
        raw, envelope_from="sam@acme.example", client_ip="203.0.113.5", helo="out.example", config=config(server)
    )
    assert [(c.result, c.domain, c.selector) for c in result.dkim] == [("pass", "acme.example", "k1")]
    assert result.spf.result == "fail"
    assert (result.dmarc, result.dmarc_policy) == ("pass", "quarantine")
    assert result.summary is AuthSummary.passed
    assert result.authenticates("acme.example")
    assert result.authenticates("sales.acme.example")  # relaxed alignment: same organizational domain
    assert not result.authenticates("acme-holding.example")


def test_an_altered_body_fails_the_signature(server: DnsServer, key: SigningKey) -> None:
    raw = key.sign(mail_from("sam@acme.example")).replace(b"Hello", b"Send money")
    result = authenticate(
        raw, envelope_from="sam@acme.example", client_ip="203.0.113.5", helo="x.example", config=config(server)
    )
    assert [c.result for c in result.dkim] == ["fail"]
    assert result.dmarc == "fail"
    assert result.summary is AuthSummary.failed
    assert "DKIM fail (acme.example)" in result.describe()


def test_a_signature_of_another_domain_does_not_align(server: DnsServer) -> None:
    other = new_signing_key("mailer.example", selector="m")
    zone_key_served = Zone()
    other.publish(zone_key_served)
    with dns_server(zone_key_served) as other_server:
        raw = other.sign(mail_from("sam@acme.example"))
        result = authenticate(raw, envelope_from="", client_ip=None, helo=None, config=config(other_server))
    assert [(c.result, c.domain) for c in result.dkim] == [("pass", "mailer.example")]
    assert not result.authenticates("acme.example")
    assert result.summary is AuthSummary.none  # nothing failed, nothing aligned, no DMARC record served here


def test_spf_follows_includes_and_reports_softfail(server: DnsServer) -> None:
    raw = mail_from("sam@acme.example")
    via_provider = authenticate(
        raw, envelope_from="sam@acme.example", client_ip="198.51.100.7", helo="p.example", config=config(server)
    )
    assert via_provider.spf.result == "pass"
    assert via_provider.summary is AuthSummary.passed

    elsewhere = authenticate(
        raw, envelope_from="sam@acme.example", client_ip="203.0.113.9", helo="p.example", config=config(server)
    )
    assert elsewhere.spf.result == "fail"  # -all wins: the include's ~all only says "not matched" there
    assert elsewhere.summary is AuthSummary.failed


def test_strict_spf_alignment_requires_the_exact_domain(server: DnsServer) -> None:
    raw = mail_from("sam@sub.strict.example")
    result = authenticate(
        raw, envelope_from="bounce@strict.example", client_ip="192.0.2.20", helo="h", config=config(server)
    )
    assert result.spf.result == "pass"
    assert (result.dmarc, result.dmarc_policy) == ("fail", "reject")  # aspf=s: strict.example ≠ sub.strict.example


def test_empty_envelope_sender_checks_the_helo_name(server: DnsServer) -> None:
    raw = mail_from("mailer-daemon@acme.example")
    result = authenticate(raw, envelope_from="", client_ip="192.0.2.10", helo="acme.example", config=config(server))
    assert (result.spf.result, result.spf.domain) == ("pass", "acme.example")


def test_only_the_configured_number_of_signatures_is_checked(server: DnsServer) -> None:
    raw = mail_from("sam@acme.example")
    # Each under its own selector, as an attacker would sign: a key already looked up comes from the cache.
    for n in range(4):
        key = new_signing_key("acme.example", selector=f"flood{n}")
        key.publish(server.zone)
        raw = key.sign(raw)
    before = len(server.zone.queries)
    result = authenticate(
        raw, envelope_from="", client_ip=None, helo=None, config=config(server, max_dkim_signatures=2)
    )
    assert len(result.dkim) == 2
    assert any("not checked" in note for note in result.notes)
    assert sum(1 for name, _ in server.zone.queries[before:] if "_domainkey" in name) == 2


def test_an_unanswering_resolver_gives_temporary_errors_within_the_budget(key: SigningKey) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never answers
    silent.bind(("127.0.0.1", 0))
    try:
        cfg = SenderAuthConfig(
            authserv_id="mx.test",
            resolver=f"127.0.0.1:{silent.getsockname()[1]}",
            timeout_seconds=0.3,
            budget_seconds=1.0,
        )
        started = time.monotonic()
        result = authenticate(
            key.sign(mail_from("sam@acme.example")),
            envelope_from="sam@acme.example",
            client_ip="192.0.2.10",
            helo="h",
            config=cfg,
        )
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert result.spf.result == "temperror"
    assert [c.result for c in result.dkim] == ["temperror"]
    assert result.had_temporary_error
    assert result.summary is AuthSummary.none
    assert elapsed < 10  # a hang detector, not a speed target: the budget is 1 s


def test_a_trusted_relays_results_are_used_and_others_are_ignored(server: DnsServer) -> None:
    header = (
        b"Authentication-Results: relay.example; spf=pass smtp.mailfrom=sam@acme.example;"
        b" dkim=pass header.d=acme.example header.s=x; dmarc=pass header.from=acme.example\r\n"
    )
    raw = header + mail_from("sam@acme.example")
    cfg = config(server, trusted_relays=(ipaddress.ip_network("10.1.0.0/16"),))
    believed = authenticate(raw, envelope_from="sam@acme.example", client_ip="10.1.2.3", helo="r", config=cfg)
    assert believed.source == "trusted relay 10.1.2.3 (relay.example)"
    assert believed.summary is AuthSummary.passed

    ignored = authenticate(raw, envelope_from="sam@acme.example", client_ip="203.0.113.5", helo="r", config=cfg)
    assert ignored.source == "verified"
    assert ignored.dkim == ()
    assert ignored.summary is AuthSummary.failed  # SPF fails for 203.0.113.5; the header changed nothing

    wrong_id = config(server, trusted_relays=cfg.trusted_relays, trusted_authserv_ids=frozenset({"mx.ours.example"}))
    verified = authenticate(raw, envelope_from="sam@acme.example", client_ip="10.1.2.3", helo="r", config=wrong_id)
    assert verified.source == "verified"


def test_results_survive_their_json_form(server: DnsServer, key: SigningKey) -> None:
    raw = key.sign(mail_from("sam@acme.example"))
    result = authenticate(
        raw, envelope_from="sam@acme.example", client_ip="192.0.2.10", helo="h", config=config(server)
    )
    assert SenderAuthentication.from_json(result.as_json()) == result


def test_helpers() -> None:
    assert client_ip_of("127.0.0.1:4567") == "127.0.0.1"
    assert client_ip_of("::1:4567") == "::1"
    assert client_ip_of(None) is None
    assert nameserver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert nameserver("[::1]:5353") == ("::1", 5353)
    assert nameserver("10.0.0.2") == ("10.0.0.2", 53)
    assert aligned("mail.example.co.uk", "example.co.uk")
    assert not aligned("other.co.uk", "example.co.uk")


def test_answers_are_kept_for_their_ttl_and_never_shared_between_dns_servers(server: DnsServer) -> None:
    # A domain of its own: no other test's lookup can have cached it (or be about to see it expire).
    server.zone.add("cached.example", "TXT", "v=spf1 ip4:192.0.2.10 -all")
    raw = mail_from("sam@cached.example")
    arrival = {"envelope_from": "sam@cached.example", "client_ip": "192.0.2.10", "helo": "mx.cached.example"}
    assert authenticate(raw, **arrival, config=config(server)).spf.result == "pass"
    asked = len(server.zone.queries)
    assert ("cached.example", "TXT") in server.zone.queries[:asked]
    assert authenticate(raw, **arrival, config=config(server)).spf.result == "pass"
    assert ("cached.example", "TXT") not in server.zone.queries[asked:]  # the SPF record came from the cache

    elsewhere = Zone()
    elsewhere.add("cached.example", "TXT", "v=spf1 -all")
    with dns_server(elsewhere) as other_server:
        assert authenticate(raw, **arrival, config=config(other_server)).spf.result == "fail"
