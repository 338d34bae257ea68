"""Per-pipeline access and private deals, walked over every route of the app.

Like the tenancy walk, the route list comes from the application itself (tests/api/world.py): a new route is
walked automatically. A user-bound token of someone without access to the world's pipeline must get a 404 for
every record of it (the deal, its stage, activity, note, mail, files, the question about its thread), find none
of them in any list, timeline or search, and be unable to reference them; members and account tokens see them.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from shared.models import MessagePersonRole, ThreadDealRule
from tests.api.conftest import MailStore, client
from tests.api.test_access import _needs_admin
from tests.api.world import World, app_routes, build_world, sample_body, send
from tests.support.stack import Stack

# The world's records that hang off its deal: hidden together with the deal's pipeline.
HIDDEN = (
    "pipeline_id",
    "stage_id",
    "deal_id",
    "activity_id",
    "note_id",
    "thread_id",
    "message_id",
    "attachment_id",
    "disambiguation_id",
)
# Held mail is its user's own (an existing rule, not about pipelines): another user's token gets 404 for it too.
OTHER_USERS = ("inbound_id", "draft_id")  # held mail and drafts are their user's own


def _user_token(api: httpx.Client, user_id: str) -> str:
    response = api.post("/v1/tokens", json={"scope": "write", "user_id": user_id})
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def _assert_hides(response: httpx.Response, hidden: set[str], what: str) -> None:
    shown = {i for i in hidden if i in response.text}
    assert not shown, f"{what} showed hidden records {shown}\n{response.text[:500]}"


def _references_hidden(body: dict[str, Any] | bytes | None, hidden: set[str]) -> bool:
    if body is None:
        return False
    if isinstance(body, bytes):  # a CSV file: any hidden id in it is a reference
        return any(record_id.encode() in body for record_id in hidden)
    return any(str(v) in hidden or (isinstance(v, list) and any(str(x) in hidden for x in v)) for v in body.values())


def test_users_without_access_to_a_pipeline_see_none_of_its_deals(
    api_stack: Stack, api: httpx.Client, mail: MailStore
) -> None:
    world = build_world(api, mail)
    member_id = world.ids["user_id"]
    restricted = api.put(
        f"/v1/pipelines/{world.ids['pipeline_id']}/access", json={"restricted": True, "member_user_ids": [member_id]}
    )
    assert restricted.status_code == 200, restricted.text
    assert restricted.json()["member_user_ids"] == [member_id]
    outsider = api.post("/v1/users", json={"email": f"out.{uuid.uuid4().hex[:6]}@acme.example"}).json()
    hidden = {world.ids[name] for name in HIDDEN}

    with client(api_stack, _user_token(api, outsider["id"])) as stranger_in_house:
        walked = _walk(stranger_in_house, world, hidden)
    assert walked > 50

    # A member sees the pipeline's records; the account token sees everything; nothing was changed by the walk.
    with client(api_stack, _user_token(api, member_id)) as member:
        for path in ("deals/{deal_id}", "activities/{activity_id}", "notes/{note_id}", "pipelines/{pipeline_id}"):
            url = world.url("/v1/" + path)
            assert member.get(url).status_code == 200, url
            assert api.get(url).status_code == 200, url
        assert world.ids["deal_id"] in {d["id"] for d in member.get("/v1/deals").json()["data"]}
    for method, template in app_routes():
        if method == "GET" and "{" in template and template.startswith("/v1/"):
            assert api.get(world.url(template)).status_code == 200, template
    assert api.get(f"/v1/leads/{world.ids['lead_id']}").json()["status"] == "new"


def _walk(http: httpx.Client, world: World, hidden: set[str]) -> int:
    walked = 0
    for method, template in app_routes():
        if not template.startswith("/v1/") or _needs_admin(method, template):
            continue
        what = f"{method} {template}"
        url, body = world.url(template), sample_body(method, template, world)
        hides_path = any("{" + name + "}" in template for name in HIDDEN + OTHER_USERS)
        if hides_path:
            response = send(http, method, url, body)
            assert response.status_code == 404, f"{what}: {response.status_code} {response.text[:300]}"
            assert response.headers["content-type"] == "application/problem+json"
        elif method == "GET":
            for params in ({}, {"q": "Rollout"}, {"deal_id": world.ids["deal_id"]}):
                response = http.get(url, params=params)
                assert response.status_code == 200, f"{what} {params}: {response.text[:300]}"
                _assert_hides(response, hidden, f"{what} {params}")
        elif _references_hidden(body, hidden):
            response = send(http, method, url, body)
            assert response.status_code == 422, f"{what}: {response.status_code} {response.text[:300]}"
            _assert_hides(response, hidden, what)
        else:
            continue  # changes a record the user may see; not a question of access
        walked += 1
    return walked


def test_a_private_deal_is_seen_by_its_owner_only(api_stack: Stack, api: httpx.Client, mail: MailStore) -> None:
    owner = api.post("/v1/users", json={"email": f"own.{uuid.uuid4().hex[:6]}@acme.example", "name": "Owner"}).json()
    other = api.post("/v1/users", json={"email": f"oth.{uuid.uuid4().hex[:6]}@acme.example"}).json()
    person = api.post("/v1/persons", json={"name": "Jane", "phone": "+1 555 0100"}).json()
    with (
        client(api_stack, _user_token(api, owner["id"])) as mine,
        client(api_stack, _user_token(api, other["id"])) as theirs,
    ):
        deal = mine.post(
            "/v1/deals", json={"title": "Board seat", "person_id": person["id"], "visibility": "private"}
        ).json()
        assert (deal["owner_user_id"], deal["visibility"]) == (owner["id"], "private")
        note = mine.post(
            "/v1/notes", json={"content": "Confidential", "deal_id": deal["id"], "person_id": person["id"]}
        )
        thread = mail.thread("Board seat", deal_id=deal["id"], deal_rule=ThreadDealRule.sub_address)
        message = mail.message(thread, subject="Board seat", persons=[(person["id"], MessagePersonRole.from_)])

        assert mine.get(f"/v1/deals/{deal['id']}").status_code == 200
        assert theirs.get(f"/v1/deals/{deal['id']}").status_code == 404
        assert theirs.get(f"/v1/deals/{deal['id']}/timeline").status_code == 404
        assert theirs.get(f"/v1/deals/{deal['id']}/files").status_code == 404
        assert theirs.get(f"/v1/notes/{note.json()['id']}").status_code == 404
        assert theirs.get(f"/v1/messages/{message}").status_code == 404
        assert theirs.patch(f"/v1/deals/{deal['id']}", json={"title": "Mine now"}).status_code == 404
        person_timeline = theirs.get(f"/v1/persons/{person['id']}/timeline")
        _assert_hides(person_timeline, {deal["id"], note.json()["id"], message}, "the person's timeline")
        assert deal["id"] not in theirs.get("/v1/deals").text
        assert thread not in theirs.get("/v1/threads", params={"q": "Board"}).text
        # A thread with the other user's own mail stays theirs to read, but does not say which hidden deal it is on.
        own_thread = mail.thread("Board seat, my notes", deal_id=deal["id"], deal_rule=ThreadDealRule.sub_address)
        own_message = mail.message(own_thread, subject="My notes", user_id=uuid.UUID(other["id"]))
        seen = theirs.get(f"/v1/threads/{own_thread}")
        assert seen.status_code == 200
        assert (seen.json()["deal_id"], seen.json()["deal_rule"]) == (None, None)
        assert deal["id"] not in seen.text
        assert theirs.get(f"/v1/messages/{own_message}").json()["deal_id"] is None
        assert deal["id"] not in theirs.get(f"/v1/persons/{person['id']}/timeline").text
        assert mine.get(f"/v1/threads/{own_thread}").json()["deal_id"] == deal["id"]
        # Making it shared shows it.
        assert mine.patch(f"/v1/deals/{deal['id']}", json={"visibility": "shared"}).status_code == 200
        assert theirs.get(f"/v1/deals/{deal['id']}").status_code == 200
    assert api.get(f"/v1/deals/{deal['id']}").status_code == 200
