"""Tokens and scopes: who may call what."""

from __future__ import annotations

import json
import uuid

import httpx
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import MailStore, client
from tests.api.world import app_routes, build_world, sample_body, send
from tests.conftest import Tenant
from tests.support.stack import Stack, mailroom

ADMIN_PREFIXES = ("/v1/tokens", "/v1/webhooks")


def _needs_admin(method: str, path: str) -> bool:
    changes_account = path == "/v1/account" and method != "GET"
    changes_access = path.endswith("/access") and method != "GET"
    return (
        path.startswith(ADMIN_PREFIXES)
        or (path.startswith("/v1/users") and method != "GET")
        or changes_account
        or changes_access
    )


def test_missing_bad_and_revoked_tokens_are_401(api_stack: Stack, api: httpx.Client) -> None:
    assert httpx.get(f"{api_stack.api_url}/v1/persons").status_code == 401
    bad = httpx.get(f"{api_stack.api_url}/v1/persons", headers={"Authorization": "Bearer mr_nope"})
    assert bad.status_code == 401
    assert bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["type"] == "https://mailroom.dev/problems/unauthorized"

    created = api.post("/v1/tokens", json={"scope": "read", "name": "short-lived"}).json()
    with client(api_stack, created["token"]) as reader:
        assert reader.get("/v1/persons").status_code == 200
        assert api.delete(f"/v1/tokens/{created['id']}").status_code == 204
        assert reader.get("/v1/persons").status_code == 401
    listed = api.get("/v1/tokens", params={"include_revoked": "true"}).json()["data"]
    assert any(t["id"] == created["id"] and t["revoked_at"] for t in listed)
    assert all("token" not in t for t in listed)  # the secret is never shown again
    assert created["id"] not in {t["id"] for t in api.get("/v1/tokens").json()["data"]}


def test_each_scope_is_enforced_on_every_route(api_stack: Stack, api: httpx.Client, mail: MailStore) -> None:
    world = build_world(api, mail)
    tokens = {scope: api.post("/v1/tokens", json={"scope": scope}).json()["token"] for scope in ("read", "write")}
    with client(api_stack, tokens["read"]) as reader, client(api_stack, tokens["write"]) as writer:
        for method, template in app_routes():
            if not template.startswith("/v1/"):
                continue
            url, body = world.url(template), sample_body(method, template, world)
            if method != "GET":
                response = send(reader, method, url, body)
                assert response.status_code == 403, f"read token {method} {template}: {response.status_code}"
                assert response.json()["type"] == "https://mailroom.dev/problems/insufficient-scope"
            elif not _needs_admin(method, template):
                assert reader.get(url).status_code == 200, f"read token GET {template}"
            response = send(writer, method, url, body) if _needs_admin(method, template) else None
            if response is not None:
                assert response.status_code == 403, f"write token {method} {template}: {response.status_code}"
    # And a write token can write CRM records.
    with client(api_stack, tokens["write"]) as writer:
        assert writer.post("/v1/persons", json={"name": "Written", "phone": "+1 555 0100"}).status_code == 201


def test_token_tied_to_a_user_sees_only_that_users_private_threads(
    api_stack: Stack, api: httpx.Client, mail: MailStore
) -> None:
    colleague = api.post("/v1/users", json={"email": f"col.{uuid.uuid4().hex[:6]}@acme.example"}).json()
    mine = mail.thread("Mine")
    mail.message(mine, subject="Mine")
    theirs = mail.thread("Theirs")
    mail.message(theirs, subject="Theirs", user_id=uuid.UUID(colleague["id"]))
    assert api.patch(f"/v1/threads/{theirs}", json={"visibility": "private"}).json()["visibility"] == "private"

    token = api.post("/v1/tokens", json={"scope": "read", "user_id": str(mail.tenant.user_id)}).json()
    assert token["user_id"] == str(mail.tenant.user_id)
    with client(api_stack, token["token"]) as mine_only:
        assert {t["id"] for t in mine_only.get("/v1/threads").json()["data"]} == {mine}
        assert mine_only.get(f"/v1/threads/{theirs}").status_code == 404
    # The account-wide token still sees both.
    assert {t["id"] for t in api.get("/v1/threads").json()["data"]} == {mine, theirs}

    foreign = api.post("/v1/tokens", json={"scope": "read", "user_id": str(uuid.uuid4())})
    assert foreign.status_code == 422
    assert foreign.json()["errors"][0]["field"] == "user_id"


def test_cli_creates_and_revokes_tokens(api_stack: Stack, tenant: Tenant, api_sessions: sessionmaker[Session]) -> None:
    created = mailroom(
        ["tokens", "create", str(tenant.account_id), "--scope", "write", "--user", str(tenant.user_id)],
        api_stack.env,
    )
    assert created.returncode == 0, created.stderr
    output = json.loads(created.stdout)
    assert output["scope"] == "write"
    assert output["user_id"] == str(tenant.user_id)
    with client(api_stack, output["api_token"]) as writer:
        assert writer.post("/v1/persons", json={"name": "Via CLI token", "phone": "+1 555 0100"}).status_code == 201
        assert writer.get("/v1/tokens").status_code == 403
        revoked = mailroom(["tokens", "revoke", output["token_id"]], api_stack.env)
        assert revoked.returncode == 0, revoked.stderr
        assert writer.get("/v1/persons").status_code == 401
    missing = mailroom(["tokens", "create", str(uuid.uuid4())], api_stack.env)
    assert missing.returncode == 2


def test_smart_bcc_addresses_are_shown_only_to_their_user_and_account_admins(
    api_stack: Stack, api: httpx.Client, mail: MailStore
) -> None:
    me, colleague = str(mail.tenant.user_id), api.post("/v1/users", json={"email": "col@acme.example"}).json()["id"]
    addresses = {u["id"]: u["bcc_address"] for u in api.get("/v1/users").json()["data"]}
    assert addresses[me] == mail.tenant.bcc_address  # the account-wide admin token sees every address
    assert addresses[colleague].endswith("@bcc.mailroom.localhost")
    held = mail.held(b"Subject: held\r\n\r\nbody\r\n")

    def token(scope: str, user_id: str | None = None) -> str:
        body = {"scope": scope} | ({"user_id": user_id} if user_id else {})
        created = api.post("/v1/tokens", json=body)
        assert created.status_code == 201, created.text
        return str(created.json()["token"])

    # (token, bound to me): user-bound tokens of any scope see their own user's address only; account-wide
    # tokens below admin see none.
    tokens = [(token(scope, me), True) for scope in ("read", "write", "admin")]
    tokens += [(token(scope), False) for scope in ("read", "write")]
    for secret, own in tokens:
        scope = "user-bound" if own else "account-wide"
        with client(api_stack, secret) as http:
            listed = {u["id"]: u["bcc_address"] for u in http.get("/v1/users").json()["data"]}
            shown = {user_id for user_id, address in listed.items() if address is not None}
            assert shown == ({me} if own else set()), f"{scope} token sees {shown}"
            assert http.get(f"/v1/users/{colleague}").json()["bcc_address"] is None
            assert http.get(f"/v1/users/{me}").json()["bcc_address"] == (mail.tenant.bcc_address if own else None)
            assert addresses[colleague] not in http.get("/v1/users").text
            envelope_to = http.get(f"/v1/held-messages/{held}").json()["envelope_to"]
            assert envelope_to == (mail.tenant.bcc_address if own else None)
    assert api.get(f"/v1/held-messages/{held}").json()["envelope_to"] == mail.tenant.bcc_address


def test_a_raw_message_hides_the_smart_bcc_addresses_its_reader_may_not_see(
    api_stack: Stack, api: httpx.Client, mail: MailStore
) -> None:
    """A colleague forwards a customer's reply to their Smart-BCC address; the copy Mailroom keeps is addressed
    to it. Whoever reads an address can put mail into that user's CRM."""
    colleague = api.post("/v1/users", json={"email": f"col.{uuid.uuid4().hex[:6]}@acme.example"}).json()
    forwarder = colleague["bcc_address"]
    local_part, domain = forwarder.split("@")
    other_account = "k3zzzzzzzzzzzzzz@" + domain  # a user of another Mailroom account, say
    raw = (
        f"From: Col <{colleague['email']}>\r\nTo: {forwarder}\r\nCc: {local_part.upper()}+deal-7@{domain},"
        f" {other_account}\r\nSubject: Fwd: Pricing\r\nMessage-ID: <fwd-raw@x>\r\n\r\n"
        "---------- Forwarded message ---------\r\nFrom: Jane <jane@customer.example>\r\n\r\nDeal!\r\n"
    ).encode()
    message_id = mail.message(mail.thread("Fwd: Pricing"), raw=raw, user_id=uuid.UUID(colleague["id"]))

    def raw_for(scope: str, user_id: str | None = None) -> bytes:
        body = {"scope": scope} | ({"user_id": user_id} if user_id else {})
        with client(api_stack, api.post("/v1/tokens", json=body).json()["token"]) as http:
            response = http.get(f"/v1/messages/{message_id}/raw")
            assert response.status_code == 200, response.text
            return response.content

    hidden = (
        raw.replace(local_part.encode(), b"smart-bcc-hidden")
        .replace(local_part.upper().encode(), b"smart-bcc-hidden")
        .replace(b"k3zzzzzzzzzzzzzz", b"smart-bcc-hidden")
    )
    assert len(hidden) == len(raw)
    assert raw_for("read", str(mail.tenant.user_id)) == hidden  # a teammate's own token
    assert raw_for("read") == hidden  # an integration below admin
    forwarders_own = raw_for("read", colleague["id"])
    assert forwarders_own == raw.replace(b"k3zzzzzzzzzzzzzz", b"smart-bcc-hidden")
    assert api.get(f"/v1/messages/{message_id}/raw").content == forwarders_own  # the account's admin
