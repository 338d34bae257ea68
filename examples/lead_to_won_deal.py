"""Walk a lead to a won deal over the Mailroom API, the way the CRM help pages describe it.

    python examples/lead_to_won_deal.py --url http://127.0.0.1:8025 --token mr_… \\
        --name "Lee Prospect" --email lee@prospect.example --company "Prospect Ltd" --value 12000 --currency EUR

Creates the lead (it needs an e-mail or a phone), shows its Smart-BCC sub-address, converts it into a person,
organization and deal in the first stage of a pipeline (creating a pipeline with the standard stages if the
account has none), logs a call and a note, moves the deal through each stage up to "Won" and marks it won, then
prints the deal's timeline with who did what. The token needs scope `write`. Errors arrive as RFC 9457 problem
details and are raised as `MailroomError` (see examples/deal_client.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

try:
    from examples.deal_client import MailroomClient, MailroomError
except ModuleNotFoundError:  # run as `python examples/lead_to_won_deal.py`: deal_client sits next to this file
    from deal_client import MailroomClient, MailroomError  # type: ignore[no-redef]


@dataclass(frozen=True)
class Walk:
    lead: dict[str, Any]
    conversion: dict[str, Any]
    deal: dict[str, Any]
    timeline: list[dict[str, Any]]


class CrmClient(MailroomClient):
    """The deal client, plus the calls a lead's way to a won deal needs."""

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._json(self._http.post(path, json=body))

    def patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._json(self._http.patch(path, json=body))

    def get(self, path: str) -> dict[str, Any]:
        return self._json(self._http.get(path))

    def first_pipeline(self) -> dict[str, Any]:
        pipelines = list(self._pages("/v1/pipelines", {}))
        if pipelines:
            return min(pipelines, key=lambda p: p["created_at"])
        return self.post("/v1/pipelines", {"name": "Sales"})  # gets New, Qualified, Proposal, Negotiation, Won, Lost


def walk(client: CrmClient, lead_fields: dict[str, Any]) -> Walk:
    lead = client.post("/v1/leads", lead_fields)
    client.patch(f"/v1/leads/{lead['id']}", {"status": "qualified"})
    pipeline = client.first_pipeline()
    conversion = client.post(f"/v1/leads/{lead['id']}/convert", {"pipeline_id": pipeline["id"]})
    deal_id = conversion["deal_id"]
    due = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    client.post(
        "/v1/activities",
        {"type": "call", "subject": "Walk through the offer", "deal_id": deal_id, "due_at": due.isoformat()},
    )
    client.post("/v1/notes", {"content": "Decision maker confirmed the budget.", "deal_id": deal_id})
    stages = pipeline["stages"]
    won_stage = next((s for s in stages if s["name"].lower() == "won"), stages[-1])
    for stage in stages[1 : stages.index(won_stage) + 1]:
        client.patch(f"/v1/deals/{deal_id}", {"stage_id": stage["id"]})
    deal = client.patch(f"/v1/deals/{deal_id}", {"status": "won"})
    return Walk(lead, conversion, deal, list(client.deal_timeline(deal_id)))


def describe(entry: dict[str, Any]) -> str:
    """A timeline line with its "who set it" badge."""
    kind = entry["kind"]
    if kind == "deal_event":
        event = entry["deal_event"]
        actor, what = event.get("actor"), f"{event['type']} {json.dumps(_short(event['data']))}"
    elif kind in ("activity", "note"):
        item = entry[kind]
        actor, what = item.get("created_by"), item.get("subject") or item.get("content")
    else:
        message = entry["message"]
        actor, what = None, f"mail: {message['subject']}"
    badge = "" if not actor else f"[{actor['kind']}: {actor.get('name') or '?'}]"
    return f"{entry['at']}  {kind:<10} {what} {badge}".rstrip()


def _short(data: dict[str, Any]) -> dict[str, Any]:
    names = {k: v for k, v in data.items() if k in ("stage", "pipeline", "status", "title")}
    return names or data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--email")
    parser.add_argument("--phone")
    parser.add_argument("--company")
    parser.add_argument("--source")
    parser.add_argument("--value")
    parser.add_argument("--currency")
    args = parser.parse_args(argv)
    fields = {
        key: value
        for key, value in vars(args).items()
        if key in ("name", "email", "phone", "company", "source", "value", "currency") and value is not None
    }
    with CrmClient(args.url, args.token) as client:
        try:
            done = walk(client, fields)
        except MailroomError as error:
            print(f"error: {error} ({error.type})", file=sys.stderr)
            return 1
        except httpx.HTTPError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    print(f"lead      {done.lead['id']}  Smart-BCC: {done.lead['bcc_address'] or '(no owner)'}")
    print(f"person    {done.conversion['person_id']}  organization {done.conversion['organization_id']}")
    print(f"deal      {done.deal['id']}  {done.deal['title']}: {done.deal['status']} at {done.deal['won_at']}")
    for entry in done.timeline:
        print(describe(entry))
    return 0


if __name__ == "__main__":
    sys.exit(main())
