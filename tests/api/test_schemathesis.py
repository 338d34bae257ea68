"""Property-based tests of the whole API against its own OpenAPI document, with schemathesis' CLI.

Every operation is called with generated valid and invalid requests: no response may be a 5xx, and every
response must match its documented status codes, content types and schemas. The example count and a time budget
keep the run within a couple of minutes on CI's two cores.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import client
from tests.conftest import new_tenant
from tests.support.stack import Stack

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
MAX_EXAMPLES = 10
MAX_SECONDS = 90


def test_api_conforms_to_its_openapi_document(
    api_stack: Stack, api_sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    tenant = new_tenant(api_sessions)
    # A little data, so generated requests also meet real rows and not only 404s.
    with client(api_stack, tenant.token) as http:
        person = http.post("/v1/persons", json={"name": "Fuzz", "emails": ["fuzz@customer.example"]}).json()
        http.post("/v1/deals", json={"title": "Fuzz deal", "person_id": person["id"]})
        http.post("/v1/pipelines", json={"name": "Fuzz", "stages": ["A", "B"]})
    schemathesis = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{api_stack.api_url}/openapi.json",
            "--header",
            f"Authorization: Bearer {tenant.token}",
            "--checks",
            CHECKS,
            "--max-examples",
            str(MAX_EXAMPLES),
            "--max-time",
            str(MAX_SECONDS),
            # One worker: with several threads, hypothesis' lambda-source cache sometimes trips over itself.
            "--workers",
            "1",
            "--seed",
            "20261124",
            "--generation-database",
            "none",
            "--request-timeout",
            "30",
            "--no-color",
            "--report-dir",
            str(tmp_path),
            # Revoking tokens is covered by test_access; here it would revoke the fuzzer's own token midway.
            "--exclude-operation-id",
            "revoke_token_v1_tokens__token_id__delete",
        ],
        capture_output=True,
        text=True,
        timeout=MAX_SECONDS + 120,
        check=False,
        cwd=tmp_path,
    )
    (tmp_path / "schemathesis.log").write_text(result.stdout + result.stderr)
    failures = "\n".join(
        line for line in result.stdout.splitlines() if line.startswith(("___", "- ST", "    Rec", "    Doc"))
    )
    assert result.returncode == 0, failures + "\n" + result.stdout[-6000:] + result.stderr[-3000:]
