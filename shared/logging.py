"""One structlog setup for every service, also formatting the standard-library logs of aiosmtpd, dramatiq and
uvicorn. JSON when stderr is not a terminal (containers, CI), readable lines on a terminal.

Context such as `inbound_id` is bound with `structlog.contextvars` and lands on every line of that unit of work.
Nobody logs message bodies or secrets: log ids, sizes and reasons.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Literal, TextIO

import structlog
from structlog.types import Processor


def _add_process(_logger: object, _name: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
    # What CallsiteParameterAdder's PROCESS gives, without the look for the calling frame it makes first (a fifth
    # of a log line's cost): every line of a service says which of its processes wrote it.
    event["process"] = os.getpid()
    return event


class _NamedWriteLogger(structlog.WriteLogger):
    """structlog's own writer (a line costs less than half of what a trip through `logging` does; the matcher
    writes one per message), with the module name `add_logger_name` reads."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


def configure_logging(
    service: str, *, level: str = "INFO", log_format: Literal["auto", "json", "console"] = "auto"
) -> None:
    as_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_process,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    finishing: list[Processor] = [
        structlog.processors.format_exc_info,
        lambda _logger, _name, event: {"service": service, **event},
    ]
    stream = sys.stderr
    structlog.configure(
        processors=[*shared, *finishing, renderer],
        logger_factory=lambda name="", *_args: _NamedWriteLogger(stream, name),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        # Not cached: a later configure_logging in the same process (another level or format) takes effect.
        cache_logger_on_first_use=False,
    )
    # The libraries' lines (aiosmtpd, dramatiq, uvicorn) go through `logging`, formatted the same way.
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[*finishing, structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Their own handlers would print every line twice, in another format.
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error", "dramatiq", "mail.log", "mail.debug"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # aiosmtpd logs every SMTP line at INFO, including envelope data: keep it to warnings.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    # mail-parser warns about every MIME part it does not handle itself; the matcher records real defects.
    logging.getLogger("mailparser").setLevel(logging.ERROR)
    # pgserver logs each pg_ctl call with its full output: only its problems matter.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
