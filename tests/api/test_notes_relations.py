"""Notes on persons, organizations, deals and leads; organizations related to organizations, on both sides."""

from __future__ import annotations

import httpx


def test_notes_show_on_the_timelines_of_what_they_are_about(api: httpx.Client) -> None:
    organization = api.post("/v1/organizations", json={"name": "Acme"}).json()
    person = api.post(
        "/v1/persons", json={"name": "Jane", "phone": "+1 555 0100", "organization_id": organization["id"]}
    ).json()
    deal = api.post("/v1/deals", json={"title": "Rollout", "person_id": person["id"]}).json()
    lead = api.post("/v1/leads", json={"name": "Lee", "phone": "+1 555 0101"}).json()

    on_person = api.post("/v1/notes", json={"content": "Prefers calls", "person_id": person["id"]}).json()
    on_deal = api.post("/v1/notes", json={"content": "Budget 10k", "deal_id": deal["id"]}).json()
    on_lead = api.post("/v1/notes", json={"content": "Met at the fair", "lead_id": lead["id"]}).json()
    on_org = api.post("/v1/notes", json={"content": "HQ moves in May", "organization_id": organization["id"]}).json()

    def notes_on(path: str) -> set[str]:
        return {e["note"]["content"] for e in api.get(f"{path}/timeline").json()["data"] if e["kind"] == "note"}

    # A deal's notes also show on its person and, through the person, on the organization.
    assert notes_on(f"/v1/persons/{person['id']}") == {"Prefers calls", "Budget 10k"}
    assert notes_on(f"/v1/deals/{deal['id']}") == {"Budget 10k"}
    assert notes_on(f"/v1/organizations/{organization['id']}") == {"Prefers calls", "Budget 10k", "HQ moves in May"}
    assert notes_on(f"/v1/leads/{lead['id']}") == {"Met at the fair"}
    listed = api.get("/v1/notes", params={"deal_id": deal["id"]}).json()["data"]
    assert [n["id"] for n in listed] == [on_deal["id"]]

    edited = api.patch(f"/v1/notes/{on_person['id']}", json={"content": "Prefers calls after 10am"}).json()
    assert edited["content"] == "Prefers calls after 10am"
    assert edited["updated_at"] is not None
    assert api.delete(f"/v1/notes/{on_lead['id']}").status_code == 204
    assert api.get(f"/v1/notes/{on_lead['id']}").status_code == 404
    assert on_org["organization_id"] == organization["id"]

    orphan = api.post("/v1/notes", json={"content": "About nothing"})
    assert orphan.status_code == 422
    assert "person, an organization, a deal or a lead" in orphan.json()["detail"]
    assert api.post("/v1/notes", json={"content": "", "person_id": person["id"]}).status_code == 422


def test_organization_relations_show_on_both_sides(api: httpx.Client) -> None:
    holding = api.post("/v1/organizations", json={"name": "Acme Holding"}).json()
    acme = api.post("/v1/organizations", json={"name": "Acme GmbH"}).json()
    partner = api.post("/v1/organizations", json={"name": "Partner AG"}).json()

    created = api.post(
        f"/v1/organizations/{acme['id']}/relations", json={"organization_id": holding["id"], "type": "parent"}
    )
    assert created.status_code == 201
    assert (created.json()["organization_name"], created.json()["type"]) == ("Acme Holding", "parent")
    api.post(f"/v1/organizations/{acme['id']}/relations", json={"organization_id": partner["id"], "type": "related"})

    def relations(organization_id: str) -> dict[str, str]:
        rows = api.get(f"/v1/organizations/{organization_id}/relations").json()
        return {r["organization_name"]: r["type"] for r in rows}

    assert relations(acme["id"]) == {"Acme Holding": "parent", "Partner AG": "related"}
    assert relations(holding["id"]) == {"Acme GmbH": "subsidiary"}
    assert relations(partner["id"]) == {"Acme GmbH": "related"}

    # The same pair once, from whichever side; never with itself.
    again = api.post(
        f"/v1/organizations/{holding['id']}/relations", json={"organization_id": acme["id"], "type": "related"}
    )
    assert again.status_code == 409
    itself = api.post(
        f"/v1/organizations/{acme['id']}/relations", json={"organization_id": acme["id"], "type": "related"}
    )
    assert itself.status_code == 422

    relation_id = created.json()["id"]
    assert api.delete(f"/v1/organizations/{holding['id']}/relations/{relation_id}").status_code == 204
    assert relations(acme["id"]) == {"Partner AG": "related"}
    assert relations(holding["id"]) == {}
