"""The account's matcher settings, read and changed over HTTP — and the matcher following them."""

from __future__ import annotations

import httpx


def test_settings_have_defaults_and_change_field_by_field(api: httpx.Client) -> None:
    account = api.get("/v1/account").json()
    assert account["settings"] == {
        "fold_subaddresses": True,
        "max_people_per_message": 20,
        "create_organizations": False,
        "internal_domains": [],
        "blocklist": [],
        "ask_before_sending": True,
        "unauthenticated_sender_domains": [],
    }
    changed = api.patch(
        "/v1/account", json={"create_organizations": True, "blocklist": ["Spam@X.example ", "@junk.example"]}
    )
    assert changed.status_code == 200
    settings = changed.json()["settings"]
    assert settings["create_organizations"] is True
    assert settings["blocklist"] == ["@junk.example", "spam@x.example"]
    assert settings["max_people_per_message"] == 20  # untouched
    assert api.get("/v1/account").json()["settings"] == settings


def test_invalid_settings_are_a_problem_with_the_field(api: httpx.Client) -> None:
    response = api.patch("/v1/account", json={"max_people_per_message": -1})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert any(error["field"] == "max_people_per_message" for error in response.json()["errors"])
