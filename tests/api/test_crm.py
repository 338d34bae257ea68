"""CRM records: create, read, update, delete, with validation that explains itself."""

from __future__ import annotations

import uuid

import httpx

from tests.api.conftest import MailStore, collect


def _problem_fields(response: httpx.Response) -> set[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return {e["field"] for e in response.json()["errors"]}


def test_person_lifecycle_and_soft_delete_keeps_history(api: httpx.Client, mail: MailStore) -> None:
    organization = api.post("/v1/organizations", json={"name": "Customer", "domains": ["@Customer.Example"]}).json()
    assert organization["domains"] == ["customer.example"]
    created = api.post(
        "/v1/persons",
        json={
            "name": "  Jane Doe ",
            "emails": ["Jane@Customer.example", "jd@home.example"],
            "phone": "+49 30 1234",
            "organization_id": organization["id"],
        },
    )
    assert created.status_code == 201
    jane = created.json()
    assert jane["name"] == "Jane Doe"
    assert jane["emails"] == ["jane@customer.example", "jd@home.example"]
    assert (jane["phone"], jane["organization_id"], jane["created_from"]) == ("+49 30 1234", organization["id"], "api")
    assert api.get(f"/v1/persons/{jane['id']}").json() == jane
    assert [p["id"] for p in api.get("/v1/persons", params={"email": "JANE@customer.example"}).json()["data"]] == [
        jane["id"]
    ]
    assert [p["id"] for p in api.get("/v1/persons", params={"organization_id": organization["id"]}).json()["data"]] == [
        jane["id"]
    ]
    assert [p["id"] for p in api.get("/v1/persons", params={"q": "doe"}).json()["data"]] == [jane["id"]]

    patched = api.patch(
        f"/v1/persons/{jane['id']}", json={"emails": ["jd@home.example", "new@x.example"], "phone": None}
    )
    assert patched.json()["emails"] == ["jd@home.example", "new@x.example"]
    assert patched.json()["phone"] is None
    assert patched.json()["name"] == "Jane Doe"

    duplicate = api.post("/v1/persons", json={"name": "Other", "emails": ["new@x.example"]})
    assert duplicate.status_code == 409
    assert duplicate.json()["type"] == "https://mailroom.dev/problems/conflict"

    deal = api.post("/v1/deals", json={"title": "Rollout", "person_id": jane["id"]}).json()
    activity = api.post("/v1/activities", json={"type": "call", "subject": "Call", "person_id": jane["id"]}).json()
    thread = mail.thread("Hello")
    message = mail.message(thread, persons=[(jane["id"], "from")])

    assert api.delete(f"/v1/persons/{jane['id']}").status_code == 204
    assert api.delete(f"/v1/persons/{jane['id']}").status_code == 204  # idempotent
    assert jane["id"] not in {p["id"] for p in api.get("/v1/persons").json()["data"]}
    assert jane["id"] in {p["id"] for p in api.get("/v1/persons", params={"include_deleted": "true"}).json()["data"]}
    tombstone = api.get(f"/v1/persons/{jane['id']}").json()
    assert tombstone["deleted_at"] is not None
    assert tombstone["emails"] == ["jd@home.example", "new@x.example"]  # the matcher will not re-create them
    # History stays: the deal, the activity, the message and its link, the timeline.
    assert api.get(f"/v1/deals/{deal['id']}").json()["person_id"] == jane["id"]
    assert api.get(f"/v1/activities/{activity['id']}").json()["person_id"] == jane["id"]
    assert api.get(f"/v1/messages/{message}").json()["person_ids"] == [jane["id"]]
    kinds = {e["kind"] for e in api.get(f"/v1/persons/{jane['id']}/timeline").json()["data"]}
    assert kinds == {"message", "activity", "deal_event"}
    assert api.patch(f"/v1/persons/{jane['id']}", json={"name": "Back"}).status_code == 409
    # A deleted person cannot be given new records.
    assert _problem_fields(api.post("/v1/deals", json={"title": "New", "person_id": jane["id"]})) == {"person_id"}


def test_person_validation(api: httpx.Client) -> None:
    assert _problem_fields(api.post("/v1/persons", json={"emails": ["x@y.example"]})) == {"name"}
    assert _problem_fields(api.post("/v1/persons", json={"name": "X", "emails": ["not an address"]})) == {"emails.0"}
    assert _problem_fields(api.post("/v1/persons", json={"name": ""})) == {"name"}
    assert _problem_fields(
        api.post("/v1/persons", json={"name": "X", "phone": "+1 555 0100", "organization_id": str(uuid.uuid4())})
    ) == {"organization_id"}
    assert _problem_fields(api.post("/v1/persons", json={"name": "X", "shoe_size": 44})) == {"shoe_size"}
    nul = api.post("/v1/persons", json={"name": "bad\u0000name"})
    assert nul.status_code == 422
    assert api.get("/v1/persons", params={"q": "x\u0000"}).status_code == 422
    assert (
        api.post("/v1/persons", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    )
    assert api.patch(f"/v1/persons/{uuid.uuid4()}", json={"name": "X"}).status_code == 404


def test_organization_lifecycle(api: httpx.Client) -> None:
    created = api.post("/v1/organizations", json={"name": "Acme", "domains": ["acme-corp.example", "acme.example"]})
    assert created.status_code == 201
    acme = created.json()
    assert api.get("/v1/organizations", params={"domain": "ACME.example"}).json()["data"][0]["id"] == acme["id"]
    clash = api.post("/v1/organizations", json={"name": "Other", "domains": ["acme.example"]})
    assert clash.status_code == 409
    assert _problem_fields(api.post("/v1/organizations", json={"name": "X", "domains": ["not a domain"]})) == {
        "domains.0"
    }
    renamed = api.patch(f"/v1/organizations/{acme['id']}", json={"name": "Acme Inc", "domains": ["acme.example"]})
    assert (renamed.json()["name"], renamed.json()["domains"]) == ("Acme Inc", ["acme.example"])
    assert api.delete(f"/v1/organizations/{acme['id']}").status_code == 204
    assert api.get(f"/v1/organizations/{acme['id']}").json()["deleted_at"] is not None
    assert acme["id"] not in {o["id"] for o in api.get("/v1/organizations").json()["data"]}


def test_pipelines_with_ordered_stages(api: httpx.Client) -> None:
    pipeline = api.post("/v1/pipelines", json={"name": "Sales", "stages": ["Lead", "Proposal", "Won"]}).json()
    assert [s["name"] for s in pipeline["stages"]] == ["Lead", "Proposal", "Won"]
    lead, proposal, _won = pipeline["stages"]
    added = api.post(f"/v1/pipelines/{pipeline['id']}/stages", json={"name": "Negotiation"}).json()
    assert added["position"] > max(s["position"] for s in pipeline["stages"])
    moved = api.patch(f"/v1/pipelines/{pipeline['id']}/stages/{added['id']}", json={"position": lead["position"] + 1})
    assert moved.status_code == 200
    names = [s["name"] for s in api.get(f"/v1/pipelines/{pipeline['id']}").json()["stages"]]
    assert names == ["Lead", "Negotiation", "Proposal", "Won"]
    assert api.patch(f"/v1/pipelines/{pipeline['id']}", json={"name": "Sales EU"}).json()["name"] == "Sales EU"

    person = api.post("/v1/persons", json={"name": "Jane", "phone": "+1 555 0100"}).json()
    deal = api.post("/v1/deals", json={"title": "D", "person_id": person["id"], "stage_id": proposal["id"]}).json()
    assert deal["pipeline_id"] == pipeline["id"]
    assert api.delete(f"/v1/pipelines/{pipeline['id']}/stages/{proposal['id']}").status_code == 409
    assert api.delete(f"/v1/pipelines/{pipeline['id']}").status_code == 409
    assert api.delete(f"/v1/pipelines/{pipeline['id']}/stages/{added['id']}").status_code == 204
    assert api.delete(f"/v1/deals/{deal['id']}").status_code == 204
    assert api.delete(f"/v1/pipelines/{pipeline['id']}").status_code == 204
    assert api.get(f"/v1/pipelines/{pipeline['id']}").status_code == 404


def test_deal_lifecycle_and_validation(api: httpx.Client) -> None:
    person = api.post("/v1/persons", json={"name": "Jane", "phone": "+1 555 0100"}).json()
    organization = api.post("/v1/organizations", json={"name": "Acme"}).json()
    pipeline = api.post("/v1/pipelines", json={"name": "Sales", "stages": ["Lead", "Won"]}).json()
    other = api.post("/v1/pipelines", json={"name": "Other", "stages": ["X"]}).json()

    missing = api.post("/v1/deals", json={"title": "Nobody"})
    assert _problem_fields(missing) == {"person_id", "organization_id"}
    assert "person or an organization" in missing.json()["detail"]
    assert _problem_fields(api.post("/v1/deals", json={"title": "X", "person_id": str(uuid.uuid4())})) == {"person_id"}
    assert _problem_fields(
        api.post(
            "/v1/deals",
            json={
                "title": "X",
                "person_id": person["id"],
                "pipeline_id": other["id"],
                "stage_id": pipeline["stages"][0]["id"],
            },
        )
    ) == {"stage_id"}
    assert _problem_fields(api.post("/v1/deals", json={"title": "X", "person_id": person["id"], "value": "10"})) == {
        "currency"
    }
    assert _problem_fields(
        api.post("/v1/deals", json={"title": "X", "person_id": person["id"], "value": "-1", "currency": "EUR"})
    ) == {"value"}
    assert _problem_fields(
        api.post("/v1/deals", json={"title": "X", "person_id": person["id"], "status": "maybe"})
    ) == {"status"}

    deal = api.post(
        "/v1/deals",
        json={
            "title": "Rollout",
            "organization_id": organization["id"],
            "stage_id": pipeline["stages"][0]["id"],
            "value": "1200.50",
            "currency": "EUR",
            "expected_close_date": "2026-12-31",
        },
    ).json()
    assert (deal["pipeline_id"], deal["status"], deal["won_at"]) == (pipeline["id"], "open", None)
    won = api.patch(f"/v1/deals/{deal['id']}", json={"status": "won", "stage_id": pipeline["stages"][1]["id"]}).json()
    assert won["won_at"] is not None
    assert won["stage_id"] == pipeline["stages"][1]["id"]
    assert [d["id"] for d in api.get("/v1/deals", params={"status": "won"}).json()["data"]] == [deal["id"]]
    assert [d["id"] for d in api.get("/v1/deals", params={"organization_id": organization["id"]}).json()["data"]] == [
        deal["id"]
    ]
    events = api.get(f"/v1/deals/{deal['id']}/timeline").json()["data"]
    types = [e["deal_event"]["type"] for e in events]
    assert sorted(types) == ["created", "stage_changed", "status_changed"]
    status_change = next(e["deal_event"] for e in events if e["deal_event"]["type"] == "status_changed")
    assert status_change["data"]["status"] == {"from": "open", "to": "won"}
    assert status_change["data"]["won_at"]["from"] is None
    assert status_change["deal_title"] == "Rollout"
    assert _problem_fields(api.patch(f"/v1/deals/{deal['id']}", json={"organization_id": None})) == {
        "person_id",
        "organization_id",
    }


def test_activities_crud(api: httpx.Client) -> None:
    person = api.post("/v1/persons", json={"name": "Jane", "phone": "+1 555 0100"}).json()
    created = api.post(
        "/v1/activities",
        json={"type": "meeting", "subject": "Demo", "due_at": "2026-12-01T10:00:00+01:00", "person_id": person["id"]},
    )
    assert created.status_code == 201
    activity = created.json()
    assert (activity["done"], activity["done_at"], activity["due_at"]) == (False, None, "2026-12-01T09:00:00Z")
    done = api.patch(f"/v1/activities/{activity['id']}", json={"done": True}).json()
    assert done["done"] is True
    assert done["done_at"] is not None
    assert [a["id"] for a in api.get("/v1/activities", params={"done": "true"}).json()["data"]] == [activity["id"]]
    assert _problem_fields(api.post("/v1/activities", json={"type": "Bad Type!", "subject": "x"})) == {"type"}
    assert _problem_fields(
        api.post("/v1/activities", json={"type": "call", "subject": "x", "due_at": "2026-12-01T10:00:00"})
    ) == {"due_at"}
    assert api.delete(f"/v1/activities/{activity['id']}").status_code == 204
    assert api.get(f"/v1/activities/{activity['id']}").status_code == 404


def test_lists_page_without_duplicates_or_gaps(api: httpx.Client) -> None:
    made = {api.post("/v1/persons", json={"name": f"P{n}", "phone": "+1 555 0100"}).json()["id"] for n in range(7)}
    listed = collect(api, "/v1/persons", limit=2)
    assert [p["id"] for p in listed if p["id"] in made] == [p["id"] for p in listed]
    assert {p["id"] for p in listed} == made
    assert len(listed) == 7
    organization = api.post("/v1/organizations", json={"name": "O"}).json()
    for n in range(5):
        api.post("/v1/deals", json={"title": f"D{n}", "organization_id": organization["id"]})
        api.post("/v1/activities", json={"type": "task", "subject": f"A{n}", "organization_id": organization["id"]})
    assert len({d["id"] for d in collect(api, "/v1/deals", limit=2)}) == 5
    assert len({a["id"] for a in collect(api, "/v1/activities", limit=3)}) == 5
    assert len({o["id"] for o in collect(api, "/v1/organizations", limit=1)}) == 1


def test_users_aliases_and_bcc_rotation(api: httpx.Client) -> None:
    email = f"new.{uuid.uuid4().hex[:6]}@acme.example"
    user = api.post("/v1/users", json={"email": email.upper(), "name": "New"}).json()
    assert user["email"] == email
    assert user["bcc_address"].endswith("@bcc.mailroom.localhost")
    assert api.post("/v1/users", json={"email": email}).status_code == 409
    rotated = api.post(f"/v1/users/{user['id']}/bcc-address/rotate").json()
    assert rotated["bcc_address"] != user["bcc_address"]
    alias = api.post(f"/v1/users/{user['id']}/aliases", json={"address": "Sales@Acme.example"}).json()
    assert (alias["address"], alias["verified"]) == ("sales@acme.example", False)
    verified = api.post(f"/v1/users/{user['id']}/aliases/{alias['id']}/verify").json()
    assert verified["verified"] is True
    assert api.get(f"/v1/users/{user['id']}").json()["aliases"] == [verified]
    assert api.patch(f"/v1/users/{user['id']}", json={"name": "Renamed"}).json()["name"] == "Renamed"
    assert api.delete(f"/v1/users/{user['id']}/aliases/{alias['id']}").status_code == 204
    assert api.get(f"/v1/users/{user['id']}").json()["aliases"] == []
