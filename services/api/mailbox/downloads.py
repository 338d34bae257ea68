"""Serving stored bytes to browsers safely: a safe type, always a download unless an image is asked for inline,
no sniffing, a sandbox, and HTTP caching and ranges (RFC 9110 §13–14) so large files resume."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import quote

from fastapi import Response

# Types a browser renders without running anything; everything else is served as opaque bytes.
_RASTER_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp"})
_SAFE_TYPES = _RASTER_IMAGES | {"application/pdf", "text/plain", "text/csv", "application/zip"}
# ASCII digits only (`\d` would also take other scripts' digits); RFC 9110 §14.1.1 allows spaces around the range.
_RANGE = re.compile(r"bytes=[ \t]*([0-9]*)-([0-9]*)[ \t]*", re.IGNORECASE)
# A position with more digits than this is past the end of anything we store; int() is never asked to parse it
# (CPython refuses strings over 4300 digits, which made a huge Range header a 500).
_MAX_POSITION_DIGITS = 18
_PAST_EVERY_END: int = 10**_MAX_POSITION_DIGITS


def safe_content_type(declared: str) -> str:
    kind = declared.split(";", 1)[0].strip().lower()
    return kind if kind in _SAFE_TYPES else "application/octet-stream"


def disposition(filename: str | None, *, inline: bool) -> str:
    name = (filename or "attachment").replace("\r", "").replace("\n", "")
    ascii_name = name.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_").replace("\\", "_")
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def byte_range(header: str | None, size: int) -> tuple[int, int] | Literal[False] | None:
    """(first, last) for one satisfiable range; None to send everything; False when unsatisfiable (416).

    Follows RFC 9110 §14.1–14.2: a header that is not a valid `bytes` range (other units, bad syntax, a last
    position before the first) is ignored, so the whole content is sent; several ranges in one header are
    answered with the whole content too, which the RFC allows. Unsatisfiable means the first position is at or
    past the end, or a suffix of zero bytes was asked for.
    """
    if header is None or "," in header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        return None
    if not first_text:  # the last N bytes
        if _position(last_text) == 0 or size == 0:
            return False
        return max(size - _position(last_text), 0), size - 1
    first = _position(first_text)
    if last_text and _position(last_text) < first:
        return None  # an invalid range-spec: the header is ignored
    if first >= size:
        return False
    last = min(_position(last_text), size - 1) if last_text else size - 1
    return first, last


def _position(digits: str) -> int:
    """A byte position; anything too long to be a real position counts as "past every end" (it is, by far)."""
    significant = digits.lstrip("0") or "0"
    if len(significant) > _MAX_POSITION_DIGITS:
        return _PAST_EVERY_END
    return int(significant)


def serve(
    content: bytes,
    *,
    etag: str,
    content_type: str,
    disposition_header: str,
    if_none_match: str | None,
    range_header: str | None,
    if_range: str | None,
) -> Response:
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Content-Disposition": disposition_header,
        "X-Content-Type-Options": "nosniff",
        # Even if a browser were tricked into rendering it, nothing in it may run or load anything.
        "Content-Security-Policy": "default-src 'none'; sandbox",
        # Content-addressed: these bytes never change, but only this caller may keep them.
        "Cache-Control": "private, max-age=31536000, immutable",
    }
    if if_none_match is not None and {etag, "*"} & {tag.strip() for tag in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    if if_range is not None and if_range.strip() != etag:
        range_header = None
    wanted = byte_range(range_header, len(content))
    if wanted is False:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{len(content)}"})
    if wanted is None:
        return Response(content, media_type=content_type, headers=headers)
    first, last = wanted
    headers["Content-Range"] = f"bytes {first}-{last}/{len(content)}"
    return Response(content[first : last + 1], status_code=206, media_type=content_type, headers=headers)


def is_raster_image(content_type: str) -> bool:
    return safe_content_type(content_type) in _RASTER_IMAGES
