"""Outlook's conversation id: a shared thread key for mail that carries only `Thread-Index`."""

from __future__ import annotations

import base64
import binascii


def outlook_conversation_key(thread_index: str | None) -> str | None:
    """The conversation an Outlook `Thread-Index` names: its first 22 bytes (a timestamp and a GUID) are the same
    on every message of one conversation, so they work as a shared id where Outlook sent no References."""
    if not thread_index:
        return None
    try:
        header = base64.b64decode("".join(thread_index.split()), validate=True)
    except (ValueError, binascii.Error):
        return None
    if len(header) < 22:
        return None
    return "outlook-conversation:" + base64.b64encode(header[:22]).decode()
