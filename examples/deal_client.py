"""A small Mailroom API client written with httpx: a deal's timeline, and the deal chooser.

    python examples/deal_client.py --url http://127.0.0.1:8025 --token mr_… timeline DEAL_ID
    python examples/deal_client.py --url … --token … pending
    python examples/deal_client.py --url … --token … resolve DISAMBIGUATION_ID (DEAL_ID | none)

The token needs scope `read` for the first two and `write` to resolve. Errors arrive as RFC 9457 problem
details and are raised as `MailroomError`; lists are followed across pages with `next_cursor`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any

import httpx


class MailroomError(Exception):
    def __init__(self, problem: dict[str, Any]) -> None:
        super().__init__(f"{problem.get('title')}: {problem.get('detail')}")
        self.problem = problem
        self.status = int(problem.get("status", 0))
        self.type = str(problem.get("type", ""))


class MailroomClient:
    def __init__(self, base_url: str, token: str, *, timeout: float = 30) -> None:
        self._http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)

    def __enter__(self) -> MailroomClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._http.close()

    def deal_timeline(self, deal_id: str, *, page_size: int = 50) -> Iterator[dict[str, Any]]:
        """Every entry of the deal's timeline (mail, activities, deal events), newest first."""
        yield from self._pages(f"/v1/deals/{deal_id}/timeline", {"limit": page_size})

    def pending_disambiguations(self, *, user_id: str | None = None) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {"status": "pending"}
        if user_id is not None:
            params["user_id"] = user_id
        yield from self._pages("/v1/disambiguations", params)

    def resolve(self, disambiguation_id: str, deal_id: str | None) -> dict[str, Any]:
        """Link the whole thread to `deal_id`, or to no deal with None."""
        return self._json(
            self._http.post(f"/v1/disambiguations/{disambiguation_id}/resolve", json={"deal_id": deal_id})
        )

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        cursor = None
        while True:
            page = self._json(self._http.get(path, params={**params, **({"cursor": cursor} if cursor else {})}))
            yield from page["data"]
            cursor = page["next_cursor"]
            if cursor is None:
                return

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        if response.headers.get("content-type", "").startswith("application/problem+json"):
            raise MailroomError(response.json())
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body


def describe(entry: dict[str, Any]) -> str:
    """One line per timeline entry, as a CRM would render it."""
    if entry["kind"] == "message":
        message = entry["message"]
        sender = (message.get("from") or {}).get("address", "?")
        return f"{entry['at']}  mail      {sender}: {message['subject']} — {message['preview'] or ''}"
    if entry["kind"] == "activity":
        activity = entry["activity"]
        return f"{entry['at']}  {activity['type']:<9} {activity['subject']}{' (done)' if activity['done'] else ''}"
    event = entry["deal_event"]
    return f"{entry['at']}  deal      {event['deal_title']}: {event['type']} {json.dumps(event['data'])}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("timeline").add_argument("deal_id")
    commands.add_parser("pending")
    resolve = commands.add_parser("resolve")
    resolve.add_argument("disambiguation_id")
    resolve.add_argument("deal_id", help="a deal id, or `none`")
    args = parser.parse_args(argv)

    with MailroomClient(args.url, args.token) as client:
        try:
            if args.command == "timeline":
                for entry in client.deal_timeline(args.deal_id):
                    print(describe(entry))
            elif args.command == "pending":
                for item in client.pending_disambiguations():
                    choices = ", ".join(f"{c['deal_id']} ({'; '.join(c['reasons'])})" for c in item["candidates"])
                    print(f"{item['id']}  {item['thread']['subject']}: {choices}")
            else:
                deal_id = None if args.deal_id == "none" else args.deal_id
                resolved = client.resolve(args.disambiguation_id, deal_id)
                print(
                    json.dumps(
                        {"id": resolved["id"], "status": resolved["status"], "deal_id": resolved["resolved_deal_id"]}
                    )
                )
        except MailroomError as error:
            print(f"error: {error} ({error.type})", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
