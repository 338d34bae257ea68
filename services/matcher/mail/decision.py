"""What to do with one inbound message, decided from its analysis and who sent it — still without a database.

The placement layer supplies the two facts about the sender that need the account (is it the user, verified; is
it someone inside the account) and acts on the decision; everything else comes from the message's bytes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from services.matcher.mail.analysis import Analysis, ForwardedOriginal
from services.matcher.mail.classify import Machine


class DecisionKind(enum.StrEnum):
    sent = "sent"  # the user's own mail (Smart-BCC copy): stored as it is
    forwarded = "forwarded"  # the user forwarded mail: the originals are stored, not the forward
    contact = "contact"  # someone outside wrote in: stored if it belongs to one of the user's threads, else held
    machine = "machine"  # auto-reply, bounce or bulk mail: stored, creates nobody
    hold = "hold"  # kept aside for the user, with the reason


@dataclass(frozen=True)
class Decision:
    kind: DecisionKind
    machine: Machine | None = None
    originals: tuple[ForwardedOriginal, ...] = ()
    hold_reason: str | None = None


def decide(analysis: Analysis, *, sent_by_user: bool, sender_is_internal: bool, unverified_reason: str) -> Decision:
    """`unverified_reason` is the text a hold of internal mail from an unverified address carries."""
    if analysis.machine is not None:
        return Decision(DecisionKind.machine, machine=analysis.machine)
    if sent_by_user:
        if analysis.originals:
            return Decision(DecisionKind.forwarded, originals=analysis.originals)
        return Decision(DecisionKind.sent)
    if sender_is_internal:
        return Decision(DecisionKind.hold, hold_reason=unverified_reason)
    return Decision(DecisionKind.contact)
