"""One message's analysis under a hard time and memory budget, so that no input can stall the matcher.

The heuristics in this package are written to be linear, but a budget does not trust that: `Analyser` runs
`analyse` in a persistent child process (spawned once, reused, the bytes and the result crossing a pipe) and
kills it when one message takes longer than the time limit — a regex or a C call holding the GIL cannot escape a
SIGKILL. The child also runs under an address-space limit (RLIMIT_AS), so a message that would need more memory
ends that child, not the worker. Either way the message gets a degraded analysis computed here, in the parent,
from a bounded prefix of its header with the standard library's header parser, and a `defects` entry saying why:
it is still stored as what its headers say, never lost. The next message gets a fresh child.
"""

from __future__ import annotations

import email.header
import email.message
import email.parser
import email.policy
import hashlib
import multiprocessing
import multiprocessing.connection
import pickle
import re
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Protocol

from services.matcher.mail.analysis import AnalysedMail, Analysis, analyse
from services.matcher.mail.classify import machine_mail
from services.matcher.mail.conversation import outlook_conversation_key
from services.matcher.mail.parsing import Address, ParsedMail
from services.matcher.mail.subjects import subject_key

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from shared.settings import Settings

# A degraded analysis reads at most this much of the message (its header is almost always far smaller) ...
DEGRADED_HEADER_BYTES = 256 * 1024
# ... and at most this much of any one header value: every step below stays small whatever the input.
DEGRADED_VALUE_CHARS = 4000
_MAX_DEGRADED_ADDRESSES = 200
_MAX_DEGRADED_REFERENCES = 100
# Messages sent to a child ahead of its answers, at most this many bytes together: far below what a pipe holds,
# so the sends never wait for the child (which may be busy writing an answer nobody reads yet).
PIPELINED_BYTES = 64 * 1024
# Starting a child imports the matcher; on a loaded machine that takes seconds, and it is not the message's fault.
CHILD_START_TIMEOUT_SECONDS = 120.0

_MESSAGE_ID = re.compile(r"<([^<>\s]{1,998})>")
_ADDRESS = re.compile(r"[^\s<>\"',;:()\[\]]{1,64}@[^\s<>\"',;:()\[\]]{1,255}")


class MessageAnalyser(Protocol):
    """What the pipeline needs: analyses for a batch of raw messages, in order, one per message."""

    def analyse_all(self, raws: Sequence[bytes]) -> list[Analysis]: ...

    def close(self) -> None: ...


class InProcessAnalyser:
    """`analyse` in the calling thread, without a budget: for tests and evaluations that trust their input."""

    def analyse_all(self, raws: Sequence[bytes]) -> list[Analysis]:
        return [analyse(raw) for raw in raws]

    def close(self) -> None:
        pass


class Analyser:
    """`analyse` in child processes under a per-message time limit and a memory limit. Thread-safe: each call
    borrows an idle child (or starts one), so concurrent worker threads never share a pipe."""

    def __init__(
        self, *, time_limit_seconds: float, memory_limit_bytes: int | None, pipelined_bytes: int = PIPELINED_BYTES
    ) -> None:
        self.time_limit_seconds = time_limit_seconds
        self.memory_limit_bytes = memory_limit_bytes
        self.pipelined_bytes = pipelined_bytes
        self._lock = threading.Lock()
        self._idle: list[_Child] = []
        self._every: list[_Child] = []
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Analyser:
        limit = settings.analysis_memory_limit_mb
        return cls(
            time_limit_seconds=settings.analysis_time_limit_seconds,
            memory_limit_bytes=limit * 1024 * 1024 if limit else None,
        )

    def analyse_all(self, raws: Sequence[bytes]) -> list[Analysis]:
        child = self._borrow()
        try:
            return child.analyse_all(raws, self.time_limit_seconds, self.pipelined_bytes)
        finally:
            self._give_back(child)

    def child_pids(self) -> list[int]:
        """The analysis processes running now (for measuring their memory)."""
        with self._lock:
            return [pid for child in self._every if (pid := child.pid) is not None]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            children, self._every, self._idle = self._every, [], []
        for child in children:
            child.stop()

    def start(self, count: int) -> None:
        """Start `count` children side by side and keep them idle: call before anything borrows one."""
        children = [_Child(self.memory_limit_bytes) for _ in range(count)]
        starting = [threading.Thread(target=child.start, name="analysis-start") for child in children]
        for thread in starting:
            thread.start()
        for thread in starting:
            thread.join()
        with self._lock:
            self._every.extend(children)
            self._idle.extend(children)

    def _borrow(self) -> _Child:
        with self._lock:
            if self._closed:
                raise RuntimeError("the analyser is closed")
            if self._idle:
                return self._idle.pop()
            child = _Child(self.memory_limit_bytes)
            self._every.append(child)
            return child

    def _give_back(self, child: _Child) -> None:
        with self._lock:
            if self._closed:
                child.stop()
            else:
                self._idle.append(child)


class _Child:
    """One analysis process and its pipe; replaced whenever it is killed or dies."""

    def __init__(self, memory_limit_bytes: int | None) -> None:
        self._memory_limit_bytes = memory_limit_bytes
        self._process: BaseProcess | None = None
        self._connection: multiprocessing.connection.Connection | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.is_alive() else None

    def analyse_all(self, raws: Sequence[bytes], time_limit_seconds: float, pipelined_bytes: int) -> list[Analysis]:
        """Each message's analysis, in order. Small messages are sent ahead, a group at a time, so the child finds
        the next one waiting instead of both sides waking up for every message; each still gets its own time
        budget, counted from the answer before it."""
        analyses: list[Analysis] = []
        waiting = list(raws)
        while waiting:
            group = _group(waiting, pipelined_bytes)
            connection = self._started()
            try:
                for raw in group:
                    connection.send_bytes(raw)
            except OSError:
                pass  # the child died meanwhile: waiting for the first answer finds that out (and stops it)
            answered = 0
            for raw in group:
                analyses.append(self._answer(connection, raw, time_limit_seconds))
                answered += 1
                if self._connection is not connection:
                    break  # the child was stopped: what was sent after this message goes to a fresh one
            waiting = waiting[answered:]
        return analyses

    def _answer(
        self, connection: multiprocessing.connection.Connection, raw: bytes, time_limit_seconds: float
    ) -> Analysis:
        started = time.monotonic()
        try:
            if not connection.poll(time_limit_seconds):
                self.stop()
                return degraded_analysis(
                    raw, f"analysis stopped after {time_limit_seconds:g} s (time budget); stored with headers only"
                )
            # Our own child's answer over a private pipe: the message's bytes never reach the unpickler.
            outcome, value = pickle.loads(connection.recv_bytes())  # noqa: S301
        except (EOFError, OSError):
            self.stop()
            elapsed = time.monotonic() - started
            return degraded_analysis(
                raw,
                f"analysis process died after {elapsed:.1f} s (memory limit or crash); stored with headers only",
            )
        if outcome == "ok" and isinstance(value, Analysis):
            return value
        self.stop()  # an exception may have left the child in any state; the next message gets a fresh one
        return degraded_analysis(raw, f"analysis failed ({value}); stored with headers only")

    def start(self) -> None:
        """Start the process ahead of use; one that does not start is tried again when a message needs it."""
        try:
            self._started()
        except RuntimeError:
            self.stop()

    def _started(self) -> multiprocessing.connection.Connection:
        if self._process is not None and self._connection is not None and self._process.is_alive():
            return self._connection
        self.stop()
        context = multiprocessing.get_context("spawn")  # no fork: the worker runs threads and holds sockets
        parent_end, child_end = context.Pipe()
        process = context.Process(
            target=_serve, args=(child_end, self._memory_limit_bytes), name="mail-analysis", daemon=True
        )
        process.start()
        child_end.close()
        self._process, self._connection = process, parent_end
        if not parent_end.poll(CHILD_START_TIMEOUT_SECONDS) or parent_end.recv_bytes() != b"ready":
            self.stop()
            raise RuntimeError("the mail analysis process did not start")
        return parent_end

    def stop(self) -> None:
        process, connection = self._process, self._connection
        self._process = self._connection = None
        if connection is not None:
            connection.close()
        if process is not None:
            if process.is_alive():
                process.kill()
            process.join(timeout=10)


def _serve(connection: multiprocessing.connection.Connection, memory_limit_bytes: int | None) -> None:
    """The child: analyse each message it is sent, answer with the pickled result, until the pipe closes."""
    if memory_limit_bytes is not None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    connection.send_bytes(b"ready")
    while True:
        try:
            raw = connection.recv_bytes()
        except EOFError:
            return
        try:
            answer = pickle.dumps(("ok", analyse(raw)), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as error:  # the parent stores the message degraded and says why
            answer = pickle.dumps(("error", type(error).__name__))
        connection.send_bytes(answer)


def _group(raws: list[bytes], pipelined_bytes: int) -> list[bytes]:
    """The leading messages that fit in `pipelined_bytes` together; always at least the first."""
    size = len(raws[0])
    count = 1
    while count < len(raws) and size + len(raws[count]) <= pipelined_bytes:
        size += len(raws[count])
        count += 1
    return raws[:count]


# --- the degraded analysis -------------------------------------------------------------------------------------


def degraded_analysis(raw: bytes, reason: str) -> Analysis:
    """What the header alone says, read from a bounded prefix with the standard library: every step is small,
    so this cannot stall whatever the bytes are. The body is left to the stored raw message."""
    header = _header_of(raw)
    values = {str(name).strip().lower(): _unfolded(str(value)) for name, value in reversed(header.items())}
    own_id = _first_message_id(values.get("message-id"))
    references = _MESSAGE_ID.findall(values.get("references", ""))[-_MAX_DEGRADED_REFERENCES:]
    in_reply_to = _first_message_id(values.get("in-reply-to"))
    if in_reply_to is not None and in_reply_to not in references:
        references.append(in_reply_to)
    references = [reference for reference in dict.fromkeys(references) if reference != own_id]
    senders = [address for name in ("from", "sender", "reply-to") for address in _addresses(values.get(name))]
    parsed = ParsedMail(
        message_id=own_id or "sha256-" + hashlib.sha256(raw).hexdigest() + "@mailroom.invalid",
        in_reply_to=in_reply_to,
        references=tuple(references),
        subject=_decoded(values.get("subject")),
        sender=senders[0] if senders else None,
        to=_addresses(values.get("to")),
        cc=_addresses(values.get("cc")),
        sent_at=_date(values.get("date")),
        text_body=None,
        html_body=None,
        attachments=(),
        headers=values,
        defects=(reason,),
    )
    conversation = outlook_conversation_key(values.get("thread-index"))
    thread_references = parsed.references if conversation is None else (*parsed.references, conversation)
    analysed = AnalysedMail(
        mail=parsed, new_text=None, subject_key=subject_key(parsed.subject), thread_references=thread_references
    )
    return Analysis(message=analysed, machine=machine_mail(parsed), bounced_recipients=(), originals=())


def _header_of(raw: bytes) -> email.message.Message:
    prefix = raw[:DEGRADED_HEADER_BYTES]
    if prefix.startswith(b"From "):  # an mbox envelope line is not a header field
        prefix = prefix.partition(b"\n")[2]
    parser = email.parser.BytesParser(policy=email.policy.compat32)
    return parser.parsebytes(prefix, headersonly=True)


def _unfolded(value: str) -> str:
    text = value[:DEGRADED_VALUE_CHARS].replace("\r", "").replace("\n", "")
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace").replace("\x00", "\ufffd")


def _first_message_id(value: str | None) -> str | None:
    found = _MESSAGE_ID.search(value or "")
    return found.group(1) if found else None


def _decoded(value: str | None) -> str | None:
    if not value:
        return None
    try:
        text = str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        text = value
    return " ".join(text.split()) or None


def _addresses(value: str | None) -> tuple[Address, ...]:
    found: dict[str, Address] = {}
    for piece in (value or "").split(",")[:_MAX_DEGRADED_ADDRESSES]:
        address = _ADDRESS.search(piece)
        if address is None or address.group().lower() in found:
            continue
        name = _decoded(piece[: address.start()].strip(" \t<\"'"))
        found[address.group().lower()] = Address(name=name, address=address.group())
    return tuple(found.values())


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value[:200])
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
