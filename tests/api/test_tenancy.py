"""Every route of the app, called with another account's token and this account's ids: nothing leaks.

The route list comes from the application itself (tests/api/world.py), so a new route is walked automatically;
one without a sample request in world.py fails here until it gets one.
"""

from __future__ import annotations

import httpx

from tests.api.conftest import MailStore
from tests.api.world import LIST_FILTERS, World, app_routes, build_world, sample_body, send


def _assert_no_leak(response: httpx.Response, world: World, what: str) -> None:
    leaked = {i for i in world.all_ids() if i in response.text}
    assert not leaked, f"{what} leaked ids of another account: {leaked}\n{response.text[:500]}"


def test_no_route_reveals_or_changes_another_accounts_records(
    api: httpx.Client, stranger_api: httpx.Client, mail: MailStore
) -> None:
    world = build_world(api, mail)
    walked = 0
    for method, template in app_routes():
        if not template.startswith("/v1/"):
            continue
        body = sample_body(method, template, world)
        url = world.url(template)
        what = f"{method} {template}"
        if world.names_a_record(template):
            response = send(stranger_api, method, url, body)
            assert response.status_code == 404, f"{what}: {response.status_code} {response.text[:300]}"
            assert response.headers["content-type"] == "application/problem+json"
        elif method == "GET":
            params = {name: world.ids[name] for name in LIST_FILTERS}
            response = stranger_api.get(url, params=params)
            assert response.status_code == 200, f"{what}: {response.text[:300]}"
        else:
            # Creating in one's own account with references to the other account's records: refused (422) when
            # the body references any, and never echoing them.
            response = send(stranger_api, method, url, body)
            references = isinstance(body, dict) and any(str(v) in world.all_ids() for v in body.values())
            if references:
                assert response.status_code == 422, f"{what}: {response.status_code} {response.text[:300]}"
            else:
                assert response.is_success, f"{what}: {response.text[:300]}"
        _assert_no_leak(response, world, what)
        walked += 1
    assert walked > 60

    # The owner still sees everything unchanged: the walk above neither deleted nor resolved nor reprocessed.
    for method, template in app_routes():
        if method == "GET" and "{" in template and template.startswith("/v1/"):
            response = api.get(world.url(template))
            assert response.status_code == 200, f"owner GET {template}: {response.text[:300]}"
    assert api.get(f"/v1/persons/{world.ids['person_id']}").json()["deleted_at"] is None
    assert api.get(f"/v1/held-messages/{world.ids['inbound_id']}").json()["status"] == "held"
    assert api.get(f"/v1/disambiguations/{world.ids['disambiguation_id']}").json()["status"] == "pending"
    assert api.get(f"/v1/tokens/{world.ids['token_id']}").json()["revoked_at"] is None


def test_malformed_and_unknown_ids_are_plain_404s(api: httpx.Client) -> None:
    for url in ("/v1/persons/not-an-id", "/v1/persons/00000000-0000-0000-0000-000000000000", "/v1/threads/%20"):
        response = api.get(url)
        assert response.status_code == 404
        problem = response.json()
        assert problem["type"] == "https://mailroom.dev/problems/not-found"
        assert problem["status"] == 404
        assert "Traceback" not in response.text
