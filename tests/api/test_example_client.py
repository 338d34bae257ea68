"""The example client in examples/ works against the real API, as a library and as a command."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import httpx
import pytest

from examples.deal_client import MailroomClient, MailroomError
from tests.api.conftest import MailStore
from tests.conftest import Tenant
from tests.support.stack import REPO, Stack


def test_example_client_lists_a_deal_timeline_and_resolves_a_disambiguation(
    api_stack: Stack, tenant: Tenant, api: httpx.Client, mail: MailStore
) -> None:
    jane = api.post("/v1/persons", json={"name": "Jane", "phone": "+1 555 0100"}).json()
    licences = api.post("/v1/deals", json={"title": "Licences", "person_id": jane["id"]}).json()
    support = api.post("/v1/deals", json={"title": "Support", "person_id": jane["id"]}).json()
    api.post("/v1/activities", json={"type": "call", "subject": "Pricing call", "deal_id": licences["id"]})
    thread = mail.thread("Renewal")
    for day in (1, 2, 3):
        mail.message(
            thread,
            subject="Renewal",
            new_text=f"note {day}",
            persons=[(jane["id"], "from")],
            sent_at=datetime(2026, 3, day, tzinfo=UTC),
        )
    question = mail.disambiguation(
        thread, [(licences["id"], ["open deal of Jane"]), (support["id"], ["open deal of Jane"])]
    )

    with MailroomClient(api_stack.api_url, tenant.token) as client:
        assert [d["id"] for d in client.pending_disambiguations()] == [question]
        resolved = client.resolve(question, licences["id"])
        assert resolved["status"] == "resolved"
        with pytest.raises(MailroomError) as again:
            client.resolve(question, None)
        assert again.value.status == 409
        timeline = list(client.deal_timeline(licences["id"], page_size=2))  # several pages
    assert [e["kind"] for e in timeline].count("message") == 3
    assert {e["kind"] for e in timeline} == {"message", "activity", "deal_event"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "examples/deal_client.py", "--url", api_stack.api_url, "--token", tenant.token, *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    listed = run("timeline", licences["id"])
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 5
    mails = [line for line in lines if "  mail  " in line]
    assert [m.rsplit("— ", 1)[1] for m in mails] == ["note 3", "note 2", "note 1"]  # newest first
    assert any("call      Pricing call" in line for line in lines)
    other = mail.disambiguation(mail.thread("Other"), [(support["id"], ["open deal of Jane"])])
    assert other in run("pending").stdout
    declined = run("resolve", other, "none")
    assert json.loads(declined.stdout) == {"id": other, "status": "resolved", "deal_id": None}
    missing = run("timeline", "no-such-deal")
    assert missing.returncode == 1
    assert "not-found" in missing.stderr
