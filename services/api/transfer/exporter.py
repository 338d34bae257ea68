"""Export records as CSV, in the columns the importer reads (an exported file imports back unchanged)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session

from services.api.deps import Caller
from services.api.transfer.formats import FORMATS, Kind, header_of, visible_records

BATCH = 500


class _Line:
    """A file-like sink that hands back what csv.writer wrote for one row."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def take(self) -> str:
        text, self.text = self.text, ""
        return text


def export_lines(session: Session, caller: Caller, kind: Kind) -> Iterator[str]:
    """The header, then one CSV line per record, read in batches."""
    fmt = FORMATS[kind]
    header = header_of(session, caller, fmt)
    sink = _Line()
    writer = csv.DictWriter(sink, fieldnames=header, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    yield sink.take()
    batch: list[Any] = []
    for record in session.scalars(visible_records(session, caller, fmt).execution_options(yield_per=BATCH)):
        batch.append(record)
        if len(batch) == BATCH:
            yield from _rows(session, caller, kind, batch, writer, sink)
            batch = []
    if batch:
        yield from _rows(session, caller, kind, batch, writer, sink)


def _rows(
    session: Session, caller: Caller, kind: Kind, batch: list[Any], writer: csv.DictWriter[str], sink: _Line
) -> Iterator[str]:
    for row in FORMATS[kind].rows(session, caller, batch):
        writer.writerow(row)
        yield sink.take()
