"""Reports over HTTP: revenue forecast and deal dynamics as JSON, CSV tables and SVG charts."""

from __future__ import annotations

import csv
import io
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

SVG_NS = "{http://www.w3.org/2000/svg}"


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.is_success, response.text
    body: dict[str, Any] = response.json()
    return body


def _svg(response: httpx.Response) -> ET.Element:
    assert response.status_code == 200, response.text
    return ET.fromstring(response.text)  # noqa: S314 -- our own server's chart, and the point is to parse it strictly


@pytest.fixture
def sales(api: httpx.Client) -> dict[str, Any]:
    """Two pipelines, probabilities on two of Sales' stages, two owners, and deals in several currencies."""
    pipeline = _ok(api.post("/v1/pipelines", json={"name": "Sales"}))
    stage = {s["name"]: s["id"] for s in pipeline["stages"]}
    for name, probability in (("Proposal", 50), ("Negotiation", 80)):
        changed = _ok(
            api.patch(f"/v1/pipelines/{pipeline['id']}/stages/{stage[name]}", json={"probability": probability})
        )
        assert changed["probability"] == probability
    renewals = _ok(api.post("/v1/pipelines", json={"name": "Renewals", "stages": ["Due", "Signed"]}))
    ada = _ok(api.post("/v1/users", json={"email": f"ada.{uuid.uuid4().hex[:6]}@acme.example", "name": "Ada"}))
    bob = _ok(api.post("/v1/users", json={"email": f"bob.{uuid.uuid4().hex[:6]}@acme.example", "name": "Bob"}))
    organization = _ok(api.post("/v1/organizations", json={"name": "Customer"}))

    def deal(title: str, stage_id: str, value: str, currency: str, close: str | None, **extra: Any) -> dict[str, Any]:
        body = {
            "title": title,
            "organization_id": organization["id"],
            "stage_id": stage_id,
            "value": value,
            "currency": currency,
            "expected_close_date": close,
            **extra,
        }
        return _ok(api.post("/v1/deals", json=body))

    deals = {
        "proposal": deal("Proposal", stage["Proposal"], "1000", "EUR", "2027-01-15", owner_user_id=ada["id"]),
        "negotiation": deal("Negotiation", stage["Negotiation"], "2000", "EUR", "2027-01-20", owner_user_id=bob["id"]),
        "new": deal("New", stage["New"], "500", "EUR", "2027-03-01", owner_user_id=ada["id"]),
        "renewal": deal("Renewal", renewals["stages"][0]["id"], "300", "EUR", "2027-01-10"),
        "dollars": deal("Dollars", stage["New"], "700", "USD", "2027-01-05"),
        "undated": deal("Undated", stage["New"], "100", "EUR", None),
        "won": deal("Won", stage["Won"], "5000", "EUR", "2027-01-01", status="won"),
        "lost": deal("Lost", stage["Lost"], "50", "EUR", "2027-01-01", status="lost"),
        "won_long_ago": deal(
            "Won long ago", stage["Won"], "10", "EUR", None, status="won", won_at="2025-06-01T12:00:00+00:00"
        ),
    }
    return {"pipeline": pipeline, "stage": stage, "renewals": renewals, "ada": ada, "bob": bob, "deals": deals}


def test_the_forecast_weights_open_deals_by_stage_probability_in_one_currency(
    api: httpx.Client, sales: dict[str, Any]
) -> None:
    report = _ok(api.get("/v1/reports/forecast"))  # no currency given: the one most open deals are in
    assert report["currency"] == "EUR"
    assert report["months"] == ["2027-01", "2027-02", "2027-03"]
    rows = [(r["month"], r["group_name"], r["deals"], r["value"], r["weighted_value"]) for r in report["rows"]]
    assert rows == [
        ("2027-01", "Renewals", 1, "300.00", "300.00"),  # no probability: counted in full
        ("2027-01", "Sales", 2, "3000.00", "2100.00"),  # 1000 × 50 % + 2000 × 80 %
        ("2027-03", "Sales", 1, "500.00", "500.00"),
    ]
    assert (report["total_value"], report["total_weighted_value"]) == ("3800.00", "2900.00")
    assert report["undated"] == {"currency": "EUR", "deals": 1, "value": "100.00"}
    assert report["other_currencies"] == [{"currency": "USD", "deals": 1, "value": "700.00"}]

    dollars = _ok(api.get("/v1/reports/forecast", params={"currency": "USD"}))
    assert [(r["month"], r["value"]) for r in dollars["rows"]] == [("2027-01", "700.00")]

    by_owner = _ok(
        api.get("/v1/reports/forecast", params={"group_by": "owner", "pipeline_id": sales["pipeline"]["id"]})
    )
    owners = [(r["month"], r["group_name"], r["weighted_value"]) for r in by_owner["rows"]]
    assert owners == [("2027-01", "Ada", "500.00"), ("2027-01", "Bob", "1600.00"), ("2027-03", "Ada", "500.00")]

    table = list(csv.reader(io.StringIO(api.get("/v1/reports/forecast.csv").text)))
    assert table[0] == ["month", "pipeline", "pipeline_id", "deals", "value_EUR", "weighted_EUR"]
    assert table[2] == ["2027-01", "Sales", sales["pipeline"]["id"], "2", "3000.00", "2100.00"]
    assert api.get("/v1/reports/forecast", params={"currency": "euro"}).status_code == 422


def test_the_forecast_chart_is_an_svg_with_a_bar_per_month(api: httpx.Client, sales: dict[str, Any]) -> None:
    response = api.get("/v1/reports/forecast.svg")
    assert response.headers["content-type"] == "image/svg+xml"
    root = _svg(response)
    assert root.tag == f"{SVG_NS}svg"
    texts = [t.text for t in root.iter(f"{SVG_NS}text")]
    assert "Weighted revenue forecast by expected close month (EUR)" in texts
    assert {"2027-01", "2027-02", "2027-03", "Sales", "Renewals"} <= set(texts)
    bars = [r.find(f"{SVG_NS}title") for r in root.iter(f"{SVG_NS}rect")]
    labels = sorted(b.text or "" for b in bars if b is not None)
    assert labels == ["2027-01 · Renewals: 300", "2027-01 · Sales: 2100", "2027-03 · Sales: 500"]


def test_deal_dynamics_count_stages_moves_and_outcomes_of_the_period(api: httpx.Client, sales: dict[str, Any]) -> None:
    stage, proposal = sales["stage"], sales["deals"]["proposal"]
    for target in ("Qualified", "Negotiation"):
        _ok(api.patch(f"/v1/deals/{proposal['id']}", json={"stage_id": stage[target]}))
    _ok(api.patch(f"/v1/deals/{sales['deals']['new']['id']}", json={"stage_id": stage["Qualified"]}))

    report = _ok(api.get("/v1/reports/deal-dynamics", params={"pipeline_id": sales["pipeline"]["id"]}))
    today = datetime.now(UTC).date()
    assert (report["start"], report["end"]) == (today.replace(day=1).isoformat(), today.isoformat())
    now = {s["stage"]: s["open_deals"] for s in report["stages"]}
    assert now == {"New": 2, "Qualified": 1, "Proposal": 0, "Negotiation": 2, "Won": 0, "Lost": 0}
    moves = {(m["from_stage"], m["to_stage"]): m["deals"] for m in report["moves"]}
    assert moves == {
        (None, "New"): 3,  # created this month: new, dollars, undated
        (None, "Proposal"): 1,
        (None, "Negotiation"): 1,
        (None, "Won"): 2,
        (None, "Lost"): 1,
        ("Proposal", "Qualified"): 1,
        ("New", "Qualified"): 1,
        ("Qualified", "Negotiation"): 1,
    }
    # Won and lost by the dates they were won and lost: the deal imported as won in 2025 is not this month's.
    assert [(o["pipeline"], o["won"], o["lost"]) for o in report["outcomes"]] == [("Sales", 1, 1)]
    old = _ok(
        api.get(
            "/v1/reports/deal-dynamics",
            params={"pipeline_id": sales["pipeline"]["id"], "start": "2025-01-01", "end": "2025-12-31"},
        )
    )
    assert ([(o["won"], o["lost"]) for o in old["outcomes"]], old["moves"]) == ([(1, 0)], [])

    everything = _ok(api.get("/v1/reports/deal-dynamics"))
    assert {o["pipeline"] for o in everything["outcomes"]} == {"Sales", "Renewals"}
    moves_csv = list(
        csv.DictReader(io.StringIO(api.get("/v1/reports/deal-dynamics.csv", params={"table": "moves"}).text))
    )
    assert {(r["from_stage"], r["to_stage"], r["deals"]) for r in moves_csv} >= {("New", "Qualified", "1")}
    outcomes_csv = api.get("/v1/reports/deal-dynamics.csv", params={"table": "outcomes"}).text.splitlines()
    assert outcomes_csv[0] == "pipeline,pipeline_id,won,lost,start,end"

    chart = _svg(api.get("/v1/reports/deal-dynamics.svg", params={"pipeline_id": sales["pipeline"]["id"]}))
    texts = {t.text for t in chart.iter(f"{SVG_NS}text")}
    assert {"Negotiation", "won in period", "lost in period", "open now"} <= texts

    backwards = api.get("/v1/reports/deal-dynamics", params={"start": "2026-02-01", "end": "2026-01-01"})
    assert backwards.status_code == 422
    assert backwards.json()["errors"][0]["field"] == "query.start"


def test_reports_of_an_empty_account_are_empty_not_errors(api: httpx.Client) -> None:
    forecast = _ok(api.get("/v1/reports/forecast"))
    assert (forecast["rows"], forecast["months"], forecast["total_value"]) == ([], [], "0.00")
    assert _ok(api.get("/v1/reports/deal-dynamics"))["stages"] == []
    empty_chart = _svg(api.get("/v1/reports/forecast.svg"))
    assert "No data for this report" in {t.text for t in empty_chart.iter(f"{SVG_NS}text")}
