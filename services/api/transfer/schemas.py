"""What an import reports."""

from __future__ import annotations

from pydantic import BaseModel, Field


class RejectionOut(BaseModel):
    row: int = Field(description="Line of the file where the row starts (the header is line 1).")
    external_id: str | None
    reasons: list[str] = Field(description="Every problem of the row, each naming its column.")


class ImportReportOut(BaseModel):
    kind: str
    dry_run: bool = Field(description="True: nothing was changed; the counts say what a real import would do.")
    rows: int
    created: int
    updated: int
    unchanged: int = Field(description="Rows that matched a record (by id or external_id) that already said the same.")
    rejected: int
    rejections: list[RejectionOut]
    created_ids: list[str] = Field(description="Ids of the records created (empty for a dry run).")
