"""CSV import and export over HTTP and through the `mailroom` console script."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Tenant
from tests.support.stack import Stack

CSV = {"Content-Type": "text/csv"}
MAILROOM = Path(sys.executable).parent / "mailroom"  # the console script pip installed


def _import(api: httpx.Client, kind: str, text: str, *, dry_run: bool = False) -> dict[str, Any]:
    response = api.post(f"/v1/imports/{kind}", content=text.encode(), headers=CSV, params={"dry_run": dry_run})
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def _export(api: httpx.Client, kind: str) -> list[dict[str, str]]:
    response = api.get(f"/v1/exports/{kind}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == f'attachment; filename="{kind}.csv"'
    return list(csv.DictReader(io.StringIO(response.text)))


ORGANIZATIONS = """external_id,name,domains,custom.industry
org-1,Acme Retail,acme-retail.example; shop.acme-retail.example,Retail
org-2,Globex,globex.example,Software
"""

PERSONS = """external_id,name,emails,phone,organization_external_id
p-1,Jane Doe,jane@acme-retail.example,,org-1
p-2,Kim Lee,,+44 20 7946 0000,org-2
p-3,No Contact,,,org-1
p-4,Wrong Org,w@x.example,,org-9
"""


def test_a_dry_run_reports_every_rejected_row_and_changes_nothing(api: httpx.Client) -> None:
    api.post(
        "/v1/custom-fields",
        json={
            "entity": "organization",
            "key": "industry",
            "label": "Industry",
            "type": "option",
            "options": ["Retail"],
        },
    )
    dry = _import(api, "organizations", ORGANIZATIONS, dry_run=True)
    assert (dry["dry_run"], dry["rows"], dry["created"], dry["rejected"]) == (True, 2, 1, 1)
    assert dry["rejections"] == [
        {"row": 3, "external_id": "org-2", "reasons": ["custom.industry: must be one of: Retail"]}
    ]
    assert dry["created_ids"] == []
    assert _export(api, "organizations") == []

    real = _import(api, "organizations", ORGANIZATIONS)
    assert (real["created"], real["rejected"]) == (1, 1)
    [acme] = _export(api, "organizations")
    assert (acme["external_id"], acme["name"], acme["domains"], acme["custom.industry"]) == (
        "org-1",
        "Acme Retail",
        "acme-retail.example; shop.acme-retail.example",
        "Retail",
    )

    people = _import(api, "persons", PERSONS, dry_run=True)
    assert (people["created"], people["rejected"]) == (1, 3)
    reasons = {r["external_id"]: r["reasons"] for r in people["rejections"]}
    assert reasons["p-2"] == ["organization_external_id: no organization with external id 'org-2'"]
    assert reasons["p-3"] == [
        "emails: an email or a phone number is required",
        "phone: an email or a phone number is required",
    ]
    assert reasons["p-4"] == ["organization_external_id: no organization with external id 'org-9'"]
    assert api.get("/v1/persons").json()["data"] == []


def test_reimporting_the_same_file_changes_nothing_and_an_edited_row_updates(api: httpx.Client) -> None:
    _import(api, "organizations", "external_id,name\norg-1,Acme\norg-2,Globex\n")
    first = _import(api, "persons", "external_id,name,emails,organization_external_id\np-1,Jane,j@a.example,org-1\n")
    assert first["created"] == 1
    again = _import(api, "persons", "external_id,name,emails,organization_external_id\np-1,Jane,j@a.example,org-1\n")
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 1)
    [jane] = api.get("/v1/persons").json()["data"]
    assert jane["updated_at"] is None  # an unchanged row leaves no trace
    assert jane["created_by"]["kind"] == "integration"

    moved = _import(api, "persons", "external_id,name,emails,organization_external_id\np-1,Jane D,j@a.example,org-2\n")
    assert (moved["created"], moved["updated"]) == (0, 1)
    [jane] = api.get("/v1/persons").json()["data"]
    assert jane["name"] == "Jane D"
    globex = api.get("/v1/organizations", params={"q": "Globex"}).json()["data"][0]
    assert jane["organization_id"] == globex["id"]


def test_imported_won_deals_keep_the_won_date_of_the_file_or_get_the_import_date(api: httpx.Client) -> None:
    api.post("/v1/custom-fields", json={"entity": "deal", "key": "plan", "label": "Plan", "type": "text"})
    api.post("/v1/pipelines", json={"name": "Sales"})
    _import(api, "organizations", "external_id,name\norg-1,Acme\n")
    deals = (
        "external_id,title,status,value,currency,pipeline,stage,organization_external_id,won_date,custom.plan\n"
        "d-1,Old win,won,1200,EUR,Sales,Won,org-1,2025-03-15,Pro\n"
        "d-2,New win,won,800,EUR,Sales,Won,org-1,,Starter\n"
        "d-3,Open one,open,500,EUR,Sales,Proposal,org-1,,\n"
        "d-4,Bad one,maybe,abc,EUR,Nope,,org-1,15/03/2025,\n"
    )
    before = datetime.now(UTC)
    report = _import(api, "deals", deals)
    assert (report["created"], report["rejected"]) == (3, 1)
    [bad] = report["rejections"]
    assert bad["row"] == 5
    assert {reason.split(":")[0] for reason in bad["reasons"]} == {"pipeline", "won_date"}

    by_id = {row["external_id"]: row for row in _export(api, "deals")}
    assert by_id["d-1"]["won_date"] == "2025-03-15T00:00:00+00:00"
    assert datetime.fromisoformat(by_id["d-2"]["won_date"]) >= before.replace(microsecond=0)
    assert by_id["d-3"]["won_date"] == ""
    assert (by_id["d-1"]["stage"], by_id["d-3"]["stage"], by_id["d-1"]["custom.plan"]) == ("Won", "Proposal", "Pro")
    assert (by_id["d-1"]["value"], by_id["d-1"]["currency"]) == ("1200.00", "EUR")

    # Imported again with the same empty won date: the stamp of the first import stays.
    again = _import(api, "deals", deals)
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 3)
    assert {row["external_id"]: row["won_date"] for row in _export(api, "deals")}["d-2"] == by_id["d-2"]["won_date"]


def test_an_export_imports_back_unchanged(api: httpx.Client) -> None:
    api.post("/v1/custom-fields", json={"entity": "person", "key": "shoe_size", "label": "Shoe", "type": "number"})
    organization = api.post("/v1/organizations", json={"name": "Acme", "domains": ["acme.example"]}).json()
    api.post(
        "/v1/persons",
        json={
            "name": 'Jane, "JD" Doe',
            "emails": ["jane@acme.example"],
            "organization_id": organization["id"],
            "custom_fields": {"shoe_size": 38.5},
        },
    )
    api.post("/v1/persons", json={"name": "Kim", "phone": "+1 555 0100"})
    exported = api.get("/v1/exports/persons").text
    assert (
        exported.splitlines()[0]
        == "id,external_id,name,emails,phone,organization_id,organization_external_id,custom.shoe_size"
    )
    report = _import(api, "persons", exported)
    assert (report["rows"], report["created"], report["updated"], report["unchanged"]) == (2, 0, 0, 2)


def test_leads_import_and_export(api: httpx.Client) -> None:
    leads = "external_id,name,company,email,status,value,currency\nl-1,Ann,Shop,ann@shop.example,qualified,300,USD\n"
    assert _import(api, "leads", leads)["created"] == 1
    [lead] = _export(api, "leads")
    assert (lead["external_id"], lead["status"], lead["value"]) == ("l-1", "qualified", "300.00")
    assert _import(api, "leads", leads)["unchanged"] == 1
    converted = "external_id,name,email,status\nl-2,Bo,bo@x.example,converted\n"
    assert _import(api, "leads", converted)["rejections"][0]["reasons"][0].startswith("status:")


def test_a_file_that_cannot_be_read_is_refused_as_a_whole(api: httpx.Client) -> None:
    unknown = api.post("/v1/imports/persons", content=b"name,shoe\nJane,38\n", headers=CSV)
    assert unknown.status_code == 422
    assert unknown.json()["type"] == "https://mailroom.dev/problems/invalid-file"
    assert "'shoe'" in unknown.json()["detail"]
    assert api.post("/v1/imports/persons", content=b"", headers=CSV).status_code == 422
    assert api.post("/v1/imports/persons", content=b"name\n\xff\xfe\n", headers=CSV).status_code == 422
    assert api.post("/v1/imports/widgets", content=b"name\n", headers=CSV).status_code == 422
    assert api.get("/v1/persons").json()["data"] == []


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MAILROOM), *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_the_console_script_imports_with_a_progress_bar_and_exports(
    api_stack: Stack, api: httpx.Client, tenant: Tenant, tmp_path: Path
) -> None:
    rows = ["external_id,name,phone"] + [f"cli-{n},Person {n},+1 555 {n:04d}" for n in range(300)] + ["cli-x,,"]
    source = tmp_path / "persons.csv"
    source.write_text("\n".join(rows) + "\n")
    account = str(tenant.account_id)

    dry = _cli(["import", "persons", str(source), "--account", account, "--dry-run"], api_stack.env)
    assert dry.returncode == 1, dry.stderr  # a row would be rejected
    report = json.loads(dry.stdout)
    assert (report["dry_run"], report["created"], report["rejected"]) == (True, 300, 1)
    assert report["rejections"][0]["row"] == 302
    assert "301/301" in dry.stderr  # the progress bar reached the end
    assert api.get("/v1/persons").json()["data"] == []

    real = _cli(["import", "persons", str(source), "--account", account, "--no-progress"], api_stack.env)
    assert real.returncode == 1
    assert json.loads(real.stdout)["created"] == 300
    assert real.stderr == ""
    persons = api.get("/v1/persons", params={"limit": 1}).json()["data"]
    assert persons[0]["created_by"]["name"] == "mailroom CLI"

    target = tmp_path / "out.csv"
    exported = _cli(["export", "persons", "--account", account, "--output", str(target)], api_stack.env)
    assert exported.returncode == 0, exported.stderr
    assert len(list(csv.DictReader(target.open()))) == 300

    missing = _cli(["import", "persons", str(tmp_path / "nope.csv"), "--account", account], api_stack.env)
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr
