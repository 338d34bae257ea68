"""Activity types per account, activities on the timelines of a deal's person and organization, and the per-user
iCalendar feed, read back with a real iCalendar parser."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import icalendar

from tests.api.conftest import MailStore, client
from tests.support.stack import Stack


def test_each_account_has_its_activity_types(api: httpx.Client, stranger_api: httpx.Client) -> None:
    types = api.get("/v1/activity-types").json()
    assert [t["key"] for t in types] == ["call", "meeting", "task", "deadline", "email", "lunch"]
    added = api.post("/v1/activity-types", json={"key": "site_visit", "name": "Site visit"})
    assert added.status_code == 201
    assert api.post("/v1/activity-types", json={"key": "site_visit", "name": "Again"}).status_code == 409
    assert api.post("/v1/activities", json={"type": "site_visit", "subject": "Plant tour"}).status_code == 201
    # Another account does not have it.
    refused = stranger_api.post("/v1/activities", json={"type": "site_visit", "subject": "Plant tour"})
    assert refused.status_code == 422
    assert "call, meeting, task, deadline, email, lunch" in refused.json()["detail"]
    # A retired type stays on its activities but takes no new ones.
    assert api.patch("/v1/activity-types/lunch", json={"active": False}).json()["active"] is False
    assert api.post("/v1/activities", json={"type": "lunch", "subject": "Sushi"}).status_code == 422
    assert api.patch("/v1/activity-types/nope", json={"name": "x"}).status_code == 404


def test_deal_activities_show_on_its_person_and_organization(api: httpx.Client) -> None:
    organization = api.post("/v1/organizations", json={"name": "Acme"}).json()
    person = api.post(
        "/v1/persons", json={"name": "Jane", "phone": "+1 555 0100", "organization_id": organization["id"]}
    ).json()
    other = api.post("/v1/organizations", json={"name": "Deal's own org"}).json()
    deal = api.post(
        "/v1/deals", json={"title": "Rollout", "person_id": person["id"], "organization_id": other["id"]}
    ).json()
    meeting = api.post(
        "/v1/activities",
        json={
            "type": "meeting",
            "subject": "Demo",
            "deal_id": deal["id"],
            "due_at": "2026-12-03T15:00:00+01:00",
            "time_zone": "Europe/Berlin",
            "duration_minutes": 45,
        },
    ).json()
    assert (meeting["due_at"], meeting["time_zone"], meeting["duration_minutes"]) == (
        "2026-12-03T14:00:00Z",
        "Europe/Berlin",
        45,
    )
    for path in (f"/v1/persons/{person['id']}", f"/v1/organizations/{other['id']}", f"/v1/deals/{deal['id']}"):
        entries = [e for e in api.get(f"{path}/timeline").json()["data"] if e["kind"] == "activity"]
        assert [e["id"] for e in entries] == [meeting["id"]], path
    # The person's own organization sees it through the person.
    assert meeting["id"] in {
        e["id"] for e in api.get(f"/v1/organizations/{organization['id']}/timeline").json()["data"]
    }

    done = api.patch(f"/v1/activities/{meeting['id']}", json={"done": True}).json()
    assert (done["done"], done["done_at"] is not None) == (True, True)
    undone = api.patch(f"/v1/activities/{meeting['id']}", json={"done": False}).json()
    assert (undone["done"], undone["done_at"]) == (False, None)
    bad_zone = api.post("/v1/activities", json={"type": "call", "subject": "x", "time_zone": "Mars/Olympus"})
    assert bad_zone.status_code == 422
    assert bad_zone.json()["errors"][0]["field"] == "time_zone"


def test_icalendar_feed_shows_the_users_activities(api_stack: Stack, api: httpx.Client, mail: MailStore) -> None:
    user_id = str(mail.tenant.user_id)
    due = datetime.now(ZoneInfo("America/New_York")).replace(microsecond=0) + timedelta(days=2)
    call = api.post(
        "/v1/activities",
        json={
            "type": "call",
            "subject": "Pricing call; bring the numbers, please",
            "note": "Line one\nLine two, with a comma",
            "due_at": due.isoformat(),
            "time_zone": "America/New_York",
            "duration_minutes": 20,
            "user_id": user_id,
        },
    ).json()
    api.post("/v1/activities", json={"type": "task", "subject": "No due time", "user_id": user_id})
    colleague = api.post("/v1/users", json={"email": f"col.{uuid.uuid4().hex[:6]}@acme.example"}).json()
    api.post(
        "/v1/activities",
        json={"type": "call", "subject": "Not mine", "due_at": due.isoformat(), "user_id": colleague["id"]},
    )

    feed = api.post("/v1/calendar-feeds", json={"user_id": user_id})
    assert feed.status_code == 201
    url = feed.json()["url"]
    assert url.startswith(api_stack.api_url + "/calendar/")
    assert url.endswith(".ics")
    response = httpx.get(url)  # no Authorization header: calendar apps cannot send one
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/calendar")

    calendar = icalendar.Calendar.from_ical(response.content)
    assert str(calendar["VERSION"]) == "2.0"
    assert calendar["PRODID"]
    events = calendar.walk("VEVENT")
    assert len(events) == 1
    [event] = events
    assert str(event["SUMMARY"]) == "Call: Pricing call; bring the numbers, please"
    assert str(event["DESCRIPTION"]) == "Line one\nLine two, with a comma"
    assert str(event["UID"]) == f"activity-{call['id']}@mailroom"
    start = event.decoded("DTSTART")
    assert start == due
    assert str(start.tzinfo) == "America/New_York"
    assert event.decoded("DTEND") - start == timedelta(minutes=20)
    assert {str(tz["TZID"]) for tz in calendar.walk("VTIMEZONE")} == {"America/New_York"}

    # Asking again replaces the URL; the old one stops working. A user's token manages only its own feed.
    renewed = api.post("/v1/calendar-feeds", json={"user_id": user_id}).json()["url"]
    assert httpx.get(url).status_code == 404
    assert httpx.get(renewed).status_code == 200
    token = api.post("/v1/tokens", json={"scope": "write", "user_id": user_id}).json()["token"]
    with client(api_stack, token) as sam:
        assert sam.post("/v1/calendar-feeds", json={"user_id": colleague["id"]}).status_code == 404
        own = sam.post("/v1/calendar-feeds").json()
        assert own["user_id"] == user_id
        assert sam.delete(f"/v1/calendar-feeds/{user_id}").status_code == 204
    assert httpx.get(own["url"]).status_code == 404
    missing = httpx.get(f"{api_stack.api_url}/calendar/cal_nothing.ics")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
