"""Pipelines with the standard stages, deals moving between stages and pipelines (each move a deal event with who
made it), deal owners and dates, and deletion that keeps a deal's history."""

from __future__ import annotations

import httpx

from shared.models import MessagePersonRole, ThreadDealRule
from tests.api.conftest import MailStore

STANDARD = ["New", "Qualified", "Proposal", "Negotiation", "Won", "Lost"]


def _person(api: httpx.Client) -> dict[str, str]:
    body: dict[str, str] = api.post("/v1/persons", json={"name": "Jane", "phone": "+1 555 0100"}).json()
    return body


def test_a_pipeline_without_stages_gets_the_standard_ones(api: httpx.Client) -> None:
    created = api.post("/v1/pipelines", json={"name": "Sales"})
    assert created.status_code == 201
    pipeline = created.json()
    assert [s["name"] for s in pipeline["stages"]] == STANDARD
    assert (pipeline["restricted"], pipeline["member_user_ids"]) == (False, [])
    new, _qualified, proposal, *_ = pipeline["stages"]
    # Renamable and reorderable like any stage.
    api.patch(f"/v1/pipelines/{pipeline['id']}/stages/{new['id']}", json={"name": "Incoming"})
    api.patch(f"/v1/pipelines/{pipeline['id']}/stages/{proposal['id']}", json={"position": new["position"] + 1})
    names = [s["name"] for s in api.get(f"/v1/pipelines/{pipeline['id']}").json()["stages"]]
    assert names == ["Incoming", "Proposal", "Qualified", "Negotiation", "Won", "Lost"]
    custom = api.post("/v1/pipelines", json={"name": "Partners", "stages": ["Intro", "Signed"]}).json()
    assert [s["name"] for s in custom["stages"]] == ["Intro", "Signed"]


def test_every_move_is_a_deal_event_with_who_made_it(api: httpx.Client, mail: MailStore) -> None:
    sales = api.post("/v1/pipelines", json={"name": "Sales"}).json()
    renewals = api.post("/v1/pipelines", json={"name": "Renewals", "stages": ["Due", "Renewed"]}).json()
    deal = api.post(
        "/v1/deals", json={"title": "Rollout", "person_id": _person(api)["id"], "pipeline_id": sales["id"]}
    ).json()
    assert deal["stage_id"] == sales["stages"][0]["id"]  # a pipeline alone means its first stage

    qualified = sales["stages"][1]
    assert api.patch(f"/v1/deals/{deal['id']}", json={"stage_id": qualified["id"]}).status_code == 200
    moved = api.patch(f"/v1/deals/{deal['id']}", json={"pipeline_id": renewals["id"]}).json()
    assert (moved["pipeline_id"], moved["stage_id"]) == (renewals["id"], renewals["stages"][0]["id"])

    events = [e["deal_event"] for e in api.get(f"/v1/deals/{deal['id']}/timeline").json()["data"]]
    moves = [e for e in events if e["type"] == "stage_changed"]
    assert len(moves) == 2
    newest, oldest = moves
    assert oldest["data"]["stage"] == {"from": "New", "to": "Qualified"}
    assert newest["data"]["pipeline"] == {"from": "Sales", "to": "Renewals"}
    assert newest["data"]["stage"] == {"from": "Qualified", "to": "Due"}
    for event in events:
        assert event["actor"]["kind"] == "integration"
        assert event["actor"]["token_id"]


def test_deal_owner_dates_and_imported_history(api: httpx.Client, mail: MailStore) -> None:
    person = _person(api)
    user_id = str(mail.tenant.user_id)
    imported = api.post(
        "/v1/deals",
        json={
            "title": "Won in 2024",
            "person_id": person["id"],
            "owner_user_id": user_id,
            "status": "won",
            "won_at": "2024-03-01T12:00:00+00:00",
            "expected_close_date": "2024-02-28",
        },
    )
    assert imported.status_code == 201, imported.text
    deal = imported.json()
    assert (deal["owner_user_id"], deal["won_at"], deal["expected_close_date"]) == (
        user_id,
        "2024-03-01T12:00:00Z",
        "2024-02-28",
    )
    # A status change stamps the time unless one is given; reopening clears it.
    lost = api.patch(f"/v1/deals/{deal['id']}", json={"status": "lost"}).json()
    assert (lost["won_at"], lost["lost_at"] is not None) == (None, True)
    reopened = api.patch(f"/v1/deals/{deal['id']}", json={"status": "open"}).json()
    assert (reopened["won_at"], reopened["lost_at"]) == (None, None)
    refused = api.patch(f"/v1/deals/{deal['id']}", json={"won_at": "2024-03-01T12:00:00+00:00"})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "won_at"
    mine = api.get("/v1/deals", params={"owner_user_id": user_id}).json()["data"]
    assert [d["id"] for d in mine] == [deal["id"]]
    private = api.post("/v1/deals", json={"title": "Secret", "person_id": person["id"], "visibility": "private"})
    assert private.status_code == 422  # a private deal needs an owner
    assert private.json()["errors"][0]["field"] == "owner_user_id"


def test_deleting_a_deal_keeps_its_history(api: httpx.Client, mail: MailStore) -> None:
    person = _person(api)
    deal = api.post("/v1/deals", json={"title": "Rollout", "person_id": person["id"]}).json()
    api.post("/v1/activities", json={"type": "call", "subject": "Kick-off", "deal_id": deal["id"]})
    api.post("/v1/notes", json={"content": "Signed off by legal", "deal_id": deal["id"]})
    thread = mail.thread("Rollout", deal_id=deal["id"], deal_rule=ThreadDealRule.single_open_deal)
    message = mail.message(thread, subject="Rollout", persons=[(person["id"], MessagePersonRole.from_)])

    assert api.delete(f"/v1/deals/{deal['id']}").status_code == 204
    assert api.delete(f"/v1/deals/{deal['id']}").status_code == 204  # idempotent
    assert deal["id"] not in {d["id"] for d in api.get("/v1/deals").json()["data"]}
    assert deal["id"] in {d["id"] for d in api.get("/v1/deals", params={"include_deleted": "true"}).json()["data"]}
    tombstone = api.get(f"/v1/deals/{deal['id']}").json()
    assert tombstone["deleted_at"] is not None
    timeline = api.get(f"/v1/deals/{deal['id']}/timeline").json()["data"]
    assert {e["kind"] for e in timeline} == {"message", "activity", "note", "deal_event"}
    assert any(e["id"] == message for e in timeline)
    assert [e["deal_event"]["type"] for e in timeline if e["kind"] == "deal_event"] == ["deleted", "created"]
    # It cannot be changed or chosen any more.
    assert api.patch(f"/v1/deals/{deal['id']}", json={"title": "Back"}).status_code == 409
    chosen = api.post("/v1/activities", json={"type": "call", "subject": "x", "deal_id": deal["id"]})
    assert chosen.status_code == 422
