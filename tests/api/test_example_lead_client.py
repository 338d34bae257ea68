"""examples/lead_to_won_deal.py walks a lead to a won deal against the real API, as a library and as a command."""

from __future__ import annotations

import subprocess
import sys
import uuid

import httpx

from examples.lead_to_won_deal import CrmClient, walk
from tests.conftest import Tenant
from tests.support.stack import REPO, Stack

STANDARD = ["New", "Qualified", "Proposal", "Negotiation", "Won", "Lost"]


def test_the_example_walks_a_lead_to_a_won_deal(api_stack: Stack, tenant: Tenant, api: httpx.Client) -> None:
    address = f"lee.{uuid.uuid4().hex[:6]}@prospect.example"
    with CrmClient(api_stack.api_url, tenant.token) as crm:
        done = walk(
            crm,
            {"name": "Lee Prospect", "email": address, "company": "Prospect Ltd", "value": "12000", "currency": "EUR"},
        )
    assert done.lead["status"] == "new"
    assert done.conversion["converted_now"] is True
    assert (done.deal["status"], done.deal["won_at"] is not None) == ("won", True)
    pipeline = api.get(f"/v1/pipelines/{done.deal['pipeline_id']}").json()
    assert [s["name"] for s in pipeline["stages"]] == STANDARD  # the example made the account's first pipeline
    assert done.deal["stage_id"] == pipeline["stages"][4]["id"]  # Won
    events = [e["deal_event"] for e in done.timeline if e["kind"] == "deal_event"]
    assert [e["data"]["stage"]["to"] for e in events if e["type"] == "stage_changed"] == [
        "Won",
        "Negotiation",
        "Proposal",
        "Qualified",
    ]
    assert {e["kind"] for e in done.timeline} == {"deal_event", "activity", "note"}
    assert api.get(f"/v1/leads/{done.lead['id']}").json()["status"] == "converted"
    assert api.get(f"/v1/persons/{done.conversion['person_id']}").json()["emails"] == [address]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "examples/lead_to_won_deal.py",
                "--url",
                api_stack.api_url,
                "--token",
                tenant.token,
                *args,
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    ran = run("--name", "Pat Phone", "--phone", "+44 20 7946 0000", "--company", "Phone Co")
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[0].startswith("lead ")
    assert ": won at " in lines[2]
    assert any("status_changed" in line and "[integration:" in line for line in lines)
    refused = run("--name", "Nobody")
    assert refused.returncode == 1
    assert "at least an email or a phone number" in refused.stderr
