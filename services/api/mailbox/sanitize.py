"""HTML from strangers, made safe to show inside a CRM page."""

from __future__ import annotations

import nh3

_URL_ATTRIBUTES = frozenset({"src", "srcset", "background", "poster"})


def sanitize_html(html: str, *, allow_remote: bool = False) -> str:
    """No scripts, handlers, styles or `javascript:` URLs; remote images only when asked for.

    A remote image is a read receipt: showing a mail must not tell its sender that (and when) it was read, so
    only `cid:` images (parts of the message itself) survive unless the viewer opts in.
    """

    def keep(_tag: str, attribute: str, value: str) -> str | None:
        if attribute in _URL_ATTRIBUTES and not allow_remote and not value.strip().lower().startswith("cid:"):
            return None
        return value

    return nh3.clean(
        html,
        url_schemes={"http", "https", "mailto", "cid"},
        link_rel="noopener noreferrer nofollow",
        attribute_filter=keep,
    )
