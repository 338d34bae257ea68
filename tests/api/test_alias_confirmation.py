"""Verifying an alias by mail, through a real SMTP relay (a sink server the test runs) and the real API process."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from email.message import EmailMessage

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from shared import outbound
from shared.settings import Settings
from tests.conftest import Infra, Tenant, new_tenant, stack_env
from tests.support.smtp_sink import Sink, smtp_sink
from tests.support.stack import Stack, wait_for

# The sink asks for AUTH over plain loopback on purpose (a relay URL with credentials); aiosmtpd warns about that.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

LINK = re.compile(r"(http://\S+/alias-confirmations/([A-Za-z0-9_-]+))")


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    with smtp_sink(credentials={"mailroom": "s3cret/pass"}) as running:
        yield running


@pytest.fixture(scope="module")
def mailing_stack(infra: Infra, sink: Sink, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("mailing-api")
    env = stack_env(
        infra,
        data_dir,
        smtp_relay_url=f"smtp://mailroom:s3cret%2Fpass@127.0.0.1:{sink.port}",
        mail_from="Mailroom <noreply@mailroom.test>",
    )
    env["MAILROOM_PUBLIC_API_URL"] = f"http://127.0.0.1:{env['MAILROOM_API_PORT']}"
    running = Stack(env=env, log_dir=data_dir)
    running.start("api")
    yield running
    running.stop()


@pytest.fixture
def admin(mailing_stack: Stack, sessions: sessionmaker[Session]) -> Iterator[tuple[httpx.Client, Tenant]]:
    tenant = new_tenant(sessions)
    with httpx.Client(
        base_url=mailing_stack.api_url, headers={"Authorization": f"Bearer {tenant.token}"}, timeout=30
    ) as client:
        yield client, tenant


def confirmation_to(sink: Sink, address: str) -> tuple[EmailMessage, str, str]:
    def arrived() -> list[EmailMessage]:
        return [r.message for r in sink.received if address in r.rcpt_tos]

    message = wait_for(arrived, what=f"the confirmation mail to {address}")[-1]
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    found = LINK.search(body.get_content())
    assert found is not None, body.get_content()
    return message, found.group(1), found.group(2)


def test_adding_an_alias_mails_a_link_that_verifies_it(admin: tuple[httpx.Client, Tenant], sink: Sink) -> None:
    api, tenant = admin
    address = f"sales.{uuid.uuid4().hex[:6]}@acme.example"
    created = api.post(f"/v1/users/{tenant.user_id}/aliases", json={"address": address})
    assert created.status_code == 201
    alias = created.json()
    assert (alias["verified"], alias["confirmation_sent_at"] is not None) == (False, True)

    message, url, _token = confirmation_to(sink, address)
    assert message["To"] == address
    assert message["From"] == "Mailroom <noreply@mailroom.test>"
    assert address in str(message["Subject"])
    [delivery] = [r for r in sink.received if address in r.rcpt_tos]
    assert delivery.login == "mailroom"  # it logged in to the relay with the URL's credentials

    # Opening the link (as a mail scanner would) confirms nothing; the page's button does.
    page = httpx.get(url, timeout=30)
    assert page.status_code == 200
    assert '<form method="post"' in page.text
    assert address in page.text
    assert api.get(f"/v1/users/{tenant.user_id}").json()["aliases"][0]["verified"] is False

    confirmed = httpx.post(url, timeout=30)  # no token: the secret link is the proof
    assert confirmed.status_code == 200
    assert confirmed.json()["address"] == address
    [listed] = api.get(f"/v1/users/{tenant.user_id}").json()["aliases"]
    assert listed["verified"] is True
    assert httpx.post(url, timeout=30).status_code == 200  # a second click is harmless


def test_a_wrong_or_replaced_link_confirms_nothing(admin: tuple[httpx.Client, Tenant], sink: Sink) -> None:
    api, tenant = admin
    address = f"ops.{uuid.uuid4().hex[:6]}@acme.example"
    alias = api.post(f"/v1/users/{tenant.user_id}/aliases", json={"address": address}).json()
    _, first_url, token = confirmation_to(sink, address)

    wrong_url = first_url.replace(token, token[:-4] + "AAAA")
    for wrong in (httpx.get(wrong_url, timeout=30), httpx.post(wrong_url, timeout=30)):
        assert wrong.status_code == 404
        assert wrong.headers["content-type"].startswith("application/problem+json")

    resent = api.post(f"/v1/users/{tenant.user_id}/aliases/{alias['id']}/confirmation")
    assert resent.status_code == 200
    wait_for(lambda: len([r for r in sink.received if address in r.rcpt_tos]) == 2, what="the second mail")
    _, second_url, _ = confirmation_to(sink, address)
    assert second_url != first_url
    assert httpx.post(first_url, timeout=30).status_code == 404  # the earlier link stopped working
    assert httpx.post(second_url, timeout=30).status_code == 200
    assert api.post(f"/v1/users/{tenant.user_id}/aliases/{alias['id']}/confirmation").status_code == 409


def test_an_admin_can_still_vouch_for_an_alias_without_mail(admin: tuple[httpx.Client, Tenant], sink: Sink) -> None:
    api, tenant = admin
    address = f"vouched.{uuid.uuid4().hex[:6]}@acme.example"
    alias = api.post(f"/v1/users/{tenant.user_id}/aliases", json={"address": address, "verified": True}).json()
    assert alias["verified"] is True
    assert alias["confirmation_sent_at"] is None
    assert not [r for r in sink.received if address in r.rcpt_tos]


def test_send_reports_a_relay_that_is_down_or_refuses_clearly(sink: Sink) -> None:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "noreply@mailroom.test", "x@acme.example", "Hi"
    mail.set_content("Hello")

    closed = Settings(smtp_relay_url="smtp://127.0.0.1:1", smtp_relay_timeout_seconds=5)
    with pytest.raises(outbound.OutboundError, match=r"could not send through the relay 127\.0\.0\.1:1"):
        outbound.send(closed, mail)

    bad_login = Settings(smtp_relay_url=f"smtp://mailroom:wrong@127.0.0.1:{sink.port}")
    with pytest.raises(outbound.OutboundError, match=r"answered 535"):
        outbound.send(bad_login, mail)

    with pytest.raises(outbound.OutboundNotConfiguredError):
        outbound.send(Settings(smtp_relay_url=None), mail)
    with pytest.raises(outbound.OutboundError, match="must start with smtp://"):
        outbound.send(Settings(smtp_relay_url="http://127.0.0.1"), mail)

    good = Settings(smtp_relay_url=f"smtp://mailroom:s3cret%2Fpass@127.0.0.1:{sink.port}")
    outbound.send(good, mail)
    assert [r.rcpt_tos for r in sink.received if r.message["Subject"] == "Hi"] == [["x@acme.example"]]
