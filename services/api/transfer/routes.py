"""CSV import and export of persons, organizations, deals and leads."""

from __future__ import annotations

import io
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response

from services.api.deps import CurrentCaller, DbSession
from services.api.problems import Problem
from services.api.transfer.exporter import export_lines
from services.api.transfer.formats import Kind
from services.api.transfer.importer import FileError, ImportReport, import_rows
from services.api.transfer.schemas import ImportReportOut, RejectionOut

router = APIRouter(prefix="/v1", tags=["import and export"])

CSV_BODY = Body(
    media_type="text/csv",
    description="UTF-8 CSV with a header line. Columns: see the README (an export has exactly the importable columns).",
)


@router.post("/imports/{kind}", response_model=ImportReportOut)
def import_csv(
    kind: Kind,
    caller: CurrentCaller,
    session: DbSession,
    content: Annotated[bytes, CSV_BODY],
    dry_run: Annotated[bool, Query(description="Check every row and report; change nothing.")] = False,
) -> ImportReportOut:
    """Create or update records from CSV. Rows with an `id` or a known `external_id` update that record, so the same
    file imported twice changes nothing the second time. Each rejected row is reported with every reason; the other
    rows are imported (or, with `dry_run`, only checked). The body is capped by
    `MAILROOM_API_MAX_IMPORT_BYTES` (10 MiB); larger files go through `mailroom import`, which streams them."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Problem(422, "validation", "The file is not UTF-8", "Save the CSV as UTF-8 and try again.") from None
    try:
        report = import_rows(session, caller, kind, io.StringIO(text, newline=""), dry_run=dry_run)
    except FileError as exc:
        raise Problem(422, "invalid-file", "The file cannot be imported", str(exc)) from None
    return report_out(report)


@router.get(
    "/exports/{kind}",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "Every record you can see, oldest first."}},
)
def export_csv(kind: Kind, caller: CurrentCaller, session: DbSession) -> Response:
    """All records of the kind as CSV, in the columns the import reads (custom fields as `custom.<key>`)."""
    content = "".join(export_lines(session, caller, kind))
    return Response(
        content=content.encode(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{kind.value}.csv"'},
    )


def report_out(report: ImportReport) -> ImportReportOut:
    return ImportReportOut(
        kind=report.kind.value,
        dry_run=report.dry_run,
        rows=report.rows,
        created=report.created,
        updated=report.updated,
        unchanged=report.unchanged,
        rejected=len(report.rejected),
        rejections=[RejectionOut(row=r.row, external_id=r.external_id, reasons=r.reasons) for r in report.rejected],
        created_ids=report.created_ids,
    )
