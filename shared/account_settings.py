"""Per-account matcher settings, kept as JSON on the account and read through one typed model."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class AccountSettings(BaseModel):
    # jane+crm@example.com is jane@example.com: most providers deliver sub-addresses to the same person.
    fold_subaddresses: bool = True
    max_people_per_message: int = Field(default=20, ge=0)
    create_organizations: bool = False
    # Colleagues are not contacts: addresses here (and at the users' own work domains) never become persons.
    internal_domains: list[str] = Field(default_factory=list)
    # Addresses ("spam@x.com") or domains ("x.com") that never become persons.
    blocklist: list[str] = Field(default_factory=list)
    # Drafts written by teammates or integrations wait for the thread owner's approval before they are sent.
    ask_before_sending: bool = True
    # Domains whose mail counts as the users' own even when it does not authenticate (SPF/DKIM aligned with From):
    # a legacy server that cannot sign. Empty: mail claiming a user must authenticate (MAILROOM_REQUIRE_SENDER_AUTH).
    unauthenticated_sender_domains: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, raw: dict[str, Any] | None) -> AccountSettings:
        return cls.model_validate(raw or {})
