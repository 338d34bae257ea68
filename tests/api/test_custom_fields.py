"""Custom fields over HTTP: typed definitions, values on deals, persons and organizations, list filters."""

from __future__ import annotations

import httpx


def _errors(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return {e["field"]: e["message"] for e in response.json()["errors"]}


def _define(api: httpx.Client, entity: str, key: str, field_type: str, options: list[str] | None = None) -> str:
    body = {"entity": entity, "key": key, "label": key.title(), "type": field_type, "options": options or []}
    response = api.post("/v1/custom-fields", json=body)
    assert response.status_code == 201, response.text
    field_id: str = response.json()["id"]
    return field_id


def test_typed_values_on_deals_are_checked_and_filterable(api: httpx.Client) -> None:
    _define(api, "deal", "plan", "option", ["Starter", "Pro", "Enterprise"])
    _define(api, "deal", "seats", "number")
    _define(api, "deal", "renews_on", "date")
    _define(api, "deal", "notes", "text")
    person = api.post("/v1/persons", json={"name": "Jane", "phone": "+1 555 0100"}).json()

    pro = api.post(
        "/v1/deals",
        json={
            "title": "Pro for Jane",
            "person_id": person["id"],
            "custom_fields": {"plan": "Pro", "seats": "10", "renews_on": "2027-01-31", "notes": " VIP "},
        },
    )
    assert pro.status_code == 201, pro.text
    assert pro.json()["custom_fields"] == {"plan": "Pro", "seats": 10, "renews_on": "2027-01-31", "notes": "VIP"}
    starter = api.post(
        "/v1/deals",
        json={"title": "Starter", "person_id": person["id"], "custom_fields": {"plan": "Starter", "seats": 2.5}},
    ).json()

    wrong = api.post(
        "/v1/deals",
        json={
            "title": "Wrong",
            "person_id": person["id"],
            "custom_fields": {"plan": "Gold", "seats": "many", "renews_on": "31.01.2027", "colour": "red"},
        },
    )
    assert _errors(wrong) == {
        "custom_fields.colour": "no such custom field",
        "custom_fields.plan": "must be one of: Starter, Pro, Enterprise",
        "custom_fields.renews_on": "must be a date like 2026-12-31",
        "custom_fields.seats": "must be a number",
    }

    def titles(**params: str) -> set[str]:
        response = api.get("/v1/deals", params=params)
        assert response.status_code == 200, response.text
        return {d["title"] for d in response.json()["data"]}

    assert titles(**{"custom.plan": "Pro"}) == {"Pro for Jane"}
    assert titles(**{"custom.seats": "10.0"}) == {"Pro for Jane"}  # numbers compare as numbers
    assert titles(**{"custom.seats": "2.5", "custom.plan": "Starter"}) == {"Starter"}
    assert titles(**{"custom.renews_on": "2027-01-31"}) == {"Pro for Jane"}
    assert titles(**{"custom.plan": "Enterprise"}) == set()
    assert _errors(api.get("/v1/deals", params={"custom.plan": "Gold"})) == {
        "query.custom.plan": "must be one of: Starter, Pro, Enterprise"
    }
    assert "query.custom.nope" in _errors(api.get("/v1/deals", params={"custom.nope": "x"}))

    # Only the keys sent change; null removes one.
    patched = api.patch(f"/v1/deals/{starter['id']}", json={"custom_fields": {"seats": None, "notes": "trial"}})
    assert patched.json()["custom_fields"] == {"plan": "Starter", "notes": "trial"}


def test_persons_and_organizations_carry_their_own_fields(api: httpx.Client) -> None:
    _define(api, "person", "birthday", "date")
    _define(api, "organization", "industry", "option", ["Retail", "Software"])
    org = api.post("/v1/organizations", json={"name": "Shop", "custom_fields": {"industry": "Retail"}})
    assert org.status_code == 201, org.text
    person = api.post(
        "/v1/persons", json={"name": "Kim", "phone": "+1 555 0101", "custom_fields": {"birthday": "1990-05-01"}}
    ).json()
    assert person["custom_fields"] == {"birthday": "1990-05-01"}
    # A person field is not an organization field.
    assert "custom_fields.birthday" in _errors(
        api.post("/v1/organizations", json={"name": "X", "custom_fields": {"birthday": "1990-05-01"}})
    )
    assert [o["name"] for o in api.get("/v1/organizations", params={"custom.industry": "Retail"}).json()["data"]] == [
        "Shop"
    ]
    assert [p["name"] for p in api.get("/v1/persons", params={"custom.birthday": "1990-05-01"}).json()["data"]] == [
        "Kim"
    ]


def test_definitions_are_managed_and_deleting_one_removes_its_values(api: httpx.Client) -> None:
    field_id = _define(api, "deal", "tier", "option", ["A", "B"])
    person = api.post("/v1/persons", json={"name": "Lee", "phone": "+1 555 0102"}).json()
    deal = api.post("/v1/deals", json={"title": "T", "person_id": person["id"], "custom_fields": {"tier": "A"}}).json()

    duplicate = api.post("/v1/custom-fields", json={"entity": "deal", "key": "tier", "label": "Tier", "type": "text"})
    assert duplicate.status_code == 409
    assert "options" in _errors(
        api.post("/v1/custom-fields", json={"entity": "deal", "key": "empty", "label": "E", "type": "option"})
    )
    assert "key" in _errors(
        api.post("/v1/custom-fields", json={"entity": "deal", "key": "Bad Key", "label": "E", "type": "text"})
    )

    renamed = api.patch(f"/v1/custom-fields/{field_id}", json={"label": "Support tier", "options": ["A", "B", "C"]})
    assert (renamed.json()["label"], renamed.json()["options"]) == ("Support tier", ["A", "B", "C"])
    assert [f["key"] for f in api.get("/v1/custom-fields", params={"entity": "deal"}).json()["data"]] == ["tier"]

    assert api.delete(f"/v1/custom-fields/{field_id}").status_code == 204
    assert api.get(f"/v1/deals/{deal['id']}").json()["custom_fields"] == {}
    assert api.get(f"/v1/custom-fields/{field_id}").status_code == 404


def test_external_ids_are_unique_per_kind_of_record(api: httpx.Client) -> None:
    first = api.post("/v1/organizations", json={"name": "One", "external_id": "crm-1"})
    assert first.json()["external_id"] == "crm-1"
    taken = api.post("/v1/organizations", json={"name": "Two", "external_id": "crm-1"})
    assert taken.status_code == 409
    # Another kind of record may use the same external id.
    assert (
        api.post("/v1/persons", json={"name": "P", "phone": "+1 555 0103", "external_id": "crm-1"}).status_code == 201
    )
