"""One of every kind of record in an account, and a valid request for every route of the app.

The tenancy and scope walks iterate over the routes of the application itself; a route this module has no
sample request for fails those walks, so adding a route means saying here how to call it.
"""

from __future__ import annotations

import random
import re
import string
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi.routing import iter_route_contexts

from services.api.app import create_app
from shared.models import MessagePersonRole, ThreadDealRule
from shared.settings import Settings
from tests.api.conftest import MailStore

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def app_routes() -> list[tuple[str, str]]:
    """(method, path template) of every route of the API application, as it is built for production."""
    app = create_app(Settings(database_url="postgresql://unused/unused", redis_url="redis://unused"))
    routes = []
    # Included routers are wrapped; iter_route_contexts yields every route with its full path and methods.
    for route in iter_route_contexts(app.routes):
        if route.path is not None and route.methods:
            routes.extend((method, route.path) for method in sorted(route.methods) if method != "HEAD")
    return routes


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def unique_key(prefix: str) -> str:
    """Unique, in the alphabet of activity type keys (lowercase letters and underscores)."""
    return prefix + "_" + "".join(random.choices(string.ascii_lowercase, k=12))


# Path parameters that are not ids of a record (so not scoped to an account): a value every account may use.
PATH_VALUES = {"kind": "persons"}


@dataclass
class World:
    ids: dict[str, str]  # path parameter name -> an id of this account

    def url(self, template: str) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: self.ids.get(m.group(1)) or PATH_VALUES[m.group(1)], template)

    def names_a_record(self, template: str) -> bool:
        return any("{" + name + "}" in template for name in self.ids)

    def all_ids(self) -> set[str]:
        return set(self.ids.values())


def build_world(api: httpx.Client, mail: MailStore) -> World:
    def ok(response: httpx.Response) -> dict[str, Any]:
        assert response.is_success, response.text
        body: dict[str, Any] = response.json()
        return body

    user = ok(api.post("/v1/users", json={"email": f"{unique('colleague')}@acme.example", "name": "Colleague"}))
    alias = ok(api.post(f"/v1/users/{user['id']}/aliases", json={"address": f"{unique('sales')}@acme.example"}))
    token = ok(api.post("/v1/tokens", json={"scope": "read", "name": "walk"}))
    organization = ok(
        api.post("/v1/organizations", json={"name": "Customer Ltd", "domains": [unique("c") + ".example"]})
    )
    person = ok(
        api.post(
            "/v1/persons",
            json={
                "name": "Jane Doe",
                "emails": [f"{unique('jane')}@customer.example"],
                "organization_id": organization["id"],
            },
        )
    )
    pipeline = ok(api.post("/v1/pipelines", json={"name": "Sales", "stages": ["Lead", "Won"]}))
    deal = ok(
        api.post(
            "/v1/deals",
            json={"title": "Rollout", "person_id": person["id"], "stage_id": pipeline["stages"][0]["id"]},
        )
    )
    activity = ok(
        api.post(
            "/v1/activities",
            json={"type": "call", "subject": "Intro call", "person_id": person["id"], "deal_id": deal["id"]},
        )
    )
    other_organization = ok(api.post("/v1/organizations", json={"name": "Customer Holding"}))
    relation = ok(
        api.post(
            f"/v1/organizations/{organization['id']}/relations",
            json={"organization_id": other_organization["id"], "type": "parent"},
        )
    )
    lead = ok(api.post("/v1/leads", json={"name": "Lee Lead", "email": f"{unique('lee')}@prospect.example"}))
    note = ok(api.post("/v1/notes", json={"content": "Prefers e-mail", "deal_id": deal["id"], "lead_id": lead["id"]}))
    activity_type = ok(api.post("/v1/activity-types", json={"key": unique_key("demo"), "name": "Demo"}))
    thread_id = mail.thread("Rollout plan", deal_id=deal["id"], deal_rule=ThreadDealRule.single_open_deal)
    message_id = mail.message(
        thread_id,
        subject="Rollout plan",
        persons=[(person["id"], MessagePersonRole.from_)],
        attachments=[("logo.png", "image/png", PNG)],
    )
    attachment = ok(api.get(f"/v1/messages/{message_id}"))["attachments"][0]
    disambiguation_id = mail.disambiguation(thread_id, [(deal["id"], ["open deal of Jane Doe"])])
    held_id = mail.held(b"From: x@elsewhere.example\r\nSubject: held\r\n\r\nbody\r\n")
    webhook = ok(
        api.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["person.created"], "active": True})
    )
    ok(api.post("/v1/persons", json={"name": "Emits an event", "phone": "+1 555 0100"}))
    delivery = ok(api.get(f"/v1/webhooks/{webhook['id']}/deliveries"))["data"][0]
    draft = ok(api.post("/v1/drafts", json={"thread_id": thread_id, "body": "Thanks, Jane!"}))
    custom_field = ok(
        api.post(
            "/v1/custom-fields",
            json={"entity": "deal", "key": unique("plan").replace("-", "_"), "label": "Plan", "type": "text"},
        )
    )
    return World(
        ids={
            "user_id": user["id"],
            "alias_id": alias["id"],
            "token_id": token["id"],
            "organization_id": organization["id"],
            "person_id": person["id"],
            "pipeline_id": pipeline["id"],
            "stage_id": pipeline["stages"][0]["id"],
            "deal_id": deal["id"],
            "activity_id": activity["id"],
            "relation_id": relation["id"],
            "lead_id": lead["id"],
            "note_id": note["id"],
            "type_key": activity_type["key"],
            "thread_id": thread_id,
            "message_id": message_id,
            "attachment_id": attachment["id"],
            "disambiguation_id": disambiguation_id,
            "inbound_id": held_id,
            "webhook_id": webhook["id"],
            "delivery_id": delivery["id"],
            "draft_id": draft["id"],
            "field_id": custom_field["id"],
        }
    )


def send(http: httpx.Client, method: str, url: str, body: dict[str, Any] | bytes | None) -> httpx.Response:
    """Call a route with its sample body: JSON, or raw CSV for the import routes."""
    if isinstance(body, bytes):
        return http.request(method, url, content=body, headers={"Content-Type": "text/csv"})
    return http.request(method, url, json=body)


def sample_body(method: str, path: str, world: World) -> dict[str, Any] | bytes | None:
    """A valid body for the route, referencing `world`'s records where the route takes references.

    Raises KeyError for a route nobody described yet (so the walks fail until someone does).
    """
    ids = world.ids
    bodies: dict[tuple[str, str], dict[str, Any] | bytes | None] = {
        ("PATCH", "/v1/account"): {"create_organizations": True},
        ("POST", "/v1/tokens"): {"scope": "read", "user_id": ids["user_id"]},
        ("DELETE", "/v1/tokens/{token_id}"): None,
        ("POST", "/v1/users"): {"email": f"{unique('new')}@acme.example"},
        ("PATCH", "/v1/users/{user_id}"): {"name": "Renamed"},
        ("POST", "/v1/users/{user_id}/bcc-address/rotate"): None,
        ("POST", "/v1/users/{user_id}/aliases"): {"address": f"{unique('alias')}@acme.example"},
        ("POST", "/v1/users/{user_id}/aliases/{alias_id}/verify"): None,
        ("POST", "/v1/users/{user_id}/aliases/{alias_id}/confirmation"): None,
        ("DELETE", "/v1/users/{user_id}/aliases/{alias_id}"): None,
        ("PATCH", "/v1/threads/{thread_id}"): {"deal_id": ids["deal_id"], "visibility": "shared"},
        ("POST", "/v1/disambiguations/{disambiguation_id}/resolve"): {"deal_id": ids["deal_id"]},
        ("POST", "/v1/held-messages/reprocess"): {},
        ("POST", "/v1/held-messages/{inbound_id}/reprocess"): None,
        ("POST", "/v1/held-messages/{inbound_id}/discard"): None,
        ("POST", "/v1/persons"): {"name": "New", "organization_id": ids["organization_id"]},
        ("PATCH", "/v1/persons/{person_id}"): {"name": "Renamed", "organization_id": ids["organization_id"]},
        ("DELETE", "/v1/persons/{person_id}"): None,
        ("POST", "/v1/organizations"): {"name": "New Org"},
        ("PATCH", "/v1/organizations/{organization_id}"): {"name": "Renamed"},
        ("DELETE", "/v1/organizations/{organization_id}"): None,
        ("POST", "/v1/pipelines"): {"name": "New pipeline"},
        ("PATCH", "/v1/pipelines/{pipeline_id}"): {"name": "Renamed"},
        ("DELETE", "/v1/pipelines/{pipeline_id}"): None,
        ("POST", "/v1/pipelines/{pipeline_id}/stages"): {"name": "New stage"},
        ("PATCH", "/v1/pipelines/{pipeline_id}/stages/{stage_id}"): {"position": 5},
        ("DELETE", "/v1/pipelines/{pipeline_id}/stages/{stage_id}"): None,
        ("POST", "/v1/deals"): {"title": "New", "person_id": ids["person_id"], "stage_id": ids["stage_id"]},
        ("PATCH", "/v1/deals/{deal_id}"): {"title": "Renamed", "organization_id": ids["organization_id"]},
        ("DELETE", "/v1/deals/{deal_id}"): None,
        ("POST", "/v1/activities"): {"type": "call", "subject": "New", "deal_id": ids["deal_id"]},
        ("PATCH", "/v1/activities/{activity_id}"): {"done": True, "person_id": ids["person_id"]},
        ("DELETE", "/v1/activities/{activity_id}"): None,
        ("POST", "/v1/organizations/{organization_id}/relations"): {
            "organization_id": ids["organization_id"],
            "type": "related",
        },
        ("DELETE", "/v1/organizations/{organization_id}/relations/{relation_id}"): None,
        ("PUT", "/v1/pipelines/{pipeline_id}/access"): {"restricted": False, "member_user_ids": [ids["user_id"]]},
        ("POST", "/v1/activity-types"): {"key": unique_key("new"), "name": "New type"},
        ("PATCH", "/v1/activity-types/{type_key}"): {"name": "Renamed"},
        ("POST", "/v1/notes"): {"content": "New note", "deal_id": ids["deal_id"]},
        ("PATCH", "/v1/notes/{note_id}"): {"content": "Changed"},
        ("DELETE", "/v1/notes/{note_id}"): None,
        ("POST", "/v1/leads"): {"name": "New lead", "phone": "+1 555 0101"},
        ("PATCH", "/v1/leads/{lead_id}"): {"status": "in_progress", "owner_user_id": ids["user_id"]},
        ("DELETE", "/v1/leads/{lead_id}"): None,
        ("POST", "/v1/leads/{lead_id}/convert"): {"pipeline_id": ids["pipeline_id"]},
        ("POST", "/v1/calendar-feeds"): {"user_id": ids["user_id"]},
        ("DELETE", "/v1/calendar-feeds/{user_id}"): None,
        ("POST", "/v1/webhooks"): {"url": "http://127.0.0.1:9/other", "events": ["message.stored"]},
        ("PATCH", "/v1/webhooks/{webhook_id}"): {"description": "changed"},
        ("POST", "/v1/webhooks/{webhook_id}/rotate-secret"): None,
        ("DELETE", "/v1/webhooks/{webhook_id}"): None,
        ("POST", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"): None,
        ("POST", "/v1/drafts"): {"thread_id": ids["thread_id"], "body": "Another reply"},
        ("PATCH", "/v1/drafts/{draft_id}"): {"body": "Changed"},
        ("DELETE", "/v1/drafts/{draft_id}"): None,
        ("POST", "/v1/drafts/{draft_id}/submit"): None,
        ("POST", "/v1/drafts/{draft_id}/approve"): None,
        ("POST", "/v1/drafts/{draft_id}/reject"): {"reason": "not now"},
        ("POST", "/v1/drafts/{draft_id}/retry"): None,
        ("POST", "/v1/imports/{kind}"): b"name,phone\nImported in a walk,+1 555 0199\n",
        ("POST", "/v1/custom-fields"): {"entity": "person", "key": "walk_field", "label": "Walk", "type": "number"},
        ("PATCH", "/v1/custom-fields/{field_id}"): {"label": "Renamed"},
        ("DELETE", "/v1/custom-fields/{field_id}"): None,
    }
    if method == "GET":
        return None
    return bodies[(method, path)]


# Query filters of list routes that take ids, set to `world`'s ids in the tenancy walk.
LIST_FILTERS = (
    "person_id",
    "organization_id",
    "deal_id",
    "user_id",
    "thread_id",
    "pipeline_id",
    "stage_id",
    "lead_id",
)
